local T = require "tile"
return T.kernel "body_param" {
  args = function(p) return { x = T.tensor{4, T.f32} } end,
  body = function(p, X)
    for b in T.grid(1) do end
  end,
}
