-- The MoE gate (v4-spec §3.5 steps 1–4), per token:
--   logits = x · Wgᵀ in f32 (Wg stored bf16),  score = sqrt(softplus(logits))
--   (softplus with threshold 20: x > 20 → x),
--   idx = top-k of score + bias (bias selects only; ties go to the lower
--   expert), or idx = tid2eid[token id] in the hash-routed first layers,
--   w_k = score[idx_k] / Σ_k score[idx_k] · route_scale   (unbiased scores).
-- Top-k is k rounds of (row max, lowest index attaining it, mask it out).
-- A token id outside the vocabulary, or a tid2eid entry outside [0, E) (a
-- corrupt table: a kernel cannot raise an error), routes that slot nowhere:
-- expert −1 and weight 0, which the dispatch drops (its offsets[E] then
-- falls short of T·k, which the caller can check); the other slots share
-- the weight.
--   tilec run kernels_src/moe_gate.lua --set M=4 --set E=64 --set D=256 --check
local T = require "tile"

return T.kernel "moe_gate" {
  params = { M = T.dyn, D = T.size(4096), E = T.size(256), TOPK = T.size(6),
             route_scale = T.variant{"1.5", "2.5"}, routing = T.variant{"topk", "hash"},
             V = T.size(129280), BM = T.tune{4, 8}, BK = T.tune{256, 512} },
  args = function(p)
    T.check(p.TOPK <= p.E, ("moe_gate: top-k %d is larger than the %d experts"):format(p.TOPK, p.E))
    T.check(p.D % p.BK == 0, ("moe_gate: D = %d must be a multiple of the tile BK = %d"):format(p.D, p.BK))
    local a = {
      x    = T.tensor{p.M, p.D, T.bf16},
      wg   = T.tensor{p.E, p.D, T.bf16},
      bias = T.tensor{p.E, T.f32},
    }
    local hash = p.routing == "hash"
    a.ids     = hash and T.tensor{p.M, T.i32} or T.none          -- token ids
    a.tid2eid = hash and T.tensor{p.V, p.TOPK, T.i32} or T.none  -- id → experts
    a.idx = T.tensor{p.M, p.TOPK, T.i32, out = true}
    a.w   = T.tensor{p.M, p.TOPK, T.f32, out = true}
    return a
  end,
  body = function(p, x, wg, bias, ids, tid2eid, idx, w)
    local scale = tonumber(p.route_scale)
    for bm in T.grid(T.ceildiv(p.M, p.BM)) do
      local xs    = T.fragment{p.BM, p.BK, T.bf16}  -- x is bf16: exact
      local ws    = T.shared{p.E, p.BK, T.bf16}  -- wg is bf16: staging it so is exact
      local score = T.fragment{p.BM, p.E, T.f32}
      local sel   = T.fragment{p.BM, p.E, T.f32}   -- biased scores, masked as chosen
      local cand  = T.fragment{p.BM, p.E, T.f32}   -- index if at the max, else E
      local m     = T.fragment{p.BM, T.f32}
      local pick  = T.fragment{p.BM, p.TOPK, T.f32} -- chosen expert ids (exact in f32)
      local got   = T.fragment{p.BM, p.TOPK, T.f32} -- their unbiased scores
      local sum   = T.fragment{p.BM, T.f32}
      T.clear(score)
      for kb in T.serial(p.D // p.BK) do
        T.copy(x:tile(bm * p.BM, kb * p.BK), xs)
        T.copy(wg:tile(0, kb * p.BK), ws)
        T.gemm(xs, ws, score, { trans_b = true })
      end
      for t, e in T.parallel(p.BM, p.E) do
        local l = score[t][e]
        score[t][e] = T.sqrt(T.select(T.lt(20.0, l), l, T.softplus(l)))
      end
      if p.routing == "hash" then
        for t, k in T.parallel(p.BM, p.TOPK) do
          local row = T.min(bm * p.BM + t, p.M - 1)       -- tail rows read a valid id, write nothing
          local id = ids[row]
          local known = T.and_(T.le(0, id), T.lt(id, p.V))
          local e = tid2eid[T.select(known, id, 0)][k]
          pick[t][k] = T.cast(T.select(T.and_(known, T.and_(T.le(0, e), T.lt(e, p.E))), e, -1), T.f32)
        end
      else
        for t, e in T.parallel(p.BM, p.E) do sel[t][e] = score[t][e] + bias[e] end
        for k = 0, p.TOPK - 1 do
          T.reduce_max(sel, m, 1)
          for t, e in T.parallel(p.BM, p.E) do cand[t][e] = T.select(T.eq(sel[t][e], m[t]), T.cast(e, T.f32), p.E * 1.0) end
          T.reduce_min(cand, sum, 1)                      -- the lowest index at the max
          for t in T.parallel(p.BM) do pick[t][k] = sum[t] end
          for t, e in T.parallel(p.BM, p.E) do
            sel[t][e] = T.select(T.eq(T.cast(e, T.f32), pick[t][k]), -math.huge, sel[t][e])
          end
        end
      end
      for t, k in T.parallel(p.BM, p.TOPK) do
        local e = T.cast(pick[t][k], T.i64)
        got[t][k] = T.select(T.le(0, e), score[t][T.max(e, 0)], 0.0)
      end
      T.reduce_sum(got, sum, 1)
      for t, k in T.parallel(p.BM, p.TOPK) do
        local row = bm * p.BM + t
        T.if_(T.lt(row, p.M), function()
          idx[row][k] = T.cast(pick[t][k], T.i32)
          w[row][k] = T.select(T.lt(0.0, sum[t]), got[t][k] / sum[t] * scale, 0.0)
        end)
      end
    end
  end,
  -- On a CPU: K steps of 512 (Zen 5, one thread, `tilec sweep ... --set
  -- routing=topk --set route_scale=1.5`: 16 tokens 0.129-0.133 ms at the
  -- first candidates, 0.093-0.105 at BK 512 and BM 8; 1024 tokens 10.0 ->
  -- 6.8 at BK 512, BM 4), 8 tokens per block at decode sizes.
  choose = function(p, target)
    if target.sm or p.D % 512 ~= 0 then return {} end
    if not p.M or p.M <= 64 then return { BK = 512, BM = 8 } end
    return { BK = 512 }
  end,
}
