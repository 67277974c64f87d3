-- Absent (T.none) arguments before present ones: the body still gets every
-- present argument at its own place.
local T = require "tile"

return T.kernel "absent_args" {
  params = { N = T.size(8) },
  args = function(p) return {
    a = T.none,
    w = T.none,
    b = T.tensor{p.N, T.f32},
    v = T.none,
    out = T.tensor{p.N, T.f32, out = true},
  } end,
  body = function(p, a, w, b, v, out)
    assert(a == nil and w == nil and v == nil, "absent arguments are nil")
    for i in T.grid(p.N) do out[i] = b[i] * 2.0 end
  end,
}
