local T = require "tile"
return T.kernel "gemm_scaled_rank" {
  params = { N = 16, K = 64 },
  args = function(p) return {
    x = T.tensor{4, p.K, T.bf16},
    w = T.tensor{2, p.N, p.K, T.f4e2m1},
    sw = T.tensor{2, p.N, 2, T.e8m0},
    y = T.tensor{4, p.N, T.f32, out = true},
  } end,
  body = function(p, x, w, sw, y)
    for b in T.grid(1) do
      local acc = T.fragment{4, p.N, T.f32}
      T.gemm(x:tile(0, 0, {4, p.K}), w:tile(0, 0, 0, {2, p.N // 2, p.K}), acc, { trans_b = true, b_scale = sw:tile(0, 0, 0, {2, p.N // 2, 2}) })
    end
  end,
}
