local T = require "tile"
return T.kernel "size_zero" {
  params = { N = T.size(0) },
  args = function(p) return { x = T.tensor{p.N, T.f32, out = true} } end,
  body = function(p, x)
    for b in T.grid(1) do x[b] = 1.0 end
  end,
}
