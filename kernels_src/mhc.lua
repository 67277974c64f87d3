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
  local sq  = T.fragment{p.BM, p.BK, T.f32, name = "sq"} -- squares, not in xs: fuse then drops them
  local fs  = T.shared{nmix, p.BK, T.f32, name = "fs"}
  local mix = T.fragment{p.BM, nmix, T.f32, name = "mix"}
  local ss  = T.fragment{p.BM, T.f32, name = "ss"}
  T.clear(mix)
  T.clear(ss)
  for kb in T.serial(4 * p.D // p.BK) do
    T.copy(x:tile(bm * p.BM, kb * p.BK), xs)
    T.copy(fn:tile(0, kb * p.BK), fs)
    T.gemm(xs, fs, mix, { trans_b = true })
    for t, j in T.parallel(p.BM, p.BK) do sq[t][j] = xs[t][j] * xs[t][j] end
    T.reduce_sum(sq, ss, 1, { clear = false })
  end
  for t, k in T.parallel(p.BM, nmix) do
    mix[t][k] = mix[t][k] * T.rsqrt(ss[t] / (4 * p.D) + M.EPS)
  end
  return mix
end

local ITERS = 20

-- From the 24 mixes: pre (into the fragment), post and comb (to the outputs,
-- rows of block bm): pre_i = sigmoid(mix_i·scale[0] + base_i) + eps,
-- post_i = 2·sigmoid(mix_{4+i}·scale[1] + base_{4+i}), and comb by
-- Sinkhorn–Knopp: softmax over j into c, then normalise columns (c → c2),
-- rows (c2 → c) and columns (c → c2) again; the result is in c2.
function M.split_sinkhorn(p, mix, scale, base, pre, post, comb, bm)
  local EPS = M.EPS
  local c  = T.fragment{p.BM, 4, 4, T.f32, name = "c"}
  local c2 = T.fragment{p.BM, 4, 4, T.f32, name = "c2"}
  for t, i in T.parallel(p.BM, 4) do
    local row = bm * p.BM + t
    pre[t][i] = T.sigmoid(mix[t][i] * scale[0] + base[i]) + EPS
    T.if_(T.lt(row, p.M), function()
      post[row][i] = 2.0 * T.sigmoid(mix[t][4 + i] * scale[1] + base[4 + i])
    end)
  end
  for t, i, j in T.parallel(p.BM, 4, 4) do
    c2[t][i][j] = mix[t][8 + 4 * i + j] * scale[2] + base[8 + 4 * i + j]
  end
  local function row_max(b, t, i) return T.max(T.max(b[t][i][0], b[t][i][1]), T.max(b[t][i][2], b[t][i][3])) end
  local function row_sum(b, t, i) return b[t][i][0] + b[t][i][1] + b[t][i][2] + b[t][i][3] end
  local function col_sum(b, t, j) return b[t][0][j] + b[t][1][j] + b[t][2][j] + b[t][3][j] end
  for t, i, j in T.parallel(p.BM, 4, 4) do c[t][i][j] = T.exp(c2[t][i][j] - row_max(c2, t, i)) end
  for t, i, j in T.parallel(p.BM, 4, 4) do c2[t][i][j] = c[t][i][j] / row_sum(c, t, i) + EPS end
  for t, i, j in T.parallel(p.BM, 4, 4) do c[t][i][j] = c2[t][i][j] / (col_sum(c2, t, j) + EPS) end
  for t, i, j in T.parallel(p.BM, 4, 4) do c2[t][i][j] = c[t][i][j] end
  for it in T.serial(ITERS - 1) do
    for t, i, j in T.parallel(p.BM, 4, 4) do c[t][i][j] = c2[t][i][j] / (row_sum(c2, t, i) + EPS) end
    for t, i, j in T.parallel(p.BM, 4, 4) do c2[t][i][j] = c[t][i][j] / (col_sum(c, t, j) + EPS) end
  end
  for t, k in T.parallel(p.BM, 16) do
    local row = bm * p.BM + t
    T.if_(T.lt(row, p.M), function() comb[row][k] = c2[t][k // 4][k % 4] end)
  end
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
