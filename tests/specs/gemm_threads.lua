-- examples/gemm.lua's product with the GPU block size chosen by the spec
-- (threads = NT): tests/unit/test_simt.c runs it at several NT, and
-- tests/cli/bad_input.sh asks for counts that cannot work.
local T = require "tile"

return T.kernel "gemm_threads" {
  params = { M = T.size(96), N = T.size(80), K = T.size(72), BM = T.tune{64, 32}, BN = T.tune{64, 32},
             NT = T.size(256) },
  threads = function(p) return p.NT end,
  args = function(p) return {
    A = T.tensor{p.M, p.K, T.bf16},
    B = T.tensor{p.N, p.K, T.bf16},
    C = T.tensor{p.M, p.N, T.f32, out = true},
  } end,
  body = function(p, A, B, C)
    for by, bx in T.grid(T.ceildiv(p.M, p.BM), T.ceildiv(p.N, p.BN)) do
      local As  = T.shared{p.BM, 32, T.bf16}
      local Bs  = T.shared{p.BN, 32, T.bf16}
      local acc = T.fragment{p.BM, p.BN, T.f32}
      T.clear(acc)
      for k in T.pipelined(T.ceildiv(p.K, 32), 2) do
        T.copy(A:tile(by * p.BM, k * 32), As)
        T.copy(B:tile(bx * p.BN, k * 32), Bs)
        T.gemm(As, Bs, acc, { trans_b = true })
      end
      T.copy(acc, C:tile(by * p.BM, bx * p.BN))
    end
  end,
}
