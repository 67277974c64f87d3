-- hc_post (v4-spec §3.3.2): the mHC post-mapping of one sublayer, per token,
--   X'[:, j, :] = post_j · f + Σ_i comb[i][j] · R[:, i, :]      (fp32 → bf16)
-- Output stream j sums over input streams i with comb[i][j] — X' = combᵀ·R.
--   tilec run kernels_src/hc_post.lua --set M=4 --set D=512 --check
local T = require "tile"

return T.kernel "hc_post" {
  params = { M = T.dyn, D = T.size(4096), BM = T.tune{4, 8}, BD = T.tune{512, 256} },
  args = function(p)
    T.check(p.D % p.BD == 0, ("hc_post: D = %d must be a multiple of the tile BD = %d"):format(p.D, p.BD))
    return {
      f    = T.tensor{p.M, p.D, T.bf16},        -- the sublayer's output
      r    = T.tensor{p.M, 4 * p.D, T.bf16},    -- the residual streams R[t, i, :]
      post = T.tensor{p.M, 4, T.f32},
      comb = T.tensor{p.M, 16, T.f32},          -- comb[t, 4i + j]
      x    = T.tensor{p.M, 4 * p.D, T.bf16, out = true},
    }
  end,
  body = function(p, f, r, post, comb, x)
    for bm, bd in T.grid(T.ceildiv(p.M, p.BM), p.D // p.BD) do
      local ps  = T.fragment{p.BM, 4, T.f32}
      local cs  = T.fragment{p.BM, 16, T.f32}
      local fs  = T.fragment{p.BM, p.BD, T.f32}
      local out = T.fragment{p.BM, p.BD, T.f32}
      local rs  = {}
      T.copy(post:tile(bm * p.BM, 0), ps)
      T.copy(comb:tile(bm * p.BM, 0), cs)
      T.copy(f:tile(bm * p.BM, bd * p.BD), fs)
      for i = 0, 3 do
        rs[i] = T.fragment{p.BM, p.BD, T.f32, name = "r" .. i}
        T.copy(r:tile(bm * p.BM, i * p.D + bd * p.BD), rs[i])
      end
      for j = 0, 3 do
        for t, k in T.parallel(p.BM, p.BD) do
          local mixed = cs[t][j] * rs[0][t][k] + cs[t][4 + j] * rs[1][t][k]
                      + cs[t][8 + j] * rs[2][t][k] + cs[t][12 + j] * rs[3][t][k]
          out[t][k] = ps[t][j] * fs[t][k] + mixed
        end
        T.copy(out, x:tile(bm * p.BM, j * p.D + bd * p.BD))
      end
    end
  end,
}
