-- A transposing copy, Y[i][j] = X[j][i + 3], into Y of X's dtype or
-- widened to f32: where R and C are multiples of 8 the CPU copies it in
-- 8x8 register blocks (codegen/transpose.c: 32-bit elements, or bf16/f16
-- rows widened to f32), elsewhere element by element.
-- form = "pairs" moves 16-bit k-pairs instead, Y[i][j] = X[j // 2][2i + j % 2 + 3]
-- (a register-tile GEMM's B packed for vdpbf16ps), in 32-bit register
-- blocks where R is a multiple of 8 and C of 16 — fp8 pairs too, widened
-- into bf16 (to = "bf16").
-- form = "edge" is the plain copy of an edge block, its last 5 rows of X
-- past the edge: Y[i][j] = select(j < C - 5, X[min(j, C - 6)][i + 3], 0)
-- (a GEMM's B panel where N is not a multiple of BN), also in register
-- blocks, each row zeroed whole where it is past the edge.
-- form = "pairs_edge" is the k-pairs of an edge block in a K tail: pair
-- rows j // 2 >= C/2 - 3 past the edge, columns of X at and past 2R - 2
-- past K (an odd count: the last pair split), indices clamped as the
-- bounds pass clamps them: Y[i][j] = select(j // 2 < C/2 - 3 and
-- 2i + j % 2 + 3 < 2R - 2, X[min(j // 2, C/2 - 4)][min(2i + j % 2 + 3, 2R - 3)], 0)
-- — in register blocks too, each row a masked load of the lanes below K.
local T = require "tile"
return T.kernel "transpose" {
  params = { R = T.size(24), C = T.size(16), dtype = T.variant{"f32", "bf16", "f16", "f8e4m3", "f8e5m2"},
             to = T.variant{"same", "f32", "bf16"},
             form = T.variant{"plain", "pairs", "edge", "pairs_edge"} },
  args = function(p)
    local pairs = p.form == "pairs" or p.form == "pairs_edge"
    return {
      X = pairs and T.tensor{p.C // 2, 2 * p.R + 3, p.dtype} or T.tensor{p.C, p.R + 3, p.dtype},
      Y = T.tensor{p.R, p.C, p.to == "same" and p.dtype or p.to, out = true},
    }
  end,
  body = function(p, X, Y)
    for b in T.grid(1) do
      for i, j in T.parallel(p.R, p.C) do
        if p.form == "pairs" then
          Y[i][j] = X[j // 2][2 * i + j % 2 + 3]
        elseif p.form == "pairs_edge" then
          local col = 2 * i + j % 2 + 3
          Y[i][j] = T.select(T.and_(T.lt(j // 2, p.C // 2 - 3), T.lt(col, 2 * p.R - 2)),
                             X[T.min(j // 2, p.C // 2 - 4)][T.min(col, 2 * p.R - 3)], 0.0)
        elseif p.form == "edge" then
          Y[i][j] = T.select(T.lt(j, p.C - 5), X[T.min(j, p.C - 6)][i + 3], 0.0)
        else
          Y[i][j] = X[j][i + 3]
        end
      end
    end
  end,
}
