-- The compressor's pooling (v4-spec §3.4.1 steps 2–3), bulk prefill: each
-- block of r tokens becomes one entry by a softmax over the block's slots,
-- independently per channel, of the gate scores, weighting the projected kv:
--   C_n[d] = Σ_s softmax_s(g_s[d]) · kv_s[d],   g includes the ape bias.
-- Non-overlap (HCA, r = 128; v4-mini 16): the r slots are the block's tokens.
-- Overlap (CSA, r = 4): kv and g are 2D wide; 2r slots — the previous
-- block's tokens through the first half [:D], then this block's through
-- the second half [D:]; block 0's previous slots are kv = 0, g = −inf.
-- Inputs are the f32 projections kv = wkv·x and g = wgate·x (without ape).
-- The pooled f32 entries are the output: compress_prefill.lua fuses the
-- same pooling (compressor.lua) with the emit chain instead.
--   tilec run kernels_src/compress.lua --set T=32 --set ratio=4 --set D=128 --check
local T = require "tile"
local C = require "compressor"

return T.kernel "compress" {
  params = { T = T.size(512), ratio = T.size(4), D = T.size(512), BD = T.tune{128, 64} },
  args = function(p)
    C.check_ratio(p, "compress")
    T.check(p.T % p.ratio == 0, ("compress: %d tokens are not whole blocks of %d"):format(p.T, p.ratio))
    T.check(p.D % p.BD == 0, ("compress: D = %d must be a multiple of BD = %d"):format(p.D, p.BD))
    local c = C.halves(p)
    return {
      kv  = T.tensor{p.T, c * p.D, T.f32},
      g   = T.tensor{p.T, c * p.D, T.f32},
      ape = T.tensor{p.ratio, c * p.D, T.f32},
      out = T.tensor{p.T // p.ratio, p.D, T.f32, out = true},
    }
  end,
  body = function(p, kv, g, ape, out)
    for n, db in T.grid(p.T // p.ratio, p.D // p.BD) do
      local y = C.pool(p.BD, C.nslots(p), function(s, j) return C.bulk_slot(p, kv, g, ape, n, s, db * p.BD + j) end)
      for j in T.parallel(p.BD) do out[n][db * p.BD + j] = y[0][j] end
    end
  end,
}
