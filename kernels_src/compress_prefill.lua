-- The compressor's bulk prefill (v4-spec §3.4.1), one fused kernel: each
-- complete block n of r tokens is pooled (compressor.lua: per-channel
-- softmax over its slots, overlapping 8-slot windows for CSA), then the
-- emit chain — bf16, RMSNorm with weight, bf16, RoPE on the last 64 dims
-- at position n·r, then FP8 on the nope dims (kind = attn, D 512 or
-- v4-mini's 192) or Hadamard + FP4 (kind = index, D 128) — writes cache
-- row n (bf16); the pooled f32 entry never reaches memory.  The grid's
-- last block fills the streaming state compress_decode.lua continues:
-- the tokens past the last complete block, and (CSA) that block itself as
-- the next entry's previous block.  Inputs: the f32 projections of
-- compress_proj.lua (kv, g = wkv·x, wgate·x; ape is added here), the norm
-- weight, the cos/sin table of rope.lua (θ 160000 + YaRN).  Batch 1.
--   tilec run kernels_src/compress_prefill.lua --set T=37 --set D=128 --set kind=index --check
local T = require "tile"
local C = require "compressor"

local function known(x) return type(x) == "number" end

return T.kernel "compress_prefill" {
  params = { T = T.dyn, D = T.size(512), ratio = T.size(4), kind = T.variant{"attn", "index"}, S = T.size(4096) },
  args = function(p)
    C.check(p, "compress_prefill")
    C.check_cache(p, "compress_prefill")
    if known(p.T) then
      T.check(p.T >= 1 and p.T <= p.S, ("compress_prefill: %d tokens do not fit the %d-token cache"):format(p.T, p.S))
    end
    local cw = C.halves(p) * p.D
    return {
      kv          = T.tensor{p.T, cw, T.f32},
      g           = T.tensor{p.T, cw, T.f32},
      ape         = T.tensor{p.ratio, cw, T.f32},
      w           = T.tensor{p.D, T.f32},
      cs          = T.tensor{p.S, 32, 2, T.f32},
      cache       = T.tensor{p.S // p.ratio, p.D, T.bf16, inout = true},
      kv_state    = T.tensor{C.nslots(p), cw, T.f32, out = true},
      score_state = T.tensor{C.nslots(p), cw, T.f32, out = true},
    }
  end,
  body = function(p, kv, g, ape, w, cs, cache, kv_state, score_state)
    local nb = p.T // p.ratio
    for n in T.grid(nb + 1) do
      T.if_(T.lt(n, nb), function()
        local y = C.pool(p.D, C.nslots(p), function(s, d) return C.bulk_slot(p, kv, g, ape, n, s, d) end)
        C.emit(p, y, w, cs, n * p.ratio, cache, n)
      end, function()
        C.fill_state(p, kv, g, ape, kv_state, score_state, p.T, nb)
      end)
    end
  end,
}
