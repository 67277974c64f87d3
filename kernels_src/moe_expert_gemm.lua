-- The routed experts' grouped GEMM (v4-spec §2.4, §3.5 steps 6 and 9): one
-- launch over every expert, FP8 activations times FP4 weights, bf16 out,
--   c[r, n] = Σ_k32 (Σ_{k in k32} a[r, k] · e2m1(w[e, n, k])) · sa[r, k // 128] · sw[e, n, k // 32]
-- for each row r of expert e's range [off[e], off[e] + cnt[e]) (experts may
-- be empty; gaps between ranges are left alone).
-- a: e4m3 [R, K] in expert order with 1×128 UE8M0 scales sa; w: f4e2m1
-- [E, N, K], packed two per byte, element 2j in the low nibble (the
-- checkpoint's int8 [E, N, K/2] bytes as they are), with 1×32 UE8M0 scales sw.
-- The weight scale is a power of two, so applying it to the weight is
-- exact and the same as applying it to each 32-wide sub-product; each
-- 128-wide K block is then one product of A (e4m3 widened to bf16, exact)
-- and the block-scaled weights in its own f32 accumulator, promoted with
-- the activation scale as in fp8_gemm.
-- BK above 128: each K step is one T.gemm with both scales, promoted
-- inside it (moe_fp4.accumulate; the CPU's decode runs BK = K).
-- Blocks are row tiles × 128-wide column blocks; the grid is the bound on
-- row tiles (moe_fp4.lua), and each block finds its expert by scanning the
-- row counts, so empty experts cost no blocks.
--   tilec run kernels_src/moe_expert_gemm.lua --set R=9 --set E=4 --set N=256 --set K=256 --check
-- (cnt and off from F.sample_schedule unless given: --in cnt=cnt.npy --in off=off.npy)
local T = require "tile"
local F = require "moe_fp4"

return T.kernel "moe_expert_gemm" {
  params = { R = T.dyn, E = T.size(16), N = T.size(4096), K = T.size(2048),
             BM = T.tune{16, 4, 8, 32, 64, 1, 128}, BN = T.tune{128, 64, 32, 16, 8, 4},
             BK = T.tune{128, 256, 512, 1024, 2048, 4096} },
  args = function(p)
    F.check_k(p.K, "moe_expert_gemm")
    T.check(p.N % p.BN == 0, ("moe_expert_gemm: N = %d is not a multiple of the tile BN = %d"):format(p.N, p.BN))
    return {
      a   = T.tensor{p.R, p.K, T.f8e4m3},
      sa  = T.tensor{p.R, p.K // F.ABLOCK, T.e8m0},
      cnt = T.tensor{p.E, T.i32},              -- rows routed to each expert (may be 0)
      off = T.tensor{p.E, T.i32},              -- first row of each expert in a
      w   = T.tensor{p.E, p.N, p.K, T.f4e2m1},
      sw  = T.tensor{p.E, p.N, p.K // F.WBLOCK, T.e8m0},
      c   = T.tensor{p.R, p.N, T.bf16, out = true},
    }
  end,
  inputs = function(p) return F.sample_schedule(p.R, p.E) end, -- disjoint ranges, not random
  body = function(p, a, sa, cnt, off, w, sw, c)
    for t, bn in T.grid(F.max_tiles(p.R, p.E, p.BM), p.N // p.BN) do
      local tile = F.find_tile(t, cnt, off, p.E, p.BM)
      local acc = T.fragment{p.BM, p.BN, T.f32}
      T.clear(acc)
      F.accumulate({ { acc, bn * p.BN } }, a, sa, w, sw, tile, p.K, nil, p.BK)
      F.store_rows(acc, c, tile, bn * p.BN)
    end
  end,
  -- On a CPU: the K step of moe_fp4.cpu_bk, and in dot tiles (BM <= 16)
  -- 32 weight rows per block, few enough streams for the prefetchers
  -- (E = 16, one row per expert: 28 ms against 55 at 128; at 12 rows
  -- 33.7-35.8 against 34.6-38.8, alternated).  A --set value stays.
  choose = function(p, target)
    -- on a GPU, decode tiles (BM <= 16) of 32 columns too (H200, 12 rows
    -- x 8 experts, BK 128: 0.217 ms against 0.270 at BN 128)
    if target.sm then return (p.BM or 16) <= 16 and { BN = 32 } or {} end
    local bk = F.cpu_bk(p, target)
    if not bk then return {} end
    return (p.BM or 16) <= 16 and { BK = bk, BN = 32 } or { BK = bk }
  end,
}
