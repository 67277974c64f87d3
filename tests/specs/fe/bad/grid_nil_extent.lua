local T = require "tile"
return T.kernel "grid_nil_extent" {
  params = { M = T.dyn, N = 8 },
  args = function(p) return {
    x = T.tensor{p.N, p.N, T.f32},
    y = T.tensor{p.N, T.f32, out = true},
    q = T.tensor{p.N, T.i32, out = true},
  } end,
  body = function(p, x, y, q)
    -- p.G is not a parameter: the extent is nil
    for b in T.grid(p.G) do end
  end,
}
