-- The routed experts' first GEMM with SwiGLU in its epilogue (v4-spec §3.5
-- steps 6–9, issue 6): for each row r of expert e (contiguous rows
-- [off[e], off[e] + cnt[e]) of a, as in moe_expert_gemm),
--   g = bf16(a·w1ᵀ), u = bf16(a·w3ᵀ)                 FP8 × FP4 GEMMs (§2.4)
--   h = silu(min(g, L)) · clamp(u, -L, L) · rw[r]     f32, L = 10 (gate: upper bound only)
--   q, s = act_quant(bf16(h))                          1×128 e4m3, UE8M0 scales
-- so the bf16 intermediate never goes to memory.  w13 stacks each expert's
-- gate and up weights: rows [0, I) are w1, rows [I, 2I) are w3 (the
-- checkpoint's two tensors one after the other, like vLLM's w13), packed
-- fp4 with 1×32 UE8M0 scales.  A block owns one 128-wide column block of
-- the gate and the matching one of up, which is one scale block of q; rows
-- and the GEMM are moe_expert_gemm's (moe_fp4.lua).
--   tilec run kernels_src/moe_gemm_swiglu.lua --set R=9 --set E=4 --set I=128 --set K=256 --check
-- (cnt and off from F.sample_schedule unless given: --in cnt=cnt.npy --in off=off.npy)
local T = require "tile"
local F = require "moe_fp4"
local Q = require "quant"

local BN = F.ABLOCK  -- a column block is one output scale block

return T.kernel "moe_gemm_swiglu" {
  params = { R = T.dyn, E = T.size(16), I = T.size(2048), K = T.size(4096),
             limit = T.variant{"10"}, BM = T.tune{16, 4, 8, 32, 64, 128}, BS = T.tune{128, 64, 32},
             BK = T.tune{128, 256, 512, 1024, 2048, 4096} },
  args = function(p)
    F.check_k(p.K, "moe_gemm_swiglu")
    T.check(p.I % BN == 0, ("moe_gemm_swiglu: inter = %d is not a multiple of the output scale block (%d)"):format(p.I, BN),
            "the scales s[R, inter/128] must cover whole blocks")
    return {
      a    = T.tensor{p.R, p.K, T.f8e4m3},
      sa   = T.tensor{p.R, p.K // F.ABLOCK, T.e8m0},
      cnt  = T.tensor{p.E, T.i32},
      off  = T.tensor{p.E, T.i32},
      w13  = T.tensor{p.E, 2 * p.I, p.K, T.f4e2m1},      -- packed, low nibble first
      sw13 = T.tensor{p.E, 2 * p.I, p.K // F.WBLOCK, T.e8m0},
      rw   = T.tensor{p.R, T.f32},                       -- each row's routing weight
      q    = T.tensor{p.R, p.I, T.f8e4m3, out = true},
      s    = T.tensor{p.R, p.I // F.ABLOCK, T.e8m0, out = true},
    }
  end,
  inputs = function(p) return F.sample_schedule(p.R, p.E) end, -- disjoint ranges, not random
  body = function(p, a, sa, cnt, off, w13, sw13, rw, q, s)
    local L = tonumber(p.limit)
    for t, bn in T.grid(F.max_tiles(p.R, p.E, p.BM), p.I // BN) do
      local tile = F.find_tile(t, cnt, off, p.E, p.BM)
      local g = T.fragment{p.BM, BN, T.f32}
      local u = T.fragment{p.BM, BN, T.f32}
      local ws = T.fragment{p.BM, T.f32}
      T.clear(g)
      T.clear(u)
      -- BS: the block's columns in sub-blocks, each through the whole K loop
      -- (decode on the CPU: 32, few weight rows per K step); BK: columns of
      -- K per step (above 128, promoted inside each T.gemm)
      F.accumulate({ { g, bn * BN }, { u, p.I + bn * BN } }, a, sa, w13, sw13, tile, p.K, p.BS, p.BK)
      T.copy(rw:tile(tile.row0), ws)
      for i, j in T.parallel(p.BM, BN) do
        local gate, up = T.cast(g[i][j], T.bf16), T.cast(u[i][j], T.bf16)   -- the GEMMs' bf16 outputs
        g[i][j] = T.cast(T.silu(T.min(gate, L)) * T.clamp(up, -L, L) * ws[i], T.bf16)
      end
      local scale = Q.scale_rows(g, 448.0, 1e-4)
      F.store_rows(g, q, tile, bn * BN)                  -- stores round to e4m3
      for i in T.parallel(p.BM) do
        T.if_(F.owns(tile, i, s), function() s[tile.row0 + i][bn] = scale[i] end)
      end
    end
  end,
  -- On a CPU: the K step of moe_fp4.cpu_bk, and the block's 128 weight
  -- rows per step (12 rows: 72 ms against 89 at 32).  4-row tiles (a
  -- decode's one or two rows per expert) took 32 until the dot tiles
  -- fetched their rows 4 KiB ahead; since, 128 there too (Zen 5, 6 of 16
  -- experts, I 2048, K 4096, one thread: 1, 2, 4 rows each 1.95-2.04 /
  -- 2.45-2.48 / 3.71-3.81 ms at 32, 1.77-1.78 / 2.22-2.39 / 3.46-3.50 at
  -- 128; x86-avx2 one row 4.38-4.41 against 4.26-4.27).
  choose = function(p, target)
    local bk = F.cpu_bk(p, target)
    return bk and { BK = bk, BS = 128 } or {}
  end,
}
