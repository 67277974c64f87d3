local T = require "tile"
return T.kernel "reduce_shape" {
  params = { N = 64 },
  args = function(p) return {
    x = T.tensor{p.N, p.N, T.f32},
    q = T.tensor{p.N, p.N, T.i32, out = true},
    y = T.tensor{p.N, p.N, T.f32, out = true},
  } end,
  body = function(p, x, q, y)
    for b in T.grid(1) do
      local t = T.fragment{8, 16, T.f32}
      local r = T.fragment{16, T.f32}
      T.reduce_sum(t, r, 1)
    end
  end,
}
