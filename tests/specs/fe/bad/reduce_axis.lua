local T = require "tile"
return T.kernel "reduce_axis" {
  params = { M = T.dyn, N = 8 },
  args = function(p) return {
    x = T.tensor{p.N, p.N, T.f32},
    y = T.tensor{p.N, T.f32, out = true},
    q = T.tensor{p.N, T.i32, out = true},
  } end,
  body = function(p, x, y, q)
    for b in T.grid(1) do
      local t = T.fragment{8, 8, T.f32}
      local r = T.fragment{8, T.f32}
      T.reduce_sum(t, r, 2)
    end
  end,
}
