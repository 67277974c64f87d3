local T = require "tile"
return T.compose "addone_colsum" { "addone", "colsum2", via = { y = "x" } }
