-- The indexer's selection (v4-spec §3.4.2 step 5): per query, the K best
-- scores' positions (ties to the lower position), −1 where fewer than K
-- are visible (score −inf), plus an offset (s in prefill, 128 in decode:
-- the compressed rows follow the window rows).  K rounds of (row max,
-- lowest position at it, mask it) over the whole row held in a fragment —
-- simple and exact, O(K·N); topk_long.lua selects in O(N) passes for
-- rows beyond one fragment (up to 262144).
--   tilec run kernels_src/topk.lua --set M=2 --set N=512 --set K=16 --check
local T = require "tile"

return T.kernel "topk" {
  params = { M = T.dyn, N = T.size(4096), K = T.size(512), offset = T.size(128) },
  args = function(p)
    T.check(p.K <= p.N, ("topk: k = %d is larger than the %d entries"):format(p.K, p.N))
    T.check(p.N * 4 <= 64 * 1024, ("topk: a row of %d scores does not fit one fragment (16384 at most)"):format(p.N))
    return {
      score = T.tensor{p.M, p.N, T.f32},
      idx   = T.tensor{p.M, p.K, T.i32, out = true},
    }
  end,
  body = function(p, score, idx)
    for t in T.grid(p.M) do
      local sel  = T.fragment{1, p.N, T.f32}
      local cand = T.fragment{1, p.N, T.f32}
      local m    = T.fragment{1, T.f32}
      local at   = T.fragment{1, T.f32}
      T.copy(score:tile(t, 0), sel)
      for k in T.serial(p.K) do
        T.reduce_max(sel, m, 1)
        for i, n in T.parallel(1, p.N) do
          cand[i][n] = T.select(T.eq(sel[i][n], m[i]), T.cast(n, T.f32), p.N * 1.0)
        end
        T.reduce_min(cand, at, 1)
        local pick = T.cast(at[0], T.i64)
        idx[t][k] = T.cast(T.select(T.eq(m[0], -math.huge), -1, pick + p.offset), T.i32)
        for i, n in T.parallel(1, p.N) do
          sel[i][n] = T.select(T.eq(T.cast(n, T.f32), at[i]), -math.huge, sel[i][n])
        end
      end
    end
  end,
}
