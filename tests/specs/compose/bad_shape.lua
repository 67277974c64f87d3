local T = require "tile"
return T.compose "addone_colsum" { "addone", "colsum", via = { y = "x" } }   -- colsum's K is not unified with D
