-- The routed experts' grouped GEMM (v4-spec §2.4, §3.5 steps 6 and 9): one
-- launch over every expert, FP8 activations times FP4 weights, bf16 out,
--   c[r, n] = Σ_kb sa[r, kb] · Σ_{k in kb} a[r, k] · (e2m1(w[e, n, k]) · sw[e, n, k // 32])
-- for each row r of expert e's contiguous range [off[e], off[e] + cnt[e]).
-- a: e4m3 [R, K] in expert order with 1×128 UE8M0 scales sa; w: e2m1 packed
-- two per byte, element 2j in the low nibble (u8 [E, N, K/2]), with 1×32
-- UE8M0 scales sw.  The weight scale is a power of two, so folding it into
-- the dequantised weight is exact: each 128-wide K block is one product of
-- bf16 tiles (e4m3 and scaled e2m1 widen exactly) in its own f32
-- accumulator, promoted with the activation scale as in fp8_gemm.
--   tilec ir kernels_src/moe_expert_gemm.lua
local T = require "tile"
local F = require "moe_fp4"

local ABLOCK = 128  -- activation scale block (act_quant)

return T.kernel "moe_expert_gemm" {
  params = { R = T.dyn, E = T.size(16), N = T.size(4096), K = T.size(2048),
             BM = T.tune{16, 4, 8, 32, 64}, BN = 128 },
  args = function(p)
    F.check_k(p.K, "moe_expert_gemm")
    T.check(p.N % p.BN == 0, ("moe_expert_gemm: N = %d is not a multiple of the tile BN = %d"):format(p.N, p.BN))
    return {
      a   = T.tensor{p.R, p.K, T.f8e4m3},
      sa  = T.tensor{p.R, p.K // ABLOCK, T.e8m0},
      cnt = T.tensor{p.E, T.i32},              -- rows routed to each expert (may be 0)
      off = T.tensor{p.E, T.i32},              -- first row of each expert in a
      w   = T.tensor{p.E, p.N, p.K // 2, T.u8},
      sw  = T.tensor{p.E, p.N, p.K // F.WBLOCK, T.e8m0},
      c   = T.tensor{p.R, p.N, T.bf16, out = true},
    }
  end,
  body = function(p, a, sa, cnt, off, w, sw, c)
    for t, bn in T.grid(F.max_tiles(p.R, p.E, p.BM), p.N // p.BN) do
      local tile = F.find_tile(t, cnt, off, p.E, p.BM)
      local acc = T.fragment{p.BM, p.BN, T.f32}
      T.clear(acc)
      F.accumulate({ { acc, bn * p.BN } }, a, sa, w, sw, tile, p.K)
      F.store_rows(acc, c, tile, bn * p.BN)
    end
  end,
}
