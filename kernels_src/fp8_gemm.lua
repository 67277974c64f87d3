-- fp8_gemm (v4-spec §2.3), W8A8 with block scales and per-block promotion:
--   C[M,N] = Σ_kb (A_kb · B_kbᵀ) · sa[m, kb] · sb[n // 128, kb],  C in bf16,
-- A: e4m3 activations with 1×128 UE8M0 scales (act_quant's output),
-- B: e4m3 weights with 128×128 UE8M0 scales.  Each 128-wide K block is an
-- exact product (e4m3 values widen exactly to bf16 for vdpbf16ps) summed in
-- its own f32 accumulator, then scaled and added to the running one: the
-- reference's "promotion every K block".  BN (rows of B per block) divides
-- 128; at decode a small BN keeps fewer weight rows in flight per step,
-- which the CPU's prefetchers follow (16 rows: 2x the weight bandwidth of
-- 128 at M = 1 on an AVX2 host, bench/decode.c).
--   tilec run kernels_src/fp8_gemm.lua --set M=16 --set N=256 --set K=512 --check
local T = require "tile"

local BLOCK = 128

return T.kernel "fp8_gemm" {
  params = { M = T.dyn, N = T.size(4096), K = T.size(4096), BM = T.tune{64, 32, 16, 128, 4, 1},
             BN = T.tune{128, 64, 32, 16} },
  args = function(p)
    T.check(p.K % BLOCK == 0, ("fp8_gemm: K = %d is not a multiple of the scale block (%d)"):format(p.K, BLOCK))
    -- a block's rows share one row of weight scales
    T.check(BLOCK % p.BN == 0, ("fp8_gemm: BN = %d does not divide the scale block (%d)"):format(p.BN, BLOCK))
    return {
      a  = T.tensor{p.M, p.K, T.f8e4m3},
      sa = T.tensor{p.M, p.K // BLOCK, T.e8m0},
      b  = T.tensor{p.N, p.K, T.f8e4m3},
      sb = T.tensor{T.ceildiv(p.N, BLOCK), p.K // BLOCK, T.e8m0},
      c  = T.tensor{p.M, p.N, T.bf16, out = true},
    }
  end,
  body = function(p, a, sa, b, sb, c)
    for by, bx in T.grid(T.ceildiv(p.M, p.BM), T.ceildiv(p.N, p.BN)) do
      local As   = T.shared{p.BM, BLOCK, T.bf16}
      local Bs   = T.shared{p.BN, BLOCK, T.bf16}
      local part = T.fragment{p.BM, p.BN, T.f32}
      local acc  = T.fragment{p.BM, p.BN, T.f32}
      local sas  = T.fragment{p.BM, T.f32}
      T.clear(acc)
      for kb in T.pipelined(p.K // BLOCK, 2) do
        T.copy(a:tile(by * p.BM, kb * BLOCK), As)
        T.copy(b:tile(bx * p.BN, kb * BLOCK), Bs)
        T.gemm(As, Bs, part, { trans_b = true, clear = true, rows = p.M - by * p.BM })  -- rows past M: padding
        T.copy(sa:tile(by * p.BM, kb, { p.BM, 1 }), sas)
        local sbk = sb[bx * p.BN // BLOCK][kb]
        for i, j in T.parallel(p.BM, p.BN) do
          acc[i][j] = acc[i][j] + part[i][j] * (sas[i] * sbk)
        end
      end
      T.copy(acc, c:tile(by * p.BM, bx * p.BN))
    end
  end,
}
