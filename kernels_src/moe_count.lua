-- MoE dispatch, step 1 of 4 (see moe_dispatch.lua): per block of BT tokens,
-- cnt[b, e] = how many of the block's (token, slot) pairs chose expert e.
-- The one-hot tile compares the experts with one slot of the block's tokens
-- at a time, so it stays E x BT at E = 256.
--   tilec run kernels_src/moe_count.lua --set M=4 --set E=16 --set TOPK=4 --check
local T = require "tile"
local MD = require "moe_dispatch"

return T.kernel "moe_count" {
  params = { M = T.dyn, E = T.size(256), TOPK = T.size(6) },
  args = function(p)
    MD.check(p, "moe_count")
    return {
      idx = T.tensor{p.M, p.TOPK, T.i32},
      cnt = T.tensor{MD.blocks(p), p.E, T.i32, out = true},
    }
  end,
  body = function(p, idx, cnt)
    for b in T.grid(MD.blocks(p)) do
      local ex  = MD.chunk_experts(p, idx, b)
      local hit = T.fragment{p.E, MD.BT, T.f32}
      local c   = T.fragment{p.E, T.f32}
      T.clear(c)
      for s in T.serial(p.TOPK) do
        for e, j in T.parallel(p.E, MD.BT) do hit[e][j] = T.select(T.eq(ex[j * p.TOPK + s], e), 1.0, 0.0) end
        T.reduce_sum(hit, c, 1, { clear = false })
      end
      for e in T.parallel(p.E) do cnt[b][e] = T.cast(c[e], T.i32) end
    end
  end,
}
