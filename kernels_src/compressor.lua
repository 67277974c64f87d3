-- compressor.lua — the pieces the compressor's specs share (v4-spec §3.4.1;
-- a Lua module that builds IR inside the caller's grid, not a kernel): the
-- configuration checks, the per-channel softmax pooling over a block's
-- slots, where the slots come from in a bulk prefill and in the streaming
-- state, the emit chain on one pooled entry, and the prefill's state fill.
-- compress.lua, compress_proj.lua, compress_prefill.lua and
-- compress_decode.lua use it.
local T = require "tile"
local Q = require "quant"
local R = require "rotate"

local C = {}

C.EPS = 1e-6 -- the compressor norm's eps (rms_norm_eps, §1)

-- CSA (ratio 4) overlaps: its projections are two D-wide halves and a block
-- pools 2r slots; HCA (128, v4-mini 16) pools its r tokens.
function C.overlap(p) return p.ratio == 4 end
function C.halves(p) return C.overlap(p) and 2 or 1 end
function C.nslots(p) return C.overlap(p) and 2 * p.ratio or p.ratio end

function C.check_ratio(p, who)
  T.check(p.ratio == 4 or p.ratio == 128 or p.ratio == 16,
          ("%s: the compress ratio is 4 (CSA), 128 (HCA) or 16 (v4-mini's HCA), not %d"):format(who, p.ratio))
end

-- kind = "attn": the attention compressor, D = head_dim (nope dims in
-- 64-wide FP8 blocks, then 64 rope dims); kind = "index": the indexer's,
-- D = 128, ratio 4, Hadamard + FP4.
function C.check(p, who)
  C.check_ratio(p, who)
  if p.kind == "index" then
    T.check(p.D == 128, ("%s: the indexer's compressor has D = 128, not %d"):format(who, p.D))
    T.check(p.ratio == 4, ("%s: the indexer's compressor has ratio 4, not %d"):format(who, p.ratio))
  else
    T.check(p.D == 512 or p.D == 192,
            ("%s: the attention compressor has D = 512 (448 nope + 64 rope; v4-mini 192 = 128 + 64), not %d"):format(
              who, p.D))
  end
end

-- The cache holds S positions: S // r rows, and the entry of a block that
-- ends at position p goes to row p // r, so S must be whole blocks.
function C.check_cache(p, who)
  T.check(p.S % p.ratio == 0, ("%s: a %d-token cache is not whole blocks of %d"):format(who, p.S, p.ratio))
end

-- y[0, j] = Σ_s softmax_s(score_s[j]) · value_s[j] for channels j < width
-- over nslots slots, slot(s, j) giving (score, value): a max pass, then the
-- exponentials' sums.  Returns y, a [1, width] f32 fragment.
function C.pool(width, nslots, slot)
  local mx  = T.fragment{width, T.f32, name = "mx"}
  local den = T.fragment{width, T.f32, name = "den"}
  local y   = T.fragment{1, width, T.f32, name = "pooled"}
  T.fill(mx, -math.huge)
  T.clear(den)
  T.clear(y)
  for s in T.serial(nslots) do
    for j in T.parallel(width) do mx[j] = T.max(mx[j], (slot(s, j))) end
  end
  for s in T.serial(nslots) do
    for j in T.parallel(width) do
      local score, value = slot(s, j)
      local e = T.exp(score - mx[j])
      den[j] = den[j] + e
      y[0][j] = y[0][j] + e * value
    end
  end
  for j in T.parallel(width) do y[0][j] = y[0][j] / den[j] end
  return y
end

-- Slot s of block n in a bulk prefill, channel d < D, from the projections
-- kv, g [tokens, c·D] and ape [r, c·D].  Without overlap the slots are the
-- block's tokens; with it, slots < r are the previous block's tokens
-- through the first half [:D] (kv 0, score −inf before block 0) and slots
-- ≥ r this block's through the second half [D:].
function C.bulk_slot(p, kv, g, ape, n, s, d)
  local r = p.ratio
  if not C.overlap(p) then
    local row = n * r + s
    return g[row][d] + ape[s][d], kv[row][d]
  end
  local prev = T.lt(s, r)
  local tok = T.select(prev, (n - 1) * r + s, n * r + s - r)
  local col = T.select(prev, d, p.D + d)
  local a = T.select(prev, s, s - r)
  local row = T.max(tok, 0)                        -- block 0 reads a valid row, then masks it
  local valid = T.or_(T.not_(prev), T.ge(n, 1))
  return T.select(valid, g[row][col] + ape[a][col], -math.huge), T.select(valid, kv[row][col], 0.0)
end

-- Slot s, channel d, of the streaming state [c·r, c·D] at an emit: the
-- state's scores already hold ape.  With overlap the previous block
-- (slots < r) is read through the first half, the current through the
-- second: cat(state[:r, :D], state[r:, D:]).
function C.state_slot(p, kv_state, score_state, s, d)
  if not C.overlap(p) then return score_state[s][d], kv_state[s][d] end
  local col = T.select(T.lt(s, p.ratio), d, p.D + d)
  return score_state[s][col], kv_state[s][col]
end

-- Step 6, attention: the nope dims through FP8 e4m3 in 64-wide UE8M0
-- blocks (§2.6), the rope dims as they are; cache[row] when ok.
local function store_fp8(p, z, cache, row, ok)
  local base = p.D - R.ROPE
  local q = T.fragment{base // 64, 64, T.f32, name = "q8"}
  for b, j in T.parallel(base // 64, 64) do q[b][j] = z[0][b * 64 + j] end
  Q.fp8_sim(q)
  for b, j in T.parallel(base // 64, 64) do T.if_(ok, function() cache[row][b * 64 + j] = q[b][j] end) end
  for i, j in T.parallel(1, R.ROPE) do T.if_(ok, function() cache[row][base + j] = z[i][base + j] end) end
end

-- Step 6, indexer: rotate_activation over all D = 128 dims (bf16 in and
-- out, §2.7), then FP4 e2m1 in 1×32 UE8M0 blocks (§2.5); cache[row] when ok.
local function store_fp4(p, z, cache, row, ok)
  local other = T.fragment{1, p.D, T.f32, name = "hbuf"}
  local h = R.hadamard(z, other)
  local q = T.fragment{p.D // 32, 32, T.f32, name = "q4"}
  for b, j in T.parallel(p.D // 32, 32) do q[b][j] = T.cast(h[0][b * 32 + j], T.bf16) end
  Q.fp4_sim(q)
  for b, j in T.parallel(p.D // 32, 32) do T.if_(ok, function() cache[row][b * 32 + j] = q[b][j] end) end
end

-- Steps 4–7 on one pooled entry y [1, D] (f32; overwritten): bf16, the
-- RMSNorm with weight w (f32 math on the bf16 values, bf16 out), RoPE on
-- the last 64 dims at position pos from the cos/sin table cs [P, 32, 2]
-- (rope.lua's), bf16, then the kind's quantisation, into cache row `row`
-- (bf16; dropped past the cache's end, so that a run-time position beyond
-- it, which the specs can only check when it is known, touches no memory
-- outside the arguments).  The f32 entry never leaves the block.
function C.emit(p, y, w, cs, pos, cache, row)
  local D, base = p.D, p.D - R.ROPE
  local sq  = T.fragment{1, D, T.f32, name = "sq"}
  local rms = T.fragment{1, T.f32, name = "rms"}
  for i, j in T.parallel(1, D) do y[i][j] = T.cast(y[i][j], T.bf16) end
  for i, j in T.parallel(1, D) do sq[i][j] = y[i][j] * y[i][j] end
  T.reduce_sum(sq, rms, 1)
  for i in T.parallel(1) do rms[i] = T.rsqrt(rms[i] / D + C.EPS) end
  for i, j in T.parallel(1, D) do y[i][j] = T.cast(y[i][j] * rms[i] * w[j], T.bf16) end
  local z = T.fragment{1, D, T.f32, name = "roped"}
  for i, j in T.parallel(1, base) do z[i][j] = y[i][j] end
  local at = T.min(pos, cs.shape[1] - 1) -- past the table (a run-time position): its row is dropped below
  for i, k in T.parallel(1, R.ROPE // 2) do
    local re, im = R.rope_pair(y[i][base + 2 * k], y[i][base + 2 * k + 1], cs[at][k][0], cs[at][k][1])
    z[i][base + 2 * k] = T.cast(re, T.bf16)
    z[i][base + 2 * k + 1] = T.cast(im, T.bf16)
  end
  local ok = T.lt(row, cache.shape[1])
  if p.kind == "index" then store_fp4(p, z, cache, row, ok) else store_fp8(p, z, cache, row, ok) end
end

-- The prefill's state (§3.4.1 "Prefill"), from ntok tokens of which nb
-- blocks are complete: the ntok − nb·r left over go to slots off.. (off =
-- r with overlap, else 0); with overlap the last complete block's tokens
-- go to slots 0..r−1 (the next entry's previous block).  Whole c·D rows,
-- scores with their ape.  Every other slot is reset (kv 0, score −inf, as
-- the reference initialises it), so the state depends on this prefill only.
function C.fill_state(p, kv, g, ape, kv_state, score_state, ntok, nb)
  local r, cw = p.ratio, C.halves(p) * p.D
  local off = C.overlap(p) and r or 0
  for s in T.serial(C.nslots(p)) do
    local tok = nb * r + s - off
    local valid = T.and_(T.ge(tok, 0), T.lt(tok, ntok))
    local row = T.min(T.max(tok, 0), ntok - 1)       -- a valid row to read, masked when not
    local a = s % r
    for j in T.parallel(cw) do
      kv_state[s][j] = T.select(valid, kv[row][j], 0.0)
      score_state[s][j] = T.select(valid, g[row][j] + ape[a][j], -math.huge)
    end
  end
end

return C
