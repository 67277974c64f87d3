-- Packed fp4 (e2m1, low nibble first) read from an input argument, widened
-- to f32: element i is nibble i % 2 of byte i / 2.
local T = require "tile"
return T.kernel "fp4_load" {
  params = { N = T.size(512) },
  args = function(p) return {
    w = T.tensor{p.N, T.f4e2m1},
    y = T.tensor{p.N, T.f32, out = true},
  } end,
  body = function(p, w, y)
    for b in T.grid(T.ceildiv(p.N, 128)) do
      local t = T.fragment{128, T.f32}
      T.copy(w:tile(b * 128), t)
      T.copy(t, y:tile(b * 128))
    end
  end,
}
