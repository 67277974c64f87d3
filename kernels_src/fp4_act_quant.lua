-- fp4_act_quant (v4-spec §2.5), the in-place form the model calls on the
-- indexer's Q and compressed K: per block of 32 along K,
--   amax = max(|x|, 6·2^-126),  s = 2^ceil(log2(amax / 6))  (UE8M0),
--   y = bf16(e2m1(clamp(x / s, -6, 6)) · s)   — quantise, then dequantise.
--   tilec run kernels_src/fp4_act_quant.lua --set M=4 --check
local T = require "tile"
local Q = require "quant"

local BLOCK = 32

return T.kernel "fp4_act_quant" {
  params = { M = T.dyn, K = T.size(128), BM = T.tune{8, 4, 16} },
  args = function(p)
    T.check(p.K % BLOCK == 0, ("fp4_act_quant: K = %d is not a multiple of the scale block (%d)"):format(p.K, BLOCK))
    return {
      x = T.tensor{p.M, p.K, T.bf16},
      y = T.tensor{p.M, p.K, T.bf16, out = true},
      s = T.tensor{p.M, p.K // BLOCK, T.e8m0, out = true},
    }
  end,
  body = function(p, x, y, s)
    for bm, bk in T.grid(T.ceildiv(p.M, p.BM), p.K // BLOCK) do
      local t = T.fragment{p.BM, BLOCK, T.f32}
      T.copy(x:tile(bm * p.BM, bk * BLOCK), t)
      local scale = Q.fp4_sim(t)
      T.copy(t, y:tile(bm * p.BM, bk * BLOCK))
      T.copy(scale, s:tile(bm * p.BM, bk, { p.BM, 1 }))
    end
  end,
  -- On a CPU, 16 rows per block where rows are short (Zen 5, one thread,
  -- `tilec sweep`, 4096 rows: K 128 or 256 0.316 -> 0.295 ms at BM 16
  -- against 8; K 512 equal; K 1024 1.41 -> 1.70, K 4096 21 -> 26: longer
  -- rows keep 8).
  choose = function(p, target)
    if target.sm or p.K > 256 then return {} end
    return { BM = 16 }
  end,
}
