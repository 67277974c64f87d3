-- C[M, N] = A[M, K] · B[N, K]ᵀ with e4m3 A and an e4m3 B (or, with
-- bdt = f4e2m1, a packed e2m1 one): the CPU stages A as f32, lifted
-- (micro_gemm a_lifted), and widens B straight into f32 (codegen/micro.c,
-- e4m3_direct), or stages A bf16 beside vdpbf16ps tiles.  S > 0 scales both
-- operands per K block, A's S wide and B's (per row) SB wide (0: S), which
-- the dot tiles apply per block in registers or fold into the operands
-- (one block size a multiple of the other).
-- tests/unit/test_kernels.c runs it over every pair of codes.
--   tilec run tests/specs/dot_fp8.lua --set S=32 --check
local T = require "tile"

return T.kernel "dot_fp8" {
  params = { M = T.size(1), N = T.size(256), K = T.size(64), S = T.variant{0, 32, 64, 128},
             SB = T.variant{0, 32, 64, 128}, bdt = T.variant{"f8e4m3", "f4e2m1"} },
  args = function(p)
    local SB = p.SB > 0 and p.SB or p.S
    T.check(p.S == 0 or (p.K % p.S == 0 and p.K % SB == 0),
            ("dot_fp8: S = %d or SB = %d does not divide K = %d"):format(p.S, SB, p.K))
    local blocks = p.S > 0 and p.K // p.S or 1 -- S = 0: the scales are not read
    return {
      a  = T.tensor{p.M, p.K, T.f8e4m3},
      b  = T.tensor{p.N, p.K, p.bdt or "f8e4m3"},
      sa = T.tensor{p.M, blocks, T.e8m0},
      sb = T.tensor{p.N, p.S > 0 and p.K // SB or 1, T.e8m0},
      c  = T.tensor{p.M, p.N, T.f32, out = true},
    }
  end,
  body = function(p, a, b, sa, sb, c)
    for _ in T.grid(1) do
      local acc = T.fragment{p.M, p.N, T.f32}
      local opts = { trans_b = true, clear = true }
      if p.S > 0 then
        local SB = p.SB > 0 and p.SB or p.S
        opts.a_scale, opts.b_scale = sa:tile(0, 0, { p.M, p.K // p.S }), sb:tile(0, 0, { p.N, p.K // SB })
      end
      T.gemm(a:tile(0, 0, { p.M, p.K }), b:tile(0, 0, { p.N, p.K }), acc, opts)
      T.copy(acc, c:tile(0, 0))
    end
  end,
}
