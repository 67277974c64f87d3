# tilec run end to end: the demo, --check on every example, .npy in and out
# against references computed here in plain Python.
TILEC=$1
source "$(dirname "$0")/support/lib.sh"

check() { # NAME COMMAND...: must exit 0 and print only OK checks
  local name=$1; shift
  local out
  if out=$("$@" 2>&1) && printf '%s' "$out" | grep -q "OK" && ! printf '%s' "$out" | grep -q MISMATCH; then
    ok "$name"
  else
    bad "$name" "$out"
  fi
}

runs_avx512() { "$TILEC" targets | grep -qE "^x86-avx512 .*runs on this CPU"; }

asm_loops() { # PATTERN FILE: the loops of asm file FILE (from a label to the jump back to it) whose body matches PATTERN
  awk -v pat="$1" '/^\.LBB[0-9_]+:/ { lab = $1; sub(/:$/, "", lab); n = 0; next }
       { body[++n] = $0 }
       /^[ \t]+j[a-z]+[ \t]+\.LBB/ { if ($2 == lab) { s = ""; for (i = 1; i <= n; i++) s = s body[i] "\n"
                                       if (s ~ pat) printf "%s", s } }' "$2"
}

check "demo: gemm f32 --check" "$TILEC" run examples/gemm.lua --check
check "gemm bf16 odd shape --check" "$TILEC" run examples/gemm.lua --set dtype=bf16 --set M=67 --set N=45 --set K=131 --check
check "gemm 1x1x1 --check" "$TILEC" run examples/gemm.lua --set M=1 --set N=1 --set K=1 --check
check "softmax --check" "$TILEC" run examples/softmax.lua --check
check "rmsnorm --check" "$TILEC" run examples/rmsnorm.lua --check
check "silu_mul --check" "$TILEC" run examples/silu_mul.lua --check
check "gemm on 1 thread, avx2 --check" "$TILEC" run examples/gemm.lua --target x86-avx2 --threads 1 --check
check "dyn M=0 (an empty batch) --check" "$TILEC" run examples/dyn_scale.lua --set M=0 --check
check "gemm with inputs in 3 rotated copies --check" "$TILEC" run examples/gemm.lua --rotate 3 --repeat 4 --check
# every output pass_stream marks written with non-temporal stores (any size:
# --stream-bytes 0), against the interpreter: a store the alignment proof
# let through wrongly would fault, a wrong one mismatch
for f in act_quant fp4_act_quant hadamard hc_head hc_post hc_post_pre hc_pre kv_fp8_sim moe_combine moe_gather \
         q_norm rmsnorm rmsnorm_fp8 rmsnorm_quant rope swiglu_quant; do
  check "$f streamed --check" "$TILEC" run kernels_src/$f.lua --set M=9 --stream-bytes 0 --check
done
check "gemm streamed, tail blocks --check" "$TILEC" run examples/gemm.lua --set M=300 --set N=260 --set K=64 \
  --stream-bytes 0 --check
check "softmax streamed --check" "$TILEC" run examples/softmax.lua --stream-bytes 0 --check
# rotated copies are the same inputs: the same bits out as one run
"$TILEC" run examples/gemm.lua --set M=40 --out C="$tmp/c1.npy" >/dev/null 2>&1
"$TILEC" run examples/gemm.lua --set M=40 --rotate 5 --repeat 7 --out C="$tmp/c5.npy" >/dev/null 2>&1
if cmp -s "$tmp/c1.npy" "$tmp/c5.npy" && [ -s "$tmp/c1.npy" ]; then ok "--rotate gives one run's result"
else bad "--rotate gives one run's result"; fi

# an empty .npy in gives an empty one out, with the right shape
npy write "$tmp/e.npy" "<f4" 0,100
if "$TILEC" run examples/dyn_scale.lua --in x=$tmp/e.npy --out y=$tmp/ey.npy >/dev/null 2>"$tmp/err" &&
   python3 - "$tmp/ey.npy" <<'PY'
import sys
sys.path.insert(0, "tests/cli/support")
from npyio import read
shape, y = read(sys.argv[1])
assert list(shape) == [0, 100] and len(y) == 0, (shape, len(y))
PY
then ok "empty .npy in, empty .npy out"; else bad "empty .npy in, empty .npy out" "$(cat "$tmp/err")"; fi

# softmax of known rows, through files, against Python's math.
npy write "$tmp/x.npy" "<f4" 3,4 1 2 3 4  0 0 0 0  -1 5 0.5 2
for mode in "" --interp; do
  rm -f "$tmp/y.npy"
  if "$TILEC" run examples/softmax.lua --set M=3 --set N=4 --in x=$tmp/x.npy --out y=$tmp/y.npy $mode >/dev/null 2>"$tmp/err" &&
     python3 - "$tmp/y.npy" <<'PY'
import math, sys
sys.path.insert(0, "tests/cli/support")
from npyio import read
shape, y = read(sys.argv[1])
rows = [[1, 2, 3, 4], [0, 0, 0, 0], [-1, 5, 0.5, 2]]
want = []
for r in rows:
    m = max(r); e = [math.exp(v - m) for v in r]; s = sum(e)
    want += [v / s for v in e]
assert list(shape) == [3, 4], shape
worst = max(abs(a - b) for a, b in zip(y, want))
assert worst < 1e-6, worst
PY
  then ok "softmax from .npy ${mode:-jit}"; else bad "softmax from .npy ${mode:-jit}" "$(cat "$tmp/err")"; fi
done

# bf16 inputs are rounded to nearest even on the way in: 1 + 2^-9 is a tie
# that rounds down to 1, 1 + 3*2^-9 rounds up to 1 + 2^-7.
npy write "$tmp/a.npy" "<f4" 1,2 1.001953125 1.005859375
npy write "$tmp/b.npy" "<f4" 1,2 1 1
if "$TILEC" run examples/gemm.lua --set dtype=bf16 --set M=1 --set N=1 --set K=2 \
     --in A=$tmp/a.npy --in B=$tmp/b.npy --out C=$tmp/c.npy >/dev/null 2>"$tmp/err" &&
   [ "$(npy read "$tmp/c.npy" | tail -1)" = "2.0078125" ]; then
  ok "bf16 input rounding"
else
  bad "bf16 input rounding" "$(cat "$tmp/err")" "$(npy read "$tmp/c.npy" 2>&1 | tail -1)"
fi

# compile writes each format.
for emit in ir llvm asm obj; do
  if "$TILEC" compile examples/gemm.lua --target x86-avx512 --emit $emit -o "$tmp/gemm.$emit" 2>"$tmp/err" &&
     [ -s "$tmp/gemm.$emit" ]; then
    ok "compile --emit $emit"
  else
    bad "compile --emit $emit" "$(cat "$tmp/err")"
  fi
done
# compiled for AVX-512 whatever the host: zmm FMAs, and vdpbf16ps for bf16
if grep -q "vfmadd231ps.*zmm" "$tmp/gemm.asm"; then ok "avx512 f32 gemm uses zmm FMA"; else bad "avx512 f32 gemm uses zmm FMA"; fi
"$TILEC" compile examples/gemm.lua --set dtype=bf16 --target x86-avx512 --emit asm -o "$tmp/gemm_bf16.s" 2>/dev/null
if grep -q "vdpbf16ps.*zmm" "$tmp/gemm_bf16.s"; then ok "avx512 bf16 gemm uses vdpbf16ps"; else bad "avx512 bf16 gemm uses vdpbf16ps"; fi
# fp8 weights next to an A dequantised to bf16 (fp8_gemm's 16-row blocks
# below 64 rows): B packed in k-pairs widened to bf16 for vdpbf16ps (it was
# packed as e4m3 and codegen stopped on an internal error; found by the
# first run on an AVX-512 host with a GPU)
if "$TILEC" compile kernels_src/fp8_gemm.lua --set M=40 --set N=256 --set K=512 --set BN=16 --set BK=128 \
     --target x86-avx512 --emit asm -o "$tmp/fp8_pairs.s" 2>"$tmp/err" && grep -q "vdpbf16ps.*zmm" "$tmp/fp8_pairs.s"; then
  ok "avx512 fp8 weights pack as bf16 pairs"; else bad "avx512 fp8 weights pack as bf16 pairs" "$(cat "$tmp/err")"; fi
# a transposing copy (B[N,K] packed k-major for the register tiles) in 8x8
# register blocks: row loads and shuffles, no element-by-element gather
"$TILEC" compile tests/specs/transpose.lua --target x86-avx2 --emit asm -o "$tmp/transpose.s" 2>/dev/null
"$TILEC" compile examples/gemm.lua --target x86-avx2 --emit asm -o "$tmp/gemm_avx2.s" 2>/dev/null
if grep -q "vunpcklps" "$tmp/transpose.s" && ! grep -q "vinsertps" "$tmp/transpose.s" &&
   grep -q "vunpcklps" "$tmp/gemm_avx2.s" && ! grep -q "vinsertps" "$tmp/gemm_avx2.s"; then
  ok "transposing copies go in 8x8 register blocks"; else bad "transposing copies go in 8x8 register blocks"; fi
# ... an edge block's too (rows past the edge zeroed whole: a GEMM's B panel
# where BN does not divide N; left to LLVM it was a gather unrolled and
# SLP-vectorised in half of the compile)
"$TILEC" compile tests/specs/transpose.lua --set form=edge --target x86-avx2 --emit asm -o "$tmp/edge.s" 2>/dev/null
if grep -q "vunpcklps" "$tmp/edge.s" && ! grep -q "vinsertps" "$tmp/edge.s"; then
  ok "an edge block's transposing copy goes in 8x8 register blocks"; else
  bad "an edge block's transposing copy goes in 8x8 register blocks"; fi
# ... and so does B[N,K]'s packing in bf16 k-pairs for vdpbf16ps, as 32-bit
# pairs (it was a gather of 16-bit elements: 60 vpextr/vpinsr, half of a
# 2048^3 bf16 GEMM's time on Zen 5)
"$TILEC" compile tests/specs/transpose.lua --set form=pairs --set dtype=bf16 --target x86-avx512 --emit asm \
  -o "$tmp/pairs.s" 2>/dev/null
"$TILEC" compile examples/gemm.lua --set dtype=bf16 --target x86-avx512 --emit asm -o "$tmp/gemm_bf16.s" 2>/dev/null
# (fp8 pairs too, widened into bf16 after the transposition: fp8_gemm 2048^3
# 131 -> 50 ms; left: 60 vpinsrb gathering A's scale column once a row block,
# where the packing added 32 vpextrq and 30 vpinsrb)
"$TILEC" compile kernels_src/fp8_gemm.lua --set M=256 --target x86-avx512 --emit asm -o "$tmp/fp8_256.s" 2>/dev/null
if grep -q "vpunpckldq" "$tmp/pairs.s" && ! grep -qE "vpextr|vpinsr" "$tmp/pairs.s" &&
   grep -q "vpunpckldq" "$tmp/gemm_bf16.s" && ! grep -qE "vpextr|vpinsr" "$tmp/gemm_bf16.s" &&
   grep -q "vpunpck" "$tmp/fp8_256.s" && [ "$(grep -cE "vpextr|vpinsr" "$tmp/fp8_256.s")" -le 64 ]; then
  ok "bf16 k-pair packing goes in 32-bit register blocks"; else bad "bf16 k-pair packing goes in 32-bit register blocks"; fi
# ... an edge block's and a K tail's too, each row a masked load (the
# element-by-element form was 28 vpinsrw: bf16 1000^3 in one K step of
# 1024 packed all of B so, 18% of its time on Zen 4)
"$TILEC" compile tests/specs/transpose.lua --set form=pairs_edge --set dtype=bf16 --set C=32 --target x86-avx512 \
  --emit asm -o "$tmp/pairs_edge.s" 2>/dev/null
"$TILEC" compile examples/gemm.lua --set dtype=bf16 --set M=1000 --set N=1000 --set K=1000 --set BK=1024 \
  --target x86-avx512 --emit asm -o "$tmp/gemm_tail.s" 2>/dev/null
if grep -q "vpunpckldq" "$tmp/pairs_edge.s" && grep -qE "vmovdqu16.*\{%k" "$tmp/pairs_edge.s" &&
   ! grep -qE "vpextr|vpinsr" "$tmp/pairs_edge.s" && grep -q "vpunpckldq" "$tmp/gemm_tail.s" &&
   ! grep -qE "vpextr|vpinsr" "$tmp/gemm_tail.s"; then
  ok "bf16 k-pairs of an edge block and a K tail go in register blocks"; else
  bad "bf16 k-pairs of an edge block and a K tail go in register blocks"; fi
# x86-avx512 builds strided accesses from shuffles, not gathers and
# scatters (hadamard's butterflies: 192 of them, 4.7x slower on Zen 5)
if "$TILEC" compile kernels_src/hadamard.lua --target x86-avx512 --emit asm -o "$tmp/hadamard512.s" 2>"$tmp/err" &&
   [ -s "$tmp/hadamard512.s" ] && ! grep -qE "vgather|vscatter" "$tmp/hadamard512.s"; then
  ok "x86-avx512 strided accesses take no gathers or scatters"; else bad "x86-avx512 strided accesses take no gathers or scatters" "$(cat "$tmp/err")"; fi
# bf16 decode at one row on x86-avx512 (vdpbf16ps pair tiles) fetches the
# next tile's weight rows as it goes, as the other dot tiles do
if "$TILEC" compile examples/gemm.lua --set M=1 --set N=4096 --set K=4096 --set dtype=bf16 --target x86-avx512 \
     --emit asm -o "$tmp/bf16_row.s" 2>"$tmp/err" &&
   [ "$(awk '/^\.LBB[0-9_]+:/ { lab = $1; sub(/:$/, "", lab); n = 0; next } { body[++n] = $0 }
            /^[ \t]+j[a-z]+[ \t]+\.LBB/ { if ($2 == lab) { s = ""; for (i = 1; i <= n; i++) s = s body[i] "\n"
                                         if (s ~ /vdpbf16ps/ && s ~ /prefetcht0/) c++ } } END { print c + 0 }' "$tmp/bf16_row.s")" -ge 1 ]; then
  ok "bf16 pair tiles at one row prefetch the next tile's rows"; else bad "bf16 pair tiles at one row prefetch the next tile's rows" "$(cat "$tmp/err")"; fi
# x86-avx512's float max and min (llvm.maximum / minimum) go through
# vrangeps beside a NaN test (codegen/minmax.c), not LLVM's sign-mask
# ordering (vpmovd2m and two blends a step: topk ran 2.4x slower)
if "$TILEC" compile kernels_src/topk.lua --target x86-avx512 --emit asm -o "$tmp/topk512.s" 2>"$tmp/err" &&
   grep -q "vrangeps" "$tmp/topk512.s" && ! grep -q "vpmovd2m" "$tmp/topk512.s"; then
  ok "x86-avx512 float max and min through vrangeps"; else bad "x86-avx512 float max and min through vrangeps" "$(cat "$tmp/err")"; fi
# write-once outputs: non-temporal stores (a version taken for outputs of
# 16 MiB and more: static shapes under that have none), the kernel closed
# by an sfence; bf16 rows as integer vectors (AVX2), f32 C tiles as zmm
# (AVX-512; C's copy-out is no memcpy)
"$TILEC" compile kernels_src/rmsnorm.lua --target x86-avx2 --emit asm -o "$tmp/rmsnorm.s" 2>/dev/null
"$TILEC" compile examples/gemm.lua --set M=4096 --set N=4096 --target x86-avx512 --emit asm \
  -o "$tmp/gemm_nt.s" 2>/dev/null
if grep -q "vmovntdq.*ymm" "$tmp/rmsnorm.s" && grep -q "sfence" "$tmp/rmsnorm.s" &&
   grep -q "vmovntps.*zmm" "$tmp/gemm_nt.s"; then
  ok "write-once outputs stream (vmovnt, sfence)"; else bad "write-once outputs stream (vmovnt, sfence)"; fi
# --repeat N runs the kernel N times (it stopped at 64 while printing N): an
# inout argument that each run adds 1 to ends at N
printf 'kernel count level tile\narg y: f32[4] inout\ngrid (b) < [1]\n{\n  for i: parallel < 4 {\n    y[i] = y[i] + 1.0\n  }\n}\n' > "$tmp/count.tir"
npy write "$tmp/zeros4.npy" "<f4" 4 0 0 0 0
if out=$("$TILEC" run "$tmp/count.tir" --in y="$tmp/zeros4.npy" --out y="$tmp/count.npy" --repeat 100 2>&1) &&
   grep -q "median of 100 runs" <<< "$out" &&
   [ "$(npy read "$tmp/count.npy" | tail -1)" = "100.0 100.0 100.0 100.0" ]; then
  ok "--repeat 100 runs 100 times"; else bad "--repeat 100 runs 100 times" "$out" "$(npy read "$tmp/count.npy" 2>&1)"; fi
# arguments never overlap, and LLVM knows it (noalias): a kernel with a dyn
# token count vectorises without run-time overlap checks (rope had 11),
# which a dyn size can leave it unable to build (hc_pre's y loop ran scalar)
if "$TILEC" compile kernels_src/rope.lua --target x86-avx2 --emit llvm -o "$tmp/rope.ll" 2>"$tmp/err" &&
   grep -q "vector.body" "$tmp/rope.ll" && ! grep -q "vector.memcheck" "$tmp/rope.ll"; then
  ok "argument loops vectorise without overlap checks"; else bad "argument loops vectorise without overlap checks" "$(grep -c vector.memcheck "$tmp/rope.ll") memchecks" "$(cat "$tmp/err")"; fi
# a prefill tile's packed fp4 weights are dequantised a pair of elements
# per step: each dimension its own GEP and the pair's byte at an affine
# address, so the loop vectorises (8 bytes in, 16 floats out interleaved);
# with one summed offset LLVM gave up ("cannot identify array bounds")
if "$TILEC" compile kernels_src/moe_expert_gemm.lua --set R=1024 --set E=8 --set N=4096 --set K=2048 --set BM=64 \
     --set BK=512 --set BN=128 --target x86-avx2 --emit llvm -o "$tmp/moe64.ll" 2>"$tmp/err" &&
   grep -q "store <16 x float> %interleaved" "$tmp/moe64.ll"; then
  ok "fp4 dequantising copies vectorise"; else bad "fp4 dequantising copies vectorise" "$(cat "$tmp/err")"; fi
# one-row fp4 dot tiles (AVX2) decode 64 weights at once for a pair of
# scale blocks: 256-bit vpshufb lookups, and no 128-bit ones left
if "$TILEC" compile kernels_src/moe_expert_gemm.lua --set R=16 --set E=16 --set N=4096 --set K=2048 --set BM=1 \
     --target x86-avx2 --emit asm -o "$tmp/fp4_row.s" 2>"$tmp/err" &&
   grep -q "vpshufb.*ymm" "$tmp/fp4_row.s" && ! grep -q "vpshufb.*xmm" "$tmp/fp4_row.s"; then
  ok "one-row fp4 tiles decode block pairs"; else bad "one-row fp4 tiles decode block pairs" "$(grep -c vpshufb "$tmp/fp4_row.s")" "$(cat "$tmp/err")"; fi
# ... and x86-avx512's (vdpbf16ps) 128 weights at once into bf16 words
# beside a bf16 A in their order (micro_gemm a_decode_order of a bf16 A):
# words looked up in one word table (vpermw, after 16-bit shifts), summed
# by vdpbf16ps: in the loops that sum, no 512-bit byte tables or
# interleave (vpshufb, vpunpcklbw: A's staging copy has its own) and no
# f32 parts (vpslld 16)
if "$TILEC" compile kernels_src/moe_expert_gemm.lua --set R=16 --set E=16 --set N=4096 --set K=2048 --set BM=1 \
     --target x86-avx512 --emit asm -o "$tmp/fp4_row512.s" 2>"$tmp/err" &&
   asm_loops vdpbf16ps "$tmp/fp4_row512.s" >"$tmp/fp4_dot512.s" &&
   grep -q "vpermw.*zmm" "$tmp/fp4_dot512.s" && grep -q "vpsrlw.*zmm" "$tmp/fp4_dot512.s" && grep -q "vdpbf16ps.*zmm" "$tmp/fp4_dot512.s" &&
   ! grep -qE "(vpshufb|vpunpcklbw).*zmm" "$tmp/fp4_dot512.s" && ! grep -q "vpslld	\$16, %[yz]mm" "$tmp/fp4_dot512.s"; then
  ok "avx512 one-row fp4 tiles decode to bf16 for vdpbf16ps"
else
  bad "avx512 one-row fp4 tiles decode to bf16 for vdpbf16ps" "$(cat "$tmp/err")"
fi
# a dot or broadcast tile the kernel has more than once is one function,
# called from each place (moe_gemm_swiglu: the gate and up GEMMs' tiles;
# a broadcast tile's two tail tiles of a width, twice in each), and one it
# has once stays inline (fp8_gemm at 16 rows: the broadcast tiles' loop;
# its two tail tiles are one function); AVX2's, whose broadcast tiles start
# at 16 rows (AVX-512's at 32)
"$TILEC" compile kernels_src/moe_gemm_swiglu.lua --set R=96 --set E=16 --set I=2048 --set K=4096 --set BM=16 \
  --target x86-avx2 --emit llvm -o "$tmp/swiglu.ll" 2>/dev/null
"$TILEC" compile kernels_src/fp8_gemm.lua --set M=16 --target x86-avx2 --emit llvm -o "$tmp/fp8_16.ll" 2>/dev/null
defs=$(grep -c '^define internal.*@"tile\.' "$tmp/swiglu.ll")
calls=$(grep -c 'call .*@"tile\.' "$tmp/swiglu.ll")
fdefs=$(grep -c '^define internal.*@"tile\.' "$tmp/fp8_16.ll")
fcalls=$(grep -c 'call .*@"tile\.' "$tmp/fp8_16.ll")
if [ "$defs" -ge 4 ] && [ "$calls" -ge $((2 * defs)) ] && [ "$fdefs" -eq 1 ] && [ "$fcalls" -eq 2 ]; then
  ok "repeated dot tiles are functions, single ones inline"
else
  bad "repeated dot tiles are functions, single ones inline" "defs $defs calls $calls; fp8_gemm $fdefs, $fcalls"
fi
# repeated dot tiles whose operands are alike but whose scales differ (A's
# in one, B's in the other) are two functions, not one
check "dot tiles with A's and with B's scales --check" "$TILEC" run tests/specs/tile_scales.tir --check
# byte-table fp4 tiles reading A in e2m1 order (micro_gemm a_decode_order):
# A's and B's scales per 32 and per 64 elements, one and two rows, beside a
# tile of the same operands in A's own order
check "fp4 tiles beside A in e2m1 order --check" "$TILEC" run tests/specs/e2m1_order.tir --check
# ... and beside a bf16 A in its blocks of 128 (vdpbf16ps tiles): scales per
# 32, 64 and 128 elements, one, two and four rows
if "$TILEC" targets | grep -q "bf16 dot products"; then
  check "fp4 tiles beside a bf16 A in e2m1 order --check" "$TILEC" run tests/specs/e2m1_pairs.tir --check
else
  echo "skipped: fp4 tiles beside a bf16 A in e2m1 order (this CPU's target has no fast vdpbf16ps)"
fi
# broadcast tiles (micro_gemm trans_a trans_b): bf16, e4m3 with 128x128
# scales added into C, packed e2m1 with 1x32 scales over 12 rows (a masked
# vector on AVX2)
check "broadcast tiles --check" "$TILEC" run tests/specs/bcast_tile.tir --check
# ... and for AVX-512 (one zmm of rows, 12 of 16 lanes masked), which this
# host may not run: the K loop broadcasts into zmm FMAs
if "$TILEC" compile tests/specs/bcast_tile.tir --target x86-avx512 --emit asm -o "$tmp/bcast512.s" 2>"$tmp/err" &&
   grep -q "vbroadcastss.*zmm" "$tmp/bcast512.s" && grep -q "vfmadd231ps.*zmm" "$tmp/bcast512.s" &&
   ! grep -q "vfmadd231ps.*ymm" "$tmp/bcast512.s"; then
  ok "x86-avx512 broadcast tiles on zmm"; else bad "x86-avx512 broadcast tiles on zmm" "$(cat "$tmp/err")"; fi
# 16 lanes hold AVX2's two vectors of rows: x86-avx512 would take broadcast
# tiles of one vector at a known 16 rows, but not where its dot tiles take
# vdpbf16ps (bf16, and e4m3 beside e4m3 in 8-row bands with A staged bf16:
# an Intel host's target, without a fast vdpbf16ps, takes them for fp8 —
# test_target), nor where the rows are known only at run time (a dyn M, an
# MoE tile): there the dot tiles' arm of the test ran 15-27% slower
"$TILEC" compile kernels_src/fp8_gemm.lua --set M=16 --target x86-avx512 --emit ir -o "$tmp/fp8_16.tir" 2>/dev/null
"$TILEC" compile kernels_src/fp8_gemm.lua --set BM=16 --target x86-avx512 --emit ir -o "$tmp/fp8_dyn.tir" 2>/dev/null
"$TILEC" compile kernels_src/moe_expert_gemm.lua --set R=16 --set BM=16 --target x86-avx512 --emit ir -o "$tmp/fp4_16.tir" 2>/dev/null
"$TILEC" compile examples/gemm.lua --set M=16 --set dtype=bf16 --target x86-avx512 --emit ir -o "$tmp/bf16_16.tir" 2>/dev/null
if grep -q "gemm_a0: shared bf16\[" "$tmp/fp8_16.tir" && grep -q "micro_gemm gemm_a0\[[a-z0-9 *+]*it \* 8 +: 8," "$tmp/fp8_16.tir" &&
   ! grep -q "trans_a trans_b" "$tmp/fp8_16.tir" && [ -s "$tmp/fp8_dyn.tir" ] && ! grep -q "trans_a trans_b" "$tmp/fp8_dyn.tir" &&
   [ -s "$tmp/fp4_16.tir" ] && ! grep -q "trans_a trans_b" "$tmp/fp4_16.tir" &&
   [ -s "$tmp/bf16_16.tir" ] && ! grep -q "trans_a trans_b" "$tmp/bf16_16.tir"; then
  ok "x86-avx512 decode at 16 rows: dot tiles where they take vdpbf16ps"; else bad "x86-avx512 decode at 16 rows: dot tiles where they take vdpbf16ps"; fi
# below them, x86-avx512's packed e2m1 dot tiles of 8 rows take two columns
# (one column's FMAs read 64 bytes of A each, from L2: 8x1 ran 2.2x slower)
"$TILEC" compile kernels_src/moe_expert_gemm.lua --set R=16 --set BM=8 --target x86-avx512 --emit ir \
  -o "$tmp/fp4_8.tir" 2>/dev/null
if grep -qE "micro_gemm gemm_a[0-9]+\[it[_0-9]* \* 8 \+: 8, 0 \+: 2048\], w\[sched\[0\] \+: 1, bx \* 32 \+ jt[_0-9]* \* 2 \+: 2," "$tmp/fp4_8.tir" &&
   ! grep -qE "\[it[_0-9]* \* 8 \+: 8, jt[_0-9]* \+: 1\]" "$tmp/fp4_8.tir"; then
  ok "x86-avx512 e2m1 dot tiles of 8 rows take two columns"; else bad "x86-avx512 e2m1 dot tiles of 8 rows take two columns"; fi
# a count (a sum of 0/1 choices, exact in any order) keeps several vector
# accumulators (bin.rdx: their sum) and adds its lanes as a tree (reassoc on
# the final reduction; without it, LLVM adds the 8 lanes one by one)
if "$TILEC" compile kernels_src/topk_long.lua --set N=65536 --set K=1024 --target x86-avx2 --emit llvm \
     -o "$tmp/topk_long.ll" 2>"$tmp/err" &&
   grep -q "reassoc float @llvm.vector.reduce.fadd.*bin.rdx" "$tmp/topk_long.ll" &&
   ! grep -q "call float @llvm.vector.reduce.fadd" "$tmp/topk_long.ll"; then
  ok "counts reduce in any order"; else bad "counts reduce in any order" "$(grep reduce.fadd "$tmp/topk_long.ll")" "$(cat "$tmp/err")"; fi
# an f32 sum in a vector loop (rmsnorm's squares) keeps several accumulators
# too — each adds its elements in order; one was a chain of dependent adds —
# and folds its lanes as a tree
if "$TILEC" compile kernels_src/rmsnorm.lua --target x86-avx512 --emit llvm -o "$tmp/rmsnorm.ll" 2>"$tmp/err" &&
   grep -q "reassoc float @llvm.vector.reduce.fadd" "$tmp/rmsnorm.ll" &&
   ! grep -q "call float @llvm.vector.reduce.fadd" "$tmp/rmsnorm.ll" && grep -q "bin.rdx" "$tmp/rmsnorm.ll"; then
  ok "vector sums fold their lanes as a tree"; else bad "vector sums fold their lanes as a tree" "$(grep reduce.fadd "$tmp/rmsnorm.ll")" "$(cat "$tmp/err")"; fi
# --time-passes: each pass's line, then LLVM's IR, O3 and machine code —
# for compile (an object) and for run (the JIT's)
if out=$("$TILEC" compile examples/gemm.lua --time-passes -o "$tmp/timed.o" 2>&1) &&
   printf '%s\n' "$out" | grep -qE "^pass lower +[0-9.]+ ms" &&
   printf '%s\n' "$out" | grep -qE "^llvm O3 +[0-9.]+ ms" && printf '%s\n' "$out" | grep -qE "^llvm machine +[0-9.]+ ms" &&
   out2=$("$TILEC" run examples/gemm.lua --set M=64 --set N=64 --set K=64 --time-passes 2>&1) &&
   printf '%s\n' "$out2" | grep -qE "^llvm ir +[0-9.]+ ms" && printf '%s\n' "$out2" | grep -qE "^llvm machine +[0-9.]+ ms"; then
  ok "--time-passes times the passes and LLVM's steps"
else bad "--time-passes times the passes and LLVM's steps" "$out" "$out2"; fi
# a loop over register tiles stays a loop: LLVM unrolled a row band's four
# column tiles in full, each with its own K loop (225 FMAs in the IR of a
# GEMM with row, column and K edges, 41 rolled: a third of its compile time)
if "$TILEC" compile examples/gemm.lua --set M=333 --set N=777 --set K=555 --target x86-avx2 --emit llvm \
     -o "$tmp/gemm_odd.ll" 2>"$tmp/err" && [ "$(grep -c "call <8 x float> @llvm.fma" "$tmp/gemm_odd.ll")" -le 64 ]; then
  ok "loops over register tiles stay rolled"; else bad "loops over register tiles stay rolled" "$(grep -c llvm.fma "$tmp/gemm_odd.ll")" "$(cat "$tmp/err")"; fi
# so does a loop over rows of vector loops: rmsnorm's 8-row loops unrolled
# in full made 8 copies of each row's 16 vector steps (264 bf16 vector
# stores, 40 rolled; compile 540 -> 160 ms)
if "$TILEC" compile kernels_src/rmsnorm.lua --target x86-avx2 --emit llvm -o "$tmp/rmsnorm_avx2.ll" 2>"$tmp/err" &&
   [ "$(grep -c "store <[0-9]* x i16>" "$tmp/rmsnorm_avx2.ll")" -le 64 ]; then
  ok "loops over vector loops stay rolled"
else bad "loops over vector loops stay rolled" "$(grep -c "store <[0-9]* x i16>" "$tmp/rmsnorm_avx2.ll")" "$(cat "$tmp/err")"; fi
# AVX2 masks only 32- and 64-bit elements: a vector loop over bf16 of a
# trip count LLVM does not know keeps a vector body and a scalar remainder
# rather than masking every step one element at a time (pred.load.if /
# pred.store.if blocks: 48 in silu_mul, 32 in a bf16 GEMM's edge staging)
if "$TILEC" compile examples/silu_mul.lua --target x86-avx2 --emit llvm -o "$tmp/silu_avx2.ll" 2>"$tmp/err" &&
   "$TILEC" compile examples/gemm.lua --set M=333 --set N=777 --set K=555 --set dtype=bf16 --target x86-avx2 \
     --emit llvm -o "$tmp/gemm_bf16_odd.ll" 2>>"$tmp/err" &&
   ! grep -q "pred\.\(load\|store\)\.if" "$tmp/silu_avx2.ll" "$tmp/gemm_bf16_odd.ll"; then
  ok "x86-avx2 bf16 loops have no per-element masked steps"
else bad "x86-avx2 bf16 loops have no per-element masked steps" "$(grep -c "pred\.load\.if" "$tmp/silu_avx2.ll")" "$(cat "$tmp/err")"; fi
# decode rows: dot tiles — vdpbf16ps on bf16 pairs along K (AVX-512), fp8
# widened through F16C (vcvtph2ps) and the next step prefetched (AVX2)
"$TILEC" compile examples/gemm.lua --set dtype=bf16 --set M=4 --set BM=4 --target x86-avx512 --emit asm \
  -o "$tmp/dot_bf16.s" 2>/dev/null
if grep -q "vdpbf16ps.*zmm" "$tmp/dot_bf16.s"; then ok "avx512 bf16 dot tiles use vdpbf16ps"; else bad "avx512 bf16 dot tiles use vdpbf16ps"; fi
"$TILEC" compile kernels_src/fp8_gemm.lua --set BM=1 --set BN=16 --set BK=128 --target x86-avx2 --emit asm -o "$tmp/dot_fp8.s" 2>/dev/null
if grep -q "vcvtph2ps" "$tmp/dot_fp8.s" && grep -q "prefetcht1" "$tmp/dot_fp8.s"; then
  ok "fp8 dot tiles widen through f16 and prefetch"; else bad "fp8 dot tiles widen through f16 and prefetch"; fi
# fp8 at one row, where the host's FMAs take subnormals at full speed
# (AMD's; named targets never assume it): A's e4m3 row is staged once,
# lifted, as f32 (pass_hoist puts the staging in a once), and the dot
# tile's K loop widens each 8 e4m3 weights straight into f32's fields
# (vpmovsxbd, vpslld, vpand: no F16C and no NaN arithmetic — B's NaN codes
# are found by a vpmaxub scan after the loop), its FMAs reading A from the
# staging; the accumulators stay in registers (nothing stored to the stack
# in the loop).  (test_target compiles this route on any host.)  Where
# 512-bit operations run in halves (Zen 4) one row takes the bf16 pairs
# instead, as 4 rows do below: the basic blocks of its K loop decode 64
# weights to bf16 words for vdpbf16ps by shifts within 16-bit words (A
# staged in their order, micro_gemm a_decode_order: no vpmovsxbw), no f32
# widening (the promoted blocks' scales take one FMA each).  And
# where the core streams weights best as one run (TargetInfo.one_stream,
# Zen 4 too), the tile reads one weight row at a time: those blocks sum
# into 2-4 registers (one column's two chains, codegen/micro.c's
# pair_chains, in the folded and the promoted loop; a 1x16 tile's into 16)
# and fetch no rows ahead.
if "$TILEC" targets | grep -q "512-bit operations in two halves"; then
"$TILEC" compile kernels_src/fp8_gemm.lua --set M=1 --set BM=1 --set BN=16 --emit asm \
  -o "$tmp/dot_fp8_1.s" 2>/dev/null
awk '/^\.LBB[0-9_]+:/ { if (s ~ /vdpbf16ps/) printf "%s", s; s = ""; next }
     { s = s $0 "\n" } END { if (s ~ /vdpbf16ps/) printf "%s", s }' "$tmp/dot_fp8_1.s" >"$tmp/dot_fp8_1k.s"
"$TILEC" compile kernels_src/fp8_gemm.lua --set M=1 --set BM=1 --set BN=16 --emit ir \
  -o "$tmp/dot_fp8_1.tir" 2>/dev/null
if grep -q vpsraw "$tmp/dot_fp8_1k.s" && ! grep -qE "vpmovsxbw|vpmovsxbd|vcvtph2ps" "$tmp/dot_fp8_1k.s" &&
   grep -q "micro_gemm.*a_decode_order" "$tmp/dot_fp8_1.tir"; then
  ok "fp8 dot tile at one row, 512-bit operations in halves: e4m3 B read as words, decoded to bf16 words by shifts"
else
  bad "fp8 dot tile at one row, 512-bit operations in halves: e4m3 B read as words, decoded to bf16 words by shifts" \
    "$(grep micro_gemm "$tmp/dot_fp8_1.tir")" "$(head -60 "$tmp/dot_fp8_1k.s")"
fi
if "$TILEC" targets | grep -q "weights read best as one stream"; then
  sums=$(awk '/vdpbf16ps/ { print $NF }' "$tmp/dot_fp8_1k.s" | sort -u | wc -l)
  if [ "$sums" -ge 2 ] && [ "$sums" -le 4 ] && ! grep -q prefetch "$tmp/dot_fp8_1k.s"; then
    ok "fp8 dot tile at one row, one stream: one weight row at a time in two chains, no prefetch"
  else
    bad "fp8 dot tile at one row, one stream: one weight row at a time in two chains, no prefetch" \
      "$sums registers summed into" "$(head -60 "$tmp/dot_fp8_1k.s")"
  fi
fi
elif ! "$TILEC" targets | grep -q "subnormal operands at full speed here"; then
  echo "skipped: fp8 dot tile at one row, B straight to f32 (this CPU's FMAs take assists on subnormals)"
else
"$TILEC" compile kernels_src/fp8_gemm.lua --set M=1 --set BM=1 --set BN=16 --emit asm \
  -o "$tmp/dot_fp8_1.s" 2>/dev/null
awk '/^\.LBB[0-9_]+:/ { lab = $1; sub(/:$/, "", lab); n = 0; next }
     { body[++n] = $0 }
     /^[ \t]+j[a-z]+[ \t]+\.LBB/ { if ($2 == lab) { s = ""; for (i = 1; i <= n; i++) s = s body[i] "\n"
                                     if (s ~ /vfmadd/ && s ~ /vpslld/) printf "%s", s } }' "$tmp/dot_fp8_1.s" >"$tmp/dot_fp8_1k.s"
if grep -q vpmovsxbd "$tmp/dot_fp8_1k.s" && ! grep -qE "vcvtph2ps|vpaddw" "$tmp/dot_fp8_1k.s" &&
   ! grep -qE "vmov[a-z]*[ \t]+%[xy]mm[0-9]+, .*\(%rsp" "$tmp/dot_fp8_1k.s" && grep -q vpmaxub "$tmp/dot_fp8_1.s"; then
  ok "fp8 dot tile at one row: B widened straight to f32, no NaN arithmetic in the K loop, no spills"
else
  bad "fp8 dot tile at one row: B widened straight to f32, no NaN arithmetic in the K loop, no spills" \
    "$(head -60 "$tmp/dot_fp8_1k.s")"
fi
# fp8 at 4 rows where vdpbf16ps is fast (x86-avx512 names such a target):
# A staged bf16, and the K loop decodes each 32 e4m3 weights to bf16 words
# (vpmovsxbw, a vpermw lookup for the exponent-0 codes) for vdpbf16ps —
# and a second version of it, for blocks without such codes, no lookup —
# no FMA and no f32 widening in either, nothing stored to the stack
"$TILEC" compile kernels_src/fp8_gemm.lua --set M=4 --target x86-avx512 --emit asm -o "$tmp/dot_fp8_4.s" 2>/dev/null
awk '/^\.LBB[0-9_]+:/ { lab = $1; sub(/:$/, "", lab); n = 0; next }
     { body[++n] = $0 }
     /^[ \t]+j[a-z]+[ \t]+\.LBB/ { if ($2 == lab) { s = ""; for (i = 1; i <= n; i++) s = s body[i] "\n"
                                     if (s ~ /vdpbf16ps/) printf "%s# %s\n", s, (s ~ /vpermw/ ? "exact" : "fast") } }' \
  "$tmp/dot_fp8_4.s" >"$tmp/dot_fp8_4k.s"
if grep -q vpmovsxbw "$tmp/dot_fp8_4k.s" && grep -q "^# exact" "$tmp/dot_fp8_4k.s" && grep -q "^# fast" "$tmp/dot_fp8_4k.s" &&
   ! grep -qE "vfmadd|vpmovsxbd|vcvtph2ps" "$tmp/dot_fp8_4k.s" && ! grep -q "(%rsp" "$tmp/dot_fp8_4k.s" &&
   grep -q vpmaxub "$tmp/dot_fp8_4.s"; then
  ok "fp8 dot tile at 4 rows: e4m3 B decoded to bf16 words for vdpbf16ps, exact and fast forms, no spills"
else
  bad "fp8 dot tile at 4 rows: e4m3 B decoded to bf16 words for vdpbf16ps, exact and fast forms, no spills" "$(head -60 "$tmp/dot_fp8_4k.s")"
fi
# ... its A staged bf16 with its block scale in it (micro_gemm a_prescaled),
# the tiles folding both scales into their operands where the codes allow
# (a second K loop promotes per block where they do not); the Loop IR run
# compiled against the interpreter, which takes a_prescaled's residual
"$TILEC" compile kernels_src/fp8_gemm.lua --set M=4 --set N=256 --set K=512 --target x86-avx512 --emit ir \
  -o "$tmp/fp8_4.tir" 2>/dev/null
"$TILEC" compile kernels_src/fp8_gemm.lua --set M=4 --set N=256 --set K=512 --target x86-avx512 --emit llvm \
  -o "$tmp/fp8_4.ll" 2>/dev/null
if grep -q "micro_gemm gemm_a.* a_prescaled" "$tmp/fp8_4.tir" && grep -q "^scales_done" "$tmp/fp8_4.ll" &&
   "$TILEC" run "$tmp/fp8_4.tir" --check >"$tmp/out" 2>&1; then
  ok "fp8 at 4 rows: A prescaled, scales folded into the pair tiles, Loop IR checked against the interpreter"
else
  bad "fp8 at 4 rows: A prescaled, scales folded into the pair tiles, Loop IR checked against the interpreter" \
    "$(grep -c a_prescaled "$tmp/fp8_4.tir") prescaled; $(tail -2 "$tmp/out")"
fi
# fp4 (e4m3 A by packed e2m1 B, both block-scaled) at 4 rows likewise: A's
# copy in e2m1 order prescaled, 4x2 tiles, whose folded K loop takes each
# column's scales into its decoded words (vpsubusw) and runs no FMA and
# stores nothing to the stack, beside the promoted one; the Loop IR run
# compiled against the interpreter
"$TILEC" compile tests/specs/dot_fp8.lua --set M=4 --set K=512 --set S=128 --set SB=32 --set bdt=f4e2m1 \
  --target x86-avx512 --emit ir -o "$tmp/fp4_4.tir" 2>/dev/null
"$TILEC" compile "$tmp/fp4_4.tir" --target x86-avx512 --emit asm -o "$tmp/fp4_4.s" 2>/dev/null
awk '/^\.LBB[0-9_]+:/ { lab = $1; sub(/:$/, "", lab); n = 0; next }
     { body[++n] = $0 }
     /^[ \t]+j[a-z]+[ \t]+\.LBB/ { if ($2 == lab) { s = ""; for (i = 1; i <= n; i++) s = s body[i] "\n"
                                     if (s ~ /vdpbf16ps/ && s ~ /vpsubusw/) printf "%s", s } }' \
  "$tmp/fp4_4.s" >"$tmp/fp4_4k.s"
# (that run only where this CPU runs x86-avx512: the tiles need its vdpbf16ps)
if runs_avx512; then "$TILEC" run "$tmp/fp4_4.tir" --check >"$tmp/out" 2>&1; fp4_run=$?
else echo "skipped: fp4 at 4 rows' Loop IR run (this CPU cannot run x86-avx512)" >"$tmp/out"; fp4_run=0; fi
if grep -q "micro_gemm gemm_a_t.* -> acc\[0 +: 4, jt \* 2 +: 2\] .* a_prescaled a_decode_order" "$tmp/fp4_4.tir" &&
   grep -q vdpbf16ps "$tmp/fp4_4k.s" && ! grep -qE "vfmadd|vmulps|%zmm[0-9]+, [-0-9]*\(%rsp" "$tmp/fp4_4k.s" &&
   [ $fp4_run -eq 0 ]; then
  grep skipped "$tmp/out" || true
  ok "fp4 at 4 rows: A prescaled in e2m1 order, 4x2 tiles fold the scales into the decoded words"
else
  bad "fp4 at 4 rows: A prescaled in e2m1 order, 4x2 tiles fold the scales into the decoded words" \
    "$(grep micro_gemm "$tmp/fp4_4.tir"); $(head -40 "$tmp/fp4_4k.s"); $(tail -2 "$tmp/out")"
fi
# the NaN scan: one running maximum for all the tile's columns, a vector
# of bytes at a time (this CPU's widest), kept in registers (a maximum per
# column spilled: a third of the kernel's samples); each column rescanned
# only on a hit
awk '/^\.LBB[0-9_]+:/ { lab = $1; sub(/:$/, "", lab); n = 0; next }
     { body[++n] = $0 }
     /^[ \t]+j[a-z]+[ \t]+\.LBB/ { if ($2 == lab) { s = ""; for (i = 1; i <= n; i++) s = s body[i] "\n"
                                     if (s ~ /vpmaxub/) { printf "%s", s; exit } } }' "$tmp/dot_fp8_1.s" >"$tmp/nan_scan.s"
if runs_avx512; then widest=zmm; else widest=ymm; fi
if grep -qE "vpmaxub.*$widest" "$tmp/nan_scan.s" && ! grep -qE "\(%rsp" "$tmp/nan_scan.s"; then
  ok "fp8 dot tile's NaN scan: $widest maxima in registers"
else
  bad "fp8 dot tile's NaN scan: $widest maxima in registers" "$(head -40 "$tmp/nan_scan.s")"
fi
fi
# ... but not for a named target (on Intel's cores an FMA with a subnormal
# operand takes an assist, and B's subnormal e4m3 codes would widen to f32
# subnormals): there the K loops widen B through F16C, normal values only
for tgt in x86-avx512 x86-avx2; do
  "$TILEC" compile kernels_src/fp8_gemm.lua --set M=1 --set BM=1 --set BN=16 --set BK=4096 --target $tgt \
    --emit asm -o "$tmp/dot_fp8_named.s" 2>/dev/null
  if grep -q "vfmadd231ps" "$tmp/dot_fp8_named.s" && grep -q "vcvtph2ps" "$tmp/dot_fp8_named.s" &&
     ! grep -qE 'vpslld[[:space:]]+\$20' "$tmp/dot_fp8_named.s"; then
    ok "$tgt fp8 dot tiles widen B through f16 (no f32 subnormals)"
  else
    bad "$tgt fp8 dot tiles widen B through f16 (no f32 subnormals)"
  fi
done
# a bf16 dot tile of few columns (4 rows: 4x2) fetches the next tile's two
# weight rows in its K loop (prefetcht0 beside the FMAs); at one row (1x9)
# it does not (its K loops' only prefetches are the pipelined loop's t1)
kloops() { asm_loops vfmadd "$1"; } # the loops of asm file $1 whose body has vfmadd
for m in 1 4; do
  "$TILEC" compile examples/gemm.lua --set dtype=bf16 --set M=$m --set BM=$m --set BN=32 --set K=4096 \
    --set BK=4096 --target x86-avx2 --emit asm -o "$tmp/dot_bf16_$m.s" 2>/dev/null
  kloops "$tmp/dot_bf16_$m.s" >"$tmp/dot_bf16_${m}k.s"
done
# Likewise fp8's 4x2 tiles at 4 rows in 128-wide steps, whose A rows
# pass_hoist stages for all the steps at once (A's buffer then holds a
# block of rows per step: the test is on C's rows).
"$TILEC" compile kernels_src/fp8_gemm.lua --set M=4 --set BM=4 --set BN=16 --set BK=128 \
  --target x86-avx2 --emit asm -o "$tmp/dot_fp8_4.s" 2>/dev/null
kloops "$tmp/dot_fp8_4.s" >"$tmp/dot_fp8_4k.s"
if grep -q prefetcht0 "$tmp/dot_bf16_4k.s" && grep -q vfmadd "$tmp/dot_bf16_1k.s" &&
   grep -q prefetcht0 "$tmp/dot_fp8_4k.s" &&
   ! grep -q prefetcht0 "$tmp/dot_bf16_1k.s"; then
  ok "bf16 and fp8 dot tiles of 2 columns prefetch the next tile's rows, bf16's of 9 do not"
else
  bad "bf16 and fp8 dot tiles of 2 columns prefetch the next tile's rows, bf16's of 9 do not" \
    "$(grep -c prefetcht0 "$tmp/dot_bf16_4k.s" "$tmp/dot_bf16_1k.s" "$tmp/dot_fp8_4k.s")"
fi
# topk's positions as floats (cast<f32> of a loop index): through i32, so
# no lane is converted alone (i64 lanes were, with vcvtsi2ss: 4x the time)
"$TILEC" compile kernels_src/topk.lua --set N=4096 --set K=512 --target x86-avx2 --emit asm -o "$tmp/topk.s" 2>/dev/null
if grep -q vmaxps "$tmp/topk.s" && ! grep -q vcvtsi2ss "$tmp/topk.s"; then
  ok "topk converts positions to f32 in vector lanes"
else
  bad "topk converts positions to f32 in vector lanes" "$(grep -c vcvtsi2ss "$tmp/topk.s")"
fi
# a long max reduction keeps 4 vector accumulators (exact in any order):
# the loop with vmaxps tests 4 distinct registers for NaN (vcmpunordps x, x)
"$TILEC" compile tests/specs/row_max.lua --target x86-avx2 --emit asm -o "$tmp/row_max.s" 2>/dev/null
accs=$(awk '/^\.LBB[0-9_]+:/ { lab = $1; sub(/:$/, "", lab); n = 0; next }
            { body[++n] = $0 }
            /^[ \t]+j[a-z]+[ \t]+\.LBB/ { if ($2 == lab) { s = ""; for (i = 1; i <= n; i++) s = s body[i] "\n"
                                             if (s ~ /vmaxps/) printf "%s", s } }' "$tmp/row_max.s" |
       awk '$1 == "vcmpunordps" { sub(/,$/, "", $2); print $2 }' | sort -u | wc -l)
if [ "$accs" -ge 4 ]; then
  ok "a row's max reduction keeps 4 accumulators"
else
  bad "a row's max reduction keeps 4 accumulators" "$accs"
fi
# packed fp4 weights with 1x32 scales (a block-scaled GEMM operand): the
# dot tiles' K loops read the bytes in place, with no scalar byte loads
# (the UE8M0 scales are decoded before the loop).  One row, beside A in
# e2m1 order (micro_gemm a_decode_order): the bytes reordered and the
# nibbles looked up in two byte tables (vpshufb), interleaved into f32s
# (vpunpck*bw) and shifted into place (vpslld) — no sign extension
# (vpmovsxbd) or conversion (vcvtdq2ps), the element order not restored.
# Tall tiles (16 rows):
# per 8 weights one dword broadcast from memory, the e2m1 table permute
# (vpermps; LLVM's domain pass may spell it vpermd), the sign blend and the
# FMAs, and no spill or reload through the stack.
fp4_loop() { # spec args... -> the innermost loops holding FMAs and $PAT
  "$TILEC" compile kernels_src/moe_expert_gemm.lua "$@" --target x86-avx2 --emit asm -o "$tmp/dot_fp4.s" 2>/dev/null
  awk -v pat="$PAT" '/^\.LBB[0-9_]+:/ { lab = $1; sub(/:$/, "", lab); n = 0; next }
       { body[++n] = $0 }
       /^[ \t]+j[a-z]+[ \t]+\.LBB/ { if ($2 == lab) { s = ""; for (i = 1; i <= n; i++) s = s body[i] "\n"
                                       if (s ~ /vfmadd/ && s ~ pat) printf "%s----\n", s } }' "$tmp/dot_fp4.s"
}
# It fetches the next tile's weight rows as it goes (prefetcht0), also in
# an MoE expert's one-row variant of a 4-row band.
# (the first loop: the tiles whose rows all lie inside A; the tail's read A
# staged in its own order, through the in-order byte table)
PAT=vpshufb fp4_loop --set BM=1 --set BK=2048 | awk '/^----$/ { exit } { print }' >"$tmp/dot_fp4_1.s"
PAT=vpshufb fp4_loop --set BM=4 --set BK=2048 >"$tmp/dot_fp4_v.s"
if [ "$(grep -c vpshufb "$tmp/dot_fp4_1.s")" -ge 5 ] && grep -q vpunpcklbw "$tmp/dot_fp4_1.s" &&
   grep -q "vpslld	\$16" "$tmp/dot_fp4_1.s" && ! grep -qE "vpmovsxbd|vcvtdq2ps|movzb|movsb" "$tmp/dot_fp4_1.s" &&
   grep -q prefetcht0 "$tmp/dot_fp4_1.s" && grep -q prefetcht0 "$tmp/dot_fp4_v.s" &&
   ! grep -q vpmovsxbd "$tmp/dot_fp4_v.s"; then
  ok "fp4 dot tile at one row decodes through byte tables in e2m1 order, no scalar loads, prefetching"
else
  bad "fp4 dot tile at one row decodes through byte tables in e2m1 order, no scalar loads, prefetching" "$(head -40 "$tmp/dot_fp4_1.s")"
fi
# (the first such loop: the tiles whose rows all lie inside A; the tail's,
# reading a staged A, may reload a constant).  The sign goes in with the
# xor that clears the table's marks (a left shift by 28), not a blend.
PAT=vperm fp4_loop --set BM=16 --set BK=2048 | awk '/^----$/ { exit } { print }' >"$tmp/dot_fp4_k.s"
if grep -qE "vperm(ps|d)" "$tmp/dot_fp4_k.s" && grep -q "vpbroadcastd	(%" "$tmp/dot_fp4_k.s" &&
   grep -q "vpslld	\$28" "$tmp/dot_fp4_k.s" && ! grep -q vblendvps "$tmp/dot_fp4_k.s" &&
   ! grep -qE "movzb|movsb|[0-9]\(%rsp\)" "$tmp/dot_fp4_k.s"; then
  ok "fp4 tall dot tiles decode through a table permute, no scalar loads or spills"
else
  bad "fp4 tall dot tiles decode through a table permute, no scalar loads or spills" "$(head -40 "$tmp/dot_fp4_k.s")"
fi
# f32 → e4m3 stores (act_quant's quantised block): the float add that
# rounds, its exponent shift and the or of the sign — no compare, blend or
# unsigned min left in the basic block that stores them (codegen/llvm.c,
# fp8_magic; a loop on AVX2, straight code once AVX-512's 64 lanes unroll
# it; the scalar e8m0 scale stores beside it may compare), on both targets.
for tgt in x86-avx2 x86-avx512; do
  "$TILEC" compile kernels_src/act_quant.lua --set K=4096 --target $tgt --emit asm -o "$tmp/aq_$tgt.s" 2>/dev/null
  awk 'function flush() { if (s ~ /vpsrld\t\$20, %[yz]mm/ && s ~ /vaddps/) printf "%s", s; s = "" }
       /^\.LBB[0-9_]+:/ { flush(); next }
       { s = s $0 "\n" }
       /^[ \t]+j[a-z]+[ \t]/ { flush() }
       END { flush() }' "$tmp/aq_$tgt.s" >"$tmp/aq_$tgt.loop"
  if [ -s "$tmp/aq_$tgt.loop" ] && ! grep -E "vblendv|vpminud|vcmp" "$tmp/aq_$tgt.loop" | grep -qE "%[yz]mm"; then
    ok "$tgt e4m3 stores round in one float add"
  else
    bad "$tgt e4m3 stores round in one float add" "$(head -40 "$tmp/aq_$tgt.loop")"
  fi
done
"$TILEC" compile examples/gemm.lua --target x86-avx2 --emit asm -o "$tmp/gemm_avx2.s" 2>/dev/null
if grep -q "vfmadd231ps.*ymm" "$tmp/gemm_avx2.s" && ! grep -q zmm "$tmp/gemm_avx2.s"; then
  ok "avx2 gemm uses ymm only"; else bad "avx2 gemm uses ymm only"; fi
"$TILEC" compile examples/softmax.lua --target x86-avx512 --emit asm -o "$tmp/softmax.s" 2>/dev/null
if grep -qE "vmov[au]ps.*zmm.*\{%k" "$tmp/softmax.s"; then ok "softmax vectorised with masked zmm tails"; else bad "softmax vectorised with masked zmm tails"; fi
# pass_hoist finds the staging the decode GEMMs share between column blocks:
# fp8_gemm's A rows at 16 rows, transposed for the broadcast tiles and
# lifted for the dot tiles (the rows wanted are a run-time test at a dyn
# M; one block of rows per K step, keyed by the row block) and an MoE
# expert tile's rows (keyed through its schedule); the weight tiles stay
# in their blocks.
"$TILEC" compile kernels_src/fp8_gemm.lua --set BM=16 --set BN=16 --set BK=128 --target x86-avx2 --emit ir \
  -o "$tmp/hoist_fp8.ir" 2>/dev/null
"$TILEC" compile kernels_src/moe_expert_gemm.lua --set E=16 --set N=4096 --set K=2048 --set BM=4 --set BN=32 \
  --set BK=2048 --target x86-avx2 --emit ir -o "$tmp/hoist_moe.ir" 2>/dev/null
if grep -q "^  once by {" "$tmp/hoist_fp8.ir" && grep -q "^buf gemm_at0: shared f32\[4096, 16\]" "$tmp/hoist_fp8.ir" &&
   grep -q "^buf gemm_a1: shared f32\[512, 128\]" "$tmp/hoist_fp8.ir" &&
   grep -q "^  once by {" "$tmp/hoist_moe.ir"; then
  ok "decode GEMMs stage their A rows once per row block (hoist)"
else
  bad "decode GEMMs stage their A rows once per row block (hoist)" "$(grep -n "once\|^buf" "$tmp/hoist_fp8.ir" "$tmp/hoist_moe.ir")"
fi
if "$TILEC" compile examples/softmax.lua --dump-after all --emit ir -o /dev/null 2>&1 | grep -q "^kernel"; then
  ok "--dump-after all prints IR"; else bad "--dump-after all prints IR"; fi
if "$TILEC" --help | grep -q "usage" && "$TILEC" run --help | grep -q -- "--check"; then
  ok "help"; else bad "help"; fi

# TILEC_PERF=1: the kernels are linked with LLVM's perf listener, which
# writes a jitdump naming them (what `perf inject --jit` reads); the
# results are unchanged
mkdir -p "$tmp/jitdump"
if out=$(TILEC_PERF=1 JITDUMPDIR="$tmp/jitdump" "$TILEC" run examples/softmax.lua --check 2>&1) &&
   printf '%s' "$out" | grep -q OK &&
   dump=$(find "$tmp/jitdump" -name 'jit-*.dump' | head -1) && [ -n "$dump" ] &&
   grep -qa softmax "$dump"; then
  ok "TILEC_PERF=1 writes a jitdump with the kernel"
else
  bad "TILEC_PERF=1 writes a jitdump with the kernel" "$out"
fi

# a spec's choose picks what --set leaves out, and the timing line says so
out=$("$TILEC" run kernels_src/fp8_gemm.lua --set M=1 --set N=256 --set K=1024 --set BN=32 --repeat 2 2>&1)
if printf '%s\n' "$out" | grep -q "median of 2 runs: [0-9.]* ms (tiles from the spec's choose: BK=1024 BM=1)$"; then
  ok "the timing line names the tiles choose picked"
else
  bad "the timing line names the tiles choose picked" "$out"
fi

# the default target plans with this CPU's caches, and says which
out=$("$TILEC" targets 2>&1)
if printf '%s\n' "$out" | grep -Eq "^ +the default here: L1d [0-9]+ KiB, L2 [0-9]+ KiB \((this CPU's, from sysfs|the kind's: sysfs gave none); --target x86-(avx2|avx512) plans for 32 and 512\)$"; then
  ok "tilec targets names the default's cache sizes"
else
  bad "tilec targets names the default's cache sizes" "$out"
fi
# ... and what its cores do well (TargetInfo subnormal_assists, has_bf16_dot,
# split_512, one_stream)
if printf '%s\n' "$out" | grep -Eq "^ +subnormal operands (at full speed here|slow this CPU's FMAs); bf16 (dot products|widened to f32 for FMAs)(; 512-bit operations in two halves)?(; weights read best as one stream)?$"; then
  ok "tilec targets names the default's core traits"
else
  bad "tilec targets names the default's core traits" "$out"
fi

# a spec's `inputs` give an argument its values where no --in file does:
# tests/specs/sample_inputs.lua's ids[i] = 3i mod N, so y = x[ids] + 10 ids
# (|x| < 1) rounds to 10 ids; a file given with --in wins
ids_of() { python3 -c "import sys; sys.path.insert(0, 'tests/cli/support'); import npyio
print(' '.join(str(round(v / 10)) for v in npyio.read('$1')[1]))"; }
if "$TILEC" run tests/specs/sample_inputs.lua --set N=5 --check --out y="$tmp/sy.npy" >"$tmp/out" 2>&1 &&
   [ "$(ids_of "$tmp/sy.npy")" = "3 1 4 2 0" ]; then ok "run gives an argument the spec's inputs"
else bad "run gives an argument the spec's inputs" "$(ids_of "$tmp/sy.npy" 2>&1)" "$(cat "$tmp/out")"; fi
python3 tests/cli/support/npyio.py write "$tmp/ids.npy" "<i4" 5 4 4 4 4 4
if "$TILEC" run tests/specs/sample_inputs.lua --set N=5 --in ids="$tmp/ids.npy" --out y="$tmp/sy2.npy" >"$tmp/out" 2>&1 &&
   [ "$(ids_of "$tmp/sy2.npy")" = "4 4 4 4 4" ]; then ok "an --in file wins over the spec's inputs"
else bad "an --in file wins over the spec's inputs" "$(ids_of "$tmp/sy2.npy" 2>&1)" "$(cat "$tmp/out")"; fi
# N from x's shape, not --set: the inputs cannot be made, and tilec says so
python3 tests/cli/support/npyio.py write "$tmp/x5.npy" "<f4" 5 0 0 0 0 0
if "$TILEC" run tests/specs/sample_inputs.lua --in x="$tmp/x5.npy" >"$tmp/out" 2>&1 &&
   grep -qx "tilec: tests/specs/sample_inputs.lua: note: kernel sample_inputs takes its spec's inputs only with its dyn sizes given by --set (N); inputs not given with --in are random" "$tmp/out"
then ok "inputs waiting for a dyn size are noted"; else bad "inputs waiting for a dyn size are noted" "$(cat "$tmp/out")"; fi

finish
