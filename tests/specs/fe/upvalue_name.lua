-- A scratch buffer first used inside a closure (where it is an upvalue,
-- not a local) must not take the name of a Lua internal slot such as
-- "(temporary)": printed IR with that name does not parse.
local T = require "tile"
return T.kernel "upvalue_name" {
  args = function(p) return { y = T.tensor{4, T.f32, out = true} } end,
  body = function(p, y)
    for b in T.grid(1) do
      local rs = T.local_{4, T.f32}
      for u in T.unroll(4) do
        T.if_(T.eq(u, 0), function() rs[u] = 1.0 end, function() rs[u] = 2.0 end)
      end
      T.copy(rs, y)
    end
  end,
}
