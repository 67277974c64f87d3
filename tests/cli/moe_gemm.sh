#!/usr/bin/env bash
# The MoE expert GEMMs through tilec run: routing from .npy files (counts
# and offsets, one expert empty), the JIT against the interpreter and the
# SIMT lowering; the weights as the checkpoint's packed bytes; a scale
# tensor of the wrong shape and a K the scales do not divide are one-line
# errors.
#   bash tests/cli/moe_gemm.sh build/tilec
TILEC=$1
source "$(dirname "$0")/support/lib.sh"
cd "$(dirname "$0")/../.."

check() { # NAME COMMAND...: must exit 0 and print only OK checks
  local name=$1; shift
  local out
  if out=$("$@" 2>&1) && printf '%s' "$out" | grep -q "OK" && ! printf '%s' "$out" | grep -q MISMATCH; then
    ok "$name"
  else
    bad "$name" "$out"
  fi
}

npy write "$tmp/cnt.npy" "<i4" 4 3 0 5 1
npy write "$tmp/off.npy" "<i4" 4 0 3 3 8
route=(--in cnt=$tmp/cnt.npy --in off=$tmp/off.npy --set R=9 --set E=4 --set K=256)
check "moe_expert_gemm --check" "$TILEC" run kernels_src/moe_expert_gemm.lua "${route[@]}" --set N=256 --check
check "moe_gemm_swiglu --check" "$TILEC" run kernels_src/moe_gemm_swiglu.lua "${route[@]}" --set I=128 --check
# moe_expert_gemm's row-guarded copy-out runs as a vector loop streamed past
# the cache (every size: --stream-bytes 0), an expert's rows starting anywhere
check "moe_expert_gemm streamed --check" "$TILEC" run kernels_src/moe_expert_gemm.lua "${route[@]}" --set N=256 \
  --stream-bytes 0 --check
check "moe_gemm_swiglu --simt --check" "$TILEC" run kernels_src/moe_gemm_swiglu.lua "${route[@]}" --set I=128 \
  --set BM=4 --target sm_90a --simt --check

python3 -c "
import sys; sys.path.insert(0, 'tests/cli/support'); import npyio
npyio.write('$tmp/sw.npy', '|u1', [4, 256, 4], [127] * 4096)
npyio.write('$tmp/w.npy', '|u1', [4, 256, 128], [(i * 37 + 11) & 255 for i in range(4 * 256 * 128)])"
# the checkpoint's packed bytes (int8 [E, N, K/2]) for the f4e2m1 [E, N, K] weights
check "moe_expert_gemm --in w=packed u1 bytes" "$TILEC" run kernels_src/moe_expert_gemm.lua "${route[@]}" --set N=256 \
  --in w=$tmp/w.npy --check
expect_error "weight scales of the wrong shape" \
  "tilec: $tmp/sw.npy: is u8[4, 256, 4] but argument sw is e8m0[4, 256, 8]: dim 2 is 4, expected 8" -- \
  "$TILEC" run kernels_src/moe_expert_gemm.lua "${route[@]}" --set N=256 --in sw=$tmp/sw.npy
expect_error "K the activation scales do not divide" \
  "tilec: kernels_src/moe_expert_gemm.lua:29: moe_expert_gemm: K = 160 is not a multiple of the activation scale block (128)" -- \
  "$TILEC" run kernels_src/moe_expert_gemm.lua --set K=160
finish
