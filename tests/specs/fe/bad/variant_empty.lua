local T = require "tile"
return T.kernel "variant_empty" {
  params = { N = T.size(64), dtype = T.variant{} },
  args = function(p) return { x = T.tensor{p.N, T.f32, out = true} } end,
  body = function(p, x)
    for b in T.grid(1) do
      for i in T.parallel(p.N) do x[i] = 1.0 end
    end
  end,
}
