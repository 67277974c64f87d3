-- MoE dispatch, step 2 of 4 (see moe_dispatch.lua), one block:
--   counts[e]  = Σ_b cnt[b, e],
--   offsets[e] = Σ_{e'<e} counts[e'],  offsets[E] = the rows placed (T·k
--                unless some ids were outside [0, E)),
--   base[b, e] = offsets[e] + Σ_{b'<b} cnt[b', e]   (token block b's first row
--                of expert e),
-- and src = −1, wr = 0 on the rows past offsets[E], which no pair fills.
-- The exclusive sum over experts is a masked row sum, E x SLICE at a time.
--   tilec run kernels_src/moe_offsets.lua --set M=20 --set E=16 --set TOPK=4 --interp
local T = require "tile"
local MD = require "moe_dispatch"

local SLICE = 16 -- experts summed per step of the exclusive scan
local ROWS = 256 -- rows per step of the fill past offsets[E]

return T.kernel "moe_offsets" {
  params = { M = T.dyn, E = T.size(256), TOPK = T.size(6) },
  args = function(p)
    MD.check(p, "moe_offsets")
    return {
      cnt     = T.tensor{MD.blocks(p), p.E, T.i32},
      counts  = T.tensor{p.E, T.i32, out = true},
      offsets = T.tensor{p.E + 1, T.i32, out = true},
      base    = T.tensor{MD.blocks(p), p.E, T.i32, out = true},
      src     = T.tensor{p.M * p.TOPK, T.i32, out = true},
      wr      = T.tensor{p.M * p.TOPK, T.f32, out = true},
    }
  end,
  body = function(p, cnt, counts, offsets, base, src, wr)
    for _ in T.grid(1) do
      local run  = T.fragment{p.E, T.f32}  -- per expert: the pairs counted so far
      local off  = T.fragment{p.E, T.f32}
      local part = T.fragment{p.E, SLICE, T.f32}
      local tot  = T.fragment{1, T.f32}
      T.clear(run)
      for b in T.serial(MD.blocks(p)) do
        for e in T.parallel(p.E) do run[e] = run[e] + T.cast(cnt[b][e], T.f32) end
      end
      T.clear(off)
      for sl in T.serial(T.ceildiv(p.E, SLICE)) do
        for e, j in T.parallel(p.E, SLICE) do
          local e2 = sl * SLICE + j
          part[e][j] = T.select(T.lt(e2, e), run[T.min(e2, p.E - 1)], 0.0)
        end
        T.reduce_sum(part, off, 1, { clear = false })
      end
      T.reduce_sum(run, tot, 0)
      for e in T.parallel(p.E) do
        counts[e] = T.cast(run[e], T.i32)
        offsets[e] = T.cast(off[e], T.i32)
      end
      for i in T.parallel(1) do offsets[p.E] = T.cast(tot[i], T.i32) end
      for b in T.serial(MD.blocks(p)) do
        for e in T.parallel(p.E) do
          base[b][e] = T.cast(off[e], T.i32)
          off[e] = off[e] + T.cast(cnt[b][e], T.f32)
        end
      end
      local R = p.M * p.TOPK
      for rb in T.serial(T.ceildiv(R, ROWS)) do
        for i in T.parallel(ROWS) do
          local r = rb * ROWS + i
          T.if_(T.and_(T.lt(r, R), T.le(tot[0], T.cast(r, T.f32))), function()
            src[r] = -1
            wr[r] = 0.0
          end)
        end
      end
    end
  end,
}
