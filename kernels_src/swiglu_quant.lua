-- The routed expert's activation (v4-spec §3.5 steps 7–9), between its two
-- GEMMs: from the gate and up projections g, u (bf16 GEMM outputs),
--   h = silu(min(g, L)) · clamp(u, -L, L) · w_token      in f32 (L = 10),
-- cast to bf16, then act_quant (1×128 e4m3 with UE8M0 scales) for the down
-- projection.  The clamp is asymmetric: the gate has no lower bound.
--   tilec run kernels_src/swiglu_quant.lua --set M=4 --set I=256 --check
local T = require "tile"
local Q = require "quant"

local BLOCK = 128

return T.kernel "swiglu_quant" {
  params = { M = T.dyn, I = T.size(2048), limit = T.variant{"10"}, BM = T.tune{8, 4, 16} },
  args = function(p)
    T.check(p.I % BLOCK == 0, ("swiglu_quant: inter dim %d is not a multiple of the scale block (%d)"):format(p.I, BLOCK))
    return {
      g = T.tensor{p.M, p.I, T.bf16},
      u = T.tensor{p.M, p.I, T.bf16},
      w = T.tensor{p.M, T.f32},               -- the token's routing weight (1 for the shared expert)
      q = T.tensor{p.M, p.I, T.f8e4m3, out = true},
      s = T.tensor{p.M, p.I // BLOCK, T.e8m0, out = true},
    }
  end,
  body = function(p, g, u, w, q, s)
    local L = tonumber(p.limit)
    for bm, bk in T.grid(T.ceildiv(p.M, p.BM), p.I // BLOCK) do
      local gs    = T.fragment{p.BM, BLOCK, T.f32}
      local us    = T.fragment{p.BM, BLOCK, T.f32}
      local ws    = T.fragment{p.BM, T.f32}
      T.copy(g:tile(bm * p.BM, bk * BLOCK), gs)
      T.copy(u:tile(bm * p.BM, bk * BLOCK), us)
      T.copy(w:tile(bm * p.BM), ws)
      for i, j in T.parallel(p.BM, BLOCK) do
        local h = T.silu(T.min(gs[i][j], L)) * T.clamp(us[i][j], -L, L) * ws[i]
        gs[i][j] = T.cast(h, T.bf16)
      end
      local scale = Q.scale_rows(gs, 448.0, 1e-4)
      T.copy(gs, q:tile(bm * p.BM, bk * BLOCK))
      T.copy(scale, s:tile(bm * p.BM, bk, { p.BM, 1 }))
    end
  end,
}
