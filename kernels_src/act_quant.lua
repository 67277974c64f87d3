-- act_quant (v4-spec §2.2): per row, per block of 128 along K,
--   amax = max(|x|, 1e-4),  s = 2^ceil(log2(amax / 448))  (a UE8M0 scale),
--   q = e4m3(clamp(x / s, -448, 448)), round to nearest even.
-- The power of two comes from the f32 bits of amax/448 (quant.lua).
--   tilec run kernels_src/act_quant.lua --set M=4 --check
local T = require "tile"
local Q = require "quant"

local BLOCK = 128

return T.kernel "act_quant" {
  params = { M = T.dyn, K = T.size(7168), dtype = T.variant{"bf16", "f32"}, BM = T.tune{8, 4, 16} },
  args = function(p)
    T.check(p.K % BLOCK == 0, ("act_quant: K = %d is not a multiple of the scale block (%d)"):format(p.K, BLOCK),
            "pad K, or quantise the tail separately")
    return {
      x = T.tensor{p.M, p.K, p.dtype},
      q = T.tensor{p.M, p.K, T.f8e4m3, out = true},
      s = T.tensor{p.M, p.K // BLOCK, T.e8m0, out = true},
    }
  end,
  body = function(p, x, q, s)
    for bm, bk in T.grid(T.ceildiv(p.M, p.BM), p.K // BLOCK) do
      local t = T.fragment{p.BM, BLOCK, T.f32}
      T.copy(x:tile(bm * p.BM, bk * BLOCK), t)
      local scale = Q.scale_rows(t, 448.0, 1e-4)
      T.copy(t, q:tile(bm * p.BM, bk * BLOCK))                 -- stores round to e4m3
      T.copy(scale, s:tile(bm * p.BM, bk, { p.BM, 1 }))        -- exact powers of two
    end
  end,
}
