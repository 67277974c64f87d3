/* micro.c — MICRO_GEMM: an MR x NR register tile of C += A·B.
 *
 * The accumulators live in MR x ceil(NR/W) vector registers (W f32 lanes)
 * for the whole K loop; each k loads ceil(NR/W) vectors of B (k-major and
 * unit-stride, as pass_lower packs it) and broadcasts one element of A per
 * row into a fused multiply-add.  A partial last vector uses masked loads
 * and stores.  bf16 and f16 inputs widen to f32 in registers.  Other input
 * dtypes take a scalar loop (correct, not fast). */
#include "codegen/cgctx.h"

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

static LLVMValueRef mask(Cg *c, Micro *m, int lanes)
{
    LLVMValueRef bits[64];
    for (int i = 0; i < m->w; i++)
        bits[i] = LLVMConstInt(c->i1, i < lanes, 0);
    return LLVMConstVector(bits, (unsigned)m->w);
}

/* Load W elements at p (masked to `lanes` when fewer). */
static LLVMValueRef vload(Cg *c, Micro *m, LLVMTypeRef ty, LLVMValueRef p, int lanes)
{
    if (lanes == m->w) {
        LLVMValueRef v = LLVMBuildLoad2(c->b, ty, p, "");
        LLVMSetAlignment(v, 4);
        return v;
    }
    LLVMTypeRef tys[2] = {ty, c->ptr};
    LLVMValueRef args[4] = {p, LLVMConstInt(c->i32, 4, 0), mask(c, m, lanes), LLVMConstNull(ty)};
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

/* Pointer to element (r0 + i, c0 + j) of region r. */
static LLVMValueRef at(Cg *c, const Region *r, LLVMValueRef i, LLVMValueRef j)
{
    LLVMValueRef idx[2] = {LLVMBuildAdd(c->b, cg_expr(c, r->off[0]), i, ""),
                           LLVMBuildAdd(c->b, cg_expr(c, r->off[1]), j, "")};
    return cg_elem_ptr(c, r->buf, idx);
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

/* One k-pair with vdpbf16ps: acc += A(i, 2kk)·B(2kk, n) + A(i, 2kk+1)·B(2kk+1, n).
 * The instruction's operand types are read off its declaration (LLVM has
 * used both i32 and bfloat vectors for them). */
static void pair_step(Cg *c, void *ctx)
{
    Micro *m = ctx;
    const Stmt *s = m->s;
    const Region *a = &s->u.gemm.a, *b = &s->u.gemm.b;
    LLVMValueRef kk = c->var[m->kvar->id];
    const char *name = "llvm.x86.avx512bf16.dpbf16ps.512";
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(c->mod, id, NULL, 0);
    LLVMTypeRef fty = LLVMGlobalGetValueType(fn), params[3];
    LLVMGetParamTypes(fty, params);
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
        bv[v] = LLVMBuildBitCast(c->b, raw, params[2], "");
    }
    LLVMValueRef two_kk = LLVMBuildMul(c->b, kk, cg_i64(c, 2), "");
    LLVMTypeRef vi32 = LLVMVectorType(c->i32, (unsigned)m->w);
    for (int i = 0; i < m->mr; i++) {
        LLVMValueRef pa = at(c, a, cg_i64(c, i), two_kk);
        LLVMValueRef pair = LLVMBuildLoad2(c->b, c->i32, pa, "");
        LLVMSetAlignment(pair, 2);
        LLVMValueRef v = LLVMBuildInsertElement(c->b, LLVMGetPoison(vi32), pair, LLVMConstInt(c->i32, 0, 0), "");
        v = LLVMBuildShuffleVector(c->b, v, LLVMGetPoison(vi32), LLVMConstNull(vi32), "");
        LLVMValueRef av = LLVMBuildBitCast(c->b, v, params[1], "");
        for (int w = 0; w < m->nv; w++) {
            LLVMValueRef acc = LLVMBuildLoad2(c->b, m->vf32, m->acc[i][w], "");
            LLVMValueRef args[3] = {acc, av, bv[w]};
            LLVMBuildStore(c->b, LLVMBuildCall2(c->b, fty, fn, args, 3, ""), m->acc[i][w]);
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
        bv[v] = widen_vec(c, m, b->buf->dtype, vload(c, m, m->velem, p, lanes_of(m, v)));
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
    LLVMValueRef y = operand(c, &s->u.gemm.b, k, j, false);
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
    cg_loop(c, sc->k, cg_i64(c, s->u.gemm.b.ext[0]), LOOP_SERIAL, 0, false, scalar_k, sc);
    LLVMBuildStore(c->b, LLVMBuildLoad2(c->b, c->f32, sc->acc, ""), cp);
}

static void scalar_i(Cg *c, void *ctx)
{
    Scalar *sc = ctx;
    cg_loop(c, sc->j, cg_i64(c, sc->s->u.gemm.c.ext[1]), LOOP_SERIAL, 0, false, scalar_j, sc);
}

static Var *temp_var(Cg *c, const char *name, int slot)
{
    /* Codegen-only counters use the slots past the kernel's own ids. */
    Var *v = calloc(1, sizeof *v);
    v->name = name;
    v->id = c->k->next_id + slot;
    return v;
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
    if (!vec) {
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
                init = vload(c, &m, m.vf32, at(c, cr, cg_i64(c, i), cg_i64(c, (int64_t)v * w)), lanes_of(&m, v));
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
