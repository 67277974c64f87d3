-- The indexer's selection (v4-spec §3.4.2 step 5): per query, the K best
-- scores' positions (ties to the lower position), −1 where fewer than K
-- are visible (score −inf), plus an offset (s in prefill, 128 in decode:
-- the compressed rows follow the window rows).  K rounds of (row max,
-- lowest position at it, mask it), exact and in score order, over the row
-- held in BLK-wide blocks with each block's max kept beside it: a round
-- reads the N/BLK block maxima and one block, not the whole row (N=4096,
-- K=512, 16 rows on x86-avx2, one thread: 10.8 ms when every round swept
-- the row).  topk_long.lua selects in O(N) passes for rows beyond one
-- fragment (up to 262144), in position order.
--   tilec run kernels_src/topk.lua --set M=2 --set N=512 --set K=16 --check
local T = require "tile"

return T.kernel "topk" {
  params = { M = T.dyn, N = T.size(4096), K = T.size(512), offset = T.size(128), BLK = T.tune{32, 64, 16, 128} },
  args = function(p)
    T.check(p.K <= p.N, ("topk: k = %d is larger than the %d entries"):format(p.K, p.N))
    T.check(p.N * 4 <= 64 * 1024, ("topk: a row of %d scores does not fit one fragment (16384 at most)"):format(p.N))
    return {
      score = T.tensor{p.M, p.N, T.f32},
      idx   = T.tensor{p.M, p.K, T.i32, out = true},
    }
  end,
  body = function(p, score, idx)
    local BLK = p.BLK
    local NB = (p.N + BLK - 1) // BLK
    for t in T.grid(p.M) do
      local sel  = T.shared{NB, BLK, T.f32}  -- the row by blocks; −inf past N and where picked
      local bmax = T.fragment{1, NB, T.f32}  -- each block's max
      local cand = T.fragment{1, NB, T.f32}  -- a block's number where its max is the row's
      local blk  = T.fragment{1, BLK, T.f32} -- one block: positions at the max, then its new values
      local m    = T.fragment{1, T.f32}
      local at   = T.fragment{1, T.f32}
      local pos  = T.fragment{1, T.f32}
      local nmax = T.fragment{1, T.f32}
      for b in T.serial(NB) do
        T.copy(score:tile(t, b * BLK, { 1, BLK }), sel:tile(b, 0, { 1, BLK }))
      end
      for b, j in T.parallel(NB, BLK) do
        sel[b][j] = T.select(T.lt(b * BLK + j, p.N), sel[b][j], -math.huge)
      end
      for b in T.serial(NB) do
        T.reduce_max(sel:tile(b, 0, { 1, BLK }), m, 1)
        bmax[0][b] = m[0]
      end
      for k in T.serial(p.K) do
        T.reduce_max(bmax, m, 1)
        for i, b in T.parallel(1, NB) do
          cand[i][b] = T.select(T.eq(bmax[i][b], m[i]), T.cast(b, T.f32), NB * 1.0)
        end
        T.reduce_min(cand, at, 1)
        -- the lowest block at the max (clamped: a NaN max matches none)
        local b = T.min(T.cast(at[0], T.i64), NB - 1)
        for i, j in T.parallel(1, BLK) do
          blk[i][j] = T.select(T.eq(sel[b][j], m[i]), T.cast(j, T.f32), BLK * 1.0)
        end
        T.reduce_min(blk, pos, 1)
        local pick = b * BLK + T.cast(pos[0], T.i64)
        idx[t][k] = T.cast(T.select(T.eq(m[0], -math.huge), -1, pick + p.offset), T.i32)
        for i, j in T.parallel(1, BLK) do
          blk[i][j] = T.select(T.eq(T.cast(j, T.f32), pos[i]), -math.huge, sel[b][j])
        end
        for i, j in T.parallel(1, BLK) do sel[b][j] = blk[i][j] end
        T.reduce_max(blk, nmax, 1)
        bmax[0][b] = nmax[0]
      end
    end
  end,
}
