/* micro.c — MICRO_GEMM: an MR x NR register tile of C += A·B.
 *
 * The accumulators live in MR x ceil(NR/W) vector registers (W f32 lanes)
 * for the whole K loop; each k loads ceil(NR/W) vectors of B (k-major and
 * unit-stride, as pass_lower packs it) and broadcasts one element of A per
 * row into a fused multiply-add.  A partial last vector uses masked loads
 * and stores.  bf16 and f16 inputs widen to f32 in registers.  Other input
 * dtypes take a scalar loop (correct, not fast). */
#include "codegen/cgctx.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_ROWS = 16, MAX_VECS = 8 };

typedef struct Micro {
    const Stmt *s;
    int mr, nv, w, rem; /* rows, vectors per row, lanes, lanes in the last */
    LLVMTypeRef vf32, velem;
    LLVMValueRef acc[MAX_ROWS][MAX_VECS]; /* allocas (promoted to registers) */
    Var *kvar;
} Micro;

/* An n-lane mask of the first `lanes` lanes. */
static LLVMValueRef lane_mask(Cg *c, int n, int lanes)
{
    LLVMValueRef bits[64];
    for (int i = 0; i < n; i++)
        bits[i] = LLVMConstInt(c->i1, i < lanes, 0);
    return LLVMConstVector(bits, (unsigned)n);
}

static LLVMValueRef mask(Cg *c, Micro *m, int lanes) { return lane_mask(c, m->w, lanes); }

/* A vector of type ty at p, its elements `align`-byte aligned; masked to
 * the first `lanes` (the others read 0) when fewer than ty has. */
static LLVMValueRef load_lanes(Cg *c, LLVMTypeRef ty, LLVMValueRef p, int lanes, unsigned align)
{
    int n = (int)LLVMGetVectorSize(ty);
    if (lanes == n) {
        LLVMValueRef v = LLVMBuildLoad2(c->b, ty, p, "");
        LLVMSetAlignment(v, align);
        return v;
    }
    LLVMTypeRef tys[2] = {ty, c->ptr};
    LLVMValueRef args[4] = {p, LLVMConstInt(c->i32, align, 0), lane_mask(c, n, lanes), LLVMConstNull(ty)};
    return cg_intrinsic(c, "llvm.masked.load", tys, 2, args, 4);
}

static void vstore(Cg *c, Micro *m, LLVMValueRef v, LLVMValueRef p, int lanes)
{
    if (lanes == m->w) {
        LLVMSetAlignment(LLVMBuildStore(c->b, v, p), 4);
        return;
    }
    LLVMTypeRef tys[2] = {LLVMTypeOf(v), c->ptr};
    LLVMValueRef args[4] = {v, p, LLVMConstInt(c->i32, 4, 0), mask(c, m, lanes)};
    cg_intrinsic(c, "llvm.masked.store", tys, 2, args, 4);
}

static int lanes_of(const Micro *m, int v) { return v == m->nv - 1 && m->rem ? m->rem : m->w; }

static LLVMValueRef half_exact(Cg *c, LLVMValueRef v)
{
    LLVMValueRef h = LLVMBuildLShr(c->b, v, cg_i64(c, 1), "");
    LLVMSetExact(h, 1);
    return h;
}

/* Pointer to element (r0 + i, c0 + j) of the matrix of region r (its last
 * two dims; a block-scaled B may have leading unit dims).  Packed e2m1:
 * the byte that holds the element — pass_lower keeps the window's column,
 * the steps j and the outer strides even (the last stride is 1), so every
 * term halves exactly, which keeps the address an induction LLVM can
 * strength-reduce. */
static LLVMValueRef at(Cg *c, const Region *r, LLVMValueRef i, LLVMValueRef j)
{
    const Buffer *b = r->buf;
    int last = b->rank - 1;
    LLVMValueRef idx[IR_MAX_RANK];
    for (int d = 0; d < b->rank; d++)
        idx[d] = cg_expr(c, r->off[d]);
    idx[last - 1] = LLVMBuildAdd(c->b, idx[last - 1], i, "");
    if (b->dtype != DT_F4E2M1) {
        idx[last] = LLVMBuildAdd(c->b, idx[last], j, "");
        return cg_elem_ptr(c, b, idx);
    }
    LLVMValueRef off = LLVMBuildAdd(c->b, half_exact(c, idx[last]), half_exact(c, j), "");
    for (int d = 0; d < last; d++)
        off = LLVMBuildAdd(c->b, off, LLVMBuildMul(c->b, idx[d], half_exact(c, c->stride[b->id][d]), ""), "");
    return LLVMBuildGEP2(c->b, c->i8, c->base[b->id], &off, 1, "");
}

static LLVMValueRef widen_vec(Cg *c, Micro *m, DType dt, LLVMValueRef v)
{
    if (dt == DT_BF16)
        return cg_bf16_to_f32(c, v);
    if (dt == DT_F16)
        return LLVMBuildFPExt(c->b, v, m->vf32, "");
    return v;
}

static LLVMValueRef splat(Cg *c, Micro *m, LLVMValueRef x)
{
    LLVMValueRef v = LLVMBuildInsertElement(c->b, LLVMGetPoison(m->vf32), x, LLVMConstInt(c->i32, 0, 0), "");
    LLVMTypeRef mty = LLVMVectorType(c->i32, (unsigned)m->w);
    return LLVMBuildShuffleVector(c->b, v, LLVMGetPoison(m->vf32), LLVMConstNull(mty), "");
}

/* vdpbf16ps (512-bit): its declaration, type and operand types, read off
 * the declaration (LLVM has used both i32 and bfloat vectors for them). */
typedef struct Dpbf16 {
    LLVMValueRef fn;
    LLVMTypeRef ty, params[3];
} Dpbf16;

static Dpbf16 dpbf16(Cg *c)
{
    const char *name = "llvm.x86.avx512bf16.dpbf16ps.512";
    Dpbf16 x = {.fn = LLVMGetIntrinsicDeclaration(c->mod, LLVMLookupIntrinsicID(name, strlen(name)), NULL, 0)};
    x.ty = LLVMGlobalGetValueType(x.fn);
    LLVMGetParamTypes(x.ty, x.params);
    return x;
}

/* One k-pair with vdpbf16ps: acc += A(i, 2kk)·B(2kk, n) + A(i, 2kk+1)·B(2kk+1, n). */
static void pair_step(Cg *c, void *ctx)
{
    Micro *m = ctx;
    const Stmt *s = m->s;
    const Region *a = &s->u.gemm.a, *b = &s->u.gemm.b;
    LLVMValueRef kk = c->var[m->kvar->id];
    Dpbf16 dp = dpbf16(c);
    LLVMTypeRef pairs16 = LLVMVectorType(c->i16, (unsigned)(2 * m->w));
    LLVMValueRef bv[MAX_VECS];
    for (int v = 0; v < m->nv; v++) {
        LLVMValueRef p = at(c, b, kk, cg_i64(c, (int64_t)2 * v * m->w));
        int lanes = lanes_of(m, v);
        LLVMValueRef raw;
        if (lanes == m->w) {
            raw = LLVMBuildLoad2(c->b, pairs16, p, "");
            LLVMSetAlignment(raw, 2);
        } else {
            LLVMValueRef bits[64];
            for (int i = 0; i < 2 * m->w; i++)
                bits[i] = LLVMConstInt(c->i1, i < 2 * lanes, 0);
            LLVMTypeRef tys[2] = {pairs16, c->ptr};
            LLVMValueRef args[4] = {p, LLVMConstInt(c->i32, 2, 0), LLVMConstVector(bits, (unsigned)(2 * m->w)),
                                    LLVMConstNull(pairs16)};
            raw = cg_intrinsic(c, "llvm.masked.load", tys, 2, args, 4);
        }
        bv[v] = LLVMBuildBitCast(c->b, raw, dp.params[2], "");
    }
    LLVMValueRef two_kk = LLVMBuildMul(c->b, kk, cg_i64(c, 2), "");
    LLVMTypeRef vi32 = LLVMVectorType(c->i32, (unsigned)m->w);
    for (int i = 0; i < m->mr; i++) {
        LLVMValueRef pa = at(c, a, cg_i64(c, i), two_kk);
        LLVMValueRef pair = LLVMBuildLoad2(c->b, c->i32, pa, "");
        LLVMSetAlignment(pair, 2);
        LLVMValueRef v = LLVMBuildInsertElement(c->b, LLVMGetPoison(vi32), pair, LLVMConstInt(c->i32, 0, 0), "");
        v = LLVMBuildShuffleVector(c->b, v, LLVMGetPoison(vi32), LLVMConstNull(vi32), "");
        LLVMValueRef av = LLVMBuildBitCast(c->b, v, dp.params[1], "");
        for (int w = 0; w < m->nv; w++) {
            LLVMValueRef acc = LLVMBuildLoad2(c->b, m->vf32, m->acc[i][w], "");
            LLVMValueRef args[3] = {acc, av, bv[w]};
            LLVMBuildStore(c->b, LLVMBuildCall2(c->b, dp.ty, dp.fn, args, 3, ""), m->acc[i][w]);
        }
    }
}

static void k_step(Cg *c, void *ctx)
{
    Micro *m = ctx;
    const Stmt *s = m->s;
    const Region *a = &s->u.gemm.a, *b = &s->u.gemm.b;
    LLVMValueRef k = c->var[m->kvar->id];
    LLVMValueRef bv[MAX_VECS];
    for (int v = 0; v < m->nv; v++) {
        LLVMValueRef p = at(c, b, k, cg_i64(c, (int64_t)v * m->w));
        bv[v] = widen_vec(c, m, b->buf->dtype, load_lanes(c, m->velem, p, lanes_of(m, v), 4));
    }
    for (int i = 0; i < m->mr; i++) {
        LLVMValueRef ii = cg_i64(c, i);
        LLVMValueRef p = s->u.gemm.trans_a ? at(c, a, k, ii) : at(c, a, ii, k);
        LLVMValueRef x = cg_widen(c, a->buf->dtype, LLVMBuildLoad2(c->b, cg_storage_type(c, a->buf->dtype), p, ""));
        LLVMValueRef ax = splat(c, m, x);
        for (int v = 0; v < m->nv; v++) {
            LLVMValueRef acc = LLVMBuildLoad2(c->b, m->vf32, m->acc[i][v], "");
            LLVMValueRef args[3] = {ax, bv[v], acc};
            LLVMTypeRef ty = m->vf32;
            LLVMBuildStore(c->b, cg_intrinsic(c, "llvm.fma", &ty, 1, args, 3), m->acc[i][v]);
        }
    }
}

static Var *temp_var(Cg *c, const char *name, int slot)
{
    /* Codegen-only counters use the slots past the kernel's own ids. */
    Var *v = calloc(1, sizeof *v);
    v->name = name;
    v->id = c->k->next_id + slot;
    return v;
}

/* An alloca in the entry block, where SROA promotes it to a register. */
static LLVMValueRef entry_alloca(Cg *c, LLVMTypeRef ty)
{
    LLVMBuilderRef eb = LLVMCreateBuilderInContext(c->ctx);
    LLVMBasicBlockRef entry = LLVMGetEntryBasicBlock(c->fn);
    LLVMValueRef first = LLVMGetFirstInstruction(entry);
    if (first)
        LLVMPositionBuilderBefore(eb, first);
    else
        LLVMPositionBuilderAtEnd(eb, entry);
    LLVMValueRef a = LLVMBuildAlloca(eb, ty, "acc");
    LLVMDisposeBuilder(eb);
    return a;
}

/* ------------------------------------------------ dot tiles (trans_b) */

/* MICRO_GEMM with B as [N, K] (trans_b) on the CPU: C[mr, nr] (+)= A·Bᵀ as
 * mr·nr dot products along K, which is contiguous in both operands.  Each
 * product keeps W-lane partial sums in a register over the K loop and sums
 * them across lanes at the end.  B is read where it lies, in its own dtype:
 * a weight matrix in fp8 is widened in registers and never packed, so a
 * decode GEMV reads only the compressed bytes. */
enum { MAX_DOT_ROWS = 8, MAX_DOT_COLS = 16 };

typedef struct Dot {
    const Stmt *s;
    int mr, nr, w, chunk; /* chunk: elements per step, w or (8-bit operands, bf16 pairs) 2w */
    bool pairs;           /* bf16 x bf16 with vdpbf16ps: the elements stay bf16 */
    bool e4m3_fast;       /* pairs over e4m3 B: the block being emitted has no exponent-0 codes (e4m3_words) */
    bool prescaled;       /* micro_gemm a_prescaled: A's scale code e stands for e - clamp(e) + 127 (residual_code) */
    bool fold;            /* the scales may fold into the operands (fold_scales) */
    bool folding;         /* ... and the loop being emitted does (fold_words, e2m1_fold_offsets) */
    bool a_unit;          /* the loop being emitted: a prescaled A's residual scales are all 1 (a_unit_versions) */
    bool prefetch_next;   /* fetch a later tile's B rows while this one runs */
    int64_t pf_ahead;     /* ... pf_ahead rows on (prefetch_ahead) */
    bool lift_a;          /* a_lifted: A staged lifted, e4m3 B widened straight to f32 */
    bool e2m1_lut;        /* packed e2m1 B through a byte table (e2m1_lut_parts) */
    bool lut_pairs;       /* e2m1_lut: blocks in pairs, 64 elements decoded at once */
    bool t8;              /* e2m1_lut beside A in e2m1 order (micro_gemm a_decode_order): e2m1_t8_parts */
    bool pair8;           /* the same beside a bf16 A: 128 weights as bf16 words, vdpbf16ps (e2m1_pair_part) */
    bool words;           /* pairs over e4m3 B beside A in its decode order (a_decode_order): e4m3_word_parts */
    int lut_half;         /* lut_pairs: the block of the pair being emitted */
    LLVMValueRef lut_buf; /* e2m1_lut: [64 x i8] scratch per column */
    LLVMTypeRef vf32;
    LLVMValueRef acc[MAX_DOT_ROWS][MAX_DOT_COLS];
    LLVMValueRef acc_odd[MAX_DOT_ROWS][MAX_DOT_COLS]; /* a tile of few sums: odd parts' or steps' chains */
    bool odd_step;        /* a pair tile with acc_odd, or words: the step being emitted is a pair's second */
    LLVMValueRef odd_part[MAX_DOT_COLS]; /* words: column j's B for the odd step, decoded by the even one */
    Var *kvar;
    /* Block scales (a_scale, b_scale): rows of the operand per scale row,
     * elements of K per scale column (bk_a, bk_b: multiples of chunk, the
     * verifier's 32, one a multiple of the other).  Two ways to apply them:
     *  - promoted (A's, and B's unless in a table): acc holds a block's
     *    unscaled sums, added at its end times the block's scales into
     *    total — one FMA per accumulator per block of `block` elements
     *    (the finer scale's), the reference's "promotion" in registers;
     *  - packed e2m1 B's with an f32 table (b_in_table; not e2m1_lut): in
     *    the decoding table, row_table[j], rebuilt every bk_b elements
     *    (which divide a promoted block), at no cost per element.
     * The K loop runs per promoted block (kbvar), per table block in it
     * (ktvar) and per step (kvar). */
    const Region *a_scale, *b_scale;
    int64_t a_rows_per_scale, b_rows_per_scale, bk_a, bk_b, block;
    bool promote, b_in_table;
    Var *kbvar, *ktvar;
    LLVMValueRef k0, row_table[MAX_DOT_COLS];
    LLVMValueRef total[MAX_DOT_ROWS][MAX_DOT_COLS]; /* promoted: the running sums */
    LLVMValueRef scale_buf[2]; /* UE8M0 scales decoded (decode_scales), A's and B's */
    LLVMValueRef fold_words[MAX_DOT_COLS][2]; /* folding: column j's block's rebias and exponent-0 table (e4m3_words),
                                               * or a Dot.pair8 tile's exponent offsets (e2m1_fold_offsets) */
    int64_t scale_cols[2], scale_rows[2]; /* scale_buf's shapes */
    struct NanScan *nans; /* e4m3 B: its NaN codes, scanned apart (nan_scan) */
} Dot;

typedef struct NanScan NanScan;
static void nan_scan(Cg *c, NanScan *ns, LLVMValueRef k0, int64_t len);

static LLVMValueRef splat_i(Cg *c, LLVMTypeRef elem, int w, unsigned long long v)
{
    LLVMValueRef k[64];
    for (int i = 0; i < w; i++)
        k[i] = LLVMConstInt(elem, v, 0);
    return LLVMConstVector(k, (unsigned)w);
}

/* The dtypes a dot tile widens in vector registers. */
static bool dot_dtype(DType t)
{
    return t == DT_F32 || t == DT_F16 || t == DT_BF16 || t == DT_F8E4M3 || t == DT_F8E5M2;
}

/* n stored elements of dtype t → n f32 lanes.  The fp8 formats go through
 * f16, which holds both exactly and which F16C converts in one instruction:
 * e5m2 is the top byte of an f16; e4m3's exponent and mantissa fit f16's
 * fields as they are (subnormals included), with bias 7 instead of 15, so
 * the value comes out 2^-8 too small — dot_gemm scales the finished sum
 * back (dot_scale), which is exact.  All the bit work is on 16-bit lanes,
 * twice as many per register.  e4m3's S.1111.111 code becomes an f16 NaN
 * here only with `nan`; without, it comes out finite (±480 · 2^-8), and the
 * caller must make the sum NaN itself (nan_scan: B's weights, scanned
 * apart, which is cheaper than three instructions per register). */
static LLVMValueRef dot_widen(Cg *c, DType t, LLVMValueRef raw, int n, bool nan)
{
    LLVMBuilderRef B = c->b;
    LLVMTypeRef vf32 = LLVMVectorType(c->f32, (unsigned)n), vi16 = LLVMVectorType(c->i16, (unsigned)n);
    LLVMTypeRef vhalf = LLVMVectorType(LLVMHalfTypeInContext(c->ctx), (unsigned)n);
    switch (t) {
    case DT_F32: return raw;
    case DT_F16: return LLVMBuildFPExt(B, raw, vf32, "");
    case DT_BF16: return cg_bf16_to_f32(c, raw);
    case DT_F8E5M2: {
        LLVMValueRef h = LLVMBuildShl(B, LLVMBuildZExt(B, raw, vi16, ""), splat_i(c, c->i16, n, 8), "");
        return LLVMBuildFPExt(B, LLVMBuildBitCast(B, h, vhalf, ""), vf32, "");
    }
    case DT_F8E4M3: {
        /* s.eeee.mmm sign-extended to 16 bits and shifted left by 7 puts
         * e and m in f16's fields and s in bit 15 — and a copy of s in bit
         * 14, the top exponent bit, which is cleared.  The NaN code .1111.111
         * is the one whose e and m carry into bit 14 when 1 is added at m's
         * lowest bit: that bit, or-ed in, makes an f16 NaN (exponent 11111).
         * (Arithmetic, not a select: LLVM would move a select past the
         * conversion, onto twice as many 32-bit lanes.) */
        LLVMValueRef h = LLVMBuildShl(B, LLVMBuildSExt(B, raw, vi16, ""), splat_i(c, c->i16, n, 7), "");
        h = LLVMBuildAnd(B, h, splat_i(c, c->i16, n, 0xbfff), "");
        if (nan) {
            LLVMValueRef carry = LLVMBuildAnd(B, LLVMBuildAdd(B, h, splat_i(c, c->i16, n, 0x80), ""),
                                              splat_i(c, c->i16, n, 0x4000), "");
            h = LLVMBuildOr(B, h, carry, "");
        }
        return LLVMBuildFPExt(B, LLVMBuildBitCast(B, h, vhalf, ""), vf32, "");
    }
    default: abort(); /* dot_dtype() said no */
    }
}

/* What dot_widen's values must be multiplied by to be the stored ones. */
static double dot_scale(DType t) { return t == DT_F8E4M3 ? 256.0 : 1.0; }

LLVMValueRef cg_widen_lanes(Cg *c, DType t, LLVMValueRef raw, int n)
{
    LLVMValueRef v = dot_widen(c, t, raw, n, true);
    if (dot_scale(t) == 1.0)
        return v;
    LLVMValueRef k[64];
    for (int i = 0; i < n; i++)
        k[i] = LLVMConstReal(c->f32, dot_scale(t));
    return LLVMBuildFMul(c->b, v, LLVMConstVector(k, (unsigned)n), "");
}

/* An a_lifted tile (Dot.lift_a) widens B straight into f32's fields: the byte
 * sign-extended to 32 bits and shifted left by 20 holds e and m where f32
 * keeps its exponent's low four bits and its mantissa's top three (copies
 * of s above them, cleared; s itself stays in bit 31), so the value is the
 * stored one times 2^-120, subnormals included (f32's exponent-0 values
 * scale the same way).  Three integer operations per 8 weights and no
 * conversion: the F16C route spends a lane-crossing extension and two
 * vcvtph2ps per 16, which bound the K loop on Zen 3 (fp8 weights in L1,
 * 8 rows: 11.6 -> 15.9 GB/s, a C loop of each).  Products of such tiny
 * values would fall below f32's normal range, so A comes staged by
 * lowering as an f32 copy of its e4m3 values lifted to a·2^112 (micro_gemm
 * a_lifted, IR_A_LIFT_EXP): |a| <= 448 stays below 2^121, and every
 * product a·b·2^-8 is an exact f32 normal (e4m3 values are multiples of
 * 2^-9, products of 2^-18).  (One-row tiles lifted a raw e4m3 A in
 * registers, one multiply per A register, until lowering staged it there
 * too, once per launch with pass_hoist; a raw e4m3 A now takes the F16C
 * route.)  Beside any other f32 A (nothing to lift it by safely), B would need the multiply
 * instead, one per register of weights on the FMA ports: tall tiles, where
 * a widened register feeds four FMAs or more, ran 15-20% slower than with
 * the F16C route (fp8_gemm 4096^2, one thread, M = 4 and 16).  B's NaN
 * codes come out finite, as in dot_widen's fast form (nan_scan).  B's
 * subnormal codes come out f32 subnormals, which cost an assist per FMA on
 * Intel cores: lowering lifts A only for targets without them (TargetInfo
 * subnormal_assists). */
enum { DIRECT_B_EXP = -120 };

static LLVMValueRef e4m3_direct(Cg *c, LLVMValueRef raw, int n)
{
    LLVMBuilderRef B = c->b;
    LLVMValueRef x = LLVMBuildSExt(B, raw, LLVMVectorType(c->i32, (unsigned)n), "");
    x = LLVMBuildShl(B, x, splat_i(c, c->i32, n, 20), "");
    x = LLVMBuildAnd(B, x, splat_i(c, c->i32, n, 0x87f00000u), "");
    return LLVMBuildBitCast(B, x, LLVMVectorType(c->f32, (unsigned)n), "");
}

/* d->chunk (or, masked, `lanes`) raw elements of row `row` of r from k on;
 * masked-off lanes read as 0. */
static LLVMValueRef dot_raw(Cg *c, Dot *d, const Region *r, int row, LLVMValueRef k, int lanes)
{
    DType t = r->buf->dtype;
    int n = d->chunk;
    LLVMTypeRef ty = LLVMVectorType(cg_storage_type(c, t), (unsigned)n);
    return load_lanes(c, ty, at(c, r, cg_i64(c, row), k), lanes, (unsigned)(dt_bits(t) / 8));
}

/* The same as f32 lanes (an a_lifted tile's B: e4m3_direct).  B's e4m3
 * NaN codes are nan_scan's (apart from the widening); A's are widened
 * exactly here. */
static LLVMValueRef dot_load(Cg *c, Dot *d, const Region *r, int row, LLVMValueRef k, int lanes)
{
    bool is_b = r == &d->s->u.gemm.b;
    LLVMValueRef raw = dot_raw(c, d, r, row, k, lanes);
    if (d->lift_a && is_b)
        return e4m3_direct(c, raw, d->chunk);
    return dot_widen(c, r->buf->dtype, raw, d->chunk, !is_b);
}

/* Lanes [h·W, (h+1)·W) of a chunk. */
static LLVMValueRef dot_part(Cg *c, Dot *d, LLVMValueRef v, int h)
{
    if (d->chunk == d->w)
        return v;
    LLVMValueRef idx[32];
    for (int i = 0; i < d->w; i++)
        idx[i] = LLVMConstInt(c->i32, (unsigned long long)(h * d->w + i), 0);
    return LLVMBuildShuffleVector(c->b, v, LLVMGetPoison(LLVMTypeOf(v)), LLVMConstVector(idx, (unsigned)d->w), "");
}

/* prefetcht0 of B's row `row` at column k: a plain GEP, so a row past the
 * window (the next tile's, or past the matrix) is only a hint. */
static void prefetch_row(Cg *c, const Region *b, int row, LLVMValueRef k)
{
    cg_prefetch(c, at(c, b, cg_i64(c, row), k), 3);
}

/* 32 e4m3 bytes → 32 bf16 words of the same values (the pair tiles' B
 * beside a bf16 A).  bf16 holds every e4m3 value as a normal: a normal
 * code s.eeee.mmm keeps its fields, its exponent rebiased 7 → 127 — the
 * sign-extended byte shifted left by 4 puts s in bit 15 and e, m where
 * bf16 has their low bits; a mask clears the sign's copies, an add of
 * 120 << 7 rebiases: four instructions per 32 weights (`fast`).  The
 * eight codes of exponent 0 (zero and the subnormals m·2^-9) need three
 * more (`!fast`): looked up in a word table by the byte's low five bits
 * (vpermw), which for them are m, merged under a mask (the sign or-ed in
 * after).  The tiles take the fast form for blocks without such codes
 * (e4m3_small, checked per block: rare in block-scaled weights, whose
 * values sit within 2^9 of their block's largest).  The NaN codes come
 * out finite (±480), as in dot_widen's fast form (nan_scan). */
static LLVMValueRef e4m3_small_table(Cg *c)
{
    LLVMValueRef table[32];
    for (int i = 0; i < 32; i++) /* codes 0-7: m·2^-9, exact in bf16 */
        table[i] = LLVMConstInt(c->i16, i < 8 ? dt_f32_to_bf16(dt_e4m3_to_f32((uint8_t)i)) : 0, 0);
    return LLVMConstVector(table, 32);
}

/* The bf16 words of 32 e4m3 codes from x, the codes sign-extended to 16
 * bits (needed only where !fast), and `shifted`, words that hold a code's
 * sign in bit 15 and its exponent and mantissa in bits 10-4, as x << 4
 * does (bits 14-11 and 3-0 are masked off).  fold: {rebias, table} of a
 * folded block (fold_words) in place of the constants — the exponent
 * rebias and the exponent-0 codes' values with the block's scale in them —
 * or NULL. */
static LLVMValueRef e4m3_decode(Cg *c, LLVMValueRef x, LLVMValueRef shifted, bool fast, LLVMValueRef const *fold)
{
    LLVMBuilderRef B = c->b;
    LLVMValueRef rebias = fold ? fold[0] : splat_i(c, c->i16, 32, 120 << 7);
    if (fast) {
        LLVMValueRef fields = LLVMBuildAnd(B, shifted, splat_i(c, c->i16, 32, 0x87f0), "");
        return LLVMBuildAdd(B, fields, rebias, "");
    }
    LLVMValueRef normal = LLVMBuildAnd(B, shifted, splat_i(c, c->i16, 32, 0x07f0), "");
    normal = LLVMBuildAdd(B, normal, rebias, "");
    LLVMValueRef args[2] = {fold ? fold[1] : e4m3_small_table(c), x};
    LLVMValueRef small = cg_intrinsic(c, "llvm.x86.avx512.permvar.hi.512", NULL, 0, args, 2);
    LLVMValueRef subnormal = LLVMBuildICmp(B, LLVMIntEQ, LLVMBuildAnd(B, x, splat_i(c, c->i16, 32, 0x78), ""),
                                           LLVMConstNull(LLVMTypeOf(x)), "");
    LLVMValueRef mag = LLVMBuildSelect(B, subnormal, small, normal, "");
    return LLVMBuildOr(B, mag, LLVMBuildAnd(B, x, splat_i(c, c->i16, 32, 0x8000), ""), "");
}

/* 32 raw e4m3 bytes as bf16 words (e4m3_decode). */
static LLVMValueRef e4m3_words(Cg *c, LLVMValueRef raw, bool fast, LLVMValueRef const *fold)
{
    LLVMValueRef x = LLVMBuildSExt(c->b, raw, LLVMVectorType(c->i16, 32), "");
    return e4m3_decode(c, x, LLVMBuildShl(c->b, x, splat_i(c, c->i16, 32, 4), ""), fast, fold);
}

/* Column j's 64 e4m3 weights from k beside A in their decode order
 * (Dot.words, ir.h's IR_E4M3_WORD_BLOCK): read as 32 words, the bf16
 * words of the low bytes (returned: the even columns, A's part 0) and of
 * the high bytes (*odd: part 1).  A high byte sits where x << 4 wants it
 * after one arithmetic shift right by 4, a low byte after a shift left by
 * 8 and that one — three shifts per 64 weights where e4m3_words spends
 * two lane-crossing widenings and two shifts.  (The exact form takes
 * the sign-extended bytes as well.) */
static LLVMValueRef e4m3_word_parts(Cg *c, Dot *d, int j, LLVMValueRef k, LLVMValueRef *odd)
{
    LLVMBuilderRef B = c->b;
    LLVMTypeRef v32 = LLVMVectorType(c->i16, 32);
    LLVMValueRef w = LLVMBuildLoad2(B, v32, at(c, &d->s->u.gemm.b, cg_i64(c, j), k), "");
    LLVMSetAlignment(w, 1);
    LLVMValueRef four = splat_i(c, c->i16, 32, 4), eight = splat_i(c, c->i16, 32, 8);
    LLVMValueRef low = LLVMBuildShl(B, w, eight, ""), *fold = d->folding ? d->fold_words[j] : NULL;
    if (d->e4m3_fast) {
        *odd = e4m3_decode(c, NULL, LLVMBuildAShr(B, w, four, ""), true, fold);
        return e4m3_decode(c, NULL, LLVMBuildAShr(B, low, four, ""), true, fold);
    }
    LLVMValueRef xl = LLVMBuildAShr(B, low, eight, ""), xh = LLVMBuildAShr(B, w, eight, "");
    *odd = e4m3_decode(c, xh, LLVMBuildShl(B, xh, four, ""), false, fold);
    return e4m3_decode(c, xl, LLVMBuildShl(B, xl, four, ""), false, fold);
}

/* bf16 pairs: acc[i][j] += Σ over 2W elements with vdpbf16ps, which sums
 * adjacent pairs into each f32 lane — along K, the order a dot product
 * needs, so neither operand is rearranged.  Masked-off elements are +0.
 * An e4m3 B is decoded to bf16 words (e4m3_words): its values and their
 * products with A's (bf16 copies of e4m3 activations, lowering's
 * e4m3_pairs) are exact normals, so the instruction's flushing of
 * subnormals changes nothing. */
static void dot_pairs(Cg *c, Dot *d, LLVMValueRef k, int lanes)
{
    const Stmt *s = d->s;
    Dpbf16 dp = dpbf16(c);
    LLVMValueRef av[MAX_DOT_ROWS];
    for (int i = 0; i < d->mr; i++)
        av[i] = LLVMBuildBitCast(c->b, dot_raw(c, d, &s->u.gemm.a, i, k, lanes), dp.params[1], "");
    for (int j = 0; j < d->nr; j++) {
        LLVMValueRef bv;
        if (d->words) {
            bv = d->odd_step ? d->odd_part[j] : e4m3_word_parts(c, d, j, k, &d->odd_part[j]);
        } else {
            bv = dot_raw(c, d, &s->u.gemm.b, j, k, lanes);
            if (s->u.gemm.b.buf->dtype == DT_F8E4M3)
                bv = e4m3_words(c, bv, d->e4m3_fast, d->folding ? d->fold_words[j] : NULL);
        }
        bv = LLVMBuildBitCast(c->b, bv, dp.params[2], "");
        /* (an odd step of 32 e4m3 bytes shares the even one's line) */
        if (d->prefetch_next && !(d->odd_step && d->chunk * dt_bits(s->u.gemm.b.buf->dtype) < 512))
            prefetch_row(c, &s->u.gemm.b, d->pf_ahead + j, k);
        for (int i = 0; i < d->mr; i++) {
            LLVMValueRef acc = d->odd_step && d->acc_odd[i][j] ? d->acc_odd[i][j] : d->acc[i][j];
            LLVMValueRef args[3] = {LLVMBuildLoad2(c->b, d->vf32, acc, ""), av[i], bv};
            LLVMBuildStore(c->b, LLVMBuildCall2(c->b, dp.ty, dp.fn, args, 3, ""), acc);
        }
    }
}

/* ------------------------------------------------ block-scaled B */

static LLVMValueRef splat_f(Cg *c, Dot *d, LLVMValueRef x)
{
    LLVMValueRef v = LLVMBuildInsertElement(c->b, LLVMGetPoison(d->vf32), x, LLVMConstInt(c->i32, 0, 0), "");
    LLVMTypeRef mty = LLVMVectorType(c->i32, (unsigned)d->w);
    return LLVMBuildShuffleVector(c->b, v, LLVMGetPoison(d->vf32), LLVMConstNull(mty), "");
}

/* v as a constant of type ty: a scalar, or splat over a vector. */
static LLVMValueRef konst(Cg *c, LLVMTypeRef ty, unsigned long long v)
{
    if (LLVMGetTypeKind(ty) != LLVMVectorTypeKind)
        return LLVMConstInt(ty, v, 0);
    return splat_i(c, LLVMGetElementType(ty), (int)LLVMGetVectorSize(ty), v);
}

/* UE8M0 codes (an i8 or a vector of them) as f32, without branches (LLVM
 * turns cg_widen's selects into jumps): the byte in the exponent field,
 * and for 0 (2^-127) and 255 (NaN) the top mantissa bit too. */
static LLVMValueRef e8m0_to_f32(Cg *c, LLVMValueRef raw)
{
    LLVMBuilderRef B = c->b;
    LLVMTypeRef rt = LLVMTypeOf(raw);
    bool vec = LLVMGetTypeKind(rt) == LLVMVectorTypeKind;
    unsigned n = vec ? LLVMGetVectorSize(rt) : 1;
    LLVMTypeRef i32 = vec ? LLVMVectorType(c->i32, n) : c->i32, f32 = vec ? LLVMVectorType(c->f32, n) : c->f32;
    LLVMValueRef e = LLVMBuildZExt(B, raw, i32, "");
    LLVMValueRef edge = LLVMBuildICmp(B, LLVMIntULE, LLVMBuildAnd(B, LLVMBuildAdd(B, e, konst(c, i32, 1), ""),
                                                                  konst(c, i32, 255), ""),
                                      konst(c, i32, 1), "");
    LLVMValueRef bits = LLVMBuildOr(B, LLVMBuildShl(B, e, konst(c, i32, 23), ""),
                                    LLVMBuildShl(B, LLVMBuildZExt(B, edge, i32, ""), konst(c, i32, 22), ""), "");
    return LLVMBuildBitCast(B, bits, f32, "");
}

/* The code of what is left of a prescaled A's scale code e (micro_gemm
 * a_prescaled: A holds its values times clamp(e), clamped into the fold
 * window): e - clamp(e) + 127, in [54, 213] — 127 within the window — and
 * 255 (NaN) kept.  raw: an i8 or a vector of them; the arithmetic wraps
 * mod 256 on the way, the result does not. */
static LLVMValueRef residual_code(Cg *c, LLVMValueRef raw)
{
    LLVMBuilderRef B = c->b;
    LLVMTypeRef ty = LLVMTypeOf(raw);
    LLVMValueRef args[2] = {raw, konst(c, ty, IR_FOLD_SCALE_LO)};
    LLVMValueRef clamped = cg_intrinsic(c, "llvm.umax", &ty, 1, args, 2);
    args[0] = clamped;
    args[1] = konst(c, ty, IR_FOLD_SCALE_HI);
    clamped = cg_intrinsic(c, "llvm.umin", &ty, 1, args, 2);
    LLVMValueRef rest = LLVMBuildAdd(B, LLVMBuildSub(B, raw, clamped, ""), konst(c, ty, 127), "");
    LLVMValueRef nan = LLVMBuildICmp(B, LLVMIntEQ, raw, konst(c, ty, 255), "");
    return LLVMBuildSelect(B, nan, raw, rest, "");
}

/* A UE8M0 scale code of operand x (0: A, 1: B) as an f32: a prescaled A's
 * residual. */
static LLVMValueRef scale_code_value(Cg *c, const Dot *d, int x, LLVMValueRef raw)
{
    return e8m0_to_f32(c, x == 0 && d->prescaled ? residual_code(c, raw) : raw);
}

/* The scale of row `row` of operand x (0: A, 1: B) in K block kb (counted
 * in that scale's blocks), as an f32: from the tile's decoded scales
 * (decode_scales), else one scalar load per row per block. */
static LLVMValueRef block_scale(Cg *c, Dot *d, int x, int row, LLVMValueRef kb)
{
    LLVMBuilderRef B = c->b;
    const Region *sc = x ? d->b_scale : d->a_scale;
    int64_t rows_per = x ? d->b_rows_per_scale : d->a_rows_per_scale;
    if (d->scale_buf[x]) {
        LLVMValueRef i = LLVMBuildAdd(B, cg_i64(c, row / rows_per * d->scale_cols[x]), kb, "");
        return LLVMBuildLoad2(B, c->f32, LLVMBuildGEP2(B, c->f32, d->scale_buf[x], &i, 1, ""), "");
    }
    LLVMValueRef p = at(c, sc, cg_i64(c, row / rows_per), kb);
    LLVMValueRef raw = LLVMBuildLoad2(B, cg_storage_type(c, sc->buf->dtype), p, "");
    return sc->buf->dtype == DT_E8M0 ? scale_code_value(c, d, x, raw) : cg_widen(c, sc->buf->dtype, raw);
}

/* A tile's UE8M0 scale rows decoded into f32 once, a register at a time, before its
 * K loop: decoded per block inside it, LLVM vectorised the scalar decodes
 * of the tile's columns together into ~12 vector operations per block on
 * the FMA ports (e2m1 at one row: as many as the 32-wide block's FMAs). */
typedef struct ScaleDecode {
    Dot *d;
    int x, srow;
    Var *kv;
} ScaleDecode;

static void decode_scale(Cg *c, Dot *d, int x, int srow, LLVMValueRef k, int n)
{
    const Region *sc = x ? d->b_scale : d->a_scale;
    LLVMTypeRef ty = n > 1 ? LLVMVectorType(c->i8, (unsigned)n) : c->i8;
    LLVMValueRef raw = LLVMBuildLoad2(c->b, ty, at(c, sc, cg_i64(c, srow), k), "");
    LLVMSetAlignment(raw, 1);
    LLVMValueRef i = LLVMBuildAdd(c->b, cg_i64(c, srow * d->scale_cols[x]), k, "");
    LLVMValueRef st = LLVMBuildStore(c->b, scale_code_value(c, d, x, raw),
                                     LLVMBuildGEP2(c->b, c->f32, d->scale_buf[x], &i, 1, ""));
    LLVMSetAlignment(st, 4);
}

static void decode_scales_step(Cg *c, void *ctx)
{
    ScaleDecode *sd = ctx;
    int w = sd->d->w;
    decode_scale(c, sd->d, sd->x, sd->srow, LLVMBuildMul(c->b, c->var[sd->kv->id], cg_i64(c, w), ""), w);
}

/* Operand x's UE8M0 scale rows (0: A, 1: B) decoded into the tile's
 * buffer for them (scale_buf, made by dot_gemm), where the loop version
 * being emitted reads them: the versions that fold the scales into the
 * operands read the codes themselves, and a_unit_versions' first reads
 * none of A's (fp8_gemm at one row: a column's 64 codes of 4 KiB of
 * weights, ~20 vector operations, left out where the scales fold). */
static void decode_scales(Cg *c, Dot *d, int x)
{
    if (!d->scale_buf[x])
        return;
    ScaleDecode sd = {.d = d, .x = x, .kv = temp_var(c, "ks", 7)};
    int64_t n = d->scale_cols[x];
    for (sd.srow = 0; sd.srow < d->scale_rows[x]; sd.srow++) {
        cg_loop(c, sd.kv, cg_i64(c, n / d->w), LOOP_SERIAL, 0, false, decode_scales_step, &sd);
        int64_t k = n - n % d->w;
        for (; k + 8 <= n; k += 8) /* AVX-512's tail: 8 at a time too */
            decode_scale(c, d, x, sd.srow, cg_i64(c, k), 8);
        for (; k < n; k++)
            decode_scale(c, d, x, sd.srow, cg_i64(c, k), 1);
    }
    free(sd.kv);
}

/* The buffers decode_scales fills, one per operand with UE8M0 scales. */
static void scale_buffers(Cg *c, Dot *d)
{
    const Region *scs[2] = {d->a_scale, d->b_scale};
    int64_t rows_per[2] = {d->a_rows_per_scale, d->b_rows_per_scale}, tile_rows[2] = {d->mr, d->nr};
    int64_t bk[2] = {d->bk_a, d->bk_b};
    for (int x = 0; x < 2; x++) {
        if (!scs[x] || scs[x]->buf->dtype != DT_E8M0)
            continue;
        int64_t n = d->s->u.gemm.a.ext[1] / bk[x], srows = (tile_rows[x] + rows_per[x] - 1) / rows_per[x];
        d->scale_cols[x] = n;
        d->scale_rows[x] = srows;
        d->scale_buf[x] = entry_alloca(c, LLVMArrayType(c->f32, (unsigned)(srows * n)));
    }
}

/* Where the chunk's packed e2m1 elements of B's row j from k on lie: 32-bit
 * words, element e in bits 4(e % 8) .. +3 of word e / 8 (low nibble first). */
static LLVMValueRef e2m1_row(Cg *c, Dot *d, int j, LLVMValueRef k)
{
    return at(c, &d->s->u.gemm.b, cg_i64(c, j), k);
}

/* The e2m1 magnitudes 0, .5, 1, 1.5, 2, 3, 4, 6 times the block's scale,
 * one per lane of the permute's table: 16 lanes with the negatives in
 * lanes 8-15 (AVX-512's vpermps reads index bits 0-3, so a nibble indexes
 * it as it is), or 8 (AVX2's reads bits 0-2) with entry m's bits 28-30
 * xor-ed with m: e2m1_part's one xor then clears them and applies the
 * sign.  A power-of-two scale makes every entry exact; an f32 one rounds
 * each product once, as the definition does. */
static LLVMValueRef e2m1_table(Cg *c, Dot *d, LLVMValueRef scale)
{
    static const float mag[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
    LLVMValueRef k[16], m[16];
    for (int i = 0; i < d->w; i++) {
        k[i] = LLVMConstReal(c->f32, i < 8 ? mag[i] : -mag[i - 8]);
        m[i] = LLVMConstInt(c->i32, (unsigned long long)i << 28, 0);
    }
    LLVMValueRef t = LLVMConstVector(k, (unsigned)d->w);
    if (scale)
        t = LLVMBuildFMul(c->b, t, splat_f(c, d, scale), "");
    if (d->w == 16)
        return t;
    LLVMTypeRef vi32 = LLVMVectorType(c->i32, (unsigned)d->w);
    LLVMValueRef bits = LLVMBuildXor(c->b, LLVMBuildBitCast(c->b, t, vi32, ""), LLVMConstVector(m, (unsigned)d->w), "");
    return LLVMBuildBitCast(c->b, bits, d->vf32, "");
}

/* Lanes [h·W, (h+1)·W) of the chunk's e2m1 elements as scaled f32: each
 * lane takes its word (a broadcast) shifted right by its nibble's place,
 * and vpermps looks the low index bits up in the table.  AVX-512's
 * 16-entry table takes the whole nibble.  AVX2's 8 entries take the
 * magnitude m, and the index shifted left by 28 (m at bits 28-30, the
 * nibble's sign at 31, the other nibbles gone) xor-ed into the entry
 * clears the m e2m1_table put there and flips the sign: five operations
 * per 8 elements, load included, where a blend on the sign took six. */
static LLVMValueRef e2m1_part(Cg *c, Dot *d, LLVMValueRef words, LLVMValueRef table, int h)
{
    LLVMBuilderRef B = c->b;
    int w = d->w;
    LLVMValueRef pick[16], right[16];
    for (int l = 0; l < w; l++) {
        pick[l] = LLVMConstInt(c->i32, (unsigned long long)(l / 8), 0);
        right[l] = LLVMConstInt(c->i32, (unsigned long long)(4 * (l % 8)), 0);
    }
    /* this part's w/8 words (w/2 bytes), each broadcast to its 8 lanes:
     * vpbroadcastd from memory on AVX2 */
    LLVMTypeRef wty = LLVMVectorType(c->i32, (unsigned)(w / 8));
    LLVMValueRef off = cg_i64(c, (int64_t)h * w / 2);
    LLVMValueRef p = LLVMBuildGEP2(B, c->i8, words, &off, 1, "");
    LLVMValueRef raw = LLVMBuildLoad2(B, wty, p, "");
    LLVMSetAlignment(raw, 1);
    LLVMValueRef x = LLVMBuildShuffleVector(B, raw, LLVMGetPoison(wty), LLVMConstVector(pick, (unsigned)w), "");
    LLVMValueRef idx = LLVMBuildLShr(B, x, LLVMConstVector(right, (unsigned)w), "");
    const char *name = w == 16 ? "llvm.x86.avx512.permvar.sf.512" : "llvm.x86.avx2.permps";
    LLVMValueRef args[2] = {table, idx};
    LLVMValueRef v = cg_intrinsic(c, name, NULL, 0, args, 2);
    if (w == 16)
        return v;
    LLVMTypeRef vi32 = LLVMVectorType(c->i32, (unsigned)w);
    LLVMValueRef sign = LLVMBuildShl(B, idx, splat_i(c, c->i32, w, 28), "");
    return LLVMBuildBitCast(B, LLVMBuildXor(B, LLVMBuildBitCast(B, v, vi32, ""), sign, ""), d->vf32, "");
}

/* Packed e2m1 on AVX2 (Dot.e2m1_lut): a step of 32 elements (16 bytes, one
 * scale block) of B's row j as four W-lane parts, each 2x its e2m1 value
 * (dot_scale undoes it; the block scale is promoted).  The nibbles split
 * (and, shift), interleaved low first (two vpunpck*bw: the elements in
 * order) and looked up in a 16-entry byte table (vpshufb: 2·e2m1 as
 * int8, sign included), stored to a 32-byte scratch, read back 8 at a
 * time sign-extended (vpmovsxbd from memory) and converted (vcvtdq2ps):
 * ~4 vector operations per 8 elements, where the f32 table of
 * e2m1_part then spent five, with a lane-crossing permute and a blend on
 * the FMA ports (a C loop of each, weights in L1, 3 columns: 0.19 -> 0.11
 * ns per weight; e2m1_part has since lost the blend).  The scratch's
 * accesses are volatile, or LLVM would keep the bytes in registers and
 * extract each part with shuffles. */
static const int8_t E2M1_TWICE[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

/* The four parts of 8 elements at bytes at[0..3] of the scratch buf:
 * sign-extended (vpmovsxbd from memory) and converted. */
static void lut_read_parts(Cg *c, Dot *d, LLVMValueRef buf, const int *at, LLVMValueRef *part)
{
    LLVMTypeRef v8 = LLVMVectorType(c->i8, 8), vi32 = LLVMVectorType(c->i32, (unsigned)d->w);
    for (int p = 0; p < 4; p++) {
        LLVMValueRef off = cg_i64(c, at[p]);
        LLVMValueRef x = LLVMBuildLoad2(c->b, v8, LLVMBuildGEP2(c->b, c->i8, buf, &off, 1, ""), "");
        LLVMSetVolatile(x, 1);
        LLVMSetAlignment(x, 8);
        part[p] = LLVMBuildSIToFP(c->b, LLVMBuildSExt(c->b, x, vi32, ""), d->vf32, "");
    }
}

static void e2m1_lut_parts(Cg *c, Dot *d, int j, LLVMValueRef k, LLVMValueRef *part)
{
    static const int at[4] = {0, 8, 16, 24};
    LLVMBuilderRef B = c->b;
    LLVMTypeRef v16 = LLVMVectorType(c->i8, 16);
    LLVMValueRef raw = LLVMBuildLoad2(B, v16, e2m1_row(c, d, j, k), "");
    LLVMSetAlignment(raw, 1);
    LLVMValueRef lo = LLVMBuildAnd(B, raw, splat_i(c, c->i8, 16, 0x0f), "");
    LLVMValueRef hi = LLVMBuildLShr(B, raw, splat_i(c, c->i8, 16, 4), "");
    LLVMValueRef t[16], lows[16], highs[16];
    for (int i = 0; i < 16; i++) {
        t[i] = LLVMConstInt(c->i8, (unsigned long long)(uint8_t)E2M1_TWICE[i], 0);
        lows[i] = LLVMConstInt(c->i32, (unsigned long long)(i / 2 + (i % 2) * 16), 0);
        highs[i] = LLVMConstInt(c->i32, (unsigned long long)(8 + i / 2 + (i % 2) * 16), 0);
    }
    LLVMValueRef table = LLVMConstVector(t, 16);
    LLVMValueRef halves[2] = {LLVMBuildShuffleVector(B, lo, hi, LLVMConstVector(lows, 16), ""),
                              LLVMBuildShuffleVector(B, lo, hi, LLVMConstVector(highs, 16), "")};
    for (int h = 0; h < 2; h++) {
        LLVMValueRef args[2] = {table, halves[h]};
        LLVMValueRef bytes = cg_intrinsic(c, "llvm.x86.ssse3.pshuf.b.128", NULL, 0, args, 2);
        LLVMValueRef off = cg_i64(c, 16 * h);
        LLVMValueRef st = LLVMBuildStore(B, bytes, LLVMBuildGEP2(B, c->i8, d->lut_buf, &off, 1, ""));
        LLVMSetVolatile(st, 1);
        LLVMSetAlignment(st, 16);
    }
    lut_read_parts(c, d, d->lut_buf, at, part);
}

/* e2m1_lut_parts over a pair of blocks (Dot.lut_pairs): the first block
 * decodes 64 elements — 32 bytes split, interleaved in each 128-bit lane
 * (vpunpck*bw) and looked up (vpshufb) on 256-bit registers, half the
 * operations per element of the 16-byte form — into column j's 64 bytes
 * of scratch, where each lane's 16 bytes land in order: k 0-15, 32-47,
 * 16-31, 48-63; both blocks read their parts from there. */
static void e2m1_lut_pair_parts(Cg *c, Dot *d, int j, LLVMValueRef k, LLVMValueRef *part)
{
    static const int at[2][4] = {{0, 8, 32, 40}, {16, 24, 48, 56}}; /* scratch bytes of each half's parts */
    LLVMBuilderRef B = c->b;
    LLVMValueRef base = cg_i64(c, 64 * j);
    LLVMValueRef buf = LLVMBuildGEP2(B, c->i8, d->lut_buf, &base, 1, "");
    if (d->lut_half == 0) {
        LLVMTypeRef v32 = LLVMVectorType(c->i8, 32);
        LLVMValueRef raw = LLVMBuildLoad2(B, v32, e2m1_row(c, d, j, k), "");
        LLVMSetAlignment(raw, 1);
        LLVMValueRef lo = LLVMBuildAnd(B, raw, splat_i(c, c->i8, 32, 0x0f), "");
        LLVMValueRef hi = LLVMBuildLShr(B, raw, splat_i(c, c->i8, 32, 4), "");
        LLVMValueRef t[32], mask[2][32];
        for (int i = 0; i < 32; i++) {
            t[i] = LLVMConstInt(c->i8, (unsigned long long)(uint8_t)E2M1_TWICE[i % 16], 0);
            for (int h = 0; h < 2; h++) /* lane i / 16's bytes 8h..8h+7, low nibble first */
                mask[h][i] = LLVMConstInt(c->i32, (unsigned long long)(16 * (i / 16) + 8 * h + (i % 16) / 2 + (i % 2) * 32), 0);
        }
        for (int h = 0; h < 2; h++) {
            LLVMValueRef idx = LLVMBuildShuffleVector(B, lo, hi, LLVMConstVector(mask[h], 32), "");
            LLVMValueRef args[2] = {LLVMConstVector(t, 32), idx};
            LLVMValueRef bytes = cg_intrinsic(c, "llvm.x86.avx2.pshuf.b", NULL, 0, args, 2);
            LLVMValueRef off = cg_i64(c, 32 * h);
            LLVMValueRef st = LLVMBuildStore(B, bytes, LLVMBuildGEP2(B, c->i8, buf, &off, 1, ""));
            LLVMSetVolatile(st, 1);
            LLVMSetAlignment(st, 32);
        }
    }
    lut_read_parts(c, d, buf, at[d->lut_half], part);
}

/* The f32 bits of e2m1 nibble i % 16's value (exact; its low 16 bits are
 * zero, so the high half is its bf16). */
static uint32_t e2m1_f32_bits(int i)
{
    float v = dt_e2m1_to_f32((uint8_t)(i % 16));
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

/* 32 bytes of packed e2m1 (each 16-byte lane's bytes in any order) as
 * words: nibble h of the lane's byte 8q + e in word e of the lane of
 * words[h][q], the value's bf16 bits (the high and low bytes looked up in
 * two 16-entry tables, vpshufb, interleaved, vpunpck{l,h}bw). */
static void e2m1_words(Cg *c, LLVMValueRef raw, LLVMValueRef words[2][2])
{
    enum { n = 32 };
    LLVMBuilderRef B = c->b;
    const char *pshufb = "llvm.x86.avx2.pshuf.b";
    LLVMValueRef hi[n], lo[n], inter[2][n];
    for (int i = 0; i < n; i++) {
        int m = i % 16;
        hi[i] = LLVMConstInt(c->i8, (uint8_t)(e2m1_f32_bits(i) >> 24), 0);
        lo[i] = LLVMConstInt(c->i8, (uint8_t)(e2m1_f32_bits(i) >> 16), 0);
        for (int q = 0; q < 2; q++) /* byte i is lo's or hi's byte 8q + m / 2 of its lane */
            inter[q][i] = LLVMConstInt(c->i32, (unsigned long long)((m % 2) * n + 16 * (i / 16) + 8 * q + m / 2), 0);
    }
    LLVMValueRef nib[2] = {LLVMBuildAnd(B, raw, splat_i(c, c->i8, n, 0x0f), ""),
                           LLVMBuildLShr(B, raw, splat_i(c, c->i8, n, 4), "")};
    for (int h = 0; h < 2; h++) {
        LLVMValueRef hargs[2] = {LLVMConstVector(hi, (unsigned)n), nib[h]};
        LLVMValueRef largs[2] = {LLVMConstVector(lo, (unsigned)n), nib[h]};
        LLVMValueRef hv = cg_intrinsic(c, pshufb, NULL, 0, hargs, 2);
        LLVMValueRef lv = cg_intrinsic(c, pshufb, NULL, 0, largs, 2);
        for (int q = 0; q < 2; q++)
            words[h][q] = LLVMBuildShuffleVector(B, lv, hv, LLVMConstVector(inter[q], (unsigned)n), "");
    }
}

/* Packed e2m1 beside an A in e2m1 order (Dot.t8, micro_gemm
 * a_decode_order): a block of 64 elements (32 bytes) of B's row j as the
 * eight f32 parts of A's 8x8-transposed block, part c holding element
 * 8l + c in lane l.  The bytes are reordered within each 128-bit lane
 * (vpshufb by `order`), the nibbles split (and, shift), each nibble
 * vector looked up in two byte tables (vpshufb: bits 24-31 and 16-23 of
 * the f32 value, sign included) whose results interleave into the 16-bit
 * halves of f32s (vpunpck*bw); even halves shift up (vpslld 16), odd ones
 * are masked (vpand).  20 vector operations per 64 weights, 6 of them off
 * the shuffle ports, no conversion, values exact.  The in-order byte table
 * (e2m1_lut_parts) restored the elements' order and spent a vpmovsxbd
 * (three shuffle-port cycles on Zen 3) and a vcvtdq2ps per 8: a C loop of
 * each, one row, 2 columns, weights in L2, 0.075-0.089 -> 0.048-0.055 ns
 * per weight (Zen 3).  Lane bookkeeping: after the reorder, byte b of a
 * 128-bit lane L holds source byte 16L + s(b), s(8q + 2e + r) = 4e + 2q +
 * r; vpunpck (q = 0: low, 1: high) puts nibble h of byte 8q + 2e + r in
 * the r-th 16-bit half of lane L's dword e, i.e. element 2(16L + s(b)) + h
 * = 8(4L + e) + 4q + 2r + h: part c = 4q + 2r + h, lane l = 4L + e. */
static void e2m1_t8_parts(Cg *c, Dot *d, int j, LLVMValueRef k, LLVMValueRef *part)
{
    LLVMBuilderRef B = c->b;
    LLVMTypeRef v32 = LLVMVectorType(c->i8, 32), vi32 = LLVMVectorType(c->i32, 8);
    LLVMValueRef order[32], words[2][2];
    for (int i = 0; i < 32; i++) {
        int b = i % 16;
        order[i] = LLVMConstInt(c->i8, (unsigned long long)(4 * (b % 8 / 2) + 2 * (b / 8) + b % 2), 0);
    }
    LLVMValueRef raw = LLVMBuildLoad2(B, v32, e2m1_row(c, d, j, k), "");
    LLVMSetAlignment(raw, 1);
    LLVMValueRef args[2] = {raw, LLVMConstVector(order, 32)};
    e2m1_words(c, cg_intrinsic(c, "llvm.x86.avx2.pshuf.b", NULL, 0, args, 2), words);
    for (int h = 0; h < 2; h++)
        for (int q = 0; q < 2; q++) {
            LLVMValueRef w = LLVMBuildBitCast(B, words[h][q], vi32, "");
            LLVMValueRef even = LLVMBuildShl(B, w, splat_i(c, c->i32, 8, 16), "");
            LLVMValueRef odd = LLVMBuildAnd(B, w, splat_i(c, c->i32, 8, 0xffff0000u), "");
            part[4 * q + h] = LLVMBuildBitCast(B, even, d->vf32, "");
            part[4 * q + 2 + h] = LLVMBuildBitCast(B, odd, d->vf32, "");
        }
}

/* acc[i][j] += A(i, k..k+chunk) * B(j, k..k+chunk) for every i, j, in
 * chunk/W register-wide pieces. */
static void dot_lanes(Cg *c, Dot *d, LLVMValueRef k, int lanes)
{
    const Stmt *s = d->s;
    if (d->pairs) {
        dot_pairs(c, d, k, lanes);
        return;
    }
    int parts = d->chunk / d->w;
    LLVMValueRef av[MAX_DOT_ROWS];
    LLVMTypeRef ty = d->vf32;
    for (int i = 0; i < d->mr; i++)
        av[i] = dot_load(c, d, &s->u.gemm.a, i, k, lanes);
    for (int j = 0; j < d->nr; j++) {
        bool e2m1 = s->u.gemm.b.buf->dtype == DT_F4E2M1;
        LLVMValueRef bv = e2m1 ? NULL : dot_load(c, d, &s->u.gemm.b, j, k, lanes);
        if (d->prefetch_next)
            prefetch_row(c, &s->u.gemm.b, d->pf_ahead + j, k);
        LLVMValueRef words = e2m1 && !d->e2m1_lut ? e2m1_row(c, d, j, k) : NULL, lut[4];
        if (d->lut_pairs)
            e2m1_lut_pair_parts(c, d, j, k, lut);
        else if (d->e2m1_lut)
            e2m1_lut_parts(c, d, j, k, lut);
        for (int h = 0; h < parts; h++) {
            LLVMValueRef bh = d->e2m1_lut ? lut[h] : e2m1 ? e2m1_part(c, d, words, d->row_table[j], h)
                                                           : dot_part(c, d, bv, h);
            for (int i = 0; i < d->mr; i++) {
                LLVMValueRef acc = LLVMBuildLoad2(c->b, d->vf32, d->acc[i][j], "");
                LLVMValueRef args[3] = {dot_part(c, d, av[i], h), bh, acc};
                LLVMBuildStore(c->b, cg_intrinsic(c, "llvm.fma", &ty, 1, args, 3), d->acc[i][j]);
            }
        }
    }
}

static void dot_step(Cg *c, void *ctx)
{
    Dot *d = ctx;
    dot_lanes(c, d, LLVMBuildMul(c->b, c->var[d->kvar->id], cg_i64(c, d->chunk), ""), d->chunk);
}

/* The steps of a block of block-scaled operands, from d->k0 on. */
static void dot_scaled_step(Cg *c, void *ctx)
{
    Dot *d = ctx;
    LLVMValueRef k = LLVMBuildMul(c->b, c->var[d->kvar->id], cg_i64(c, d->chunk), "");
    dot_lanes(c, d, LLVMBuildAdd(c->b, d->k0, k, ""), d->chunk);
}

/* Two steps of a pair tile with two chains per sum (acc_odd, pair_chains): the
 * even one into acc, the odd one into acc_odd — and of every Dot.words tile,
 * whose even step decodes both steps' weights (e4m3_word_parts). */
static void dot_chained_steps(Cg *c, void *ctx)
{
    Dot *d = ctx;
    LLVMValueRef k = LLVMBuildMul(c->b, c->var[d->kvar->id], cg_i64(c, 2 * d->chunk), "");
    k = LLVMBuildAdd(c->b, d->k0, k, "");
    dot_lanes(c, d, k, d->chunk);
    d->odd_step = true;
    dot_lanes(c, d, LLVMBuildAdd(c->b, k, cg_i64(c, d->chunk), ""), d->chunk);
    d->odd_step = false;
}

/* kb (counted in blocks of `block` elements) as a scale column of blocks
 * of bk elements, a multiple of block. */
static LLVMValueRef scale_col(Cg *c, LLVMValueRef kb, int64_t block, int64_t bk)
{
    return bk == block ? kb : LLVMBuildUDiv(c->b, kb, cg_i64(c, bk / block), "");
}

/* One table block of packed e2m1 B from k0: each column's table scaled by
 * its block scale, then the block's steps (unrolled by 2: moe_expert_gemm's
 * tuning). */
static void dot_table_block(Cg *c, Dot *d, LLVMValueRef k0)
{
    LLVMValueRef kb = LLVMBuildUDiv(c->b, k0, cg_i64(c, d->bk_b), "");
    for (int j = 0; j < d->nr; j++)
        d->row_table[j] = e2m1_table(c, d, block_scale(c, d, 1, j, kb));
    d->k0 = k0;
    cg_loop(c, d->kvar, cg_i64(c, d->bk_b / d->chunk), LOOP_SERIAL, 2, false, dot_scaled_step, d);
}

static void dot_table_step(Cg *c, void *ctx)
{
    Dot *d = ctx;
    LLVMValueRef kb = c->var[d->kbvar->id], kt = c->var[d->ktvar->id];
    LLVMValueRef k0 = LLVMBuildMul(c->b, kb, cg_i64(c, d->block), "");
    dot_table_block(c, d, LLVMBuildAdd(c->b, k0, LLVMBuildMul(c->b, kt, cg_i64(c, d->bk_b), ""), ""));
}

/* How many steps of a dot tile's K loop one iteration runs: two 8-bit
 * steps unrolled interleave their widenings' temporaries and spill
 * accumulators (fp8 at one row, AVX2; and fp8_gemm's 16-row promoted
 * blocks, which LLVM unrolled whole once the addresses were per-dimension
 * GEPs: 9.4-12.6 -> 10.9-14.3 ms), so they run one at a time. */
static int dot_unroll(const Dot *d)
{
    return dt_bits(d->s->u.gemm.b.buf->dtype) == 8 ? 1 : 2;
}

/* Whether any of the tile's e4m3 weights in columns [k0, k0 + len) has
 * exponent 0 (zero or a subnormal: the byte's bits 3-6 clear), 64 bytes
 * at a time (32 where len is no multiple of 64). */
static LLVMValueRef e4m3_small(Cg *c, Dot *d, LLVMValueRef k0, int64_t len)
{
    int step = len % 64 == 0 ? 64 : 32;
    Dot wide = *d;
    wide.chunk = step; /* dot_raw reads d->chunk elements */
    LLVMTypeRef flags = LLVMVectorType(c->i1, (unsigned)step);
    LLVMValueRef any = LLVMConstNull(flags);
    for (int j = 0; j < d->nr; j++)
        for (int64_t o = 0; o < len; o += step) {
            LLVMValueRef raw = dot_raw(c, &wide, &d->s->u.gemm.b, j, LLVMBuildAdd(c->b, k0, cg_i64(c, o), ""), step);
            LLVMValueRef e = LLVMBuildAnd(c->b, raw, splat_i(c, c->i8, step, 0x78), "");
            any = LLVMBuildOr(c->b, any, LLVMBuildICmp(c->b, LLVMIntEQ, e, LLVMConstNull(LLVMTypeOf(e)), ""), "");
        }
    return cg_intrinsic(c, "llvm.vector.reduce.or", &flags, 1, &any, 1);
}

/* A promoted block's steps from k0.  Pair tiles over e4m3 B decode it in
 * e4m3_words' fast form where none of the block's weights has exponent 0,
 * tested once per block (two versions of the steps, one branch). */
static void block_steps(Cg *c, Dot *d, LLVMValueRef k0)
{
    d->k0 = k0;
    LLVMValueRef n = cg_i64(c, d->block / d->chunk);
    if (!d->pairs || d->s->u.gemm.b.buf->dtype != DT_F8E4M3) {
        cg_loop(c, d->kvar, n, LOOP_SERIAL, dot_unroll(d), false, dot_scaled_step, d);
        return;
    }
    LLVMBasicBlockRef way[2] = {LLVMAppendBasicBlockInContext(c->ctx, c->fn, "e4m3_exact"),
                                LLVMAppendBasicBlockInContext(c->ctx, c->fn, "e4m3_fast")};
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "e4m3_done");
    LLVMBuildCondBr(c->b, e4m3_small(c, d, k0, d->block), way[0], way[1]);
    bool paired = d->acc_odd[0][0] || d->words;
    for (int fast = 0; fast < 2; fast++) {
        LLVMPositionBuilderAtEnd(c->b, way[fast]);
        d->e4m3_fast = fast;
        if (paired)
            cg_loop(c, d->kvar, cg_i64(c, d->block / d->chunk / 2), LOOP_SERIAL, 2, false, dot_chained_steps, d);
        else
            cg_loop(c, d->kvar, n, LOOP_SERIAL, dot_unroll(d), false, dot_scaled_step, d);
        LLVMBuildBr(c->b, join);
    }
    d->e4m3_fast = false;
    LLVMPositionBuilderAtEnd(c->b, join);
}

/* A K block of `block` elements: its steps (through table blocks for
 * packed e2m1 B) and, promoted, its sums times its scales added to the
 * running ones. */
static void dot_block(Cg *c, void *ctx)
{
    Dot *d = ctx;
    LLVMValueRef kb = c->var[d->kbvar->id];
    if (d->lut_pairs)
        kb = LLVMBuildAdd(c->b, LLVMBuildMul(c->b, kb, cg_i64(c, 2), ""), cg_i64(c, d->lut_half), "");
    LLVMValueRef k0 = LLVMBuildMul(c->b, kb, cg_i64(c, d->block), "");
    if (!d->promote) {
        dot_table_block(c, d, k0);
        return;
    }
    for (int i = 0; i < d->mr; i++)
        for (int j = 0; j < d->nr; j++) {
            LLVMBuildStore(c->b, LLVMConstNull(d->vf32), d->acc[i][j]);
            if (d->acc_odd[i][j])
                LLVMBuildStore(c->b, LLVMConstNull(d->vf32), d->acc_odd[i][j]);
        }
    if (d->b_in_table)
        cg_loop(c, d->ktvar, cg_i64(c, d->block / d->bk_b), LOOP_SERIAL, 0, false, dot_table_step, d);
    else
        block_steps(c, d, k0);
    if (d->nans)
        nan_scan(c, d->nans, k0, d->block);
    LLVMValueRef sa[MAX_DOT_ROWS] = {0}, sb[MAX_DOT_COLS] = {0};
    for (int i = 0; d->a_scale && i < d->mr; i++)
        sa[i] = block_scale(c, d, 0, i, scale_col(c, kb, d->block, d->bk_a));
    for (int j = 0; d->b_scale && !d->b_in_table && j < d->nr; j++)
        sb[j] = block_scale(c, d, 1, j, scale_col(c, kb, d->block, d->bk_b));
    LLVMTypeRef ty = d->vf32;
    for (int i = 0; i < d->mr; i++)
        for (int j = 0; j < d->nr; j++) {
            LLVMValueRef s = sa[i] && sb[j] ? LLVMBuildFMul(c->b, sa[i], sb[j], "") : sa[i] ? sa[i] : sb[j];
            LLVMValueRef sum = LLVMBuildLoad2(c->b, ty, d->acc[i][j], "");
            if (d->acc_odd[i][j])
                sum = LLVMBuildFAdd(c->b, sum, LLVMBuildLoad2(c->b, ty, d->acc_odd[i][j], ""), "");
            LLVMValueRef args[3] = {sum, splat_f(c, d, s),
                                    LLVMBuildLoad2(c->b, ty, d->total[i][j], "")};
            LLVMBuildStore(c->b, cg_intrinsic(c, "llvm.fma", &ty, 1, args, 3), d->total[i][j]);
        }
}

/* The K loop of a tile with block scales, `blocks` iterations of `block`,
 * its UE8M0 scales decoded first (decode_scales). */
static void scaled_loop(Cg *c, Dot *d, int64_t blocks, void (*block)(Cg *, void *))
{
    decode_scales(c, d, 0);
    decode_scales(c, d, 1);
    cg_loop(c, d->kbvar, cg_i64(c, blocks), LOOP_SERIAL, 0, false, block, d);
}

/* ------------------------------------------------ folded scales */

/* Pair tiles over e4m3 B, and Dot.pair8 tiles of two rows or more over
 * packed e2m1 (Dot.fold), fold the block scales into their operands where
 * every code the tile reads lies in the window [IR_FOLD_SCALE_LO,
 * IR_FOLD_SCALE_HI] — A's through pass_lower's prescaled copy (micro_gemm
 * a_prescaled, whose residual is then 1), B's into each block's decoding
 * (fold_words; e2m1_fold_offsets) — and sum all of K in one running sum
 * per accumulator.  The scaled values' products are the
 * scaled products, exact normals (ir.h), so only the order of the f32
 * sums differs from the per-block promotion's, which the tile runs instead
 * where some code lies outside the window: one test per tile, two
 * versions of its K loop.  The promotion took, per block and 8x2 tile,
 * 16 FMAs, 8 scale products and the running sums' spills beside 64
 * vdpbf16ps (fp8_gemm at 16 rows, 4096^2, weights from DRAM, one thread:
 * 2.54-2.57 -> 2.12-2.18 ms, the promotion simply left out). */
enum { MAX_FOLD_CODES = 1024 }; /* scale codes per row the tile's test reads (unrolled) */

/* Whether the n codes of row srow of scale region sc all lie in the window. */
static LLVMValueRef codes_in_window(Cg *c, const Region *sc, int64_t srow, int64_t n)
{
    LLVMBuilderRef B = c->b;
    LLVMValueRef all = LLVMConstInt(c->i1, 1, 0);
    for (int64_t k = 0; k < n; k += 64) {
        unsigned m = (unsigned)(n - k < 64 ? n - k : 64);
        LLVMTypeRef ty = LLVMVectorType(c->i8, m), bits = LLVMIntTypeInContext(c->ctx, m);
        LLVMValueRef raw = LLVMBuildLoad2(B, ty, at(c, sc, cg_i64(c, srow), cg_i64(c, k)), "");
        LLVMSetAlignment(raw, 1);
        LLVMValueRef off = LLVMBuildSub(B, raw, konst(c, ty, IR_FOLD_SCALE_LO), "");
        LLVMValueRef in = LLVMBuildICmp(B, LLVMIntULE, off, konst(c, ty, IR_FOLD_SCALE_HI - IR_FOLD_SCALE_LO), "");
        LLVMValueRef every = LLVMBuildICmp(B, LLVMIntEQ, LLVMBuildBitCast(B, in, bits, ""), LLVMConstAllOnes(bits), "");
        all = LLVMBuildAnd(B, all, every, "");
    }
    return all;
}

/* Whether every scale code the tile reads lies in the window: A's and B's,
 * or (a_only) A's. */
static LLVMValueRef scales_fold(Cg *c, const Dot *d, bool a_only)
{
    LLVMValueRef all = LLVMConstInt(c->i1, 1, 0);
    const Region *scs[2] = {d->a_scale, a_only ? NULL : d->b_scale};
    for (int x = 0; x < 2; x++) {
        if (!scs[x])
            continue;
        int R = scs[x]->buf->rank - 2;
        for (int64_t r = 0; r < scs[x]->ext[R]; r++)
            all = LLVMBuildAnd(c->b, all, codes_in_window(c, scs[x], r, scs[x]->ext[R + 1]), "");
    }
    return all;
}

static LLVMValueRef splat_word(Cg *c, LLVMValueRef x)
{
    LLVMTypeRef v = LLVMVectorType(c->i16, 32);
    LLVMValueRef one = LLVMBuildInsertElement(c->b, LLVMGetPoison(v), x, LLVMConstInt(c->i32, 0, 0), "");
    return LLVMBuildShuffleVector(c->b, one, LLVMGetPoison(v), LLVMConstNull(LLVMVectorType(c->i32, 32)), "");
}

/* Column j's decoding constants in block kb (Dot.fold_words) with its
 * scale 2^(e - 127) in them: e - 127 added to the exponent field of the
 * rebias and of the exponent-0 codes' values (not zero's). */
static void fold_words(Cg *c, Dot *d, int j, LLVMValueRef kb)
{
    LLVMBuilderRef B = c->b;
    LLVMValueRef rebias = splat_i(c, c->i16, 32, 120 << 7), table = e4m3_small_table(c);
    if (d->b_scale) {
        LLVMValueRef p = at(c, d->b_scale, cg_i64(c, j / d->b_rows_per_scale), scale_col(c, kb, d->block, d->bk_b));
        LLVMValueRef e = LLVMBuildZExt(B, LLVMBuildLoad2(B, c->i8, p, ""), c->i16, "");
        LLVMValueRef shift = LLVMBuildShl(B, LLVMBuildSub(B, e, LLVMConstInt(c->i16, 127, 0), ""),
                                          LLVMConstInt(c->i16, 7, 0), "");
        LLVMValueRef nonzero[32];
        for (int i = 0; i < 32; i++)
            nonzero[i] = LLVMConstInt(c->i16, i >= 1 && i < 8 ? 0xffff : 0, 0);
        /* the rebias summed as a scalar, then broadcast: one vector
         * operation per block and column (LLVM kept the broadcast's add) */
        rebias = splat_word(c, LLVMBuildAdd(B, shift, LLVMConstInt(c->i16, 120 << 7, 0), ""));
        table = LLVMBuildAdd(B, table, LLVMBuildAnd(B, splat_word(c, shift), LLVMConstVector(nonzero, 32), ""), "");
    }
    d->fold_words[j][0] = rebias;
    d->fold_words[j][1] = table;
}

/* A block of a Dot.fold tile over e4m3 B: folding, its steps into the
 * running sums, else promoted (dot_block). */
static void fold_block(Cg *c, void *ctx)
{
    Dot *d = ctx;
    if (!d->folding) {
        dot_block(c, d);
        return;
    }
    LLVMValueRef kb = c->var[d->kbvar->id];
    LLVMValueRef k0 = LLVMBuildMul(c->b, kb, cg_i64(c, d->block), "");
    for (int j = 0; j < d->nr; j++)
        fold_words(c, d, j, kb);
    block_steps(c, d, k0);
    if (d->nans)
        nan_scan(c, d->nans, k0, d->block);
}

/* The K loop of a Dot.fold tile, `blocks` iterations of `block`: with
 * d->folding set where the scales allow, else promoted; the sums end in
 * d->total either way. */
static void fold_scales(Cg *c, Dot *d, int64_t blocks, void (*block)(Cg *, void *))
{
    LLVMBasicBlockRef way[2] = {LLVMAppendBasicBlockInContext(c->ctx, c->fn, "scales_folded"),
                                LLVMAppendBasicBlockInContext(c->ctx, c->fn, "scales_promoted")};
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "scales_done");
    LLVMBuildCondBr(c->b, scales_fold(c, d, false), way[0], way[1]);
    LLVMPositionBuilderAtEnd(c->b, way[0]);
    d->folding = true;
    cg_loop(c, d->kbvar, cg_i64(c, blocks), LOOP_SERIAL, 0, false, block, d);
    d->folding = false;
    for (int i = 0; i < d->mr; i++)
        for (int j = 0; j < d->nr; j++) {
            LLVMValueRef sum = LLVMBuildLoad2(c->b, d->vf32, d->acc[i][j], "");
            if (d->acc_odd[i][j])
                sum = LLVMBuildFAdd(c->b, sum, LLVMBuildLoad2(c->b, d->vf32, d->acc_odd[i][j], ""), "");
            LLVMBuildStore(c->b, sum, d->total[i][j]);
        }
    LLVMBuildBr(c->b, join);
    LLVMPositionBuilderAtEnd(c->b, way[1]);
    scaled_loop(c, d, blocks, block);
    LLVMBuildBr(c->b, join);
    LLVMPositionBuilderAtEnd(c->b, join);
}

/* The K loop of a promoted tile over a prescaled A (micro_gemm
 * a_prescaled), `blocks` iterations of `block`, in two versions: where
 * every A scale code the tile reads lies in the fold window its residual
 * scales are all 1 and the blocks leave them out (d->a_unit), else they
 * apply them.  One test per tile, as fold_scales'; Dot.pair8 tiles at one
 * row, which do not fold B (the table's offsets cost more than the
 * promotion), spend one multiply per block less of about 14 vector
 * operations: moe_expert_gemm at one row, N 1024, K 4096 (weights in
 * cache), one thread, five alternations, 0.127-0.137 -> 0.121-0.127 ms. */
static void a_unit_versions(Cg *c, Dot *d, int64_t blocks, void (*block)(Cg *, void *))
{
    LLVMBasicBlockRef way[2] = {LLVMAppendBasicBlockInContext(c->ctx, c->fn, "a_scales_one"),
                                LLVMAppendBasicBlockInContext(c->ctx, c->fn, "a_scales_applied")};
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "a_scales_done");
    LLVMBuildCondBr(c->b, scales_fold(c, d, true), way[0], way[1]);
    for (int v = 0; v < 2; v++) {
        LLVMPositionBuilderAtEnd(c->b, way[v]);
        d->a_unit = v == 0;
        if (v)
            decode_scales(c, d, 0);
        decode_scales(c, d, 1);
        cg_loop(c, d->kbvar, cg_i64(c, blocks), LOOP_SERIAL, 0, false, block, d);
        LLVMBuildBr(c->b, join);
    }
    d->a_unit = false;
    LLVMPositionBuilderAtEnd(c->b, join);
}

/* Two blocks (Dot.lut_pairs): the first decodes both's weights. */
static void dot_block_pair(Cg *c, void *ctx)
{
    Dot *d = ctx;
    for (d->lut_half = 0; d->lut_half < 2; d->lut_half++)
        dot_block(c, d);
}

/* The scales of operand x's row `row` (0: A, 1: B; NULL: unscaled) over
 * the block kb of `block` elements of a Dot.t8 or Dot.pair8 tile, whose
 * 128-bit lanes each hold a 32-element part of it (e2m1_t8_parts,
 * e2m1_pair_part): lane group g the scale of the part's scale block —
 * one broadcast where the block shares one. */
static LLVMValueRef lane_scales(Cg *c, Dot *d, int x, int row, LLVMValueRef kb, int64_t block)
{
    int64_t bk = x ? d->bk_b : d->bk_a;
    if (!(x ? d->b_scale : d->a_scale))
        return NULL;
    LLVMBuilderRef B = c->b;
    if (bk % block == 0)
        return splat_f(c, d, block_scale(c, d, x, row, scale_col(c, kb, block, bk)));
    int n = (int)(block / bk); /* scale blocks in the block (the verifier's 32 divides bk) */
    LLVMValueRef v = LLVMGetPoison(d->vf32), lanes[16];
    for (int h = 0; h < n; h++) {
        LLVMValueRef q = LLVMBuildAdd(B, LLVMBuildMul(B, kb, cg_i64(c, n), ""), cg_i64(c, h), "");
        v = LLVMBuildInsertElement(B, v, block_scale(c, d, x, row, q), LLVMConstInt(c->i32, (unsigned long long)h, 0), "");
    }
    for (int l = 0; l < d->w; l++)
        lanes[l] = LLVMConstInt(c->i32, (unsigned long long)(l * n / d->w), 0);
    return LLVMBuildShuffleVector(B, v, LLVMGetPoison(d->vf32), LLVMConstVector(lanes, (unsigned)d->w), "");
}

/* One 64-element block kb of a Dot.t8 tile: each column's weights decoded
 * once (e2m1_t8_parts), two FMA chains per row (even and odd parts), then
 * their sum times the block's scales added to the running one. */
static void dot_t8_block(Cg *c, void *ctx)
{
    Dot *d = ctx;
    LLVMBuilderRef B = c->b;
    const Stmt *s = d->s;
    LLVMValueRef kb = c->var[d->kbvar->id], k = LLVMBuildMul(B, kb, cg_i64(c, IR_E2M1_BLOCK), "");
    LLVMValueRef av[MAX_DOT_ROWS], sa[MAX_DOT_ROWS];
    for (int i = 0; i < d->mr; i++) {
        av[i] = dot_load(c, d, &s->u.gemm.a, i, k, d->chunk);
        sa[i] = lane_scales(c, d, 0, i, kb, IR_E2M1_BLOCK);
    }
    LLVMTypeRef ty = d->vf32;
    for (int j = 0; j < d->nr; j++) {
        if (d->prefetch_next)
            prefetch_row(c, &s->u.gemm.b, d->pf_ahead + j, k);
        LLVMValueRef part[8], sb = lane_scales(c, d, 1, j, kb, IR_E2M1_BLOCK);
        e2m1_t8_parts(c, d, j, k, part);
        for (int i = 0; i < d->mr; i++) {
            LLVMValueRef chain[2] = {LLVMConstNull(ty), LLVMConstNull(ty)};
            for (int p = 0; p < 8; p++) {
                LLVMValueRef args[3] = {dot_part(c, d, av[i], p), part[p], chain[p % 2]};
                chain[p % 2] = cg_intrinsic(c, "llvm.fma", &ty, 1, args, 3);
            }
            LLVMValueRef sum = LLVMBuildFAdd(B, chain[0], chain[1], "");
            LLVMValueRef sc = sa[i] && sb ? LLVMBuildFMul(B, sa[i], sb, "") : sa[i] ? sa[i] : sb;
            LLVMValueRef args[3] = {sum, sc, LLVMBuildLoad2(B, ty, d->total[i][j], "")};
            LLVMBuildStore(B, cg_intrinsic(c, "llvm.fma", &ty, 1, args, 3), d->total[i][j]);
        }
    }
}

/* A folding Dot.pair8 tile's table holds the e2m1 values times
 * 2^E2M1_FOLD_BIAS (e2m1_pair_part, e2m1_fold_offsets). */
enum { E2M1_FOLD_BIAS = 64 };
/* A folding Dot.pair8 tile's chains of vdpbf16ps: two per sum (even and
 * odd parts) while that makes at most this many, else one — the latency
 * hidden without spilling.  A C harness of the folded loop in cache (Zen
 * 5, K 4096, 64 weight rows, one thread), GFLOP/s: 2x2 tiles 180 with one
 * chain, 310-315 with two; 4x2 316-327 / 398-438; 8x2 415 / 370. */
enum { PAIR8_FOLD_SUMS = 16 };

/* Whether a pair tile (dot_pairs) keeps two chains per sum (the even
 * steps' and the odd ones', dot_chained_steps): where it has no more than
 * PAIR_CHAIN_SUMS sums and its K loop (block_steps' where scaled) an even
 * number of steps.  A one-column tile (lowering's one-row pair tiles on
 * Zen 4, one weight row streamed at a time) otherwise runs one chain of
 * vdpbf16ps over all of K, bound by its latency. */
enum { PAIR_CHAIN_SUMS = 2 };

static bool pair_chains(const Dot *d, int64_t K)
{
    bool bf16 = d->s->u.gemm.b.buf->dtype == DT_BF16 && !d->promote;
    bool e4m3 = d->s->u.gemm.b.buf->dtype == DT_F8E4M3 && d->promote;
    return d->pairs && (bf16 || e4m3) && d->mr * d->nr <= PAIR_CHAIN_SUMS &&
           (e4m3 ? d->block : K) % (2 * d->chunk) == 0;
}

/* The 64 bytes of B's row j from k (e2m1_pair_part's words). */
static LLVMValueRef e2m1_pair_words(Cg *c, Dot *d, int j, LLVMValueRef k)
{
    LLVMValueRef raw = LLVMBuildLoad2(c->b, LLVMVectorType(c->i16, 32), e2m1_row(c, d, j, k), "");
    LLVMSetAlignment(raw, 1);
    return raw;
}

/* Packed e2m1 beside a bf16 A in e2m1 order (Dot.pair8, micro_gemm
 * a_decode_order of a bf16 A): 128 elements (64 bytes, e2m1_pair_words) of
 * a row of B as the four bf16 parts of A's block (ir_order_position),
 * part s of type ty here.  The bytes read as 32 words of four nibbles:
 * part s is the words shifted right by 4s and looked up in one 32-entry
 * table of bf16 words (vpermw, which reads an index's low 5 bits: entry i
 * is nibble i % 16's value, exact, sign included, so the bits above the
 * nibble need no mask), i.e. element 4w + s in word w.  7 vector
 * operations per 128 weights (3 shifts, 4 permutes) where two byte tables
 * and their interleave took 11, 9 of them on Zen 5's two shuffle pipes;
 * and 4 vdpbf16ps per row of A where the f32 tiles (e2m1_t8_parts) spend
 * 40 and 16 FMAs.  Folding (`off` not NULL), the table holds the values
 * times 2^E2M1_FOLD_BIAS and each part loses the column's exponent offsets
 * (e2m1_fold_offsets) by one saturating subtraction: zero, entries 0 and
 * 8, stays zero. */
static LLVMValueRef e2m1_pair_part(Cg *c, LLVMValueRef raw, int s, LLVMValueRef off, LLVMTypeRef ty)
{
    LLVMBuilderRef B = c->b;
    LLVMTypeRef v32 = LLVMVectorType(c->i16, 32);
    LLVMValueRef table[32];
    for (int i = 0; i < 32; i++) {
        float v = ldexpf(dt_e2m1_to_f32((uint8_t)(i % 16)), E2M1_FOLD_BIAS);
        uint32_t bits;
        memcpy(&bits, &v, sizeof bits);
        table[i] = LLVMConstInt(c->i16, off ? (bits & 0x7fffffff ? bits >> 16 : 0) : e2m1_f32_bits(i) >> 16, 0);
    }
    LLVMValueRef idx = s ? LLVMBuildLShr(B, raw, splat_i(c, c->i16, 32, 4 * s), "") : raw;
    LLVMValueRef args[2] = {LLVMConstVector(table, 32), idx};
    LLVMValueRef words = cg_intrinsic(c, "llvm.x86.avx512.permvar.hi.512", NULL, 0, args, 2);
    if (off) {
        LLVMValueRef sub[2] = {words, off};
        words = cg_intrinsic(c, "llvm.usub.sat", &v32, 1, sub, 2);
    }
    return LLVMBuildBitCast(B, words, ty, "");
}

/* What a folding Dot.pair8 tile subtracts from column j's table words in
 * block kb (e2m1_pair_part): word w, in lane group w / 8 and so in the
 * block's 32-column scale block w / 8, gets (E2M1_FOLD_BIAS + 127 - e)
 * in its exponent field, e that block's scale code — 22 .. 118 within the
 * fold window, below every nonzero entry's exponent (190 and up): the
 * result is the value times 2^(e - 127), exact, and no borrow reaches the
 * sign. */
static LLVMValueRef e2m1_fold_offsets(Cg *c, Dot *d, int j, LLVMValueRef kb)
{
    LLVMBuilderRef B = c->b;
    LLVMValueRef top = splat_i(c, c->i16, 32, (E2M1_FOLD_BIAS + 127) << 7);
    if (!d->b_scale)
        return splat_i(c, c->i16, 32, E2M1_FOLD_BIAS << 7);
    int64_t n = d->bk_b < IR_E2M1_PAIR_BLOCK ? IR_E2M1_PAIR_BLOCK / d->bk_b : 1; /* codes in the block */
    LLVMValueRef first = n > 1 ? LLVMBuildMul(B, kb, cg_i64(c, n), "") : scale_col(c, kb, IR_E2M1_PAIR_BLOCK, d->bk_b);
    LLVMTypeRef ty = LLVMVectorType(c->i8, (unsigned)n);
    LLVMValueRef raw = LLVMBuildLoad2(B, ty, at(c, d->b_scale, cg_i64(c, j / d->b_rows_per_scale), first), "");
    LLVMSetAlignment(raw, 1);
    LLVMValueRef codes = LLVMBuildZExt(B, raw, LLVMVectorType(c->i16, (unsigned)n), ""), lanes[32];
    for (int w = 0; w < 32; w++)
        lanes[w] = LLVMConstInt(c->i32, (unsigned long long)(w / 8 * n / 4), 0);
    codes = LLVMBuildShuffleVector(B, codes, LLVMGetPoison(LLVMTypeOf(codes)), LLVMConstVector(lanes, 32), "");
    return LLVMBuildSub(B, top, LLVMBuildShl(B, codes, splat_i(c, c->i16, 32, 7), ""), "");
}

/* Row i's part p of A's block from k, as vdpbf16ps takes it. */
static LLVMValueRef pair8_a(Cg *c, Dot *d, const Dpbf16 *dp, int i, LLVMValueRef k, int p)
{
    LLVMValueRef kp = LLVMBuildAdd(c->b, k, cg_i64(c, 32 * p), "");
    LLVMValueRef x = LLVMBuildLoad2(c->b, LLVMVectorType(c->i16, 32), at(c, &d->s->u.gemm.a, cg_i64(c, i), kp), "");
    LLVMSetAlignment(x, 2);
    return LLVMBuildBitCast(c->b, x, dp->params[1], "");
}

/* One 128-element block kb of a folding Dot.pair8 tile (fold_scales): the
 * scales are in the operands and the chains run on across blocks in
 * d->acc (the even parts' and the odd ones' apart where the tile has
 * acc_odd), a part at a time — each column's part decoded once, each
 * row's loaded once — so that only the sums stay live across it (all of
 * A's block loaded first spilled a quarter of it). */
static void pair8_folded_block(Cg *c, Dot *d, LLVMValueRef kb, LLVMValueRef k)
{
    LLVMBuilderRef B = c->b;
    Dpbf16 dp = dpbf16(c);
    LLVMValueRef raw[MAX_DOT_COLS], off[MAX_DOT_COLS];
    for (int j = 0; j < d->nr; j++) {
        if (d->prefetch_next)
            prefetch_row(c, &d->s->u.gemm.b, d->pf_ahead + j, k);
        off[j] = e2m1_fold_offsets(c, d, j, kb);
        raw[j] = e2m1_pair_words(c, d, j, k);
    }
    for (int p = 0; p < 4; p++) {
        LLVMValueRef part[MAX_DOT_COLS];
        for (int j = 0; j < d->nr; j++)
            part[j] = e2m1_pair_part(c, raw[j], p, off[j], dp.params[2]);
        for (int i = 0; i < d->mr; i++) {
            LLVMValueRef a = pair8_a(c, d, &dp, i, k, p);
            for (int j = 0; j < d->nr; j++) {
                LLVMValueRef acc = p % 2 && d->acc_odd[i][j] ? d->acc_odd[i][j] : d->acc[i][j];
                LLVMValueRef args[3] = {LLVMBuildLoad2(B, d->vf32, acc, ""), a, part[j]};
                LLVMBuildStore(B, LLVMBuildCall2(B, dp.ty, dp.fn, args, 3, ""), acc);
            }
        }
    }
}

/* One 128-element block kb of a Dot.pair8 tile: each column's weights
 * decoded once (e2m1_pair_part), one vdpbf16ps chain per row from zero
 * (the blocks' chains are independent: only the running sums carry from
 * block to block), then times the block's scales added to the running
 * sums.  The products are exact and no sum is subnormal (A's e4m3 values
 * and e2m1's are normal in bf16, every product a multiple of 2^-10), so
 * the instruction's flushing of subnormals changes nothing.  Folding:
 * pair8_folded_block. */
static void dot_pair8_block(Cg *c, void *ctx)
{
    Dot *d = ctx;
    LLVMBuilderRef B = c->b;
    LLVMValueRef kb = c->var[d->kbvar->id], k = LLVMBuildMul(B, kb, cg_i64(c, IR_E2M1_PAIR_BLOCK), "");
    if (d->folding) {
        pair8_folded_block(c, d, kb, k);
        return;
    }
    Dpbf16 dp = dpbf16(c);
    LLVMValueRef av[MAX_DOT_ROWS][4], sa[MAX_DOT_ROWS];
    for (int i = 0; i < d->mr; i++) {
        for (int p = 0; p < 4; p++)
            av[i][p] = pair8_a(c, d, &dp, i, k, p);
        sa[i] = d->a_unit ? NULL : lane_scales(c, d, 0, i, kb, IR_E2M1_PAIR_BLOCK);
    }
    LLVMTypeRef ty = d->vf32;
    for (int j = 0; j < d->nr; j++) {
        if (d->prefetch_next)
            prefetch_row(c, &d->s->u.gemm.b, d->pf_ahead + j, k);
        LLVMValueRef raw = e2m1_pair_words(c, d, j, k), sb = lane_scales(c, d, 1, j, kb, IR_E2M1_PAIR_BLOCK), part[4];
        for (int p = 0; p < 4; p++)
            part[p] = e2m1_pair_part(c, raw, p, NULL, dp.params[2]);
        for (int i = 0; i < d->mr; i++) {
            LLVMValueRef sum = LLVMConstNull(ty);
            for (int p = 0; p < 4; p++) {
                LLVMValueRef args[3] = {sum, av[i][p], part[p]};
                sum = LLVMBuildCall2(B, dp.ty, dp.fn, args, 3, "");
            }
            LLVMValueRef sc = sa[i] && sb ? LLVMBuildFMul(B, sa[i], sb, "") : sa[i] ? sa[i] : sb;
            LLVMValueRef args[3] = {sum, sc, LLVMBuildLoad2(B, ty, d->total[i][j], "")};
            LLVMBuildStore(B, cg_intrinsic(c, "llvm.fma", &ty, 1, args, 3), d->total[i][j]);
        }
    }
}

/* ------------------------------------------------ e4m3 B's NaNs */

/* dot_widen's fast e4m3 form and e4m3_direct turn B's NaN codes into
 * finite values, and a NaN weight makes its column's sum NaN whatever A
 * holds; so the tile's K bytes are scanned once apart instead: a byte with
 * its low 7 bits set is NaN, i.e. (byte | 0x80) == 0xff, and a running
 * unsigned byte maximum reaches 0xff exactly when one was seen.  One
 * maximum for all the tile's columns (two chains), a register of bytes at
 * a time: two instructions per 64 weights on AVX-512, where the exact
 * widening spends three per 16.  Only a tile whose maximum says NaN scans
 * its columns again, each for its own flag (nan_end; weights with NaN
 * codes are the rare case).  A maximum per column had 16 registers to
 * keep beside the dot tile's and spilled: a third of fp8_gemm's decode
 * samples (M 1, K 4096, one thread, Zen 5). */
struct NanScan {
    Dot *d;
    Var *kk;
    int step;                        /* bytes per register */
    int64_t len;                     /* the K of the tile: what nan_end rescans */
    LLVMValueRef k0;                 /* where the range scanned starts */
    bool per_column;                 /* nan_end's rescan: into flag[j] */
    LLVMValueRef any[2];             /* allocas: running maxima over the columns */
    LLVMValueRef flag[MAX_DOT_COLS]; /* allocas: a column's maximum (the rescan) */
};

static LLVMValueRef nan_max(Cg *c, NanScan *ns, LLVMValueRef slot, LLVMValueRef raw)
{
    LLVMTypeRef v8 = LLVMVectorType(c->i8, (unsigned)ns->step);
    LLVMValueRef args[2] = {LLVMBuildLoad2(c->b, v8, slot, ""),
                            LLVMBuildOr(c->b, raw, splat_i(c, c->i8, ns->step, 0x80), "")};
    return LLVMBuildStore(c->b, cg_intrinsic(c, "llvm.umax", &v8, 1, args, 2), slot);
}

static void nan_fold(Cg *c, NanScan *ns, LLVMValueRef k, int lanes)
{
    Dot wide = *ns->d;
    wide.chunk = ns->step; /* dot_raw reads d->chunk elements */
    for (int j = 0; j < ns->d->nr; j++) {
        LLVMValueRef raw = dot_raw(c, &wide, &ns->d->s->u.gemm.b, j, k, lanes);
        nan_max(c, ns, ns->per_column ? ns->flag[j] : ns->any[j % 2], raw);
    }
}

static void nan_step(Cg *c, void *ctx)
{
    NanScan *ns = ctx;
    LLVMValueRef k = LLVMBuildMul(c->b, c->var[ns->kk->id], cg_i64(c, ns->step), "");
    nan_fold(c, ns, LLVMBuildAdd(c->b, ns->k0, k, ""), ns->step);
}

/* Columns k0 .. k0 + len of the tile's B rows into the running maxima.  A
 * promoted tile scans each block after its steps, while its bytes are in
 * L1 (after the K loop, a tile's rows came back from L2: 7% of fp8_gemm's
 * decode samples, K 4096). */
static void nan_scan(Cg *c, NanScan *ns, LLVMValueRef k0, int64_t len)
{
    ns->k0 = k0;
    cg_loop(c, ns->kk, cg_i64(c, len / ns->step), LOOP_SERIAL, 0, false, nan_step, ns);
    if (len % ns->step) /* masked-off bytes read 0: not NaN */
        nan_fold(c, ns, LLVMBuildAdd(c->b, k0, cg_i64(c, len - len % ns->step), ""), (int)(len % ns->step));
}

static LLVMValueRef zeroed(Cg *c, LLVMTypeRef ty)
{
    LLVMValueRef p = entry_alloca(c, ty);
    LLVMBuildStore(c->b, LLVMConstNull(ty), p);
    return p;
}

/* A scan of a tile's columns over K elements of B. */
static NanScan *nan_begin(Cg *c, Dot *d, int64_t K)
{
    NanScan *ns = calloc(1, sizeof *ns);
    ns->d = d;
    ns->kk = temp_var(c, "kk", 5);
    ns->step = c->t->vector_bits / 8;
    ns->len = K;
    LLVMTypeRef v8 = LLVMVectorType(c->i8, (unsigned)ns->step);
    for (int h = 0; h < 2; h++)
        ns->any[h] = zeroed(c, v8);
    return ns;
}

/* Whether a maximum of (byte | 0x80) saw 0xff. */
static LLVMValueRef nan_seen(Cg *c, NanScan *ns, LLVMValueRef max)
{
    LLVMValueRef hit = LLVMBuildICmp(c->b, LLVMIntEQ, max, splat_i(c, c->i8, ns->step, 0xff), "");
    LLVMTypeRef bits = LLVMIntTypeInContext(c->ctx, (unsigned)ns->step);
    return LLVMBuildICmp(c->b, LLVMIntNE, LLVMBuildBitCast(c->b, hit, bits, ""), LLVMConstInt(bits, 0, 0), "");
}

/* An i1 per column of the tile: whether its B row held a NaN code — false
 * for every column unless the tile's maximum saw one, then each column's
 * own rescan (a branch, cold). */
static void nan_end(Cg *c, NanScan *ns, LLVMValueRef *nan)
{
    LLVMTypeRef v8 = LLVMVectorType(c->i8, (unsigned)ns->step);
    LLVMValueRef args[2] = {LLVMBuildLoad2(c->b, v8, ns->any[0], ""), LLVMBuildLoad2(c->b, v8, ns->any[1], "")};
    LLVMValueRef seen = nan_seen(c, ns, cg_intrinsic(c, "llvm.umax", &v8, 1, args, 2));
    LLVMBasicBlockRef from = LLVMGetInsertBlock(c->b);
    LLVMBasicBlockRef rescan = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "nan_rescan");
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "nan_known");
    LLVMBuildCondBr(c->b, seen, rescan, join);

    LLVMPositionBuilderAtEnd(c->b, rescan);
    ns->per_column = true;
    for (int j = 0; j < ns->d->nr; j++)
        ns->flag[j] = zeroed(c, v8);
    nan_scan(c, ns, cg_i64(c, 0), ns->len);
    LLVMValueRef col[MAX_DOT_COLS];
    for (int j = 0; j < ns->d->nr; j++)
        col[j] = nan_seen(c, ns, LLVMBuildLoad2(c->b, v8, ns->flag[j], ""));
    LLVMBasicBlockRef rescanned = LLVMGetInsertBlock(c->b);
    LLVMBuildBr(c->b, join);

    LLVMPositionBuilderAtEnd(c->b, join);
    for (int j = 0; j < ns->d->nr; j++) {
        nan[j] = LLVMBuildPhi(c->b, c->i1, "");
        LLVMValueRef in[2] = {LLVMConstInt(c->i1, 0, 0), col[j]};
        LLVMBasicBlockRef bb[2] = {from, rescanned};
        LLVMAddIncoming(nan[j], in, bb, 2);
    }
    free(ns->kk);
    free(ns);
}

/* The W lanes of v summed pairwise (halves, then quarters, ...). */
static LLVMValueRef lane_sum(Cg *c, LLVMValueRef v, int w)
{
    for (int n = w / 2; n >= 1; n /= 2) {
        LLVMValueRef lo[32], hi[32];
        for (int i = 0; i < n; i++) {
            lo[i] = LLVMConstInt(c->i32, (unsigned long long)i, 0);
            hi[i] = LLVMConstInt(c->i32, (unsigned long long)(n + i), 0);
        }
        LLVMValueRef poison = LLVMGetPoison(LLVMTypeOf(v));
        v = LLVMBuildFAdd(c->b, LLVMBuildShuffleVector(c->b, v, poison, LLVMConstVector(lo, (unsigned)n), ""),
                          LLVMBuildShuffleVector(c->b, v, poison, LLVMConstVector(hi, (unsigned)n), ""), "");
    }
    return LLVMBuildExtractElement(c->b, v, LLVMConstInt(c->i32, 0, 0), "");
}

/* x and y's pairs of neighbouring units summed, x's sums then y's, within
 * each group of four units: [x0+x1, x2+x3, y0+y1, y2+y3] per group, with
 * units of `unit` lanes.  Unit 1 is vhaddps (within 128-bit lanes); unit 4
 * moves whole 128-bit blocks. */
static LLVMValueRef pair_sums(Cg *c, LLVMValueRef x, LLVMValueRef y, int w, int unit)
{
    LLVMValueRef lo[64], hi[64];
    int units = w / unit, group = units < 4 ? units : 4;
    for (int l = 0; l < w; l++) {
        int u = l / unit, g = u / group * group, r = u % group, half = group / 2;
        int from = r < half ? 0 : w, src = g + 2 * (r % half); /* unit of x (or y) whose pair lands here */
        lo[l] = LLVMConstInt(c->i32, (unsigned long long)(from + src * unit + l % unit), 0);
        hi[l] = LLVMConstInt(c->i32, (unsigned long long)(from + (src + 1) * unit + l % unit), 0);
    }
    LLVMValueRef a = LLVMBuildShuffleVector(c->b, x, y, LLVMConstVector(lo, (unsigned)w), "");
    LLVMValueRef b = LLVMBuildShuffleVector(c->b, x, y, LLVMConstVector(hi, (unsigned)w), "");
    return LLVMBuildFAdd(c->b, a, b, "");
}

/* Up to W vectors' lane sums at once, as one vector (lane t: v[t]'s sum):
 * a transposing tree of pair sums — two levels within 128-bit lanes turn
 * four vectors into one holding each one's per-block partial sums, then
 * the 128-bit blocks are summed pairwise.  W - 1 shuffle pairs and adds
 * for W sums, where summing each vector alone takes log2(W) each (a tall
 * dot tile's 8 sums at fp8_gemm's 128-wide blocks: 56 of its ~280
 * instructions per block, alone). */
static LLVMValueRef lane_sums(Cg *c, const LLVMValueRef *v, int n, int w)
{
    LLVMValueRef zero = LLVMConstNull(LLVMTypeOf(v[0])), part[16] = {zero};
    int groups = w / 4;
    for (int g = 0; g < groups; g++) {
        LLVMValueRef q[4];
        for (int i = 0; i < 4; i++)
            q[i] = 4 * g + i < n ? v[4 * g + i] : zero;
        part[g] = pair_sums(c, pair_sums(c, q[0], q[1], w, 1), pair_sums(c, q[2], q[3], w, 1), w, 1);
    }
    for (int m = groups; m > 1; m /= 2)
        for (int g = 0; g < m / 2; g++)
            part[g] = pair_sums(c, part[2 * g], part[2 * g + 1], w, 4);
    return part[0];
}

/* The K block the loop runs per: the finer of the promoted scales' blocks
 * (A's, and B's unless in a table, whose blocks are rebuilt inside);
 * without promotion, the table's. */
static int64_t promoted_block(const Dot *d)
{
    if (!d->promote)
        return d->bk_b;
    int64_t a = d->bk_a, b = d->b_in_table ? 0 : d->bk_b;
    return !a ? b : !b || a < b ? a : b;
}

/* The rows a tile of nr weight rows of K elements of t fetches ahead
 * (Dot.prefetch_next): the next tile's, or a later one's where the rows
 * are short, so that the fetch runs at least PREFETCH_BYTES ahead of the
 * reads (DRAM's latency times a core's bandwidth, ~100 ns x 40 GB/s).
 * Zen 5, packed e2m1 at one row, one thread: K 2048 (1 KiB rows, a tile
 * of one) 1.04-1.09 -> 0.82-0.87 ms for 6 experts' 4096 rows at 4 tiles
 * ahead against 1, K 4096 0.31-0.32 -> 0.26-0.28 at 2.  8 KiB rather than
 * 4 (twice the bandwidth-latency product: the prefetches queue behind the
 * tile's own misses), five alternations each, weights rotated: fp4 one
 * row 7168x2048 0.219 -> 0.203 ms (medians), 4096^2 0.262 -> 0.244; fp8
 * 4096^2 one row 0.504 -> 0.496, four rows 0.835 -> 0.797; bf16 one row
 * 0.891 -> 0.877; moe_expert_gemm, 6 of 16 experts at one row, 0.795 ->
 * 0.737; 16 KiB no better than 8. */
enum { PREFETCH_BYTES = 8192 };

static int64_t prefetch_ahead(int64_t nr, int64_t K, DType t)
{
    int64_t tile = nr * K * dt_bits(t) / 8, tiles = tile > 0 ? (PREFETCH_BYTES + tile - 1) / tile : 1;
    return nr * (tiles < 1 ? 1 : tiles);
}

static void dot_gemm(Cg *c, const Stmt *s, int mr, int nr, Var *k)
{
    int w = c->t->vector_bits / 32;
    int64_t K = s->u.gemm.a.ext[1];
    DType ta = s->u.gemm.a.buf->dtype, tb = s->u.gemm.b.buf->dtype;
    const Region *asc = s->u.gemm.a_scale.buf ? &s->u.gemm.a_scale : NULL;
    const Region *bsc = s->u.gemm.b_scale.buf ? &s->u.gemm.b_scale : NULL;
    /* packed e2m1 through a byte table on AVX2 (e2m1_lut_parts), its block
     * scale promoted per 32 elements: at one or two rows, where that is
     * one or two FMAs per column per block (moe_expert_gemm, E 16, N 4096,
     * K 2048, one thread, 2 rows per expert: 23.6-25.9 -> 16.6-16.7 ms; 3
     * rows, 3x1 tiles: 21.0 against 25.1-25.4 with it; 4 rows 23.2 against
     * 24.1).  Otherwise an f32 table of the block's scaled values
     * (AVX-512's 16-lane vpermps takes the sign as it is), free of
     * per-block work in tall tiles (fp4 at 16 rows, 6-row tiles, through
     * the byte table: 19 -> 29 ms).  AVX-512 targets run the byte table's
     * tiles on 256-bit registers too: on a Sapphire Rapids Xeon
     * moe_expert_gemm at one row per expert (E 16, N 4096, K 2048, one
     * thread) took 13.1 ms compiled for AVX2 against 20.7 with 512-bit
     * f32-table tiles, whose permutes and 512-bit operations issue on
     * two ports where 256-bit ones have three. */
    bool pair8 = s->u.gemm.a_decode_order && ta == DT_BF16 && tb == DT_F4E2M1; /* 512-bit: vdpbf16ps */
    bool e2m1_lut = tb == DT_F4E2M1 && bsc && (mr <= 2 || pair8);
    if (e2m1_lut && !pair8)
        w = 8;
    bool scaled = asc || bsc, b_in_table = bsc && tb == DT_F4E2M1 && !e2m1_lut;
    bool promote = asc || (bsc && !b_in_table);
    /* vdpbf16ps: bf16 x bf16, or a bf16 A beside an e4m3 B (e4m3_words) */
    bool pairs = c->t->has_bf16_dot && ta == DT_BF16 &&
                 (tb == DT_BF16 ? !scaled : tb == DT_F8E4M3 && w == 16);
    /* packed e2m1 with an f32 table: one W-lane part per step, which keeps
     * the tables and accumulators of pass_lower's columns in registers;
     * through the byte table, a scale block of 32 */
    int chunk = e2m1_lut ? 32 : tb == DT_F4E2M1 ? w : pairs || dt_bits(ta) == 8 || dt_bits(tb) == 8 ? 2 * w : w;
    /* A tile of few columns streams few weight rows from memory (a 4x2
     * bf16 tile at 4 rows: two), fewer than the prefetchers need to keep
     * DRAM busy; the next tile's rows, fetched alongside, make it twice as
     * many.  Only where the tile's rows are all of the product's — all of
     * C's, the GEMM's accumulator (A's buffer may hold a block of rows per
     * step, pass_hoist) — as later bands find the rows in cache (at 16
     * rows the hints cost 8%), and not at 9
     * columns (one row: 18 streams were 20% slower than 9).  bench_decode
     * --quick, 4096^2, one thread: bf16 M=4 3.39-3.46 -> 2.49-2.59 ms.
     * Packed e2m1 through the byte table (one row, 2 columns) likewise,
     * also where its row is one of a band's (an MoE expert's one-row
     * variant, the band's other rows not computed): fp4 M=1 2.43-3.09 ->
     * 1.93-1.97 ms; bench_moe --quick, routed GEMMs at one token 26.6-29.2
     * -> 24.5-24.8 ms.  Not e2m1's f32-table tiles, compute-bound: 4 rows
     * 3.75 -> 3.73 ms with it.  The e4m3 pair tiles in every band too,
     * whose steps, their scales folded (fold_scales), outrun the
     * prefetchers (fp8_gemm 4096^2 from DRAM, one thread: 16 rows in 8x2
     * bands 1.96 -> 1.63 ms; a dyn M's 4-row variant 0.72 -> 0.54, bench_moe's
     * shared expert at 4 tokens 1.36-1.57 ms without against 1.07-1.18
     * before the fold; a dyn M's two 8-row bands over all of K 2.23 ->
     * 2.30); and the bf16 pair tiles likewise (bf16 at 16 rows in 8x2
     * bands from DRAM 2.63-2.93 -> 2.07-2.33 ms). */
    int rc = s->u.gemm.c.buf->rank;
    int64_t c_rows;
    bool all_rows = ir_expr_is_const(s->u.gemm.c.buf->shape[rc - 2], &c_rows) && c_rows == s->u.gemm.c.ext[rc - 2];
    bool few = nr <= 4 && s->u.gemm.b.buf->scope == SCOPE_GLOBAL && (e2m1_lut || pairs || (all_rows && tb != DT_F4E2M1));
    /* A one-column pair tile at one row on a core that streams one run of
     * rows best (TargetInfo.one_stream): the tiles read the weight rows one
     * after another, a sequential stream the hardware prefetches, where
     * the hints only cost (one row, one thread, weights from DRAM: fp8_gemm
     * by `tilec run --rotate`, 4096^2 0.91-0.94 -> 0.74-0.79 ms, 7168x2048
     * 0.77-0.81 -> 0.68-0.74; bench_decode's bf16 1.54-1.77 -> 1.17-1.37,
     * 1.20-1.40 -> 1.13-1.22). */
    bool one_stream = c->t->one_stream && pairs && mr == 1 && nr == 1;
    Dot d = {.s = s, .mr = mr, .nr = nr, .w = w, .chunk = chunk, .pairs = pairs, .kvar = k,
             .vf32 = LLVMVectorType(c->f32, (unsigned)w), .prefetch_next = few && !one_stream,
             .pf_ahead = prefetch_ahead(nr, K, tb), .a_scale = asc, .b_scale = bsc,
             .promote = promote, .b_in_table = b_in_table, .e2m1_lut = e2m1_lut,
             .lift_a = s->u.gemm.a_lifted, .prescaled = s->u.gemm.a_prescaled};
    const Region *ops[2] = {&s->u.gemm.a, &s->u.gemm.b}, *scs[2] = {asc, bsc};
    int64_t *rows_per[2] = {&d.a_rows_per_scale, &d.b_rows_per_scale}, *bk[2] = {&d.bk_a, &d.bk_b};
    for (int x = 0; x < 2; x++) {
        if (!scs[x])
            continue;
        int rank = ops[x]->buf->rank;
        *rows_per[x] = ops[x]->ext[rank - 2] / scs[x]->ext[rank - 2];
        *bk[x] = ops[x]->ext[rank - 1] / scs[x]->ext[rank - 1];
    }
    d.block = promoted_block(&d);
    int64_t finest = d.bk_a && d.bk_b ? (d.bk_a < d.bk_b ? d.bk_a : d.bk_b) : d.bk_a ? d.bk_a : d.bk_b;
    d.fold = ((pairs && tb == DT_F8E4M3) || (pair8 && mr >= 2)) && promote && (!asc || d.prescaled) &&
             (!bsc || bsc->buf->dtype == DT_E8M0) && (!finest || K / finest <= MAX_FOLD_CODES);
    bool fits = true;
    for (int x = 0; x < 2; x++)
        fits = fits && (!*bk[x] || (*bk[x] % chunk == 0 && (*bk[x] % d.block == 0 || d.block % *bk[x] == 0)));
    if (scaled && (!fits || K % chunk || d.block % chunk || (b_in_table && promote && d.bk_a % d.bk_b))) {
        /* the verifier's 32-element blocks, one a multiple of the other;
         * pass_lower's e2m1 tables within A's blocks */
        fprintf(stderr, "tilec: internal error: scale blocks of %lld and %lld elements in %d-element steps\n",
                (long long)d.bk_a, (long long)d.bk_b, chunk);
        abort();
    }
    /* blocks in pairs where each is one step (the scale blocks are the
     * steps) and they pair up: bench_decode --quick --fmt fp4, M=1, one
     * thread, 1756-1760 -> 1490-1537 us (moe_expert_gemm, one row per
     * expert, 14.2-14.4 -> 12.1-12.7 ms) */
    d.lut_pairs = e2m1_lut && d.block == chunk && (K / d.block) % 2 == 0;
    d.words = s->u.gemm.a_decode_order && tb == DT_F8E4M3;
    if (d.words && (!pairs || K % IR_E4M3_WORD_BLOCK || (scaled && d.block % IR_E4M3_WORD_BLOCK))) {
        fprintf(stderr, "tilec: internal error: an e4m3 a_decode_order micro_gemm that is no pair tile\n");
        abort();
    }
    if (s->u.gemm.a_decode_order && !d.words) {
        if (!e2m1_lut || !promote || K % IR_E2M1_BLOCK) { /* the verifier's conditions */
            fprintf(stderr, "tilec: internal error: an a_decode_order micro_gemm that is no byte-table dot tile\n");
            abort();
        }
        d.t8 = !pair8;
        d.pair8 = pair8;
        d.lut_pairs = false;
        d.chunk = chunk = pair8 ? IR_E2M1_PAIR_BLOCK : IR_E2M1_BLOCK;
        if (pair8 && (!c->t->has_bf16_dot || w != 16 || K % IR_E2M1_PAIR_BLOCK)) {
            fprintf(stderr, "tilec: internal error: a bf16 a_decode_order tile for a target without 16-lane vdpbf16ps\n");
            abort();
        }
    }
    if (e2m1_lut && !d.t8) {
        d.lut_buf = entry_alloca(c, LLVMArrayType(c->i8, (unsigned)(64 * nr)));
        LLVMSetAlignment(d.lut_buf, 32);
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            d.acc[i][j] = entry_alloca(c, d.vf32);
            LLVMBuildStore(c->b, LLVMConstNull(d.vf32), d.acc[i][j]);
            if (promote) {
                d.total[i][j] = entry_alloca(c, d.vf32);
                LLVMBuildStore(c->b, LLVMConstNull(d.vf32), d.total[i][j]);
            }
            if ((d.fold && d.pair8 && 2 * mr * nr <= PAIR8_FOLD_SUMS) || pair_chains(&d, K)) {
                d.acc_odd[i][j] = entry_alloca(c, d.vf32);
                LLVMBuildStore(c->b, LLVMConstNull(d.vf32), d.acc_odd[i][j]);
            }
        }
    if (tb == DT_F8E4M3)
        d.nans = nan_begin(c, &d, K);
    /* The body is already mr·nr FMAs wide: unrolling it further only
     * multiplies the code (and the compile time: 0.49 s for a 16-row f32
     * gemm fully unrolled at K 128). */
    if (scaled) {
        scale_buffers(c, &d);
        d.kbvar = temp_var(c, "kb", 4);
        d.ktvar = temp_var(c, "kt", 6);
        if (d.t8)
            scaled_loop(c, &d, K / IR_E2M1_BLOCK, dot_t8_block);
        else if (d.pair8 && d.fold)
            fold_scales(c, &d, K / IR_E2M1_PAIR_BLOCK, dot_pair8_block);
        else if (d.pair8 && d.prescaled && asc && K / d.bk_a <= MAX_FOLD_CODES)
            a_unit_versions(c, &d, K / IR_E2M1_PAIR_BLOCK, dot_pair8_block);
        else if (d.pair8)
            scaled_loop(c, &d, K / IR_E2M1_PAIR_BLOCK, dot_pair8_block);
        else if (d.lut_pairs)
            scaled_loop(c, &d, K / d.block / 2, dot_block_pair);
        else if (d.fold)
            fold_scales(c, &d, K / d.block, fold_block);
        else
            scaled_loop(c, &d, K / d.block, dot_block);
        free(d.kbvar);
        free(d.ktvar);
    } else if (d.acc_odd[0][0] || d.words) {
        d.k0 = cg_i64(c, 0);
        cg_loop(c, k, cg_i64(c, K / chunk / 2), LOOP_SERIAL, 1, false, dot_chained_steps, &d);
        for (int i = 0; i < mr && d.acc_odd[0][0]; i++) /* (a words tile without chains: one sum) */
            for (int j = 0; j < nr; j++) {
                LLVMValueRef sum = LLVMBuildFAdd(c->b, LLVMBuildLoad2(c->b, d.vf32, d.acc[i][j], ""),
                                                 LLVMBuildLoad2(c->b, d.vf32, d.acc_odd[i][j], ""), "");
                LLVMBuildStore(c->b, sum, d.acc[i][j]);
            }
    } else {
        cg_loop(c, k, cg_i64(c, K / chunk), LOOP_SERIAL, dot_unroll(&d), false, dot_step, &d);
    }
    if (K % chunk)
        dot_lanes(c, &d, cg_i64(c, K - K % chunk), (int)(K % chunk));
    LLVMValueRef nan[MAX_DOT_COLS] = {0};
    if (d.nans) {
        if (!promote)
            nan_scan(c, d.nans, cg_i64(c, 0), K);
        nan_end(c, d.nans, nan);
    }
    /* the tile's sums W at a time (lane_sums), scaled and NaN-marked as
     * vectors (one select: LLVM made eight branches of eight scalar ones) */
    double scale = d.lift_a ? ldexp(1.0, -IR_A_LIFT_EXP - DIRECT_B_EXP) : pairs ? 1.0 : dot_scale(ta) * dot_scale(tb);
    if (e2m1_lut && !d.t8 && !d.pair8)
        scale *= 0.5; /* the byte table holds 2x the values */
    const Region *cr = &s->u.gemm.c;
    int n = mr * nr;
    LLVMValueRef sums[MAX_DOT_ROWS * MAX_DOT_COLS];
    for (int t0 = 0; t0 < n; t0 += w) {
        LLVMValueRef v[64];
        int m = n - t0 < w ? n - t0 : w;
        for (int t = 0; t < m; t++)
            v[t] = LLVMBuildLoad2(c->b, d.vf32, (promote ? d.total : d.acc)[(t0 + t) / nr][(t0 + t) % nr], "");
        LLVMValueRef all = m == 1 ? NULL : lane_sums(c, v, m, w);
        if (!all) {
            sums[t0] = lane_sum(c, v[0], w);
            if (scale != 1.0)
                sums[t0] = LLVMBuildFMul(c->b, sums[t0], LLVMConstReal(c->f32, scale), "");
            if (nan[t0 % nr])
                sums[t0] = LLVMBuildSelect(c->b, nan[t0 % nr], LLVMConstReal(c->f32, NAN), sums[t0], "");
            continue;
        }
        if (scale != 1.0)
            all = LLVMBuildFMul(c->b, all, splat_f(c, &d, LLVMConstReal(c->f32, scale)), "");
        if (nan[0] && nr == 1) {
            /* one column: one flag for every lane, selected as a scalar
             * (a vector mask of it took 4 instructions per tile) */
            all = LLVMBuildSelect(c->b, nan[0], splat_f(c, &d, LLVMConstReal(c->f32, NAN)), all, "");
        } else if (nan[0]) {
            LLVMValueRef mask = LLVMConstNull(LLVMVectorType(c->i1, (unsigned)w));
            for (int t = 0; t < m; t++)
                mask = LLVMBuildInsertElement(c->b, mask, nan[(t0 + t) % nr], LLVMConstInt(c->i32, (unsigned)t, 0), "");
            all = LLVMBuildSelect(c->b, mask, splat_f(c, &d, LLVMConstReal(c->f32, NAN)), all, "");
        }
        for (int t = 0; t < m; t++)
            sums[t0 + t] = LLVMBuildExtractElement(c->b, all, LLVMConstInt(c->i32, (unsigned)t, 0), "");
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            LLVMValueRef p = at(c, cr, cg_i64(c, i), cg_i64(c, j));
            LLVMValueRef sum = sums[i * nr + j];
            if (!s->u.gemm.clear)
                sum = LLVMBuildFAdd(c->b, LLVMBuildLoad2(c->b, c->f32, p, ""), sum, "");
            LLVMBuildStore(c->b, sum, p);
        }
}

/* ------------------------------------------------ broadcast tiles (trans_a, trans_b) */

/* MICRO_GEMM with A as [K, M] f32 (trans_a) and B as [N, K] (trans_b) in
 * its own dtype, block-scaled or not: C's M rows are the vector lanes.
 * pass_lower gives these the decode GEMMs of two vectors' worth of rows
 * (16 tokens on AVX2), where dot tiles read A at 32 bytes per FMA (from
 * L2 once a band's rows of A outgrow L1: 8 rows of 4096) and widen B on
 * the shuffle ports the FMAs share — about half the FMA peak on Zen 3
 * (bench_decode M = 16, every format).  Here the K loop runs in chunks:
 * the chunk of each of the tile's nr weight rows is decoded once (widened,
 * times its block scale) into an f32 scratch in L1, and then each k of it
 * loads A's row k (M lanes, one or two vectors; pass_lower stages A
 * transposed) and meets every weight broadcast from the scratch in one FMA
 * per vector: nr·nv accumulators and no other work per FMA, A read
 * sequentially at 32 bytes per nr FMAs.  The sums come out in k order,
 * as the interpreter adds them. */
enum { MAX_BCAST_VECS = 4 };

typedef struct Bcast {
    Dot d;           /* the decoding helpers' context, as for a dot tile: lanes, B's scale */
    int nv, rem, nr; /* vectors of C's rows, lanes of the last one (0: full), columns */
    int64_t chunk;   /* elements of K decoded at a time */
    LLVMValueRef acc[IR_BCAST_COLS][MAX_BCAST_VECS];
    LLVMValueRef scratch[IR_BCAST_COLS]; /* [chunk] f32 each: the chunk's weights, decoded */
    Var *qvar, *kvar;     /* the chunk loop and the k loop in it */
    LLVMValueRef k0;      /* the chunk's first k */
    NanScan *nans;        /* e4m3 B: its NaN codes, scanned apart */
} Bcast;

/* Whether micro_gemm s runs as a broadcast tile: what IR_BCAST_CHUNK says
 * (which the verifier holds a scaled one to), of B's dtypes the dot tiles
 * read, f32 A unscaled, W · MAX_BCAST_VECS rows at most. */
static bool is_bcast_tile(Cg *c, const Stmt *s)
{
    const __typeof__(s->u.gemm) *g = &s->u.gemm;
    const Region *b = &g->b, *bs = &g->b_scale;
    DType tb = b->buf->dtype;
    int w = c->t->vector_bits / 32, rank = b->buf->rank;
    int64_t K = b->ext[rank - 1], bk = bs->buf ? K / bs->ext[rank - 1] : 0;
    return !c->t->gpu_sm && g->trans_a && g->trans_b && g->a.buf->dtype == DT_F32 && !g->a_scale.buf &&
           !g->a_lifted && !g->a_prescaled && !g->a_decode_order && !g->b_pairs &&
           (dot_dtype(tb) || (tb == DT_F4E2M1 && bs->buf)) &&
           K % IR_BCAST_CHUNK == 0 && (!bk || bk == 32 || bk % IR_BCAST_CHUNK == 0) && g->c.ext[0] <= IR_BCAST_ROWS &&
           g->c.ext[0] <= (int64_t)MAX_BCAST_VECS * w && g->c.ext[1] <= IR_BCAST_COLS;
}

static LLVMValueRef bcast_slot(Cg *c, Bcast *t, int j, LLVMValueRef k)
{
    return LLVMBuildGEP2(c->b, c->f32, t->scratch[j], &k, 1, "");
}

static void bcast_put(Cg *c, Bcast *t, int j, int64_t o, LLVMValueRef v)
{
    LLVMSetAlignment(LLVMBuildStore(c->b, v, bcast_slot(c, t, j, cg_i64(c, o))), 4);
}

/* One step of a loop over a scale block of the chunk (from k on, at
 * offset o in it): a vector of each weight row widened into the scratch,
 * times the row's scale (sv[j]; NULL: none).  A loop, not a copy per
 * vector: LLVM's dead-store and hoisting passes took ~100 ms over the 48
 * copies of a 6-row tile (bf16 16 x 4096 x 4096: 270-310 -> 140-200 ms
 * to an object, with a scratch per row); each step widens all the rows,
 * 8 loop steps a chunk — a loop per row, 48 steps, ran ~7% slower. */
typedef struct Widen {
    Bcast *t;
    LLVMValueRef k;                  /* the block's first k */
    LLVMValueRef sv[IR_BCAST_COLS];  /* each row's scale, splat (NULL: none) */
    int64_t o;                       /* the block's offset in the chunk */
    Var *var;                        /* the loop's variable: vectors into the block */
} Widen;

static void widen_step(Cg *c, void *ctx)
{
    Widen *wd = ctx;
    Bcast *t = wd->t;
    const Region *b = &t->d.s->u.gemm.b;
    DType tb = b->buf->dtype;
    LLVMTypeRef raw_ty = LLVMVectorType(cg_storage_type(c, tb), (unsigned)t->d.w);
    LLVMValueRef e = LLVMBuildMul(c->b, c->var[wd->var->id], cg_i64(c, t->d.w), "");
    LLVMValueRef k = LLVMBuildAdd(c->b, wd->k, e, ""), slot = LLVMBuildAdd(c->b, cg_i64(c, wd->o), e, "");
    for (int j = 0; j < t->nr; j++) {
        LLVMValueRef raw = LLVMBuildLoad2(c->b, raw_ty, at(c, b, cg_i64(c, j), k), "");
        LLVMSetAlignment(raw, (unsigned)(dt_bits(tb) / 8));
        LLVMValueRef v = dot_widen(c, tb, raw, t->d.w, false);
        LLVMSetAlignment(LLVMBuildStore(c->b, wd->sv[j] ? LLVMBuildFMul(c->b, v, wd->sv[j], "") : v,
                                        bcast_slot(c, t, j, slot)),
                         4);
    }
}

/* The weight rows' chunk from k0 into the scratch, each scale block's
 * values times its scale (packed e2m1: through the block's f32 table, as
 * the tall dot tiles decode it; e4m3: the F16C route, 2^-8 of the value —
 * bcast_gemm scales the sums back — its NaN codes finite and scanned apart
 * per chunk (Bcast.nans), three instructions per 8 weights fewer: fp8_gemm
 * 16 rows, 4096^2, one thread, 8.15-8.43 -> 7.63-7.99 ms).  Straight into
 * f32's fields (e4m3_direct) and multiplied back by 2^120 and by the scale
 * was slower (8.47-9.68 against 9.27-10.4: two multiplies on the FMA
 * ports). */
static void bcast_decode(Cg *c, Bcast *t, LLVMValueRef k0)
{
    Dot *d = &t->d;
    int w = d->w;
    int64_t blk = d->b_scale && d->bk_b < t->chunk ? d->bk_b : t->chunk;
    for (int64_t o = 0; o < t->chunk; o += blk) {
        LLVMValueRef k = LLVMBuildAdd(c->b, k0, cg_i64(c, o), "");
        LLVMValueRef scale[IR_BCAST_COLS] = {0};
        for (int j = 0; j < t->nr && d->b_scale; j++)
            scale[j] = block_scale(c, d, 1, j, LLVMBuildUDiv(c->b, k, cg_i64(c, d->bk_b), ""));
        if (d->s->u.gemm.b.buf->dtype == DT_F4E2M1) {
            for (int j = 0; j < t->nr; j++) {
                LLVMValueRef table = e2m1_table(c, d, scale[j]), words = e2m1_row(c, d, j, k);
                for (int h = 0; h < blk / w; h++)
                    bcast_put(c, t, j, o + (int64_t)h * w, e2m1_part(c, d, words, table, h));
            }
            continue;
        }
        Widen wd = {.t = t, .k = k, .o = o, .var = temp_var(c, "e", 3)};
        for (int j = 0; j < t->nr; j++)
            wd.sv[j] = scale[j] ? splat_f(c, d, scale[j]) : NULL;
        cg_loop(c, wd.var, cg_i64(c, blk / w), LOOP_SERIAL, 1, false, widen_step, &wd);
        free(wd.var);
    }
}

/* Vector v of A's row k (C's rows v·W on; the last masked to its lanes). */
static LLVMValueRef bcast_a(Cg *c, Bcast *t, LLVMValueRef k, int v)
{
    int w = t->d.w, lanes = v == t->nv - 1 && t->rem ? t->rem : w;
    return load_lanes(c, t->d.vf32, at(c, &t->d.s->u.gemm.a, k, cg_i64(c, (int64_t)v * w)), lanes, 4);
}

static void bcast_k(Cg *c, void *ctx)
{
    Bcast *t = ctx;
    LLVMValueRef kk = c->var[t->kvar->id], k = LLVMBuildAdd(c->b, t->k0, kk, ""), av[MAX_BCAST_VECS];
    LLVMTypeRef ty = t->d.vf32;
    for (int v = 0; v < t->nv; v++)
        av[v] = bcast_a(c, t, k, v);
    for (int j = 0; j < t->nr; j++) {
        LLVMValueRef x = LLVMBuildLoad2(c->b, c->f32, bcast_slot(c, t, j, kk), "");
        LLVMValueRef bx = splat_f(c, &t->d, x);
        for (int v = 0; v < t->nv; v++) {
            LLVMValueRef args[3] = {av[v], bx, LLVMBuildLoad2(c->b, ty, t->acc[j][v], "")};
            LLVMBuildStore(c->b, cg_intrinsic(c, "llvm.fma", &ty, 1, args, 3), t->acc[j][v]);
        }
    }
}

static void bcast_chunk(Cg *c, void *ctx)
{
    Bcast *t = ctx;
    t->k0 = LLVMBuildMul(c->b, c->var[t->qvar->id], cg_i64(c, t->chunk), "");
    bcast_decode(c, t, t->k0);
    if (t->nans)
        nan_scan(c, t->nans, t->k0, t->chunk);
    cg_loop(c, t->kvar, cg_i64(c, t->chunk), LOOP_SERIAL, 1, false, bcast_k, t);
}

static void bcast_gemm(Cg *c, const Stmt *s)
{
    const Region *a = &s->u.gemm.a, *b = &s->u.gemm.b, *cr = &s->u.gemm.c;
    const Region *bsc = s->u.gemm.b_scale.buf ? &s->u.gemm.b_scale : NULL;
    int w = c->t->vector_bits / 32, M = (int)cr->ext[0], nr = (int)cr->ext[1], rank = b->buf->rank;
    int64_t K = a->ext[0];
    DType tb = b->buf->dtype;
    Bcast t = {.d = {.s = s, .nr = nr, .w = w, .vf32 = LLVMVectorType(c->f32, (unsigned)w), .b_scale = bsc},
               .nv = (M + w - 1) / w, .rem = M % w, .nr = nr, .chunk = IR_BCAST_CHUNK};
    if (bsc) {
        t.d.b_rows_per_scale = b->ext[rank - 2] / bsc->ext[rank - 2];
        t.d.bk_b = b->ext[rank - 1] / bsc->ext[rank - 1];
    }
    for (int j = 0; j < nr; j++)
        for (int v = 0; v < t.nv; v++) {
            t.acc[j][v] = entry_alloca(c, t.d.vf32);
            LLVMBuildStore(c->b, LLVMConstNull(t.d.vf32), t.acc[j][v]);
        }
    for (int j = 0; j < nr; j++) {
        t.scratch[j] = entry_alloca(c, LLVMArrayType(c->f32, (unsigned)t.chunk));
        LLVMSetAlignment(t.scratch[j], 32);
    }
    if (tb == DT_F8E4M3)
        t.nans = nan_begin(c, &t.d, K);
    t.qvar = temp_var(c, "q", 2);
    t.kvar = temp_var(c, "k", 1);
    cg_loop(c, t.qvar, cg_i64(c, K / t.chunk), LOOP_SERIAL, 0, false, bcast_chunk, &t);
    free(t.qvar);
    free(t.kvar);
    LLVMValueRef nan[IR_BCAST_COLS] = {0};
    if (t.nans)
        nan_end(c, t.nans, nan);
    double scale = dot_scale(tb);
    for (int j = 0; j < nr; j++)
        for (int v = 0; v < t.nv; v++) {
            LLVMValueRef sum = LLVMBuildLoad2(c->b, t.d.vf32, t.acc[j][v], "");
            if (scale != 1.0)
                sum = LLVMBuildFMul(c->b, sum, splat_f(c, &t.d, LLVMConstReal(c->f32, scale)), "");
            if (nan[j])
                sum = LLVMBuildSelect(c->b, nan[j], splat_f(c, &t.d, LLVMConstReal(c->f32, NAN)), sum, "");
            for (int l = 0; l < w && v * w + l < M; l++) {
                LLVMValueRef p = at(c, cr, cg_i64(c, (int64_t)v * w + l), cg_i64(c, j));
                LLVMValueRef x = LLVMBuildExtractElement(c->b, sum, LLVMConstInt(c->i32, (unsigned)l, 0), "");
                if (!s->u.gemm.clear)
                    x = LLVMBuildFAdd(c->b, LLVMBuildLoad2(c->b, c->f32, p, ""), x, "");
                LLVMBuildStore(c->b, x, p);
            }
        }
}

/* Any dtype: c[i][j] (+)= sum_k a*b in f32, one element at a time. */
typedef struct Scalar {
    const Stmt *s;
    Var *i, *j, *k;
    LLVMValueRef acc;
} Scalar;

static LLVMValueRef operand(Cg *c, const Region *r, LLVMValueRef x, LLVMValueRef y, bool trans)
{
    LLVMValueRef p = trans ? at(c, r, y, x) : at(c, r, x, y);
    return cg_widen(c, r->buf->dtype, LLVMBuildLoad2(c->b, cg_storage_type(c, r->buf->dtype), p, ""));
}

static void scalar_k(Cg *c, void *ctx)
{
    Scalar *sc = ctx;
    const Stmt *s = sc->s;
    LLVMValueRef i = c->var[sc->i->id], j = c->var[sc->j->id], k = c->var[sc->k->id];
    LLVMValueRef x = operand(c, &s->u.gemm.a, i, k, s->u.gemm.trans_a);
    LLVMValueRef y = operand(c, &s->u.gemm.b, k, j, s->u.gemm.trans_b);
    LLVMValueRef acc = LLVMBuildLoad2(c->b, c->f32, sc->acc, "");
    LLVMBuildStore(c->b, LLVMBuildFAdd(c->b, acc, LLVMBuildFMul(c->b, x, y, ""), ""), sc->acc);
}

static void scalar_j(Cg *c, void *ctx)
{
    Scalar *sc = ctx;
    const Stmt *s = sc->s;
    LLVMValueRef cp = at(c, &s->u.gemm.c, c->var[sc->i->id], c->var[sc->j->id]);
    LLVMValueRef init = s->u.gemm.clear ? LLVMConstReal(c->f32, 0) : LLVMBuildLoad2(c->b, c->f32, cp, "");
    LLVMBuildStore(c->b, init, sc->acc);
    int64_t K = s->u.gemm.trans_a ? s->u.gemm.a.ext[0] : s->u.gemm.a.ext[1];
    cg_loop(c, sc->k, cg_i64(c, K), LOOP_SERIAL, 0, false, scalar_k, sc);
    LLVMBuildStore(c->b, LLVMBuildLoad2(c->b, c->f32, sc->acc, ""), cp);
}

static void scalar_i(Cg *c, void *ctx)
{
    Scalar *sc = ctx;
    cg_loop(c, sc->j, cg_i64(c, sc->s->u.gemm.c.ext[1]), LOOP_SERIAL, 0, false, scalar_j, sc);
}

/* Whether micro_gemm s runs as a dot tile (dot_gemm). */
static bool is_dot_tile(const Stmt *s)
{
    DType tb = s->u.gemm.b.buf->dtype;
    bool scaled = s->u.gemm.a_scale.buf || s->u.gemm.b_scale.buf;
    return s->u.gemm.trans_b && !s->u.gemm.trans_a && (dot_dtype(tb) || (scaled && tb == DT_F4E2M1)) &&
           dot_dtype(s->u.gemm.a.buf->dtype) && s->u.gemm.c.ext[0] <= MAX_DOT_ROWS &&
           s->u.gemm.c.ext[1] <= MAX_DOT_COLS;
}

/* ------------------------------------------------ dot tiles as functions */

/* A kernel's dot tiles repeat: the row-count variants of each band, a
 * GEMM's fast and tail paths, the gate and up GEMMs of an expert — and
 * LLVM optimised each copy inline (moe_gemm_swiglu at 16-row tiles held 24
 * of them, 88% of its 1.33 s compile in LLVM).  A tile that occurs more
 * than once is now one internal function, called with the origins of its
 * operands' windows and their run-time strides; its body is dot_gemm of
 * the statement with those windows moved to (0, 0) (bcast_gemm for a
 * broadcast tile: moe_gemm_swiglu's 6 of them, compiled in 1.07-1.38 s
 * instead of 1.49-1.96).  Distinct: the key below names everything of the
 * statement and its buffers the tile reads.
 * A tile that occurs once stays inline, where LLVM hoists its loop-invariant
 * work (decoded scales, say) out of the column loop around it: fp8_gemm at
 * 16 rows, one tile, ran 5% slower as a call (9.5-9.8 ms against 9.0-9.2). */
enum { TILE_REGIONS = 5, TILE_KEY = 768 };

/* The operands of copy (A, B, C, then the scales it has). */
static int tile_regions(Stmt *copy, Region *rs[TILE_REGIONS])
{
    Region *all[TILE_REGIONS] = {&copy->u.gemm.a, &copy->u.gemm.b, &copy->u.gemm.c, &copy->u.gemm.a_scale,
                                 &copy->u.gemm.b_scale};
    int n = 0;
    for (int i = 0; i < TILE_REGIONS; i++)
        if (all[i]->buf)
            rs[n++] = all[i];
    return n;
}

/* The key of a tile: its flags and scales, and per operand the buffer's
 * dtype, scope, rank, constant strides ("?" where known at run time only)
 * and the window's extents; C's rows (dot_gemm's all_rows).  false: too
 * long, or an operand's buffer shared with another (one origin each). */
static bool tile_key(Cg *c, const Stmt *s, Region *const *rs, int n, char *key)
{
    size_t at_ = 0;
#define PUT(...) at_ += (size_t)snprintf(at_ < TILE_KEY ? key + at_ : NULL, at_ < TILE_KEY ? TILE_KEY - at_ : 0, __VA_ARGS__)
    const __typeof__(s->u.gemm) *g = &s->u.gemm;
    PUT("tile.%d%d%d%d%d%d%d%d.%d%d", g->trans_a, g->trans_b, g->clear, g->b_pairs, g->a_lifted, g->a_prescaled,
        g->a_decode_order, g->fast_accum,
        g->a_scale.buf != NULL, g->b_scale.buf != NULL); /* which scales rs[3..] are */
    for (int i = 0; i < n; i++) {
        const Buffer *b = rs[i]->buf;
        for (int j = 0; j < i; j++)
            if (rs[j]->buf == b)
                return false;
        PUT("|%s.%d", dt_name(b->dtype), (int)b->scope);
        for (int d = 0; d < b->rank; d++) {
            LLVMValueRef st = c->stride[b->id][d];
            if (LLVMIsAConstantInt(st))
                PUT(".%lld", (long long)LLVMConstIntGetSExtValue(st));
            else
                PUT(".?");
        }
        for (int d = 0; d < b->rank; d++)
            PUT("x%lld", (long long)rs[i]->ext[d]);
    }
    int64_t rows = -1;
    const Buffer *cb = g->c.buf;
    ir_expr_is_const(cb->shape[cb->rank - 2], &rows);
    PUT("|c%lld", (long long)rows);
#undef PUT
    return at_ < TILE_KEY;
}

static const Expr tile_origin = {.op = EX_CONST, .dtype = DT_I64};

/* The tile function of key (built on first use) for copy, whose regions
 * rs[0..n) it takes as pointer parameters, then their run-time strides. */
static LLVMValueRef tile_function(Cg *c, const char *key, Stmt *copy, Region *const *rs, int n, LLVMTypeRef fty)
{
    LLVMValueRef fn = LLVMGetNamedFunction(c->mod, key);
    if (fn)
        return fn;
    fn = LLVMAddFunction(c->mod, key, fty);
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    cg_target_attrs(c, fn);
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, cg_enum_attr(c, "noinline", 0));
    LLVMBasicBlockRef resume = LLVMGetInsertBlock(c->b);
    LLVMValueRef caller = c->fn;
    LLVMValueRef base[TILE_REGIONS], stride[TILE_REGIONS][IR_MAX_RANK];
    unsigned p = (unsigned)n;
    for (int i = 0; i < n; i++) {
        const Buffer *b = rs[i]->buf;
        base[i] = c->base[b->id];
        c->base[b->id] = LLVMGetParam(fn, (unsigned)i);
        /* distinct buffers: the tile's pointers do not overlap (C, the one
         * it writes, is a fragment or scratch of its own) */
        LLVMAddAttributeAtIndex(fn, (unsigned)i + 1, cg_enum_attr(c, "noalias", 0));
        if (rs[i] != &copy->u.gemm.c)
            LLVMAddAttributeAtIndex(fn, (unsigned)i + 1, cg_enum_attr(c, "readonly", 0));
        for (int d = 0; d < b->rank; d++) {
            stride[i][d] = c->stride[b->id][d];
            if (!LLVMIsAConstantInt(stride[i][d]))
                c->stride[b->id][d] = LLVMGetParam(fn, p++);
            rs[i]->off[d] = (Expr *)&tile_origin;
        }
    }
    c->fn = fn;
    LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, fn, "entry"));
    Var *k = temp_var(c, "k", 1);
    if (is_bcast_tile(c, copy))
        bcast_gemm(c, copy);
    else
        dot_gemm(c, copy, (int)copy->u.gemm.c.ext[0], (int)copy->u.gemm.c.ext[1], k);
    free(k);
    LLVMBuildRetVoid(c->b);
    c->fn = caller;
    LLVMPositionBuilderAtEnd(c->b, resume);
    for (int i = 0; i < n; i++) {
        const Buffer *b = rs[i]->buf;
        c->base[b->id] = base[i];
        for (int d = 0; d < b->rank; d++)
            c->stride[b->id][d] = stride[i][d];
    }
    return fn;
}

/* Where the count of key's tiles in the kernel is kept (cg_count_tiles
 * adds them); NULL for a key never counted, unless add makes it. */
static int *tile_count(Cg *c, const char *key, bool add)
{
    for (int i = 0; i < c->ntiles; i++)
        if (!strcmp(c->tiles[i].key, key))
            return &c->tiles[i].n;
    if (!add)
        return NULL;
    c->tiles = realloc(c->tiles, (size_t)(c->ntiles + 1) * sizeof *c->tiles);
    c->tiles[c->ntiles] = (CgTile){strdup(key), 0};
    return &c->tiles[c->ntiles++].n;
}

void cg_count_tiles(Cg *c, const Stmt *s)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            cg_count_tiles(c, s->u.seq.items[i]);
        break;
    case ST_FOR: cg_count_tiles(c, s->u.loop.body); break;
    case ST_IF:
        cg_count_tiles(c, s->u.if_.then_);
        if (s->u.if_.else_)
            cg_count_tiles(c, s->u.if_.else_);
        break;
    case ST_ONCE: cg_count_tiles(c, s->u.once.body); break;
    case ST_MICRO_GEMM: {
        Stmt copy = *s;
        Region *rs[TILE_REGIONS];
        char key[TILE_KEY];
        if ((is_dot_tile(s) || is_bcast_tile(c, s)) && tile_key(c, s, rs, tile_regions(&copy, rs), key))
            ++*tile_count(c, key, true);
        break;
    }
    default: break;
    }
}

/* s as a call of its tile function; false (nothing emitted) where it
 * occurs once, or its operands cannot each have an origin of their own. */
static bool dot_call(Cg *c, const Stmt *s)
{
    Stmt copy = *s;
    Region *rs[TILE_REGIONS];
    int n = tile_regions(&copy, rs);
    char key[TILE_KEY];
    int *count;
    if (c->t->gpu_sm || !tile_key(c, s, rs, n, key) || !(count = tile_count(c, key, false)) || *count < 2)
        return false;
    LLVMValueRef args[TILE_REGIONS * (1 + IR_MAX_RANK)];
    LLVMTypeRef tys[TILE_REGIONS * (1 + IR_MAX_RANK)];
    int na = 0;
    for (int i = 0; i < n; i++) {
        args[na] = at(c, rs[i], cg_i64(c, 0), cg_i64(c, 0));
        tys[na++] = c->ptr;
    }
    for (int i = 0; i < n; i++)
        for (int d = 0; d < rs[i]->buf->rank; d++)
            if (!LLVMIsAConstantInt(c->stride[rs[i]->buf->id][d])) {
                args[na] = c->stride[rs[i]->buf->id][d];
                tys[na++] = c->i64;
            }
    LLVMTypeRef fty = LLVMFunctionType(LLVMVoidTypeInContext(c->ctx), tys, (unsigned)na, 0);
    LLVMValueRef fn = tile_function(c, key, &copy, rs, n, fty);
    LLVMBuildCall2(c->b, fty, fn, args, (unsigned)na, "");
    return true;
}

void cg_micro_gemm(Cg *c, const Stmt *s)
{
    DType dt = s->u.gemm.b.buf->dtype;
    int w = c->t->vector_bits / 32;
    int mr = (int)s->u.gemm.c.ext[0], nr = (int)s->u.gemm.c.ext[1];
    int nv = (nr + w - 1) / w;
    bool vec = (dt == DT_F32 || dt == DT_BF16 || dt == DT_F16) && mr <= MAX_ROWS && nv <= MAX_VECS;
    if (s->u.gemm.b_pairs && (!vec || dt != DT_BF16 || !c->t->has_bf16_dot || s->u.gemm.trans_a)) {
        /* pass_lower only packs pairs where this holds; a hand-written .tir may not */
        fprintf(stderr, "tilec: internal error: b_pairs micro_gemm needs bf16 on a bf16-dot target\n");
        abort();
    }
    Var *k = temp_var(c, "k", 1);
    bool scaled = s->u.gemm.a_scale.buf || s->u.gemm.b_scale.buf;
    if (is_bcast_tile(c, s)) {
        if (!dot_call(c, s))
            bcast_gemm(c, s);
        free(k);
        return;
    }
    if (is_dot_tile(s)) {
        if (!dot_call(c, s))
            dot_gemm(c, s, mr, nr, k);
        free(k);
        return;
    }
    if (scaled || s->u.gemm.a_lifted) { /* pass_lower gives these only to dot tiles */
        fprintf(stderr,
                "tilec: internal error: a block-scaled or a_lifted micro_gemm that is no dot or broadcast tile\n");
        abort();
    }
    if (!vec || s->u.gemm.trans_b) {
        Scalar sc = {.s = s, .i = temp_var(c, "i", 2), .j = temp_var(c, "j", 3), .k = k,
                     .acc = entry_alloca(c, c->f32)};
        cg_loop(c, sc.i, cg_i64(c, mr), LOOP_SERIAL, 0, false, scalar_i, &sc);
        free(sc.i);
        free(sc.j);
        free(k);
        return;
    }
    Micro m = {.s = s, .mr = mr, .nv = nv, .w = w, .rem = nr % w, .kvar = k};
    m.vf32 = LLVMVectorType(c->f32, (unsigned)w);
    m.velem = LLVMVectorType(cg_storage_type(c, dt), (unsigned)w);
    const Region *cr = &s->u.gemm.c;
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < nv; v++) {
            m.acc[i][v] = entry_alloca(c, m.vf32);
            LLVMValueRef init = LLVMConstNull(m.vf32);
            if (!s->u.gemm.clear)
                init = load_lanes(c, m.vf32, at(c, cr, cg_i64(c, i), cg_i64(c, (int64_t)v * w)), lanes_of(&m, v), 4);
            LLVMBuildStore(c->b, init, m.acc[i][v]);
        }
    /* b's window rows: K, or K/2 pairs */
    cg_loop(c, k, cg_i64(c, s->u.gemm.b.ext[0]), LOOP_SERIAL, 0, false,
            s->u.gemm.b_pairs ? pair_step : k_step, &m);
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < nv; v++) {
            LLVMValueRef acc = LLVMBuildLoad2(c->b, m.vf32, m.acc[i][v], "");
            vstore(c, &m, acc, at(c, cr, cg_i64(c, i), cg_i64(c, (int64_t)v * w)), lanes_of(&m, v));
        }
    free(k);
}
