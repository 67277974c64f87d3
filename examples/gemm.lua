-- C[M,N] = A[M,K] · B[N,K]^T with f32, bf16 or fp8 (e4m3) inputs, f32 accumulation.
-- Each block computes a BM x BN tile of C: it stages BM x BK of A and
-- BN x BK of B in shared buffers and accumulates in a register fragment.
--   tilec run examples/gemm.lua --set dtype=bf16 --set M=300 --check
local T = require "tile"

return T.kernel "gemm" {
  params = {
    M = T.size(256), N = T.size(256), K = T.size(256),
    dtype = T.tune{"f32", "bf16", "f8e4m3"}, stages = T.tune{2, 3, 4},  -- tiles in flight (CPU: prefetch distance + 1)
    BM = T.tune{192, 96, 48, 24, 128, 64, 16, 4, 1, 256, 512}, BN = T.tune{64, 32, 128, 256}, BK = T.tune{128, 64, 256, 32, 512, 1024, 2048, 4096},
  },
  args = function(p) return {
    A = T.tensor{p.M, p.K, p.dtype},
    B = T.tensor{p.N, p.K, p.dtype},
    C = T.tensor{p.M, p.N, T.f32, out = true},
  } end,
  body = function(p, A, B, C)
    for by, bx in T.grid(T.ceildiv(p.M, p.BM), T.ceildiv(p.N, p.BN)) do
      local As  = T.shared{p.BM, p.BK, p.dtype}
      local Bs  = T.shared{p.BN, p.BK, p.dtype}
      local acc = T.fragment{p.BM, p.BN, T.f32}
      T.clear(acc)
      for k in T.pipelined(T.ceildiv(p.K, p.BK), p.stages) do
        T.copy(A:tile(by * p.BM, k * p.BK), As)
        T.copy(B:tile(bx * p.BN, k * p.BK), Bs)
        T.gemm(As, Bs, acc, { trans_b = true, rows = p.M - by * p.BM })  -- the last block's rows past M are padding
      end
      T.copy(acc, C:tile(by * p.BM, bx * p.BN))
    end
  end,
}
