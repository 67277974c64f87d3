-- moe_dispatch.lua — MoE dispatch on one rank (v4-spec §3.5, issue 6): the
-- pieces its kernels share (a Lua module, not a kernel).
--
-- From the gate's top-k expert ids idx[T, k] it lays the T·k (token, slot)
-- pairs out expert by expert — inside an expert by token, then slot — and
-- moves the tokens' FP8 rows into that order.  Four launches:
--   moe_count    per block of BT tokens: how many of its pairs go to each
--                expert                                    → cnt[NB, E]
--   moe_offsets  one block: counts[e], exclusive offsets[e] (offsets[E] is
--                the number of rows placed), and each token block's first
--                row per expert, base[b, e] = offsets[e] + Σ_{b'<b} cnt[b', e]
--   moe_place    per token block: row(t, s) = base[b, e] + the pair's rank
--                among the block's earlier pairs of expert e; src[row] = t,
--                wr[row] = w[t, s]                         (the layout ends here)
--   moe_gather   per block of rows: xe[r] = x[src[r]], se[r] = xs[src[r]]
-- and moe_combine sums each token's rows back.  moe_gather and moe_combine
-- are the only kernels that move activations, and they read only src and
-- row: a multi-rank version replaces those two with communication and keeps
-- the layout.  Counts are exact sums and a pair's row follows from the
-- (token, slot) order alone, so the layout does not depend on how the
-- blocks are scheduled.
--
-- Counts are summed in f32 (reductions are float): exact up to 2^24 rows.
-- An id outside [0, E) cannot raise an error from inside a kernel; such a
-- pair is not routed (row −1, counted nowhere), so offsets[E] < T·k tells
-- the caller, and the rows past offsets[E] get src −1, weight 0.
local T = require "tile"

local MD = {}

MD.BT = 8 -- tokens per block of moe_count and moe_place (they must agree)

-- Rows are counted and ranked in f32: exact up to 2^24.
MD.MAX_ROWS = 1 << 24

-- The shape constraints of the layout kernels.  The row limit is checked
-- where the token count is fixed at build time (--set M); a dyn M cannot be.
function MD.check(p, name)
  T.check(p.TOPK <= p.E, ("%s: top-k %d is larger than the %d experts"):format(name, p.TOPK, p.E))
  MD.check_rows(p, name)
end

function MD.check_rows(p, name)
  if math.type(p.M) == "integer" then
    T.check(p.M * p.TOPK <= MD.MAX_ROWS, ("%s: %d tokens x top-%d = %d rows; rows are counted in f32, exact up to %d"):format(
      name, p.M, p.TOPK, p.M * p.TOPK, MD.MAX_ROWS), "dispatch the tokens in parts")
  end
end

-- Token blocks of the layout kernels.
function MD.blocks(p) return T.ceildiv(p.M, MD.BT) end

-- The expert of each of block b's BT·k pairs (pair q = token b·BT + q // k,
-- slot q % k), −1 for pairs past the last token and for ids outside [0, E).
function MD.chunk_experts(p, idx, b)
  local ex = T.fragment{MD.BT * p.TOPK, T.i32, name = "ex"}
  for q in T.parallel(MD.BT * p.TOPK) do
    local t = b * MD.BT + q // p.TOPK
    local e = idx[T.min(t, p.M - 1)][q % p.TOPK]     -- tail pairs read a valid row, then drop it
    ex[q] = T.select(T.and_(T.lt(t, p.M), T.and_(T.le(0, e), T.lt(e, p.E))), e, -1)
  end
  return ex
end

return MD
