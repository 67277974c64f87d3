-- A copy through a scratch tile in any dtype: every element's bits must
-- arrive unchanged (NaN signs and payloads included).
local T = require "tile"
return T.kernel "copy_bits" {
  params = { N = T.size(256), dtype = T.variant{"f8e4m3", "f8e5m2", "bf16", "f16", "f32"} },
  args = function(p) return {
    x = T.tensor{p.N, p.dtype},
    y = T.tensor{p.N, p.dtype, out = true},
  } end,
  body = function(p, x, y)
    for b in T.grid(T.ceildiv(p.N, 64)) do
      local t = T.shared{64, p.dtype}
      T.copy(x:tile(b * 64), t)
      T.copy(t, y:tile(b * 64))
    end
  end,
}
