local T = require "tile"
return T.compose "addone_colsum" {
  "addone", "colsum",
  via = { y = "x" },
  params = { K = function(p) return p.D end, dtype = "f32" },
}
