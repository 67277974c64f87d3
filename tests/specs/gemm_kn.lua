-- C[M,N] = A[M,K] · B[K,N], B not transposed: its tile [BK, BN] keeps N
-- contiguous (MN-major), the layout wgmma reads with its transpose
-- immediate on sm_90a (16-bit types; 8-bit operands must be K-major).
--   tilec run tests/specs/gemm_kn.lua --set M=100 --check
local T = require "tile"

return T.kernel "gemm_kn" {
  params = {
    M = T.size(256), N = T.size(256), K = T.size(256),
    dtype = T.variant{"bf16", "f16", "f32", "f8e4m3"},
    BM = T.tune{64, 128, 16}, BN = T.tune{64, 128, 256, 32, 48, 320}, BK = T.tune{64, 32, 128},
  },
  args = function(p) return {
    A = T.tensor{p.M, p.K, p.dtype},
    B = T.tensor{p.K, p.N, p.dtype},
    C = T.tensor{p.M, p.N, T.f32, out = true},
  } end,
  body = function(p, A, B, C)
    for by, bx in T.grid(T.ceildiv(p.M, p.BM), T.ceildiv(p.N, p.BN)) do
      local As  = T.shared{p.BM, p.BK, p.dtype}
      local Bs  = T.shared{p.BK, p.BN, p.dtype}
      local acc = T.fragment{p.BM, p.BN, T.f32}
      T.clear(acc)
      for k in T.pipelined(T.ceildiv(p.K, p.BK), 2) do
        T.copy(A:tile(by * p.BM, k * p.BK), As)
        T.copy(B:tile(k * p.BK, bx * p.BN), Bs)
        T.gemm(As, Bs, acc)
      end
      T.copy(acc, C:tile(by * p.BM, bx * p.BN))
    end
  end,
}
