/* stages.c — multi-stage buffering of `pipelined` loops on GPU targets
 * (Tile IR, before lowering).
 *
 *   for k: pipelined(S) < n { copy G(k) -> X; ...; REST(k, X, ...) }
 *
 * where the copies at the top of the body move global windows into whole
 * scratch buffers that nothing else in the kernel writes and only REST
 * reads, becomes, with X_0 .. X_{S-1} S copies of each such buffer,
 *
 *   for s < S-1:   if s < n { copy async G(s) -> X_s ... }   async_commit
 *   for kb < ceil(n / S) {
 *     for u < S (unrolled here), k = kb S + u:
 *       if k < n {
 *         async_wait S-2     -- tile k has landed (every thread's part of
 *                               it: the wait is a barrier), and every thread
 *                               is done with tile k-1, whose buffers are next
 *         if k+S-1 < n { copy async G(k+S-1) -> X_{(u+S-1) % S} ... }
 *         async_commit
 *         REST(k, X_u, ...)
 *       }
 *   }
 *
 * so tiles k+1 .. k+S-1 stream in while tile k is computed on, with one
 * barrier per step.  On sm_90a, where REST's product on the staged tiles
 * runs as asynchronous wgmma (see refill_last), the copies of step k go
 * after REST(k) instead: they refill the buffers of tile k-1, whose group
 * pass_wgwait retires (wgmma_wait 1 and a barrier) while tile k's runs on.  The body is repeated S times because the buffers of a
 * step are fixed in each copy.  A copy that changes dtype (e4m3 into bf16,
 * say) cannot be asynchronous: it runs synchronously in the same place, and
 * a loop with no other copies is left alone (on a CPU, `lower` gives the
 * same loop prefetches of the next step instead).
 * S shrinks until the buffers fit the target's shared memory; below two
 * stages the loop is left alone. */
#include "passes/passes.h"

#include <stdio.h>
#include <string.h>

enum { MAX_STAGED = 8, MAX_STAGES = 4 };

/* Bytes of b in shared memory, with room for the row padding pass_threads
 * may add to tensor-core operands (or, on sm_90a, the 1024-byte alignment
 * of a wgmma operand instead). */
static int64_t shared_bytes(const TargetInfo *t, const Buffer *b)
{
    int64_t n = 1, rows = 1, dim;
    for (int d = 0; d < b->rank; d++) {
        ir_expr_is_const(b->shape[d], &dim);
        n *= dim;
        if (d < b->rank - 1)
            rows *= dim;
    }
    int64_t pad = 16 * rows;
    if (t->gpu_sm >= 90 && b->rank == 2 && pad < 1024)
        pad = 1024;
    return (int64_t)dt_storage_bytes(b->dtype, n) + pad;
}

typedef struct Stage {
    Kernel *k;
    const TargetInfo *t;
    Stmt *loop;           /* the pipelined loop */
    int ncopies;          /* the leading copies that are staged */
    Buffer *buf[MAX_STAGED][MAX_STAGES]; /* [copy][stage]: stage 0 is the original */
    int S;
    bool refill_last; /* issue a step's copies after its REST (sm_90a) */
} Stage;

/* Is the i-th statement of the loop's body a copy that can be staged? */
static bool stageable(const Kernel *k, const Stmt *loop, const Stmt *c)
{
    if (c->op != ST_COPY || c->u.copy.src.buf->scope != SCOPE_GLOBAL || c->u.copy.dst.buf->scope == SCOPE_GLOBAL ||
        !ir_region_is_whole(&c->u.copy.dst))
        return false;
    for (int d = 0; d < c->u.copy.src.buf->rank; d++)
        if (ir_loads_any(c->u.copy.src.off[d]))
            return false;
    const Buffer *x = c->u.copy.dst.buf;
    IrUse all = {0}, inside = {0};
    ir_buffer_use(k->body, x, &all);
    ir_buffer_use(loop->u.loop.body, x, &inside);
    return all.writes == 1 && inside.writes == 1 && all.reads == inside.reads;
}

/* The most stages (up to the loop's) whose buffers fit in shared memory. */
static int fit_stages(Stage *st, int want)
{
    int64_t base = 0, staged = 0;
    for (int i = st->k->nargs; i < st->k->nbufs; i++)
        if (st->k->bufs[i]->scope == SCOPE_SHARED)
            base += shared_bytes(st->t, st->k->bufs[i]);
    const Stmt *body = st->loop->u.loop.body;
    for (int i = 0; i < st->ncopies; i++) {
        const Buffer *x = body->u.seq.items[i]->u.copy.dst.buf;
        staged += shared_bytes(st->t, x);
        if (x->scope != SCOPE_SHARED)
            base += shared_bytes(st->t, x);
    }
    int S = want > MAX_STAGES ? MAX_STAGES : want;
    while (S >= 2 && base + (S - 1) * staged > st->t->max_shared_bytes)
        S--;
    return S;
}

static Buffer *stage_buffer(Kernel *k, const Buffer *x, int s)
{
    char name[64];
    int extra = 0;
    do
        snprintf(name, sizeof name, extra ? "%s_%d_%d" : "%s_%d", x->name, s, extra);
    while (ir_buf_find(k, name) && ++extra);
    int64_t shape[IR_MAX_RANK];
    for (int d = 0; d < x->rank; d++)
        ir_expr_is_const(x->shape[d], &shape[d]);
    return ir_buf_add(k, name, x->scope, x->dtype, x->rank, shape, x->loc);
}

static Expr *ci(Stage *st, int64_t v) { return ir_const_i(st->k, v); }

/* A fresh copy of e (passes may rewrite expressions in place: no sharing). */
static Expr *dup(Stage *st, const Expr *e) { return ir_clone_expr(st->k, e, &(IrSubst){0}); }

/* The substitution for step k (an expression) on the buffers of stage s. */
static IrSubst step_subst(Stage *st, Expr *k, int s)
{
    IrSubst sub = {.nvars = 1};
    sub.var[0] = st->loop->u.loop.var;
    sub.by[0] = k;
    const Stmt *body = st->loop->u.loop.body;
    for (int i = 0; i < st->ncopies; i++) {
        sub.from[sub.nbufs] = body->u.seq.items[i]->u.copy.dst.buf;
        sub.to[sub.nbufs++] = st->buf[i][s];
    }
    return sub;
}

/* if cond { seq }, or just seq (or nothing) when cond is a constant. */
static Stmt *guard(Stage *st, Expr *cond, Stmt *seq)
{
    if (cond->op != EX_CONST)
        return ir_if(st->k, cond, seq, NULL, st->loop->loc);
    return cond->imm.i ? seq : ir_seq(st->k, st->loop->loc);
}

/* if k < n { the staged copies of step k into stage s } */
static Stmt *issue(Stage *st, Expr *k, int s)
{
    const Stmt *body = st->loop->u.loop.body;
    IrSubst sub = step_subst(st, k, s);
    Stmt *seq = ir_seq(st->k, st->loop->loc);
    for (int i = 0; i < st->ncopies; i++) {
        Stmt *c = ir_clone_stmt(st->k, body->u.seq.items[i], &sub);
        c->u.copy.async = c->u.copy.src.buf->dtype == c->u.copy.dst.buf->dtype;
        ir_seq_push(st->k, seq, c);
    }
    Expr *n = dup(st, st->loop->u.loop.extent);
    return guard(st, ir_binary(st->k, EX_LT, dup(st, k), n), seq);
}

/* The rest of the body for step k on the buffers of stage s. */
static Stmt *rest(Stage *st, Expr *k, int s)
{
    const Stmt *body = st->loop->u.loop.body;
    IrSubst sub = step_subst(st, k, s);
    Stmt *seq = ir_seq(st->k, st->loop->loc);
    for (int i = st->ncopies; i < body->u.seq.n; i++)
        ir_seq_push(st->k, seq, ir_clone_stmt(st->k, body->u.seq.items[i], &sub));
    return seq;
}

static bool staged(const Stage *st, const Buffer *b)
{
    for (int i = 0; i < st->ncopies; i++)
        if (st->buf[i][0] == b)
            return true;
    return false;
}

/* Does REST hold a product that may run as wgmma on staged tiles (K-major
 * A and B, the shape pass_threads takes)?  Then the step's group can stay
 * in flight across the next step's wait, if the next step's copies do not
 * overwrite its tiles: they must refill the tiles of the step before.  (A
 * guess at Tile IR: if threads picks mma.sync after all, the order only
 * costs some overlap of copies with the synchronous product.) */
static bool wgmma_rest(const Stage *st)
{
    const Stmt *body = st->loop->u.loop.body;
    if (st->t->gpu_sm < 90)
        return false;
    for (int i = st->ncopies; i < body->u.seq.n; i++) {
        const Stmt *g = body->u.seq.items[i];
        if (g->op == ST_GEMM && g->u.gemm.trans_b && !g->u.gemm.trans_a && staged(st, g->u.gemm.a.buf) &&
            staged(st, g->u.gemm.b.buf))
            return true;
    }
    return false;
}

static Stmt *staged_loop(Stage *st)
{
    Kernel *k = st->k;
    SrcLoc loc = st->loop->loc;
    int S = st->S;
    Stmt *out = ir_seq(k, loc);
    for (int s = 0; s < S - 1; s++) {
        ir_seq_push(k, out, issue(st, ci(st, s), s));
        ir_seq_push(k, out, ir_async_commit(k, loc));
    }
    Var *kb = ir_var_new(k, "kb");
    Stmt *body = ir_seq(k, loc);
    for (int u = 0; u < S; u++) {
        Expr *step = ir_binary(k, EX_ADD, ir_binary(k, EX_MUL, ir_var(k, kb), ci(st, S)), ci(st, u));
        Stmt *seq = ir_seq(k, loc);
        ir_seq_push(k, seq, ir_async_wait(k, S - 2, loc));
        if (st->refill_last)
            ir_seq_push(k, seq, rest(st, step, u));
        ir_seq_push(k, seq, issue(st, ir_binary(k, EX_ADD, dup(st, step), ci(st, S - 1)), (u + S - 1) % S));
        ir_seq_push(k, seq, ir_async_commit(k, loc));
        if (!st->refill_last)
            ir_seq_push(k, seq, rest(st, step, u));
        ir_seq_push(k, body, guard(st, ir_binary(k, EX_LT, dup(st, step), dup(st, st->loop->u.loop.extent)), seq));
    }
    Expr *n = dup(st, st->loop->u.loop.extent);
    Expr *steps = ir_binary(k, EX_DIV, ir_binary(k, EX_ADD, n, ci(st, S - 1)), ci(st, S));
    ir_seq_push(k, out, ir_for(k, kb, steps, LOOP_SERIAL, 0, body, loc));
    return out;
}

/* Stage the loop if it qualifies; the replacement, or s itself. */
static Stmt *try_stage(Kernel *k, const TargetInfo *t, Stmt *s)
{
    Stmt *body = s->u.loop.body;
    if (s->u.loop.kind != LOOP_PIPELINED || s->u.loop.arg < 2 || body->op != ST_SEQ)
        return s;
    Stage st = {.k = k, .t = t, .loop = s};
    while (st.ncopies < body->u.seq.n && st.ncopies < MAX_STAGED &&
           stageable(k, s, body->u.seq.items[st.ncopies]))
        st.ncopies++;
    /* Without one copy that can be asynchronous (fp8_gemm's, say, all widen
     * e4m3 into bf16) the stages would only cost shared memory. */
    bool any_async = false;
    for (int i = 0; i < st.ncopies; i++) {
        const Stmt *c = body->u.seq.items[i];
        any_async |= c->u.copy.src.buf->dtype == c->u.copy.dst.buf->dtype;
    }
    if (!any_async)
        return s;
    st.S = fit_stages(&st, s->u.loop.arg);
    if (st.S < 2)
        return s;
    for (int i = 0; i < st.ncopies; i++) {
        Buffer *x = body->u.seq.items[i]->u.copy.dst.buf;
        st.buf[i][0] = x;
        for (int j = 1; j < st.S; j++)
            st.buf[i][j] = stage_buffer(k, x, j);
    }
    st.refill_last = wgmma_rest(&st);
    return staged_loop(&st);
}

static Stmt *walk(Kernel *k, const TargetInfo *t, Stmt *s)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            s->u.seq.items[i] = walk(k, t, s->u.seq.items[i]);
        return s;
    case ST_FOR:
        s->u.loop.body = walk(k, t, s->u.loop.body);
        return try_stage(k, t, s);
    case ST_IF:
        s->u.if_.then_ = walk(k, t, s->u.if_.then_);
        if (s->u.if_.else_)
            s->u.if_.else_ = walk(k, t, s->u.if_.else_);
        return s;
    default: return s;
    }
}

bool pass_stages(Kernel *k, const TargetInfo *t, Diag *d)
{
    (void)d;
    if (k->level == LEVEL_TILE)
        k->body = walk(k, t, k->body);
    return true;
}
