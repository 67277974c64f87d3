local T = require "tile"
return T.kernel "strides_rank" {
  args = function(p) return { x = T.tensor{4, 8, T.f32, out = true, strides = {1}} } end,
  body = function(p, x)
    for b in T.grid(1) do
      x[0][b] = 1.0
    end
  end,
}
