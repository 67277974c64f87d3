/* vmath.c — e^x, 2^x and ln x in plain f32 arithmetic for the CPU.
 *
 * The loop vectoriser widens these like any other arithmetic: 16 lanes on
 * AVX-512 with a masked tail, no call.  Through libmvec (LLVM 19 knows
 * only its 8-lane AVX2 entry points, unmasked) a loop with exp ran 8 lanes
 * wide with a scalar tail, and each call clobbered every vector register
 * (moe_gemm_swiglu's SwiGLU at v4-mini's K 512: 15% of its samples in
 * _ZGVdN8v_expf and the scalar __expf_fma).
 *
 *   n = roundeven(x·log2 e)   (2^x: roundeven(x))
 *   r = x - n·ln 2            (two FMAs: ln 2 as f32 plus the rest)
 *   e^r, |r| <= ln2 / 2       (Taylor to r^7/7!: truncation below 1e-8)
 *   e^x = e^r · 2^n1 · 2^n2   (n1 = n >> 1, n2 = n - n1: each a normal
 *                              power of two, so the last product rounds
 *                              once into the subnormals or to inf)
 * x is first clamped to where e^x is 0 or inf anyway; a NaN stays NaN.
 * Against a double-precision exp: 0.93 ulps at most over 20 million
 * points of [-104, 89] (a C model of these steps; with the Taylor series
 * to r^6 only, 2.7); test_kernels' cpu_exp_within_one_and_a_half_ulps. */
#include "codegen/cg.h"
#include "codegen/cgctx.h"

#include <math.h>

static LLVMValueRef f(Cg *c, double v) { return LLVMConstReal(c->f32, v); }

static LLVMValueRef fma_of(Cg *c, LLVMValueRef a, LLVMValueRef b, LLVMValueRef d)
{
    LLVMValueRef args[3] = {a, b, d};
    return cg_intrinsic(c, "llvm.fma", &c->f32, 1, args, 3);
}

/* x clamped to [lo, hi] (a NaN passes: the compares are false). */
static LLVMValueRef clamp(Cg *c, LLVMValueRef x, double lo, double hi)
{
    LLVMBuilderRef B = c->b;
    x = LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOLT, x, f(c, lo), ""), f(c, lo), x, "");
    return LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOGT, x, f(c, hi), ""), f(c, hi), x, "");
}

/* 2^k for an i32 k in [-126, 127]: k + 127 in the exponent field. */
static LLVMValueRef pow2(Cg *c, LLVMValueRef k)
{
    LLVMBuilderRef B = c->b;
    LLVMValueRef bits = LLVMBuildShl(B, LLVMBuildAdd(B, k, LLVMConstInt(c->i32, 127, 0), ""),
                                     LLVMConstInt(c->i32, 23, 0), "");
    return LLVMBuildBitCast(B, bits, c->f32, "");
}

LLVMValueRef cg_exp(Cg *c, LLVMValueRef x, bool base2)
{
    LLVMBuilderRef B = c->b;
    /* beyond these the result is 0 (below half the least subnormal) or
     * inf; inside them n stays within [-152, 128], n1 and n2 within
     * [-76, 64] */
    LLVMValueRef xc = base2 ? clamp(c, x, -152.0, 129.0) : clamp(c, x, -105.0, 89.0);
    LLVMValueRef t = base2 ? xc : LLVMBuildFMul(B, xc, f(c, M_LOG2E), "");
    LLVMValueRef n = cg_intrinsic(c, "llvm.roundeven", &c->f32, 1, &t, 1);
    LLVMValueRef r;
    if (base2) { /* x - n is exact (|x - n| <= 1/2, n an integer below 2^8) */
        LLVMValueRef d = LLVMBuildFSub(B, xc, n, "");
        r = LLVMBuildFMul(B, d, f(c, M_LN2), "");
    } else {
        double hi = (float)M_LN2, lo = M_LN2 - hi;
        r = fma_of(c, n, f(c, -hi), xc);
        r = fma_of(c, n, f(c, -lo), r);
    }
    /* e^r by Horner from the r^7 term down */
    static const double inv_fact[] = {1.0 / 5040, 1.0 / 720, 1.0 / 120, 1.0 / 24, 1.0 / 6, 0.5, 1.0, 1.0};
    LLVMValueRef p = f(c, inv_fact[0]);
    for (int i = 1; i < 8; i++)
        p = fma_of(c, p, r, f(c, inv_fact[i]));
    LLVMValueRef k = LLVMBuildFPToSI(B, n, c->i32, "");
    LLVMValueRef k1 = LLVMBuildAShr(B, k, LLVMConstInt(c->i32, 1, 0), "");
    LLVMValueRef k2 = LLVMBuildSub(B, k, k1, "");
    LLVMValueRef y = LLVMBuildFMul(B, LLVMBuildFMul(B, p, pow2(c, k1), ""), pow2(c, k2), "");
    /* a NaN's n converted to garbage: the NaN itself (quieted) instead */
    LLVMValueRef nan = LLVMBuildFCmp(B, LLVMRealUNO, x, x, "");
    return LLVMBuildSelect(B, nan, LLVMBuildFAdd(B, x, x, ""), y, "");
}

/* ln x, as fdlibm's logf arranges it: x = 2^e·m with m in [sqrt(1/2),
 * sqrt(2)), f = m - 1 (exact), s = f / (2 + f), and
 *   ln(1 + f) = f - s·(f - R),  R = 2s²/3 + 2s⁴/5 + 2s⁶/7 + 2s⁸/9
 * (ln(1 + f) = 2s + s·R and f = 2s + s·f), so the exact f carries the
 * result and the rounded terms only its small correction; e·ln 2 in two
 * parts (the high one with trailing zeros, so e·hi is exact).  A subnormal
 * x is scaled by 2^23 first; 0 gives -inf, a negative x NaN, inf inf.
 * 0.91 ulps at most over every 97th positive float (a C model). */
LLVMValueRef cg_log(Cg *c, LLVMValueRef x)
{
    LLVMBuilderRef B = c->b;
#define I32(v) LLVMConstInt(c->i32, (unsigned long long)(v), 0)
    LLVMValueRef tiny = LLVMBuildFCmp(B, LLVMRealOLT, x, f(c, 0x1p-126), "");
    LLVMValueRef xs = LLVMBuildSelect(B, tiny, LLVMBuildFMul(B, x, f(c, 0x1p23), ""), x, "");
    LLVMValueRef bits = LLVMBuildBitCast(B, xs, c->i32, "");
    LLVMValueRef t = LLVMBuildSub(B, bits, I32(0x3f3504f3), ""); /* sqrt(1/2)'s bits */
    LLVMValueRef e = LLVMBuildAShr(B, t, I32(23), "");
    LLVMValueRef m = LLVMBuildBitCast(B, LLVMBuildSub(B, bits, LLVMBuildShl(B, e, I32(23), ""), ""), c->f32, "");
    LLVMValueRef ef = LLVMBuildSIToFP(B, LLVMBuildSub(B, e, LLVMBuildSelect(B, tiny, I32(23), I32(0), ""), ""),
                                      c->f32, "");
    LLVMValueRef fm = LLVMBuildFSub(B, m, f(c, 1.0), "");
    LLVMValueRef s = LLVMBuildFDiv(B, fm, LLVMBuildFAdd(B, fm, f(c, 2.0), ""), "");
    LLVMValueRef z = LLVMBuildFMul(B, s, s, "");
    LLVMValueRef r = f(c, 2.0 / 9);
    for (int k = 7; k >= 3; k -= 2)
        r = fma_of(c, r, z, f(c, 2.0 / k));
    r = LLVMBuildFMul(B, r, z, "");
    /* f - s·(f - R), plus e·ln2's low part, then its high part */
    double hi = 0x1.62e3p-1, lo = M_LN2 - hi;
    LLVMValueRef corr = fma_of(c, ef, f(c, lo), LLVMBuildFNeg(B, LLVMBuildFMul(B, s, LLVMBuildFSub(B, fm, r, ""), ""), ""));
    LLVMValueRef y = fma_of(c, ef, f(c, hi), LLVMBuildFAdd(B, fm, corr, ""));
    /* x = inf: inf; x = ±0: -inf; x < 0 or NaN: NaN */
    y = LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOEQ, x, f(c, INFINITY), ""), x, y, "");
    y = LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOEQ, x, f(c, 0.0), ""), f(c, -INFINITY), y, "");
    return LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealULT, x, f(c, 0.0), ""), f(c, NAN), y, "");
#undef I32
}
