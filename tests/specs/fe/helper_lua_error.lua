local T = require "tile"
local H = require "mod_helper"
return T.kernel "helper_lua_error" {
  args = function(p) return { x = T.tensor{4, T.f32, out = true} } end,
  body = function(p, x)
    for b in T.grid(1) do
      H.boom()
    end
  end,
}
