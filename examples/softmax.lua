-- y[M,N] = softmax(x[M,N]) over the last axis, numerically stable.
-- One pass keeps a running max m and sum s per row (online softmax); a
-- second pass writes exp(x - m) / s.  Columns past N are masked to -inf.
-- When one tile spans the row (BN >= N), the first pass works in e and
-- leaves x's tile as loaded, so the second pass's copy of it is the first
-- one's: pass_reuse drops it and x is read once.  (With several tiles it
-- works in place: the second pass loads each tile again anyway.)
--   tilec run examples/softmax.lua --check
local T = require "tile"

return T.kernel "softmax" {
  params = { M = T.size(256), N = T.size(1000), BM = T.tune{8, 4, 16, 1, 2},
             BN = T.tune{256, 128, 512, 1024, 2048, 4096} },
  args = function(p) return {
    x = T.tensor{p.M, p.N, T.f32},
    y = T.tensor{p.M, p.N, T.f32, out = true},
  } end,
  -- On a GPU, rows of up to 4096 take one tile each (one row per block),
  -- so x is read once; the CPU keeps 256-wide tiles, whose second read
  -- hits its cache.
  choose = function(p, target)
    if not target.sm or p.N > 4096 then return {} end
    for _, c in ipairs{128, 256, 512, 1024, 2048, 4096} do
      if p.N <= c then return { BM = 1, BN = c } end
    end
  end,
  body = function(p, x, y)
    local ntiles = T.ceildiv(p.N, p.BN)
    for bx in T.grid(T.ceildiv(p.M, p.BM)) do
      local xs = T.fragment{p.BM, p.BN, T.f32}
      local e  = ntiles == 1 and T.fragment{p.BM, p.BN, T.f32} or xs
      local m  = T.fragment{p.BM, T.f32}   -- running row max
      local s  = T.fragment{p.BM, T.f32}   -- running sum of exp(x - m)
      local mt = T.fragment{p.BM, T.f32}   -- this tile's max, then the new max
      local st = T.fragment{p.BM, T.f32}   -- this tile's sum
      T.fill(m, -math.huge)
      T.clear(s)
      for t in T.serial(ntiles) do
        T.copy(x:tile(bx * p.BM, t * p.BN), xs)
        for i, j in T.parallel(p.BM, p.BN) do
          e[i][j] = T.select(T.lt(t * p.BN + j, p.N), xs[i][j], -math.huge)
        end
        T.reduce_max(e, mt, 1)
        for i in T.parallel(p.BM) do mt[i] = T.max(m[i], mt[i]) end
        for i, j in T.parallel(p.BM, p.BN) do e[i][j] = T.exp(e[i][j] - mt[i]) end
        T.reduce_sum(e, st, 1)
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
