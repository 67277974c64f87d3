/* llvm.c — Loop IR → LLVM IR.
 *
 * One function per kernel (ABI in codegen.h).  Values: integers are i64,
 * booleans i1, every float dtype is an f32 value (loads widen, stores round —
 * the value semantics of ir.h).  LOOP_VECTOR loops become plain loops that
 * carry `llvm.loop.vectorize.*` metadata (width, masked tail), so LLVM's
 * vectoriser emits the zmm code; MICRO_GEMM is emitted directly as a
 * register-blocked vector kernel (micro.c). */
#include "codegen/cg.h"
#include "codegen/cgctx.h"
#include "runtime/timing.h"

#include <llvm-c/Analysis.h>
#include <llvm-c/DebugInfo.h>
#include <llvm-c/Support.h>
#include <llvm-c/Target.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ----------------------------------------------------------- basic types */

LLVMValueRef cg_i64(Cg *c, int64_t v) { return LLVMConstInt(c->i64, (unsigned long long)v, 1); }

LLVMAttributeRef cg_enum_attr(Cg *c, const char *name, uint64_t value)
{
    return LLVMCreateEnumAttribute(c->ctx, LLVMGetEnumAttributeKindForName(name, strlen(name)), value);
}

LLVMValueRef cg_intrinsic(Cg *c, const char *name, LLVMTypeRef *tys, int ntys, LLVMValueRef *args,
                          int nargs)
{
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(c->mod, id, tys, (size_t)ntys);
    LLVMTypeRef fty = LLVMIntrinsicGetType(c->ctx, id, tys, (size_t)ntys);
    return LLVMBuildCall2(c->b, fty, fn, args, (unsigned)nargs, "");
}

/* A helper of ir/dtype.c called from generated code: float f(i8) or i8 f(float). */
static LLVMValueRef call_helper(Cg *c, const char *name, LLVMTypeRef ret, LLVMTypeRef arg,
                                LLVMValueRef v)
{
    LLVMTypeRef fty = LLVMFunctionType(ret, &arg, 1, 0);
    LLVMValueRef fn = LLVMGetNamedFunction(c->mod, name);
    if (!fn)
        fn = LLVMAddFunction(c->mod, name, fty);
    return LLVMBuildCall2(c->b, fty, fn, &v, 1, "");
}

LLVMTypeRef cg_storage_type(Cg *c, DType t)
{
    switch (t) {
    case DT_BOOL: case DT_I8: case DT_U8: case DT_F8E4M3: case DT_F8E5M2: case DT_E8M0: return c->i8;
    case DT_I32: return c->i32;
    case DT_I64: return c->i64;
    case DT_F16: return LLVMHalfTypeInContext(c->ctx);
    case DT_BF16: return c->i16;
    case DT_F32: return c->f32;
    default: return c->i8;
    }
}

/* f32 → bf16 bits, round to nearest even, NaN kept (quieted), exactly as
 * dt_f32_to_bf16.  Plain integer ops: the loop vectoriser widens them. */
LLVMValueRef cg_f32_to_bf16(Cg *c, LLVMValueRef f)
{
    LLVMValueRef u = LLVMBuildBitCast(c->b, f, c->i32, "");
    LLVMValueRef k16 = LLVMConstInt(c->i32, 16, 0);
    LLVMValueRef lsb = LLVMBuildAnd(c->b, LLVMBuildLShr(c->b, u, k16, ""), LLVMConstInt(c->i32, 1, 0), "");
    LLVMValueRef r = LLVMBuildAdd(c->b, u, LLVMBuildAdd(c->b, LLVMConstInt(c->i32, 0x7fff, 0), lsb, ""), "");
    LLVMValueRef quiet = LLVMBuildOr(c->b, u, LLVMConstInt(c->i32, 0x400000, 0), "");
    LLVMValueRef isnan = LLVMBuildFCmp(c->b, LLVMRealUNO, f, f, "");
    r = LLVMBuildSelect(c->b, isnan, quiet, r, "");
    return LLVMBuildTrunc(c->b, LLVMBuildLShr(c->b, r, k16, ""), c->i16, "");
}

/* bf16 bits (i16 or a vector of them) → f32. */
LLVMValueRef cg_bf16_to_f32(Cg *c, LLVMValueRef h)
{
    bool vec = LLVMGetTypeKind(LLVMTypeOf(h)) == LLVMVectorTypeKind;
    unsigned n = vec ? LLVMGetVectorSize(LLVMTypeOf(h)) : 1;
    LLVMTypeRef i32 = vec ? LLVMVectorType(c->i32, n) : c->i32;
    LLVMTypeRef f32 = vec ? LLVMVectorType(c->f32, n) : c->f32;
    LLVMValueRef w = LLVMBuildZExt(c->b, h, i32, "");
    LLVMValueRef sh;
    if (vec) {
        LLVMValueRef s[64];
        for (unsigned i = 0; i < n; i++)
            s[i] = LLVMConstInt(c->i32, 16, 0);
        sh = LLVMConstVector(s, n);
    } else {
        sh = LLVMConstInt(c->i32, 16, 0);
    }
    return LLVMBuildBitCast(c->b, LLVMBuildShl(c->b, w, sh, ""), f32, "");
}

/* e4m3 byte → f32 through f16, which holds every e4m3 value and which
 * F16C (and PTX's cvt) widens in one instruction: s.eeee.mmm sign-extended
 * to 16 bits and shifted left by 7 puts e and m in f16's fields (subnormals
 * included) and s in bit 15, with a copy of s in bit 14 that is cleared;
 * the f16 is the value times 2^-8 (bias 15, not 7), so the product by 256
 * after widening is exact.  S.1111.111, NaN, is the one code whose e and m
 * carry into bit 14 when 1 is added at m's lowest bit: that bit, or-ed in,
 * gives an f16 NaN.  dt_e4m3_to_f32's values, in 8 AVX2 instructions per
 * 8 elements (store included) where the select form took 19. */
static LLVMValueRef e4m3_to_f32(Cg *c, LLVMValueRef byte)
{
    LLVMBuilderRef B = c->b;
    LLVMValueRef h = LLVMBuildShl(B, LLVMBuildSExt(B, byte, c->i16, ""), LLVMConstInt(c->i16, 7, 0), "");
    h = LLVMBuildAnd(B, h, LLVMConstInt(c->i16, 0xbfff, 0), "");
    LLVMValueRef nan = LLVMBuildAnd(B, LLVMBuildAdd(B, h, LLVMConstInt(c->i16, 0x80, 0), ""),
                                    LLVMConstInt(c->i16, 0x4000, 0), "");
    h = LLVMBuildOr(B, h, nan, "");
    LLVMValueRef f = LLVMBuildFPExt(B, LLVMBuildBitCast(B, h, LLVMHalfTypeInContext(c->ctx), ""), c->f32, "");
    return LLVMBuildFMul(B, f, LLVMConstReal(c->f32, 256.0), "");
}

/* e2m1 nibble s.ee.m → f32 through f16, as e4m3_to_f32: the nibble
 * shifted to the top of 16 bits and arithmetically back by 3 puts e in
 * f16's two lowest exponent bits and m in its top mantissa bit, and s in
 * bit 15 with copies in bits 12-14, which are cleared.  That f16 is the
 * value times 2^-14 (bias 15, where e2m1's is 1; e = 0 is f16's subnormal
 * m·2^-15, e2m1's m/2), so the product by 2^14 after widening is exact.
 * Six vector operations per 8 (F16C's conversion and the product
 * included) where the select form took 12: moe_expert_gemm at v4-mini
 * sizes, 64 rows per expert (register tiles over a dequantising copy),
 * one thread, 3.82-3.84 -> 3.62-3.65 ms. */
static LLVMValueRef e2m1_to_f32(Cg *c, LLVMValueRef nibble)
{
    LLVMBuilderRef B = c->b;
    LLVMValueRef h = LLVMBuildShl(B, LLVMBuildZExt(B, nibble, c->i16, ""), LLVMConstInt(c->i16, 12, 0), "");
    h = LLVMBuildAnd(B, LLVMBuildAShr(B, h, LLVMConstInt(c->i16, 3, 0), ""), LLVMConstInt(c->i16, 0x8e00, 0), "");
    LLVMValueRef f = LLVMBuildFPExt(B, LLVMBuildBitCast(B, h, LLVMHalfTypeInContext(c->ctx), ""), c->f32, "");
    return LLVMBuildFMul(B, f, LLVMConstReal(c->f32, 16384.0), "");
}

/* An fp8 format as the narrowing below needs it. */
typedef struct Fp8 {
    int mbits, bias;       /* mantissa bits, exponent bias */
    unsigned max, nan;     /* the largest finite code (saturation), the NaN code */
} Fp8;

static const Fp8 E4M3 = {3, 7, 0x7e, 0x7f}, E5M2 = {2, 15, 0x7b, 0x7e};

/* The value a normal code would have if every exponent field were finite
 * (the NaN codes included: 480 for e4m3's 0x7f, 98304 for e5m2's 0x7e). */
static double fp8_code_value(const Fp8 *F, unsigned code)
{
    unsigned e = code >> F->mbits, m = code & ((1u << F->mbits) - 1);
    return ldexp((double)(m | 1u << F->mbits), (int)e - F->bias - F->mbits);
}

/* f32 → fp8 byte on the CPU, the same function as fp8_bits below in fewer
 * vector instructions (on AVX2 12 ALU ops and 4 to pack, against 16 and 3).
 *
 * Saturate first, on the float: t = min(|x|, max) rounds to max's code as
 * any |x| >= max must (inf included); a NaN passes that min (a compare with
 * NaN is false) and the second one sends it to the value whose code is the
 * NaN code.  Then one float add rounds: with e the exponent of t, clamped
 * below at the smallest normal's emin = 1 - bias, M = 2^(e + 23 - mbits)
 * has an ulp of 2^(e - mbits), the format's step at t (normal or
 * subnormal), and t <= 2^(mbits+1) ulps, so t + M is M + k ulps with
 * k = t/step rounded to nearest even by the add itself (the default
 * rounding mode; with DAZ an f32 subnormal t would read as 0, which is its
 * code anyway, and S is never subnormal).  The code is
 * (e - emin)·2^mbits + k (a normal's k carries its implicit 1 into the
 * exponent field, a subnormal has e = emin and code k, and k = 2^(mbits+1)
 * is the next binade's first code), and S >> (23 - mbits) is
 * (e + 150 - mbits)·2^mbits, so code = k + (S >> (23 - mbits)) - C with
 * C = (150 - mbits + emin)·2^mbits.
 * Only the code's low 8 bits are stored, so the sum is taken mod 256: the
 * mantissa field of S stands in for k (the bits above it only add
 * multiples of 2^(23 - mbits)), and -C mod 256 rides in M's mantissa
 * (an even number of ulps below 2^23 - 2^(mbits+1): M + d stays in M's
 * binade and the add still rounds k to even), which leaves
 *   code = (S + (S >> (23 - mbits))) | sign   (mod 256),
 * an or as the code is below 0x80 (one vpternlogd with the sign's and). */
static LLVMValueRef fp8_magic(Cg *c, LLVMValueRef f, const Fp8 *F, bool saturate)
{
    LLVMBuilderRef B = c->b;
#define I32(v) LLVMConstInt(c->i32, (unsigned long long)(v), 0)
#define F32(v) LLVMConstReal(c->f32, (v))
    int shift = 23 - F->mbits, emin = 1 - F->bias;
    unsigned d = (0u - ((unsigned)(150 - F->mbits + emin) << F->mbits)) & 0xff;
    LLVMValueRef u = LLVMBuildBitCast(B, f, c->i32, "");
    LLVMValueRef a = LLVMBuildBitCast(B, LLVMBuildAnd(B, u, I32(0x7fffffff), ""), c->f32, "");
    LLVMValueRef max = F32(fp8_code_value(F, F->max)), nan = F32(fp8_code_value(F, F->nan));
    LLVMValueRef t = saturate ? LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOLT, max, a, ""), max, a, "") : a;
    t = LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOLT, t, nan, ""), t, nan, "");
    LLVMValueRef e = LLVMBuildAnd(B, LLVMBuildBitCast(B, t, c->i32, ""), I32(0x7f800000), "");
    LLVMValueRef args[2] = {e, I32((unsigned)(127 + emin) << 23)};
    e = cg_intrinsic(c, "llvm.smax", &c->i32, 1, args, 2);
    LLVMValueRef m = LLVMBuildAdd(B, e, I32(((unsigned)shift << 23) + d), "");
    LLVMValueRef s = LLVMBuildBitCast(B, LLVMBuildFAdd(B, t, LLVMBuildBitCast(B, m, c->f32, ""), ""), c->i32, "");
    LLVMValueRef sign = LLVMBuildAnd(B, LLVMBuildLShr(B, u, I32(24), ""), I32(0x80), "");
    LLVMValueRef code = LLVMBuildOr(B, LLVMBuildAdd(B, s, LLVMBuildLShr(B, s, I32(shift), ""), ""), sign, "");
    return LLVMBuildTrunc(B, code, c->i8, "");
#undef F32
#undef I32
}

/* f32 → fp8 byte, round to nearest even with saturation to the largest
 * finite value (NaN stays NaN), in integer ops that vectorise and need no
 * helper (the GPU has none) — dt_f32_to_e4m3/e5m2's definition: normals
 * keep mbits mantissa bits (rounded on the f32 bits, exponent rebiased
 * 127 → bias), subnormals are roundeven(|x| · 2^(bias - 1 + mbits)).
 * The GPU keeps this form (its PTX unchanged); the CPU takes fp8_magic. */
static LLVMValueRef fp8_bits(Cg *c, LLVMValueRef f, const Fp8 *F)
{
    LLVMBuilderRef B = c->b;
#define I32(v) LLVMConstInt(c->i32, (unsigned long long)(v), 0)
    int shift = 23 - F->mbits;
    LLVMValueRef u = LLVMBuildBitCast(B, f, c->i32, "");
    LLVMValueRef sign = LLVMBuildAnd(B, LLVMBuildLShr(B, u, I32(24), ""), I32(0x80), "");
    LLVMValueRef a = LLVMBuildAnd(B, u, I32(0x7fffffff), "");
    /* Normals: round to nearest even on the kept bits and rebias in one
     * add (the rebias moved before the shift; it cannot borrow, as a is at
     * least the smallest normal where this result is used). */
    LLVMValueRef lsb = LLVMBuildAnd(B, LLVMBuildLShr(B, a, I32(shift), ""), I32(1), "");
    unsigned rebias = (unsigned)(127 - F->bias) << 23;
    LLVMValueRef rounded = LLVMBuildAdd(B, a, LLVMBuildAdd(B, I32((1u << (shift - 1)) - 1 - rebias), lsb, ""), "");
    LLVMValueRef normal = LLVMBuildLShr(B, rounded, I32(shift), "");
    /* Subnormals: |x| + 2^(24 - bias - mbits) has a last mantissa bit worth
     * the format's subnormal step, so the add itself rounds |x| to nearest
     * even in those steps, and the mantissa bits it leaves are the code
     * (8 for e4m3 when it rounds up to the smallest normal, which is that
     * normal's code) — two instructions where a round and a conversion took
     * seven. */
    LLVMValueRef magic = LLVMConstReal(c->f32, ldexp(1.0, 24 - F->bias - F->mbits));
    LLVMValueRef sum = LLVMBuildFAdd(B, LLVMBuildBitCast(B, a, c->f32, ""), magic, "");
    LLVMValueRef sub = LLVMBuildSub(B, LLVMBuildBitCast(B, sum, c->i32, ""), LLVMBuildBitCast(B, magic, c->i32, ""), "");
    LLVMValueRef min_normal = I32((unsigned)(128 - F->bias) << 23); /* 2^(1 - bias) */
    /* The range tests compare floats: one instruction each on AVX2, where
     * an unsigned integer compare takes three (a NaN is not below the
     * smallest normal, and is caught by the last test). */
    LLVMValueRef tiny = LLVMBuildFCmp(B, LLVMRealOLT, LLVMBuildBitCast(B, a, c->f32, ""),
                                      LLVMBuildBitCast(B, min_normal, c->f32, ""), "");
    LLVMValueRef code = LLVMBuildSelect(B, tiny, sub, normal, "");
    LLVMValueRef big = LLVMBuildICmp(B, LLVMIntUGT, code, I32(F->max), ""); /* past the largest, inf */
    code = LLVMBuildSelect(B, big, I32(F->max), code, "");
    code = LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealUNO, f, f, ""), I32(F->nan), code, "");
    return LLVMBuildTrunc(B, LLVMBuildOr(B, code, sign, ""), c->i8, "");
#undef I32
}

static LLVMValueRef f32_to_fp8(Cg *c, LLVMValueRef f, const Fp8 *F)
{
    return c->t->gpu_sm ? fp8_bits(c, f, F) : fp8_magic(c, f, F, true);
}

/* x, where e clamps it between constants: min(max(x, lo), hi) or
 * max(min(x, hi), lo) (quant.lua's T.clamp(x, -qmax, qmax) before an fp8
 * store); NULL otherwise. */
static const Expr *clamp_of(const Expr *e, double *lo, double *hi)
{
    if (e->op != EX_MIN && e->op != EX_MAX)
        return NULL;
    ExprOp inner = e->op == EX_MIN ? EX_MAX : EX_MIN;
    for (int i = 0; i < 2; i++) {
        const Expr *k = e->args[i], *x = e->args[1 - i];
        if (k->op != EX_CONST || !dt_is_float(k->dtype) || x->op != inner)
            continue;
        for (int j = 0; j < 2; j++) {
            const Expr *k2 = x->args[j];
            if (k2->op == EX_CONST && dt_is_float(k2->dtype)) {
                *hi = e->op == EX_MIN ? k->imm.f : k2->imm.f;
                *lo = e->op == EX_MIN ? k2->imm.f : k->imm.f;
                return x->args[1 - j];
            }
        }
    }
    return NULL;
}

/* A stored element (of dtype t) widened to its value type. */
LLVMValueRef cg_widen(Cg *c, DType t, LLVMValueRef raw)
{
    switch (t) {
    case DT_BOOL: return LLVMBuildICmp(c->b, LLVMIntNE, raw, LLVMConstInt(c->i8, 0, 0), "");
    case DT_I8: case DT_I32: return LLVMBuildSExt(c->b, raw, c->i64, "");
    case DT_U8: return LLVMBuildZExt(c->b, raw, c->i64, "");
    case DT_I64: case DT_F32: return raw;
    case DT_F16: return LLVMBuildFPExt(c->b, raw, c->f32, "");
    case DT_BF16: return cg_bf16_to_f32(c, raw);
    case DT_F8E4M3: return e4m3_to_f32(c, raw);
    case DT_F8E5M2: /* e5m2 is the top byte of an f16 */
        return LLVMBuildFPExt(c->b,
                              LLVMBuildBitCast(c->b, LLVMBuildShl(c->b, LLVMBuildZExt(c->b, raw, c->i16, ""),
                                                                  LLVMConstInt(c->i16, 8, 0), ""),
                                               LLVMHalfTypeInContext(c->ctx), ""),
                              c->f32, "");
    case DT_E8M0: { /* 2^(b-127): b in the exponent field; 0 is the subnormal 2^-127, 255 NaN */
        LLVMValueRef b = LLVMBuildZExt(c->b, raw, c->i32, "");
        LLVMValueRef bits = LLVMBuildShl(c->b, b, LLVMConstInt(c->i32, 23, 0), "");
        bits = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntEQ, b, LLVMConstInt(c->i32, 0, 0), ""),
                               LLVMConstInt(c->i32, 0x400000, 0), bits, "");
        bits = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntEQ, b, LLVMConstInt(c->i32, 255, 0), ""),
                               LLVMConstInt(c->i32, 0x7fc00000, 0), bits, "");
        return LLVMBuildBitCast(c->b, bits, c->f32, "");
    }
    case DT_F4E2M1: return e2m1_to_f32(c, raw);
    default: return raw;
    }
}

/* A value converted to the value type of dtype t (f32, i64 or i1). */
LLVMValueRef cg_convert(Cg *c, LLVMValueRef v, DType from, DType to)
{
    bool ff = dt_is_float(from), tf = dt_is_float(to);
    if (ff && tf)
        return v;
    if (!ff && tf) {
        if (from == DT_BOOL)
            return LLVMBuildUIToFP(c->b, v, c->f32, "");
        /* an i8/u8/i32 value (a load or a cast: integer arithmetic yields
         * i64) lies in i32's range, and as i32 a vector converts in one
         * instruction (vcvtdq2ps); i64 lanes convert one at a time on AVX2 */
        if (dt_bits(from) <= 32)
            return LLVMBuildSIToFP(c->b, LLVMBuildTrunc(c->b, v, c->i32, ""), c->f32, "");
        return LLVMBuildSIToFP(c->b, v, c->f32, "");
    }
    if (to == DT_BOOL) {
        if (from == DT_BOOL)
            return v;
        return ff ? LLVMBuildFCmp(c->b, LLVMRealUNE, v, LLVMConstReal(c->f32, 0), "")
                  : LLVMBuildICmp(c->b, LLVMIntNE, v, cg_i64(c, 0), "");
    }
    if (ff) { /* saturating, NaN → 0: dt_store's clamp-then-truncate */
        LLVMTypeRef tys[2] = {c->i64, c->f32};
        return cg_intrinsic(c, "llvm.fptosi.sat", tys, 2, &v, 1);
    }
    return from == DT_BOOL ? LLVMBuildZExt(c->b, v, c->i64, "") : v;
}

/* A value (already of to's value type) narrowed to t's storage. */
static LLVMValueRef f32_to_e8m0(Cg *c, LLVMValueRef f);

LLVMValueRef cg_narrow(Cg *c, DType t, LLVMValueRef v)
{
    switch (t) {
    case DT_BOOL: return LLVMBuildZExt(c->b, v, c->i8, "");
    case DT_I8: case DT_U8: case DT_I32: {
        /* clamp to the range, then truncate (dt_store) */
        int64_t lo = t == DT_I8 ? -128 : t == DT_U8 ? 0 : INT32_MIN;
        int64_t hi = t == DT_I8 ? 127 : t == DT_U8 ? 255 : INT32_MAX;
        LLVMValueRef x = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, v, cg_i64(c, lo), ""), cg_i64(c, lo), v, "");
        x = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSGT, x, cg_i64(c, hi), ""), cg_i64(c, hi), x, "");
        return LLVMBuildTrunc(c->b, x, cg_storage_type(c, t), "");
    }
    case DT_F16: return LLVMBuildFPTrunc(c->b, v, LLVMHalfTypeInContext(c->ctx), "");
    case DT_BF16: return cg_f32_to_bf16(c, v);
    case DT_F8E4M3: return f32_to_fp8(c, v, &E4M3);
    case DT_F8E5M2: return f32_to_fp8(c, v, &E5M2);
    case DT_E8M0: return f32_to_e8m0(c, v);
    case DT_F4E2M1: return call_helper(c, "dt_f32_to_e2m1", c->i8, c->f32, v); /* one nibble */
    default: return v;
    }
}

/* The smallest power of two >= f as a UE8M0 byte, in integer ops (no call,
 * so GPUs and vector loops have it) — dt_f32_to_e8m0's definition: 0 → 0
 * (2^-127), negative or NaN → 255, +inf and above 2^127 → 254; a subnormal
 * rounds up to 2^-126 (byte 1) once it is above 2^-127. */
static LLVMValueRef f32_to_e8m0(Cg *c, LLVMValueRef f)
{
    LLVMBuilderRef B = c->b;
    LLVMValueRef bits = LLVMBuildBitCast(B, f, c->i32, "");
    LLVMValueRef e = LLVMBuildAnd(B, LLVMBuildLShr(B, bits, LLVMConstInt(c->i32, 23, 0), ""),
                                  LLVMConstInt(c->i32, 255, 0), "");
    LLVMValueRef m = LLVMBuildAnd(B, bits, LLVMConstInt(c->i32, 0x7fffff, 0), "");
    LLVMValueRef up = LLVMBuildZExt(B, LLVMBuildICmp(B, LLVMIntNE, m, LLVMConstInt(c->i32, 0, 0), ""), c->i32, "");
    LLVMValueRef x = LLVMBuildAdd(B, e, up, "");
    LLVMValueRef sub = LLVMBuildZExt(B, LLVMBuildICmp(B, LLVMIntUGT, m, LLVMConstInt(c->i32, 0x400000, 0), ""), c->i32, "");
    x = LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntEQ, e, LLVMConstInt(c->i32, 0, 0), ""), sub, x, "");
    x = LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntUGT, x, LLVMConstInt(c->i32, 254, 0), ""),
                        LLVMConstInt(c->i32, 254, 0), x, "");
    x = LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOGT, f, LLVMConstReal(c->f32, 0), ""), x,
                        LLVMConstInt(c->i32, 255, 0), "");
    x = LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOEQ, f, LLVMConstReal(c->f32, 0), ""),
                        LLVMConstInt(c->i32, 0, 0), x, "");
    return LLVMBuildTrunc(B, x, c->i8, "");
}

/* An f32 value rounded to the e2m1 grid (0, .5, 1, 1.5, 2, 3, 4, 6; ties to
 * even, saturating at ±6, NaN → 6 with its sign), in vectorisable ops: the
 * spacing is 0.5 below 2 and half the power of two above. */
static LLVMValueRef round_e2m1(Cg *c, LLVMValueRef v)
{
    LLVMBuilderRef B = c->b;
    LLVMTypeRef ty = c->f32;
    LLVMValueRef a = cg_intrinsic(c, "llvm.fabs", &ty, 1, &v, 1);
    LLVMValueRef pow2 = LLVMBuildBitCast(B, LLVMBuildAnd(B, LLVMBuildBitCast(B, a, c->i32, ""),
                                                         LLVMConstInt(c->i32, 0x7f800000, 0), ""), c->f32, "");
    LLVMValueRef step = LLVMBuildFMul(B, pow2, LLVMConstReal(c->f32, 0.5), "");
    step = LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOLT, a, LLVMConstReal(c->f32, 2.0), ""),
                           LLVMConstReal(c->f32, 0.5), step, "");
    LLVMValueRef q = LLVMBuildFDiv(B, a, step, "");
    LLVMValueRef r = LLVMBuildFMul(B, cg_intrinsic(c, "llvm.roundeven", &ty, 1, &q, 1), step, "");
    LLVMValueRef six = LLVMConstReal(c->f32, 6.0);
    r = LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOLT, r, six, ""), r, six, ""); /* > 6, NaN → 6 */
    LLVMValueRef args[2] = {r, v};
    return cg_intrinsic(c, "llvm.copysign", &ty, 1, args, 2);
}

/* Round an f32 value to dtype t and back (CAST to a float dtype). */
static LLVMValueRef round_to(Cg *c, DType t, LLVMValueRef v)
{
    if (t == DT_F32)
        return v;
    if (t == DT_F4E2M1)
        return round_e2m1(c, v);
    return cg_widen(c, t, cg_narrow(c, t, v));
}

/* ------------------------------------------------------------ addresses */

/* Element idx of buffer b: on the CPU one GEP per dimension, so that
 * scalar evolution sees each dimension's term apart.  A single summed
 * offset loses them where InstCombine turns i·2048 + 2j into an `or`
 * without its disjoint flag, and the loop vectoriser then gives up
 * ("cannot identify array bounds": a pair of stores per step, as in
 * lowering's dequantising copies, was never vectorised).  The GPU keeps
 * one summed offset (its PTX unchanged but for packed fp4's bytes,
 * load_nibble). */
static LLVMValueRef elem_at(Cg *c, LLVMTypeRef ty, LLVMValueRef base, int rank, LLVMValueRef const *scaled)
{
    if (c->t->gpu_sm) {
        LLVMValueRef off = cg_i64(c, 0);
        for (int d = 0; d < rank; d++)
            off = LLVMBuildAdd(c->b, off, scaled[d], "");
        return LLVMBuildGEP2(c->b, ty, base, &off, 1, "");
    }
    LLVMValueRef p = base;
    for (int d = 0; d < rank; d++)
        p = LLVMBuildGEP2(c->b, ty, p, (LLVMValueRef *)&scaled[d], 1, "");
    return p;
}

LLVMValueRef cg_elem_ptr(Cg *c, const Buffer *b, LLVMValueRef const *idx)
{
    LLVMValueRef scaled[IR_MAX_RANK];
    for (int d = 0; d < b->rank; d++)
        scaled[d] = LLVMBuildMul(c->b, idx[d], c->stride[b->id][d], "");
    return elem_at(c, cg_storage_type(c, b->dtype), c->base[b->id], b->rank, scaled);
}

/* Whether an index expression is 2·h + r with r a constant 0 or 1 (sums
 * of integer constants and of products by even constants); *r is r. */
static bool halves(const Expr *e, int64_t *r)
{
    if (e->op == EX_CONST && !dt_is_float(e->dtype)) {
        *r = e->imm.i & 1;
        return true;
    }
    if (e->op == EX_MUL)
        for (int i = 0; i < 2; i++)
            if (e->args[i]->op == EX_CONST && !dt_is_float(e->args[i]->dtype) && e->args[i]->imm.i % 2 == 0) {
                *r = 0;
                return true;
            }
    int64_t ra, rb;
    if (e->op == EX_ADD && halves(e->args[0], &ra) && halves(e->args[1], &rb)) {
        *r = (ra + rb) & 1;
        return true;
    }
    return false;
}

/* h of an expression halves() accepted, as an i64; *r as there. */
static LLVMValueRef half_of(Cg *c, const Expr *e, int64_t *r)
{
    if (e->op == EX_CONST) {
        *r = e->imm.i & 1;
        return cg_i64(c, e->imm.i >> 1);
    }
    if (e->op == EX_MUL) {
        int k = e->args[0]->op == EX_CONST && e->args[0]->imm.i % 2 == 0 ? 0 : 1;
        *r = 0;
        return LLVMBuildMul(c->b, cg_expr(c, e->args[1 - k]), cg_i64(c, e->args[k]->imm.i / 2), "");
    }
    int64_t ra, rb;
    LLVMValueRef ha = half_of(c, e->args[0], &ra), hb = half_of(c, e->args[1], &rb);
    *r = (ra + rb) & 1;
    return LLVMBuildAdd(c->b, LLVMBuildAdd(c->b, ha, hb, ""), cg_i64(c, (ra + rb) >> 1), "");
}

/* Element idx of a packed fp4 buffer (low nibble first), as an i8 0..15.
 * Where every dimension but the last has an even stride and the last
 * index is 2·h + r (lowering's dequantising copies read a pair of
 * elements per step, say), the byte is h's plus the others' half-strides
 * and the nibble a constant r: addresses the loop vectoriser follows as
 * consecutive bytes.  Otherwise the element offset is halved at run time,
 * which it can only gather (a staged 128 x 128 fp4 weight tile: ~12
 * instructions per element, not vectorised). */
static LLVMValueRef load_nibble(Cg *c, const Buffer *b, const Expr *const *index, LLVMValueRef const *idx)
{
    int last = b->rank - 1;
    bool even = true;
    for (int d = 0; d < last; d++)
        even = even && b->stride[d]->op == EX_CONST && b->stride[d]->imm.i % 2 == 0;
    LLVMValueRef p, shift;
    int64_t r;
    if (even && halves(index[last], &r)) {
        LLVMValueRef bytes[IR_MAX_RANK];
        for (int d = 0; d < last; d++)
            bytes[d] = LLVMBuildMul(c->b, idx[d], cg_i64(c, b->stride[d]->imm.i / 2), "");
        bytes[last] = half_of(c, index[last], &r);
        p = elem_at(c, c->i8, c->base[b->id], b->rank, bytes);
        shift = LLVMConstInt(c->i8, (unsigned long long)(4 * r), 0);
    } else {
        LLVMValueRef off = cg_i64(c, 0);
        for (int d = 0; d < b->rank; d++)
            off = LLVMBuildAdd(c->b, off, LLVMBuildMul(c->b, idx[d], c->stride[b->id][d], ""), "");
        LLVMValueRef byte_off = LLVMBuildLShr(c->b, off, cg_i64(c, 1), "");
        p = LLVMBuildGEP2(c->b, c->i8, c->base[b->id], &byte_off, 1, "");
        shift = LLVMBuildTrunc(c->b, LLVMBuildShl(c->b, LLVMBuildAnd(c->b, off, cg_i64(c, 1), ""), cg_i64(c, 2), ""),
                               c->i8, "");
    }
    LLVMValueRef byte = LLVMBuildLoad2(c->b, c->i8, p, "");
    return LLVMBuildAnd(c->b, LLVMBuildLShr(c->b, byte, shift, ""), LLVMConstInt(c->i8, 15, 0), "");
}

/* ---------------------------------------------------------- expressions */

static LLVMValueRef int_div(Cg *c, LLVMValueRef a, LLVMValueRef b, bool mod)
{
    /* by a power of two, floor division is an arithmetic shift and the
     * floor remainder a mask: forms that value tracking turns into lshr
     * and the loop vectoriser's bounds analysis follows (an fp4 weight's
     * scale sw[i, j / 16] behind a select made the loop unvectorisable:
     * "cannot identify array bounds") */
    if (LLVMIsAConstantInt(b)) {
        long long k = LLVMConstIntGetSExtValue(b);
        if (k > 0 && (k & (k - 1)) == 0) {
            int sh = 0;
            while ((1LL << sh) < k)
                sh++;
            return mod ? LLVMBuildAnd(c->b, a, cg_i64(c, k - 1), "") : LLVMBuildAShr(c->b, a, cg_i64(c, sh), "");
        }
    }
    /* floor semantics: adjust C's truncation when signs differ */
    LLVMValueRef q = LLVMBuildSDiv(c->b, a, b, ""), r = LLVMBuildSRem(c->b, a, b, "");
    LLVMValueRef nz = LLVMBuildICmp(c->b, LLVMIntNE, r, cg_i64(c, 0), "");
    LLVMValueRef neg = LLVMBuildICmp(c->b, LLVMIntSLT, LLVMBuildXor(c->b, r, b, ""), cg_i64(c, 0), "");
    LLVMValueRef adj = LLVMBuildAnd(c->b, nz, neg, "");
    if (mod)
        return LLVMBuildSelect(c->b, adj, LLVMBuildAdd(c->b, r, b, ""), r, "");
    return LLVMBuildSelect(c->b, adj, LLVMBuildSub(c->b, q, cg_i64(c, 1), ""), q, "");
}

static LLVMValueRef fmath(Cg *c, const char *name, LLVMValueRef x)
{
    LLVMValueRef special = c->t->gpu_sm ? cg_gpu_math(c, name, x) : NULL;
    if (special)
        return special;
    LLVMTypeRef ty = c->f32;
    return cg_intrinsic(c, name, &ty, 1, &x, 1);
}

static LLVMValueRef fconst(Cg *c, double v) { return LLVMConstReal(c->f32, v); }

/* e^x (2^x with base2) and ln x: the GPU's own instructions, the CPU's
 * inline arithmetic (vmath.c). */
static LLVMValueRef exp_of(Cg *c, LLVMValueRef x, bool base2)
{
    return c->t->gpu_sm ? fmath(c, base2 ? "llvm.exp2" : "llvm.exp", x) : cg_exp(c, x, base2);
}

static LLVMValueRef log_of(Cg *c, LLVMValueRef x)
{
    return c->t->gpu_sm ? fmath(c, "llvm.log", x) : cg_log(c, x);
}

static LLVMValueRef unary_float(Cg *c, ExprOp op, LLVMValueRef x)
{
    LLVMValueRef one = fconst(c, 1.0);
    switch (op) {
    case EX_NEG: return LLVMBuildFNeg(c->b, x, "");
    case EX_ABS: return fmath(c, "llvm.fabs", x);
    case EX_EXP: return exp_of(c, x, false);
    case EX_EXP2: return exp_of(c, x, true);
    case EX_LOG: return log_of(c, x);
    case EX_SQRT: return fmath(c, "llvm.sqrt", x);
    case EX_RSQRT: return LLVMBuildFDiv(c->b, one, fmath(c, "llvm.sqrt", x), "");
    case EX_SIGMOID:
        return LLVMBuildFDiv(c->b, one, LLVMBuildFAdd(c->b, one, exp_of(c, LLVMBuildFNeg(c->b, x, ""), false), ""), "");
    case EX_SILU:
        return LLVMBuildFDiv(c->b, x, LLVMBuildFAdd(c->b, one, exp_of(c, LLVMBuildFNeg(c->b, x, ""), false), ""), "");
    case EX_SOFTPLUS: { /* max(x, 0) + log(1 + exp(-|x|)): no overflow */
        LLVMValueRef ax = fmath(c, "llvm.fabs", x);
        LLVMValueRef t = log_of(c, LLVMBuildFAdd(c->b, one, exp_of(c, LLVMBuildFNeg(c->b, ax, ""), false), ""));
        LLVMValueRef pos = LLVMBuildSelect(c->b, LLVMBuildFCmp(c->b, LLVMRealOGT, x, fconst(c, 0), ""), x, fconst(c, 0), "");
        return LLVMBuildFAdd(c->b, pos, t, "");
    }
    default: return x;
    }
}

static LLVMValueRef binary(Cg *c, const Expr *e)
{
    const Expr *ea = e->args[0], *eb = e->args[1];
    bool fl = dt_is_float(ea->dtype) || dt_is_float(eb->dtype);
    DType common = fl ? DT_F32 : (ea->dtype == DT_BOOL && eb->dtype == DT_BOOL ? DT_BOOL : DT_I64);
    LLVMValueRef a = cg_convert(c, cg_expr(c, ea), ea->dtype, common);
    LLVMValueRef b = cg_convert(c, cg_expr(c, eb), eb->dtype, common);
    LLVMBuilderRef B = c->b;
    switch (e->op) {
    case EX_ADD: return fl ? LLVMBuildFAdd(B, a, b, "") : LLVMBuildAdd(B, a, b, "");
    case EX_SUB: return fl ? LLVMBuildFSub(B, a, b, "") : LLVMBuildSub(B, a, b, "");
    case EX_MUL: return fl ? LLVMBuildFMul(B, a, b, "") : LLVMBuildMul(B, a, b, "");
    case EX_DIV: return fl ? LLVMBuildFDiv(B, a, b, "") : int_div(c, a, b, false);
    case EX_MOD: return fl ? LLVMBuildFRem(B, a, b, "") : int_div(c, a, b, true);
    case EX_MIN:
        if (fl)
            return cg_intrinsic(c, "llvm.minimum", &c->f32, 1, (LLVMValueRef[]){a, b}, 2);
        return cg_intrinsic(c, "llvm.smin", (LLVMTypeRef[]){LLVMTypeOf(a)}, 1, (LLVMValueRef[]){a, b}, 2);
    case EX_MAX:
        if (fl)
            return cg_intrinsic(c, "llvm.maximum", &c->f32, 1, (LLVMValueRef[]){a, b}, 2);
        /* the intrinsic, not a select: LLVM narrows it through the sign
         * extensions of 32-bit operands, which keeps a max reduction over
         * i32 a vectorisable i32 one */
        return cg_intrinsic(c, "llvm.smax", (LLVMTypeRef[]){LLVMTypeOf(a)}, 1, (LLVMValueRef[]){a, b}, 2);
    case EX_LT: return fl ? LLVMBuildFCmp(B, LLVMRealOLT, a, b, "") : LLVMBuildICmp(B, LLVMIntSLT, a, b, "");
    case EX_LE: return fl ? LLVMBuildFCmp(B, LLVMRealOLE, a, b, "") : LLVMBuildICmp(B, LLVMIntSLE, a, b, "");
    case EX_EQ: return fl ? LLVMBuildFCmp(B, LLVMRealOEQ, a, b, "") : LLVMBuildICmp(B, LLVMIntEQ, a, b, "");
    case EX_NE: return fl ? LLVMBuildFCmp(B, LLVMRealUNE, a, b, "") : LLVMBuildICmp(B, LLVMIntNE, a, b, "");
    case EX_BAND: return LLVMBuildAnd(B, a, b, "");
    case EX_BOR: return LLVMBuildOr(B, a, b, "");
    case EX_BXOR: return LLVMBuildXor(B, a, b, "");
    case EX_SHL: return LLVMBuildShl(B, a, LLVMBuildAnd(B, b, cg_i64(c, 63), ""), "");
    case EX_SHR: return LLVMBuildAShr(B, a, LLVMBuildAnd(B, b, cg_i64(c, 63), ""), "");
    case EX_AND:
        return LLVMBuildAnd(B, cg_convert(c, a, common, DT_BOOL), cg_convert(c, b, common, DT_BOOL), "");
    case EX_OR:
        return LLVMBuildOr(B, cg_convert(c, a, common, DT_BOOL), cg_convert(c, b, common, DT_BOOL), "");
    default: return a;
    }
}

LLVMValueRef cg_expr(Cg *c, const Expr *e)
{
    switch (e->op) {
    case EX_CONST:
        if (e->dtype == DT_BOOL)
            return LLVMConstInt(c->i1, (unsigned long long)e->imm.i, 0);
        return dt_is_float(e->dtype) ? fconst(c, e->imm.f) : cg_i64(c, e->imm.i);
    case EX_VAR: return c->var[e->var->id];
    case EX_PARAM: return c->param[e->param->index];
    case EX_LOAD: {
        LLVMValueRef idx[IR_MAX_RANK];
        for (int d = 0; d < e->nargs; d++)
            idx[d] = cg_expr(c, e->args[d]);
        if (e->buf->dtype == DT_F4E2M1) /* packed: element i is nibble i % 2 of byte i / 2 */
            return cg_widen(c, DT_F4E2M1, load_nibble(c, e->buf, (const Expr *const *)e->args, idx));
        LLVMValueRef p = cg_elem_ptr(c, e->buf, idx);
        return cg_widen(c, e->buf->dtype, LLVMBuildLoad2(c->b, cg_storage_type(c, e->buf->dtype), p, ""));
    }
    case EX_SELECT: {
        LLVMValueRef cond = cg_convert(c, cg_expr(c, e->args[0]), e->args[0]->dtype, DT_BOOL);
        LLVMValueRef a = cg_convert(c, cg_expr(c, e->args[1]), e->args[1]->dtype, e->dtype);
        LLVMValueRef b = cg_convert(c, cg_expr(c, e->args[2]), e->args[2]->dtype, e->dtype);
        return LLVMBuildSelect(c->b, cond, a, b, "");
    }
    case EX_CAST: {
        LLVMValueRef v = cg_convert(c, cg_expr(c, e->args[0]), e->args[0]->dtype, e->dtype);
        /* an fp8 value cast to bf16 (a GEMM staging e4m3 activations) is
         * already one: rounding it again would be 8 AVX2 instructions per
         * register that change nothing */
        if (dt_is_float(e->dtype) && dt_widens_exactly(e->args[0]->dtype, e->dtype))
            return v;
        if (dt_is_float(e->dtype))
            return round_to(c, e->dtype, v);
        if (e->dtype == DT_BOOL || e->dtype == DT_I64)
            return v;
        return cg_widen(c, e->dtype, cg_narrow(c, e->dtype, v)); /* wrap to i8/i32 range */
    }
    case EX_NOT:
        return LLVMBuildNot(c->b, cg_convert(c, cg_expr(c, e->args[0]), e->args[0]->dtype, DT_BOOL), "");
    case EX_BITCAST: {
        LLVMValueRef x = cg_expr(c, e->args[0]);
        if (e->dtype == DT_F32) /* low 32 bits of the i64 value */
            return LLVMBuildBitCast(c->b, LLVMBuildTrunc(c->b, x, c->i32, ""), c->f32, "");
        return LLVMBuildSExt(c->b, LLVMBuildBitCast(c->b, x, c->i32, ""), c->i64, "");
    }
    default:
        break;
    }
    if (e->nargs == 2)
        return binary(c, e);
    LLVMValueRef x = cg_expr(c, e->args[0]);
    if (!dt_is_float(e->dtype)) { /* integer neg/abs */
        x = cg_convert(c, x, e->args[0]->dtype, DT_I64);
        LLVMValueRef neg = LLVMBuildNeg(c->b, x, "");
        if (e->op == EX_NEG)
            return neg;
        return LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, x, cg_i64(c, 0), ""), neg, x, "");
    }
    return unary_float(c, e->op, cg_convert(c, x, e->args[0]->dtype, DT_F32));
}

/* ----------------------------------------------------------- statements */

static LLVMMetadataRef md_flag(Cg *c, const char *name, LLVMValueRef v)
{
    LLVMMetadataRef ops[2] = {LLVMMDStringInContext2(c->ctx, name, strlen(name)),
                              v ? LLVMValueAsMetadata(v) : NULL};
    return LLVMMDNodeInContext2(c->ctx, ops, v ? 2 : 1);
}

/* !llvm.loop metadata for a vector loop: force vectorisation at `width`
 * lanes with a predicated (masked) tail, `interleave` vectors per step
 * where > 0 (independent accumulators for a reduction); reductions may be
 * reordered; `rolled`: not unrolled (a vector loop: after vectorising). */
static void loop_metadata(Cg *c, LLVMValueRef latch_br, LoopKind kind, int width, bool masked, int interleave,
                          bool rolled)
{
    LLVMMetadataRef ops[6];
    int n = 1;
    LLVMValueRef t = LLVMConstInt(c->i1, 1, 0);
    if (kind == LOOP_VECTOR) {
        ops[n++] = md_flag(c, "llvm.loop.vectorize.enable", t);
        ops[n++] = md_flag(c, "llvm.loop.vectorize.width", LLVMConstInt(c->i32, (unsigned)width, 0));
        if (masked)
            ops[n++] = md_flag(c, "llvm.loop.vectorize.predicate.enable", t);
        if (interleave > 0)
            ops[n++] = md_flag(c, "llvm.loop.interleave.count", LLVMConstInt(c->i32, (unsigned)interleave, 0));
        if (rolled)
            ops[n++] = md_flag(c, "llvm.loop.unroll.disable", NULL);
    } else if (kind == LOOP_UNROLL) {
        ops[n++] = md_flag(c, "llvm.loop.unroll.full", NULL);
    } else if (kind == LOOP_SERIAL && width > 0) {
        ops[n++] = md_flag(c, "llvm.loop.unroll.count", LLVMConstInt(c->i32, (unsigned)width, 0));
    } else if (rolled) {
        ops[n++] = md_flag(c, "llvm.loop.unroll.disable", NULL);
    } else {
        return;
    }
    LLVMMetadataRef tmp = LLVMTemporaryMDNode(c->ctx, NULL, 0);
    ops[0] = tmp;
    LLVMMetadataRef node = LLVMMDNodeInContext2(c->ctx, ops, (size_t)n);
    LLVMMetadataReplaceAllUsesWith(tmp, node);
    unsigned kid = LLVMGetMDKindIDInContext(c->ctx, "llvm.loop", 9);
    LLVMSetMetadata(latch_br, kid, LLVMMetadataAsValue(c->ctx, node));
}

enum { MAX_UNROLLED_STEPS = 16 };

/* Whether a loop of `steps` steps (of `arg` lanes where a vector loop)
 * stays a loop though nothing in it asks.  A vector loop of many steps
 * does: unrolled in full (LLVM does, up to 64 steps), hc_post_pre's
 * 512-wide rows made 60k lines of IR and took 9.5 s to compile (1.3 s
 * rolled), for a loop branch per step saved (its run time, and hc_pre's,
 * moe_gate's, unchanged).  So does one whose step already spans four f32
 * registers (an fp8 store's 32 lanes on AVX2): unrolled, its copies'
 * temporaries interleave and spill (act_quant at 16 tokens, K 4096:
 * 25.7 us against 21.4). */
static bool too_big_to_unroll(const Cg *c, LoopKind kind, int arg, int64_t steps)
{
    bool wide = kind == LOOP_VECTOR && arg * 32 >= 4 * c->t->vector_bits;
    return steps > MAX_UNROLLED_STEPS || wide;
}

/* for var in [0, n): body — a canonical loop with the counter as a phi;
 * interleave as loop_metadata's. */
static void loop_with(Cg *c, Var *var, LLVMValueRef n, LoopKind kind, int arg, bool masked, int interleave,
                      bool rolled, void (*body)(Cg *, void *), void *ctx)
{
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(c->b);
    LLVMBasicBlockRef head = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "loop");
    LLVMBasicBlockRef bodyb = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "body");
    LLVMBasicBlockRef exit = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "exit");
    LLVMBuildBr(c->b, head);
    LLVMPositionBuilderAtEnd(c->b, head);
    LLVMValueRef i = LLVMBuildPhi(c->b, c->i64, var ? var->name : "i");
    LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, i, n, ""), bodyb, exit);
    LLVMPositionBuilderAtEnd(c->b, bodyb);
    if (var)
        c->var[var->id] = i;
    body(c, ctx);
    LLVMValueRef next = LLVMBuildAdd(c->b, i, cg_i64(c, 1), "");
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(c->b);
    LLVMValueRef br = LLVMBuildBr(c->b, head);
    int64_t steps = LLVMIsAConstantInt(n) ? LLVMConstIntGetSExtValue(n) / (arg > 0 ? arg : 1) : 0;
    loop_metadata(c, br, kind, arg, masked, interleave, rolled || too_big_to_unroll(c, kind, arg, steps));
    LLVMValueRef zero = cg_i64(c, 0);
    LLVMAddIncoming(i, &zero, &pre, 1);
    LLVMAddIncoming(i, &next, &latch, 1);
    LLVMPositionBuilderAtEnd(c->b, exit);
}

void cg_loop(Cg *c, Var *var, LLVMValueRef n, LoopKind kind, int arg, bool masked,
             void (*body)(Cg *, void *), void *ctx)
{
    loop_with(c, var, n, kind, arg, masked, 0, false, body, ctx);
}

void cg_loop_rolled(Cg *c, Var *var, LLVMValueRef n, void (*body)(Cg *, void *), void *ctx)
{
    loop_with(c, var, n, LOOP_SERIAL, 0, false, 0, true, body, ctx);
}

static void stmt_body(Cg *c, void *s) { cg_stmt(c, s); }

/* prefetcht1: into L2 and the levels below, where a tile read on the next
 * step of a loop waits without displacing this step's from L1.  The
 * address is computed without `inbounds`: a prefetch past the end is fine. */
static void prefetch(Cg *c, const Stmt *s)
{
    const Buffer *b = s->u.store.buf;
    LLVMValueRef off = cg_i64(c, 0);
    for (int d = 0; d < b->rank; d++)
        off = LLVMBuildAdd(c->b, off, LLVMBuildMul(c->b, cg_expr(c, s->u.store.idx[d]), c->stride[b->id][d], ""), "");
    int bits = dt_bits(b->dtype);
    off = bits >= 8 ? LLVMBuildMul(c->b, off, cg_i64(c, bits / 8), "")
                    : LLVMBuildSDiv(c->b, LLVMBuildMul(c->b, off, cg_i64(c, bits), ""), cg_i64(c, 8), "");
    cg_prefetch(c, LLVMBuildGEP2(c->b, c->i8, c->base[b->id], &off, 1, ""), 2);
}

void cg_prefetch(Cg *c, LLVMValueRef p, int locality)
{
    LLVMValueRef args[4] = {p, LLVMConstInt(c->i32, 0, 0), LLVMConstInt(c->i32, (unsigned)locality, 0),
                            LLVMConstInt(c->i32, 1, 0)};
    LLVMTypeRef ty = c->ptr;
    cg_intrinsic(c, "llvm.prefetch", &ty, 1, args, 4);
}

/* Is every value e can take one that t holds exactly?  Only loads and
 * casts carry a narrow float dtype (arithmetic is f32), and a cast that
 * widens exactly keeps what its operand held. */
static bool exactly_in(const Expr *e, DType t)
{
    if (!dt_is_float(e->dtype))
        return false;
    if (e->dtype != DT_F32 && dt_widens_exactly(e->dtype, t))
        return true;
    return e->op == EX_CAST && dt_widens_exactly(e->args[0]->dtype, e->dtype) && exactly_in(e->args[0], t);
}

/* Whether body is a reduction step whose result no order of its steps
 * changes: a maximum or minimum, or a sum of integers — an integer
 * accumulator, or an f32 one adding a choice between integer constants (a
 * count: topk_long's bisection, exact below 2^24).  A vector loop with a
 * reduction keeps 4 accumulators: one is a chain of dependent steps, an
 * add's or FMA's latency per vector (topk N=4096 K=512, 16 rows: 16 ->
 * 10.9 ms), and a count's lanes sum as a tree (store: its adds may be
 * regrouped; without, LLVM adds the 8 lanes one after another) —
 * topk_long at N 65536, one row, one thread: 0.185-0.187 -> 0.177-0.179
 * ms with the accumulators, 0.161-0.169 with both.  So do f32 sums, whose
 * lanes then add every fourth vector of their elements in order
 * (2026-12-02, an AVX2 host retiring ~2 vector ops a cycle, five
 * alternations, one thread: a LayerNorm of 256 x 4096 bf16 0.62-0.64 ->
 * 0.46-0.48 ms, examples/rmsnorm.lua 256 x 4096 0.31-0.50 -> 0.29-0.47;
 * softmax, rmsnorm_quant and rmsnorm at 4096 tokens from DRAM within the
 * noise — an earlier AVX2 host had found four no better on those), and
 * fold their lanes as a tree (store). */
static bool integer_const(const Expr *e)
{
    return e->op == EX_CONST && (!dt_is_float(e->dtype) || e->imm.f == floor(e->imm.f));
}

static bool reduction_in_any_order(const Stmt *body);

/* Whether store s is a sum's step whose order matters (an f32 sum that is
 * not reduction_in_any_order's). */
static bool ordered_sum(const Stmt *s)
{
    ExprOp op;
    return ir_reduction_step(s, &op) && op == EX_ADD && !reduction_in_any_order(s);
}

/* Whether body (a store or a sequence of them) holds one. */
static bool has_ordered_sum(const Stmt *body)
{
    if (body->op != ST_SEQ)
        return body->op == ST_STORE && ordered_sum(body);
    for (int i = 0; i < body->u.seq.n; i++)
        if (has_ordered_sum(body->u.seq.items[i]))
            return true;
    return false;
}

static bool reduction_in_any_order(const Stmt *body)
{
    ExprOp op;
    if (!ir_reduction_step(body, &op))
        return false;
    if (op == EX_MAX || op == EX_MIN)
        return true;
    while (body->op == ST_SEQ)
        body = body->u.seq.items[0];
    const Expr *term = body->u.store.value->args[1];
    return !dt_is_float(body->u.store.buf->dtype) ||
           (term->op == EX_SELECT && integer_const(term->args[1]) && integer_const(term->args[2]));
}

/* Whether s or a statement in it (through loops, ifs and sequences)
 * is one `hit` says it is. */
static bool any_nested(const Stmt *s, bool (*hit)(const Stmt *))
{
    if (hit(s))
        return true;
    switch (s->op) {
    case ST_FOR: return any_nested(s->u.loop.body, hit);
    case ST_IF: return any_nested(s->u.if_.then_, hit) || (s->u.if_.else_ && any_nested(s->u.if_.else_, hit));
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            if (any_nested(s->u.seq.items[i], hit))
                return true;
        return false;
    default: return false;
    }
}

/* A register tile (micro.c). */
static bool is_micro_gemm(const Stmt *s) { return s->op == ST_MICRO_GEMM; }

/* The steps of loop s, -1 where its count is not known here. */
static int64_t loop_steps(const Stmt *s)
{
    const Expr *n = s->u.loop.extent;
    int64_t w = s->u.loop.kind == LOOP_VECTOR && s->u.loop.arg > 0 ? s->u.loop.arg : 1;
    return n->op == EX_CONST ? (n->imm.i + w - 1) / w : -1;
}

static bool stays_rolled(const Cg *c, const Stmt *loop);

/* Whether vector loop s is a reduction whose accumulator may be split
 * (four partial sums, interleaved). */
static bool reduces(const Stmt *s)
{
    return s->u.loop.kind == LOOP_VECTOR &&
           (reduction_in_any_order(s->u.loop.body) || has_ordered_sum(s->u.loop.body));
}

/* Whether body (a store or a sequence of them) holds a reduction's step. */
static bool holds_reduction(const Stmt *body)
{
    if (body->op != ST_SEQ)
        return ir_reduction_step(body, NULL);
    for (int i = 0; i < body->u.seq.n; i++)
        if (holds_reduction(body->u.seq.items[i]))
            return true;
    return false;
}

/* A prefetch, or a sequence of them. */
static bool prefetches(const Stmt *s)
{
    if (s->op == ST_SEQ) {
        for (int i = 0; i < s->u.seq.n; i++)
            if (!prefetches(s->u.seq.items[i]))
                return false;
        return true;
    }
    return s->op == ST_PREFETCH;
}

/* Whether s holds a loop that a loop around s should not copy: one LLVM
 * unrolls in full (2 to MAX_UNROLLED_STEPS steps, nothing keeping it
 * rolled), one of many steps (its branch already paid for), or one of a
 * count it does not know (a vector body, a remainder and their checks).
 * Cheap to copy: a short loop kept rolled for its wide steps, a short
 * loop of prefetches (an instruction a step), and a short reduction —
 * copied, the rows' sums stay in registers and their horizontal folds
 * overlap (rmsnorm_quant's rows of squares, rolled, ran 10.4-10.9 ms
 * against 9.6-10.3 at 4096 tokens in alternations on a noisy host). */
static bool holds_long_loop(const Cg *c, const Stmt *s)
{
    switch (s->op) {
    case ST_FOR: {
        int64_t steps = loop_steps(s);
        bool cheap = stays_rolled(c, s) || holds_reduction(s->u.loop.body) || prefetches(s->u.loop.body);
        return steps < 0 || steps > MAX_UNROLLED_STEPS || (steps > 1 && !cheap) ||
               holds_long_loop(c, s->u.loop.body);
    }
    case ST_IF:
        return holds_long_loop(c, s->u.if_.then_) || (s->u.if_.else_ && holds_long_loop(c, s->u.if_.else_));
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            if (holds_long_loop(c, s->u.seq.items[i]))
                return true;
        return false;
    default: return false;
    }
}

/* Whether loop s is kept a loop (llvm.loop.unroll.disable).  A loop over
 * register tiles is: LLVM unrolled the 4 column tiles of a GEMM row band
 * in full, each a K loop of its own, for no gain (333 x 777 x 555 f32 had
 * 16 of them, a third of its compile time).  So is a serial or parallel
 * loop over a long loop (holds_long_loop): rmsnorm's 8-row loops made 8
 * copies of each row's 16 vector steps, machine code alone 346 ms of a
 * 535 ms compile (186 ms rolled), for no gain.  One over short loops
 * cheap to copy is LLVM's to unroll: rolled, rmsnorm_quant's 8 rows of 4
 * fp8 store steps each ran 37.3 us against 35.1 at 16 tokens (each row's
 * scale divide waited on the row before). */
static bool stays_rolled(const Cg *c, const Stmt *loop)
{
    LoopKind kind = loop->u.loop.kind;
    if (kind == LOOP_UNROLL || (kind == LOOP_SERIAL && loop->u.loop.arg > 0))
        return false; /* unrolled as asked */
    if (any_nested(loop->u.loop.body, is_micro_gemm) ||
        too_big_to_unroll(c, kind, loop->u.loop.arg, loop_steps(loop)))
        return true;
    return kind != LOOP_VECTOR && holds_long_loop(c, loop->u.loop.body);
}

/* Whether e loads an element narrower than 32 bits. */
static bool loads_narrow(const Expr *e)
{
    if (e->op == EX_LOAD && dt_bits(e->buf->dtype) < 32)
        return true;
    for (int i = 0; i < e->nargs; i++)
        if (loads_narrow(e->args[i]))
            return true;
    return false;
}

/* A store or a condition that reads or writes an element narrower than
 * 32 bits. */
static bool accesses_narrow(const Stmt *s)
{
    if (s->op == ST_STORE)
        return dt_bits(s->u.store.buf->dtype) < 32 || loads_narrow(s->u.store.value);
    return s->op == ST_IF && loads_narrow(s->u.if_.cond);
}

/* Whether a vector loop over body folds its tail into masked steps.  AVX2
 * masks only 32- and 64-bit elements (vmaskmovps): a masked step of bf16
 * or fp8 loads or stores is one compare and branch per element, and LLVM
 * masks every step of a loop whose trip count it does not know — a GEMM
 * edge block's staging of bf16 A rows took a fifth of the run so
 * (333 x 777 x 555 bf16, one thread).  There a vector body and a scalar
 * remainder instead. */
static bool masks_tail(const Cg *c, const Stmt *body)
{
    return c->t->gpu_sm || strstr(c->t->llvm_features, "+avx512bw") || !any_nested(body, accesses_narrow);
}

static void store(Cg *c, const Stmt *s)
{
    const Buffer *b = s->u.store.buf;
    LLVMValueRef idx[IR_MAX_RANK];
    for (int d = 0; d < b->rank; d++)
        idx[d] = cg_expr(c, s->u.store.idx[d]);
    const Expr *val = s->u.store.value;
    if (!s->u.store.atomic && val->op == EX_LOAD && val->buf->dtype == b->dtype && b->dtype != DT_BOOL &&
        dt_bits(b->dtype) >= 8) {
        /* a copy of an element of the same dtype moves its bits: no widening
         * and rounding back (a NaN keeps its sign and payload) */
        LLVMValueRef si[IR_MAX_RANK];
        for (int d = 0; d < val->nargs; d++)
            si[d] = cg_expr(c, val->args[d]);
        LLVMTypeRef ty = cg_storage_type(c, b->dtype);
        LLVMValueRef bits = LLVMBuildLoad2(c->b, ty, cg_elem_ptr(c, val->buf, si), "");
        /* a streamed copy is no memcpy idiom (LLVM's memcpy would drop the
         * streaming): a freeze between the load and the store, no code */
        if (c->stream_mode > 0 && s->u.store.stream)
            bits = LLVMBuildFreeze(c->b, bits, "");
        LLVMBuildStore(c->b, bits, cg_elem_ptr(c, b, idx));
        return;
    }
    LLVMValueRef v = cg_expr(c, s->u.store.value);
    /* a count's adds may be regrouped, and so may a vector loop's sum: its
     * lanes then fold as a tree, not one lane after another (each of the
     * loop's four accumulators still adds its elements in order).  Zen 5,
     * `build/bench/bench_ops --threads 1`, twice alternated: rmsnorm_quant 0.37-0.38 -> 0.40-0.41 of copy,
     * q_norm 0.76-0.79 -> 0.80-0.84, hc_pre and hc_head a few % */
    if (LLVMIsAInstruction(v) && LLVMGetInstructionOpcode(v) == LLVMFAdd &&
        (reduction_in_any_order(s) || (c->in_vector_loop && ordered_sum(s))))
        LLVMSetFastMathFlags(v, LLVMFastMathAllowReassoc);
    DType vt = dt_is_float(b->dtype) ? DT_F32 : b->dtype == DT_BOOL ? DT_BOOL : DT_I64;
    v = cg_convert(c, v, s->u.store.value->dtype, vt);
    LLVMValueRef p = cg_elem_ptr(c, b, idx);
    if (s->u.store.atomic) { /* f32 only: checked by cg_check */
        LLVMBuildAtomicRMW(c->b, LLVMAtomicRMWBinOpFAdd, p, v, LLVMAtomicOrderingMonotonic, 0);
        return;
    }
    /* a bf16 store of a value bf16 holds exactly (an e4m3 activation
     * staged for a bf16 GEMM, a norm already rounded by cast<bf16>): its
     * f32 bits end in 16 zeros, so the rounding has nothing to do (a NaN
     * stays the quiet one the widening or the cast made) */
    if (b->dtype == DT_BF16 && exactly_in(val, DT_BF16)) {
        LLVMValueRef bits = LLVMBuildLShr(c->b, LLVMBuildBitCast(c->b, v, c->i32, ""), LLVMConstInt(c->i32, 16, 0), "");
        LLVMBuildStore(c->b, LLVMBuildTrunc(c->b, bits, c->i16, ""), p);
        return;
    }
    /* an fp8 store of a value clamped within the format's range needs no
     * saturation of its own (act_quant and every Q.scale_rows store); one
     * clamped to exactly that range is the saturating store of the value
     * itself (a NaN stays NaN either way), one instruction fewer per
     * vector: |x| meets the largest value and the NaN test in a row */
    if ((b->dtype == DT_F8E4M3 || b->dtype == DT_F8E5M2) && !c->t->gpu_sm) {
        const Fp8 *F = b->dtype == DT_F8E4M3 ? &E4M3 : &E5M2;
        double lo, hi, fmax = fp8_code_value(F, F->max);
        const Expr *x = clamp_of(val, &lo, &hi);
        if (x && lo == -fmax && hi == fmax) {
            LLVMValueRef xv = cg_convert(c, cg_expr(c, x), x->dtype, DT_F32);
            LLVMBuildStore(c->b, fp8_magic(c, xv, F, true), p);
            return;
        }
        if (x && -lo <= fmax && hi <= fmax) {
            LLVMBuildStore(c->b, fp8_magic(c, v, F, false), p);
            return;
        }
    }
    LLVMBuildStore(c->b, cg_narrow(c, b->dtype, v), p);
}

/* ONCE on the CPU: a slot of the launch (an entry alloca, INT64_MIN, no
 * grid key, stored before the block loop) holds the key the body last ran
 * with, and the body runs when the key differs.  GPU blocks keep nothing
 * from one to the next: there it runs always (pass_hoist is CPU-only). */
static void once(Cg *c, const Stmt *s)
{
    if (c->t->gpu_sm) {
        cg_stmt(c, s->u.once.body);
        return;
    }
    LLVMBasicBlockRef entry = LLVMGetEntryBasicBlock(c->fn);
    LLVMBuilderRef eb = LLVMCreateBuilderInContext(c->ctx);
    LLVMPositionBuilderBefore(eb, LLVMGetFirstInstruction(entry));
    LLVMValueRef slot = LLVMBuildAlloca(eb, c->i64, "once");
    LLVMValueRef end = LLVMGetBasicBlockTerminator(entry);
    if (end)
        LLVMPositionBuilderBefore(eb, end);
    else
        LLVMPositionBuilderAtEnd(eb, entry);
    LLVMBuildStore(eb, cg_i64(c, INT64_MIN), slot);
    LLVMDisposeBuilder(eb);
    LLVMValueRef key = cg_convert(c, cg_expr(c, s->u.once.key), s->u.once.key->dtype, DT_I64);
    LLVMValueRef stale = LLVMBuildICmp(c->b, LLVMIntNE, LLVMBuildLoad2(c->b, c->i64, slot, ""), key, "");
    LLVMBasicBlockRef run = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "once");
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "once_done");
    LLVMBuildCondBr(c->b, stale, run, join);
    LLVMPositionBuilderAtEnd(c->b, run);
    LLVMBuildStore(c->b, key, slot);
    cg_stmt(c, s->u.once.body);
    LLVMBuildBr(c->b, join);
    LLVMPositionBuilderAtEnd(c->b, join);
}

void cg_stmt(Cg *c, const Stmt *s)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            cg_stmt(c, s->u.seq.items[i]);
        break;
    case ST_FOR: {
        if (c->t->gpu_sm && cg_gpu_async_chunk(c, s))
            break;
        if (cg_transposed_copy(c, s) || cg_stream_loop(c, s, s->u.loop.arg))
            break;
        bool vec = s->u.loop.kind == LOOP_VECTOR, outer = c->in_vector_loop;
        c->in_vector_loop = vec;
        loop_with(c, s->u.loop.var, cg_expr(c, s->u.loop.extent), s->u.loop.kind, s->u.loop.arg,
                  !vec || masks_tail(c, s->u.loop.body), reduces(s) ? 4 : 0, stays_rolled(c, s), stmt_body,
                  s->u.loop.body);
        c->in_vector_loop = outer;
        break;
    }
    case ST_IF: {
        LLVMValueRef cond = cg_convert(c, cg_expr(c, s->u.if_.cond), s->u.if_.cond->dtype, DT_BOOL);
        LLVMBasicBlockRef then_ = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "then");
        LLVMBasicBlockRef else_ = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "else");
        LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "join");
        LLVMBuildCondBr(c->b, cond, then_, else_);
        LLVMPositionBuilderAtEnd(c->b, then_);
        cg_stmt(c, s->u.if_.then_);
        LLVMBuildBr(c->b, join);
        LLVMPositionBuilderAtEnd(c->b, else_);
        if (s->u.if_.else_)
            cg_stmt(c, s->u.if_.else_);
        LLVMBuildBr(c->b, join);
        LLVMPositionBuilderAtEnd(c->b, join);
        break;
    }
    case ST_ONCE:
        once(c, s);
        break;
    case ST_STORE:
        store(c, s);
        cg_stream_tag(c, s);
        break;
    case ST_MICRO_GEMM:
        if (c->t->gpu_sm)
            cg_gpu_mma(c, s);
        else
            cg_micro_gemm(c, s);
        break;
    case ST_BARRIER:
        cg_gpu_barrier(c);
        break;
    case ST_PREFETCH:
        if (!c->t->gpu_sm)
            prefetch(c, s);
        break;
    case ST_ASYNC_COMMIT: /* (async stores land at once on a CPU) */
    case ST_ASYNC_WAIT:
    case ST_WGMMA_WAIT:
        if (c->t->gpu_sm)
            cg_gpu_async(c, s);
        break;
    case ST_MBAR_INIT: /* (GPU only: cg_gpu_check) */
    case ST_MBAR_EXPECT:
    case ST_MBAR_WAIT:
    case ST_TMA_LOAD:
        cg_gpu_tma(c, s);
        break;
    default:
        break; /* tile ops never reach codegen: the verifier rejects them */
    }
}

/* ------------------------------------------------------------- function */

/* What this back end cannot compile yet, reported before building. */
static bool cg_check(const Kernel *k, const TargetInfo *t, const Stmt *s, Diag *d)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            if (!cg_check(k, t, s->u.seq.items[i], d))
                return false;
        return true;
    case ST_FOR: return cg_check(k, t, s->u.loop.body, d);
    case ST_IF:
        return cg_check(k, t, s->u.if_.then_, d) && (!s->u.if_.else_ || cg_check(k, t, s->u.if_.else_, d));
    case ST_MICRO_GEMM:
        if (s->u.gemm.a_decode_order && s->u.gemm.a.buf->dtype == DT_BF16 && !(t->has_bf16_dot && t->vector_bits == 512))
            return diag_error(d, s->loc, "micro_gemm a_decode_order of a bf16 a needs 512-bit vdpbf16ps, which %s has not",
                              t->name);
        return true;
    case ST_STORE:
        if (s->u.store.atomic && s->u.store.buf->dtype != DT_F32)
            return diag_error(d, s->loc, "atomic_add into %s buffer %s: the x86 back end supports f32 only",
                              dt_name(s->u.store.buf->dtype), s->u.store.buf->name);
        return true;
    case ST_MBAR_INIT:
    case ST_MBAR_EXPECT:
    case ST_MBAR_WAIT:
    case ST_TMA_LOAD:
        return diag_error(d, s->loc, "%s: TMA and mbarriers exist on sm_90a only, not on the x86 back end",
                          st_name(s->op));
    default: return true;
    }
}

static bool check_kernel(const Kernel *k, const TargetInfo *t, Diag *d)
{
    if (k->level != LEVEL_LOOP)
        return diag_error(d, k->loc, "codegen needs Loop IR (run the pass pipeline first)");
    for (int i = 0; i < k->nbufs; i++) {
        const Buffer *b = k->bufs[i];
        if (b->dtype == DT_F4E2M1 && (b->scope != SCOPE_GLOBAL || b->dir != ARG_IN))
            return diag_error(d, b->loc,
                              "%s is f4e2m1: packed fp4 is read-only (an input argument); the %s back end "
                              "does not write it yet",
                              b->name, t->gpu_sm ? "GPU" : "x86");
    }
    if (t->gpu_sm)
        return cg_gpu_check(k, d);
    return cg_check(k, t, k->body, d);
}

/* Shapes and strides of every buffer, evaluated once at entry; argument i
 * at base[i] (the body's noalias parameters), scratch buffers 64-byte
 * aligned stack arrays (one set per running block). */
static void setup_buffers(Cg *c, LLVMValueRef const *base)
{
    const Kernel *k = c->k;
    for (int i = 0; i < k->nbufs; i++) {
        const Buffer *b = k->bufs[i];
        for (int d = 0; d < b->rank; d++)
            c->stride[b->id][d] = cg_expr(c, b->stride[d]);
        if (b->scope == SCOPE_GLOBAL) {
            c->base[b->id] = base[i];
        } else {
            int64_t n = 1, dim;
            for (int d = 0; d < b->rank; d++) {
                ir_expr_is_const(b->shape[d], &dim);
                n *= dim;
            }
            /* + 64 elements: vector tails may read (never use) past the end */
            LLVMTypeRef arr = LLVMArrayType2(cg_storage_type(c, b->dtype), (uint64_t)(n + 64));
            LLVMValueRef a = LLVMBuildAlloca(c->b, arr, b->name);
            LLVMSetAlignment(a, 64);
            c->base[b->id] = a;
        }
    }
    cg_stream_setup(c);
}

typedef struct BlockLoop {
    LLVMValueRef grid[IR_MAX_GRID], begin;
} BlockLoop;

static void block_body(Cg *c, void *ctx)
{
    BlockLoop *bl = ctx;
    const Kernel *k = c->k;
    LLVMValueRef rest = LLVMBuildAdd(c->b, bl->begin, c->var[k->next_id], "");
    for (int g = k->ngrid - 1; g >= 0; g--) {
        c->var[k->grid_var[g]->id] = LLVMBuildSRem(c->b, rest, bl->grid[g], k->grid_var[g]->name);
        rest = LLVMBuildSDiv(c->b, rest, bl->grid[g], "");
    }
    cg_stmt(c, k->body);
}

void cg_target_attrs(Cg *c, LLVMValueRef fn)
{
    const char *attrs[][2] = {{"target-cpu", c->t->llvm_cpu},
                              {"target-features", c->t->llvm_features},
                              {"prefer-vector-width", c->t->vector_bits == 512 ? "512" : "256"},
                              {"min-legal-vector-width", c->t->vector_bits == 512 ? "512" : "256"}};
    for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++)
        LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                                LLVMCreateStringAttribute(c->ctx, attrs[i][0], (unsigned)strlen(attrs[i][0]),
                                                          attrs[i][1], (unsigned)strlen(attrs[i][1])));
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, cg_enum_attr(c, "nounwind", 0));
}

/* The exported entries: NAME.claimed loads the argument pointers and
 * calls NAME.body with each as a `noalias` parameter (arguments never
 * overlap: an update in place is one inout argument; the PTX entry's
 * parameters say the same); NAME calls NAME.claimed without a claim (the
 * blocks [begin, end) as given).  The body is always inlined, once, and
 * inlining turns those parameters into alias scopes on every access: LLVM
 * then vectorises a loop that writes one argument and reads another
 * without run-time overlap checks, which it cannot build where a dyn size
 * hides the bounds (hc_pre's y loop at a dyn token count ran scalar: 0.60
 * ms against 0.30 with the count fixed). */
static void build_entries(Cg *c)
{
    const Kernel *k = c->k;
    char name[300];
    snprintf(name, sizeof name, "%s.claimed", k->name);
    LLVMTypeRef ps[5] = {c->ptr, c->ptr, c->i64, c->i64, c->ptr}, vt = LLVMVoidTypeInContext(c->ctx);
    LLVMValueRef claimed = LLVMAddFunction(c->mod, name, LLVMFunctionType(vt, ps, 5, 0));
    cg_target_attrs(c, claimed);
    LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, claimed, "entry"));
    int nb = k->nargs + 4;
    LLVMValueRef *cargs = malloc((size_t)nb * sizeof *cargs);
    for (int i = 0; i < k->nargs; i++) {
        LLVMValueRef slot = LLVMBuildGEP2(c->b, c->ptr, LLVMGetParam(claimed, 0), (LLVMValueRef[]){cg_i64(c, i)}, 1, "");
        cargs[i] = LLVMBuildLoad2(c->b, c->ptr, slot, k->bufs[i]->name);
    }
    for (int i = 0; i < 4; i++)
        cargs[k->nargs + i] = LLVMGetParam(claimed, (unsigned)i + 1);
    LLVMBuildCall2(c->b, LLVMGlobalGetValueType(c->fn), c->fn, cargs, (unsigned)nb, "");
    LLVMBuildRetVoid(c->b);
    free(cargs);

    LLVMValueRef plain = LLVMAddFunction(c->mod, k->name, LLVMFunctionType(vt, ps, 4, 0));
    cg_target_attrs(c, plain);
    LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, plain, "entry"));
    LLVMValueRef args[5];
    for (int i = 0; i < 4; i++)
        args[i] = LLVMGetParam(plain, (unsigned)i);
    args[4] = LLVMConstNull(c->ptr);
    LLVMBuildCall2(c->b, LLVMGlobalGetValueType(claimed), claimed, args, 5, "");
    LLVMBuildRetVoid(c->b);
}

/* The body's blocks: [begin, end) once, or with a claim (a CgClaim: the
 * next block at offset 0, the grain at 8) chunk after chunk claimed from
 * it until none is left below end — in one call, so that its scratch and
 * ONCE keys carry over from chunk to chunk. */
static void claim_loop(Cg *c, BlockLoop *bl, LLVMValueRef begin, LLVMValueRef end, LLVMValueRef claim)
{
    LLVMBuilderRef B = c->b;
    const Kernel *k = c->k;
    LLVMBasicBlockRef from = LLVMGetInsertBlock(B);
    LLVMBasicBlockRef take = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "claim");
    LLVMBasicBlockRef got = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "claimed");
    LLVMBasicBlockRef run = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "chunk");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "blocks_done");
    LLVMValueRef claimed = LLVMBuildICmp(B, LLVMIntNE, claim, LLVMConstNull(c->ptr), "");
    LLVMBuildCondBr(B, claimed, take, run);
    LLVMPositionBuilderAtEnd(B, take);
    LLVMValueRef gp = LLVMBuildGEP2(B, c->i64, claim, (LLVMValueRef[]){cg_i64(c, 1)}, 1, "");
    LLVMValueRef grain = LLVMBuildLoad2(B, c->i64, gp, "grain");
    LLVMValueRef b = LLVMBuildAtomicRMW(B, LLVMAtomicRMWBinOpAdd, claim, grain, LLVMAtomicOrderingMonotonic, 0);
    LLVMBuildCondBr(B, LLVMBuildICmp(B, LLVMIntSGE, b, end, ""), done, got);
    LLVMPositionBuilderAtEnd(B, got);
    LLVMValueRef e = LLVMBuildAdd(B, b, grain, "");
    e = LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntSLT, e, end, ""), e, end, "");
    LLVMBuildBr(B, run);
    LLVMPositionBuilderAtEnd(B, run);
    LLVMValueRef first = LLVMBuildPhi(B, c->i64, "first"), last = LLVMBuildPhi(B, c->i64, "last");
    LLVMAddIncoming(first, (LLVMValueRef[]){begin, b}, (LLVMBasicBlockRef[]){from, got}, 2);
    LLVMAddIncoming(last, (LLVMValueRef[]){end, e}, (LLVMBasicBlockRef[]){from, got}, 2);
    bl->begin = first;
    Var blkvar = {.name = "blk", .id = k->next_id};
    cg_loop(c, &blkvar, LLVMBuildSub(B, last, first, ""), LOOP_SERIAL, 0, false, block_body, bl);
    LLVMBuildCondBr(B, claimed, take, done);
    LLVMPositionBuilderAtEnd(B, done);
}

static void build_function(Cg *c)
{
    const Kernel *k = c->k;
    int nb = k->nargs + 4;
    LLVMTypeRef *bps = malloc((size_t)nb * sizeof *bps);
    for (int i = 0; i < k->nargs; i++)
        bps[i] = c->ptr;
    bps[k->nargs] = c->ptr;
    bps[k->nargs + 1] = bps[k->nargs + 2] = c->i64;
    bps[k->nargs + 3] = c->ptr;
    char body_name[300];
    snprintf(body_name, sizeof body_name, "%s.body", k->name);
    c->fn = LLVMAddFunction(c->mod, body_name, LLVMFunctionType(LLVMVoidTypeInContext(c->ctx), bps, (unsigned)nb, 0));
    LLVMSetLinkage(c->fn, LLVMInternalLinkage);
    cg_target_attrs(c, c->fn);
    LLVMAddAttributeAtIndex(c->fn, LLVMAttributeFunctionIndex, cg_enum_attr(c, "alwaysinline", 0));
    for (int i = 0; i < k->nargs; i++) {
        LLVMAddAttributeAtIndex(c->fn, (unsigned)i + 1, cg_enum_attr(c, "noalias", 0));
        if (k->bufs[i]->dir == ARG_IN) /* as on the GPU: the verifier refuses writes to inputs */
            LLVMAddAttributeAtIndex(c->fn, (unsigned)i + 1, cg_enum_attr(c, "readonly", 0));
    }

    build_entries(c);
    LLVMValueRef *cargs = malloc((size_t)nb * sizeof *cargs);

    /* the body */
    LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, c->fn, "entry"));
    LLVMValueRef params = LLVMGetParam(c->fn, (unsigned)k->nargs);
    for (int i = 0; i < k->nparams; i++) {
        LLVMValueRef slot = LLVMBuildGEP2(c->b, c->i64, params, (LLVMValueRef[]){cg_i64(c, i)}, 1, "");
        c->param[i] = LLVMBuildLoad2(c->b, c->i64, slot, k->params[i]->name);
    }
    for (int i = 0; i < k->nargs; i++)
        cargs[i] = LLVMGetParam(c->fn, (unsigned)i);
    setup_buffers(c, cargs);
    cg_count_tiles(c, k->body);
    BlockLoop bl = {0};
    for (int g = 0; g < k->ngrid; g++)
        bl.grid[g] = cg_expr(c, k->grid[g]);
    claim_loop(c, &bl, LLVMGetParam(c->fn, (unsigned)k->nargs + 1), LLVMGetParam(c->fn, (unsigned)k->nargs + 2),
               LLVMGetParam(c->fn, (unsigned)k->nargs + 3));
    cg_stream_fence(c);
    LLVMBuildRetVoid(c->b);
    free(cargs);
    free(bps);
}

/* Once per process, as LLVM's registries and options are the process's
 * (kernels compile on several threads at once: tilec sweep): the targets,
 * and loops unswitched on invariant conditions up to a larger body than
 * LLVM's default 50 — an inline exp (vmath.c) is ~25 instructions, and
 * compress.lua's pooling loop (two of them, a slot's row and column picked
 * by a select on the outer loop's variable) was no longer unswitched and
 * gathered every load: 0.108 -> 0.166 ms, 0.062 at 200.  (No vector
 * library: the CPU's math is vmath.c's arithmetic.) */
static void init_llvm(void)
{
    LLVMInitializeX86TargetInfo();
    LLVMInitializeX86Target();
    LLVMInitializeX86TargetMC();
    LLVMInitializeX86AsmPrinter();
    LLVMInitializeNVPTXTargetInfo();
    LLVMInitializeNVPTXTarget();
    LLVMInitializeNVPTXTargetMC();
    LLVMInitializeNVPTXAsmPrinter();
    const char *argv[] = {"tilec", "-unswitch-threshold=200"};
    LLVMParseCommandLineOptions(2, argv, NULL);
}

LLVMTargetMachineRef cg_target_machine(const TargetInfo *t, Diag *d)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, init_llvm);
    LLVMTargetRef target;
    char *err = NULL;
    if (LLVMGetTargetFromTriple(t->llvm_triple, &target, &err)) {
        SrcLoc none = {0};
        diag_error(d, none, "LLVM has no target for %s: %s", t->llvm_triple, err ? err : "?");
        LLVMDisposeMessage(err);
        return NULL;
    }
    return LLVMCreateTargetMachine(target, t->llvm_triple, t->llvm_cpu, t->llvm_features,
                                   LLVMCodeGenLevelAggressive, LLVMRelocPIC, LLVMCodeModelDefault);
}

/* LLVM's remarks ("loop not vectorized") are for compiler developers;
 * errors surface through return values instead. */
static void quiet_diagnostics(LLVMDiagnosticInfoRef info, void *ctx) { (void)info; (void)ctx; }

LLVMModuleRef cg_build_module(LLVMContextRef ctx, const Kernel *k, const TargetInfo *t,
                              LLVMTargetMachineRef *tm_out, CgTimes *times, Diag *d)
{
    double t0 = rt_now();
    LLVMContextSetDiagnosticHandler(ctx, quiet_diagnostics, NULL);
    if (!check_kernel(k, t, d))
        return NULL;
    LLVMTargetMachineRef tm = cg_target_machine(t, d);
    if (!tm)
        return NULL;
    Cg c = {.ctx = ctx, .k = k, .t = t};
    c.mod = LLVMModuleCreateWithNameInContext(k->name, ctx);
    LLVMSetTarget(c.mod, t->llvm_triple);
    LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(tm);
    char *dls = LLVMCopyStringRepOfTargetData(dl);
    LLVMSetDataLayout(c.mod, dls);
    LLVMDisposeMessage(dls);
    LLVMDisposeTargetData(dl);
    c.b = LLVMCreateBuilderInContext(ctx);
    c.i1 = LLVMInt1TypeInContext(ctx);
    c.i8 = LLVMInt8TypeInContext(ctx);
    c.i16 = LLVMInt16TypeInContext(ctx);
    c.i32 = LLVMInt32TypeInContext(ctx);
    c.i64 = LLVMInt64TypeInContext(ctx);
    c.f32 = LLVMFloatTypeInContext(ctx);
    c.ptr = LLVMPointerTypeInContext(ctx, 0);
    size_t n = (size_t)k->next_id + 8; /* + the block index and micro.c counters */
    c.var = calloc(n, sizeof *c.var);
    c.base = calloc(n, sizeof *c.base);
    c.stride = calloc(n, sizeof *c.stride);
    c.stream_ok = calloc(n, sizeof *c.stream_ok);
    c.stream_base = calloc(n, sizeof *c.stream_base);
    c.param = calloc((size_t)k->nparams + 1, sizeof *c.param);
    if (t->gpu_sm)
        cg_gpu_build_function(&c);
    else
        build_function(&c);
    LLVMDisposeBuilder(c.b);
    free(c.var);
    free(c.base);
    free(c.stride);
    free(c.stream_ok);
    free(c.stream_base);
    free(c.param);
    for (int i = 0; i < c.ntiles; i++)
        free(c.tiles[i].key);
    free(c.tiles);
    char *err = NULL;
    if (LLVMVerifyModule(c.mod, LLVMReturnStatusAction, &err)) {
        diag_error(d, k->loc, "internal error: LLVM rejected the IR for %s: %.300s", k->name, err);
        LLVMDisposeMessage(err);
        LLVMDisposeModule(c.mod);
        LLVMDisposeTargetMachine(tm);
        return NULL;
    }
    LLVMDisposeMessage(err);
    double t1 = rt_now();
    LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
    LLVMPassBuilderOptionsSetLoopVectorization(po, 1);
    LLVMPassBuilderOptionsSetSLPVectorization(po, 1);
    LLVMErrorRef perr = LLVMRunPasses(c.mod, "default<O3>", tm, po);
    LLVMDisposePassBuilderOptions(po);
    if (!perr && !t->gpu_sm) {
        LLVMTargetDataRef tdl = LLVMCreateTargetDataLayout(tm);
        cg_stream_rewrite(ctx, c.mod, tdl);
        LLVMDisposeTargetData(tdl);
        cg_minmax_rewrite(ctx, c.mod, strstr(t->llvm_features, "+avx512dq") != NULL);
    }
    if (times) {
        times->build = t1 - t0;
        times->optimise = rt_now() - t1;
    }
    if (perr) {
        char *msg = LLVMGetErrorMessage(perr);
        diag_error(d, k->loc, "internal error: LLVM passes failed: %s", msg);
        LLVMDisposeErrorMessage(msg);
        LLVMDisposeModule(c.mod);
        LLVMDisposeTargetMachine(tm);
        return NULL;
    }
    *tm_out = tm;
    return c.mod;
}
