-- A small kernel whose result test_frontend.c computes by hand: one row per
-- block; if/else on the parity of i + j, integer floor // and %, a row max.
local T = require "tile"
return T.kernel "semantics" {
  params = { M = T.dyn, N = 7 },
  args = function(p) return {
    x = T.tensor{p.M, p.N, T.f32},
    y = T.tensor{p.M, p.N, T.f32, out = true},
    rmax = T.tensor{p.M, T.f32, out = true},
    q = T.tensor{p.M, p.N, T.i32, out = true},
  } end,
  body = function(p, x, y, rmax, q)
    for b in T.grid(p.M) do
      local row = T.fragment{1, p.N, T.f32}
      local r = T.fragment{1, T.f32}
      T.copy(x:tile(b, 0), row)
      for j in T.parallel(p.N) do
        local v = row[0][j]
        T.if_(T.eq((b + j) % 2, 0),
              function() y[b][j] = v * 2.0 end,
              function() y[b][j] = T.select(T.gt(v, 0.0), v, -v) end)
        local n = b * p.N + j - 17
        q[b][j] = (n // 3) * 10 + n % 3
      end
      T.reduce_max(row, r, 1)
      T.copy(r, rmax:tile(b))
    end
  end,
}
