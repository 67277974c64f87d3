local T = require "tile"
return T.kernel "dyn_scratch" {
  params = { M = T.dyn },
  args = function(p) return { x = T.tensor{p.M, T.f32} } end,
  body = function(p, x)
    for b in T.grid(1) do
      local s = T.shared{p.M, T.f32}
    end
  end,
}
