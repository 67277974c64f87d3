-- Every DSL construct once; test_frontend.c checks the IR it builds.
local T = require "tile"
return T.kernel "features" {
  params = { M = T.dyn, N = T.size(16), R = 4, mode = "fast", dt = T.tune{"bf16", "f32"} },
  args = function(p) return {
    x = T.tensor{p.M, p.N, T.f32},
    w = T.tensor{p.N, p.dt},
    q = T.tensor{p.M, p.N, T.i32, inout = true},
    y = T.tensor{p.M, p.N, T.f32, out = true, strides = {32, 1}},
    s = T.tensor{p.N, T.f32, out = true},
  } end,
  body = function(p, x, w, q, y, s)
    for bx in T.grid(T.ceildiv(p.M, p.R)) do
      local xs = T.shared{p.R, p.N, T.f32}
      local acc = T.fragment{p.R, p.N, T.f32, name = "accum"}
      local rs = T.local_{p.R, T.f32, name = "rs"}
      T.fragment{2, 2, T.f32}
      T.clear(acc)
      T.copy(x:tile(bx * p.R, 0), xs)
      for i, j in T.parallel(p.R, p.N) do
        local v = xs[i][j]
        acc[{i, j}] = T.select(T.gt(v, 0.0), T.exp(v) - T.log(T.abs(v) + 1.0), -v) * w[j]
        q[bx * p.R + i][j] = (q[bx * p.R + i][j] // 2) % 3 + T.cast(v, T.i32)
      end
      for k in T.serial(3) do
        if k then break end
      end
      for u in T.unroll(2) do
        T.if_(T.eq(u, 0), function() rs[u] = 1.0 end, function() rs[u] = 2.0 end)
      end
      for k in T.pipelined(T.ceildiv(p.N, 8), 3) do
        T.fill(xs:tile(0, k * 8, {p.R, 8}), T.sqrt(2.0))
      end
      T.reduce_max(acc, rs, 1)
      T.reduce_sum(acc, rs, 1, { clear = false })
      T.reduce_absmax(acc, rs, 1)
      T.reduce_min(xs, s:tile(0, {p.N}), 0)
      T.atomic_add(s:tile(0), rs:tile(0, {p.R}))
      T.copy(acc, y:tile(bx * p.R, 0))
    end
  end,
}
