# Ahead-of-time: `tilec compile --emit obj` makes an object that a plain C
# program links and calls through the documented ABI, with the right answer.
TILEC=$1
source "$(dirname "$0")/support/lib.sh"

if "$TILEC" compile examples/gemm.lua --set M=37 --set N=50 --set K=70 --emit obj -o "$tmp/gemm.o" 2>"$tmp/err" &&
   nm "$tmp/gemm.o" | grep -q " T gemm$"; then
  ok "object exports the kernel symbol"
else
  bad "object exports the kernel symbol" "$(cat "$tmp/err")"
fi

cat > "$tmp/main.c" <<'C'
#include <math.h>
#include <stdint.h>
#include <stdio.h>
void gemm(void *const *args, const int64_t *params, int64_t begin, int64_t end);
enum { M = 37, N = 50, K = 70, BM = 192, BN = 64 }; /* the spec's default tiles */
static float A[M * K], B[N * K], C[M * N];
int main(void)
{
    for (int i = 0; i < M * K; i++) A[i] = (float)((i * 7) % 13) / 8 - 0.75f;
    for (int i = 0; i < N * K; i++) B[i] = (float)((i * 5) % 11) / 8 - 0.6f;
    void *args[] = {A, B, C};
    int64_t blocks = ((M + BM - 1) / BM) * ((N + BN - 1) / BN);
    gemm(args, NULL, 0, blocks);
    double worst = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += (double)A[i * K + k] * B[j * K + k];
            worst = fmax(worst, fabs(s - C[i * N + j]));
        }
    printf("max |diff| %g\n", worst);
    return worst < 1e-4 ? 0 : 1;
}
C
lib=$(dirname "$TILEC")/libtilec_ir.a
if cc -O1 "$tmp/main.c" "$tmp/gemm.o" "$lib" -lm -o "$tmp/main" 2>"$tmp/err" && "$tmp/main" >"$tmp/out" 2>&1; then
  ok "a C program links the object and gets C = A·Bᵀ"
else
  bad "a C program links the object and gets C = A·Bᵀ" "$(cat "$tmp/err" "$tmp/out" 2>/dev/null)"
fi

# Math is inline (codegen/vmath.c): an object whose kernel takes exp links
# with libm alone, and its rows sum to 1 against a double-precision softmax.
if "$TILEC" compile examples/softmax.lua --set M=9 --set N=300 --emit obj -o "$tmp/softmax.o" 2>"$tmp/err" &&
   ! nm "$tmp/softmax.o" | grep -q "_ZGV"; then
  ok "a softmax object calls no vector math library"
else
  bad "a softmax object calls no vector math library" "$(cat "$tmp/err"; nm "$tmp/softmax.o" 2>/dev/null | grep _ZGV)"
fi
cat > "$tmp/smax.c" <<'C'
#include <math.h>
#include <stdint.h>
#include <stdio.h>
void softmax(void *const *args, const int64_t *params, int64_t begin, int64_t end);
enum { M = 9, N = 300, BM = 8 }; /* the spec's default row block */
static float X[M * N], Y[M * N];
int main(void)
{
    for (int i = 0; i < M * N; i++) X[i] = (float)((i * 37) % 101) / 7 - 6.0f;
    void *args[] = {X, Y};
    softmax(args, NULL, 0, (M + BM - 1) / BM);
    double worst = 0;
    for (int i = 0; i < M; i++) {
        double mx = -INFINITY, s = 0;
        for (int j = 0; j < N; j++) mx = fmax(mx, X[i * N + j]);
        for (int j = 0; j < N; j++) s += exp((double)X[i * N + j] - mx);
        for (int j = 0; j < N; j++) {
            double want = exp((double)X[i * N + j] - mx) / s;
            worst = fmax(worst, fabs(Y[i * N + j] - want) / want);
        }
    }
    printf("max rel diff %g\n", worst);
    return worst < 1e-5 ? 0 : 1;
}
C
if cc -O1 "$tmp/smax.c" "$tmp/softmax.o" "$lib" -lm -o "$tmp/smax" 2>"$tmp/err" && "$tmp/smax" >"$tmp/out" 2>&1; then
  ok "a C program links the softmax object with libm alone and gets the softmax"
else
  bad "a C program links the softmax object with libm alone and gets the softmax" "$(cat "$tmp/err" "$tmp/out" 2>/dev/null)"
fi

# --raw keeps the argument's own encoding: bf16 as u2 bits.
npy write "$tmp/g.npy" "<f4" 1,2 1.0 -2.0
npy write "$tmp/u.npy" "<f2" 1,2 3.0 0.5
if "$TILEC" run examples/silu_mul.lua --set M=1 --set N=2 --set dtype=bf16 --in gate=$tmp/g.npy \
     --in up=$tmp/u.npy --out y=$tmp/y.npy --raw >/dev/null 2>"$tmp/err" &&
   python3 - "$tmp/y.npy" <<'PY'
import math, struct, sys
sys.path.insert(0, "tests/cli/support")
from npyio import read
shape, y = read(sys.argv[1])
def bf16(x):  # round to nearest even, as bits
    u = struct.unpack("<I", struct.pack("<f", x))[0]
    return ((u + 0x7fff + ((u >> 16) & 1)) >> 16) & 0xffff
want = [bf16(1.0 / (1 + math.exp(-1.0)) * 3.0), bf16(-2.0 / (1 + math.exp(2.0)) * 0.5)]
assert list(shape) == [1, 2], shape
assert all(abs(a - b) <= 1 for a, b in zip(y, want)), (y, want)
PY
then ok "--raw writes bf16 bits; f16 input converts"; else bad "--raw writes bf16 bits; f16 input converts" "$(cat "$tmp/err")"; fi

finish
