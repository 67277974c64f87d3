-- bench/add_cast.lua — the unfused chain's last step in bench_moe:
--   out = bf16(a + b)     a f32 [M, D] (moe_combine's f32 sum), b bf16 [M, D] (the shared expert)
-- i.e. what moe_combine's shared = "add", out_dtype = "bf16" does in its epilogue.
local T = require "tile"

return T.kernel "add_cast" {
  params = { M = T.dyn, D = T.size(4096), BM = T.tune{4, 8, 1}, BD = T.tune{512, 256, 1024} },
  args = function(p)
    T.check(p.D % p.BD == 0, ("add_cast: D = %d is not a multiple of the tile BD = %d"):format(p.D, p.BD))
    return {
      a   = T.tensor{p.M, p.D, T.f32},
      b   = T.tensor{p.M, p.D, T.bf16},
      out = T.tensor{p.M, p.D, T.bf16, out = true},
    }
  end,
  body = function(p, a, b, out)
    for tb, db in T.grid(T.ceildiv(p.M, p.BM), p.D // p.BD) do
      local acc = T.fragment{p.BM, p.BD, T.f32}
      local bs  = T.fragment{p.BM, p.BD, T.f32}
      T.copy(a:tile(tb * p.BM, db * p.BD), acc)
      T.copy(b:tile(tb * p.BM, db * p.BD), bs)
      for i, j in T.parallel(p.BM, p.BD) do acc[i][j] = acc[i][j] + bs[i][j] end
      T.copy(acc, out:tile(tb * p.BM, db * p.BD))
    end
  end,
}
