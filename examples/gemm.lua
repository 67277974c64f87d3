-- C[M,N] = A[M,K] · B[N,K]^T with f32, bf16 or fp8 (e4m3) inputs, f32 accumulation.
-- Each block computes a BM x BN tile of C: it stages BM x BK of A and
-- BN x BK of B in shared buffers and accumulates in a register fragment.
--   tilec run examples/gemm.lua --set dtype=bf16 --set M=300 --check
local T = require "tile"

return T.kernel "gemm" {
  params = {
    M = T.size(256), N = T.size(256), K = T.size(256),
    dtype = T.variant{"f32", "bf16", "f8e4m3"}, stages = T.tune{2, 3, 4},  -- tiles in flight (CPU: prefetch distance + 1)
    BM = T.tune{192, 96, 48, 24, 128, 64, 16, 4, 1, 256, 512}, BN = T.tune{64, 32, 128, 256, 16, 8, 4}, BK = T.tune{128, 64, 256, 32, 512, 1024, 2048, 4096},
  },
  args = function(p) return {
    A = T.tensor{p.M, p.K, p.dtype},
    B = T.tensor{p.N, p.K, p.dtype},
    C = T.tensor{p.M, p.N, T.f32, out = true},
  } end,
  body = function(p, A, B, C)
    for by, bx in T.grid(T.ceildiv(p.M, p.BM), T.ceildiv(p.N, p.BN)) do
      local As  = T.shared{p.BM, p.BK, p.dtype}
      local Bs  = T.shared{p.BN, p.BK, p.dtype}
      local acc = T.fragment{p.BM, p.BN, T.f32}
      T.clear(acc)
      for k in T.pipelined(T.ceildiv(p.K, p.BK), p.stages) do
        T.copy(A:tile(by * p.BM, k * p.BK), As)
        T.copy(B:tile(bx * p.BN, k * p.BK), Bs)
        T.gemm(As, Bs, acc, { trans_b = true, rows = p.M - by * p.BM, cols = p.N - bx * p.BN })  -- past M, N: padding
      end
      T.copy(acc, C:tile(by * p.BM, bx * p.BN))
    end
  end,
  -- The tile sizes left unset, picked per shape as a tuner would (a --set or
  -- --tuned value stays; `tilec ir` shows the choice).  A CPU runs up to 16
  -- rows as dot tiles that read B in place: K in one step where a
  -- candidate divides it, each weight row then one stream read start to
  -- end (f32 M=1, 4096^2, one thread: 5.9 ms at BK 128, 3.3 at 4096), in
  -- blocks of 32 weight rows, 4 at one row: fewer streams for the
  -- prefetchers (Zen 5, M = 1, 4096^2, one thread: bf16 1.15-1.18 ->
  -- 0.76-0.79 ms, f32 2.51 -> 1.67, e4m3 0.74 -> 0.58).  More rows run register tiles in the
  -- smallest row block that holds M, at most 256 (each packed B panel is
  -- reused over it; 512-row bands of A come from L3 for every column
  -- block), and f32 (bf16 beside a bf16 dot) in 1024-deep steps, A read in place (1024^3 27.4 ms
  -- at BK 128, 26.3 at 512) — or 512, or a last step that pads K by 3% at
  -- most (1000^3, one thread, AVX2 host, four alternations: 32-62 ms,
  -- median 40, at BK 128, 28-51, median 32, at 1024, and compiled in 0.14
  -- s against 0.37: the K tail's staged variants of every tile go).
  -- On sm_90a, products of 128 rows and 256 columns or more run in K
  -- steps of 128 bytes (the widest swizzle): bf16 in 128 x 256 tiles of
  -- three stages — 8192^3 on an H200 (tilec sweep, 2026-11-30) 1.50 ms
  -- against 1.95 in 128 x 128 x 64 tiles of two stages (cuBLAS 1.36-1.41);
  -- fp8 in 128 x 128 tiles of four, since its products are promoted to f32
  -- per step through a partial fragment as wide as the accumulator (256
  -- columns spill).  sm_80 and f32 keep the first candidates.
  choose = function(p, target)
    if target.sm then
      local dt = p.dtype or "f32"
      if target.sm < 90 or dt == "f32" or p.M < 128 or p.N < 256 then return {} end
      local fp8 = dt == "f8e4m3"
      if fp8 then return { BM = 128, BN = 128, BK = 128, stages = 4 } end
      return { BM = 128, BN = 256, BK = 64, stages = 3 }
    end
    local bm = 256
    for _, c in ipairs{1, 4, 16, 24, 48, 96, 192, 256} do
      if p.M <= c then bm = c break end
    end
    -- 512-row blocks where such a band of A fits two L2s (pass_hoist's
    -- bound) and M fills one: B's panels are packed once per row block,
    -- half as often (Zen 5, bf16 2048^3: one thread 37.4-39.9 -> 35.1-36.8
    -- ms, two 20.1-20.3 -> 18.8-18.9; at 4096^3, a 4 MiB band, 305 -> 320);
    -- 333 rows in one such block ran bf16 333 x 777 x 555 at 25.5 GFLOP/s,
    -- in 256-row blocks at 36-47 (AVX2 host, bench_gemm, three runs)
    local bytes = (p.dtype or "f32") == "f32" and 4 or (p.dtype == "bf16" and 2 or 1)
    -- f32 A is read in place, not staged: on AVX-512 512 rows pay beyond
    -- the L2s too where M gives each of two threads two such blocks (Zen 4,
    -- tilec sweep, BK 1024: 2048^3 one thread 159-167 -> 153-159 ms, two
    -- 80.7-80.9 -> 79.5-79.8; 4096^3 1266 -> 1246; bench_gemm 2048^3
    -- 1.00-1.01 -> 1.02 of oneDNN; but 1024^3 on two threads, one block
    -- each, 10.65 -> 11.58; AVX2 not measured)
    local wide_f32 = bytes == 4 and p.M >= 2048 and target.vector_bits == 512
    if p.M >= 512 and (512 * p.K * bytes <= 2 * target.l2 or wide_f32) then bm = 512 end
    if p.M <= 16 then
      for _, c in ipairs{4096, 2048, 1024, 512, 256} do
        if p.K % c == 0 then return { BM = bm, BN = p.M <= 1 and 4 or 32, BK = c } end
      end
      return { BM = bm, BN = p.M <= 1 and 4 or 32 }
    end
    -- bf16 on vdpbf16ps register tiles too (the AVX-512 targets with a bf16
    -- dot): Zen 4, one thread, tilec sweep at BM 512, 2048^3 81.5 ms at BK
    -- 128, 80.5 at 256, 79.5 at 512, 78.5 at 1024; 4096^3 (BM 256) 677 ->
    -- 647; two threads at 2048^3 41.3 -> 39.9-40.6; 1024^3 within 2%.
    -- (Zen 5 not measured; AVX2 widens bf16 to f32 and keeps 128.)  The
    -- same 3% of padding: 1000^3 at BM 512 9.98 ms at BK 1024, 10.4-10.5 at
    -- 128 (since a K tail's k-pairs pack in register blocks; 11.8 before).
    local dt = p.dtype or "f32"
    if dt == "f32" or (dt == "bf16" and target.bf16_dot) then
      for _, c in ipairs{1024, 512} do
        if T.ceildiv(p.K, c) * c - p.K <= p.K // 32 then return { BM = bm, BK = c } end
      end
    end
    -- Otherwise 128-deep steps, or 64 where the last step's padding costs
    -- more than the steps' overhead saves: a step costs about 8 k of its
    -- own (the accumulators loaded and stored, a call per tile), and a
    -- padded k is multiplied like any other.  AVX2 host, one thread, two
    -- runs each: 333 x 777 x 555 f32 4.2-4.4 ms in 128-deep steps, 3.86-3.88
    -- in 64 (bf16 5.05 / 4.80, e4m3 5.60 / 5.38), 300^3 f32 0.89 / 0.78;
    -- 1024^2 x 384 f32 9.3-9.8 / 9.9-10.1 (K divides 128: it stays).
    local function cost(c) return T.ceildiv(p.K, c) * (c + 8) end
    if cost(64) < cost(128) then return { BM = bm, BK = 64 } end
    return { BM = bm }
  end,
}
