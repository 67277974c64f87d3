local T = require "tile"
return T.kernel "params_not_table" {
  params = 5,
  args = function(p) return { x = T.tensor{4, T.f32, out = true} } end,
  body = function(p, x)
    for b in T.grid(1) do x[b] = 1.0 end
  end,
}
