local T = require "tile"
return T.kernel "gemm_accumulator_dtype" {
  params = { N = 64 },
  args = function(p) return {
    x = T.tensor{p.N, p.N, T.f32},
    q = T.tensor{p.N, p.N, T.i32, out = true},
    y = T.tensor{p.N, p.N, T.f32, out = true},
  } end,
  body = function(p, x, q, y)
    for b in T.grid(1) do
      local A = T.shared{64, 32, T.bf16}
      local B = T.shared{64, 32, T.bf16}
      local C = T.fragment{64, 64, T.bf16}
      T.gemm(A, B, C, { trans_b = true })
    end
  end,
}
