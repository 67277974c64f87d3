local T = require "tile"
return T.kernel "if_not_bool" {
  params = { N = 64 },
  args = function(p) return {
    x = T.tensor{p.N, p.N, T.f32},
    q = T.tensor{p.N, p.N, T.i32, out = true},
    y = T.tensor{p.N, p.N, T.f32, out = true},
  } end,
  body = function(p, x, q, y)
    for b in T.grid(1) do
      for i in T.parallel(64) do
        T.if_(i + 1, function() y[i][0] = 1.0 end)
      end
    end
  end,
}
