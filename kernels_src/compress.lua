-- The compressor's pooling (v4-spec §3.4.1 steps 2–3), bulk prefill: each
-- block of r tokens becomes one entry by a softmax over the block's slots,
-- independently per channel, of the gate scores, weighting the projected kv:
--   C_n[d] = Σ_s softmax_s(g_s[d]) · kv_s[d],   g includes the ape bias.
-- Non-overlap (HCA, r = 128; v4-mini 16): the r slots are the block's tokens.
-- Overlap (CSA, r = 4): kv and g are 2D wide; 2r slots — the previous
-- block's tokens through the first half [:D], then this block's through
-- the second half [D:]; block 0's previous slots are kv = 0, g = −inf.
-- Inputs are the f32 projections kv = wkv·x and g = wgate·x (without ape).
--   tilec run kernels_src/compress.lua --set T=32 --set ratio=4 --set D=128 --check
local T = require "tile"

return T.kernel "compress" {
  params = { T = T.size(512), ratio = T.size(4), D = T.size(512), BD = T.tune{128, 64} },
  args = function(p)
    T.check(p.T % p.ratio == 0, ("compress: %d tokens are not whole blocks of %d"):format(p.T, p.ratio))
    T.check(p.D % p.BD == 0, ("compress: D = %d must be a multiple of BD = %d"):format(p.D, p.BD))
    local c = p.ratio == 4 and 2 or 1
    return {
      kv  = T.tensor{p.T, c * p.D, T.f32},
      g   = T.tensor{p.T, c * p.D, T.f32},
      ape = T.tensor{p.ratio, c * p.D, T.f32},
      out = T.tensor{p.T // p.ratio, p.D, T.f32, out = true},
    }
  end,
  body = function(p, kv, g, ape, out)
    local r, overlap = p.ratio, p.ratio == 4
    local nslots = overlap and 2 * r or r
    for n, db in T.grid(p.T // r, p.D // p.BD) do
      local mx  = T.fragment{p.BD, T.f32}
      local den = T.fragment{p.BD, T.f32}
      local num = T.fragment{p.BD, T.f32}
      -- slot s of channel d: its score and value
      local function slot(s, d)
        if not overlap then
          local row = n * r + s
          return g[row][d] + ape[s][d], kv[row][d]
        end
        local prev = T.lt(s, r)                          -- previous block, first half
        local tok = T.select(prev, (n - 1) * r + s, n * r + s - r)
        local col = T.select(prev, d, p.D + d)
        local a = T.select(prev, s, s - r)
        local row = T.max(tok, 0)                        -- block 0 reads a valid row, then masks it
        local valid = T.or_(T.not_(prev), T.ge(n, 1))
        return T.select(valid, g[row][col] + ape[a][col], -math.huge), T.select(valid, kv[row][col], 0.0)
      end
      T.fill(mx, -math.huge)
      T.clear(den)
      T.clear(num)
      for s in T.serial(nslots) do
        for j in T.parallel(p.BD) do
          local score = slot(s, db * p.BD + j)
          mx[j] = T.max(mx[j], score)
        end
      end
      for s in T.serial(nslots) do
        for j in T.parallel(p.BD) do
          local score, value = slot(s, db * p.BD + j)
          local e = T.exp(score - mx[j])
          den[j] = den[j] + e
          num[j] = num[j] + e * value
        end
      end
      for j in T.parallel(p.BD) do out[n][db * p.BD + j] = num[j] / den[j] end
    end
  end,
}
