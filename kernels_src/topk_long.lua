-- Top-k over long rows (v4-spec §3.4.2 step 5 at Flash/Pro lengths: k 512
-- or 1024 of up to 262144 compressed blocks, a 1M-token context), with
-- topk.lua's semantics: the k best scores' positions, ties to the lower
-- position, −1 where fewer than k are visible (score −inf), plus an offset.
--
-- A threshold select instead of k rounds of arg-max, so the cost does not
-- grow with k:
--   1. bisection for the k-th largest value v: f32 values map monotonically
--      onto integer keys (bits for x ≥ 0, bits with the 31 low bits flipped
--      for x < 0), so 32 halvings of the key range [-FLT_MAX, +inf] find
--      the largest key whose value still has ≥ k scores at or above it.
--      Each step is one counting pass over the row in tiles (compare, 0/1
--      flags, a sum); a step that counts exactly k ends the search early.
--   2. the ties: the k − (scores > v) lowest positions holding v are
--      taken; one enumeration of the positions at v finds the last of them.
--   3. the chosen positions (> v, or == v up to that cut) in position
--      order, then −1 (fewer than k visible: v ends at -FLT_MAX).
--      Enumerating in order: each tile row's first output slot is an
--      exclusive prefix sum of the rows' counts, and only rows with a hit
--      scan their columns.
-- Work O(34·N) per row whatever k is (32 counting passes at most, then two
-- enumerations); memory one R×C tile of flags.  Comparisons are on floats,
-- so -0 and +0 tie as in a sort; NaN scores are never picked.  The output is
-- in position order (sparse attention then gathers rows in memory order),
-- not sorted by score as topk.lua's is; as a set it is a sort's first k.
--   tilec run kernels_src/topk_long.lua --set M=2 --set N=262144 --set K=1024 --repeat 5
local T = require "tile"

local KEY_LO = -2139095040 -- key of -FLT_MAX, the lowest visible score
local KEY_HI = 2139095040  -- key of +inf
local STEPS = 32           -- ceil(log2(KEY_HI - KEY_LO + 1))

-- The f32 value whose ordered key is `key` (i64 within [KEY_LO, KEY_HI]).
local function key_value(key)
  return T.bitcast(T.select(T.lt(key, 0), key ~ 0x7fffffff, key), T.f32)
end

return T.kernel "topk_long" {
  params = { M = T.dyn, N = T.size(262144), K = T.size(1024), offset = T.size(128),
             BR = T.tune{32, 64, 16, 8}, BC = T.tune{128, 256, 64} },
  args = function(p)
    T.check(p.K <= p.N, ("topk_long: k = %d is larger than the %d entries"):format(p.K, p.N))
    return {
      score = T.tensor{p.M, p.N, T.f32},
      idx   = T.tensor{p.M, p.K, T.i32, out = true},
    }
  end,
  body = function(p, score, idx)
    local C = p.BC
    local R = math.min(p.BR, (p.N + C - 1) // C)   -- short rows: a smaller tile
    local BT = R * C
    local NT = (p.N + BT - 1) // BT
    for t in T.grid(p.M) do
      local st  = T.fragment{3, T.i64}   -- bisection: lo, hi, mid (keys)
      local thr = T.fragment{1, T.f32}   -- the value under test, then v
      local fl  = T.fragment{R, C, T.f32} -- 0/1 flags of one tile
      local rs  = T.fragment{R, T.f32}   -- flags per tile row
      local ro  = T.fragment{R, T.f32}   -- each tile row's next output slot
      local cnt = T.fragment{1, T.f32}   -- a count (exact in f32 below 2^24)
      local above = T.fragment{1, T.f32} -- scores above v
      local cut = T.fragment{1, T.i64}   -- the last position taken at v

      -- fl = pred(x, n) over tile tb, rs its row sums; positions ≥ N flag 0
      local function flag_tile(tb, pred)
        for r, c in T.parallel(R, C) do
          local n = tb * BT + r * C + c
          if p.N % BT == 0 then
            fl[r][c] = T.select(pred(score[t][n], n), 1.0, 0.0)
          else
            fl[r][c] = T.select(T.and_(T.lt(n, p.N), pred(score[t][T.min(n, p.N - 1)], n)), 1.0, 0.0)
          end
        end
        T.reduce_sum(fl, rs, 1)
      end

      local function count(pred)
        T.clear(cnt)
        for tb in T.serial(NT) do
          flag_tile(tb, pred)
          T.reduce_sum(rs, cnt, 0, { clear = false })
        end
      end

      -- emit(slot, n) for the positions n where pred holds, slot = 0, 1, ...
      -- in position order: a tile row starts at the rows before it (an
      -- exclusive prefix sum), and scans its columns only if it has a hit
      -- (only if it holds slot `only`, when given).
      local function enumerate(pred, emit, only)
        T.clear(cnt)
        for tb in T.serial(NT) do
          flag_tile(tb, pred)
          for r in T.serial(R) do
            ro[r] = cnt[0]
            cnt[0] = cnt[0] + rs[r]
          end
          for r in T.parallel(R) do
            local hit = T.gt(rs[r], 0.0)
            if only then hit = T.and_(T.le(ro[r], only), T.lt(only, ro[r] + rs[r])) end
            T.if_(hit, function()
              for c in T.serial(C) do
                T.if_(T.gt(fl[r][c], 0.0), function()
                  emit(ro[r], tb * BT + r * C + c)
                  ro[r] = ro[r] + 1.0
                end)
              end
            end)
          end
        end
      end

      -- 1. the k-th largest value v (or, on an exact count, a value with
      -- exactly k scores at or above it), and how many lie strictly above:
      -- above = the count at key hi + 1, the last key that failed.
      st[0] = KEY_LO
      st[1] = KEY_HI
      above[0] = 0.0
      for _ in T.serial(STEPS) do
        T.if_(T.lt(st[0], st[1]), function()
          st[2] = (st[0] + st[1] + 1) // 2
          thr[0] = key_value(st[2])
          count(function(x) return T.ge(x, thr[0]) end)
          local hit, exact = T.ge(cnt[0], p.K * 1.0), T.eq(cnt[0], p.K * 1.0)
          st[0] = T.select(hit, st[2], st[0])
          st[1] = T.select(exact, st[2], T.select(hit, st[1], st[2] - 1))
          above[0] = T.select(exact, 0.0, T.select(hit, above[0], cnt[0]))
        end)
      end
      thr[0] = key_value(st[0])

      -- 2. ties at v are taken from the lowest position: the last one taken
      -- is the (k - above)-th (none cut when there are fewer)
      cut[0] = p.N
      local last = p.K - above[0] - 1.0
      enumerate(function(x) return T.eq(x, thr[0]) end, function(slot, n)
        T.if_(T.eq(slot, last), function() cut[0] = n end)
      end, last)

      -- 3. the chosen positions in order, then −1 (fewer than k visible)
      local chosen = function(x, n) return T.or_(T.gt(x, thr[0]), T.and_(T.eq(x, thr[0]), T.le(n, cut[0]))) end
      enumerate(chosen, function(slot, n)
        T.if_(T.lt(slot, p.K * 1.0), function() idx[t][T.cast(slot, T.i64)] = T.cast(n + p.offset, T.i32) end)
      end)
      for k in T.parallel(p.K) do
        T.if_(T.ge(T.cast(k, T.f32), cnt[0]), function() idx[t][k] = -1 end)
      end
    end
  end,
}
