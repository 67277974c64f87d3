-- A spec whose `inputs` gives an index argument its values: y[i] = x[ids[i]]
-- needs ids in [0, N), which random integers (0-15) would leave.
local T = require "tile"
return T.kernel "sample_inputs" {
  params = { N = T.dyn },
  args = function(p)
    return { x = T.tensor{p.N, T.f32}, ids = T.tensor{p.N, T.i32}, y = T.tensor{p.N, T.f32, out = true} }
  end,
  inputs = function(p)
    local ids = {}
    for i = 1, p.N do ids[i] = (i * 3) % p.N end
    return { ids = ids }
  end,
  body = function(p, x, ids, y)
    for b in T.grid(p.N) do y[b] = x[ids[b]] + T.cast(ids[b], T.f32) * 10.0 end
  end,
}
