/* uses.c — where a buffer is read and written (see ir_buffer_use). */
#include "ir/ir.h"

static void use_expr(const Expr *e, const Buffer *b, IrUse *u)
{
    if (e->op == EX_LOAD && e->buf == b)
        u->reads++;
    for (int i = 0; i < e->nargs; i++)
        use_expr(e->args[i], b, u);
}

static void use_region(const Region *r, const Buffer *b, IrUse *u, bool write)
{
    if (r->buf == b)
        *(write ? &u->writes : &u->reads) += 1;
    for (int d = 0; d < r->buf->rank; d++)
        use_expr(r->off[d], b, u);
}

void ir_buffer_use(const Stmt *s, const Buffer *b, IrUse *u)
{
    if (!s)
        return;
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            ir_buffer_use(s->u.seq.items[i], b, u);
        break;
    case ST_FOR:
        use_expr(s->u.loop.extent, b, u);
        ir_buffer_use(s->u.loop.body, b, u);
        break;
    case ST_IF:
        use_expr(s->u.if_.cond, b, u);
        ir_buffer_use(s->u.if_.then_, b, u);
        ir_buffer_use(s->u.if_.else_, b, u);
        break;
    case ST_ONCE:
        use_expr(s->u.once.key, b, u);
        ir_buffer_use(s->u.once.body, b, u);
        break;
    case ST_STORE:
        if (s->u.store.buf == b) {
            u->writes++;
            u->atomics += s->u.store.atomic;
            u->streamed += s->u.store.stream;
        }
        for (int d = 0; d < s->u.store.buf->rank; d++)
            use_expr(s->u.store.idx[d], b, u);
        use_expr(s->u.store.value, b, u);
        break;
    case ST_COPY:
    case ST_ATOMIC_ADD:
        use_region(&s->u.copy.src, b, u, false);
        use_region(&s->u.copy.dst, b, u, true);
        break;
    case ST_FILL:
        use_region(&s->u.fill.dst, b, u, true);
        use_expr(s->u.fill.value, b, u);
        break;
    case ST_GEMM:
    case ST_MICRO_GEMM:
        use_region(&s->u.gemm.a, b, u, false);
        use_region(&s->u.gemm.b, b, u, false);
        use_region(&s->u.gemm.c, b, u, true);
        if (s->u.gemm.a_scale.buf)
            use_region(&s->u.gemm.a_scale, b, u, false);
        if (s->u.gemm.b_scale.buf)
            use_region(&s->u.gemm.b_scale, b, u, false);
        if (s->u.gemm.rows)
            use_expr(s->u.gemm.rows, b, u);
        if (s->u.gemm.cols)
            use_expr(s->u.gemm.cols, b, u);
        break;
    case ST_REDUCE:
        use_region(&s->u.reduce.src, b, u, false);
        use_region(&s->u.reduce.dst, b, u, true);
        break;
    case ST_TMA_LOAD:
        use_region(&s->u.mbar.src, b, u, false);
        use_region(&s->u.mbar.dst, b, u, true);
        /* fall through */
    case ST_MBAR_INIT:
    case ST_MBAR_EXPECT:
    case ST_MBAR_WAIT: /* an mbarrier's state changes under every use */
        if (s->u.mbar.bar == b)
            u->writes++;
        use_expr(s->u.mbar.slot, b, u);
        if (s->u.mbar.arg)
            use_expr(s->u.mbar.arg, b, u);
        break;
    default: break;
    }
}

bool ir_loads_only_at(const Expr *e, const Buffer *b, Expr *const *idx)
{
    if (e->op == EX_LOAD && e->buf == b)
        for (int d = 0; d < b->rank; d++)
            if (!ir_expr_equal(e->args[d], idx[d]))
                return false;
    for (int i = 0; i < e->nargs; i++)
        if (!ir_loads_only_at(e->args[i], b, idx))
            return false;
    return true;
}

bool ir_loads_any(const Expr *e)
{
    if (e->op == EX_LOAD)
        return true;
    for (int i = 0; i < e->nargs; i++)
        if (ir_loads_any(e->args[i]))
            return true;
    return false;
}

bool ir_loads_from(const Expr *e, const Buffer *b)
{
    if (e->op == EX_LOAD && e->buf == b)
        return true;
    for (int i = 0; i < e->nargs; i++)
        if (ir_loads_from(e->args[i], b))
            return true;
    return false;
}

bool ir_mentions_var(const Expr *e, const Var *v)
{
    if (e->op == EX_VAR && e->var == v)
        return true;
    for (int i = 0; i < e->nargs; i++)
        if (ir_mentions_var(e->args[i], v))
            return true;
    return false;
}

bool ir_var_plus(const Expr *e, const Var *v)
{
    if (e->op == EX_VAR)
        return e->var == v;
    if (e->op != EX_ADD)
        return false;
    return (ir_var_plus(e->args[0], v) && !ir_mentions_var(e->args[1], v)) ||
           (ir_var_plus(e->args[1], v) && !ir_mentions_var(e->args[0], v));
}

bool ir_reduction_step(const Stmt *s, ExprOp *op)
{
    while (s->op == ST_SEQ && s->u.seq.n == 1)
        s = s->u.seq.items[0];
    if (s->op != ST_STORE || s->u.store.atomic)
        return false;
    const Buffer *acc = s->u.store.buf;
    const Expr *v = s->u.store.value;
    /* an i32 accumulator is lower's absmax over the bits: integer +, max
     * and min may be reordered freely */
    if (acc->scope != SCOPE_LOCAL || acc->rank != 1 || (acc->dtype != DT_F32 && acc->dtype != DT_I32))
        return false;
    if (v->op != EX_ADD && v->op != EX_MAX && v->op != EX_MIN)
        return false;
    const Expr *lhs = v->args[0], *rhs = v->args[1];
    /* one fixed accumulator element: its index is a constant */
    if (lhs->op != EX_LOAD || lhs->buf != acc || !ir_expr_equal(lhs->args[0], s->u.store.idx[0]) ||
        !ir_expr_is_const(s->u.store.idx[0], NULL) || ir_loads_from(rhs, acc))
        return false;
    if (op)
        *op = v->op;
    return true;
}

void ir_drop_unused_buffers(Kernel *k)
{
    int n = k->nargs;
    for (int i = k->nargs; i < k->nbufs; i++) {
        IrUse u = {0};
        ir_buffer_use(k->body, k->bufs[i], &u);
        if (u.reads || u.writes)
            k->bufs[n++] = k->bufs[i];
    }
    k->nbufs = n;
}
