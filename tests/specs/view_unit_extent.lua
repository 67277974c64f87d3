-- A tile view whose extents come from a partner of the same rank with a
-- unit extent in the middle: the view must take them as they are.
local T = require "tile"
return T.kernel "view_unit_extent" {
  params = { M = T.size(5), H = T.size(3), D = T.size(4) },
  args = function(p) return {
    x = T.tensor{p.M, p.H, p.D, T.f32},
    y = T.tensor{p.M, p.H, p.D, T.f32, out = true},
  } end,
  body = function(p, x, y)
    for bm, h in T.grid(T.ceildiv(p.M, 2), p.H) do
      local t = T.fragment{2, 1, p.D, T.f32}
      T.copy(x:tile(bm * 2, h, 0), t)
      T.copy(t, y:tile(bm * 2, h, 0))
    end
  end,
}
