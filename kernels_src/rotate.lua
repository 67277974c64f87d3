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
-- two: log2(N) butterfly stages in f32 pairing element j with j xor h,
-- unrolled at build time, ping-ponging between a (holding x) and b.
-- Returns whichever of the two holds y.
function R.hadamard(a, b)
  local rows, N = a.shape[1], a.shape[2]
  local src, dst = a, b
  local h = 1
  while h < N do
    for i, j in T.parallel(rows, N) do
      local partner = j ~ h
      dst[i][j] = T.select(T.eq(j & h, 0), src[i][j] + src[i][partner], src[i][partner] - src[i][j])
    end
    src, dst = dst, src
    h = h * 2
  end
  for i, j in T.parallel(rows, N) do dst[i][j] = src[i][j] * (1.0 / math.sqrt(N)) end
  return dst
end

return R
