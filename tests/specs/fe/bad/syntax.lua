local T = require "tile"
return T.kernel "broken" {
  params = { N = 64 ,
  args = function(p) return {} end
