-- f32 -> e5m2 -> f32 through global memory: the GPU back ends narrow e5m2 inline.
local T = require "tile"
return T.kernel "e5m2_roundtrip" {
  params = { N = T.size(256) },
  args = function(p) return { x = T.tensor{p.N, T.f32}, y = T.tensor{p.N, T.f8e5m2, out = true}, z = T.tensor{p.N, T.f32, out = true} } end,
  body = function(p, x, y, z)
    for b in T.grid(T.ceildiv(p.N, 64)) do
      local t = T.fragment{64, T.f32}
      T.copy(x:tile(b * 64), t)
      for i in T.parallel(64) do t[i] = t[i] * 1000.0 end
      T.copy(t, y:tile(b * 64))
      local u = T.fragment{64, T.f32}
      T.copy(y:tile(b * 64), u)
      T.copy(u, z:tile(b * 64))
    end
  end }
