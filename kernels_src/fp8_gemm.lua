-- fp8_gemm (v4-spec §2.3), W8A8 with block scales and per-block promotion:
--   C[M,N] = Σ_kb (A_kb · B_kbᵀ) · sa[m, kb] · sb[n // 128, kb],  C in bf16,
-- A: e4m3 activations with 1×128 UE8M0 scales (act_quant's output),
-- B: e4m3 weights with 128×128 UE8M0 scales.  Each 128-wide K block is an
-- exact product (e4m3 values widen exactly to bf16 for vdpbf16ps) summed in
-- its own f32 accumulator, then scaled and added to the running one: the
-- reference's "promotion every K block".  BN (rows of B per block) divides
-- 128; at decode a small BN keeps fewer weight rows in flight per step,
-- which the CPU's prefetchers follow (16 rows: 2x the weight bandwidth of
-- 128 at M = 1 on an AVX2 host; `choose` at the end picks decode tiles).
-- BK above 128: each step is one T.gemm over BK columns with both block
-- scales (a_scale, b_scale), so the per-block promotion happens inside the
-- GEMM — on the CPU's decode dot tiles in registers, where the per-block
-- body pays a reduction and a pass over its fragments every 128 columns
-- (choose takes all of K at one row).  Elsewhere the lowering dequantises each
-- step's scaled tiles first: BK 128, the default, suits the tensor cores
-- and the register tiles of a prefill.
--   tilec run kernels_src/fp8_gemm.lua --set M=16 --set N=256 --set K=512 --check
--   tilec run kernels_src/fp8_gemm.lua --set M=1 --set N=256 --set K=512 --set BK=512 --check
local T = require "tile"

local BLOCK = 128

return T.kernel "fp8_gemm" {
  params = { M = T.dyn, N = T.size(4096), K = T.size(4096), BM = T.tune{64, 32, 16, 128, 4, 1, 256},
             BN = T.tune{128, 64, 32, 16, 8, 4}, BK = T.tune{128, 256, 512, 1024, 2048, 4096} },
  args = function(p)
    T.check(p.K % BLOCK == 0, ("fp8_gemm: K = %d is not a multiple of the scale block (%d)"):format(p.K, BLOCK))
    T.check(p.K % p.BK == 0, ("fp8_gemm: BK = %d does not divide K = %d"):format(p.BK, p.K))
    -- a block's rows share one row of weight scales
    T.check(BLOCK % p.BN == 0, ("fp8_gemm: BN = %d does not divide the scale block (%d)"):format(p.BN, BLOCK))
    return {
      a  = T.tensor{p.M, p.K, T.f8e4m3},
      sa = T.tensor{p.M, p.K // BLOCK, T.e8m0},
      b  = T.tensor{p.N, p.K, T.f8e4m3},
      sb = T.tensor{T.ceildiv(p.N, BLOCK), p.K // BLOCK, T.e8m0},
      c  = T.tensor{p.M, p.N, T.bf16, out = true},
    }
  end,
  body = function(p, a, sa, b, sb, c)
    if p.BK > BLOCK then
      local SB = p.BK // BLOCK -- scale columns per step
      for by, bx in T.grid(T.ceildiv(p.M, p.BM), T.ceildiv(p.N, p.BN)) do
        local acc = T.fragment{p.BM, p.BN, T.f32}
        T.clear(acc)
        for kb in T.pipelined(p.K // p.BK, 2) do
          T.gemm(a:tile(by * p.BM, kb * p.BK, { p.BM, p.BK }), b:tile(bx * p.BN, kb * p.BK, { p.BN, p.BK }), acc,
                 { trans_b = true, rows = p.M - by * p.BM,
                   a_scale = sa:tile(by * p.BM, kb * SB, { p.BM, SB }),
                   b_scale = sb:tile(bx * p.BN // BLOCK, kb * SB, { 1, SB }) })
        end
        T.copy(acc, c:tile(by * p.BM, bx * p.BN))
      end
      return
    end
    for by, bx in T.grid(T.ceildiv(p.M, p.BM), T.ceildiv(p.N, p.BN)) do
      local As   = T.shared{p.BM, BLOCK, T.bf16}
      local Bs   = T.shared{p.BN, BLOCK, T.bf16}
      local part = T.fragment{p.BM, p.BN, T.f32}
      local acc  = T.fragment{p.BM, p.BN, T.f32}
      local sas  = T.fragment{p.BM, T.f32}
      T.clear(acc)
      for kb in T.pipelined(p.K // BLOCK, 2) do
        T.copy(a:tile(by * p.BM, kb * BLOCK), As)
        T.copy(b:tile(bx * p.BN, kb * BLOCK), Bs)
        T.gemm(As, Bs, part, { trans_b = true, clear = true, rows = p.M - by * p.BM })  -- rows past M: padding
        T.copy(sa:tile(by * p.BM, kb, { p.BM, 1 }), sas)
        local sbk = sb[bx * p.BN // BLOCK][kb]
        for i, j in T.parallel(p.BM, p.BN) do
          acc[i][j] = acc[i][j] + part[i][j] * (sas[i] * sbk)
        end
      end
      T.copy(acc, c:tile(by * p.BM, bx * p.BN))
    end
  end,
  -- The tile sizes left unset where M is known (--set M=...), as a tuner
  -- would (a --set or --tuned value stays).  Decode (up to 16 rows, on a
  -- CPU): blocks of 4 weight rows at one row, 32 at more, few enough
  -- streams for the prefetchers (M = 1: 16 rows 2x the weight bandwidth of
  -- 128 on an AVX2 host; 4 rows 1.6-1.8x that of 16 on Zen 5, one thread,
  -- 0.62 -> 0.35-0.40 ms at 4096^2, 0.42 -> 0.35 at 7168x2048; at 4 and
  -- 16 rows 16-32 stay best).
  -- The K step: the longest that divides K and keeps a dot tile's rows of
  -- A (staged as f32 once per row block, pass_hoist; 1, 4 or 8 rows per
  -- tile at 1, 4 and 16 rows) within half of L1, where the tile re-reads
  -- them for every column: on the AVX2 host's 32 KiB, all of K at one row
  -- (one scaled T.gemm, each 128-wide block promoted in registers), 1024
  -- at 4 rows, 512 at 16.  `tilec sweep` over BK and BN agreed (one
  -- thread, alternated): 4 rows 4096^2 2.60-2.73 ms at the earlier 512/16
  -- against 2.50-2.55, 7168x2048 2.42-3.07 against 2.22-2.25; 16 rows
  -- 4096^2 9.51-9.67 at 128/16 against 8.98-9.17, 7168x2048 equal.
  -- Where the tiles sum with vdpbf16ps (target.bf16_dot: A staged bf16,
  -- half the bytes, and bands of 8 rows) all of K up to 4096 instead — the
  -- lowering runs a band whose A outgrows L1 in K chunks itself
  -- (passes/lower_gemm.c, band_k_chunk): Zen 5, weights from DRAM, 4 rows
  -- 4096^2 0.76 ms in steps of 1024 against 0.62, 7168x2048 0.67 against
  -- 0.56; 16 rows 1.60 either way (steps of 2048 here, or chunks there).
  -- On a GPU at up to 16 rows: 16-row blocks of 32 weight rows, 4x as
  -- many blocks as 64 rows over 128 (H200, M = 16, N = K = 4096, BK 128,
  -- `tilec sweep --over BM=16,32,64 --over BN=32,64,128`: 0.032 ms against
  -- 0.200 at the first candidates).  Otherwise (a dyn M, prefill) the
  -- first candidates.
  choose = function(p, target)
    if target.sm then return p.M and p.M <= 16 and { BM = 16, BN = 32, BK = 128 } or {} end
    -- a prefill: 128-row blocks (Zen 5, N = K = 2048, one thread: 51.7 ->
    -- 43.4 ms; N = K = 7168 620 -> 539; x86-avx2 there 159 -> 151), 256
    -- beyond 128 rows: each step's weight tile is packed half as often
    -- (Zen 5, one thread, N = K = 4096: M = 256 29.4-29.5 -> 25.5-26.9 ms,
    -- 1024 103-110 -> 93-98, 4096 426-440 -> 410-412; N = K = 2048 at 1024
    -- 25.5-25.6 -> 23.0-23.6).  512 would need a 256 KiB fragment.
    if p.M and p.M > 64 then return { BM = p.M > 128 and 256 or 128 } end
    -- a dyn M in blocks of at most 16 rows (--set BM: bench_moe's shared
    -- expert at decode): dot tiles over all of K (Zen 5, N 2048, K 4096,
    -- one thread, M = 1 / 4 / 16: 0.70 / 2.15 / 3.82 ms at the first
    -- candidates, 0.37 / 0.50 / 1.56 at BN 16 and BK 4096; BK 1024 0.43 /
    -- 0.63 / 1.78); where the tiles sum with vdpbf16ps (target.bf16_dot),
    -- folding their scales and chunking K, 64 weight rows per block
    -- (weights from DRAM: N 2048 K 4096 0.27-0.29
    -- / 0.32 / 0.95 ms against 0.28-0.30 / 0.30-0.33 / 0.98-1.01 at BN 16;
    -- N 4096 K 2048 0.30-0.32 / 0.31-0.33 / 0.93-0.95 against 0.30-0.33 /
    -- 0.31-0.35 / 0.98-1.03)
    if not p.M and p.BM and p.BM <= 16 then
      for _, c in ipairs{4096, 2048, 1024, 512, 256} do
        if p.K % c == 0 then return { BN = target.bf16_dot and 64 or 16, BK = c } end
      end
      return {}
    end
    if not p.M or p.M > 16 then return {} end
    local bm = p.M <= 1 and 1 or p.M <= 4 and 4 or 16
    local rows, bk = math.min(bm, 8), 128
    for _, c in ipairs{4096, 2048, 1024, 512, 256} do
      if p.K % c == 0 and (target.bf16_dot or rows * c * 4 <= target.l1 // 2) then bk = c break end
    end
    return { BM = bm, BN = bm == 1 and 4 or 32, BK = bk }
  end,
}
