local T = require "tile"
return T.kernel "parallel_nil_extent" {
  params = { M = T.dyn, N = 8 },
  args = function(p) return {
    x = T.tensor{p.N, p.N, T.f32},
    y = T.tensor{p.N, T.f32, out = true},
    q = T.tensor{p.N, T.i32, out = true},
  } end,
  body = function(p, x, y, q)
    for b in T.grid(1) do
      -- p.BN is not a parameter: the second extent is nil
      for i, j in T.parallel(8, p.BN) do y[i] = 1.0 end
    end
  end,
}
