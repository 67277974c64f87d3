-- y[M,N] = w[N] · x[M,N] / sqrt(mean(x²) + 1e-6), per row.
-- Two passes over each row: the sum of squares, then the scaling.  x's
-- tile is squared into another buffer, not in place, so that when one
-- tile spans the row (BN >= N) the second pass's copy of it is the first
-- one's, still in xs: pass_reuse drops it and x is read once.
--   tilec run examples/rmsnorm.lua --check
local T = require "tile"

return T.kernel "rmsnorm" {
  params = { M = T.size(256), N = T.size(1000), BM = T.tune{8, 4, 16, 1, 2},
             BN = T.tune{256, 128, 512, 1024, 2048, 4096} },
  args = function(p) return {
    x = T.tensor{p.M, p.N, T.f32},
    w = T.tensor{p.N, T.f32},
    y = T.tensor{p.M, p.N, T.f32, out = true},
  } end,
  -- On a GPU, rows of up to 4096 take one tile each (one row per block:
  -- 4096 f32 over 128 threads is 32 values each), so x is read once; the
  -- CPU keeps 256-wide tiles, whose second read hits its cache.
  choose = function(p, target)
    if not target.sm or p.N > 4096 then return {} end
    for _, c in ipairs{128, 256, 512, 1024, 2048, 4096} do
      if p.N <= c then return { BM = 1, BN = c } end
    end
  end,
  body = function(p, x, w, y)
    local ntiles = T.ceildiv(p.N, p.BN)
    for bx in T.grid(T.ceildiv(p.M, p.BM)) do
      local xs = T.fragment{p.BM, p.BN, T.f32}
      local sq = T.fragment{p.BM, p.BN, T.f32}
      local ws = T.fragment{p.BN, T.f32}
      local ss = T.fragment{p.BM, T.f32}   -- sum of squares, then 1/rms
      T.clear(ss)
      for t in T.serial(ntiles) do
        T.copy(x:tile(bx * p.BM, t * p.BN), xs)   -- columns past N read 0
        for i, j in T.parallel(p.BM, p.BN) do sq[i][j] = xs[i][j] * xs[i][j] end
        T.reduce_sum(sq, ss, 1, { clear = false })
      end
      for i in T.parallel(p.BM) do ss[i] = T.rsqrt(ss[i] / p.N + 1e-6) end
      for t in T.serial(ntiles) do
        T.copy(x:tile(bx * p.BM, t * p.BN), xs)
        T.copy(w:tile(t * p.BN), ws)
        for i, j in T.parallel(p.BM, p.BN) do xs[i][j] = ws[j] * xs[i][j] * ss[i] end
        T.copy(xs, y:tile(bx * p.BM, t * p.BN))
      end
    end
  end,
}
