-- The lightning indexer's scores (v4-spec §3.4.2 step 4–5, before top-k):
--   score[t, n] = Σ_h relu(q[t, h, :] · K[n, :]) · w[t, h]
-- over the compressed keys n, with blocks the query cannot see yet masked:
-- n ≥ (pos_t + 1) // ratio → −inf.  The heads of one token form the rows of
-- a GEMM against a block of keys; ReLU and the head weights follow in f32.
--   tilec run kernels_src/indexer_logits.lua --set M=2 --set N=256 --check
local T = require "tile"

return T.kernel "indexer_logits" {
  params = { M = T.dyn, N = T.size(4096), IH = T.size(64), ID = T.size(128), ratio = T.size(4),
             BN = T.tune{128, 64, 256} },
  args = function(p) return {
    q   = T.tensor{p.M, p.IH, p.ID, T.bf16},   -- FP4-simulated indexer queries
    k   = T.tensor{p.N, p.ID, T.bf16},         -- the compressed indexer keys
    w   = T.tensor{p.M, p.IH, T.f32},          -- weights_proj(x) · 128^-0.5 · 64^-0.5
    pos = T.tensor{p.M, T.i32},                -- each query's absolute position
    score = T.tensor{p.M, p.N, T.f32, out = true},
  } end,
  body = function(p, q, k, w, pos, score)
    -- key blocks the slower grid dimension, tokens the faster: the blocks
    -- a thread runs in a row share their keys, whose k-pair packing
    -- pass_hoist then does once for them (Zen 5, 4096 keys, six
    -- alternations: 16 tokens one thread 2.84-3.16 -> 2.58-2.82 ms, two
    -- threads 1.65-1.80 -> 1.47-1.59; 256 tokens 49.9-53.5 -> 47.7-48.4)
    for nb, t in T.grid(T.ceildiv(p.N, p.BN), p.M) do
      local qs = T.shared{p.IH, p.ID, T.bf16}
      local ks = T.shared{p.BN, p.ID, T.bf16}
      local s  = T.fragment{p.IH, p.BN, T.f32}
      local ws = T.fragment{p.IH, 1, T.f32}
      local r  = T.fragment{p.BN, T.f32}
      T.copy(q:tile(t, 0, 0, { 1, p.IH, p.ID }), qs)
      T.copy(k:tile(nb * p.BN, 0), ks)
      T.copy(w:tile(t, 0, { 1, p.IH }), ws)
      T.gemm(qs, ks, s, { trans_b = true, clear = true })
      for h, n in T.parallel(p.IH, p.BN) do s[h][n] = T.max(s[h][n], 0.0) * ws[h][0] end
      T.reduce_sum(s, r, 0)
      local visible = (pos[t] + 1) // p.ratio
      for n in T.parallel(p.BN) do
        local col = nb * p.BN + n
        T.if_(T.lt(col, p.N), function()
          score[t][col] = T.select(T.lt(col, visible), r[n], -math.huge)
        end)
      end
    end
  end,
}
