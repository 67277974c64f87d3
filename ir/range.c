/* range.c — the interval of an integer expression from its leaves'. */
#include "ir/ir.h"

static const IrRange UNKNOWN_RANGE = {0, 0, false};

static IrRange between(int64_t lo, int64_t hi) { return (IrRange){lo, hi, true}; }

/* a op b for + - *: the extremes lie at the four corners; unknown when
 * one overflows. */
static IrRange corners(ExprOp op, IrRange a, IrRange b)
{
    int64_t x[2] = {a.lo, a.hi}, y[2] = {b.lo, b.hi}, lo = 0, hi = 0;
    for (int i = 0; i < 4; i++) {
        int64_t r;
        bool over = op == EX_ADD   ? __builtin_add_overflow(x[i >> 1], y[i & 1], &r)
                    : op == EX_SUB ? __builtin_sub_overflow(x[i >> 1], y[i & 1], &r)
                                   : __builtin_mul_overflow(x[i >> 1], y[i & 1], &r);
        if (over)
            return UNKNOWN_RANGE;
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

IrRange ir_range_of(const Expr *e, IrRange (*leaf)(const Expr *, void *), void *ctx)
{
    if (!dt_is_int(e->dtype))
        return UNKNOWN_RANGE;
    if (e->op == EX_CONST)
        return between(e->imm.i, e->imm.i);
    if (e->op == EX_VAR || e->op == EX_PARAM || e->op == EX_LOAD)
        return leaf(e, ctx);
    if (e->op == EX_SELECT) {
        IrRange t = ir_range_of(e->args[1], leaf, ctx), f = ir_range_of(e->args[2], leaf, ctx);
        return t.known && f.known ? between(t.lo < f.lo ? t.lo : f.lo, t.hi > f.hi ? t.hi : f.hi) : UNKNOWN_RANGE;
    }
    if (e->nargs != 2)
        return UNKNOWN_RANGE;
    IrRange a = ir_range_of(e->args[0], leaf, ctx);
    int64_t c;
    if ((e->op == EX_DIV || e->op == EX_MOD) && ir_expr_is_const(e->args[1], &c) && c > 0) {
        if (e->op == EX_MOD) /* floor modulo by a positive constant */
            return a.known && a.lo >= 0 && a.hi < c ? a : between(0, c - 1);
        return a.known ? between(floor_div(a.lo, c), floor_div(a.hi, c)) : UNKNOWN_RANGE; /* monotone */
    }
    IrRange b = ir_range_of(e->args[1], leaf, ctx);
    if (!a.known || !b.known)
        return UNKNOWN_RANGE;
    switch (e->op) {
    case EX_ADD: case EX_SUB: case EX_MUL: return corners(e->op, a, b);
    case EX_MIN: return between(a.lo < b.lo ? a.lo : b.lo, a.hi < b.hi ? a.hi : b.hi);
    case EX_MAX: return between(a.lo > b.lo ? a.lo : b.lo, a.hi > b.hi ? a.hi : b.hi);
    default: return UNKNOWN_RANGE;
    }
}

enum { MAX_LINEAR = 16 };

/* Σ coef·atom + c, an atom any integer expression other than + - and a
 * product with a constant, structurally equal atoms merged: terms that
 * cancel need no range. */
typedef struct Linear {
    const Expr *atom[MAX_LINEAR];
    int64_t coef[MAX_LINEAR];
    int n;
    int64_t c;
    bool ok;
} Linear;

static void linear_add(Linear *l, const Expr *e, int64_t scale)
{
    int64_t k, prod;
    if (!l->ok || !dt_is_int(e->dtype)) {
        l->ok = false;
        return;
    }
    if (e->op == EX_CONST) {
        l->ok = !__builtin_mul_overflow(scale, e->imm.i, &prod) && !__builtin_add_overflow(l->c, prod, &l->c);
        return;
    }
    if (e->op == EX_ADD || e->op == EX_SUB) {
        linear_add(l, e->args[0], scale);
        linear_add(l, e->args[1], e->op == EX_SUB ? -scale : scale);
        return;
    }
    for (int s = 0; s < 2 && e->op == EX_MUL; s++)
        if (ir_expr_is_const(e->args[s], &k)) {
            l->ok = !__builtin_mul_overflow(scale, k, &prod);
            linear_add(l, e->args[1 - s], prod);
            return;
        }
    for (int i = 0; i < l->n; i++)
        if (ir_expr_equal(l->atom[i], e)) {
            l->ok = !__builtin_add_overflow(l->coef[i], scale, &l->coef[i]);
            return;
        }
    l->ok = l->n < MAX_LINEAR;
    if (l->ok) {
        l->atom[l->n] = e;
        l->coef[l->n++] = scale;
    }
}

/* The least value of Σ sign[i]·e[i]: the terms are collected as one
 * linear form first, so what appears on both sides cancels and needs no
 * range ((b·8 + c) - (b·8 + 8) is c - 8 whatever b is); each remaining
 * atom's range comes from ir_range_of with `leaf`.  False when unknown. */
bool ir_least_of_sum(const Expr *const *e, const int64_t *sign, int n, IrRange (*leaf)(const Expr *, void *), void *ctx,
                     int64_t *lo)
{
    Linear l = {.ok = true};
    for (int i = 0; i < n; i++)
        linear_add(&l, e[i], sign[i]);
    *lo = l.c;
    for (int i = 0; i < l.n && l.ok; i++) {
        IrRange a = l.coef[i] ? ir_range_of(l.atom[i], leaf, ctx) : (IrRange){0, 0, true};
        int64_t at = l.coef[i] > 0 ? a.lo : a.hi, prod;
        l.ok = a.known && !__builtin_mul_overflow(at, l.coef[i], &prod) && !__builtin_add_overflow(*lo, prod, lo);
    }
    return l.ok;
}
