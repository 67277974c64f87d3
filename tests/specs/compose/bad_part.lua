local T = require "tile"
return T.compose "addone_colsum" { "addone", "colsum", via = { y = "x" }, params = { D = 200, K = function(p) return p.D end } }
