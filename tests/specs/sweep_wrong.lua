-- y = x · 2, except at BM = 8, where a deliberate slip adds 1: a kernel
-- whose result depends on a tune parameter, for the sweep's test that a
-- point computing other numbers than the first fails the sweep.
local T = require "tile"

return T.kernel "sweep_wrong" {
  params = { M = T.size(16), D = T.size(64), BM = T.tune{4, 8} },
  args = function(p) return {
    x = T.tensor{p.M, p.D, T.f32},
    y = T.tensor{p.M, p.D, T.f32, out = true},
  } end,
  body = function(p, x, y)
    local slip = p.BM == 8 and 1.0 or 0.0
    for bm in T.grid(T.ceildiv(p.M, p.BM)) do
      local t = T.fragment{p.BM, p.D, T.f32}
      T.copy(x:tile(bm * p.BM, 0), t)
      for i, j in T.parallel(p.BM, p.D) do t[i][j] = t[i][j] * 2.0 + slip end
      T.copy(t, y:tile(bm * p.BM, 0))
    end
  end,
}
