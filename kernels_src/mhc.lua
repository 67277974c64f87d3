-- mhc.lua — the pieces hc_pre and hc_head share (a Lua module that builds
-- IR inside the caller's grid; not a kernel).
local T = require "tile"

local M = {}

M.EPS = 1e-6

-- mix[t, k] = (xf[t] · fn[k]) · rsqrt(mean(xf[t]²) + 1e-6) for the BM tokens
-- of block bm, k < nmix: one pass over the 4·D flattened streams feeds
-- both the mixing GEMM and the sum of squares.  Returns the mix fragment.
function M.mixes(p, x, fn, nmix, bm)
  local xs  = T.fragment{p.BM, p.BK, T.f32, name = "xs"}
  local fs  = T.shared{nmix, p.BK, T.f32, name = "fs"}
  local mix = T.fragment{p.BM, nmix, T.f32, name = "mix"}
  local ss  = T.fragment{p.BM, T.f32, name = "ss"}
  T.clear(mix)
  T.clear(ss)
  for kb in T.serial(4 * p.D // p.BK) do
    T.copy(x:tile(bm * p.BM, kb * p.BK), xs)
    T.copy(fn:tile(0, kb * p.BK), fs)
    T.gemm(xs, fs, mix, { trans_b = true })
    for t, j in T.parallel(p.BM, p.BK) do xs[t][j] = xs[t][j] * xs[t][j] end
    T.reduce_sum(xs, ss, 1, { clear = false })
  end
  for t, k in T.parallel(p.BM, nmix) do
    mix[t][k] = mix[t][k] * T.rsqrt(ss[t] / (4 * p.D) + M.EPS)
  end
  return mix
end

-- y[t, :] = bf16(Σ_i pre[t, i] · X[t, i, :]) for the block's tokens.
function M.stream_sum(p, x, pre, y, bm)
  local xs = T.fragment{p.BM, p.BK, T.f32, name = "xi"}
  local ys = T.fragment{p.BM, p.BK, T.f32, name = "ys"}
  for db in T.serial(p.D // p.BK) do
    T.clear(ys)
    for i = 0, 3 do
      T.copy(x:tile(bm * p.BM, i * p.D + db * p.BK), xs)
      for t, j in T.parallel(p.BM, p.BK) do ys[t][j] = ys[t][j] + pre[t][i] * xs[t][j] end
    end
    T.copy(ys, y:tile(bm * p.BM, db * p.BK))
  end
end

return M
