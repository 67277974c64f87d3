-- The index lists of sparse attention (v4-spec §3.4 steps 9–11): for each
-- query at position p, the int32 rows of the KV it attends to,
-- [window (W) | compressed], −1 masked.
--   window: positions q = max(0, p−W+1) + i, i < W, valid while q ≤ p —
--     prefill indexes this call's rows (q), decode the ring slots (q mod W,
--     §4: oldest first);
--   SWA: nothing more;
--   HCA: every complete block j < (p+1)//ratio, at j + s in prefill (the
--     compressed rows follow the s window rows) or j + W in decode (the
--     cache is [W ring slots | compressed]); later blocks −1;
--   CSA: the indexer's top-k row, already offset by topk(_long).lua.
-- Widths (step 11): SWA W; HCA W + s//ratio (prefill) or W + (p+1)//ratio
-- of the last query (decode); CSA W + KT, where the caller sizes the top-k
-- as min(index_topk, blocks).  The window part is always W wide: the
-- reference trims it to s entries in a prefill shorter than W, where the
-- extra ones here are −1.  Prefill starts at position 0 (p = t < s); decode
-- queries sit at start_pos + t, each reading the ring as it stands after
-- its own token (one token per call, as the reference decodes).
--   tilec run kernels_src/attn_index.lua --set kind=hca --set ratio=128 --set mode=prefill --set M=300 --check
local T = require "tile"

-- One-line errors for lists the spec does not define.  start_pos and M
-- are checked where they are known at build time (--set, or an instance
-- specialised to them); as run-time values they are the caller's to keep
-- in range.
local function known(x) return type(x) == "number" end

local function check_args(p)
  if p.kind == "hca" then
    T.check(p.ratio == 128 or p.ratio == 16,
            ("attn_index: HCA compresses by 128 (16 in v4-mini), not %d"):format(p.ratio))
  elseif p.kind == "csa" then
    T.check(p.ratio == 4, ("attn_index: CSA compresses by 4, not %d"):format(p.ratio))
    T.check(p.KT <= p.S // p.ratio, ("attn_index: a top-%d is more than the %d compressed blocks of a %d-token cache")
            :format(p.KT, p.S // p.ratio, p.S))
  end
  local prefill = p.mode == "prefill"
  if prefill and known(p.start_pos) then
    T.check(p.start_pos == 0, ("attn_index: prefill starts at position 0 (its window indexes this call's rows), not %d")
            :format(p.start_pos), "continue a sequence with mode=decode")
  end
  local first = prefill and 0 or p.start_pos
  if not known(p.M) or not known(first) then return end
  local last = first + p.M - 1
  T.check(last < p.S, ("attn_index: positions %d..%d are beyond the %d-token cache"):format(first, last, p.S))
  -- step 11: a CSA list holds min(index_topk, blocks) top-k entries
  T.check(p.kind ~= "csa" or p.KT <= (last + 1) // p.ratio,
          ("attn_index: a top-%d is more than the %d blocks visible at position %d"):format(
            p.KT, (last + 1) // p.ratio, last),
          "the indexer picks min(index_topk, visible blocks); before the first block, kind=swa")
end

-- Entries after the window: how many, and (HCA) their offset.
local function compressed(p)
  if p.kind == "swa" then return 0 end
  if p.kind == "csa" then return p.KT end
  if p.mode == "prefill" then return p.M // p.ratio, p.M end
  return (p.start_pos + p.M) // p.ratio, p.W
end

return T.kernel "attn_index" {
  params = { M = T.dyn, start_pos = T.dyn, mode = T.variant{"prefill", "decode"},
             kind = T.variant{"csa", "hca", "swa"}, W = T.size(128), ratio = T.size(4),
             KT = T.size(512), S = T.size(1048576) },
  args = function(p)
    check_args(p)
    local nc = compressed(p)
    return {
      topk = p.kind == "csa" and T.tensor{p.M, p.KT, T.i32} or T.none,
      idx  = T.tensor{p.M, p.W + nc, T.i32, out = true},
    }
  end,
  -- (the optional topk last: the frontend unpacks the body's arguments up to
  -- the length of a list with holes, so an absent first one drops the rest)
  body = function(p, idx, topk)
    local decode = p.mode == "decode"
    local nc, off = compressed(p)
    for t in T.grid(p.M) do
      local pos = decode and p.start_pos + t or t
      local first = T.max(pos - (p.W - 1), 0)
      for i in T.parallel(p.W) do
        local q = first + i
        idx[t][i] = T.cast(T.select(T.le(q, pos), decode and q % p.W or q, -1), T.i32)
      end
      if p.kind == "hca" then
        local visible = (pos + 1) // p.ratio
        for j in T.parallel(nc) do
          idx[t][p.W + j] = T.cast(T.select(T.lt(j, visible), j + off, -1), T.i32)
        end
      elseif p.kind == "csa" then
        for k in T.parallel(p.KT) do idx[t][p.W + k] = topk[t][k] end
      end
    end
  end,
}
