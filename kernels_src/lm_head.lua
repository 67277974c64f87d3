-- The output head (v4-spec §3.6 step 3): logits[b, :] = y[b, :] · headᵀ in
-- f32.  y is the final RMSNorm's bf16 output and the head is stored bf16:
-- the reference widens both to f32, where their products are exact, so a
-- bf16 x bf16 product with f32 accumulation is the same math.  In generation only
-- each sequence's last position is computed, so M is the batch (one to a
-- few rows) and this is a GEMV over the 129280 x 4096 head: rows of BM = 1
-- run as dot products along D on the CPU, and the vocabulary is split over
-- the grid in blocks of BV rows (a CPU GEMV wants few, long rows: BV 32
-- and BK = D read 129280 x 4096 at 0.7 of the copy bandwidth, BV 256 and BK
-- 256 at 0.4).
--   tilec run kernels_src/lm_head.lua --set M=1 --set V=1000 --set D=512 --check
local T = require "tile"

return T.kernel "lm_head" {
  params = { M = T.dyn, V = T.size(129280), D = T.size(4096),
             BM = T.tune{1, 16}, BV = T.tune{256, 128, 64, 32}, BK = T.tune{256, 128, 512, 1024, 2048, 4096} },
  args = function(p)
    T.check(p.D % p.BK == 0, ("lm_head: hidden size %d must be a multiple of BK = %d"):format(p.D, p.BK))
    return {
      y      = T.tensor{p.M, p.D, T.bf16},
      head   = T.tensor{p.V, p.D, T.bf16},
      logits = T.tensor{p.M, p.V, T.f32, out = true},
    }
  end,
  body = function(p, y, head, logits)
    for bm, bv in T.grid(T.ceildiv(p.M, p.BM), T.ceildiv(p.V, p.BV)) do
      local ys  = T.shared{p.BM, p.BK, T.bf16}
      local hs  = T.shared{p.BV, p.BK, T.bf16}
      local acc = T.fragment{p.BM, p.BV, T.f32}
      T.clear(acc)
      for k in T.pipelined(p.D // p.BK, 2) do
        T.copy(y:tile(bm * p.BM, k * p.BK), ys)
        T.copy(head:tile(bv * p.BV, k * p.BK), hs)
        T.gemm(ys, hs, acc, { trans_b = true, rows = p.M - bm * p.BM })  -- rows past M: padding
      end
      T.copy(acc, logits:tile(bm * p.BM, bv * p.BV))
    end
  end,
  -- The tiles left unset for one row (--set M=1) on a CPU: the GEMV above,
  -- 32 head rows per block, each read start to end (BK the longest
  -- candidate dividing D).  On a GPU, at any M: 32 head rows per block in
  -- K steps of 128, 4040 blocks to spread over the SMs, where the first
  -- candidates' 256 rows left them 505 (H200, M = 1, `tilec sweep`: BV 32
  -- 0.578 ms against 2.294 at BV 256, BK 256; then BK 128 0.335, 512
  -- 0.665; bench_gpu --ops 2266 -> 335 us, 0.76 of the device copy).
  -- Otherwise the first candidates.
  choose = function(p, target)
    if target.sm then return p.D % 128 == 0 and { BV = 32, BK = 128 } or {} end
    if p.M ~= 1 then return {} end
    for _, c in ipairs{4096, 2048, 1024, 512, 256, 128} do
      if p.D % c == 0 then return { BM = 1, BV = 32, BK = c } end
    end
    return { BM = 1, BV = 32 }
  end,
}
