-- Producer of the composition tests that copies its input straight into y
-- (a global source: ir/compose.c stages it in the block before zeroing
-- the rows past M).  Rows past M read 0 here too, but colsum must not see
-- anything else there either.
local T = require "tile"

return T.kernel "copyin" {
  params = { M = T.dyn, D = T.size(256), BM = T.tune{8, 4} },
  args = function(p)
    return {
      x = T.tensor{p.M, p.D, T.f32},
      y = T.tensor{p.M, p.D, T.bf16, out = true},
    }
  end,
  body = function(p, x, y)
    for bm in T.grid(T.ceildiv(p.M, p.BM)) do
      for b in T.serial(p.D // 128) do
        T.copy(x:tile(bm * p.BM, b * 128, { p.BM, 128 }), y:tile(bm * p.BM, b * 128))
      end
    end
  end,
}
