local T = require "tile"
return T.kernel "store_float_to_int" {
  params = { N = 64 },
  args = function(p) return {
    x = T.tensor{p.N, p.N, T.f32},
    q = T.tensor{p.N, p.N, T.i32, out = true},
    y = T.tensor{p.N, p.N, T.f32, out = true},
  } end,
  body = function(p, x, q, y)
    for b in T.grid(1) do
      for i, j in T.parallel(64, 64) do
        q[i][j] = x[i][j] * 2.0
      end
    end
  end,
}
