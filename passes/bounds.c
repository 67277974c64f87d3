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
 * interval, then the and/or/not, select and if built on it, and a min/max
 * whose sides are ordered.  The branch never taken goes, and with it the
 * scratch buffers only it used: less code to compile, fewer tests to run.
 *
 * A variable's interval does not depend on where it is used (each loop
 * binds its own variable, and conditions on the path are not used), so
 * shared expression nodes are rewritten in place. */
#include "passes/passes.h"

#include <stdlib.h>

typedef struct Interval {
    int64_t lo, hi;
    bool known; /* false: anything */
} Interval;

typedef struct Bounds {
    Kernel *k;
    Interval *var; /* by Var id */
} Bounds;

static const Interval ANYTHING = {0, 0, false};

static Interval between(int64_t lo, int64_t hi) { return (Interval){lo, hi, true}; }

/* lo..hi of the four corner values a op b (for + - * the extremes lie at
 * the corners); anything on overflow. */
static Interval corners(ExprOp op, Interval a, Interval b)
{
    int64_t x[2] = {a.lo, a.hi}, y[2] = {b.lo, b.hi}, lo = 0, hi = 0;
    for (int i = 0; i < 4; i++) {
        int64_t r;
        bool over = op == EX_ADD   ? __builtin_add_overflow(x[i >> 1], y[i & 1], &r)
                    : op == EX_SUB ? __builtin_sub_overflow(x[i >> 1], y[i & 1], &r)
                                   : __builtin_mul_overflow(x[i >> 1], y[i & 1], &r);
        if (over)
            return ANYTHING;
        lo = i == 0 || r < lo ? r : lo;
        hi = i == 0 || r > hi ? r : hi;
    }
    return between(lo, hi);
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static Interval range_of(const Bounds *B, const Expr *e);

/* A boolean's interval: [1, 1] true, [0, 0] false, [0, 1] either. */
static Interval truth(const Bounds *B, const Expr *e)
{
    Interval a = e->nargs > 0 ? range_of(B, e->args[0]) : ANYTHING;
    Interval b = e->nargs > 1 ? range_of(B, e->args[1]) : ANYTHING;
    bool sure = a.known && b.known;
    switch (e->op) {
    case EX_LT: return !sure ? between(0, 1) : a.hi < b.lo ? between(1, 1) : a.lo >= b.hi ? between(0, 0) : between(0, 1);
    case EX_LE: return !sure ? between(0, 1) : a.hi <= b.lo ? between(1, 1) : a.lo > b.hi ? between(0, 0) : between(0, 1);
    case EX_EQ:
        if (!sure)
            return between(0, 1);
        if (a.lo == a.hi && b.lo == b.hi && a.lo == b.lo)
            return between(1, 1);
        return a.hi < b.lo || b.hi < a.lo ? between(0, 0) : between(0, 1);
    case EX_NE: {
        Interval eq = truth(B, &(Expr){.op = EX_EQ, .nargs = 2, .args = e->args});
        return between(1 - eq.hi, 1 - eq.lo);
    }
    case EX_AND: return between(a.lo && b.lo, a.hi && b.hi);
    case EX_OR: return between(a.lo || b.lo, a.hi || b.hi);
    case EX_NOT: return between(1 - a.hi, 1 - a.lo);
    default: return between(0, 1);
    }
}

static Interval range_of(const Bounds *B, const Expr *e)
{
    if (e->dtype == DT_BOOL && e->op != EX_CONST && e->op != EX_LOAD && e->op != EX_SELECT)
        return truth(B, e);
    if (!dt_is_int(e->dtype) && e->dtype != DT_BOOL)
        return ANYTHING;
    Interval a = e->nargs > 0 ? range_of(B, e->args[0]) : ANYTHING;
    Interval b = e->nargs > 1 ? range_of(B, e->args[1]) : ANYTHING;
    bool sure = a.known && b.known;
    int64_t c;
    switch (e->op) {
    case EX_CONST: return between(e->imm.i, e->imm.i);
    case EX_VAR: return B->var[e->var->id];
    case EX_PARAM: return between(0, INT64_MAX); /* a dyn size */
    case EX_ADD: case EX_SUB: case EX_MUL: return sure ? corners(e->op, a, b) : ANYTHING;
    case EX_DIV: /* floor division is monotone in a for a positive divisor */
        if (a.known && ir_expr_is_const(e->args[1], &c) && c > 0)
            return between(floor_div(a.lo, c), floor_div(a.hi, c));
        return ANYTHING;
    case EX_MOD:
        if (ir_expr_is_const(e->args[1], &c) && c > 0)
            return a.known && a.lo >= 0 && a.hi < c ? a : between(0, c - 1);
        return ANYTHING;
    case EX_MIN: return sure ? between(a.lo < b.lo ? a.lo : b.lo, a.hi < b.hi ? a.hi : b.hi) : ANYTHING;
    case EX_MAX: return sure ? between(a.lo > b.lo ? a.lo : b.lo, a.hi > b.hi ? a.hi : b.hi) : ANYTHING;
    case EX_SELECT: {
        Interval t = range_of(B, e->args[1]), f = range_of(B, e->args[2]);
        if (!t.known || !f.known)
            return ANYTHING;
        return between(t.lo < f.lo ? t.lo : f.lo, t.hi > f.hi ? t.hi : f.hi);
    }
    default: return ANYTHING;
    }
}

/* ------------------------------------------------------------ rewriting */

static Expr *fold(Bounds *B, Expr *e);

/* e with its arguments folded; rebuilt by the builder when one became a
 * constant, so `true and x` is x as the parser would make it. */
static Expr *fold_args(Bounds *B, Expr *e)
{
    bool newly_const = false;
    for (int i = 0; i < e->nargs; i++) {
        Expr *a = fold(B, e->args[i]);
        newly_const |= a != e->args[i] && a->op == EX_CONST;
        e->args[i] = a;
    }
    if (!newly_const || e->op == EX_LOAD || e->op == EX_SELECT || e->op == EX_CAST || e->op == EX_BITCAST)
        return e;
    return e->nargs == 2 ? ir_binary(B->k, e->op, e->args[0], e->args[1])
           : e->nargs == 1 ? ir_unary(B->k, e->op, e->args[0])
                           : e;
}

static Expr *fold(Bounds *B, Expr *e)
{
    e = fold_args(B, e);
    if (e->dtype == DT_BOOL && e->op != EX_CONST && e->op != EX_LOAD) {
        Interval t = range_of(B, e);
        if (t.known && t.lo == t.hi)
            return ir_const_bool(B->k, t.lo != 0);
    }
    if (e->op == EX_SELECT) {
        Interval t = range_of(B, e->args[0]);
        if (t.known && t.lo == t.hi)
            return e->args[t.lo ? 1 : 2];
    }
    if ((e->op == EX_MIN || e->op == EX_MAX) && dt_is_int(e->dtype)) {
        Interval a = range_of(B, e->args[0]), b = range_of(B, e->args[1]);
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
    Interval x = range_of(B, extent);
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
        return s;
    case ST_REDUCE:
        fold_region(B, &s->u.reduce.src);
        fold_region(B, &s->u.reduce.dst);
        return s;
    default: return s;
    }
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
    k->body = fold_stmt(&B, k->body);
    free(B.var);
    ir_drop_unused_buffers(k);
    return true;
}
