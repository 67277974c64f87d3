-- hc_pre (v4-spec §3.3.1): the mHC pre-mapping of one sublayer, per token.
--   r = rsqrt(mean(xf²) + 1e-6) over the 4 streams flattened (4·D values),
--   mixes = (xf · fnᵀ) · r                                   (24 values),
--   pre_i  = sigmoid(mixes[i]·scale[0] + base[i]) + eps      (i < 4),
--   post_i = 2·sigmoid(mixes[4+i]·scale[1] + base[4+i]),
--   C0[i][j] = mixes[8+4i+j]·scale[2] + base[8+4i+j],
--   comb = Sinkhorn(C0): softmax over j, + eps, then column, (row, column)×19,
--   y = bf16(Σ_i pre_i · X[:, i, :]).
-- One kernel: the 24-wide mixing GEMM and the sum of squares share one pass
-- over X; Sinkhorn runs in registers-sized fragments; a second pass makes y.
--   tilec run kernels_src/hc_pre.lua --set M=4 --set D=512 --check
local T = require "tile"
local mhc = require "mhc"

local EPS = mhc.EPS
local ITERS = 20

return T.kernel "hc_pre" {
  params = { M = T.dyn, D = T.size(4096), BM = T.tune{4, 8}, BK = T.tune{512, 256} },
  args = function(p)
    T.check(4 * p.D % p.BK == 0 and p.D % p.BK == 0,
            ("hc_pre: D = %d must be a multiple of the tile BK = %d"):format(p.D, p.BK))
    return {
      x     = T.tensor{p.M, 4 * p.D, T.bf16},   -- X[t, i, :] is x[t, i·D .. (i+1)·D)
      fn    = T.tensor{24, 4 * p.D, T.f32},
      scale = T.tensor{3, T.f32},
      base  = T.tensor{24, T.f32},
      y     = T.tensor{p.M, p.D, T.bf16, out = true},
      post  = T.tensor{p.M, 4, T.f32, out = true},
      comb  = T.tensor{p.M, 16, T.f32, out = true}, -- comb[t, 4i + j] = C[i][j]
    }
  end,
  body = function(p, x, fn, scale, base, y, post, comb)
    for bm in T.grid(T.ceildiv(p.M, p.BM)) do
      local pre = T.fragment{p.BM, 4, T.f32}
      local c   = T.fragment{p.BM, 4, 4, T.f32}
      local c2  = T.fragment{p.BM, 4, 4, T.f32}
      local mix = mhc.mixes(p, x, fn, 24, bm)
      for t, i in T.parallel(p.BM, 4) do
        local row = bm * p.BM + t
        pre[t][i] = T.sigmoid(mix[t][i] * scale[0] + base[i]) + EPS
        T.if_(T.lt(row, p.M), function()
          post[row][i] = 2.0 * T.sigmoid(mix[t][4 + i] * scale[1] + base[4 + i])
        end)
      end
      -- Sinkhorn: softmax over j into c, then normalise columns (c → c2),
      -- rows (c2 → c) and columns (c → c2) again; the result is in c2.
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
      mhc.stream_sum(p, x, pre, y, bm)
    end
  end,
}
