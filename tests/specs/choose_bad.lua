local T = require "tile"
-- A spec whose choose misbehaves as `how` says (test_frontend_errors.c).
return T.kernel "choose_bad" {
  params = { how = T.variant{"ok", "value", "name", "type", "lua", "variant"}, N = T.size(64), BN = T.tune{16, 32} },
  choose = function(p, target)
    if p.how == "value" then return { BN = 7 } end
    if p.how == "name" then return { N = 32 } end
    if p.how == "type" then return 32 end
    if p.how == "lua" then return { BN = p.missing + 1 } end
    if p.how == "variant" then return { how = "ok" } end
    return { BN = target.vector_bits >= 256 and 32 or 16 }
  end,
  args = function(p) return { x = T.tensor{p.N, T.f32, out = true} } end,
  body = function(p, x)
    for b in T.grid(p.N // p.BN) do
      for i in T.parallel(p.BN) do x[b * p.BN + i] = 1.0 end
    end
  end,
}
