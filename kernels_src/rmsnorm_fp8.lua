-- RMSNorm (rmsnorm.lua) composed with FP8 quantisation (act_quant.lua):
-- the same bits as running the pair, and as the hand-fused
-- rmsnorm_quant.lua, from the two specs as written.  rmsnorm's output y
-- feeds act_quant's input x; y lives in the block (a BM x D bf16 buffer)
-- and never reaches memory.  Parameters shared by name (M, BM) are one;
-- act_quant's K is rmsnorm's D, and its input dtype is y's.
--   tilec run kernels_src/rmsnorm_fp8.lua --set M=4 --check
local T = require "tile"

return T.compose "rmsnorm_fp8" {
  "rmsnorm", "act_quant",
  via = { y = "x" },
  params = { K = function(p) return p.D end, dtype = "bf16" },
}
