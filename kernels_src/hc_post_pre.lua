-- hc_post of one layer fused with hc_pre of the next (v4-spec §3.3.2 then
-- §3.3.1; production's fused post/pre, "Mega mHC"): each tile of
--   X' = post·f + combᵀ·R
-- is rounded to bf16 and stored (it is the next residual), and while it is
-- still in registers it feeds the next hc_pre's 24-wide mixing GEMM and sum
-- of squares; only y = Σ pre_i X'_i reads X' back (from cache).
--   tilec run kernels_src/hc_post_pre.lua --set M=4 --set D=512 --check
local T = require "tile"
local mhc = require "mhc"

return T.kernel "hc_post_pre" {
  params = { M = T.dyn, D = T.size(4096), BM = T.tune{4, 8}, BK = T.tune{512, 256} },
  args = function(p)
    T.check(p.D % p.BK == 0, ("hc_post_pre: D = %d must be a multiple of the tile BK = %d"):format(p.D, p.BK))
    return {
      f     = T.tensor{p.M, p.D, T.bf16},          -- this layer's sublayer output
      r     = T.tensor{p.M, 4 * p.D, T.bf16},      -- this layer's residual streams
      post  = T.tensor{p.M, 4, T.f32},
      comb  = T.tensor{p.M, 16, T.f32},
      fn    = T.tensor{24, 4 * p.D, T.f32},        -- the next hc_pre's parameters
      scale = T.tensor{3, T.f32},
      base  = T.tensor{24, T.f32},
      x     = T.tensor{p.M, 4 * p.D, T.bf16, out = true},   -- X', the next residual
      y     = T.tensor{p.M, p.D, T.bf16, out = true},
      post2 = T.tensor{p.M, 4, T.f32, out = true},
      comb2 = T.tensor{p.M, 16, T.f32, out = true},
    }
  end,
  body = function(p, f, r, post, comb, fn, scale, base, x, y, post2, comb2)
    for bm in T.grid(T.ceildiv(p.M, p.BM)) do
      local ps  = T.fragment{p.BM, 4, T.f32}
      local cs  = T.fragment{p.BM, 16, T.f32}
      local fsrc = T.fragment{p.BM, p.BK, T.f32}
      local xt  = T.fragment{p.BM, p.BK, T.f32}
      local sq  = T.fragment{p.BM, p.BK, T.f32}
      local fs  = T.shared{24, p.BK, T.f32}
      local mix = T.fragment{p.BM, 24, T.f32}
      local ss  = T.fragment{p.BM, T.f32}
      local pre = T.fragment{p.BM, 4, T.f32}
      local rs  = {}
      for i = 0, 3 do rs[i] = T.fragment{p.BM, p.BK, T.f32, name = "r" .. i} end
      T.copy(post:tile(bm * p.BM, 0), ps)
      T.copy(comb:tile(bm * p.BM, 0), cs)
      T.clear(mix)
      T.clear(ss)
      for db in T.serial(p.D // p.BK) do
        T.copy(f:tile(bm * p.BM, db * p.BK), fsrc)
        for i = 0, 3 do T.copy(r:tile(bm * p.BM, i * p.D + db * p.BK), rs[i]) end
        for j = 0, 3 do
          for t, k in T.parallel(p.BM, p.BK) do
            local mixed = cs[t][j] * rs[0][t][k] + cs[t][4 + j] * rs[1][t][k]
                        + cs[t][8 + j] * rs[2][t][k] + cs[t][12 + j] * rs[3][t][k]
            xt[t][k] = T.cast(ps[t][j] * fsrc[t][k] + mixed, T.bf16)
          end
          T.copy(xt, x:tile(bm * p.BM, j * p.D + db * p.BK))
          T.copy(fn:tile(0, j * p.D + db * p.BK), fs)
          T.gemm(xt, fs, mix, { trans_b = true })
          for t, k in T.parallel(p.BM, p.BK) do sq[t][k] = xt[t][k] * xt[t][k] end
          T.reduce_sum(sq, ss, 1, { clear = false })
        end
      end
      for t, k in T.parallel(p.BM, 24) do
        mix[t][k] = mix[t][k] * T.rsqrt(ss[t] / (4 * p.D) + mhc.EPS)
      end
      mhc.split_sinkhorn(p, mix, scale, base, pre, post2, comb2, bm)
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
