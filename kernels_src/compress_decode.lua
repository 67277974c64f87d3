-- The compressor's streaming decode (v4-spec §3.4.1 "Streaming/decode
-- state"), one token at position pos (batch 1): its projections kv, g
-- (compress_proj.lua at T = 1) go to state slot pos mod r (r + pos mod r
-- with overlap), the score with ape[pos mod r]; when (pos+1) mod r == 0
-- the block is complete: the state's slots are pooled (with overlap the
-- previous block through the first half, the current through the
-- second), the emit chain of compress_prefill.lua writes cache row
-- pos // r with RoPE at position pos+1−r, and (overlap) slots r..2r−1
-- move to 0..r−1.  The state comes from compress_prefill.lua.  One block
-- of the grid: the emit needs the whole row, and the condition is a
-- run-time T.if_ on pos.
--   tilec run kernels_src/compress_decode.lua --set D=128 --set kind=index --set pos=7 --check
local T = require "tile"
local C = require "compressor"

local function known(x) return type(x) == "number" end

return T.kernel "compress_decode" {
  params = { pos = T.dyn, D = T.size(512), ratio = T.size(4), kind = T.variant{"attn", "index"}, S = T.size(4096) },
  args = function(p)
    C.check(p, "compress_decode")
    C.check_cache(p, "compress_decode")
    if known(p.pos) then
      T.check(p.pos < p.S, ("compress_decode: position %d is beyond the %d-token cache"):format(p.pos, p.S))
    end
    local cw = C.halves(p) * p.D
    return {
      kv          = T.tensor{1, cw, T.f32},
      g           = T.tensor{1, cw, T.f32},
      ape         = T.tensor{p.ratio, cw, T.f32},
      w           = T.tensor{p.D, T.f32},
      cs          = T.tensor{p.S, 32, 2, T.f32},
      cache       = T.tensor{p.S // p.ratio, p.D, T.bf16, inout = true},
      kv_state    = T.tensor{C.nslots(p), cw, T.f32, inout = true},
      score_state = T.tensor{C.nslots(p), cw, T.f32, inout = true},
    }
  end,
  body = function(p, kv, g, ape, w, cs, cache, kv_state, score_state)
    local r, cw = p.ratio, C.halves(p) * p.D
    for _ in T.grid(1) do
      local a = p.pos % r
      local slot = C.overlap(p) and r + a or a
      for j in T.parallel(cw) do
        kv_state[slot][j] = kv[0][j]
        score_state[slot][j] = g[0][j] + ape[a][j]
      end
      T.if_(T.eq((p.pos + 1) % r, 0), function()
        local y = C.pool(p.D, C.nslots(p), function(s, d) return C.state_slot(p, kv_state, score_state, s, d) end)
        C.emit(p, y, w, cs, p.pos + 1 - r, cache, p.pos // r)
        if C.overlap(p) then
          for s in T.serial(r) do
            for j in T.parallel(cw) do
              kv_state[s][j] = kv_state[r + s][j]
              score_state[s][j] = score_state[r + s][j]
            end
          end
        end
      end)
    end
  end,
}
