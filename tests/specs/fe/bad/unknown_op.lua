local T = require "tile"
local g = T.gemmm
