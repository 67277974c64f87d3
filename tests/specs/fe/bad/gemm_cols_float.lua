local T = require "tile"
return T.kernel "gemm_cols_float" {
  params = { M = T.dyn, N = 8 },
  args = function(p) return {
    x = T.tensor{p.N, p.N, T.f32},
    y = T.tensor{p.N, T.f32, out = true},
    q = T.tensor{p.N, T.i32, out = true},
  } end,
  body = function(p, x, y, q)
    for b in T.grid(1) do
      local A = T.shared{16, 8, T.f32}
      local B = T.shared{8, 32, T.f32}
      local C = T.fragment{16, 32, T.f32}
      T.gemm(A, B, C, { cols = 2.5 })
    end
  end,
}
