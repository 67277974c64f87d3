-- Consumer of the composition tests: per block of BM rows and 128 columns,
-- the column sums of x (rows past M count as 0).  Its knobs make the
-- illegal compositions: `shift` reads one row lower, `rows` reads twice the
-- rows, `gridtile` tiles the grid's rows differently from addone's.
local T = require "tile"

return T.kernel "colsum" {
  params = { M = T.dyn, K = T.size(128), BM = T.tune{8, 4}, dtype = T.tune{"bf16", "f32"},
             shift = T.tune{0, 1}, rows = T.tune{1, 2}, gridtile = T.tune{1, 2} },
  args = function(p)
    return {
      x = T.tensor{p.M, p.K, p.dtype},
      s = T.tensor{T.ceildiv(p.M, p.BM), p.K, T.f32, out = true},
    }
  end,
  body = function(p, x, s)
    local R = p.BM * p.rows
    for bm, bk in T.grid(T.ceildiv(p.M, p.BM * p.gridtile), p.K // 128) do
      local t = T.fragment{R, 128, T.f32}
      local c = T.fragment{128, T.f32}
      T.copy(x:tile(bm * R + p.shift, bk * 128), t)
      T.reduce_sum(t, c, 0)
      T.copy(c, s:tile(bm, bk * 128, { 1, 128 }))
    end
  end,
}
