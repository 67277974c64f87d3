/* clone.c — deep copies of expressions and statements with variables and
 * buffers substituted (see IrSubst in ir.h). */
#include "ir/ir.h"

#include <string.h>

static Buffer *map_buf(const IrSubst *sub, Buffer *b)
{
    for (int i = 0; i < sub->nbufs; i++)
        if (sub->from[i] == b)
            return sub->to[i];
    return b;
}

static Param *map_param(const IrSubst *sub, Param *p)
{
    for (int i = 0; i < sub->nparams; i++)
        if (sub->pfrom[i] == p)
            return sub->pto[i];
    return p;
}

Expr *ir_clone_expr(Kernel *k, const Expr *e, const IrSubst *sub)
{
    if (e->op == EX_VAR)
        for (int i = 0; i < sub->nvars; i++)
            if (sub->var[i] == e->var)
                return ir_clone_expr(k, sub->by[i], &(IrSubst){0});
    if (e->nargs == 2 && e->op != EX_LOAD) /* rebuilt: constants fold again (0 * 32 -> 0) */
        return ir_binary(k, e->op, ir_clone_expr(k, e->args[0], sub), ir_clone_expr(k, e->args[1], sub));
    Expr *c = arena_alloc(k->arena, sizeof *c);
    *c = *e;
    if (e->nargs) {
        c->args = arena_alloc(k->arena, (size_t)e->nargs * sizeof *c->args);
        for (int i = 0; i < e->nargs; i++)
            c->args[i] = ir_clone_expr(k, e->args[i], sub);
    }
    if (e->op == EX_LOAD)
        c->buf = map_buf(sub, e->buf);
    if (e->op == EX_PARAM)
        c->param = map_param(sub, e->param);
    return c;
}

static Region clone_region(Kernel *k, const Region *r, const IrSubst *sub)
{
    Region c = *r;
    c.buf = map_buf(sub, r->buf);
    for (int d = 0; d < r->buf->rank; d++)
        c.off[d] = ir_clone_expr(k, r->off[d], sub);
    return c;
}

/* A loop's copy: a fresh variable of the same name, which the body's copy
 * reads in place of the old one. */
static Stmt *clone_for(Kernel *k, const Stmt *s, const IrSubst *sub)
{
    Var *v = ir_var_new(k, s->u.loop.var->name);
    IrSubst inner = *sub;
    if (inner.nvars < (int)(sizeof inner.var / sizeof inner.var[0])) {
        inner.var[inner.nvars] = s->u.loop.var;
        inner.by[inner.nvars++] = ir_var(k, v);
    }
    Stmt *body = ir_clone_stmt(k, s->u.loop.body, &inner);
    return ir_for(k, v, ir_clone_expr(k, s->u.loop.extent, sub), s->u.loop.kind, s->u.loop.arg, body, s->loc);
}

Stmt *ir_clone_stmt(Kernel *k, const Stmt *s, const IrSubst *sub)
{
    if (!s)
        return NULL;
    Stmt *c;
    switch (s->op) {
    case ST_SEQ:
        c = ir_seq(k, s->loc);
        for (int i = 0; i < s->u.seq.n; i++)
            ir_seq_push(k, c, ir_clone_stmt(k, s->u.seq.items[i], sub));
        return c;
    case ST_FOR: return clone_for(k, s, sub);
    case ST_IF:
        return ir_if(k, ir_clone_expr(k, s->u.if_.cond, sub), ir_clone_stmt(k, s->u.if_.then_, sub),
                     ir_clone_stmt(k, s->u.if_.else_, sub), s->loc);
    case ST_ONCE:
        return ir_once(k, ir_clone_expr(k, s->u.once.key, sub), ir_clone_stmt(k, s->u.once.body, sub), s->loc);
    case ST_STORE: {
        Buffer *b = map_buf(sub, s->u.store.buf);
        Expr *idx[IR_MAX_RANK];
        for (int d = 0; d < b->rank; d++)
            idx[d] = ir_clone_expr(k, s->u.store.idx[d], sub);
        c = ir_store(k, b, idx, ir_clone_expr(k, s->u.store.value, sub), s->loc);
        c->u.store.atomic = s->u.store.atomic;
        c->u.store.async = s->u.store.async;
        c->u.store.stream = s->u.store.stream;
        return c;
    }
    case ST_PREFETCH: {
        Buffer *b = map_buf(sub, s->u.store.buf);
        Expr *idx[IR_MAX_RANK];
        for (int d = 0; d < b->rank; d++)
            idx[d] = ir_clone_expr(k, s->u.store.idx[d], sub);
        return ir_prefetch(k, b, idx, s->loc);
    }
    default: break;
    }
    c = arena_alloc(k->arena, sizeof *c);
    *c = *s;
    switch (s->op) {
    case ST_COPY:
    case ST_ATOMIC_ADD:
        c->u.copy.src = clone_region(k, &s->u.copy.src, sub);
        c->u.copy.dst = clone_region(k, &s->u.copy.dst, sub);
        break;
    case ST_FILL:
        c->u.fill.dst = clone_region(k, &s->u.fill.dst, sub);
        c->u.fill.value = ir_clone_expr(k, s->u.fill.value, sub);
        break;
    case ST_GEMM:
    case ST_MICRO_GEMM:
        c->u.gemm.a = clone_region(k, &s->u.gemm.a, sub);
        c->u.gemm.b = clone_region(k, &s->u.gemm.b, sub);
        c->u.gemm.c = clone_region(k, &s->u.gemm.c, sub);
        if (s->u.gemm.a_scale.buf)
            c->u.gemm.a_scale = clone_region(k, &s->u.gemm.a_scale, sub);
        if (s->u.gemm.b_scale.buf)
            c->u.gemm.b_scale = clone_region(k, &s->u.gemm.b_scale, sub);
        if (s->u.gemm.rows)
            c->u.gemm.rows = ir_clone_expr(k, s->u.gemm.rows, sub);
        if (s->u.gemm.cols)
            c->u.gemm.cols = ir_clone_expr(k, s->u.gemm.cols, sub);
        if (s->u.gemm.desc) {
            c->u.gemm.desc = arena_alloc(k->arena, (size_t)s->u.gemm.ndesc * sizeof *c->u.gemm.desc);
            for (int i = 0; i < s->u.gemm.ndesc; i++)
                c->u.gemm.desc[i] = ir_clone_expr(k, s->u.gemm.desc[i], sub);
        }
        break;
    case ST_REDUCE:
        c->u.reduce.src = clone_region(k, &s->u.reduce.src, sub);
        c->u.reduce.dst = clone_region(k, &s->u.reduce.dst, sub);
        break;
    case ST_TMA_LOAD:
        c->u.mbar.src = clone_region(k, &s->u.mbar.src, sub);
        c->u.mbar.dst = clone_region(k, &s->u.mbar.dst, sub);
        /* fall through */
    case ST_MBAR_INIT:
    case ST_MBAR_EXPECT:
    case ST_MBAR_WAIT:
        c->u.mbar.bar = map_buf(sub, s->u.mbar.bar);
        c->u.mbar.slot = ir_clone_expr(k, s->u.mbar.slot, sub);
        if (s->u.mbar.arg)
            c->u.mbar.arg = ir_clone_expr(k, s->u.mbar.arg, sub);
        break;
    default: break; /* BARRIER, ASYNC_COMMIT, ASYNC_WAIT: nothing to copy */
    }
    return c;
}
