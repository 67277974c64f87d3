-- MoE combine on one rank (v4-spec §3.5 step 10 and "Output"), the inverse
-- of moe_dispatch.lua: each token's expert rows summed back in f32,
--   out[t, :] = Σ_slots [w[t, s] ·] y[row[t, s], :]   (+ shared[t, :])
-- with y the experts' bf16 outputs in dispatch order and row from moe_place
-- (−1, or any row outside y: the slot was not routed and adds nothing).
--   - V4 applies the routing weight inside the expert, before the down
--     projection (step 8: swiglu_quant takes the dispatched wr), so the V4
--     combine is unweighted; weighted = "yes" multiplies here instead.
--   - The spec accumulates y in f32 and adds the shared expert's (bf16)
--     output before the one cast to bf16, so the sum is f32 by default;
--     shared = "add" with out_dtype = "bf16" is the layer's final output.
--   - The spec adds expert by expert (`for i in range(E): y[idx] += ...`).
--     Rows are expert-contiguous, so adding a token's rows in ascending row
--     order is that order: the sum is bit-for-bit the spec's, and
--     independent of the slot order.
--   tilec run kernels_src/moe_combine.lua --set M=4 --set D=512 --check
local T = require "tile"
local MD = require "moe_dispatch"

return T.kernel "moe_combine" {
  params = { M = T.dyn, D = T.size(4096), TOPK = T.size(6), weighted = T.variant{"no", "yes"},
             shared = T.variant{"none", "add"}, out_dtype = T.variant{"f32", "bf16"},
             BM = T.tune{4, 8, 1}, BD = T.tune{512, 256, 1024} },
  args = function(p)
    T.check(p.D % p.BD == 0, ("moe_combine: D = %d is not a multiple of the tile BD = %d"):format(p.D, p.BD))
    MD.check_rows(p, "moe_combine")                -- rows are sorted as f32 keys
    local a = {}
    a.row = T.tensor{p.M, p.TOPK, T.i32}
    a.w   = T.tensor{p.M, p.TOPK, T.f32}         -- read only when weighted = "yes"
    a.y   = T.tensor{p.M * p.TOPK, p.D, T.bf16}
    a.sh  = p.shared == "add" and T.tensor{p.M, p.D, T.bf16} or T.none
    a.out = T.tensor{p.M, p.D, p.out_dtype, out = true}
    return a
  end,
  -- sh, the one optional argument, comes last: with absent arguments
  -- between present ones the frontend can hand the body nil for the later
  -- ones too (it unpacks a table with holes).
  -- a routing's rows: each of y's rows taken once, in no slot order, and
  -- every fifth slot unrouted (-1) — random integers (0-15) never leave a
  -- slot out and pile every token onto y's first rows
  inputs = function(p)
    local n, row = p.M * p.TOPK, {}
    for i = 0, n - 1 do row[i + 1] = i % 5 == 4 and -1 or (i * 7 + 3) % n end
    return { row = row }
  end,
  body = function(p, row, w, y, out, sh)
    local K = p.TOPK
    if p.weighted ~= "yes" then w = nil end
    for tb, db in T.grid(T.ceildiv(p.M, p.BM), p.D // p.BD) do
      local key = T.fragment{p.BM, K, T.f32}  -- a slot's row; −1 − s if unrouted (distinct, first)
      local rk  = T.fragment{p.BM, K, T.f32}  -- its place in ascending order
      local ord = T.fragment{p.BM, K, T.f32}  -- the rows in ascending order
      local ow  = T.fragment{p.BM, K, T.f32}  -- and their weights
      local acc = T.fragment{p.BM, p.BD, T.f32}
      local function tok(t) return T.min(tb * p.BM + t, p.M - 1) end  -- tail tokens: read, not written
      for t, s in T.parallel(p.BM, K) do
        local r = row[tok(t)][s]                  -- a row outside y counts as unrouted
        key[t][s] = T.select(T.and_(T.le(0, r), T.lt(r, p.M * K)), T.cast(r, T.f32), -1.0 - T.cast(s, T.f32))
      end
      -- Σ over the K slots of f(s), built as one expression (K is small)
      local function sum_slots(f)
        local x = f(0)
        for s = 1, K - 1 do x = x + f(s) end
        return x
      end
      for t, s in T.parallel(p.BM, K) do
        rk[t][s] = sum_slots(function(s2) return T.select(T.lt(key[t][s2], key[t][s]), 1.0, 0.0) end)
      end
      for t, j in T.parallel(p.BM, K) do
        local function at_j(v) return function(s) return T.select(T.eq(rk[t][s], T.cast(j, T.f32)), v(s), 0.0) end end
        ord[t][j] = sum_slots(at_j(function(s) return key[t][s] end))
        if w then ow[t][j] = sum_slots(at_j(function(s) return w[tok(t)][s] end)) end
      end
      T.clear(acc)
      for j in T.serial(K) do
        for t, d in T.parallel(p.BM, p.BD) do
          local r = T.cast(ord[t][j], T.i64)
          local v = y[T.clamp(r, 0, p.M * K - 1)][db * p.BD + d]  -- clamped: rows not from moe_place may collide and sum past y
          if w then v = ow[t][j] * v end
          acc[t][d] = acc[t][d] + T.select(T.ge(r, 0), v, 0.0)
        end
      end
      if sh then
        for t, d in T.parallel(p.BM, p.BD) do acc[t][d] = acc[t][d] + sh[tok(t)][db * p.BD + d] end
      end
      T.copy(acc, out:tile(tb * p.BM, db * p.BD))
    end
  end,
}
