/* verify.c — structural and type checks, run after every pass.
 *
 * The frontend reports the user's mistakes with hints; the verifier catches
 * what a buggy pass (or a hand-written .tir) produces.  Every message starts
 * "verify: ", sits at the loc of the statement (or buffer, or kernel) at
 * fault and names the rule broken.  The first error wins.
 *
 * Rules, by object:
 *   kernel   — a grid of 1..3 dimensions whose extents are integer
 *              expressions of scalars and constants; buffer names unique;
 *              variable names unique; arguments first in bufs.
 *   buffers  — arguments have a direction and integer shapes/strides over
 *              scalars; scratch buffers have constant positive shapes.
 *   vars     — made by this kernel, defined once (by a loop or the grid),
 *              used only inside what defines them.
 *   exprs    — operand counts; loads of this kernel's buffers with one
 *              integer index per dimension and the buffer's dtype;
 *              comparisons/and/or/not are bool, and/or/not/select
 *              conditions take bool; bit ops take integers; bitcast is
 *              f32 <-> i32; scalars belong to the kernel.
 *   stmts    — level: COPY/FILL/GEMM/REDUCE/ATOMIC_ADD only in tile IR,
 *              MICRO_GEMM, PREFETCH and vector loops only in loop IR
 *              (a prefetch indexes its buffer like a load); loop extents
 *              integer, unroll extents constant, pipelined/vector arg >= 1;
 *              if conditions bool; nothing writes an `in` argument; once
 *              (an integer key) only in loop IR without threads.
 *   regions  — a buffer of the kernel, integer offsets, positive extents
 *              (a Region's rank is its buffer's rank by construction).
 *   copy     — both windows have the same shape once unit extents are
 *              dropped (so [1, 64] -> [64] is fine); also atomic_add.
 *   gemm     — 2-D operands; a [M,K] (trans_a: [K,M]), b [K,N] (trans_b:
 *              [N,K]; b_pairs, micro_gemm only: [K/2, 2N]), c [M,N];
 *              float inputs; c is f32.  A block scale (e8m0 or f32) has
 *              its operand's rank and extents that divide the operand's;
 *              a scaled operand may have leading dims of extent 1; a
 *              micro_gemm's scales go with trans_b, no b_pairs and no
 *              threads (a_scale: no trans_a), in K blocks a multiple of 32
 *              elements, one operand's a multiple of the other's;
 *              a_lifted: a micro_gemm of an f32 a by a transposed f8e4m3 b;
 *              a_prescaled: a micro_gemm of a bf16 a with an e8m0
 *              a_scale by a transposed b;
 *              a_decode_order: a micro_gemm by a transposed b whose
 *              dtypes have an order (ir_decode_order: an f32 or bf16 a by
 *              block-scaled f4e2m1, a bf16 a by f8e4m3), K a multiple of
 *              its block, at most its rows, an e4m3 b's scale blocks
 *              along K multiples of its block.
 *   reduce   — axis < src rank; dst is the src window with the axis
 *              removed (rank - 1, the other extents in order), except that
 *              a rank-1 source reduces into a rank-1 window of extent 1
 *              (IR has no rank-0 scratch); dst is float.
 *   mbarrier — mbar_init/expect_tx/wait and tma_load name an element of a
 *              1-D shared i64 buffer with an integer slot; init counts and
 *              expected bytes are positive constants; a wait's parity is
 *              an integer.
 *   tma_load — a window of a global argument into the whole of a shared
 *              buffer of the same dtype and shape (rank 1..5), swizzle 0,
 *              32, 64 or 128 (then 2-D, rows a multiple of W bytes). */
#include "ir/ir.h"

#include <stdlib.h>
#include <string.h>

typedef struct Verifier {
    const Kernel *k;
    Diag *d;
    const Var **var_of;     /* by id: the kernel's variable with that id */
    unsigned char *in_scope; /* by Var.id: defined by an enclosing loop/grid */
    unsigned char *defined;  /* by Var.id: ever defined */
    bool ok;
} Verifier;

static bool fail(Verifier *v, SrcLoc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool fail(Verifier *v, SrcLoc loc, const char *fmt, ...)
{
    if (v->ok) {
        char msg[400];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        diag_error(v->d, loc, "verify: %s", msg);
    }
    v->ok = false;
    return false;
}

static bool owns_buffer(const Kernel *k, const Buffer *b)
{
    for (int i = 0; i < k->nbufs; i++)
        if (k->bufs[i] == b)
            return true;
    return false;
}

static bool owns_var(const Verifier *v, const Var *var)
{
    return var->id >= 0 && var->id < v->k->next_id && v->var_of[var->id] == var;
}

/* ---------------------------------------------------------- expressions */

static void check_expr(Verifier *v, const Expr *e, SrcLoc loc);

static void check_load(Verifier *v, const Expr *e, SrcLoc loc)
{
    const Buffer *b = e->buf;
    if (!b || !owns_buffer(v->k, b)) {
        fail(v, loc, "load from %s, which is not a buffer of this kernel", b ? b->name : "(null)");
        return;
    }
    if (e->nargs != b->rank) {
        fail(v, loc, "load from %s has %d indices, but %s has rank %d", b->name, e->nargs,
             b->name, b->rank);
        return;
    }
    if (e->dtype != b->dtype)
        fail(v, loc, "load from %s is typed %s, but %s holds %s", b->name, dt_name(e->dtype),
             b->name, dt_name(b->dtype));
    for (int i = 0; v->ok && i < e->nargs; i++) {
        check_expr(v, e->args[i], loc);
        if (v->ok && !dt_is_int(e->args[i]->dtype))
            fail(v, loc, "index %d of a load from %s is %s, not an integer", i, b->name,
                 dt_name(e->args[i]->dtype));
    }
}

/* The dtype rules of one operator, its operands already checked. */
static void check_types(Verifier *v, const Expr *e, SrcLoc loc)
{
    const char *op = ex_name(e->op);
    switch (e->op) {
    case EX_LT: case EX_LE: case EX_EQ: case EX_NE:
        if (e->dtype != DT_BOOL)
            fail(v, loc, "comparison %s is typed %s, not bool", op, dt_name(e->dtype));
        break;
    case EX_AND: case EX_OR: case EX_NOT:
        for (int i = 0; i < e->nargs; i++)
            if (e->args[i]->dtype != DT_BOOL)
                return (void)fail(v, loc, "operand of '%s' is %s, not bool", op,
                                  dt_name(e->args[i]->dtype));
        if (e->dtype != DT_BOOL)
            fail(v, loc, "'%s' is typed %s, not bool", op, dt_name(e->dtype));
        break;
    case EX_BAND: case EX_BOR: case EX_BXOR: case EX_SHL: case EX_SHR:
        if (!dt_is_int(e->args[0]->dtype) || !dt_is_int(e->args[1]->dtype))
            fail(v, loc, "bit operation %s needs integer operands, not %s and %s", op,
                 dt_name(e->args[0]->dtype), dt_name(e->args[1]->dtype));
        break;
    case EX_BITCAST: {
        DType from = e->args[0]->dtype;
        bool f2i = e->dtype == DT_I32 && dt_is_float(from);
        bool i2f = e->dtype == DT_F32 && dt_is_int(from);
        if (!f2i && !i2f)
            fail(v, loc, "bitcast<%s> of a %s value: only f32 <-> i32", dt_name(e->dtype),
                 dt_name(from));
        break;
    }
    case EX_CAST:
        if (e->dtype == DT_NONE || e->dtype >= DT_COUNT)
            fail(v, loc, "cast to no dtype");
        break;
    case EX_SELECT:
        if (e->args[0]->dtype != DT_BOOL)
            fail(v, loc, "select condition is %s, not bool", dt_name(e->args[0]->dtype));
        break;
    default:
        break;
    }
}

static void check_expr(Verifier *v, const Expr *e, SrcLoc loc)
{
    if (!v->ok)
        return;
    if (!e) {
        fail(v, loc, "an expression is missing");
        return;
    }
    if (e->op >= EX_COUNT) {
        fail(v, loc, "unknown expression op %d", (int)e->op);
        return;
    }
    int want = ex_nargs(e->op);
    if (want >= 0 && e->nargs != want) {
        fail(v, loc, "%s takes %d operands, not %d", ex_name(e->op), want, e->nargs);
        return;
    }
    switch (e->op) {
    case EX_CONST:
        return;
    case EX_VAR:
        if (!e->var || !owns_var(v, e->var))
            fail(v, loc, "variable %s is not a variable of this kernel",
                 e->var ? e->var->name : "(null)");
        else if (!v->in_scope[e->var->id])
            fail(v, loc, "variable %s is used outside the loop that defines it", e->var->name);
        return;
    case EX_PARAM:
        if (!e->param || e->param->index < 0 || e->param->index >= v->k->nparams ||
            v->k->params[e->param->index] != e->param)
            fail(v, loc, "%s is not a scalar of this kernel", e->param ? e->param->name : "(null)");
        return;
    case EX_LOAD:
        check_load(v, e, loc);
        return;
    default:
        break;
    }
    for (int i = 0; i < e->nargs; i++)
        check_expr(v, e->args[i], loc);
    if (v->ok)
        check_types(v, e, loc);
}

static void check_int(Verifier *v, const Expr *e, SrcLoc loc, const char *what)
{
    check_expr(v, e, loc);
    if (v->ok && !dt_is_int(e->dtype))
        fail(v, loc, "%s must be an integer, not %s", what, dt_name(e->dtype));
}

/* -------------------------------------------------------------- regions */

static void check_region(Verifier *v, const Region *r, SrcLoc loc, const char *op)
{
    if (!v->ok)
        return;
    if (!r->buf || !owns_buffer(v->k, r->buf)) {
        fail(v, loc, "%s uses %s, which is not a buffer of this kernel", op,
             r->buf ? r->buf->name : "(null)");
        return;
    }
    for (int d = 0; v->ok && d < r->buf->rank; d++) {
        if (!r->off[d]) {
            fail(v, loc, "%s: the window of %s lacks an offset in dimension %d", op, r->buf->name, d);
            return;
        }
        check_int(v, r->off[d], loc, "a region offset");
        if (v->ok && r->ext[d] <= 0)
            fail(v, loc, "%s: the window of %s has extent %lld in dimension %d", op, r->buf->name,
                 (long long)r->ext[d], d);
    }
}

static void check_writable(Verifier *v, const Buffer *b, SrcLoc loc)
{
    if (v->ok && b->scope == SCOPE_GLOBAL && b->dir == ARG_IN)
        fail(v, loc, "write to input argument %s", b->name);
}

/* The window's extents without the unit ones; returns how many remain. */
static int squeezed(const Region *r, int64_t *out)
{
    int n = 0;
    for (int d = 0; d < r->buf->rank; d++)
        if (r->ext[d] != 1)
            out[n++] = r->ext[d];
    return n;
}

static void print_shape(char *buf, size_t size, const int64_t *ext, int n)
{
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < n && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%lld", i ? ", " : "", (long long)ext[i]);
    if (used < size)
        snprintf(buf + used, size - used, "]");
}

/* ----------------------------------------------------------- statements */

static void check_stmt(Verifier *v, const Stmt *s);

/* An async copy or store moves a global buffer's elements into scratch of
 * the same dtype, unchanged (what cp.async can do). */
static void check_async(Verifier *v, const Buffer *src, const Buffer *dst, SrcLoc loc)
{
    if (src->scope != SCOPE_GLOBAL || dst->scope == SCOPE_GLOBAL || src->dtype != dst->dtype)
        fail(v, loc, "async %s -> %s must copy a global buffer into scratch of the same dtype (%s %s -> %s %s)",
             src->name, dst->name, scope_name(src->scope), dt_name(src->dtype), scope_name(dst->scope),
             dt_name(dst->dtype));
}

static void check_copy(Verifier *v, const Stmt *s)
{
    const Region *src = &s->u.copy.src, *dst = &s->u.copy.dst;
    const char *op = st_name(s->op);
    check_region(v, src, s->loc, op);
    check_region(v, dst, s->loc, op);
    if (!v->ok)
        return;
    int64_t a[IR_MAX_RANK], b[IR_MAX_RANK];
    int na = squeezed(src, a), nb = squeezed(dst, b);
    bool same = na == nb;
    for (int i = 0; same && i < na; i++)
        same = a[i] == b[i];
    if (!same) {
        char sa[96], sb[96];
        print_shape(sa, sizeof sa, src->ext, src->buf->rank);
        print_shape(sb, sizeof sb, dst->ext, dst->buf->rank);
        fail(v, s->loc, "%s %s -> %s: windows %s and %s differ in shape", op, src->buf->name,
             dst->buf->name, sa, sb);
        return;
    }
    if (s->op == ST_COPY && s->u.copy.async)
        check_async(v, src->buf, dst->buf, s->loc);
    check_writable(v, dst->buf, s->loc);
}

/* The matrix of an operand window is its last two dims. */
static int64_t rows_of(const Region *r) { return r->ext[r->buf->rank - 2]; }
static int64_t cols_of(const Region *r) { return r->ext[r->buf->rank - 1]; }

static void gemm_dims(const Stmt *s, int64_t *m, int64_t *n, int64_t *ka, int64_t *kb)
{
    const Region *a = &s->u.gemm.a, *b = &s->u.gemm.b;
    *m = s->u.gemm.trans_a ? cols_of(a) : rows_of(a);
    *ka = s->u.gemm.trans_a ? rows_of(a) : cols_of(a);
    *kb = s->u.gemm.trans_b ? cols_of(b) : rows_of(b);
    *n = s->u.gemm.trans_b ? rows_of(b) : cols_of(b);
    if (s->u.gemm.b_pairs) { /* [K/2, 2N] */
        *kb = 2 * b->ext[0];
        *n = b->ext[1] / 2;
    }
}

/* wgmma descriptors: two 32-bit words (low, high) for A and for B of each
 * instruction of a warpgroup (k steps x 64-row pieces x column chunks),
 * integers over the thread index and constants only. */
static void check_wgmma_desc(Verifier *v, const Stmt *s, const MmaLayout *l, int64_t k)
{
    int kstep = dt_bits(s->u.gemm.a.buf->dtype) == 8 ? 32 : 16;
    int64_t want = 4 * (k / kstep) * l->mt * l->nq;
    if (k % kstep || s->u.gemm.ndesc != want) {
        fail(v, s->loc, "micro_gemm wgmma needs %lld descriptor words, has %d", (long long)want,
             s->u.gemm.ndesc);
        return;
    }
    for (int i = 0; i < s->u.gemm.ndesc; i++)
        check_int(v, s->u.gemm.desc[i], s->loc, "a wgmma descriptor");
}

/* A block's tensor-core product (see Threads in ir.h): shared operands,
 * c each thread's share of the accumulator in the MMA layout. */
static void check_block_mma(Verifier *v, const Stmt *s)
{
    const Region *a = &s->u.gemm.a, *b = &s->u.gemm.b, *c = &s->u.gemm.c;
    if (a->buf->rank != 2 || b->buf->rank != 2 || a->buf->scope != SCOPE_SHARED ||
        b->buf->scope != SCOPE_SHARED) {
        fail(v, s->loc, "micro_gemm of a threaded kernel needs 2-D shared operands");
        return;
    }
    int64_t m = a->ext[0], k = a->ext[1], kb = s->u.gemm.trans_b ? b->ext[1] : b->ext[0];
    int64_t n = s->u.gemm.trans_b ? b->ext[0] : b->ext[1], slots;
    MmaLayout l;
    bool wg = s->u.gemm.desc != NULL;
    bool laid = wg ? ir_wgmma_layout(m, n, v->k->nthreads, &l) : ir_mma_layout(m, n, v->k->nthreads, &l);
    /* wgmma reads B [K, N] (MN-major) for 16-bit types only */
    bool mn_ok = s->u.gemm.trans_b || dt_bits(b->buf->dtype) == 16;
    if (s->u.gemm.trans_a || k != kb || !laid || (wg && !mn_ok)) {
        fail(v, s->loc, "micro_gemm [%lld x %lld] . [%lld x %lld] has no tensor-core layout over %d threads",
             (long long)m, (long long)k, (long long)kb, (long long)n, v->k->nthreads);
        return;
    }
    if (c->buf->scope != SCOPE_LOCAL || c->buf->rank != 1 || c->buf->dtype != DT_F32 ||
        !ir_expr_is_const(c->buf->shape[0], &slots) || slots != l.slots || c->ext[0] != slots)
        fail(v, s->loc, "micro_gemm accumulator %s must be a local f32[%lld] (each thread's share)",
             c->buf->name, (long long)l.slots);
    else if (wg)
        check_wgmma_desc(v, s, &l, k);
}

/* Operand x (named what) and its block scale sc, if any: x is 2-D, or
 * scaled, or a micro_gemm's B (pass_lower reads a weight tile of a
 * higher-rank tensor in place: lower_forward_gemm_operands), with leading
 * unit dims; the scale's window tiles x's. */
static void check_scaled(Verifier *v, const Stmt *s, const Region *x, const Region *sc, const char *what)
{
    const char *op = st_name(s->op);
    int rank = x->buf->rank;
    if (!sc->buf && (rank == 2 || s->op != ST_MICRO_GEMM || strcmp(what, "b"))) {
        if (rank != 2)
            fail(v, s->loc, "%s operand %s %s must be 2-D, not rank %d", op, what, x->buf->name, rank);
        return;
    }
    if (!sc->buf) {
        for (int d = 0; d < rank - 2; d++)
            if (x->ext[d] != 1)
                fail(v, s->loc, "%s: %s %s has extent %lld in dimension %d; only its last two may exceed 1", op, what,
                     x->buf->name, (long long)x->ext[d], d);
        return;
    }
    check_region(v, sc, s->loc, op);
    if (!v->ok)
        return;
    if (rank < 2 || sc->buf->rank != rank) {
        fail(v, s->loc, "%s: %s_scale %s has rank %d but %s %s has rank %d (a scale has its operand's rank, >= 2)",
             op, what, sc->buf->name, sc->buf->rank, what, x->buf->name, rank);
        return;
    }
    if (sc->buf->dtype != DT_E8M0 && sc->buf->dtype != DT_F32) {
        fail(v, s->loc, "%s: %s_scale %s is %s, not e8m0 or f32", op, what, sc->buf->name, dt_name(sc->buf->dtype));
        return;
    }
    for (int d = 0; d < rank; d++) {
        if (d < rank - 2 && x->ext[d] != 1) {
            fail(v, s->loc, "%s: scaled %s %s has extent %lld in dimension %d; only its last two may exceed 1",
                 op, what, x->buf->name, (long long)x->ext[d], d);
            return;
        }
        if (x->ext[d] % sc->ext[d]) {
            fail(v, s->loc, "%s: %s_scale %s has extent %lld in dimension %d, which does not divide %s's %lld "
                 "into blocks", op, what, sc->buf->name, (long long)sc->ext[d], d, x->buf->name,
                 (long long)x->ext[d]);
            return;
        }
    }
}

/* A micro_gemm's scales are the CPU dot tile's (codegen/micro.c): with
 * trans_b, in K blocks of a whole number of its steps (32 covers them
 * all), nested (one operand's blocks a multiple of the other's). */
static void check_micro_scale(Verifier *v, const Stmt *s)
{
    const Region *x[2] = {&s->u.gemm.a, &s->u.gemm.b}, *sc[2] = {&s->u.gemm.a_scale, &s->u.gemm.b_scale};
    if (!sc[0]->buf && !sc[1]->buf)
        return;
    if (!s->u.gemm.trans_b || s->u.gemm.b_pairs || (sc[0]->buf && s->u.gemm.trans_a)) {
        fail(v, s->loc, "micro_gemm: block scales need trans_b, without b_pairs, and a_scale no trans_a");
        return;
    }
    int64_t bk[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        if (!sc[i]->buf)
            continue;
        bk[i] = cols_of(x[i]) / cols_of(sc[i]);
        if (bk[i] % 32) {
            fail(v, s->loc, "micro_gemm: %s_scale %s's blocks are %lld elements along K, not a multiple of 32",
                 i ? "b" : "a", sc[i]->buf->name, (long long)bk[i]);
            return;
        }
    }
    if (bk[0] && bk[1] && bk[0] % bk[1] && bk[1] % bk[0])
        fail(v, s->loc, "micro_gemm: a_scale's K blocks (%lld) and b_scale's (%lld): neither is a multiple of the other",
             (long long)bk[0], (long long)bk[1]);
    int64_t K = cols_of(x[1]), m = cols_of(x[0]), n = rows_of(x[1]);
    if (v->ok && s->u.gemm.trans_a &&
        (K % IR_BCAST_CHUNK || (bk[1] != 32 && bk[1] % IR_BCAST_CHUNK) || m > IR_BCAST_ROWS || n > IR_BCAST_COLS))
        fail(v, s->loc, "micro_gemm: a scaled broadcast tile (trans_a) needs K a multiple of %d (K = %lld), b_scale's "
             "K blocks 32 or a multiple of %d (%lld), at most %d rows (%lld) and %d columns (%lld)", IR_BCAST_CHUNK,
             (long long)K, IR_BCAST_CHUNK, (long long)bk[1], IR_BCAST_ROWS, (long long)m, IR_BCAST_COLS, (long long)n);
    else if (v->ok && s->u.gemm.trans_a && x[0]->buf->dtype != DT_F32)
        fail(v, s->loc, "micro_gemm: a scaled broadcast tile (trans_a) needs an f32 a, not %s",
             dt_name(x[0]->buf->dtype));
}

/* Whether micro_gemm s may read its A in the order its dot tile decodes B
 * (a_decode_order, ir.h's IrOrder); m rows, K = ka. */
static bool check_decode_order(Verifier *v, const Stmt *s, const char *op, int64_t m, int64_t ka)
{
    DType ta = s->u.gemm.a.buf->dtype, tb = s->u.gemm.b.buf->dtype;
    IrOrder o = ir_decode_order(ta, tb);
    if (s->op != ST_MICRO_GEMM || !s->u.gemm.trans_b || s->u.gemm.trans_a || s->u.gemm.desc)
        return fail(v, s->loc, "%s: a_decode_order needs a micro_gemm by a transposed b (no wgmma)", op);
    if (!o.block)
        return fail(v, s->loc, "%s: a_decode_order has no order for a %s a by a %s b (an f32 or bf16 a by "
                    "f4e2m1, a bf16 a by f8e4m3)", op, dt_name(ta), dt_name(tb));
    if (tb == DT_F4E2M1 && !s->u.gemm.b_scale.buf)
        return fail(v, s->loc, "%s: a_decode_order needs a block-scaled f4e2m1 b", op);
    if (ka % o.block)
        return fail(v, s->loc, "%s: a_decode_order needs K a multiple of %lld, not %lld", op, (long long)o.block,
                    (long long)ka);
    if (o.rows && m > o.rows)
        return fail(v, s->loc, "%s: a_decode_order takes at most %lld rows of a %s a by %s, not %lld", op,
                    (long long)o.rows, dt_name(ta), dt_name(tb), (long long)m);
    const Region *scs[2] = {&s->u.gemm.a_scale, &s->u.gemm.b_scale};
    for (int x = 0; x < 2 && tb == DT_F8E4M3; x++) {
        const Region *sc = scs[x];
        if (sc->buf && (ka / sc->ext[sc->buf->rank - 1]) % o.block)
            return fail(v, s->loc, "%s: a_decode_order needs %s's scale blocks along K a multiple of %lld elements", op,
                        x ? "b" : "a", (long long)o.block);
    }
    return true;
}

static void check_gemm(Verifier *v, const Stmt *s)
{
    const Region *a = &s->u.gemm.a, *b = &s->u.gemm.b, *c = &s->u.gemm.c;
    const char *op = st_name(s->op);
    if (s->op == ST_MICRO_GEMM && v->k->nthreads && (s->u.gemm.a_scale.buf || s->u.gemm.b_scale.buf)) {
        fail(v, s->loc, "micro_gemm of a threaded kernel has a block scale (lowering dequantises them first)");
        return;
    }
    if (s->op == ST_MICRO_GEMM && v->k->nthreads) {
        check_region(v, a, s->loc, op);
        check_region(v, b, s->loc, op);
        check_region(v, c, s->loc, op);
        if (v->ok)
            check_block_mma(v, s);
        return;
    }
    check_region(v, a, s->loc, op);
    check_region(v, b, s->loc, op);
    check_region(v, c, s->loc, op);
    if (!v->ok)
        return;
    if (c->buf->rank != 2) {
        fail(v, s->loc, "%s operands must be 2-D (ranks %d, %d, %d)", op, a->buf->rank,
             b->buf->rank, c->buf->rank);
        return;
    }
    check_scaled(v, s, a, &s->u.gemm.a_scale, "a");
    check_scaled(v, s, b, &s->u.gemm.b_scale, "b");
    if (v->ok && s->op == ST_MICRO_GEMM)
        check_micro_scale(v, s);
    if (!v->ok)
        return;
    if (s->u.gemm.b_pairs && (s->op != ST_MICRO_GEMM || s->u.gemm.trans_b || b->ext[1] % 2)) {
        fail(v, s->loc, "%s: b_pairs needs a micro_gemm with an untransposed [K/2, 2N] b", op);
        return;
    }
    if (s->u.gemm.a_lifted && (s->op != ST_MICRO_GEMM || !s->u.gemm.trans_b || s->u.gemm.trans_a ||
                               a->buf->dtype != DT_F32 || b->buf->dtype != DT_F8E4M3 || s->u.gemm.desc)) {
        fail(v, s->loc, "%s: a_lifted needs a micro_gemm of an f32 a by a transposed f8e4m3 b (no wgmma)", op);
        return;
    }
    if (s->u.gemm.a_prescaled && (s->op != ST_MICRO_GEMM || !s->u.gemm.trans_b || s->u.gemm.trans_a ||
                                   a->buf->dtype != DT_BF16 || !s->u.gemm.a_scale.buf ||
                                   s->u.gemm.a_scale.buf->dtype != DT_E8M0 || s->u.gemm.desc)) {
        fail(v, s->loc, "%s: a_prescaled needs a micro_gemm of a bf16 a with an e8m0 a_scale by a transposed b", op);
        return;
    }
    int64_t m, n, ka, kb;
    gemm_dims(s, &m, &n, &ka, &kb);
    if (s->u.gemm.a_decode_order && !check_decode_order(v, s, op, m, ka))
        return;
    if (ka != kb || c->ext[0] != m || c->ext[1] != n) {
        fail(v, s->loc, "%s shapes disagree: a gives M=%lld K=%lld, b gives K=%lld N=%lld, "
             "c is [%lld, %lld]", op, (long long)m, (long long)ka, (long long)kb, (long long)n,
             (long long)c->ext[0], (long long)c->ext[1]);
        return;
    }
    if (!dt_is_float(a->buf->dtype) || !dt_is_float(b->buf->dtype))
        fail(v, s->loc, "%s inputs must be float, not %s and %s", op, dt_name(a->buf->dtype),
             dt_name(b->buf->dtype));
    else if (c->buf->dtype != DT_F32)
        fail(v, s->loc, "%s accumulator %s is %s, not f32", op, c->buf->name,
             dt_name(c->buf->dtype));
    if ((s->u.gemm.rows || s->u.gemm.cols) && s->op == ST_MICRO_GEMM)
        fail(v, s->loc, "micro_gemm has rows or cols (only a gemm has)");
    if (s->u.gemm.rows)
        check_int(v, s->u.gemm.rows, s->loc, "gemm rows");
    if (s->u.gemm.cols)
        check_int(v, s->u.gemm.cols, s->loc, "gemm cols");
    check_writable(v, c->buf, s->loc);
}

static void check_reduce(Verifier *v, const Stmt *s)
{
    const Region *src = &s->u.reduce.src, *dst = &s->u.reduce.dst;
    check_region(v, src, s->loc, "reduce");
    check_region(v, dst, s->loc, "reduce");
    if (!v->ok)
        return;
    int axis = s->u.reduce.axis, rank = src->buf->rank;
    if (axis < 0 || axis >= rank) {
        fail(v, s->loc, "reduce axis %d is out of range for rank-%d %s", axis, rank, src->buf->name);
        return;
    }
    int64_t want[IR_MAX_RANK];
    int n = 0;
    for (int d = 0; d < rank; d++)
        if (d != axis)
            want[n++] = src->ext[d];
    if (n == 0) /* a rank-1 source: a [1] window */
        want[n++] = 1;
    bool ok = dst->buf->rank == n;
    for (int d = 0; ok && d < n; d++)
        ok = dst->ext[d] == want[d];
    if (!ok) {
        char sw[96], sd[96];
        print_shape(sw, sizeof sw, want, n);
        print_shape(sd, sizeof sd, dst->ext, dst->buf->rank);
        fail(v, s->loc, "reduce of %s over axis %d gives %s, but the window of %s is %s",
             src->buf->name, axis, sw, dst->buf->name, sd);
        return;
    }
    if (!dt_is_float(dst->buf->dtype))
        fail(v, s->loc, "reduce destination %s is %s, not a float", dst->buf->name,
             dt_name(dst->buf->dtype));
    check_writable(v, dst->buf, s->loc);
}

static void check_mbar(Verifier *v, const Stmt *s)
{
    const Buffer *b = s->u.mbar.bar;
    const char *op = st_name(s->op);
    if (!b || !owns_buffer(v->k, b)) {
        fail(v, s->loc, "%s uses %s, which is not a buffer of this kernel", op, b ? b->name : "(null)");
        return;
    }
    if (b->scope != SCOPE_SHARED || b->dtype != DT_I64 || b->rank != 1) {
        fail(v, s->loc, "%s: mbarrier buffer %s must be shared i64 of rank 1", op, b->name);
        return;
    }
    check_int(v, s->u.mbar.slot, s->loc, "an mbarrier slot");
    if (s->op != ST_TMA_LOAD)
        check_int(v, s->u.mbar.arg, s->loc, s->op == ST_MBAR_WAIT ? "a wait's parity" : "an mbarrier count");
    int64_t n;
    if (v->ok && (s->op == ST_MBAR_INIT || s->op == ST_MBAR_EXPECT) &&
        (!ir_expr_is_const(s->u.mbar.arg, &n) || n <= 0))
        fail(v, s->loc, "%s %s: the %s must be a positive constant", op, b->name,
             s->op == ST_MBAR_INIT ? "arrival count" : "byte count");
}

static void check_tma(Verifier *v, const Stmt *s)
{
    const Region *src = &s->u.mbar.src, *dst = &s->u.mbar.dst;
    check_region(v, src, s->loc, "tma_load");
    check_region(v, dst, s->loc, "tma_load");
    if (!v->ok)
        return;
    const Buffer *g = src->buf, *x = dst->buf;
    bool shape = g->rank == x->rank && ir_region_is_whole(dst);
    for (int d = 0; shape && d < g->rank; d++)
        shape = src->ext[d] == dst->ext[d];
    int W = s->u.mbar.swizzle;
    if (g->scope != SCOPE_GLOBAL || x->scope != SCOPE_SHARED || g->dtype != x->dtype || !shape)
        fail(v, s->loc, "tma_load %s -> %s must copy a window of a global argument into the whole of a "
             "shared buffer of the same dtype and shape", g->name, x->name);
    else if (W != 0 && W != 32 && W != 64 && W != 128)
        fail(v, s->loc, "tma_load %s -> %s: swizzle %d is not 0, 32, 64 or 128", g->name, x->name, W);
    else if (W && (x->rank != 2 || (int64_t)dt_storage_bytes(x->dtype, dst->ext[1]) % W))
        fail(v, s->loc, "tma_load %s -> %s: a %d-byte swizzle needs a 2-D buffer whose rows are a multiple "
             "of %d bytes", g->name, x->name, W, W);
    else
        check_mbar(v, s);
}

static bool level_allows(const Verifier *v, const Stmt *s)
{
    bool tile_op = s->op == ST_COPY || s->op == ST_FILL || s->op == ST_GEMM ||
                   s->op == ST_REDUCE || s->op == ST_ATOMIC_ADD;
    if (v->k->level == LEVEL_LOOP && tile_op)
        return false;
    if (s->op == ST_BARRIER && (v->k->level != LEVEL_LOOP || !v->k->nthreads))
        return false;
    if (s->op == ST_PREFETCH && v->k->level != LEVEL_LOOP)
        return false;
    if (v->k->level == LEVEL_TILE &&
        (s->op == ST_MICRO_GEMM || (s->op == ST_FOR && s->u.loop.kind == LOOP_VECTOR)))
        return false;
    return true;
}

/* Define a loop or grid variable: once, and only one of this kernel's. */
static bool define_var(Verifier *v, const Var *var, SrcLoc loc, const char *what)
{
    if (!var)
        return fail(v, loc, "%s variable is missing", what);
    if (!owns_var(v, var))
        return fail(v, loc, "%s variable %s is not a variable of this kernel", what, var->name);
    if (v->defined[var->id])
        return fail(v, loc, "%s variable %s is defined twice", what, var->name);
    v->defined[var->id] = v->in_scope[var->id] = 1;
    return true;
}

static void check_for(Verifier *v, const Stmt *s)
{
    const Var *var = s->u.loop.var;
    LoopKind kind = s->u.loop.kind;
    check_int(v, s->u.loop.extent, s->loc, "a loop extent");
    if (!v->ok)
        return;
    if (kind > LOOP_VECTOR) {
        fail(v, s->loc, "unknown loop kind %d", (int)kind);
        return;
    }
    if (kind == LOOP_UNROLL && !ir_expr_is_const(s->u.loop.extent, NULL))
        fail(v, s->loc, "unrolled loop over %s needs a constant extent",
             var ? var->name : "(null)");
    else if ((kind == LOOP_VECTOR || kind == LOOP_PIPELINED) && s->u.loop.arg < 1)
        fail(v, s->loc, "%s loop over %s needs a positive %s, not %d", loop_kind_name(kind),
             var ? var->name : "(null)", kind == LOOP_VECTOR ? "width" : "stage count",
             s->u.loop.arg);
    if (!v->ok || !define_var(v, var, s->loc, "loop"))
        return;
    check_stmt(v, s->u.loop.body);
    v->in_scope[var->id] = 0;
}

static void check_if(Verifier *v, const Stmt *s)
{
    check_expr(v, s->u.if_.cond, s->loc);
    if (v->ok && s->u.if_.cond->dtype != DT_BOOL)
        fail(v, s->loc, "if condition is %s, not bool", dt_name(s->u.if_.cond->dtype));
    check_stmt(v, s->u.if_.then_);
    if (s->u.if_.else_)
        check_stmt(v, s->u.if_.else_);
}

static void check_once(Verifier *v, const Stmt *s)
{
    if (v->k->level != LEVEL_LOOP || v->k->nthreads) {
        fail(v, s->loc, "once belongs to loop IR without threads (a CPU's blocks)");
        return;
    }
    check_int(v, s->u.once.key, s->loc, "a once key");
    check_stmt(v, s->u.once.body);
}

/* The buffer and indices of a STORE or PREFETCH. */
static void check_index(Verifier *v, const Stmt *s, const char *what)
{
    const Buffer *b = s->u.store.buf;
    if (!b || !owns_buffer(v->k, b)) {
        fail(v, s->loc, "%s %s, which is not a buffer of this kernel", what, b ? b->name : "(null)");
        return;
    }
    if (b->rank && !s->u.store.idx) {
        fail(v, s->loc, "%s %s lacks its indices", what, b->name);
        return;
    }
    for (int i = 0; v->ok && i < b->rank; i++) {
        check_expr(v, s->u.store.idx[i], s->loc);
        if (v->ok && !dt_is_int(s->u.store.idx[i]->dtype))
            fail(v, s->loc, "index %d of a %s %s is %s, not an integer", i, what, b->name,
                 dt_name(s->u.store.idx[i]->dtype));
    }
}

static void check_store(Verifier *v, const Stmt *s)
{
    const Buffer *b = s->u.store.buf;
    check_index(v, s, "store to");
    if (!v->ok)
        return;
    check_expr(v, s->u.store.value, s->loc);
    if (v->ok && s->u.store.async) {
        if (s->u.store.value->op != EX_LOAD)
            fail(v, s->loc, "async store to %s must store a load", b->name);
        else
            check_async(v, s->u.store.value->buf, b, s->loc);
    }
    if (v->ok && s->u.store.stream && (b->scope != SCOPE_GLOBAL || s->u.store.atomic || s->u.store.async))
        fail(v, s->loc, "stream store to %s must be a plain store to a global buffer", b->name);
    check_writable(v, b, s->loc);
}

static void check_stmt(Verifier *v, const Stmt *s)
{
    if (!v->ok)
        return;
    if (!s) {
        fail(v, v->k->loc, "a statement (loop or if body) is missing");
        return;
    }
    if (s->op == ST_BARRIER && !level_allows(v, s)) {
        fail(v, s->loc, "barrier outside a threaded loop-IR kernel (threads < N)");
        return;
    }
    if (!level_allows(v, s)) {
        fail(v, s->loc, "%s%s is not allowed in %s IR", st_name(s->op),
             s->op == ST_FOR ? " (vector)" : "", v->k->level == LEVEL_TILE ? "tile" : "loop");
        return;
    }
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            check_stmt(v, s->u.seq.items[i]);
        break;
    case ST_FOR: check_for(v, s); break;
    case ST_IF: check_if(v, s); break;
    case ST_ONCE: check_once(v, s); break;
    case ST_STORE: check_store(v, s); break;
    case ST_PREFETCH: check_index(v, s, "prefetch of"); break;
    case ST_COPY:
    case ST_ATOMIC_ADD: check_copy(v, s); break;
    case ST_FILL:
        check_region(v, &s->u.fill.dst, s->loc, "fill");
        check_expr(v, s->u.fill.value, s->loc);
        if (v->ok)
            check_writable(v, s->u.fill.dst.buf, s->loc);
        break;
    case ST_GEMM:
    case ST_MICRO_GEMM: check_gemm(v, s); break;
    case ST_REDUCE: check_reduce(v, s); break;
    case ST_BARRIER:
    case ST_ASYNC_COMMIT: break;
    case ST_ASYNC_WAIT:
    case ST_WGMMA_WAIT:
        if (s->u.wait.pending < 0)
            fail(v, s->loc, "%s %d: the groups left in flight cannot be negative", st_name(s->op),
                 s->u.wait.pending);
        break;
    case ST_MBAR_INIT:
    case ST_MBAR_EXPECT:
    case ST_MBAR_WAIT: check_mbar(v, s); break;
    case ST_TMA_LOAD: check_tma(v, s); break;
    default: fail(v, s->loc, "unknown statement op %d", (int)s->op);
    }
}

/* ---------------------------------------------------------------- kernel */

static void check_buffer(Verifier *v, int i)
{
    const Buffer *b = v->k->bufs[i];
    if ((b->scope == SCOPE_GLOBAL) != (i < v->k->nargs)) {
        fail(v, b->loc, "%s: arguments must come first in the buffer list", b->name);
        return;
    }
    for (int j = 0; j < i; j++)
        if (!strcmp(v->k->bufs[j]->name, b->name))
            fail(v, b->loc, "two buffers are named %s", b->name);
    if (b->rank < 0 || b->rank > IR_MAX_RANK)
        fail(v, b->loc, "%s has rank %d", b->name, b->rank);
    if (b->scope == SCOPE_GLOBAL && (b->dir < ARG_IN || b->dir > ARG_INOUT))
        fail(v, b->loc, "argument %s has no direction (in, out, inout)", b->name);
    for (int r = 0; v->ok && r < b->rank; r++) {
        int64_t n;
        if (b->scope != SCOPE_GLOBAL) {
            if (!b->shape[r] || !ir_expr_is_const(b->shape[r], &n) || n < 1)
                fail(v, b->loc, "scratch buffer %s needs a constant positive shape (dimension %d)",
                     b->name, r);
            continue;
        }
        check_int(v, b->shape[r], b->loc, "a shape");
        check_int(v, b->stride[r], b->loc, "a stride");
    }
}

static void check_kernel(Verifier *v)
{
    const Kernel *k = v->k;
    for (int i = 0; i < k->nvars; i++) {
        const Var *var = k->vars[i];
        if (var->id < 0 || var->id >= k->next_id)
            fail(v, k->loc, "variable %s has an id outside the kernel's", var->name);
        else
            v->var_of[var->id] = var;
        for (int j = 0; v->ok && j < i; j++)
            if (!strcmp(k->vars[j]->name, var->name))
                fail(v, k->loc, "two variables are named %s", var->name);
    }
    for (int i = 0; v->ok && i < k->nbufs; i++)
        check_buffer(v, i);
    for (int i = 0; v->ok && i < k->nkparams; i++) {
        const Param *p = k->kparams[i].dyn;
        if (k->kparams[i].kind == KP_DYN && p &&
            (p->index < 0 || p->index >= k->nparams || k->params[p->index] != p))
            fail(v, k->loc, "dyn parameter %s is not a scalar of this kernel", k->kparams[i].name);
    }
    if (v->ok && (k->ngrid < 1 || k->ngrid > IR_MAX_GRID))
        fail(v, k->loc, "kernel %s has a grid of %d dimensions, not 1 to %d", k->name, k->ngrid,
             IR_MAX_GRID);
    /* extents first: they are evaluated before any block runs */
    for (int g = 0; v->ok && g < k->ngrid; g++)
        check_int(v, k->grid[g], k->loc, "a grid extent");
    for (int g = 0; v->ok && g < k->ngrid; g++)
        define_var(v, k->grid_var[g], k->loc, "grid");
    if (v->ok && k->nthreads) {
        if (k->level != LEVEL_LOOP || k->nthreads < 0 || k->nthreads > 1024)
            fail(v, k->loc, "kernel %s: threads (%d) need loop IR and 1 to 1024 of them", k->name,
                 k->nthreads);
        else if (define_var(v, k->thread_var, k->loc, "thread"))
            for (int i = 0; v->ok && i < k->nbufs; i++)
                if (k->bufs[i]->scope == SCOPE_FRAGMENT)
                    fail(v, k->bufs[i]->loc, "%s: a threaded kernel has no fragment buffers",
                         k->bufs[i]->name);
    }
    if (v->ok && (!k->body || k->body->op != ST_SEQ))
        fail(v, k->loc, "the kernel body must be a sequence");
    if (v->ok)
        check_stmt(v, k->body);
}

bool ir_verify(const Kernel *k, Diag *d)
{
    Verifier v = {.k = k, .d = d, .ok = true};
    size_t n = (size_t)(k->next_id > 0 ? k->next_id : 0) + 1;
    v.var_of = calloc(n, sizeof *v.var_of);
    v.in_scope = calloc(n, 1);
    v.defined = calloc(n, 1);
    if (v.var_of && v.in_scope && v.defined)
        check_kernel(&v);
    else
        fail(&v, k->loc, "out of memory");
    free(v.var_of);
    free(v.in_scope);
    free(v.defined);
    return v.ok;
}
