-- y = the last 8 elements of x, which holds 8 + PAD (PAD a tune
-- parameter): PAD zeros, then 1 to 8 (the spec's inputs). Every point
-- computes 1 to 8 from inputs of its own shape — the sweep's test that a
-- point whose input is another shape than the others' makes its own
-- rather than copying theirs (read at PAD = 24, a copy of PAD = 8's
-- would give zeros or garbage).
local T = require "tile"

return T.kernel "sweep_shapes" {
  params = { PAD = T.tune{8, 24} },
  args = function(p) return {
    x = T.tensor{8 + p.PAD, T.f32},
    y = T.tensor{8, T.f32, out = true},
  } end,
  inputs = function(p)
    local x = {}
    for k = 1, 8 + p.PAD do x[k] = k > p.PAD and k - p.PAD or 0 end
    return { x = x }
  end,
  body = function(p, x, y)
    for b in T.grid(1) do
      for i in T.parallel(8) do y[i] = x[p.PAD + i] end
    end
  end,
}
