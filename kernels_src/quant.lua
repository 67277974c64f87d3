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

return Q
