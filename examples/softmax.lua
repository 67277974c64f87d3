-- y[M,N] = softmax(x[M,N]) over the last axis, numerically stable.
-- One pass keeps a running max m and sum s per row (online softmax); a
-- second pass writes exp(x - m) / s.  Columns past N are masked to -inf.
--   tilec run examples/softmax.lua --check
local T = require "tile"

return T.kernel "softmax" {
  params = { M = T.size(256), N = T.size(1000), BM = T.tune{8, 4, 16}, BN = T.tune{256, 128, 512} },
  args = function(p) return {
    x = T.tensor{p.M, p.N, T.f32},
    y = T.tensor{p.M, p.N, T.f32, out = true},
  } end,
  body = function(p, x, y)
    local ntiles = T.ceildiv(p.N, p.BN)
    for bx in T.grid(T.ceildiv(p.M, p.BM)) do
      local xs = T.fragment{p.BM, p.BN, T.f32}
      local m  = T.fragment{p.BM, T.f32}   -- running row max
      local s  = T.fragment{p.BM, T.f32}   -- running sum of exp(x - m)
      local mt = T.fragment{p.BM, T.f32}   -- this tile's max, then the new max
      local st = T.fragment{p.BM, T.f32}   -- this tile's sum
      T.fill(m, -math.huge)
      T.clear(s)
      for t in T.serial(ntiles) do
        T.copy(x:tile(bx * p.BM, t * p.BN), xs)
        for i, j in T.parallel(p.BM, p.BN) do
          xs[i][j] = T.select(T.lt(t * p.BN + j, p.N), xs[i][j], -math.huge)
        end
        T.reduce_max(xs, mt, 1)
        for i in T.parallel(p.BM) do mt[i] = T.max(m[i], mt[i]) end
        for i, j in T.parallel(p.BM, p.BN) do xs[i][j] = T.exp(xs[i][j] - mt[i]) end
        T.reduce_sum(xs, st, 1)
        for i in T.parallel(p.BM) do
          s[i] = s[i] * T.exp(m[i] - mt[i]) + st[i]
          m[i] = mt[i]
        end
      end
      for t in T.serial(ntiles) do
        T.copy(x:tile(bx * p.BM, t * p.BN), xs)
        for i, j in T.parallel(p.BM, p.BN) do xs[i][j] = T.exp(xs[i][j] - m[i]) / s[i] end
        T.copy(xs, y:tile(bx * p.BM, t * p.BN))
      end
    end
  end,
}
