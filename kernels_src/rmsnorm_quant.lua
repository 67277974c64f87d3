-- RMSNorm (v4-spec §3.3.3) fused with act_quant (§2.2), for a norm whose
-- output feeds an FP8 GEMM (attn_norm → wq_a, ffn_norm → experts):
--   y = bf16((x · rsqrt(mean(x²) + 1e-6)) · w),   then per 128 block of y:
--   s = 2^ceil(log2(max(|y|, 1e-4) / 448)),  q = e4m3(clamp(y / s, ±448)).
-- One pass computes the row's sum of squares, a second normalises, rounds
-- to bf16 and quantises each 128-wide block: y never goes to memory.
--   tilec run kernels_src/rmsnorm_quant.lua --set M=4 --check
local T = require "tile"
local Q = require "quant"
local N = require "norm"

local BLOCK = N.BLOCK

return T.kernel "rmsnorm_quant" {
  params = { M = T.dyn, D = T.size(4096), BM = T.tune{8, 4, 16} },
  args = function(p)
    T.check(p.D % BLOCK == 0, ("rmsnorm_quant: D = %d is not a multiple of the scale block (%d)"):format(p.D, BLOCK))
    return {
      x = T.tensor{p.M, p.D, T.bf16},
      w = T.tensor{p.D, T.f32},
      q = T.tensor{p.M, p.D, T.f8e4m3, out = true},
      s = T.tensor{p.M, p.D // BLOCK, T.e8m0, out = true},
    }
  end,
  body = function(p, x, w, q, s)
    local nb = p.D // BLOCK
    for bm in T.grid(T.ceildiv(p.M, p.BM)) do
      local t     = T.fragment{p.BM, BLOCK, T.f32}
      local ws    = T.fragment{BLOCK, T.f32}
      local rms   = T.fragment{p.BM, T.f32}   -- sum of squares, then 1/rms
      N.inv_rms(x, bm * p.BM, p.D, t, rms)
      for b in T.serial(nb) do
        N.normalize(x, w, bm * p.BM, b, t, ws, rms)
        local scale = Q.scale_rows(t, 448.0, 1e-4)
        T.copy(t, q:tile(bm * p.BM, b * BLOCK))
        T.copy(scale, s:tile(bm * p.BM, b, { p.BM, 1 }))
      end
    end
  end,
}
