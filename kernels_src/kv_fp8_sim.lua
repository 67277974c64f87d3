-- The FP8 KV simulation (v4-spec §2.6): each KV vector's first 448 (nope)
-- dims go through act_quant with 64-wide blocks and back,
--   y = bf16(e4m3(clamp(x / s, -448, 448)) · s),  s = 2^ceil(log2(max(amax, 1e-4) / 448)),
-- and the last 64 (RoPE) dims stay as they are.  This is exactly the values
-- an FP8 KV cache holds (current HF revision; see §0 and §9.10).
--   tilec run kernels_src/kv_fp8_sim.lua --set M=4 --check
local T = require "tile"
local Q = require "quant"

local BLOCK = 64

return T.kernel "kv_fp8_sim" {
  params = { M = T.dyn, D = T.size(512), NOPE = T.size(448), BM = T.tune{8, 4, 16} },
  args = function(p)
    T.check(p.NOPE % BLOCK == 0 and p.D - p.NOPE == 64,
            ("kv_fp8_sim: head dim %d is not split as nope (a multiple of %d) + 64 rope, got nope %d"):format(
              p.D, BLOCK, p.NOPE), "V4 heads are 448 + 64 (v4-mini: 128 + 64)")
    return {
      kv = T.tensor{p.M, p.D, T.bf16},
      y  = T.tensor{p.M, p.D, T.bf16, out = true},
    }
  end,
  body = function(p, kv, y)
    for bm in T.grid(T.ceildiv(p.M, p.BM)) do
      local t = T.fragment{p.BM, BLOCK, T.f32}
      for b = 0, p.NOPE // BLOCK - 1 do          -- a build-time loop: one block each
        T.copy(kv:tile(bm * p.BM, b * BLOCK), t)
        Q.fp8_sim(t)
        T.copy(t, y:tile(bm * p.BM, b * BLOCK))
      end
      T.copy(kv:tile(bm * p.BM, p.NOPE), t)     -- the RoPE dims, unchanged
      T.copy(t, y:tile(bm * p.BM, p.NOPE))
    end
  end,
}
