-- MoE dispatch, step 4 of 4 (see moe_dispatch.lua): the tokens' FP8 rows
-- and their 1x128 UE8M0 scales (act_quant's output, v4-spec §2.2) into
-- expert-contiguous order,
--   xe[r, :] = x[src[r], :],   se[r, :] = xs[src[r], :],
-- zeros where src[r] = −1 (a copy reads 0 past a tensor's edge).  This and
-- moe_combine are the kernels a multi-rank version replaces by transfers.
--   tilec run kernels_src/moe_gather.lua --set M=4 --set D=512 --check
local T = require "tile"

local BLOCK = 128 -- act_quant's scale block

return T.kernel "moe_gather" {
  params = { M = T.dyn, D = T.size(4096), TOPK = T.size(6), BR = T.tune{4, 8, 1} },
  args = function(p)
    T.check(p.D % BLOCK == 0, ("moe_gather: D = %d is not a multiple of the scale block (%d)"):format(p.D, BLOCK))
    return {
      src = T.tensor{p.M * p.TOPK, T.i32},
      x   = T.tensor{p.M, p.D, T.f8e4m3},
      xs  = T.tensor{p.M, p.D // BLOCK, T.e8m0},
      xe  = T.tensor{p.M * p.TOPK, p.D, T.f8e4m3, out = true},
      se  = T.tensor{p.M * p.TOPK, p.D // BLOCK, T.e8m0, out = true},
    }
  end,
  -- a dispatch's sources: each expert row a token's, every seventh row
  -- padding (-1) — random integers (0-15) never pad, and point past M
  inputs = function(p)
    local src = {}
    for r = 0, p.M * p.TOPK - 1 do src[r + 1] = r % 7 == 6 and -1 or (r * 5) % p.M end
    return { src = src }
  end,
  body = function(p, src, x, xs, xe, se)
    local R = p.M * p.TOPK
    for rb in T.grid(T.ceildiv(R, p.BR)) do
      -- the block's sources first: a scratch value, unlike a global load,
      -- cannot change under the stores to xe, so the copies keep it
      local from = T.fragment{p.BR, T.i32}
      for i in T.parallel(p.BR) do from[i] = src[T.min(rb * p.BR + i, R - 1)] end
      for i in T.serial(p.BR) do
        local r = rb * p.BR + i                     -- rows past R are dropped by the copies
        T.copy(x:tile(from[i], 0, { 1, p.D }), xe:tile(r, 0, { 1, p.D }))
        T.copy(xs:tile(from[i], 0, { 1, p.D // BLOCK }), se:tile(r, 0, { 1, p.D // BLOCK }))
      end
    end
  end,
}
