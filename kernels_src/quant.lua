-- quant.lua — scale arithmetic shared by the V4 quantisation specs
-- (a plain Lua module: specs `require "quant"` from their own folder).
local T = require "tile"

local Q = {}

-- 2^ceil(log2(v)) for a positive, normal f32 v, exactly as v4-spec §2.2
-- computes it: the exponent of v's f32 bits, plus one when the mantissa is
-- not zero.  The result is a power of two, so it is also a UE8M0 scale.
function Q.pow2_ceil(v)
  local bits = T.bitcast(v, T.i32)
  local e = ((bits >> 23) & 0xff) + T.select(T.ne(bits & 0x7fffff, 0), 1, 0)
  return T.bitcast(e << 23, T.f32)
end

-- Quantise each row of the tile t (rows x cols, f32) onto a format's grid
-- with one power-of-two scale per row: amax = max(|row|, floor),
-- s = 2^ceil(log2(amax / qmax)), row = clamp(row / s, ±qmax).  The caller
-- rounds (by storing to the format, or T.cast) and gets the scales back as
-- a fragment of `rows` values.
function Q.scale_rows(t, qmax, floor)
  local rows, cols = t.shape[1], t.shape[2]
  local amax = T.fragment{rows, T.f32}
  local scale = T.fragment{rows, T.f32}
  T.reduce_absmax(t, amax, 1)
  for i in T.parallel(rows) do scale[i] = Q.pow2_ceil(T.max(amax[i], floor) / qmax) end
  -- s is a power of two (or 0, inf, NaN), so 1/s is exact and x · (1/s)
  -- is x / s rounded the same way: one multiply per element, not a divide
  for i, j in T.parallel(rows, cols) do t[i][j] = T.clamp(t[i][j] * (1.0 / scale[i]), -qmax, qmax) end
  return scale
end

-- Quantise-dequantise each row of t in place, one power-of-two scale per
-- row: t = fmt(clamp(t / s, ±qmax)) · s, the values a block-scaled cache
-- of that format holds.  Returns the scales.
local function simulate_rows(t, fmt, qmax, floor)
  local scale = Q.scale_rows(t, qmax, floor)
  for i, j in T.parallel(t.shape[1], t.shape[2]) do t[i][j] = T.cast(t[i][j], fmt) * scale[i] end
  return scale
end

-- FP8 e4m3 with UE8M0 scales (v4-spec §2.2, §2.6): amax floored at 1e-4.
function Q.fp8_sim(t) return simulate_rows(t, T.f8e4m3, 448.0, 1e-4) end

-- FP4 e2m1 with UE8M0 scales (v4-spec §2.5): amax floored at 6·2^-126.
function Q.fp4_sim(t) return simulate_rows(t, T.f4e2m1, 6.0, 6 * 2 ^ -126) end

return Q
