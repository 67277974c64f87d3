local T = require "tile"
return T.kernel "choose_not_function" {
  params = { N = T.size(64), BN = T.tune{16, 32} },
  choose = { BN = 32 },
  args = function(p) return { x = T.tensor{p.N, T.f32, out = true} } end,
  body = function(p, x)
    for b in T.grid(p.N // p.BN) do
      for i in T.parallel(p.BN) do x[b * p.BN + i] = 1.0 end
    end
  end,
}
