-- Sparse attention with an attention sink (v4-spec §3.4 step 12), one
-- shared KV head (MQA; the same rows act as K and V):
--   z_j = (q_h · k_j) · D^-0.5 over the rows k_j = kv[idx[t, j]] (−1: masked),
--   o_h = Σ_j e^(z_j − m) k_j / (Σ_j e^(z_j − m) + e^(sink_h − m)),  m = max_j z_j.
-- FlashAttention-style: 64 keys at a time, an online max and sum in f32,
-- P rounded to bf16 before the P·V GEMM; BH heads share every gathered
-- key block, so Q·Kᵀ and P·V are GEMMs with BH rows.
--   tilec run kernels_src/sparse_attn.lua --set M=2 --set H=16 --set D=192 --set L=128 --set NKV=200 --check
local T = require "tile"

local BN = 64 -- keys per block

return T.kernel "sparse_attn" {
  params = { M = T.dyn, H = T.size(64), D = T.size(512), L = T.size(640), NKV = T.size(4096),
             BH = T.tune{16, 8, 64} },
  args = function(p)
    T.check(p.L % BN == 0, ("sparse_attn: %d indices per query is not a multiple of %d"):format(p.L, BN))
    T.check(p.H % p.BH == 0, ("sparse_attn: %d heads is not a multiple of BH = %d"):format(p.H, p.BH))
    return {
      q    = T.tensor{p.M, p.H, p.D, T.bf16},
      kv   = T.tensor{p.NKV, p.D, T.bf16},
      idx  = T.tensor{p.M, p.L, T.i32},
      sink = T.tensor{p.H, T.f32},
      o    = T.tensor{p.M, p.H, p.D, T.bf16, out = true},
    }
  end,
  -- distinct rows spread over the cache, a few masked at the end: random
  -- integers (0-15) would gather the same 16 rows over and over, from L1
  inputs = function(p)
    local idx = {}
    for t = 0, p.M - 1 do
      for j = 0, p.L - 1 do
        idx[#idx + 1] = j < p.L - 8 * (t % 3) and (j * 97 + t * 31) % p.NKV or -1
      end
    end
    return { idx = idx }
  end,
  body = function(p, q, kv, idx, sink, o)
    local scale = 1.0 / math.sqrt(p.D)
    for t, hb in T.grid(p.M, p.H // p.BH) do
      local qs  = T.shared{p.BH, p.D, T.bf16}
      local ks  = T.shared{BN, p.D, T.bf16}     -- the gathered rows: K, and V
      local s   = T.fragment{p.BH, BN, T.f32}   -- scores, then probabilities
      local pb  = T.shared{p.BH, BN, T.bf16}    -- probabilities rounded for P·V
      local acc = T.fragment{p.BH, p.D, T.f32}
      local m   = T.fragment{p.BH, T.f32}       -- running max
      local mn  = T.fragment{p.BH, T.f32}       -- new max
      local l   = T.fragment{p.BH, T.f32}       -- running sum
      local ls  = T.fragment{p.BH, T.f32}       -- this block's sum
      T.copy(q:tile(t, hb * p.BH, 0, { 1, p.BH, p.D }), qs)
      T.clear(acc)
      T.clear(l)
      T.fill(m, -1e30)                          -- finite: a fully masked block stays NaN-free
      for kb in T.serial(p.L // BN) do
        for j, d in T.parallel(BN, p.D) do
          ks[j][d] = kv[T.max(idx[t][kb * BN + j], 0)][d]
        end
        T.gemm(qs, ks, s, { trans_b = true, clear = true })
        for h, j in T.parallel(p.BH, BN) do
          s[h][j] = T.select(T.ge(idx[t][kb * BN + j], 0), s[h][j] * scale, -math.huge)
        end
        T.reduce_max(s, mn, 1)
        for h in T.parallel(p.BH) do mn[h] = T.max(m[h], mn[h]) end
        for h, j in T.parallel(p.BH, BN) do
          s[h][j] = T.exp(s[h][j] - mn[h])
          pb[h][j] = s[h][j]
        end
        T.reduce_sum(s, ls, 1)
        for h in T.parallel(p.BH) do
          l[h] = l[h] * T.exp(m[h] - mn[h]) + ls[h]
        end
        for h, d in T.parallel(p.BH, p.D) do acc[h][d] = acc[h][d] * T.exp(m[h] - mn[h]) end
        for h in T.parallel(p.BH) do m[h] = mn[h] end
        T.gemm(pb, ks, acc)
      end
      for h, d in T.parallel(p.BH, p.D) do
        acc[h][d] = acc[h][d] / (l[h] + T.exp(sink[hb * p.BH + h] - m[h]))
      end
      T.copy(acc, o:tile(t, hb * p.BH, 0, { 1, p.BH, p.D }))
    end
  end,
  -- On a CPU, where M is known: from 4 queries on, all heads in one block,
  -- which gathers each key block once instead of H/BH times; below, the
  -- smallest head blocks, for blocks to run in parallel (`tilec sweep
  -- --over BH=8,16,64`, H 64, D 512, L 640, two threads: M 16 10.1 ms at 64
  -- against 14.0 at 16; M 4 3.50 against 4.17; M 1 0.88 at 8, 0.94 at 16,
  -- 1.15 at 64).  Otherwise (a GPU, a dyn M) the first candidate.
  choose = function(p, target)
    if target.sm or not p.M then return {} end
    local bh = p.M >= 4 and 64 or 8
    return p.H % bh == 0 and { BH = bh } or {}
  end,
}
