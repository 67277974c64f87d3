-- y = silu(gate) · up, elementwise, fused into one pass over memory
-- (the SwiGLU activation of an MoE expert without its clamp).
--   tilec run examples/silu_mul.lua --set dtype=f32 --check
local T = require "tile"

return T.kernel "silu_mul" {
  params = { M = T.size(128), N = T.size(1000), dtype = T.variant{"bf16", "f32"},
             BM = T.tune{4, 8, 16}, BN = T.tune{512, 256, 1024} },
  args = function(p) return {
    gate = T.tensor{p.M, p.N, p.dtype},
    up   = T.tensor{p.M, p.N, p.dtype},
    y    = T.tensor{p.M, p.N, p.dtype, out = true},
  } end,
  body = function(p, gate, up, y)
    for by, bx in T.grid(T.ceildiv(p.M, p.BM), T.ceildiv(p.N, p.BN)) do
      local g = T.fragment{p.BM, p.BN, T.f32}
      local u = T.fragment{p.BM, p.BN, T.f32}
      T.copy(gate:tile(by * p.BM, bx * p.BN), g)
      T.copy(up:tile(by * p.BM, bx * p.BN), u)
      for i, j in T.parallel(p.BM, p.BN) do g[i][j] = T.silu(g[i][j]) * u[i][j] end
      T.copy(g, y:tile(by * p.BM, bx * p.BN))
    end
  end,
}
