-- The max of each row of x: a long max reduction, which codegen runs with
-- 4 vector accumulators (exact in any order; one would be a chain of
-- dependent maxima).
local T = require "tile"
return T.kernel "row_max" {
  params = { M = T.dyn, N = T.size(4096) },
  args = function(p) return {
    x = T.tensor{p.M, p.N, T.f32},
    y = T.tensor{p.M, T.f32, out = true},
  } end,
  body = function(p, x, y)
    for t in T.grid(p.M) do
      local r = T.fragment{1, p.N, T.f32}
      local m = T.fragment{1, T.f32}
      T.copy(x:tile(t, 0), r)
      T.reduce_max(r, m, 1)
      y[t] = m[0]
    end
  end,
}
