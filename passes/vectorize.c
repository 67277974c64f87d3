/* vectorize.c — choose the loops that run in vector lanes.
 *
 * A loop becomes LOOP_VECTOR (width = lanes of f32 in the target's vectors)
 * when it is innermost and either
 *   - parallel, with a body of plain stores (iterations are independent), or
 *   - serial, with a body that is one reduction step `acc[0] = acc[0] op e`
 *     (op +, max, min) into a one-element local accumulator.
 * Codegen turns the mark into a vectorised loop with a masked tail; it may
 * reassociate the reduction, which is why only these shapes are marked. */
#include "passes/passes.h"

static bool is_innermost(const Stmt *s)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            if (!is_innermost(s->u.seq.items[i]))
                return false;
        return true;
    case ST_STORE:
        return !s->u.store.atomic;
    default:
        return false;
    }
}

static bool loads_from(const Expr *e, const Buffer *b)
{
    if (e->op == EX_LOAD && e->buf == b)
        return true;
    for (int i = 0; i < e->nargs; i++)
        if (loads_from(e->args[i], b))
            return true;
    return false;
}

/* acc[0] = acc[0] op e, with e not reading acc. */
static bool is_reduction_step(const Stmt *s)
{
    while (s->op == ST_SEQ && s->u.seq.n == 1)
        s = s->u.seq.items[0];
    if (s->op != ST_STORE || s->u.store.atomic)
        return false;
    const Buffer *acc = s->u.store.buf;
    const Expr *v = s->u.store.value;
    if (acc->scope != SCOPE_LOCAL || acc->rank != 1 || acc->dtype != DT_F32)
        return false;
    if (v->op != EX_ADD && v->op != EX_MAX && v->op != EX_MIN)
        return false;
    const Expr *lhs = v->args[0], *rhs = v->args[1];
    /* one fixed accumulator element: its index is a constant */
    return lhs->op == EX_LOAD && lhs->buf == acc && ir_expr_equal(lhs->args[0], s->u.store.idx[0]) &&
           ir_expr_is_const(s->u.store.idx[0], NULL) && !loads_from(rhs, acc);
}

static void walk(Stmt *s, int width)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            walk(s->u.seq.items[i], width);
        break;
    case ST_IF:
        walk(s->u.if_.then_, width);
        if (s->u.if_.else_)
            walk(s->u.if_.else_, width);
        break;
    case ST_FOR:
        if ((s->u.loop.kind == LOOP_PARALLEL && is_innermost(s->u.loop.body)) ||
            (s->u.loop.kind == LOOP_SERIAL && is_reduction_step(s->u.loop.body))) {
            s->u.loop.kind = LOOP_VECTOR;
            s->u.loop.arg = width;
        } else {
            walk(s->u.loop.body, width);
        }
        break;
    default:
        break;
    }
}

bool pass_vectorize(Kernel *k, const TargetInfo *t, Diag *d)
{
    (void)d;
    walk(k->body, t->vector_bits / 32);
    return true;
}
