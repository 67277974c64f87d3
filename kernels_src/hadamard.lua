-- rotate_activation (v4-spec §2.7): y = x · H_N / sqrt(N) over the last dim,
-- H_N the Sylvester Walsh–Hadamard matrix (N = 128 in V4), x and y bf16.
-- A fast Walsh–Hadamard transform in f32 (rotate.lua's butterflies, shared
-- with the indexer's compressor).
--   tilec run kernels_src/hadamard.lua --set M=4 --check
local T = require "tile"
local R = require "rotate"

return T.kernel "hadamard" {
  params = { M = T.dyn, N = T.size(128), BM = T.tune{8, 4, 16} },
  args = function(p)
    T.check(p.N & (p.N - 1) == 0, ("hadamard: N = %d is not a power of two"):format(p.N))
    return {
      x = T.tensor{p.M, p.N, T.bf16},
      y = T.tensor{p.M, p.N, T.bf16, out = true},
    }
  end,
  body = function(p, x, y)
    for bm in T.grid(T.ceildiv(p.M, p.BM)) do
      local a = T.fragment{p.BM, p.N, T.f32}
      local b = T.fragment{p.BM, p.N, T.f32}
      T.copy(x:tile(bm * p.BM, 0), a)
      local rot = R.hadamard(a, b)
      T.copy(rot, y:tile(bm * p.BM, 0))
    end
  end,
}
