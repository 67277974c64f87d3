-- The compressor's projections (v4-spec §3.4.1 step 1): kv = wkv·x and
-- g = wgate·x for T tokens, x bf16 [T, d] (the attention input), wkv and
-- wgate stored bf16 [c·D, d] (c = 2 for ratio 4, else 1), f32 out.  The
-- reference widens x and the weights to f32, where a bf16 x bf16 product
-- is exact, so bf16 tiles with f32 accumulation are the same math.  One
-- kernel for both: each x tile is read once for the two weight tiles.
-- Decode (T up to 16) is a GEMV over the weights: one BM = 16 row block
-- covers every token, so the weights are read once; the outputs go to
-- compress_prefill.lua / compress_decode.lua (ape is added there).
--   tilec run kernels_src/compress_proj.lua --set T=5 --set d=512 --set D=128 --set kind=index --check
local T = require "tile"
local C = require "compressor"

return T.kernel "compress_proj" {
  params = { T = T.dyn, d = T.size(4096), D = T.size(512), ratio = T.size(4), kind = T.variant{"attn", "index"},
             BM = T.tune{16, 64}, BN = T.tune{64, 128, 32, 16}, BK = T.tune{128, 256, 512, 1024, 2048, 4096} },
  args = function(p)
    C.check(p, "compress_proj")
    T.check(p.d % p.BK == 0, ("compress_proj: d = %d is not a multiple of BK = %d"):format(p.d, p.BK),
            "the K loop reads whole tiles; V4's d is 4096, v4-mini's 512")
    local cw = C.halves(p) * p.D
    return {
      x     = T.tensor{p.T, p.d, T.bf16},
      wkv   = T.tensor{cw, p.d, T.bf16},
      wgate = T.tensor{cw, p.d, T.bf16},
      kv    = T.tensor{p.T, cw, T.f32, out = true},
      g     = T.tensor{p.T, cw, T.f32, out = true},
    }
  end,
  body = function(p, x, wkv, wgate, kv, g)
    local cw = C.halves(p) * p.D
    for bm, bn in T.grid(T.ceildiv(p.T, p.BM), T.ceildiv(cw, p.BN)) do
      local xs   = T.shared{p.BM, p.BK, T.bf16}
      local wks  = T.shared{p.BN, p.BK, T.bf16}
      local wgs  = T.shared{p.BN, p.BK, T.bf16}
      local acck = T.fragment{p.BM, p.BN, T.f32}
      local accg = T.fragment{p.BM, p.BN, T.f32}
      T.clear(acck)
      T.clear(accg)
      for k in T.pipelined(p.d // p.BK, 2) do
        T.copy(x:tile(bm * p.BM, k * p.BK), xs)
        T.copy(wkv:tile(bn * p.BN, k * p.BK), wks)
        T.copy(wgate:tile(bn * p.BN, k * p.BK), wgs)
        T.gemm(xs, wks, acck, { trans_b = true, rows = p.T - bm * p.BM })  -- rows past T: padding
        T.gemm(xs, wgs, accg, { trans_b = true, rows = p.T - bm * p.BM })
      end
      T.copy(acck, kv:tile(bm * p.BM, bn * p.BN))
      T.copy(accg, g:tile(bm * p.BM, bn * p.BN))
    end
  end,
  -- On a CPU at decode (row blocks of at most 16): K steps of 1024, long
  -- runs of each weight row for the dot tiles.  Zen 5, 16 tokens, d 4096,
  -- one thread, weights from DRAM (`tilec sweep --over BK=... --over
  -- BN=64,32 --rotate 4`): attn (D 512, ratio 4) 1.08-1.19 ms against
  -- 1.98 at the first candidates (BK 128), BK 4096 1.22-1.32; index (D
  -- 128) 0.28 against 0.51.
  choose = function(p, target)
    if target.sm or (p.BM or 16) > 16 then return {} end
    for _, c in ipairs{1024, 512, 256} do
      if p.d % c == 0 then return { BK = c } end
    end
    return {}
  end,
}
