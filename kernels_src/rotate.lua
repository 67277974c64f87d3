-- rotate.lua — the rotations the KV-side specs share (a Lua module that
-- builds IR inside the caller's grid; not a kernel): RoPE's pair rotation
-- (v4-spec §3.7) and the Hadamard butterflies of rotate_activation (§2.7).
local T = require "tile"

local R = {}

R.ROPE = 64 -- rotary dims: the last 64 of every head

-- The pair (a, b) as a + ib times the table entry c + is (the angle of the
-- position; s negated for the inverse rotation), GPT-J interleaved style.
function R.rope_pair(a, b, c, s)
  return a * c - b * s, a * s + b * c
end

-- y = x · H_N / sqrt(N) for each row of a [rows, N] fragment, N a power of
-- two: log2(N) butterfly stages in f32, unrolled at build time,
-- ping-ponging between a (holding x) and b.  Stage h pairs element lo
-- (bit h clear) with hi = lo + h: dst[lo] = src[lo] + src[hi], dst[hi] =
-- src[lo] - src[hi].  Written on the pair's position, so every index is
-- affine: for h of 8 or more a pair's elements run in contiguous lines of
-- h (vector loads and stores), below 8 a group of 2h neighbours holds h
-- pairs (strided accesses the vectoriser interleaves) — not as j xor h,
-- which it could only gather (hadamard of 1024 rows: 308 us on one AVX2
-- core).  Returns whichever of the two holds y.
function R.hadamard(a, b)
  local rows, N = a.shape[1], a.shape[2]
  local src, dst = a, b
  local h = 1
  while h < N do
    local s, d, w = src, dst, 2 * h
    if h >= 8 then
      for i, g, k in T.parallel(rows, N // w, h) do
        local lo, hi = g * w + k, g * w + h + k
        d[i][lo] = s[i][lo] + s[i][hi]
        d[i][hi] = s[i][lo] - s[i][hi]
      end
    else
      for i, g in T.parallel(rows, N // w) do
        for k = 0, h - 1 do
          local lo, hi = g * w + k, g * w + h + k
          d[i][lo] = s[i][lo] + s[i][hi]
          d[i][hi] = s[i][lo] - s[i][hi]
        end
      end
    end
    src, dst = dst, src
    h = w
  end
  for i, j in T.parallel(rows, N) do dst[i][j] = src[i][j] * (1.0 / math.sqrt(N)) end
  return dst
end

return R
