-- bench/gemm_fp8_fast.lua — examples/gemm.lua's fp8 product with the tensor
-- cores' own running sums ({ fast_accum = true }: no per-step promotion to
-- f32, as cuBLASLt's FAST_ACCUM), for bench_gpu to time against the
-- promoted default.  Tiles as the example picks for sm_90a without the
-- partial fragment's registers: 128 x 256 x 128 in four stages.
local T = require "tile"

return T.kernel "gemm_fp8_fast" {
  params = { M = T.size(256), N = T.size(256), K = T.size(256),
             BM = T.tune{128}, BN = T.tune{256, 128}, BK = T.tune{128}, stages = T.tune{4, 2, 3} },
  args = function(p) return {
    A = T.tensor{p.M, p.K, T.f8e4m3},
    B = T.tensor{p.N, p.K, T.f8e4m3},
    C = T.tensor{p.M, p.N, T.f32, out = true},
  } end,
  body = function(p, A, B, C)
    for by, bx in T.grid(T.ceildiv(p.M, p.BM), T.ceildiv(p.N, p.BN)) do
      local As  = T.shared{p.BM, p.BK, T.f8e4m3}
      local Bs  = T.shared{p.BN, p.BK, T.f8e4m3}
      local acc = T.fragment{p.BM, p.BN, T.f32}
      T.clear(acc)
      for k in T.pipelined(T.ceildiv(p.K, p.BK), p.stages) do
        T.copy(A:tile(by * p.BM, k * p.BK), As)
        T.copy(B:tile(bx * p.BN, k * p.BK), Bs)
        T.gemm(As, Bs, acc, { trans_b = true, fast_accum = true, rows = p.M - by * p.BM })
      end
      T.copy(acc, C:tile(by * p.BM, bx * p.BN))
    end
  end,
}
