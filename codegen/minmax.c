/* minmax.c — float maximum and minimum in fewer x86 instructions (CPU).
 *
 * tilec's max and min of floats are llvm.maximum / llvm.minimum: a NaN
 * operand gives NaN and -0 orders below +0.  LLVM 19 lowers each on
 * AVX-512 as six dependent instructions (the operands ordered by a sign
 * mask, vmaxps, a NaN test and a blend), and the horizontal step of a
 * vectorised reduction (llvm.vector.reduce.fmaximum) as four such levels
 * and then scalar ones through the integer unit — about ten cycles per
 * level on Zen 5.  topk's rounds are chains of such reductions: 2x slower
 * on x86-avx512 than its x86-avx2 build on the same core.
 *
 * vrangeps with imm8 = 5 (max) or 4 (min), the sign taken from the
 * comparison, orders -0 below +0 as these do (the other sign controls
 * take one operand's sign), but passes over a NaN operand; so after the
 * optimisation pipeline each call becomes
 *     r = vrangeps(a, b);   maximum(a, b) = isnan(a) | isnan(b) ? NaN : r
 * (the test and vrangeps side by side, then one blend), and a reduction a
 * shuffle tree of vrangeps with one NaN test of the whole vector beside
 * it, its result NaN if any lane was.
 *
 * Against a signed zero (ReLU's max(x, 0), on every x86 target): maxps(a,
 * b) is a > b ? a : b, which is b when either is NaN or both are zeros, so
 * with the zero first it passes a NaN x through and orders x against the
 * zero exactly except at x = -0 against +0 — maximum(x, -0) and
 * minimum(x, +0) are one maxps / minps, and maximum(x, +0) one maxps and
 * an add of +0 (which turns the -0 it returned for x = -0 into +0 and
 * changes nothing else), where LLVM spent a maxps, a NaN test and a blend
 * on AVX2 and four instructions on AVX-512.  Written as the compare and
 * select the x86 back end selects maxps / minps from. */
#include "codegen/cg.h"
#include "codegen/cgctx.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct Rewriter {
    LLVMModuleRef mod;
    LLVMBuilderRef b;
    LLVMTypeRef f32, i1, i8, i16, i32;
} Rewriter;

/* Lanes from .. from + n - 1 of v as a vector of `width` lanes (the rest
 * poison). */
static LLVMValueRef lanes(Rewriter *r, LLVMValueRef v, int from, int n, int width)
{
    LLVMValueRef idx[64];
    for (int i = 0; i < width; i++)
        idx[i] = i < n ? LLVMConstInt(r->i32, (unsigned long long)(from + i), 0) : LLVMGetPoison(r->i32);
    return LLVMBuildShuffleVector(r->b, v, LLVMGetPoison(LLVMTypeOf(v)), LLVMConstVector(idx, (unsigned)width), "");
}

/* The two n-lane vectors lo and hi as one of 2n lanes. */
static LLVMValueRef concat(Rewriter *r, LLVMValueRef lo, LLVMValueRef hi, int n)
{
    LLVMValueRef idx[64];
    for (int i = 0; i < 2 * n; i++)
        idx[i] = LLVMConstInt(r->i32, (unsigned long long)i, 0);
    return LLVMBuildShuffleVector(r->b, lo, hi, LLVMConstVector(idx, (unsigned)(2 * n)), "");
}

/* vrangeps(a, b) of two <n x float> (n a power of two up to 64), max or
 * min: n < 4 through the 128-bit form's low lanes, n > 16 in halves. */
static LLVMValueRef range(Rewriter *r, LLVMValueRef a, LLVMValueRef b, int n, bool max)
{
    if (n > 16) {
        int h = n / 2;
        LLVMValueRef lo = range(r, lanes(r, a, 0, h, h), lanes(r, b, 0, h, h), h, max);
        return concat(r, lo, range(r, lanes(r, a, h, h, h), lanes(r, b, h, h, h), h, max), h);
    }
    if (n < 4) {
        LLVMValueRef w = range(r, lanes(r, a, 0, n, 4), lanes(r, b, 0, n, 4), 4, max);
        return lanes(r, w, 0, n, n);
    }
    char name[48];
    snprintf(name, sizeof name, "llvm.x86.avx512.mask.range.ps.%d", n * 32);
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(r->mod, LLVMLookupIntrinsicID(name, strlen(name)), NULL, 0);
    LLVMTypeRef vt = LLVMVectorType(r->f32, (unsigned)n);
    LLVMValueRef args[6] = {a, b, LLVMConstInt(r->i32, max ? 5 : 4, 0), LLVMGetPoison(vt),
                            LLVMConstAllOnes(n == 16 ? r->i16 : r->i8), LLVMConstInt(r->i32, 4, 0)};
    return LLVMBuildCall2(r->b, LLVMGlobalGetValueType(fn), fn, args, n == 16 ? 6 : 5, "");
}

static LLVMValueRef nan_of(Rewriter *r, LLVMTypeRef ty)
{
    LLVMValueRef nan = LLVMConstReal(r->f32, NAN);
    if (LLVMGetTypeKind(ty) != LLVMVectorTypeKind)
        return nan;
    LLVMValueRef k[64];
    unsigned n = LLVMGetVectorSize(ty);
    for (unsigned i = 0; i < n; i++)
        k[i] = nan;
    return LLVMConstVector(k, n);
}

/* maximum(a, b) or minimum(a, b), a and b float or <n x float>. */
static LLVMValueRef exact_pair(Rewriter *r, LLVMValueRef a, LLVMValueRef b, bool max)
{
    LLVMTypeRef ty = LLVMTypeOf(a);
    bool vec = LLVMGetTypeKind(ty) == LLVMVectorTypeKind;
    LLVMValueRef m;
    if (vec) {
        m = range(r, a, b, (int)LLVMGetVectorSize(ty), max);
    } else {
        LLVMTypeRef v1 = LLVMVectorType(r->f32, 1);
        LLVMValueRef zero = LLVMConstInt(r->i32, 0, 0);
        LLVMValueRef va = LLVMBuildInsertElement(r->b, LLVMGetPoison(v1), a, zero, "");
        LLVMValueRef vb = LLVMBuildInsertElement(r->b, LLVMGetPoison(v1), b, zero, "");
        m = LLVMBuildExtractElement(r->b, range(r, va, vb, 1, max), zero, "");
    }
    LLVMValueRef unordered = LLVMBuildFCmp(r->b, LLVMRealUNO, a, b, "");
    return LLVMBuildSelect(r->b, unordered, nan_of(r, ty), m, "");
}

/* reduce.fmaximum(v) or reduce.fminimum(v) of a <n x float>. */
static LLVMValueRef exact_reduce(Rewriter *r, LLVMValueRef v, bool max)
{
    int n = (int)LLVMGetVectorSize(LLVMTypeOf(v));
    LLVMTypeRef bt = LLVMVectorType(r->i1, (unsigned)n);
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(r->mod, LLVMLookupIntrinsicID("llvm.vector.reduce.or", 21), &bt, 1);
    LLVMValueRef any[1] = {LLVMBuildFCmp(r->b, LLVMRealUNO, v, v, "")};
    LLVMValueRef any_nan = LLVMBuildCall2(r->b, LLVMGlobalGetValueType(fn), fn, any, 1, "");
    for (; n > 1; n /= 2)
        v = range(r, lanes(r, v, 0, n / 2, n / 2), lanes(r, v, n / 2, n / 2, n / 2), n / 2, max);
    LLVMValueRef m = LLVMBuildExtractElement(r->b, v, LLVMConstInt(r->i32, 0, 0), "");
    return LLVMBuildSelect(r->b, any_nan, LLVMConstReal(r->f32, NAN), m, "");
}

typedef enum { NOT_MINMAX, PAIR, REDUCE, BY_ZERO } Kind;

/* Whether v is a float constant (or a splat of one) neither NaN nor zero:
 * LLVM's own maximum / minimum against one is a single vmaxps / vminps
 * with the other operand second (which a NaN of it then passes through). */
static bool plain_constant(LLVMValueRef v)
{
    if (LLVMIsAConstantDataVector(v) || LLVMIsAConstantVector(v)) {
        unsigned n = LLVMGetVectorSize(LLVMTypeOf(v));
        for (unsigned i = 0; i < n; i++)
            if (!plain_constant(LLVMGetAggregateElement(v, i)))
                return false;
        return n > 0;
    }
    if (!LLVMIsAConstantFP(v))
        return false;
    LLVMBool lost;
    double x = LLVMConstRealGetDouble(v, &lost);
    return !isnan(x) && x != 0;
}

/* The sign of v where it is a float zero or a splat of one: 1 for +0, -1
 * for -0, 0 otherwise. */
static int zero_sign(LLVMValueRef v)
{
    if (LLVMIsAConstantDataVector(v) || LLVMIsAConstantVector(v)) {
        unsigned n = LLVMGetVectorSize(LLVMTypeOf(v));
        int sign = n ? zero_sign(LLVMGetAggregateElement(v, 0)) : 0;
        for (unsigned i = 1; i < n && sign; i++)
            if (zero_sign(LLVMGetAggregateElement(v, i)) != sign)
                return 0;
        return sign;
    }
    if (LLVMIsAConstantAggregateZero(v))
        return LLVMGetTypeKind(LLVMTypeOf(v)) == LLVMVectorTypeKind ? 1 : 0;
    if (!LLVMIsAConstantFP(v))
        return 0;
    LLVMBool lost;
    double x = LLVMConstRealGetDouble(v, &lost);
    return x != 0 || isnan(x) ? 0 : signbit(x) ? -1 : 1;
}

/* maximum or minimum of x and the signed zero z (zero_sign(z) = sign), or
 * NULL where that is minimum(x, -0), left to LLVM (the header says how). */
static LLVMValueRef by_zero(Rewriter *r, LLVMValueRef x, LLVMValueRef z, int sign, bool max)
{
    if (!max && sign < 0)
        return NULL;
    LLVMValueRef picked = LLVMBuildFCmp(r->b, max ? LLVMRealOGT : LLVMRealOLT, z, x, "");
    LLVMValueRef m = LLVMBuildSelect(r->b, picked, z, x, "");
    return max && sign > 0 ? LLVMBuildFAdd(r->b, m, LLVMConstNull(LLVMTypeOf(x)), "") : m;
}

/* Whether call `in` is one this pass replaces, and whether a maximum. */
static Kind minmax_kind(LLVMValueRef in, bool *max)
{
    LLVMValueRef callee = LLVMGetCalledValue(in);
    if (!callee || !LLVMIsAFunction(callee))
        return NOT_MINMAX;
    size_t len;
    const char *name = LLVMGetValueName2(callee, &len);
    LLVMTypeRef ty = LLVMTypeOf(in);
    LLVMTypeRef elem = LLVMGetTypeKind(ty) == LLVMVectorTypeKind ? LLVMGetElementType(ty) : ty;
    if (LLVMGetTypeKind(elem) != LLVMFloatTypeKind)
        return NOT_MINMAX;
    if (!strncmp(name, "llvm.maximum.", 13) || !strncmp(name, "llvm.minimum.", 13)) {
        *max = name[6] == 'a';
        if (zero_sign(LLVMGetOperand(in, 0)) || zero_sign(LLVMGetOperand(in, 1)))
            return BY_ZERO;
        unsigned n = LLVMGetTypeKind(ty) == LLVMVectorTypeKind ? LLVMGetVectorSize(ty) : 1;
        if (plain_constant(LLVMGetOperand(in, 0)) || plain_constant(LLVMGetOperand(in, 1)))
            return NOT_MINMAX;
        return n <= 64 && !(n & (n - 1)) ? PAIR : NOT_MINMAX;
    }
    if (!strncmp(name, "llvm.vector.reduce.fmaximum.", 28) || !strncmp(name, "llvm.vector.reduce.fminimum.", 28)) {
        *max = name[21] == 'a';
        LLVMTypeRef vt = LLVMTypeOf(LLVMGetOperand(in, 0));
        unsigned n = LLVMGetVectorSize(vt);
        return n <= 64 && !(n & (n - 1)) ? REDUCE : NOT_MINMAX;
    }
    return NOT_MINMAX;
}

/* The replacement of minmax call `in` of kind `kind` (NULL: none). */
static LLVMValueRef replacement(Rewriter *r, LLVMValueRef in, Kind kind, bool max, bool vrange)
{
    LLVMValueRef a = LLVMGetOperand(in, 0), b = LLVMGetOperand(in, 1);
    if (kind == BY_ZERO) {
        int sa = zero_sign(a);
        return sa ? by_zero(r, b, a, sa, max) : by_zero(r, a, b, zero_sign(b), max);
    }
    if (!vrange)
        return NULL;
    return kind == PAIR ? exact_pair(r, a, b, max) : exact_reduce(r, a, max);
}

void cg_minmax_rewrite(LLVMContextRef ctx, LLVMModuleRef mod, bool vrange)
{
    Rewriter r = {.mod = mod, .b = LLVMCreateBuilderInContext(ctx), .f32 = LLVMFloatTypeInContext(ctx),
                  .i1 = LLVMInt1TypeInContext(ctx), .i8 = LLVMInt8TypeInContext(ctx),
                  .i16 = LLVMInt16TypeInContext(ctx), .i32 = LLVMInt32TypeInContext(ctx)};
    for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f))
        for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(f); bb; bb = LLVMGetNextBasicBlock(bb)) {
            LLVMValueRef in = LLVMGetFirstInstruction(bb);
            while (in) {
                LLVMValueRef next = LLVMGetNextInstruction(in);
                bool max;
                Kind kind = LLVMIsACallInst(in) ? minmax_kind(in, &max) : NOT_MINMAX;
                if (kind != NOT_MINMAX) {
                    LLVMPositionBuilderBefore(r.b, in);
                    LLVMValueRef v = replacement(&r, in, kind, max, vrange);
                    if (v) {
                        LLVMReplaceAllUsesWith(in, v);
                        LLVMInstructionEraseFromParent(in);
                    }
                }
                in = next;
            }
        }
    LLVMDisposeBuilder(r.b);
}
