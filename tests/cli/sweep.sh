# tilec sweep: every point of a tune space timed on the same inputs and
# compared with the first; the results store and run/compile --tuned.
TILEC=$1
source "$(dirname "$0")/support/lib.sh"

gemm=examples/gemm.lua
sizes=(--set M=70 --set N=40 --set K=64 --set dtype=f32 --set stages=2)
small=("${sizes[@]}" --set BN=32 --threads 1 --repeat 2)
store="$tmp/tuned.tsv"

# 2 x 2 points, the first also against the interpreter, into a new store
out=$("$TILEC" sweep $gemm "${small[@]}" --over BM=24,48 --over BK=32,64 --check --store "$store" 2>&1); rc=$?
rows=$(printf '%s\n' "$out" | grep -cE '^ *(32|64) +(24|48) +[0-9.]+$')
best=$(printf '%s\n' "$out" | sed -n 's/^best: --set \(BK=[0-9]*\) --set \(BM=[0-9]*\) .*/\1,\2/p')
if [ $rc -eq 0 ] && [ "$rows" -eq 4 ] && [ -n "$best" ]; then ok "sweep times 4 points"; else
  bad "sweep times 4 points" "rc=$rc rows=$rows best=$best" "$out"; fi
records=$(grep -vc '^#' "$store")
if [ "$records" -eq 4 ] &&
   grep -qP "^gemm\tx86-avx\S+\t1\tBN=32,K=64,M=70,N=40,dtype=f32,stages=2\tBK=32,BM=24\t[0-9.e-]+$" "$store"; then
  ok "the store holds the 4 points"; else bad "the store holds the 4 points" "$(cat "$store")"; fi

# the point tilec run would take unswept (gemm.lua's choose: 96 rows for
# M = 70) is reported against the best
out=$("$TILEC" sweep $gemm "${small[@]}" --set BK=64 --over BM=48,96 2>&1); rc=$?
if [ $rc -eq 0 ] && printf '%s\n' "$out" | grep -qE "^default \(the spec's choose\): [0-9.]+ ms, [0-9.]+x the best$"; then
  ok "sweep reports the spec's default against the best"; else
  bad "sweep reports the spec's default against the best" "rc=$rc" "$out"; fi

# --tuned takes the fastest point's values for the unset tune parameters
err=$("$TILEC" run $gemm "${small[@]}" --tuned "$store" --check 2>&1 >/dev/null); rc=$?
if [ $rc -eq 0 ] && printf '%s' "$err" | grep -q "tuned to $best "; then ok "run --tuned takes the best point ($best)"; else
  bad "run --tuned takes the best point ($best)" "rc=$rc" "$err"; fi
"$TILEC" compile $gemm "${sizes[@]}" --set BN=32 --tuned "$store" --emit ir -o "$tmp/tuned.ir" 2>/dev/null
bm=${best#*BM=}
if grep -q "^param BM tune $bm " "$tmp/tuned.ir"; then ok "compile --tuned builds the best point"; else
  bad "compile --tuned builds the best point" "$(grep '^param BM' "$tmp/tuned.ir")"; fi
# ... but a value given with --set stands
"$TILEC" compile $gemm "${sizes[@]}" --set BN=32 --set BM=96 --tuned "$store" --emit ir -o "$tmp/set.ir" 2>/dev/null
if grep -q "^param BM tune 96 " "$tmp/set.ir"; then ok "--set wins over --tuned"; else bad "--set wins over --tuned"; fi
# other sizes: no record, the spec's defaults, a note on stderr
err=$("$TILEC" run $gemm --set M=71 --set N=40 --set K=64 --tuned "$store" 2>&1 >/dev/null); rc=$?
if [ $rc -eq 0 ] && printf '%s' "$err" | grep -q "no record of gemm"; then ok "--tuned without a record keeps the defaults"; else
  bad "--tuned without a record keeps the defaults" "rc=$rc" "$err"; fi

# a value that is a prefix of the recorded one (M=7 against M=70) is another size
err=$("$TILEC" run $gemm --set M=7 --set N=40 --set K=64 --set dtype=f32 --set stages=2 --set BN=32 --tuned "$store" 2>&1 >/dev/null)
if printf '%s' "$err" | grep -q "no record of gemm"; then ok "--tuned matches whole values"; else
  bad "--tuned matches whole values" "$err"; fi

# a sweep at the spec's default sizes keys them too: another M finds nothing
"$TILEC" sweep $gemm --set dtype=f32 --set stages=2 --set BN=32 --over BM=24 --over BK=32 --threads 1 --repeat 1 \
  --store "$tmp/defaults.tsv" >/dev/null 2>&1
if grep -qP "\tBN=32,K=256,M=256,N=256,dtype=f32,stages=2\t" "$tmp/defaults.tsv"; then ok "defaults are part of the key"; else
  bad "defaults are part of the key" "$(cat "$tmp/defaults.tsv")"; fi
err=$("$TILEC" run $gemm --set M=512 --set dtype=f32 --set stages=2 --set BN=32 --tuned "$tmp/defaults.tsv" 2>&1 >/dev/null)
if printf '%s' "$err" | grep -q "no record of gemm"; then ok "another size finds no record"; else
  bad "another size finds no record" "$err"; fi

# a second sweep adds its points; the first's stay
"$TILEC" sweep $gemm "${small[@]}" --over BM=96 --over BK=32 --store "$store" >/dev/null 2>&1
if [ "$(grep -vc '^#' "$store")" -eq 5 ]; then ok "a second sweep appends"; else bad "a second sweep appends" "$(cat "$store")"; fi

# a variant{} (gemm's dtype: what it computes) is no axis: unset, it keeps
# its value and keys the records, so --tuned at another dtype finds none
# (and never picks one: two dtypes are two problems, not two speeds)
out=$("$TILEC" sweep $gemm --set M=70 --set N=40 --set K=64 --set stages=2 --set BN=32 --over BM=24 --over BK=32 \
  --threads 1 --repeat 1 --store "$tmp/variant.tsv" 2>&1); rc=$?
if [ $rc -eq 0 ] && printf '%s\n' "$out" | grep -qE "^BK +BM +median_ms$" &&
   grep -qP "\tBN=32,K=64,M=70,N=40,dtype=f32,stages=2\tBK=32,BM=24\t" "$tmp/variant.tsv"; then
  ok "a variant is not swept, and keys the records"; else bad "a variant is not swept, and keys the records" "rc=$rc" "$out"; fi
err=$("$TILEC" run $gemm --set M=70 --set N=40 --set K=64 --set stages=2 --set BN=32 --set dtype=bf16 \
  --tuned "$tmp/variant.tsv" 2>&1 >/dev/null)
if printf '%s' "$err" | grep -q "no record of gemm"; then ok "--tuned at another variant finds no record"; else
  bad "--tuned at another variant finds no record" "$err"; fi
expect_error "--over a variant" \
  "tilec: $gemm: --over dtype: dtype is a variant{} of kernel gemm (what it computes), not a tune parameter (hint: sweep each with --set dtype=VALUE)" -- \
  "$TILEC" sweep $gemm --over dtype=f32,bf16

# a point whose outputs differ from the first's fails the sweep
out=$("$TILEC" sweep tests/specs/sweep_wrong.lua --threads 1 --repeat 1 2>&1); rc=$?
if [ $rc -eq 1 ] && printf '%s' "$out" | grep -q "WRONG: output y differs from the first point's by 1 "; then
  ok "a point with other outputs fails the sweep"; else bad "a point with other outputs fails the sweep" "rc=$rc" "$out"; fi
# a point the compiler refuses is reported and skipped
out=$("$TILEC" sweep $gemm "${sizes[@]}" --set BK=32 --over BM=24,512 --over BN=32,256 --threads 1 --repeat 1 2>&1); rc=$?
if [ $rc -eq 0 ] && printf '%s' "$out" | grep -q "larger than x86-avx[0-9]* allows"; then ok "refused points are skipped"; else
  bad "refused points are skipped" "rc=$rc" "$out"; fi

# points compiled 3 at a time (a batch of 3, then 1; the refused point in
# the first): the same rows in the same order as one at a time, the same
# points stored
for j in 1 3; do
  "$TILEC" sweep $gemm "${sizes[@]}" --set BK=32 --over BM=24,512 --over BN=256,32 --threads 1 --repeat 1 --jobs $j \
    --store "$tmp/jobs$j.tsv" > "$tmp/jobs$j.out" 2>&1; echo "rc=$?" >> "$tmp/jobs$j.out"
  sed -E -i 's/ [0-9]+\.[0-9]{3}( ms)?/ T/g; s/compiled [0-9]+ at a time/compiled J at a time/' "$tmp/jobs$j.out"
  cut -f1-5 "$tmp/jobs$j.tsv" > "$tmp/jobs$j.keys"
done
if grep -q "^rc=0$" "$tmp/jobs3.out" && grep -q "larger than x86-avx[0-9]* allows" "$tmp/jobs3.out" &&
   grep -qE "^4 point\(s\) compiled in [0-9.]+ s \(3 at a time\), run and compared in [0-9.]+ s$" "$tmp/jobs3.out" &&
   [ "$(grep -vc '^#' "$tmp/jobs3.keys")" -eq 3 ] && cmp -s "$tmp/jobs3.keys" "$tmp/jobs1.keys" &&
   diff <(grep -Ev '^(best|stored|default|[0-9]+ point)' "$tmp/jobs1.out") <(grep -Ev '^(best|stored|default|[0-9]+ point)' "$tmp/jobs3.out") >/dev/null; then
  ok "points compiled 3 at a time sweep as one at a time"; else
  bad "points compiled 3 at a time sweep as one at a time" "$(diff "$tmp/jobs1.out" "$tmp/jobs3.out")"; fi
# the points copy one set of inputs, made once — but a point whose input
# is another shape (a tune parameter in it) makes its own
out=$("$TILEC" sweep tests/specs/sweep_shapes.lua --threads 1 --repeat 1 2>&1); rc=$?
if [ $rc -eq 0 ] && [ "$(printf '%s\n' "$out" | grep -cE '^ *(8|24) +[0-9.]+$')" -eq 2 ]; then
  ok "a point whose input is another shape makes its own"; else
  bad "a point whose input is another shape makes its own" "rc=$rc" "$out"; fi
expect_error "--jobs 0" "tilec: --jobs needs a positive integer (see 'tilec --help')" -- \
  "$TILEC" sweep $gemm --jobs 0
expect_error "--jobs belongs to sweep" "tilec: --over, --store and --jobs belong to 'tilec sweep', not 'run' (see 'tilec --help')" -- \
  "$TILEC" run $gemm --jobs 2

# a point that cannot run says why in its row, as tilec run would (where, what, the hint)
out=$("$TILEC" sweep kernels_src/moe_count.lua --threads 1 --repeat 1 2>&1); rc=$?
if [ $rc -eq 1 ] && printf '%s\n' "$out" | grep -qF -- "-  (kernels_src/moe_count.lua:14: argument idx: dyn dimension M has no value (hint: give an input whose shape uses it, or --set M=N))" &&
   printf '%s\n' "$out" | grep -qF "tilec: kernels_src/moe_count.lua: no point of kernel moe_count's sweep compiled and ran"; then
  ok "a point that cannot run says why, with the hint"; else bad "a point that cannot run says why, with the hint" "rc=$rc" "$out"; fi

# bad input: one line, non-zero exit, the store untouched
cp "$store" "$tmp/before.tsv"
printf 'gemm\tx86-avx2\tone\tM=1\tBM=4\t1.0\n' >> "$tmp/bad.tsv"
expect_error "corrupt store (run)" \
  "tilec: $tmp/bad.tsv:1: not a results record (want kernel, target, threads, fixed, point, median_ms, separated by tabs)" -- \
  "$TILEC" run $gemm --tuned "$tmp/bad.tsv"
cp "$tmp/bad.tsv" "$tmp/bad_before.tsv"
"$TILEC" sweep $gemm "${small[@]}" --over BM=24 --over BK=32 --store "$tmp/bad.tsv" >/dev/null 2>&1; rc=$?
if [ $rc -ne 0 ] && cmp -s "$tmp/bad.tsv" "$tmp/bad_before.tsv"; then ok "a corrupt store is refused, not rewritten"; else
  bad "a corrupt store is refused, not rewritten" "rc=$rc"; fi
# a store that cannot be written is refused before the first point runs
expect_error "unwritable store" "tilec: $tmp/no/dir.tsv: cannot write the results store: No such file or directory" -- \
  "$TILEC" sweep $gemm "${small[@]}" --over BM=24 --over BK=32 --store "$tmp/no/dir.tsv"
if [ -z "$("$TILEC" sweep $gemm "${small[@]}" --over BM=24 --over BK=32 --store "$tmp/no/dir.tsv" 2>/dev/null)" ]; then
  ok "... and no point is run"; else bad "... and no point is run"; fi
expect_error "missing store" "tilec: $tmp/none.tsv: cannot read the results store: No such file or directory" -- \
  "$TILEC" run $gemm --tuned "$tmp/none.tsv"
expect_error "--over a size" "tilec: $gemm: --over M: kernel gemm has no tune parameter M" -- \
  "$TILEC" sweep $gemm --over M=3
expect_error "--over and --set" "tilec: $gemm: --over BM: BM is also fixed with --set" -- \
  "$TILEC" sweep $gemm --set BM=24 --over BM=24,48
expect_error "--over a non-candidate" "tilec: $gemm: --over BM=7: not one of its tune{} values {192, 96, 48, 24, 128, 64, 16, 4, 1, 256, 512}" -- \
  "$TILEC" sweep $gemm "${small[@]}" --set BK=32 --over BM=7
expect_error "--store with a dyn size not set" \
  "tilec: examples/dyn_scale.lua: --store: dyn size M is not --set, so the store could not key it (hint: give it with --set M=VALUE)" -- \
  "$TILEC" sweep examples/dyn_scale.lua --store "$tmp/dyn.tsv"
expect_error "space too large" \
  "tilec: $gemm: kernel gemm's tune space has more than 512 points (hint: fix some parameters with --set NAME=VALUE, or narrow them with --over NAME=V1,V2)" -- \
  "$TILEC" sweep $gemm
expect_error "--store belongs to sweep" "tilec: --over, --store and --jobs belong to 'tilec sweep', not 'run' (see 'tilec --help')" -- \
  "$TILEC" run $gemm --store "$tmp/x.tsv"
expect_error "--tuned belongs to run and compile" \
  "tilec: --tuned belongs to 'tilec run' and 'tilec compile', not 'sweep' (see 'tilec --help')" -- \
  "$TILEC" sweep $gemm --tuned "$store"
if cmp -s "$store" "$tmp/before.tsv"; then ok "bad input left the store alone"; else bad "bad input left the store alone"; fi

# the MoE expert GEMM's counts and offsets come from its spec's inputs
# (moe_fp4.sample_schedule): disjoint row ranges, so every point computes
# the same rows (random ones overlapped, blocks raced on shared rows and
# the points' outputs differed)
out=$("$TILEC" sweep kernels_src/moe_expert_gemm.lua --set R=16 --set E=4 --set N=256 --set K=256 --set BK=256 \
      --set BN=64 --over BM=16,4 --threads 2 --repeat 2 2>&1); rc=$?
if [ $rc -eq 0 ] && ! printf '%s\n' "$out" | grep -q WRONG; then ok "an MoE GEMM sweeps on its spec's schedule"; else
  bad "an MoE GEMM sweeps on its spec's schedule" "rc=$rc" "$out"; fi

finish
