-- moe_fp4.lua — the pieces the routed experts' grouped GEMMs share
-- (moe_expert_gemm, moe_gemm_swiglu): the tile schedule over experts and the
-- K loop with per-block promotion, whose GEMMs take the packed FP4 weights
-- with their 1x32 scales as a block-scaled operand.  A plain Lua module:
-- specs `require "moe_fp4"` from their own folder.
local T = require "tile"

local F = {}

F.ABLOCK = 128  -- activation scale block along K (act_quant, v4-spec §2.2)
F.WBLOCK = 32   -- weight scale block along K (v4-spec §2.4)

-- K's constraints, most basic first, so the message names the real cause.
function F.check_k(K, name)
  T.check(K % 2 == 0, ("%s: K = %d is odd, but packed fp4 weights hold two elements per byte"):format(name, K))
  T.check(K % F.WBLOCK == 0,
          ("%s: K = %d is not a multiple of the fp4 weight scale block (%d)"):format(name, K, F.WBLOCK))
  T.check(K % F.ABLOCK == 0,
          ("%s: K = %d is not a multiple of the activation scale block (%d)"):format(name, K, F.ABLOCK))
end

-- Row tiles of BM over experts with cnt[e] rows each: at most
-- Σ_e ceil(cnt[e] / BM) <= (R + n·(BM - 1)) / BM with n <= min(E, R)
-- non-empty experts.  The grid is this bound, so empty experts cost no
-- blocks and a decode step launches at most one tile per routed row.
-- A schedule for sample inputs (the specs' `inputs`): R rows over E
-- experts in back-to-back ranges of uneven sizes, every fourth expert
-- empty — what a router hands the expert GEMMs, where random counts and
-- offsets would overlap (and blocks race on the rows they share).
function F.sample_schedule(R, E)
  local weight, total = {}, 0
  for e = 1, E do
    weight[e] = (e % 4 == 0 and E > 1) and 0 or (e * 5) % 7 + 1
    total = total + weight[e]
  end
  local cnt, off, before = {}, {}, 0
  for e = 1, E do
    off[e] = R * before // total
    before = before + weight[e]
    cnt[e] = R * before // total - off[e]
  end
  return { cnt = cnt, off = off }
end

function F.max_tiles(R, E, BM)
  return (R + T.min(E, R) * (BM - 1)) // BM
end

-- Which expert's rows tile t covers: a scan of the E row counts, counting
-- each expert's tiles.  Returns loads of {e, row0, rows}; rows is 0 when t
-- is past the last tile (the bound above is not always reached).
function F.find_tile(t, cnt, off, E, BM)
  local st = T.local_{4, T.i32, name = "sched"}  -- expert, first row, rows in this tile, tiles so far
  T.clear(st)
  for e in T.serial(E) do
    local before, n = st[3], T.ceildiv(cnt[e], BM)
    T.if_(T.and_(T.le(before, t), T.lt(t, before + n)), function()
      local skip = (t - before) * BM
      st[0] = e
      st[1] = off[e] + skip
      st[2] = T.min(cnt[e] - skip, BM)
    end)
    st[3] = before + n
  end
  return { e = st[0], row0 = st[1], rows = st[2] }
end

-- For each {acc, n0} in outs: acc[i][j] += Σ_kb sa[row, kb] · (A_kb · W_kbᵀ)[i][j]
-- over the rows of tile, with W rows n0.. of expert tile.e: W_kb is the
-- packed e2m1 window of w times its 1x32 UE8M0 scales (sw), a block-scaled
-- GEMM operand — each weight times a power of two, exact in f32 and in
-- bf16.  The CPU's decode dot tiles read the packed bytes in place and
-- scale them in registers; elsewhere lowering dequantises the window into
-- a bf16 tile first (the tensor cores' bf16 x bf16).  Every 128-wide K
-- block is summed in its own f32 accumulator, then promoted with the
-- activation scale (v4-spec §2.3).  An empty tile runs no K blocks; the
-- GEMMs compute only the tile's own rows (the rest of As is the next
-- expert's rows, never stored).
-- BS (optional, a divisor of the accumulators' BN columns, BN by default):
-- the columns run in sub-blocks of BS, each through the whole K loop, so a
-- K step streams BS weight rows per output instead of BN (A's K block is
-- staged again per sub-block).  At decode on the CPU few rows per step is
-- what the prefetchers keep up with (moe_expert_gemm with E=16, N=4096,
-- K=2048 and one row per expert: 28 ms at 32 rows per step, 55 at 128).
-- BK (optional, ABLOCK by default): above ABLOCK, each step is one T.gemm
-- over BK columns with both block scales (a_scale, b_scale), so the
-- promotion happens inside the GEMM: on the CPU's decode dot tiles in
-- registers (each 128-wide block's sums times its activation scale, the
-- weight scales in the decoding tables), where the per-block loop pays a
-- reduction and a pass over its fragments every 128 columns.  Elsewhere
-- the lowering dequantises each step's tiles first: 128 suits the tensor
-- cores and the register tiles.
-- The K step on a CPU for a spec's choose (nil on a GPU: 128 suits the
-- tensor cores).  Row tiles of BM <= 16 (an unset BM takes its first
-- candidate, 16) are dot tiles: all of K in one scaled T.gemm, each
-- 128-wide block promoted in registers rather than reduced and added every
-- 128 columns.  Taller ones are register tiles over a dequantised weight
-- tile of BN x BK f32: up to 512, which half of L2 holds.  Swept on the
-- AVX2 host, one thread (`tilec sweep --over BK=...`): 12 rows per expert,
-- E 8: moe_expert_gemm (N 4096, K 2048) 52.6 ms at BK 128, 35.1 at 2048;
-- moe_gemm_swiglu (I 2048, K 4096) 113 at 128, 72 at 4096.  64 rows, E 16
-- (v4-mini: N 512, K 256), BM 64: 5.6 at 128, 4.2 at 256; 128 rows, E 8,
-- Flash, BM 64: 350 at 128, 306 at 512 and at 2048.
function F.cpu_bk(p, target)
  if target.sm then return nil end
  local most = (p.BM or 16) <= 16 and 4096 or 512
  for _, c in ipairs{4096, 2048, 1024, 512, 256} do
    if c <= most and p.K % c == 0 then return c end
  end
  return nil
end

function F.accumulate(outs, a, sa, w, sw, tile, K, BS, BK)
  local BM, BN = outs[1][1].shape[1], outs[1][1].shape[2]
  BS, BK = BS or BN, BK or F.ABLOCK
  T.check(BN % BS == 0, ("moe: column sub-block BS = %d does not divide the block's %d columns"):format(BS, BN))
  T.check(BK % F.ABLOCK == 0 and K % BK == 0,
          ("moe: BK = %d is not a multiple of %d dividing K = %d"):format(BK, F.ABLOCK, K))
  if BK > F.ABLOCK then
    return F.accumulate_scaled(outs, a, sa, w, sw, tile, K, BS, BK)
  end
  local As   = T.shared{BM, F.ABLOCK, T.bf16, name = "As"}    -- e4m3 widens exactly
  local part = T.fragment{BM, BS, T.f32, name = "part"}
  local SB = F.ABLOCK // F.WBLOCK                               -- weight scales per K block
  local sas  = T.fragment{BM, T.f32, name = "sas"}
  local nkb = T.select(T.lt(0, tile.rows), K // F.ABLOCK, 0)
  for sb in T.serial(BN // BS) do
    -- pipelined: on the CPU each step prefetches the next one's weight rows
    -- (BS rows 64 bytes apart in K); on the GPU its copies change dtype, so
    -- no stages
    for kb in T.pipelined(nkb, 2) do
      T.copy(a:tile(tile.row0, kb * F.ABLOCK), As)
      T.copy(sa:tile(tile.row0, kb, { BM, 1 }), sas)
      for _, o in ipairs(outs) do
        local acc, n0 = o[1], o[2] + sb * BS
        T.gemm(As, w:tile(tile.e, n0, kb * F.ABLOCK, { 1, BS, F.ABLOCK }), part,
               { trans_b = true, clear = true, b_scale = sw:tile(tile.e, n0, kb * SB, { 1, BS, SB }),
                 rows = tile.rows })
        for i, j in T.parallel(BM, BS) do
          acc[i][sb * BS + j] = acc[i][sb * BS + j] + part[i][j] * sas[i]
        end
      end
    end
  end
end

-- F.accumulate with BK > ABLOCK: one scaled T.gemm per BK-wide step.
function F.accumulate_scaled(outs, a, sa, w, sw, tile, K, BS, BK)
  local BM, BN = outs[1][1].shape[1], outs[1][1].shape[2]
  local part = T.fragment{BM, BS, T.f32, name = "part"}
  local nk = T.select(T.lt(0, tile.rows), K // BK, 0)
  local SA, SW = BK // F.ABLOCK, BK // F.WBLOCK -- scale columns per step
  for sb in T.serial(BN // BS) do
    for kb in T.pipelined(nk, 2) do
      for _, o in ipairs(outs) do
        local acc, n0 = o[1], o[2] + sb * BS
        T.gemm(a:tile(tile.row0, kb * BK, { BM, BK }), w:tile(tile.e, n0, kb * BK, { 1, BS, BK }), part,
               { trans_b = true, clear = true, rows = tile.rows,
                 a_scale = sa:tile(tile.row0, kb * SA, { BM, SA }),
                 b_scale = sw:tile(tile.e, n0, kb * SW, { 1, BS, SW }) })
        for i, j in T.parallel(BM, BS) do
          acc[i][sb * BS + j] = acc[i][sb * BS + j] + part[i][j]
        end
      end
    end
  end
end

-- Whether row i of tile is one of its expert's rows (the rows after them
-- belong to the next expert) and inside out (so bad offsets write nothing).
function F.owns(tile, i, out)
  local row = tile.row0 + i
  return T.and_(T.lt(i, tile.rows), T.and_(T.le(0, row), T.lt(row, out.shape[1])))
end

-- c[row0 + i][n0 + j] = acc[i][j] for the rows the tile owns.
function F.store_rows(acc, c, tile, n0)
  for i, j in T.parallel(acc.shape[1], acc.shape[2]) do
    T.if_(F.owns(tile, i, c), function() c[tile.row0 + i][n0 + j] = acc[i][j] end)
  end
end

return F
