local T = require "tile"
return T.kernel "gemm_scale_dtype" {
  params = { N = 16, K = 64 },
  args = function(p) return {
    x = T.tensor{4, p.K, T.bf16},
    w = T.tensor{2, p.N, p.K, T.f4e2m1},
    sw = T.tensor{2, p.N, 2, T.i32},
    y = T.tensor{4, p.N, T.f32, out = true},
  } end,
  body = function(p, x, w, sw, y)
    for b in T.grid(1) do
      local acc = T.fragment{4, p.N, T.f32}
      T.gemm(x:tile(0, 0, {4, p.K}), w:tile(1, 0, 0, {1, p.N, p.K}), acc, { trans_b = true, b_scale = sw:tile(1, 0, 0, {1, p.N, 2}) })
    end
  end,
}
