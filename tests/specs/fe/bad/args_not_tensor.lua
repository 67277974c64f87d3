local T = require "tile"
return T.kernel "args_not_tensor" {
  args = function(p) return { x = T.tensor{4, T.f32, out = true}, n = 4 } end,
  body = function(p, x)
    for b in T.grid(1) do x[b] = 1.0 end
  end,
}
