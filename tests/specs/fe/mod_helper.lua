-- A module that specs in this folder require (not a spec itself).
local T = require "tile"
local M = {}
function M.store_tile(x)
  local t = T.fragment{4, T.f32}
  T.copy(t, x:tile(0, 0))
end
function M.boom()
  local a = nil
  return a.b
end
return M
