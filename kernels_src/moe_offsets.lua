-- MoE dispatch, step 2 of 4 (see moe_dispatch.lua), one block:
--   counts[e]  = Σ_b cnt[b, e],
--   offsets[e] = Σ_{e'<e} counts[e'],  offsets[E] = the rows placed (T·k
--                unless some ids were outside [0, E)),
--   base[b, e] = offsets[e] + Σ_{b'<b} cnt[b', e]   (token block b's first row
--                of expert e),
-- and src = −1, wr = 0 on the rows past offsets[E], which no pair fills.
-- One block walks the token blocks CH at a time: each step loads a CH x E
-- tile at once and sums over it, so the walk waits on memory NB/CH times,
-- not NB.  The exclusive sum over experts is a masked row sum, E x SLICE at
-- a time.
--   tilec run kernels_src/moe_offsets.lua --set M=20 --set E=16 --set TOPK=4 --check
local T = require "tile"
local MD = require "moe_dispatch"

local SLICE = 16 -- experts summed per step of the exclusive scan
local CH = 16    -- token blocks loaded per step: one round trip to memory each
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
    local NB = MD.blocks(p)
    for _ in T.grid(1) do
      local part = T.fragment{CH, p.E, T.f32}  -- CH token blocks' counts (0 past the last)
      local run  = T.fragment{p.E, T.f32}      -- per expert: every pair
      local off  = T.fragment{p.E, T.f32}      -- per expert: the rows before it, then before block b
      local pre  = T.fragment{p.E, SLICE, T.f32}
      local tot  = T.fragment{1, T.f32}
      local function load_part(c)
        for i, e in T.parallel(CH, p.E) do
          local b = c * CH + i
          part[i][e] = T.select(T.lt(b, NB), T.cast(cnt[T.min(b, NB - 1)][e], T.f32), 0.0)
        end
      end
      T.clear(run)
      for c in T.serial(T.ceildiv(NB, CH)) do
        load_part(c)
        T.reduce_sum(part, run, 0, { clear = false })
      end
      T.clear(off)
      for sl in T.serial(T.ceildiv(p.E, SLICE)) do
        for e, j in T.parallel(p.E, SLICE) do
          local e2 = sl * SLICE + j
          pre[e][j] = T.select(T.lt(e2, e), run[T.min(e2, p.E - 1)], 0.0)
        end
        T.reduce_sum(pre, off, 1, { clear = false })
      end
      T.reduce_sum(run, tot, 0)
      for e in T.parallel(p.E) do
        counts[e] = T.cast(run[e], T.i32)
        offsets[e] = T.cast(off[e], T.i32)
      end
      for i in T.parallel(1) do offsets[p.E] = T.cast(tot[i], T.i32) end
      for c in T.serial(T.ceildiv(NB, CH)) do
        load_part(c)
        for i in T.serial(CH) do
          for e in T.parallel(p.E) do
            T.if_(T.lt(c * CH + i, NB), function() base[c * CH + i][e] = T.cast(off[e], T.i32) end)
            off[e] = off[e] + part[i][e]
          end
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
