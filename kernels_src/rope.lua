-- RoPE (v4-spec §3.7): rotate the last 64 dims of every head by the token's
-- position, interleaved pairs (x[2i], x[2i+1]) as complex numbers (GPT-J
-- style); `direction = inverse` applies the conjugate (the de-rotation of
-- the attention output, §3.4 step 13).  The cos/sin table is data, built
-- once by the runtime from θ and YaRN like the reference's freqs_cis:
-- cs[p, i] = (cos(p·freq_i), sin(p·freq_i)).  Other dims are copied.
--   tilec run kernels_src/rope.lua --set M=3 --set H=2 --check
local T = require "tile"
local R = require "rotate"

local ROPE = R.ROPE

return T.kernel "rope" {
  params = { M = T.dyn, H = T.size(64), D = T.size(512), P = T.size(4096),
             direction = T.variant{"forward", "inverse"}, BM = T.tune{4, 1, 8} },
  args = function(p)
    T.check(p.D > ROPE and p.D % 2 == 0, ("rope: head dim %d must hold the %d rotary dims"):format(p.D, ROPE))
    return {
      x   = T.tensor{p.M, p.H, p.D, T.bf16},
      pos = T.tensor{p.M, T.i32},                 -- absolute positions, < P
      cs  = T.tensor{p.P, ROPE // 2, 2, T.f32},
      y   = T.tensor{p.M, p.H, p.D, T.bf16, out = true},
    }
  end,
  body = function(p, x, pos, cs, y)
    local sign = p.direction == "inverse" and -1.0 or 1.0
    local base = p.D - ROPE
    for bm in T.grid(T.ceildiv(p.M, p.BM)) do
      for i, h, j in T.parallel(p.BM, p.H, base) do
        local t = bm * p.BM + i
        T.if_(T.lt(t, p.M), function() y[t][h][j] = x[t][h][j] end)
      end
      for i, h, k in T.parallel(p.BM, p.H, ROPE // 2) do
        local t = bm * p.BM + i
        T.if_(T.lt(t, p.M), function()
          local at = pos[t]
          local c, s = cs[at][k][0], cs[at][k][1] * sign
          local a, b = x[t][h][base + 2 * k], x[t][h][base + 2 * k + 1]
          local re, im = R.rope_pair(a, b, c, s)
          y[t][h][base + 2 * k]     = re
          y[t][h][base + 2 * k + 1] = im
        end)
      end
    end
  end,
}
