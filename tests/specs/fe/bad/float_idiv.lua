local T = require "tile"
return T.kernel "float_idiv" {
  params = { M = T.dyn, N = 8 },
  args = function(p) return {
    x = T.tensor{p.N, p.N, T.f32},
    y = T.tensor{p.N, T.f32, out = true},
    q = T.tensor{p.N, T.i32, out = true},
  } end,
  body = function(p, x, y, q)
    for b in T.grid(1) do
      for i in T.parallel(8) do y[i] = x[i][0] // 2 end
    end
  end,
}
