# Every kind of bad input to the tilec command gives one clear line on
# stderr, a non-zero exit, and leaves existing files alone.
TILEC=$1
source "$(dirname "$0")/support/lib.sh"

gemm=examples/gemm.lua

expect_error "unknown target" \
  "tilec: unknown target 'x86-sse' (known: x86-avx512, x86-avx2, sm_90a, sm_80)" -- \
  "$TILEC" run $gemm --target x86-sse
expect_error "unknown target (compile)" \
  "tilec: unknown target 'sm_99' (known: x86-avx512, x86-avx2, sm_90a, sm_80)" -- \
  "$TILEC" compile $gemm --target sm_99 -o "$tmp/x.o"
expect_error "unknown target (ir)" \
  "tilec: unknown target 'sm_99' (known: x86-avx512, x86-avx2, sm_90a, sm_80)" -- \
  "$TILEC" ir $gemm --target sm_99
expect_error "missing npy" \
  "tilec: $tmp/none.npy: cannot open: No such file or directory" -- \
  "$TILEC" run $gemm --in A=$tmp/none.npy

npy write "$tmp/short.npy" "<f4" 256,256 1 2 3 4
expect_error "truncated npy" \
  "tilec: $tmp/short.npy: truncated .npy file (fewer bytes than its header's shape needs)" -- \
  "$TILEC" run $gemm --in A=$tmp/short.npy

printf 'hello, not numpy' > "$tmp/text.npy"
expect_error "not an npy file" "tilec: $tmp/text.npy: not an .npy file (bad magic)" -- \
  "$TILEC" run $gemm --in A=$tmp/text.npy

npy write "$tmp/ints.npy" "<i4" 4,4 $(seq 16)
expect_error "wrong-dtype npy" \
  "tilec: $tmp/ints.npy: holds i32[4, 4] but argument A is f32[4, 4]" -- \
  "$TILEC" run $gemm --set M=4 --set K=4 --in A=$tmp/ints.npy

python3 - "$tmp/c8.npy" <<'PY'
import sys
h = "{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }"
h += " " * ((64 - (11 + len(h)) % 64) % 64) + "\n"
open(sys.argv[1], "wb").write(b"\x93NUMPY\x01\x00" + len(h).to_bytes(2, "little") + h.encode() + bytes(16))
PY
expect_error "unsupported npy dtype" \
  "tilec: $tmp/c8.npy: unsupported .npy dtype '<c8' (tilec reads f4, f2, f8, i4, i8, u1, i1, b1, u2; little-endian)" -- \
  "$TILEC" run $gemm --in A=$tmp/c8.npy

npy write "$tmp/a35.npy" "<f4" 3,5 $(seq 15)
expect_error "input shape mismatch" \
  "tilec: $tmp/a35.npy: is f32[3, 5] but argument A is f32[4, 4]: dim 0 is 3, expected 4" -- \
  "$TILEC" run $gemm --set M=4 --set K=4 --in A=$tmp/a35.npy
npy write "$tmp/a1.npy" "<f4" 16 $(seq 16)
expect_error "input rank mismatch" \
  "tilec: $tmp/a1.npy: is f32[16] but argument A is f32[4, 4] (rank 2, not 1)" -- \
  "$TILEC" run $gemm --set M=4 --set K=4 --in A=$tmp/a1.npy

expect_error "--in of an unknown argument" \
  "tilec: --in Q: kernel gemm has no argument Q" -- \
  "$TILEC" run $gemm --in Q=$tmp/a1.npy
expect_error "--out of an input" \
  "tilec: --out A: kernel gemm has no output argument A" -- \
  "$TILEC" run $gemm --out A=$tmp/o.npy

expect_error_like "--set unknown parameter" "^tilec: .*gemm\.lua.*QQ" -- \
  "$TILEC" run $gemm --set QQ=3
expect_error_like "--set outside the tune set" "^tilec: .*gemm\.lua.*dtype.*f64" -- \
  "$TILEC" run $gemm --set dtype=f64

cat > "$tmp/syntax.lua" <<'LUA'
local T = require "tile"
return T.kernel "broken" {
  params = { N = 64 ,
LUA
expect_error_like "Lua syntax error" "^tilec: $tmp/syntax\.lua:[0-9]+: " -- \
  "$TILEC" ir "$tmp/syntax.lua"

cat > "$tmp/unknown_op.lua" <<'LUA'
local T = require "tile"
local x = T.gemmm
LUA
expect_error_like "unknown T op" "^tilec: $tmp/unknown_op\.lua:2: .*T\.gemmm" -- \
  "$TILEC" ir "$tmp/unknown_op.lua"

expect_error "writing packed fp4 (x86)" \
  "tilec: tests/specs/fp4_store.lua:8: w is f4e2m1: packed fp4 is read-only (an input argument); the x86 back end does not write it yet" -- \
  "$TILEC" compile tests/specs/fp4_store.lua --target x86-avx2 -o "$tmp/fp4.o"
expect_error "writing packed fp4 (GPU)" \
  "tilec: tests/specs/fp4_store.lua:8: w is f4e2m1: packed fp4 is read-only (an input argument); the GPU back end does not write it yet" -- \
  "$TILEC" compile tests/specs/fp4_store.lua --target sm_90a -o "$tmp/fp4.ptx"

expect_error_like "fragment larger than the target allows" \
  "^tilec: .*gemm\.lua:[0-9]+: .*larger than x86-avx512 allows" -- \
  "$TILEC" compile $gemm --set BM=192 --set BN=256 --target x86-avx512 -o "$tmp/big.o"

expect_error "unknown command" "tilec: unknown command 'frobnicate' (run, compile, sweep, ir, targets) (see 'tilec --help')" -- \
  "$TILEC" frobnicate
expect_error "unknown option" "tilec: unknown option --fast (see 'tilec --help')" -- \
  "$TILEC" run $gemm --fast
expect_error "bad --emit" "tilec: unknown --emit kind 'exe' (ir, llvm, asm, obj or ptx) (see 'tilec --help')" -- \
  "$TILEC" compile $gemm --emit exe -o "$tmp/x"
expect_error "--repeat 0" "tilec: --repeat needs a positive integer (see 'tilec --help')" -- \
  "$TILEC" run $gemm --repeat 0
expect_error "--rotate 0" "tilec: --rotate needs a positive integer (see 'tilec --help')" -- \
  "$TILEC" run $gemm --rotate 0
expect_error "--rotate too many" "tilec: --rotate takes at most 64 copies (see 'tilec --help')" -- \
  "$TILEC" run $gemm --rotate 65
expect_error "--stream-bytes negative" "tilec: --stream-bytes needs a non-negative integer (see 'tilec --help')" -- \
  "$TILEC" run $gemm --stream-bytes -1
expect_error "--stream-bytes on a GPU" \
  "tilec: --stream-bytes is for CPU targets (sm_90a has no non-temporal stores to choose)" -- \
  "$TILEC" compile $gemm --stream-bytes 0 --target sm_90a -o /dev/null
expect_error "--rotate on a GPU" "tilec: $gemm: --rotate is for CPU targets: sm_90a keeps its inputs in device memory" -- \
  "$TILEC" run $gemm --rotate 2 --target sm_90a

expect_error "a spec's choose picks outside its candidates" \
  "tilec: tests/specs/choose_bad.lua:3: kernel choose_bad: choose picked BN = 7, not one of its tune{} values {16, 32}" -- \
  "$TILEC" run tests/specs/choose_bad.lua --set how=value
expect_error "a spec's choose picks a variant" \
  "tilec: tests/specs/choose_bad.lua:3: kernel choose_bad: choose picked how, a variant{} (what the kernel computes), not a tune{} parameter" -- \
  "$TILEC" run tests/specs/choose_bad.lua --set how=variant
expect_error "a spec's choose fails in Lua" \
  "tilec: tests/specs/choose_bad.lua:9: attempt to perform arithmetic on a nil value (field 'missing')" -- \
  "$TILEC" ir tests/specs/choose_bad.lua --set how=lua

expect_error "rmsnorm width not whole steps" "tilec: kernels_src/rmsnorm.lua:18: rmsnorm: D = 100 is not a multiple of 128" -- \
  "$TILEC" run kernels_src/rmsnorm.lua --set M=2 --set D=100
expect_error "compose: consumer reads outside the producer's block" \
  "tilec: tests/specs/compose/bad_rows.lua:2: T.compose addone_colsum: colsum's block reads x dim 0 [bx*16, bx*16 + 16) but addone's block writes y dim 0 [bx*8, bx*8 + 8) (hint: the consumer's block must read only what the producer's block writes: match their tiles)" -- \
  "$TILEC" run tests/specs/compose/bad_rows.lua --set M=4
expect_error "compose: an error in a part names the part" \
  "tilec: kernels_src/rmsnorm_fp8.lua:10: T.compose rmsnorm_fp8: kernels_src/rmsnorm.lua:18: rmsnorm: D = 100 is not a multiple of 128" -- \
  "$TILEC" run kernels_src/rmsnorm_fp8.lua --set M=2 --set D=100
# a bf16 A in e2m1 order is for 512-bit vdpbf16ps tiles only
expect_error "bf16 a_decode_order for AVX2" \
  "tilec: tests/specs/e2m1_pairs.tir:17: micro_gemm a_decode_order of a bf16 a needs 512-bit vdpbf16ps, which x86-avx2 has not" -- \
  "$TILEC" compile tests/specs/e2m1_pairs.tir --target x86-avx2 -o "$tmp/pairs.ll"
expect_error "fp8_gemm tile of another size" \
  "tilec: kernels_src/fp8_gemm.lua:24: --set BN=48: not one of its tune{} values {128, 64, 32, 16, 8, 4}" -- \
  "$TILEC" run kernels_src/fp8_gemm.lua --set M=2 --set BN=48
# the K step of the scaled decode form (BK) must divide K, in whole scale blocks
expect_error "fp8_gemm step longer than K" \
  "tilec: kernels_src/fp8_gemm.lua:29: fp8_gemm: BK = 1024 does not divide K = 512" -- \
  "$TILEC" run kernels_src/fp8_gemm.lua --set M=2 --set K=512 --set BK=1024
expect_error "moe_expert_gemm step not dividing K" \
  "tilec: kernels_src/moe_expert_gemm.lua:47: moe: BK = 256 is not a multiple of 128 dividing K = 384" -- \
  "$TILEC" run kernels_src/moe_expert_gemm.lua --set R=2 --set K=384 --set BK=256
# the benches' options: one usage line (bench_gpu checks them before
# looking for a device)
bench=$(dirname "$TILEC")/bench
for b in "bench_gpu [--quick | --ops]" "bench_ops [--threads N] [--norm-only]"; do
  exe=$bench/${b%% *}
  if [ -x "$exe" ]; then
    expect_error "${b%% *} with an unknown option" "usage: $b" -- "$exe" --bogus
  fi
done
# the device tooling's scripts: a usage line, and a missing build named
expect_error "bundle without a folder" "usage: scripts/bundle DIR [BUILD]" -- bash scripts/bundle
expect_error "bundle of a build that is not there" \
  "scripts/bundle: $tmp/nobuild/tilec not found: build first (scripts/setup or scripts/test)" -- \
  bash scripts/bundle "$tmp/b" "$tmp/nobuild"
# printed IR (.tir) as input: errors name the file and line
expect_error "missing .tir" "tilec: cannot open $tmp/none.tir: No such file or directory" -- \
  "$TILEC" compile "$tmp/none.tir" -o "$tmp/x.o"
"$TILEC" compile examples/softmax.lua --emit ir -o "$tmp/softmax.tir"
sed '12s/$/ +/' "$tmp/softmax.tir" > "$tmp/syntax.tir"
expect_error "syntax error in a .tir" "tilec: $tmp/syntax.tir:12: expected '{' near '+'" -- \
  "$TILEC" compile "$tmp/syntax.tir" -o "$tmp/x.o"
sed '18s/ m\[/ mm[/' "$tmp/softmax.tir" > "$tmp/unknown.tir"
expect_error "unknown buffer in a .tir" "tilec: $tmp/unknown.tir:18: unknown buffer 'mm'" -- \
  "$TILEC" run "$tmp/unknown.tir"
# a micro_gemm flag under its old name (IR printed before 2026-12-03)
sed 's/a_decode_order/a_e2m1_order/' tests/passes/lower_e4m3_words.out.tir > "$tmp/old_flag.tir"
expect_error "a .tir with a_e2m1_order" \
  "tilec: $tmp/old_flag.tir:19: a_e2m1_order is now a_decode_order (IR printed before 2026-12-03): rename it" -- \
  "$TILEC" compile "$tmp/old_flag.tir" --target x86-avx512 -o "$tmp/x.o"
expect_error ".tir lowered for a CPU, run on a GPU target" \
  "tilec: $tmp/softmax.tir:1: kernel softmax is Loop IR lowered for a CPU (it has no threads), not for target sm_90a (hint: give the --target it was printed for)" -- \
  "$TILEC" compile "$tmp/softmax.tir" --target sm_90a -o "$tmp/x.ptx"
expect_error "--set of a printed kernel's fixed parameter" \
  "tilec: $tmp/softmax.tir:1: --set BM: kernel softmax was printed with this parameter fixed (only dyn sizes take --set) (hint: print it again from its spec with the value set (tilec ir SPEC.lua --set ...))" -- \
  "$TILEC" run "$tmp/softmax.tir" --set BM=4
"$TILEC" ir kernels_src/rmsnorm_quant.lua > "$tmp/rq.tir"
expect_error "--set of a dyn size that is not a count" \
  "tilec: $tmp/rq.tir:1: --set M=-3: a dyn size takes a count" -- \
  "$TILEC" run "$tmp/rq.tir" --set M=-3
expect_error "sweep of a .tir" \
  "tilec: $tmp/softmax.tir is printed IR, its tile sizes fixed: sweep and --tuned take a SPEC.lua (see 'tilec --help')" -- \
  "$TILEC" sweep "$tmp/softmax.tir"
# a .tir that parses but breaks the IR's rules: the verifier's line (the
# message outlives the kernel, freed before it is printed)
printf 'kernel bad level tile\narg x: f32[4] in\narg y: f32[4] out\ngrid (bx) < [1]\n{\n  for i: parallel < 4 {\n    y[i] = x[i]\n  }\n  x[0] = 1.0\n}\n' > "$tmp/verify.tir"
expect_error "a .tir the verifier refuses" "tilec: $tmp/verify.tir:9: verify: write to input argument x" -- \
  "$TILEC" compile "$tmp/verify.tir" -o "$tmp/x.o"
printf 'precious' > "$tmp/keep.o"
"$TILEC" compile "$tmp/syntax.tir" -o "$tmp/keep.o" 2>/dev/null
if [ "$(cat "$tmp/keep.o")" = precious ]; then ok "failed .tir compile keeps existing output"; else bad "failed .tir compile keeps existing output" "keep.o was changed"; fi
# A failed run leaves an existing output file as it was.
printf 'precious' > "$tmp/out.npy"
"$TILEC" run $gemm --in A=$tmp/short.npy --out C=$tmp/out.npy 2>/dev/null
if [ "$(cat "$tmp/out.npy")" = precious ]; then ok "failed run keeps existing output"; else bad "failed run keeps existing output" "out.npy was changed"; fi

finish
