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
      local mix = mhc.mixes(p, x, fn, 24, bm)
      mhc.split_sinkhorn(p, mix, scale, base, pre, post, comb, bm)
      mhc.stream_sum(p, x, pre, y, bm)
    end
  end,
  -- On a CPU, 8 tokens per block: each block reads all of fn (24 x 4D f32,
  -- 1.5 MiB at D 4096, past L2), so half the blocks read it half as often
  -- (Zen 5, one thread: hc_pre at 16 tokens 0.094-0.099 -> 0.084-0.086 ms,
  -- 4096 tokens 37.3-37.7 -> 33.0-33.5; hc_post_pre 0.132-0.136 ->
  -- 0.127-0.128 and 49.9 -> 43.2).  A GPU keeps the first candidates.
  choose = function(p, target)
    if target.sm then return {} end
    return { BM = 8 }
  end,
}
