local T = require "tile"
return T.kernel "inputs_list" {
  params = { N = T.size(4) },
  args = function(p) return { ids = T.tensor{p.N, T.i32}, y = T.tensor{p.N, T.f32, out = true} } end,
  inputs = function(p)
    return { { 0, 1, 2, 3 } }
  end,
  body = function(p, ids, y)
    for b in T.grid(1) do y[b] = T.cast(ids[b], T.f32) end
  end,
}
