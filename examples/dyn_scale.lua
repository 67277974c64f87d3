-- y = 2·x + 1 with a row count M known only at run time (T.dyn): the
-- grid and the bounds check use M; `tilec run` takes it from x's shape.
--   tilec run examples/dyn_scale.lua --set M=37 --check
--   tilec run examples/dyn_scale.lua --in x=x.npy --out y=y.npy
local T = require "tile"

return T.kernel "dyn_scale" {
  params = { M = T.dyn, N = T.size(100), BM = T.tune{16, 8} },
  args = function(p) return {
    x = T.tensor{p.M, p.N, T.f32},
    y = T.tensor{p.M, p.N, T.f32, out = true},
  } end,
  body = function(p, x, y)
    for bx in T.grid(T.ceildiv(p.M, p.BM)) do
      for i, j in T.parallel(p.BM, p.N) do
        local row = bx * p.BM + i
        T.if_(T.lt(row, p.M), function()
          y[row][j] = x[row][j] * 2.0 + 1.0
        end)
      end
    end
  end,
}
