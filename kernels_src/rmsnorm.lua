-- RMSNorm (v4-spec §3.3.3) with weight, bf16 in and out, for a norm whose
-- output does not feed an FP8 GEMM directly (the compressor's and the
-- indexer's x, the final norm before the head):
--   y = bf16((x · rsqrt(mean(x²) + 1e-6)) · w).
-- The same two passes as rmsnorm_quant.lua (norm.lua; that one fuses
-- act_quant and never stores y): composed with act_quant it gives that
-- kernel's bits, which is how the fused kernel's gain is measured
-- (bench_ops); rmsnorm_fp8.lua is that composition made by T.compose.
--   tilec run kernels_src/rmsnorm.lua --set M=4 --check
local T = require "tile"
local N = require "norm"

local BLOCK = N.BLOCK

return T.kernel "rmsnorm" {
  params = { M = T.dyn, D = T.size(4096), BM = T.tune{8, 4, 16} },
  args = function(p)
    T.check(p.D % BLOCK == 0, ("rmsnorm: D = %d is not a multiple of %d"):format(p.D, BLOCK))
    return {
      x = T.tensor{p.M, p.D, T.bf16},
      w = T.tensor{p.D, T.f32},
      y = T.tensor{p.M, p.D, T.bf16, out = true},
    }
  end,
  body = function(p, x, w, y)
    local nb = p.D // BLOCK
    for bm in T.grid(T.ceildiv(p.M, p.BM)) do
      local t   = T.fragment{p.BM, BLOCK, T.f32}
      local ws  = T.fragment{BLOCK, T.f32}
      local rms = T.fragment{p.BM, T.f32}   -- sum of squares, then 1/rms
      N.inv_rms(x, bm * p.BM, p.D, t, rms)
      for b in T.serial(nb) do
        N.normalize(x, w, bm * p.BM, b, t, ws, rms)
        T.copy(t, y:tile(bm * p.BM, b * BLOCK))
      end
    end
  end,
}
