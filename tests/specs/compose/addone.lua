-- Producer of the composition tests (tests/unit/test_compose.c):
-- y = bf16(x + 1) over blocks of BM rows, 128 columns at a time.  Rows past
-- M read 0, so a block's rows past M hold 1 in the block: the composed
-- kernel must zero them where the pair's writes were dropped.  Knobs for
-- illegal compositions: `guard` writes y under a T.if_, `step` writes every
-- other 128 columns (gaps).
local T = require "tile"

return T.kernel "addone" {
  params = { M = T.dyn, D = T.size(256), BM = T.tune{8, 4}, guard = T.tune{0, 1}, step = T.tune{1, 2} },
  args = function(p)
    T.check(p.D % 128 == 0, ("addone: D = %d is not a multiple of 128"):format(p.D))
    return {
      x = T.tensor{p.M, p.D, T.f32},
      y = T.tensor{p.M, p.D, T.bf16, out = true},
    }
  end,
  body = function(p, x, y)
    for bm in T.grid(T.ceildiv(p.M, p.BM)) do
      local t = T.fragment{p.BM, 128, T.f32}
      for b in T.serial(p.D // 128) do
        T.copy(x:tile(bm * p.BM, b * 128), t)
        for i, j in T.parallel(p.BM, 128) do t[i][j] = t[i][j] + 1.0 end
        if p.guard == 1 then
          T.if_(T.lt(bm, 1000), function() T.copy(t, y:tile(bm * p.BM, b * 128)) end)
        else
          T.copy(t, y:tile(bm * p.BM, b * 128 * p.step))
        end
      end
    end
  end,
}
