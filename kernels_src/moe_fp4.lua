-- moe_fp4.lua — the pieces the routed experts' grouped GEMMs share
-- (moe_expert_gemm, moe_gemm_swiglu): the tile schedule over experts, FP4
-- weight dequantisation and the K loop with per-block promotion.  A plain
-- Lua module: specs `require "moe_fp4"` from their own folder.
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

-- The value of an e2m1 nibble (sign | 2-bit exponent, bias 1 | 1-bit
-- fraction): 0 and 0.5 below exponent 1, else the f32 with that exponent
-- and fraction, which is (mag << 22) + (126 << 23) in f32 bits.
function F.e2m1(nib)
  local mag = nib & 7
  local normal = T.bitcast((mag << 22) + (126 << 23), T.f32)
  local v = T.select(T.lt(mag, 2), T.cast(mag, T.f32) * 0.5, normal)
  return T.select(T.lt(7, nib), -v, v)
end

-- Ws[n][k] = e2m1(w[e, n0 + n, k0 + k]) · sw[e, n0 + n, (k0 + k) / 32]:
-- a power-of-two scale times an e2m1 value is exact in bf16.  One
-- iteration per byte (element 2j in its low nibble, 2j + 1 in the high
-- one) and per 32-wide scale group, so the loads are contiguous bytes and
-- the scale is loaded once per group.
function F.dequant(w, sw, e, n0, k0, Ws)
  local G = F.WBLOCK
  for n, g, j in T.parallel(Ws.shape[1], Ws.shape[2] // G, G // 2) do
    local byte = w[e][n0 + n][(k0 + g * G) // 2 + j]
    local scale = sw[e][n0 + n][k0 // G + g]
    Ws[n][g * G + 2 * j] = F.e2m1(byte & 15) * scale
    Ws[n][g * G + 2 * j + 1] = F.e2m1(byte >> 4) * scale
  end
end

-- For each {acc, n0} in outs: acc[i][j] += Σ_kb sa[row, kb] · (A_kb · W_kbᵀ)[i][j]
-- over the rows of tile, with W rows n0.. of expert tile.e.  Every 128-wide
-- K block is an exact bf16 product summed in its own f32 accumulator, then
-- promoted with the activation scale (v4-spec §2.3).  An empty tile runs no
-- K blocks.
function F.accumulate(outs, a, sa, w, sw, tile, K)
  local BM, BN = outs[1][1].shape[1], outs[1][1].shape[2]
  local As   = T.shared{BM, F.ABLOCK, T.bf16, name = "As"}    -- e4m3 widens exactly
  local Ws   = T.shared{BN, F.ABLOCK, T.bf16, name = "Ws"}    -- so does scaled e2m1
  local part = T.fragment{BM, BN, T.f32, name = "part"}
  local sas  = T.fragment{BM, T.f32, name = "sas"}
  local nkb = T.select(T.lt(0, tile.rows), K // F.ABLOCK, 0)
  for kb in T.serial(nkb) do
    T.copy(a:tile(tile.row0, kb * F.ABLOCK), As)
    T.copy(sa:tile(tile.row0, kb, { BM, 1 }), sas)
    for _, o in ipairs(outs) do
      local acc, n0 = o[1], o[2]
      F.dequant(w, sw, tile.e, n0, kb * F.ABLOCK, Ws)
      T.gemm(As, Ws, part, { trans_b = true, clear = true })
      for i, j in T.parallel(BM, BN) do acc[i][j] = acc[i][j] + part[i][j] * sas[i] end
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
