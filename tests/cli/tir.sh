# Printed IR as input: what `tilec ir` (Tile IR) and `compile --emit ir`
# (Loop IR) write is read back by run, compile and ir, and compiles to the
# same code as the spec it was printed from.
TILEC=$1
source "$(dirname "$0")/support/lib.sh"

# same_output NAME FILE_A FILE_B
same_output() {
  if cmp -s "$2" "$3"; then ok "$1"; else bad "$1" "$2 and $3 differ"; fi
}

gemm="examples/gemm.lua --set M=64 --set N=48 --set K=80"

# Tile IR: the passes run on it as on the spec's kernel
"$TILEC" ir $gemm > "$tmp/gemm.tir"
"$TILEC" compile $gemm --emit asm -o "$tmp/spec.s" &&
  "$TILEC" compile "$tmp/gemm.tir" --emit asm -o "$tmp/tir.s"
same_output "Tile IR compiles as its spec does" "$tmp/spec.s" "$tmp/tir.s"
"$TILEC" ir "$tmp/gemm.tir" > "$tmp/again.tir"
same_output "tilec ir prints a .tir back as it was" "$tmp/gemm.tir" "$tmp/again.tir"
if "$TILEC" run "$tmp/gemm.tir" --check > "$tmp/run.log" 2>&1 && grep -q "vs interpreter: OK" "$tmp/run.log"; then
  ok "Tile IR runs and checks"
else
  bad "Tile IR runs and checks" "$(cat "$tmp/run.log")"
fi

# Loop IR: already lowered, it goes to code without the passes
"$TILEC" compile examples/softmax.lua --emit ir -o "$tmp/softmax.tir"
"$TILEC" compile examples/softmax.lua --emit asm -o "$tmp/spec.s" &&
  "$TILEC" compile "$tmp/softmax.tir" --emit asm -o "$tmp/tir.s"
same_output "Loop IR compiles to the code it was lowered for" "$tmp/spec.s" "$tmp/tir.s"
if "$TILEC" run "$tmp/softmax.tir" --check > "$tmp/run.log" 2>&1 && grep -q "vs interpreter: OK" "$tmp/run.log"; then
  ok "Loop IR runs and checks"
else
  bad "Loop IR runs and checks" "$(cat "$tmp/run.log")"
fi

# --dump-after on Loop IR says why it prints no pass
if "$TILEC" compile "$tmp/softmax.tir" --dump-after all -o "$tmp/x.o" 2>&1 | grep -q "is Loop IR: its passes ran before it was printed"; then
  ok "--dump-after on Loop IR says no pass runs"; else bad "--dump-after on Loop IR says no pass runs"; fi

# GPU Loop IR (threads, shared memory): the same PTX, and the SIMT run
"$TILEC" compile examples/rmsnorm.lua --target sm_90a --emit ir -o "$tmp/rms_gpu.tir"
"$TILEC" compile examples/rmsnorm.lua --target sm_90a -o "$tmp/spec.ptx" &&
  "$TILEC" compile "$tmp/rms_gpu.tir" --target sm_90a -o "$tmp/tir.ptx"
same_output "GPU Loop IR gives the same PTX" "$tmp/spec.ptx" "$tmp/tir.ptx"
if "$TILEC" run "$tmp/rms_gpu.tir" --target sm_90a --simt --check > "$tmp/run.log" 2>&1 &&
   grep -q "SIMT interpreter vs interpreter: OK" "$tmp/run.log"; then
  ok "GPU Loop IR runs in the SIMT interpreter"
else
  bad "GPU Loop IR runs in the SIMT interpreter" "$(cat "$tmp/run.log")"
fi

# a dyn size stays dyn in print, and --set gives it at run time
"$TILEC" ir kernels_src/rmsnorm_quant.lua > "$tmp/rq.tir"
if grep -q "^param M dyn" "$tmp/rq.tir" &&
   "$TILEC" run "$tmp/rq.tir" --set M=5 --check > "$tmp/run.log" 2>&1 &&
   [ "$(grep -c 'vs interpreter: OK' "$tmp/run.log")" -eq 2 ]; then
  ok "a printed kernel's dyn size takes --set"
else
  bad "a printed kernel's dyn size takes --set" "$(cat "$tmp/run.log")"
fi

# a hand edit shows in the code: the softmax's last step, exp(x - m) / s,
# gets a factor of 2
sed 's|) / s\[\([a-z0-9_]*\)\]$|) / s[\1] * 2.0|' "$tmp/softmax.tir" > "$tmp/edited.tir"
if ! cmp -s "$tmp/softmax.tir" "$tmp/edited.tir" &&
   "$TILEC" run "$tmp/edited.tir" --out y="$tmp/y.npy" > /dev/null 2>&1 &&
   python3 - "$tmp/y.npy" <<'PY'
import sys
sys.path.insert(0, "tests/cli/support")
from npyio import read
shape, y = read(sys.argv[1])
rows = [sum(y[r * shape[1]:(r + 1) * shape[1]]) for r in range(shape[0])]
sys.exit(0 if rows and max(abs(s - 2) for s in rows) < 1e-3 else 1)
PY
then
  ok "an edited Loop IR runs as edited (rows sum to 2)"
else
  bad "an edited Loop IR runs as edited (rows sum to 2)" "$(diff "$tmp/softmax.tir" "$tmp/edited.tir" | head -5)"
fi

finish
