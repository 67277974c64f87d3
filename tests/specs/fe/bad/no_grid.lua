local T = require "tile"
return T.kernel "no_grid" {
  params = {},
  args = function(p) return { x = T.tensor{4, T.f32} } end,
  body = function(p, x) end,
}
