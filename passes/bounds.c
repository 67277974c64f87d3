/* bounds.c — fold what the ranges of the loop and grid variables decide.
 *
 * lower guards every window that might cross a global buffer's edge: a
 * fast path when the window lies inside, a slow one with clamped loads and
 * guarded stores.  Often the grid's extent already proves the window
 * inside (N = 4096, BN = 64: bx < 64, so bx * 64 + 64 <= 4096 holds for
 * every block).  This pass computes each integer expression's interval from
 * the intervals of the variables in it — a grid variable lies in
 * [0, extent), a loop variable in [0, extent), a dyn parameter (a size) in
 * [0, ∞) — and folds a comparison that holds (or fails) over the whole
 * interval, then the and/or/not, select and if built on it, a min/max
 * whose sides are ordered, and an integer expression of a single value (a
 * variable of a loop or grid of extent 1 is 0).  The branch never taken goes, and with it the
 * scratch buffers only it used: less code to compile, fewer tests to run.
 *
 * A variable's interval does not depend on where it is used (each loop
 * binds its own variable, and conditions on the path are not used), so
 * shared expression nodes are rewritten in place.
 *
 * So does a load of a small integer scratch (a block's schedule: an MoE
 * tile's expert, first row and row count, found by scanning the counts)
 * at a constant index: the union of what every store to that element
 * puts there (a store at a varying index counts for each element), where
 * the block's first use of the buffer stores every element of it (its
 * clear), so no load sees what an earlier block left.  An expert stored
 * as a loop variable over E lies in [0, E): the tile's windows into the
 * expert's weights are inside, and their edge arms go. */
#include "passes/passes.h"

#include <stdlib.h>

enum { MAX_TRACKED = 16 }; /* elements of a scratch whose loads get ranges */

typedef struct Bounds {
    Kernel *k;
    IrRange *var;                     /* by Var id */
    IrRange (*elem)[MAX_TRACKED];     /* by Buffer id: each element's stored values */
    bool *tracked;                    /* by Buffer id */
    bool ranges_ready;                /* elem complete: loads may use it */
} Bounds;

static const IrRange ANYTHING = {0, 0, false};

static IrRange between(int64_t lo, int64_t hi) { return (IrRange){lo, hi, true}; }

/* A variable's interval from the table; a dyn parameter is a size; a
 * tracked scratch element's load, its stores' union. */
static IrRange leaf_range(const Expr *e, void *ctx)
{
    const Bounds *B = ctx;
    int64_t i;
    if (e->op == EX_LOAD)
        return B->ranges_ready && B->tracked[e->buf->id] && ir_expr_is_const(e->args[0], &i) && i >= 0 &&
                       i < MAX_TRACKED
                   ? B->elem[e->buf->id][i]
                   : ANYTHING;
    return e->op == EX_VAR ? B->var[e->var->id] : between(0, INT64_MAX);
}

static IrRange range_of(const Bounds *B, const Expr *e) { return ir_range_of(e, leaf_range, (void *)B); }

/* A boolean's interval: [1, 1] true, [0, 0] false, [0, 1] either. */
static IrRange truth(const Bounds *B, const Expr *e)
{
    if (e->op == EX_CONST)
        return between(e->imm.i != 0, e->imm.i != 0);
    bool logic = e->op == EX_AND || e->op == EX_OR || e->op == EX_NOT;
    IrRange a = e->nargs > 0 ? (logic ? truth(B, e->args[0]) : range_of(B, e->args[0])) : ANYTHING;
    IrRange b = e->nargs > 1 ? (logic ? truth(B, e->args[1]) : range_of(B, e->args[1])) : ANYTHING;
    bool sure = a.known && b.known;
    switch (e->op) {
    case EX_LT: return !sure ? between(0, 1) : a.hi < b.lo ? between(1, 1) : a.lo >= b.hi ? between(0, 0) : between(0, 1);
    case EX_LE: return !sure ? between(0, 1) : a.hi <= b.lo ? between(1, 1) : a.lo > b.hi ? between(0, 0) : between(0, 1);
    case EX_EQ: case EX_NE: {
        bool eq = sure && a.lo == a.hi && b.lo == b.hi && a.lo == b.lo;
        bool ne = sure && (a.hi < b.lo || b.hi < a.lo);
        IrRange r = eq ? between(1, 1) : ne ? between(0, 0) : between(0, 1);
        return e->op == EX_EQ ? r : between(1 - r.hi, 1 - r.lo);
    }
    case EX_AND: return between(a.lo && b.lo, a.hi && b.hi);
    case EX_OR: return between(a.lo || b.lo, a.hi || b.hi);
    case EX_NOT: return between(1 - a.hi, 1 - a.lo);
    default: return between(0, 1);
    }
}

/* ------------------------------------------------------------ rewriting */

static Expr *fold(Bounds *B, Expr *e);

/* e with its arguments folded; rebuilt by the builder when one is a
 * constant, so `true and x` is x as the parser would make it (also where
 * a shared node's argument was folded in place through another parent). */
static Expr *fold_args(Bounds *B, Expr *e)
{
    bool some_const = false;
    for (int i = 0; i < e->nargs; i++) {
        Expr *a = fold(B, e->args[i]);
        some_const |= a->op == EX_CONST;
        e->args[i] = a;
    }
    if (!some_const || e->op == EX_LOAD || e->op == EX_SELECT || e->op == EX_CAST || e->op == EX_BITCAST)
        return e;
    return e->nargs == 2 ? ir_binary(B->k, e->op, e->args[0], e->args[1])
           : e->nargs == 1 ? ir_unary(B->k, e->op, e->args[0])
                           : e;
}

static Expr *fold(Bounds *B, Expr *e)
{
    e = fold_args(B, e);
    if (e->dtype == DT_BOOL && e->op != EX_CONST && e->op != EX_LOAD && e->op != EX_SELECT) {
        IrRange t = truth(B, e);
        if (t.known && t.lo == t.hi)
            return ir_const_bool(B->k, t.lo != 0);
    }
    if (e->op == EX_SELECT) {
        IrRange t = truth(B, e->args[0]);
        if (t.known && t.lo == t.hi)
            return e->args[t.lo ? 1 : 2];
    }
    if (e->dtype == DT_I64 && e->op != EX_CONST && e->op != EX_LOAD) {
        /* one value over every block and step: `1 - by` with by < 1 */
        IrRange r = range_of(B, e);
        if (r.known && r.lo == r.hi)
            return ir_const_i(B->k, r.lo);
    }
    if (e->op == EX_CAST && dt_is_float(e->dtype) && e->args[0]->dtype == DT_I64) {
        /* an index as a float (topk's positions): through i32 where the
         * value fits, which converts 8 lanes in one instruction; without
         * AVX-512 an i64 vector converts one lane at a time */
        IrRange r = range_of(B, e->args[0]);
        if (r.known && r.lo >= INT32_MIN && r.hi <= INT32_MAX)
            e->args[0] = ir_cast(B->k, DT_I32, e->args[0]);
    }
    if ((e->op == EX_MIN || e->op == EX_MAX) && dt_is_int(e->dtype)) {
        IrRange a = range_of(B, e->args[0]), b = range_of(B, e->args[1]);
        if (a.known && b.known) {
            bool a_le_b = a.hi <= b.lo, b_le_a = b.hi <= a.lo;
            if (e->op == EX_MIN && (a_le_b || b_le_a))
                return e->args[a_le_b ? 0 : 1];
            if (e->op == EX_MAX && (a_le_b || b_le_a))
                return e->args[a_le_b ? 1 : 0];
        }
    }
    return e;
}

static void fold_region(Bounds *B, Region *r)
{
    for (int d = 0; d < r->buf->rank; d++)
        r->off[d] = fold(B, r->off[d]);
}

/* [0, extent) for a loop's variable; [0, 0] when the loop may not run at
 * all is still sound: nothing inside runs then. */
static void bind(Bounds *B, const Var *v, const Expr *extent)
{
    IrRange x = range_of(B, extent);
    B->var[v->id] = x.known && x.hi >= 1 && x.hi != INT64_MAX ? between(0, x.hi - 1)
                    : x.known && x.hi < 1                   ? between(0, 0)
                                                            : between(0, INT64_MAX);
}

static Stmt *fold_stmt(Bounds *B, Stmt *s)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            s->u.seq.items[i] = fold_stmt(B, s->u.seq.items[i]);
        return s;
    case ST_FOR:
        s->u.loop.extent = fold(B, s->u.loop.extent);
        bind(B, s->u.loop.var, s->u.loop.extent);
        s->u.loop.body = fold_stmt(B, s->u.loop.body);
        return s;
    case ST_IF: {
        s->u.if_.cond = fold(B, s->u.if_.cond);
        if (s->u.if_.cond->op == EX_CONST) {
            Stmt *taken = s->u.if_.cond->imm.i ? s->u.if_.then_ : s->u.if_.else_;
            return taken ? fold_stmt(B, taken) : ir_seq(B->k, s->loc);
        }
        s->u.if_.then_ = fold_stmt(B, s->u.if_.then_);
        if (s->u.if_.else_)
            s->u.if_.else_ = fold_stmt(B, s->u.if_.else_);
        return s;
    }
    case ST_STORE:
    case ST_PREFETCH:
        for (int d = 0; d < s->u.store.buf->rank; d++)
            s->u.store.idx[d] = fold(B, s->u.store.idx[d]);
        if (s->u.store.value)
            s->u.store.value = fold(B, s->u.store.value);
        return s;
    case ST_COPY:
    case ST_ATOMIC_ADD:
        fold_region(B, &s->u.copy.src);
        fold_region(B, &s->u.copy.dst);
        return s;
    case ST_FILL:
        fold_region(B, &s->u.fill.dst);
        s->u.fill.value = fold(B, s->u.fill.value);
        return s;
    case ST_GEMM:
    case ST_MICRO_GEMM:
        fold_region(B, &s->u.gemm.a);
        fold_region(B, &s->u.gemm.b);
        fold_region(B, &s->u.gemm.c);
        if (s->u.gemm.a_scale.buf)
            fold_region(B, &s->u.gemm.a_scale);
        if (s->u.gemm.b_scale.buf)
            fold_region(B, &s->u.gemm.b_scale);
        if (s->u.gemm.rows)
            s->u.gemm.rows = fold(B, s->u.gemm.rows);
        if (s->u.gemm.cols)
            s->u.gemm.cols = fold(B, s->u.gemm.cols);
        return s;
    case ST_REDUCE:
        fold_region(B, &s->u.reduce.src);
        fold_region(B, &s->u.reduce.dst);
        return s;
    default: return s;
    }
}

/* ------------------------------------------------ scratch element ranges */

/* Elements of a 1-D integer scratch small enough to track; 0 if not one. */
static int64_t trackable(const Buffer *b)
{
    int64_t n;
    bool ok = b->scope == SCOPE_LOCAL && dt_is_int(b->dtype) && b->rank == 1 && ir_expr_is_const(b->shape[0], &n);
    return ok && n >= 1 && n <= MAX_TRACKED ? n : 0;
}

static IrRange either(IrRange a, IrRange b)
{
    if (!a.known || !b.known)
        return ANYTHING;
    return between(a.lo < b.lo ? a.lo : b.lo, a.hi > b.hi ? a.hi : b.hi);
}

/* Widen each element's range by what s stores to tracked buffers (the
 * loops' variables bound as fold_stmt binds them); a buffer written any
 * other way stops being tracked. */
static void collect_stores(Bounds *B, const Stmt *s, bool *seen)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            collect_stores(B, s->u.seq.items[i], seen);
        return;
    case ST_FOR:
        bind(B, s->u.loop.var, s->u.loop.extent);
        collect_stores(B, s->u.loop.body, seen);
        return;
    case ST_IF:
        collect_stores(B, s->u.if_.then_, seen);
        if (s->u.if_.else_)
            collect_stores(B, s->u.if_.else_, seen);
        return;
    case ST_ONCE: collect_stores(B, s->u.once.body, seen); return;
    case ST_STORE: {
        const Buffer *b = s->u.store.buf;
        if (!B->tracked[b->id])
            return;
        if (s->u.store.atomic || s->u.store.async) {
            B->tracked[b->id] = false;
            return;
        }
        IrRange v = range_of(B, s->u.store.value);
        int64_t n = trackable(b), at;
        bool one = ir_expr_is_const(s->u.store.idx[0], &at) && at >= 0 && at < n;
        for (int64_t i = 0; i < n; i++)
            if (!one || i == at) {
                size_t at_i = (size_t)b->id * MAX_TRACKED + (size_t)i;
                B->elem[b->id][i] = seen[at_i] ? either(B->elem[b->id][i], v) : v;
                seen[at_i] = true;
            }
        return;
    }
    default:
        for (int i = 0; i < B->k->nbufs; i++) {
            const Buffer *b = B->k->bufs[i];
            IrUse u = {0};
            if (B->tracked[b->id] && (ir_buffer_use(s, b, &u), u.writes))
                B->tracked[b->id] = false;
        }
        return;
    }
}

/* Whether s is `for v < n { b[v] = value }` over all of b (n its size),
 * the value free of b. */
static bool stores_all_of(const Stmt *s, const Buffer *b)
{
    while (s->op == ST_SEQ && s->u.seq.n == 1)
        s = s->u.seq.items[0];
    int64_t n;
    if (s->op != ST_FOR || !ir_expr_is_const(s->u.loop.extent, &n) || n != trackable(b))
        return false;
    const Stmt *st = s->u.loop.body;
    while (st->op == ST_SEQ && st->u.seq.n == 1)
        st = st->u.seq.items[0];
    return st->op == ST_STORE && st->u.store.buf == b && st->u.store.idx[0]->op == EX_VAR &&
           st->u.store.idx[0]->var == s->u.loop.var && !ir_loads_from(st->u.store.value, b);
}

/* The buffers whose first use in the block body stores all of them, and
 * the ranges their stores give each element (Bounds.elem). */
static void track_scratch(Bounds *B)
{
    size_t ids = (size_t)B->k->next_id + 1;
    B->tracked = calloc(ids, sizeof *B->tracked);
    B->elem = calloc(ids, sizeof *B->elem);
    bool *seen = calloc(ids * MAX_TRACKED, sizeof *seen);
    const Stmt *body = B->k->body;
    int items = body->op == ST_SEQ ? body->u.seq.n : 1;
    for (int b = 0; b < B->k->nbufs; b++) {
        const Buffer *x = B->k->bufs[b];
        if (!trackable(x))
            continue;
        for (int i = 0; i < items; i++) {
            const Stmt *it = body->op == ST_SEQ ? body->u.seq.items[i] : body;
            IrUse u = {0};
            ir_buffer_use(it, x, &u);
            if (u.reads || u.writes) {
                B->tracked[x->id] = stores_all_of(it, x);
                break;
            }
        }
    }
    /* the walk meets a tracked buffer's clear before its other stores (the
     * clear is its first use), so every element is seen; the loops it
     * binds are bound again as fold_stmt reaches them */
    collect_stores(B, body, seen);
    free(seen);
    B->ranges_ready = true; /* (a store's value read its own buffer as unknown: x = x + 1 grows) */
}

bool pass_bounds(Kernel *k, const TargetInfo *t, Diag *d)
{
    (void)t;
    (void)d;
    if (k->level != LEVEL_LOOP)
        return true;
    Bounds B = {.k = k, .var = calloc((size_t)k->next_id + 1, sizeof *B.var)};
    for (int i = 0; i < k->next_id + 1; i++)
        B.var[i] = ANYTHING;
    for (int g = 0; g < k->ngrid; g++)
        bind(&B, k->grid_var[g], k->grid[g]);
    if (k->nthreads > 0)
        B.var[k->thread_var->id] = between(0, k->nthreads - 1);
    track_scratch(&B);
    k->body = fold_stmt(&B, k->body);
    free(B.var);
    free(B.elem);
    free(B.tracked);
    ir_drop_unused_buffers(k);
    return true;
}
