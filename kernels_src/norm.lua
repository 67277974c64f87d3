-- The weighted RMSNorm of v4-spec §3.3.3, in the steps rmsnorm.lua and
-- rmsnorm_quant.lua share (a Lua module, not a kernel): both must compute
-- the same bits, so that the fused one equals the pair it replaces.
local T = require "tile"

local N = {}

N.BLOCK = 128   -- columns per step

-- rms[i] = rsqrt(mean(x[row0 + i]²) + 1e-6) for the BM rows of a block: the
-- sum of squares in f32, 128 columns at a time, in t (BM x 128 scratch).
function N.inv_rms(x, row0, D, t, rms)
  local BM = rms.shape[1]
  T.clear(rms)
  for b in T.serial(D // N.BLOCK) do
    T.copy(x:tile(row0, b * N.BLOCK), t)
    for i, j in T.parallel(BM, N.BLOCK) do t[i][j] = t[i][j] * t[i][j] end
    T.reduce_sum(t, rms, 1, { clear = false })
  end
  for i in T.parallel(BM) do rms[i] = T.rsqrt(rms[i] / D + 1e-6) end
end

-- t = bf16(x · rms · w) on the columns of step b (ws: 128 scratch for w).
function N.normalize(x, w, row0, b, t, ws, rms)
  T.copy(x:tile(row0, b * N.BLOCK), t)
  T.copy(w:tile(b * N.BLOCK), ws)
  for i, j in T.parallel(rms.shape[1], N.BLOCK) do t[i][j] = T.cast(t[i][j] * rms[i] * ws[j], T.bf16) end
end

return N
