/* transpose.c — a transposing copy nest in 8x8 register blocks (CPU).
 *
 *   for i < E0 { for j < E1 { dst[.., j + x] = src[.., i + y] } }
 *
 * with dst's other indices free of j and src's free of i: row j of src holds
 * column j of dst.  32-bit elements copied unchanged, or bf16/f16 widened
 * to f32 (a row widened once after its load).  LLVM vectorises the inner
 * loop as a gather (8 loads and inserts per 8 elements, from rows a row of
 * src apart) or, loops swapped, a scatter.  Here each 8x8 block is 8 row
 * loads, the 24 shuffles of an in-register transpose and 8 row stores.
 * The register-tile GEMM's B packing is such a nest (B[N,K] into k-major
 * panels).
 *
 * So is the packing of B[N,K] in k-pairs for a dot-product instruction
 * (lower_gemm's PAIRS layout) read as 32-bit pairs:
 *
 *   for i < E0 { for j < E1 { dst[.., j + x] = src[.., j / 2 + y, 2 * i + j % 2 + z] } }
 *
 * with 16-bit elements of one dtype: the pair (j, j + 1), j even, is one
 * 32-bit element of dst's row i and of src's row j / 2, so it is the
 * transposition above of 32-bit elements, src's rows 8 pairs at a time.
 * An fp8 src into a bf16 dst (which holds its values exactly) moves 16-bit
 * pairs the same way, each row of dst widened after the transposition.
 * The blocks go along src's rows, 8 rows at a time (row_of_blocks).
 *
 * The copy of an edge block (not in pairs) reads
 *
 *   dst[.., j + x] = select(row j in bounds, src[.., i + y], 0)
 *
 * with the condition free of i (src's row index clamped into the buffer,
 * as the bounds pass makes it: select evaluates both arms): each row is
 * loaded, then zeroed whole where its condition fails, before the
 * transposition.  Left to LLVM, such a nest (the B panel of a GEMM whose
 * N is not a multiple of BN) was unrolled, SLP-vectorised and
 * load-eliminated for 0.15 s of a 0.3 s compile (f32 336 x 777 x 512).
 *
 * The k-pairs of an edge block or a K tail read
 *
 *   dst[.., j + x] = select(rows and col < bound, src[.., j / 2 + y, 2 * i + j % 2 + z], 0)
 *
 * with src's indices possibly clamped by min (the bounds pass), `rows` terms
 * in which j occurs only as j / 2 (a row of pairs past N: zeroed whole, as
 * above) and at most one term col < bound whose col is src's last index
 * unclamped: each row's 16 elements are a masked load, the lanes at and
 * past the bound zero and not read (an odd bound splits a pair; AVX-512
 * only, AVX2 masks no 16- or 8-bit lanes).  (The plain copy's K tail, a
 * masked row of f32 as well, compiled 20-30 ms slower at f32 333 x 777 x
 * 555 and ran no faster on Zen 4: LLVM's loop there is cheap enough.)  Left to
 * LLVM, such a nest gathered each 16-bit element with its own load and
 * insert: bf16 1000^3 in one K step packed all of B so, 18% of its time. */
#include "codegen/cg.h"
#include "codegen/cgctx.h"

#include <math.h>
#include <stdlib.h>

enum { BLK = 8 };

enum { MAX_ROW_TERMS = 4 };

typedef struct Transpose {
    const Stmt *store;
    const Expr *src;   /* the load of src */
    const Expr *keep;  /* an edge block's row condition, else NULL */
    /* pairs under a select: its conditions on rows (j only as j / 2), and
     * the one on columns, col < bound (col: src's last index unclamped) */
    const Expr *row_terms[MAX_ROW_TERMS];
    int nrow_terms;
    const Expr *col, *bound;
    Var *i, *j;        /* the nest's variables */
    Var *bi, *bj;      /* block counters */
    int64_t ni, nj;    /* blocks along i, j */
    bool pairs;        /* k-pairs moved as one element each */
    LLVMTypeRef row;   /* 8 elements of the source */
} Transpose;

/* Indices of a rank-r access: the last is `inner` + x, the others free of it. */
static bool last_moves_with(Expr *const *idx, int rank, const Var *inner)
{
    for (int d = 0; d < rank - 1; d++)
        if (ir_mentions_var(idx[d], inner))
            return false;
    return ir_var_plus(idx[rank - 1], inner);
}

/* v op c, or c op v (op commutes where it matters: MUL; MOD and DIV only
 * as v op c) */
static bool var_op_const(const Expr *e, ExprOp op, const Var *v, int64_t c)
{
    if (e->op != op)
        return false;
    int64_t k;
    for (int s = 0; s < (op == EX_MUL ? 2 : 1); s++)
        if (e->args[s]->op == EX_VAR && e->args[s]->var == v && ir_expr_is_const(e->args[1 - s], &k) && k == c)
            return true;
    return false;
}

/* Is e `core(e)` plus terms free of vars a and b (in any order)? */
static bool plus_free(const Expr *e, const Var *a, const Var *b, bool (*core)(const Expr *, const Var *, const Var *))
{
    if (core(e, a, b))
        return true;
    if (e->op != EX_ADD)
        return false;
    for (int s = 0; s < 2; s++) {
        const Expr *other = e->args[1 - s];
        if (!ir_mentions_var(other, a) && !ir_mentions_var(other, b) && plus_free(e->args[s], a, b, core))
            return true;
    }
    return false;
}

/* j / 2 */
static bool half_of(const Expr *e, const Var *j, const Var *unused)
{
    (void)unused;
    return var_op_const(e, EX_DIV, j, 2);
}

/* 2 * i + j % 2 (either order of either operation) */
static bool pair_column(const Expr *e, const Var *i, const Var *j)
{
    if (e->op != EX_ADD)
        return false;
    for (int s = 0; s < 2; s++)
        if (var_op_const(e->args[s], EX_MUL, i, 2) && var_op_const(e->args[1 - s], EX_MOD, j, 2))
            return true;
    return false;
}

/* e without a clamp min(e, hi) by a constant hi (*hi: it, else -1). */
static const Expr *unclamped(const Expr *e, int64_t *hi)
{
    *hi = -1;
    if (e->op == EX_MIN)
        for (int s = 0; s < 2; s++)
            if (ir_expr_is_const(e->args[1 - s], hi))
                return e->args[s];
    return e;
}

/* Does j occur in e only as j / 2? */
static bool j_only_halved(const Expr *e, const Var *j)
{
    if (half_of(e, j, NULL))
        return true;
    if (e->op == EX_VAR && e->var == j)
        return false;
    for (int a = 0; a < e->nargs; a++)
        if (!j_only_halved(e->args[a], j))
            return false;
    return true;
}

/* Split a pair copy's select condition (an `and` of terms) into row terms
 * and the column term; false where a term is neither. */
static bool split_terms(Transpose *t, const Expr *e)
{
    if (e->op == EX_AND)
        return split_terms(t, e->args[0]) && split_terms(t, e->args[1]);
    if (!ir_mentions_var(e, t->i) && j_only_halved(e, t->j)) {
        if (t->nrow_terms == MAX_ROW_TERMS)
            return false;
        t->row_terms[t->nrow_terms++] = e;
        return true;
    }
    if (e->op != EX_LT || t->bound || ir_mentions_var(e->args[1], t->i) || ir_mentions_var(e->args[1], t->j))
        return false;
    int64_t hi, bound;
    const Expr *col = unclamped(t->src->args[t->src->buf->rank - 1], &hi);
    /* the lanes read are those below the bound: in the buffer where its
     * clamp says so (else the copy read every lane) */
    if (!ir_expr_equal(e->args[0], col) || (hi >= 0 && !(ir_expr_is_const(e->args[1], &bound) && bound <= hi + 1)))
        return false;
    t->col = col;
    t->bound = e->args[1];
    return true;
}

/* The k-pair form: dst's last index j + x, its others free of j; src's
 * last two j / 2 + y and 2 * i + j % 2 + z (each maybe clamped), its
 * others free of i and j; both 16-bit of one dtype, or an fp8 src and a
 * bf16 dst.  Under a select, its condition as split_terms takes it. */
static bool moves_in_pairs(Transpose *t, const Stmt *st, const Var *i, const Var *j)
{
    const Expr *v = t->src;
    const Buffer *d = st->u.store.buf, *s = v->buf;
    bool fp8 = d->dtype == DT_BF16 && (s->dtype == DT_F8E4M3 || s->dtype == DT_F8E5M2);
    if (!(s->dtype == d->dtype ? dt_bits(d->dtype) == 16 : fp8) || s->rank < 2 ||
        !last_moves_with(st->u.store.idx, d->rank, j))
        return false;
    for (int k = 0; k < s->rank - 2; k++)
        if (ir_mentions_var(v->args[k], i) || ir_mentions_var(v->args[k], j))
            return false;
    int64_t hi;
    if (!plus_free(unclamped(v->args[s->rank - 2], &hi), j, i, half_of) ||
        !plus_free(unclamped(v->args[s->rank - 1], &hi), i, j, pair_column))
        return false;
    /* clamped indices only under a select, which says where they apply */
    if (!t->keep)
        return v->args[s->rank - 2]->op != EX_MIN && v->args[s->rank - 1]->op != EX_MIN;
    return split_terms(t, t->keep);
}

/* A 16-bit float copied into f32: each row widened after its load. */
static bool widens_to_f32(DType from, DType to)
{
    return to == DT_F32 && (from == DT_BF16 || from == DT_F16);
}

static const Stmt *only(const Stmt *s)
{
    while (s->op == ST_SEQ && s->u.seq.n == 1)
        s = s->u.seq.items[0];
    return s;
}

static bool const_multiple(const Expr *e, int64_t m)
{
    return e->op == EX_CONST && e->imm.i > 0 && e->imm.i % m == 0;
}

static bool zero_const(const Expr *e)
{
    return e->op == EX_CONST && (dt_is_float(e->dtype) ? e->imm.f == 0 && !signbit(e->imm.f) : e->imm.i == 0);
}

/* Does f32 hold every value of t (a float of 16 bits or fewer)? */
static bool f32_holds(DType t)
{
    return t == DT_F32 || t == DT_BF16 || t == DT_F16 || t == DT_F8E4M3 || t == DT_F8E5M2;
}

/* A store's value as the load it copies and, for an edge block's
 * select(keep, load, 0), the condition (the select's dtype the load's or
 * dst's, or f32 beside a narrower float: no rounding between them). */
static const Expr *copied_load(const Stmt *st, const Expr **keep)
{
    const Expr *v = st->u.store.value;
    *keep = NULL;
    if (v->op == EX_SELECT && v->args[1]->op == EX_LOAD && zero_const(v->args[2]) &&
        (v->dtype == v->args[1]->buf->dtype || v->dtype == st->u.store.buf->dtype ||
         (v->dtype == DT_F32 && f32_holds(v->args[1]->buf->dtype)))) {
        *keep = v->args[0];
        return v->args[1];
    }
    return v;
}

/* s is such a nest (E0 and E1 constant multiples of 8) from one buffer
 * into another. */
static bool match(const Stmt *s, Transpose *t)
{
    if (s->op != ST_FOR || s->u.loop.kind == LOOP_SERIAL || !const_multiple(s->u.loop.extent, BLK))
        return false;
    const Stmt *in = only(s->u.loop.body);
    if (in->op != ST_FOR || in->u.loop.kind == LOOP_SERIAL || !const_multiple(in->u.loop.extent, BLK))
        return false;
    const Stmt *st = only(in->u.loop.body);
    if (st->op != ST_STORE || st->u.store.atomic || st->u.store.async)
        return false;
    const Expr *v = copied_load(st, &t->keep);
    const Buffer *d = st->u.store.buf;
    if (v->op != EX_LOAD || v->buf == d) /* in place: the blocks' order would show */
        return false;
    t->store = st;
    t->src = v;
    t->i = s->u.loop.var;
    t->j = in->u.loop.var;
    t->pairs = in->u.loop.extent->imm.i % (2 * BLK) == 0 && moves_in_pairs(t, st, t->i, t->j);
    if (t->pairs)
        return true;
    if (t->keep && ir_mentions_var(t->keep, t->i)) /* only whole rows, outside pairs */
        return false;
    if (!(v->buf->dtype == d->dtype ? dt_bits(d->dtype) == 32 : widens_to_f32(v->buf->dtype, d->dtype)))
        return false;
    return last_moves_with(st->u.store.idx, d->rank, t->j) && last_moves_with(v->args, v->buf->rank, t->i);
}

static LLVMValueRef shuffle(Cg *c, LLVMValueRef a, LLVMValueRef b, const int *lanes)
{
    LLVMValueRef m[BLK];
    for (int l = 0; l < BLK; l++)
        m[l] = LLVMConstInt(c->i32, (unsigned)lanes[l], 0);
    return LLVMBuildShuffleVector(c->b, a, b, LLVMConstVector(m, BLK), "");
}

/* rows r[0..7] -> columns: out[c][l] = r[l][c].  Interleave pairs of rows,
 * then pairs of pairs within each 128-bit half, then the halves. */
static void transpose8(Cg *c, LLVMValueRef *r)
{
    static const int lo[BLK] = {0, 8, 1, 9, 4, 12, 5, 13}, hi[BLK] = {2, 10, 3, 11, 6, 14, 7, 15};
    static const int lo2[BLK] = {0, 1, 8, 9, 4, 5, 12, 13}, hi2[BLK] = {2, 3, 10, 11, 6, 7, 14, 15};
    static const int low_halves[BLK] = {0, 1, 2, 3, 8, 9, 10, 11}, high_halves[BLK] = {4, 5, 6, 7, 12, 13, 14, 15};
    LLVMValueRef t[BLK], u[BLK];
    for (int p = 0; p < 4; p++) {
        t[2 * p] = shuffle(c, r[2 * p], r[2 * p + 1], lo);
        t[2 * p + 1] = shuffle(c, r[2 * p], r[2 * p + 1], hi);
    }
    for (int q = 0; q < 2; q++) /* rows 4q..4q+3 */
        for (int h = 0; h < 2; h++) {
            u[4 * q + 2 * h] = shuffle(c, t[4 * q + h], t[4 * q + 2 + h], lo2);
            u[4 * q + 2 * h + 1] = shuffle(c, t[4 * q + h], t[4 * q + 2 + h], hi2);
        }
    for (int k = 0; k < 4; k++) {
        r[k] = shuffle(c, u[k], u[4 + k], low_halves);
        r[4 + k] = shuffle(c, u[k], u[4 + k], high_halves);
    }
}

/* The address of the access (buffer b at idx) with the nest's variables at
 * i, j. */
static LLVMValueRef addr(Cg *c, Transpose *t, const Buffer *b, Expr *const *idx, LLVMValueRef i, LLVMValueRef j)
{
    c->var[t->i->id] = i;
    c->var[t->j->id] = j;
    LLVMValueRef at[IR_MAX_RANK];
    for (int d = 0; d < b->rank; d++)
        at[d] = cg_expr(c, idx[d]);
    return cg_elem_ptr(c, b, at);
}

/* 8 pairs of fp8 codes -> the 16 values as bf16 bits: exact, so the top
 * half of each widened f32. */
static LLVMValueRef fp8_pairs_to_bf16(Cg *c, DType t, LLVMValueRef pairs)
{
    enum { N = 2 * BLK };
    LLVMValueRef f = cg_widen_lanes(c, t, LLVMBuildBitCast(c->b, pairs, LLVMVectorType(c->i8, N), ""), N);
    LLVMValueRef k[N];
    for (int l = 0; l < N; l++)
        k[l] = LLVMConstInt(c->i32, 16, 0);
    LLVMValueRef top = LLVMBuildLShr(c->b, LLVMBuildBitCast(c->b, f, LLVMVectorType(c->i32, N), ""),
                                     LLVMConstVector(k, N), "");
    return LLVMBuildTrunc(c->b, top, LLVMVectorType(c->i16, N), "");
}

/* cond as an i1, with the nest's variables as they are set. */
static LLVMValueRef truth(Cg *c, const Expr *cond)
{
    return cg_convert(c, cg_expr(c, cond), cond->dtype, DT_BOOL);
}

/* Row j of a pair copy under a select (src's 16 elements from column i0
 * on): a masked load of the lanes below the column bound, then zero where
 * a row term fails. */
static LLVMValueRef pair_row_kept(Cg *c, Transpose *t, LLVMValueRef i0, LLVMValueRef j)
{
    enum { N = 2 * BLK };
    const Expr *src = t->src;
    LLVMTypeRef ty = LLVMVectorType(cg_storage_type(c, src->buf->dtype), N);
    LLVMValueRef p = addr(c, t, src->buf, src->args, i0, j), raw;
    unsigned align = (unsigned)dt_bits(src->buf->dtype) / 8;
    if (t->bound) { /* lane e is column col(i0, j) + e */
        LLVMValueRef left = LLVMBuildSub(c->b, cg_expr(c, t->bound), cg_expr(c, t->col), "");
        LLVMValueRef lanes[N];
        for (int e = 0; e < N; e++)
            lanes[e] = LLVMConstInt(c->i64, (unsigned long long)e, 0);
        LLVMValueRef n = LLVMBuildInsertElement(c->b, LLVMGetPoison(LLVMVectorType(c->i64, N)), left,
                                                LLVMConstInt(c->i32, 0, 0), "");
        n = LLVMBuildShuffleVector(c->b, n, LLVMGetPoison(LLVMTypeOf(n)), LLVMConstNull(LLVMVectorType(c->i32, N)), "");
        LLVMValueRef mask = LLVMBuildICmp(c->b, LLVMIntSLT, LLVMConstVector(lanes, N), n, "");
        LLVMTypeRef tys[2] = {ty, c->ptr};
        LLVMValueRef args[4] = {p, LLVMConstInt(c->i32, align, 0), mask, LLVMConstNull(ty)};
        raw = cg_intrinsic(c, "llvm.masked.load", tys, 2, args, 4);
    } else {
        raw = LLVMBuildLoad2(c->b, ty, p, "");
        LLVMSetAlignment(raw, align);
    }
    LLVMValueRef r = LLVMBuildBitCast(c->b, raw, t->row, "");
    for (int k = 0; k < t->nrow_terms; k++)
        r = LLVMBuildSelect(c->b, truth(c, t->row_terms[k]), r, LLVMConstNull(t->row), "");
    return r;
}

static void block(Cg *c, void *ctx)
{
    Transpose *t = ctx;
    const Expr *src = t->src;
    const Buffer *dst = t->store->u.store.buf;
    int per = t->pairs ? 2 : 1; /* values of j per 32-bit element */
    LLVMValueRef i0 = LLVMBuildMul(c->b, c->var[t->bi->id], cg_i64(c, BLK), "");
    LLVMValueRef j0 = LLVMBuildMul(c->b, c->var[t->bj->id], cg_i64(c, per * BLK), "");
    LLVMValueRef r[BLK];
    for (int l = 0; l < BLK; l++) { /* row j0 + l of src (pair row j0 / 2 + l): elements i0 .. i0 + 7 */
        LLVMValueRef j = LLVMBuildAdd(c->b, j0, cg_i64(c, per * l), "");
        if (t->pairs && t->keep) {
            r[l] = pair_row_kept(c, t, i0, j);
            continue;
        }
        r[l] = LLVMBuildLoad2(c->b, t->row, addr(c, t, src->buf, src->args, i0, j), "");
        LLVMSetAlignment(r[l], (unsigned)dt_bits(src->buf->dtype) / 8);
        if (t->pairs) /* widened after the transposition, if at all */
            continue;
        if (src->buf->dtype == DT_BF16)
            r[l] = cg_bf16_to_f32(c, r[l]);
        else if (src->buf->dtype == DT_F16)
            r[l] = LLVMBuildFPExt(c->b, r[l], LLVMVectorType(c->f32, BLK), "");
        if (t->keep) /* the row's condition, j at the row (i does not occur) */
            r[l] = LLVMBuildSelect(c->b, truth(c, t->keep), r[l], LLVMConstNull(LLVMTypeOf(r[l])), "");
    }
    transpose8(c, r);
    if (t->pairs && src->buf->dtype != dst->dtype)
        for (int l = 0; l < BLK; l++)
            r[l] = fp8_pairs_to_bf16(c, src->buf->dtype, r[l]);
    for (int l = 0; l < BLK; l++) { /* row i0 + l of dst: elements j0 .. j0 + 7 */
        LLVMValueRef i = LLVMBuildAdd(c->b, i0, cg_i64(c, l), "");
        LLVMValueRef st = LLVMBuildStore(c->b, r[l], addr(c, t, dst, t->store->u.store.idx, i, j0));
        LLVMSetAlignment(st, (unsigned)dt_bits(dst->dtype) / 8);
    }
}

/* The lines of src's rows that row group bj + 1 holds in the nest,
 * fetched while group bj is transposed — where each row's part is a few
 * lines (a GEMM's B rows in K steps of 128: 256 bytes of bf16), too
 * short a run for the hardware prefetchers; longer runs they follow
 * (f32 B in steps of 1024, 4 KiB a row: fetching 8 rows of it ahead into
 * L1 took 2-3% longer). */
static void prefetch_rows_ahead(Cg *c, Transpose *t)
{
    enum { LINE = 64, MOST_LINES = 8 };
    const Expr *src = t->src;
    int per = t->pairs ? 2 : 1;
    int64_t unit = per * dt_bits(src->buf->dtype) / 8; /* bytes per element of i */
    int64_t lines = (t->ni * BLK * unit + LINE - 1) / LINE;
    if (lines > MOST_LINES)
        return;
    LLVMValueRef g = LLVMBuildAdd(c->b, c->var[t->bj->id], cg_i64(c, 1), "");
    LLVMValueRef j0 = LLVMBuildMul(c->b, g, cg_i64(c, per * BLK), "");
    for (int l = 0; l < BLK; l++) {
        LLVMValueRef j = LLVMBuildAdd(c->b, j0, cg_i64(c, per * l), "");
        for (int64_t n = 0; n < lines; n++)
            cg_prefetch(c, addr(c, t, src->buf, src->args, cg_i64(c, n * LINE / unit), j), 3);
    }
}

/* Row group bj of src, its blocks along the rows: 8 rows read start to
 * end, then the next 8.  Walking down all the rows for each block
 * instead, the rows of a matrix whose row is a multiple of 4 KiB shared
 * one L1 set, and each line came again from L2 for each of its blocks
 * (bf16 GEMM 64 x 512 x 4096, one thread, B's k-pair packing: 0.96-1.17
 * -> 0.75-0.82 ms; fp8 1024 x 4096 x 4096 120-123 -> 114-117). */
static void row_of_blocks(Cg *c, void *ctx)
{
    Transpose *t = ctx;
    prefetch_rows_ahead(c, t);
    if (t->keep && t->pairs) /* masked rows: LLVM unrolled their blocks, +40 ms of compile */
        cg_loop_rolled(c, t->bi, cg_i64(c, t->ni), block, t);
    else
        cg_loop(c, t->bi, cg_i64(c, t->ni), LOOP_SERIAL, 0, false, block, t);
}

bool cg_transposed_copy(Cg *c, const Stmt *s)
{
    Transpose t = {0};
    if (c->t->gpu_sm || c->t->vector_bits < 256 || !match(s, &t))
        return false;
    /* AVX2 masks loads of 32- and 64-bit lanes only: LLVM would load a
     * masked row of 16- or 8-bit ones element by element */
    if (t.bound && c->t->vector_bits < 512)
        return false;
    const Stmt *in = only(s->u.loop.body);
    Var bi = {.name = "ti", .id = c->k->next_id + 4}, bj = {.name = "tj", .id = c->k->next_id + 5};
    t.bi = &bi;
    t.bj = &bj;
    DType from = t.src->buf->dtype;
    t.row = LLVMVectorType(t.pairs ? (dt_bits(from) == 8 ? c->i16 : c->i32) : cg_storage_type(c, from), BLK);
    t.nj = in->u.loop.extent->imm.i / (t.pairs ? 2 * BLK : BLK);
    t.ni = s->u.loop.extent->imm.i / BLK;
    cg_loop(c, t.bj, cg_i64(c, t.nj), LOOP_SERIAL, 0, false, row_of_blocks, &t);
    return true;
}
