-- f32 stored into e4m3 and e5m2 through the compiled narrowing
-- (codegen/llvm.c), checked byte for byte by tests/unit/test_fp8_store.c.
-- The exp stored beside them makes the row loop one with vector math: an
-- unmasked vector body and a scalar tail, so W = 64 narrows every value in
-- the vector body and W = 7 (under one vector) every value in scalar code.
-- qc and rc store the value clamped to each format's range first, as the
-- quantisation kernels do (the CPU then skips the store's own saturation).
local T = require "tile"
return T.kernel "fp8_store" {
  params = { N = T.dyn, W = T.size(64), BM = 16 },
  args = function(p) return {
    x = T.tensor{p.N, p.W, T.f32},
    q = T.tensor{p.N, p.W, T.f8e4m3, out = true},
    r = T.tensor{p.N, p.W, T.f8e5m2, out = true},
    e = T.tensor{p.N, p.W, T.f32, out = true},
    qc = T.tensor{p.N, p.W, T.f8e4m3, out = true},
    rc = T.tensor{p.N, p.W, T.f8e5m2, out = true},
  } end,
  body = function(p, x, q, r, e, qc, rc)
    for b in T.grid(T.ceildiv(p.N, p.BM)) do
      for i, j in T.parallel(p.BM, p.W) do
        local v = x[b * p.BM + i][j]
        q[b * p.BM + i][j] = v
        r[b * p.BM + i][j] = v
        e[b * p.BM + i][j] = T.exp(v)
        qc[b * p.BM + i][j] = T.clamp(v, -448.0, 448.0)
        rc[b * p.BM + i][j] = T.clamp(v, -57344.0, 57344.0)
      end
    end
  end,
}
