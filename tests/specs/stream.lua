-- y = x · 2 + 1 over rows of D columns, stored as `out` (f32 or bf16): a
-- write-once output whose stores pass_stream marks, for test_kernels'
-- streamed-store test (a last block of fewer than BM rows stores under a
-- guard, unmarked).
local T = require "tile"

return T.kernel "stream" {
  params = { M = T.dyn, D = T.size(64), out = T.variant{"f32", "bf16"}, BM = T.tune{4} },
  args = function(p) return {
    x = T.tensor{p.M, p.D, T.f32},
    y = T.tensor{p.M, p.D, p.out, out = true},
  } end,
  body = function(p, x, y)
    for bm in T.grid(T.ceildiv(p.M, p.BM)) do
      local t = T.fragment{p.BM, p.D, T.f32}
      T.copy(x:tile(bm * p.BM, 0), t)
      for i, j in T.parallel(p.BM, p.D) do t[i][j] = t[i][j] * 2.0 + 1.0 end
      T.copy(t, y:tile(bm * p.BM, 0))
    end
  end,
}
