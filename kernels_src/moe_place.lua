-- MoE dispatch, step 3 of 4 (see moe_dispatch.lua): per block b of BT
-- tokens, each pair (t, s) with expert e takes the row
--   row[t, s] = base[b, e] + #{earlier pairs of the block with expert e},
-- "earlier" in (token, slot) order, so an expert's rows run by token, then
-- slot; then src[row] = t and wr[row] = w[t, s].  Pairs whose id is outside
-- [0, E) get row −1 and no row.
--   tilec run kernels_src/moe_place.lua --set M=4 --set E=16 --set TOPK=4 --check
local T = require "tile"
local MD = require "moe_dispatch"

return T.kernel "moe_place" {
  params = { M = T.dyn, E = T.size(256), TOPK = T.size(6) },
  args = function(p)
    MD.check(p, "moe_place")
    return {
      idx  = T.tensor{p.M, p.TOPK, T.i32},
      w    = T.tensor{p.M, p.TOPK, T.f32},
      base = T.tensor{MD.blocks(p), p.E, T.i32},
      row  = T.tensor{p.M, p.TOPK, T.i32, out = true},
      src  = T.tensor{p.M * p.TOPK, T.i32, out = true},
      wr   = T.tensor{p.M * p.TOPK, T.f32, out = true},
    }
  end,
  body = function(p, idx, w, base, row, src, wr)
    local P = MD.BT * p.TOPK
    for b in T.grid(MD.blocks(p)) do
      local ex   = MD.chunk_experts(p, idx, b)
      local same = T.fragment{P, P, T.f32}
      local rank = T.fragment{P, T.f32}
      for q, q2 in T.parallel(P, P) do
        same[q][q2] = T.select(T.and_(T.lt(q2, q), T.eq(ex[q2], ex[q])), 1.0, 0.0)
      end
      T.reduce_sum(same, rank, 1)
      for q in T.parallel(P) do
        local t, s = b * MD.BT + q // p.TOPK, q % p.TOPK
        local e = ex[q]
        T.if_(T.ge(e, 0), function()
          local r = base[b][e] + T.cast(rank[q], T.i32)
          row[t][s] = r
          T.if_(T.lt(r, p.M * p.TOPK), function()   -- only a base from another layout is off the end
            src[r] = T.cast(t, T.i32)
            wr[r] = w[t][s]
          end)
        end, function()
          T.if_(T.lt(t, p.M), function() row[t][s] = -1 end)
        end)
      end
    end
  end,
}
