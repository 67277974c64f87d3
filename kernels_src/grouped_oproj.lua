-- The grouped output projection's first half (v4-spec §3.4 steps 14–15):
-- the attention output o[t, H·512] splits into G groups of 4096, and
--   u[t, g, :] = wo_a[g] · o[t, g·4096 .. (g+1)·4096)      (a per-group GEMM)
-- with wo_a viewed as [G, R = o_lora, 4096].  The reference runs it in bf16
-- (wo_a dequantised from FP8): bf16 inputs, f32 accumulation, bf16 output.
-- Scales stay group-major (SGLang #29038 was a wrong scale layout here).
--   tilec run kernels_src/grouped_oproj.lua --set M=2 --set G=2 --set R=128 --set GD=512 --check
local T = require "tile"

return T.kernel "grouped_oproj" {
  params = { M = T.dyn, G = T.size(8), R = T.size(1024), GD = T.size(4096),
             BM = T.tune{16, 32, 64}, BR = T.tune{64, 128, 32, 16}, BK = T.tune{256, 128, 512, 1024, 2048, 4096} },
  args = function(p)
    T.check(p.GD % p.BK == 0, ("grouped_oproj: group width %d must be a multiple of BK = %d"):format(p.GD, p.BK))
    return {
      o    = T.tensor{p.M, p.G * p.GD, T.bf16},
      wo_a = T.tensor{p.G, p.R, p.GD, T.bf16},
      u    = T.tensor{p.M, p.G, p.R, T.bf16, out = true},
    }
  end,
  body = function(p, o, wo_a, u)
    for bm, g, br in T.grid(T.ceildiv(p.M, p.BM), p.G, T.ceildiv(p.R, p.BR)) do
      local os  = T.shared{p.BM, p.BK, T.bf16}
      local ws  = T.shared{p.BR, p.BK, T.bf16}
      local acc = T.fragment{p.BM, p.BR, T.f32}
      T.clear(acc)
      for k in T.serial(p.GD // p.BK) do
        T.copy(o:tile(bm * p.BM, g * p.GD + k * p.BK), os)
        T.copy(wo_a:tile(g, br * p.BR, k * p.BK, { 1, p.BR, p.BK }), ws)
        T.gemm(os, ws, acc, { trans_b = true, rows = p.M - bm * p.BM })  -- rows past M: padding
      end
      T.copy(acc, u:tile(bm * p.BM, g, br * p.BR, { p.BM, 1, p.BR }))
    end
  end,
  -- On a CPU at decode (row blocks of at most 16): all of a group's K in
  -- one step (up to 4096) and 32 weight rows per block — the dot tiles
  -- read wo_a's rows in place (its tile copy forwarded), a few at a time.
  -- Zen 5, 16 rows, G 8, R 1024, GD 4096, one thread, weights from DRAM
  -- (`tilec sweep --over BK=4096,1024 --over BR=16,32,64 --rotate 2`):
  -- 4.56-4.82 ms against 6.43 at the first candidates (BK 256, BR 64), BK
  -- 1024 5.45-5.69, with the copy; read in place, four alternations, BR
  -- 32 4.16-4.70 against 16 4.43-5.58.
  choose = function(p, target)
    if target.sm or (p.BM or 16) > 16 then return {} end
    for _, c in ipairs{4096, 2048, 1024, 512} do
      if p.GD % c == 0 then return { BK = c, BR = p.R % 32 == 0 and 32 or 16 } end
    end
    return {}
  end,
}
