local T = require "tile"
return T.compose "copyin_colsum" { "copyin", "colsum", via = { y = "x" }, params = { K = function(p) return p.D end } }
