#!/usr/bin/env bash
# Every example and every V4 kernel compiles to PTX for sm_90a and sm_80 and
# assembles with ptxas; the GEMM example and the attention kernel do not
# spill; sm_90a gemms use wgmma (a 16-bit [K, N] B too, transposed), sm_80 mma.sync; GPU bad input (shared memory over the limit, --emit obj, --simt on a
# CPU target) fails with one clear line.
#   bash tests/cli/ptx.sh build/tilec
TILEC=$1
. "$(dirname "$0")/support/lib.sh"
cd "$(dirname "$0")/../.."

PTXAS=$(command -v ptxas || echo /usr/local/cuda/bin/ptxas)
if [ ! -x "$PTXAS" ]; then
  echo "skipped: ptxas not found (CUDA toolkit)"; exit 0
fi

specs=(examples/*.lua)
for f in kernels_src/*.lua; do
  case $(basename "$f") in mhc.lua|norm.lua|quant.lua|rotate.lua|compressor.lua|moe_dispatch.lua|moe_fp4.lua) ;; *) specs+=("$f") ;; esac  # helper modules
done

for arch in sm_90a sm_80; do
  for f in "${specs[@]}"; do
    name="$arch $(basename "$f" .lua)"
    ptx="$tmp/$(basename "$f" .lua)-$arch.ptx"
    if ! err=$("$TILEC" compile "$f" --target $arch -o "$ptx" 2>&1); then bad "$name" "$err"; continue; fi
    grep -q "^\.target $arch" "$ptx" || { bad "$name" "no .target $arch line"; continue; }
    if ! log=$("$PTXAS" -arch=$arch -v -o "$tmp/x.cubin" "$ptx" 2>&1); then bad "$name" "$log"; continue; fi
    case $(basename "$f") in
      gemm.lua|sparse_attn.lua)
        if ! printf '%s' "$log" | grep -q "0 bytes spill stores, 0 bytes spill loads"; then
          bad "$name" "spills registers:" "$log"; continue
        fi ;;
    esac
    ok "$name"
  done
done

# the same kernel at a non-default tile assembles too (tails, other shapes)
ptx="$tmp/g.ptx"
if "$TILEC" compile examples/gemm.lua --target sm_90a --set dtype=bf16 --set BM=48 --set BN=32 --set BK=64 \
     --set M=100 -o "$ptx" && "$PTXAS" -arch=sm_90a -o "$tmp/x.cubin" "$ptx"; then ok "gemm bf16 tails"; else bad "gemm bf16 tails"; fi

# warp-wide instructions stay where every lane runs them: with N = 9 the
# second column tile of mma.sync feeds one stored column, and LLVM sank its
# mma chain into that column's store (lanes skipping it: wrong values on an
# H200, not seen by the SIMT interpreter) until the asm calls were convergent
ptx="$tmp/g9.ptx"
if "$TILEC" compile examples/gemm.lua --target sm_90a --set dtype=bf16 --set BM=16 --set M=7 --set N=9 --set K=70 \
     -o "$ptx" && last_mma=$(grep -n 'mma.sync' "$ptx" | tail -n 1 | cut -d: -f1) &&
   first_st=$(grep -n 'st.global' "$ptx" | head -n 1 | cut -d: -f1) && [ -n "$last_mma" ] && [ "$last_mma" -lt "$first_st" ]; then
  ok "mma.sync not sunk into a column's store"; else bad "mma.sync not sunk into a column's store" "last mma line ${last_mma:-?}, first store ${first_st:-?}"; fi

# fp8 products on tensor cores are promoted to f32 once per pipelined step
# (a zeroed partial fragment, added into the accumulator: cuBLASLt's
# default numerics); the step copies share one partial fragment, which the
# accumulator's registers follow (no shared memory for either); bf16 and
# { fast_accum = true } accumulate in place
f8=(--set dtype=f8e4m3 --set M=8192 --set N=8192 --set K=8192 --set BM=128 --set BN=128 --set BK=128 --set stages=3)
ir=$("$TILEC" compile examples/gemm.lua --target sm_90a "${f8[@]}" --dump-after threads -o /dev/null 2>&1)
ir16=$("$TILEC" compile examples/gemm.lua --target sm_90a --set dtype=bf16 --set BM=128 --set BN=128 --set BK=64 \
         --dump-after lower -o /dev/null 2>&1)
irfast=$("$TILEC" compile bench/gemm_fp8_fast.lua --target sm_90a --dump-after lower -o /dev/null 2>&1)
"$TILEC" compile bench/gemm_fp8_fast.lua --target sm_90a --set M=8192 --set N=8192 --set K=8192 -o "$tmp/fast.ptx" &&
  logf=$("$PTXAS" -arch=sm_90a -v -o "$tmp/x.cubin" "$tmp/fast.ptx" 2>&1) &&
  printf '%s' "$logf" | grep -q "0 bytes spill stores, 0 bytes spill loads" &&
  ok "fast_accum fp8 gemm assembles without spills" || bad "fast_accum fp8 gemm assembles without spills" "${logf:-}"
if [ "$(grep -c '^buf gemm_part' <<< "$ir")" = 1 ] && grep -q '^buf acc: local f32\[64\]' <<< "$ir" &&
   grep -q '^buf gemm_part0: local f32\[64\]' <<< "$ir" && [ "$(grep -c -- '-> gemm_part0 trans_b clear' <<< "$ir")" = 3 ] &&
   ! grep -q gemm_part <<< "$ir16" && ! grep -q gemm_part <<< "$irfast" &&
   "$TILEC" compile examples/gemm.lua --target sm_90a "${f8[@]}" -o "$tmp/f8.ptx" &&
   log=$("$PTXAS" -arch=sm_90a -v -o "$tmp/x.cubin" "$tmp/f8.ptx" 2>&1) &&
   printf '%s' "$log" | grep -q "0 bytes spill stores, 0 bytes spill loads"; then
  ok "fp8 tensor-core products promoted per step"; else bad "fp8 tensor-core products promoted per step" "$(grep -E '^buf|micro_gemm' <<< "$ir" | head -n 12)" "${log:-}"; fi

# element-wise nests whose values live in registers still move 16 bytes per
# thread and access: silu_mul bf16 loads and stores whole vectors (it
# moved one bf16 per access, 0.63-0.70 of copy on an H200 where f32 got 1.03)
ptx="$tmp/silu.ptx"
if "$TILEC" compile examples/silu_mul.lua --target sm_90a --set M=16384 --set N=8192 --set dtype=bf16 --set BM=4 \
     --set BN=256 -o "$ptx" && grep -q 'ld.global.nc.v4' "$ptx" && grep -q 'st.global.v4' "$ptx" &&
   ! grep -qE '(ld|st)\.global[.a-z]*\.(u16|b16)' "$ptx"; then
  ok "bf16 element-wise nests move 16-byte vectors"; else bad "bf16 element-wise nests move 16-byte vectors" "$(grep -oE '(ld|st)\.global[.a-z0-9]*' "$ptx" | sort | uniq -c)"; fi

# two passes over a row read it once on sm_90a: the spec's choose takes one
# tile per row there, and pass_reuse drops the second pass's copy of it (the
# 2026-11-30 H200 ran rmsnorm at 0.65 and softmax at 0.50 of copy, reading
# x twice); one global load of x is left (its edge copy aside), the row
# stays in registers between the passes (the copy's nest, one loop over the
# [1, N] tile, and the element-wise ones, two, agree on its owners), and
# ptxas assembles it without spills
for k in rmsnorm softmax; do
  ir=$("$TILEC" compile examples/$k.lua --target sm_90a --set M=16384 --set N=4096 --emit ir -o - 2>&1)
  if [ "$(grep -c '= x\[' <<< "$ir")" -eq 1 ] && grep -q '^buf xs: local' <<< "$ir" &&
     "$TILEC" compile examples/$k.lua --target sm_90a --set M=16384 --set N=4096 -o "$tmp/row.ptx" &&
     log=$("$PTXAS" -arch=sm_90a -v -o "$tmp/x.cubin" "$tmp/row.ptx" 2>&1) &&
     printf '%s' "$log" | grep -q "0 bytes spill stores, 0 bytes spill loads"; then
    ok "$k on sm_90a reads each row once"; else bad "$k on sm_90a reads each row once" "$(grep -E '= x\[|^buf' <<< "$ir")" "${log:-}"; fi
done

# the scaled decode form (BK above 128: one T.gemm with both block scales,
# dequantised into shared memory on the GPU) assembles too
for k in "fp8_gemm --set N=200 --set K=512 --set BK=256" "moe_expert_gemm --set BM=4 --set N=512 --set K=512 --set BK=256"; do
  set -- $k
  ptx="$tmp/bk.ptx" f=kernels_src/$1.lua
  shift
  if "$TILEC" compile "$f" --target sm_90a "$@" -o "$ptx" && "$PTXAS" -arch=sm_90a -o "$tmp/x.cubin" "$ptx"; then
    ok "sm_90a $k"; else bad "sm_90a $k"; fi
done

# the pipelined bf16 gemm streams its tiles into two stages without spills:
# on sm_80 with cp.async (cp.async.ca/cg, not bulk), on sm_90a with TMA
# loads onto mbarriers (pass_tma) and no per-thread cp.async left
for arch in sm_90a sm_80; do
  ptx="$tmp/gp-$arch.ptx"
  if [ $arch = sm_90a ]; then
    want() { grep -q "cp.async.bulk.tensor.2d" "$1" && grep -q "mbarrier.try_wait.parity" "$1" &&
             grep -q "mbarrier.arrive.expect_tx" "$1" && ! grep -q "cp.async.c[ag]" "$1"; }
  else
    want() { grep -q "cp.async.cg.shared.global" "$1" && grep -q "cp.async.wait_group 0" "$1" &&
             ! grep -q "cp.async.bulk" "$1" && ! grep -q "mbarrier" "$1"; }
  fi
  if "$TILEC" compile examples/gemm.lua --target $arch --set dtype=bf16 --set BM=128 --set BN=128 --set BK=64 \
       -o "$ptx" && want "$ptx" &&
     log=$("$PTXAS" -arch=$arch -v -o "$tmp/x.cubin" "$ptx" 2>&1) &&
     printf '%s' "$log" | grep -q "0 bytes spill stores, 0 bytes spill loads"; then
    ok "gemm bf16 staged tiles $arch"; else bad "gemm bf16 staged tiles $arch" "${log:-}"; fi
done
# on sm_90a a step's wgmma group stays in flight across the next step's wait
# (wait_group 1 before the refill of its tiles), and ptxas keeps the wgmma
# asynchronous (it warns "wgmma.mma_async instructions are serialized" when
# it cannot prove the accumulators untouched while in flight)
ptx="$tmp/gp-sm_90a.ptx"
if grep -q "wgmma.wait_group.sync.aligned 1;" "$ptx" && log=$("$PTXAS" -arch=sm_90a -v -o "$tmp/x.cubin" "$ptx" 2>&1) &&
   ! printf '%s' "$log" | grep -qi "serializ"; then
  ok "gemm bf16 wgmma group in flight across steps sm_90a"; else bad "gemm bf16 wgmma group in flight across steps sm_90a" "${log:-}"; fi

# the compressor's other emit and pooling (the indexer's Hadamard + FP4,
# HCA's 128 slots without overlap) assemble too
for arch in sm_90a sm_80; do
  for cfg in "kind=index D=128" "ratio=128"; do
    for f in compress_prefill compress_decode; do
      sets=(); for kv in $cfg; do sets+=(--set "$kv"); done
      ptx="$tmp/$f-$arch.ptx"
      if "$TILEC" compile kernels_src/$f.lua --target $arch "${sets[@]}" -o "$ptx" &&
         "$PTXAS" -arch=$arch -o "$tmp/x.cubin" "$ptx"; then
        ok "$arch $f $cfg"; else bad "$arch $f $cfg"; fi
    done
  done
done

# the MoE combine's other configuration (weights, shared-expert add, bf16 out) assembles too
for arch in sm_90a sm_80; do
  ptx="$tmp/mc-$arch.ptx"
  if "$TILEC" compile kernels_src/moe_combine.lua --target $arch --set weighted=yes --set shared=add \
       --set out_dtype=bf16 -o "$ptx" && "$PTXAS" -arch=$arch -o "$tmp/x.cubin" "$ptx"; then
    ok "$arch moe_combine weighted, shared, bf16"; else bad "$arch moe_combine weighted, shared, bf16"; fi
done

# e5m2 stores narrow inline (no helper call the GPU lacks)
for arch in sm_90a sm_80; do
  ptx="$tmp/e5-$arch.ptx"
  if "$TILEC" compile tests/specs/e5m2_roundtrip.lua --target $arch -o "$ptx" &&
     "$PTXAS" -arch=$arch -o "$tmp/x.cubin" "$ptx"; then
    ok "$arch e5m2 stores"; else bad "$arch e5m2 stores"; fi
done

# sm_90a gemms run on wgmma (Hopper warpgroup MMA) from swizzled shared
# tiles, without spills: bf16 m64n128k16 over two warpgroups, e4m3 k32;
# sm_80 keeps mma.sync, and so does sm_90a for tiles wgmma cannot take
# (BM=16: no 64-row piece)
wg() { # NAME ARCH WANT NOT -- compile args...
  local name=$1 arch=$2 want=$3 not=$4 ptx="$tmp/w.ptx" log
  shift 5
  if "$TILEC" compile examples/gemm.lua --target "$arch" "$@" -o "$ptx" && grep -qF "$want" "$ptx" &&
     ! grep -qF "$not" "$ptx" && log=$("$PTXAS" -arch="$arch" -v -o "$tmp/x.cubin" "$ptx" 2>&1) &&
     printf '%s' "$log" | grep -q "0 bytes spill stores, 0 bytes spill loads"; then
    ok "$name"; else bad "$name" "${log:-}"; fi
}
wg "gemm bf16 wgmma sm_90a" sm_90a "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16" "mma.sync" -- \
  --set dtype=bf16 --set BM=128 --set BN=128 --set BK=64
wg "gemm bf16 mma.sync sm_80" sm_80 "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32" "wgmma" -- \
  --set dtype=bf16 --set BM=128 --set BN=128 --set BK=64
wg "gemm fp8 wgmma sm_90a" sm_90a "wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3" "mma.sync" -- \
  --set dtype=f8e4m3 --set BM=128 --set BN=128 --set BK=64
wg "gemm fp8 mma.sync fallback sm_90a" sm_90a "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32" "wgmma" -- \
  --set dtype=f8e4m3 --set BM=16 --set BN=64 --set BK=64
# V4 kernels take it too where their row tiles are 64 rows (prefill shapes)
for k in "fp8_gemm" "grouped_oproj --set BM=64" "moe_gemm_swiglu --set BM=64"; do
  set -- $k
  ptx="$tmp/k.ptx" f=kernels_src/$1.lua
  shift
  if "$TILEC" compile "$f" --target sm_90a "$@" -o "$ptx" && grep -q "wgmma.mma_async" "$ptx" &&
     "$PTXAS" -arch=sm_90a -o "$tmp/x.cubin" "$ptx"; then
    ok "sm_90a $k wgmma"; else bad "sm_90a $k wgmma"; fi
done

# a 16-bit B given as [K, N] (N contiguous) runs on wgmma with the B
# transpose immediate (imm-trans-b 1: MN-major descriptors), without spills:
# sparse_attn's P.V at 64-head tiles (BH=16 has no 64-row piece and keeps
# mma.sync) and tests/specs/gemm_kn.lua; 8-bit [K, N] stays off wgmma (fp8
# operands must be K-major), and sm_80 keeps mma.sync
mn() { # NAME ARCH SPEC WANT NOT -- compile args...
  local name=$1 arch=$2 spec=$3 want=$4 not=$5 ptx="$tmp/mn.ptx" log
  shift 6
  if "$TILEC" compile "$spec" --target "$arch" "$@" -o "$ptx" && grep -qE "$want" "$ptx" &&
     ! grep -qE "$not" "$ptx" && log=$("$PTXAS" -arch="$arch" -v -o "$tmp/x.cubin" "$ptx" 2>&1) &&
     printf '%s' "$log" | grep -q "0 bytes spill stores, 0 bytes spill loads"; then
    ok "$name"; else bad "$name" "${log:-}"; fi
}
trans='wgmma\.mma_async\.sync\.aligned\.m64n256k16\.f32\.bf16\.bf16 .*, p, 1, 1, 0, 1;'
mn "sparse_attn BH=64 wgmma MN-major B sm_90a" sm_90a kernels_src/sparse_attn.lua "$trans" "mma\.sync" -- --set BH=64
mn "sparse_attn BH=64 mma.sync sm_80" sm_80 kernels_src/sparse_attn.lua "mma\.sync\.aligned\.m16n8k16" "wgmma" -- --set BH=64
mn "gemm_kn bf16 wgmma MN-major B sm_90a" sm_90a tests/specs/gemm_kn.lua \
  'wgmma\.mma_async\.sync\.aligned\.m64n128k16\.f32\.bf16\.bf16 .*, p, 1, 1, 0, 1;' "mma\.sync" -- \
  --set dtype=bf16 --set BM=128 --set BN=128 --set BK=64
mn "gemm_kn e4m3 stays off wgmma sm_90a" sm_90a tests/specs/gemm_kn.lua "ld\.shared" "wgmma" -- \
  --set dtype=f8e4m3 --set BM=64 --set BN=64 --set BK=64

# with cuobjdump, --report's instruction mix shows the warpgroup MMAs (HGMMA)
if command -v cuobjdump >/dev/null; then
  out=$("$TILEC" compile examples/gemm.lua --target sm_90a --set dtype=bf16 --set BM=128 --set BN=128 \
        --set BK=64 --report -o "$tmp/r.ptx" 2>&1)
  if printf '%s' "$out" | grep -Eq "HGMMA [1-9]"; then ok "report HGMMA"; else bad "report HGMMA" "$out"; fi
else
  echo "skipped: report HGMMA (cuobjdump not found)"
fi

# --report prints registers and spills from ptxas -v
out=$("$TILEC" compile examples/softmax.lua --target sm_90a --report -o "$tmp/s.ptx" 2>&1)
if printf '%s' "$out" | grep -Eq "^kernel softmax on sm_90a: [0-9]+ registers, .* spills 0 bytes stored"; then
  ok "report"; else bad "report" "$out"; fi

expect_error "shared memory over the limit" \
  "tilec: examples/gemm.lua:20: kernel gemm needs 262144 bytes of shared memory, more than sm_80's 166912 per block (largest: As, 196608 bytes) (hint: use smaller tiles (--set the block sizes))" -- \
  "$TILEC" compile examples/gemm.lua --target sm_80 --set BK=256 -o "$tmp/x.ptx"
expect_error "fragment larger than the block's registers" \
  "tilec: examples/gemm.lua:22: kernel gemm: fragment acc is 192x256 f32 (192 KiB), larger than sm_90a allows (128 KiB) (hint: use smaller tiles, or keep large tiles in T.shared)" -- \
  "$TILEC" compile examples/gemm.lua --target sm_90a --set BM=192 --set BN=256 -o "$tmp/x.ptx"
expect_error "fp8 gemm where the tensor cores take no fp8" \
  "tilec: examples/gemm.lua:27: kernel gemm: T.gemm on f8e4m3 operand As: the tensor cores of sm_80 take only bf16 and f16 (f8e4m3 needs sm_89 or later) (hint: copy the tiles into bf16 shared buffers first; fp8 and fp4 widen to bf16 exactly)" -- \
  "$TILEC" compile examples/gemm.lua --target sm_80 --set dtype=f8e4m3 -o "$tmp/x.ptx"
# three and four tiles in flight on sm_90a (TMA onto one mbarrier per
# stage, wgmma groups overlapping the loads), checked on the SIMT interpreter
for st in 3 4; do
  ptx="$tmp/st$st.ptx"
  set_=(--set dtype=bf16 --set BM=128 --set BN=128 --set BK=64 --set stages=$st)
  if "$TILEC" compile examples/gemm.lua --target sm_90a "${set_[@]}" -o "$ptx" &&
     log=$("$PTXAS" -arch=sm_90a -v -o "$tmp/x.cubin" "$ptx" 2>&1) &&
     printf '%s' "$log" | grep -q "0 bytes spill stores, 0 bytes spill loads" &&
     "$TILEC" run examples/gemm.lua --target sm_90a --simt "${set_[@]}" --set M=300 --set N=260 --set K=400 --check 2>&1 | grep -q "OK"; then
    ok "gemm bf16 $st stages sm_90a"
  else
    bad "gemm bf16 $st stages sm_90a" "ptxas failed, spilled, or the SIMT check failed"
  fi
done

# spec's threads = N: that many threads per block (whole warps, and the
# fragments must map), checked on the SIMT interpreter
for nt in 64 256; do
  ptx="$tmp/gt$nt.ptx"
  if "$TILEC" compile tests/specs/gemm_threads.lua --target sm_90a --set NT=$nt -o "$ptx" &&
     grep -q "^\.maxntid $nt, 1, 1" "$ptx" && "$PTXAS" -arch=sm_90a -o "$tmp/x.cubin" "$ptx" &&
     "$TILEC" run tests/specs/gemm_threads.lua --target sm_90a --simt --set NT=$nt --check 2>&1 | grep -q "OK"; then
    ok "threads = $nt from the spec"
  else
    bad "threads = $nt from the spec" "no .maxntid $nt, ptxas failed or the SIMT check failed"
  fi
done
expect_error "GPU block of a partial warp" \
  "tilec: tests/specs/gemm_threads.lua:6: kernel gemm_threads: threads = 100: a GPU block has whole warps of 32 threads, 32 to 1024" -- \
  "$TILEC" compile tests/specs/gemm_threads.lua --target sm_90a --set NT=100 -o "$tmp/t.ptx"
expect_error "fragment that cannot map to the requested threads" \
  "tilec: tests/specs/gemm_threads.lua:24: gemm accumulator acc [64, 64] cannot map to the spec's 96 threads (needs multiples of 16 x 8 per warp)" -- \
  "$TILEC" compile tests/specs/gemm_threads.lua --target sm_90a --set NT=96 -o "$tmp/t.ptx"
expect_error "no objects for GPUs" \
  "tilec: GPU targets emit ptx, llvm or ir, not 'obj' (see 'tilec --help')" -- \
  "$TILEC" compile examples/gemm.lua --target sm_90a --emit obj -o "$tmp/x.o"
expect_error "ptx for a CPU" \
  "tilec: --emit ptx needs --target sm_90a or sm_80 (see 'tilec --help')" -- \
  "$TILEC" compile examples/gemm.lua --emit ptx -o "$tmp/x.ptx"
expect_error "simt on a CPU target" \
  "tilec: --simt runs GPU-lowered code: it needs --target sm_90a or sm_80" -- \
  "$TILEC" run examples/gemm.lua --simt
# no driver: one line naming the kernel and its line (TILEC_CUDA_LIB forces
# the missing library on machines that have one)
expect_error_like "run without a CUDA driver" \
  "^tilec: examples/silu_mul.lua:[0-9]+: kernel silu_mul cannot run on sm_90a: no CUDA driver: .* \(hint: --simt runs" -- \
  env TILEC_CUDA_LIB=/nonexistent/libcuda.so.1 "$TILEC" run examples/silu_mul.lua --target sm_90a
finish
