/* vectorize.c — choose the loops that run in vector lanes.
 *
 * A loop becomes LOOP_VECTOR (width = lanes of f32 in the target's vectors,
 * times 2 or 4 where it stores 16- or 8-bit elements: vector_width) when it
 * is innermost and either
 *   - parallel, with a body of plain stores (iterations are independent), or
 *   - serial, with a body that is one reduction step `acc[0] = acc[0] op e`
 *     (op +, max, min) into a one-element local f32 or i32 accumulator.
 *   - serial, with a body of plain stores of which one is such a reduction
 *     step and the others independent across iterations: each stores its
 *     buffer at one index tuple with a dimension `v + c` (c free of v) and
 *     every load of that buffer in the body is at the same tuple (what
 *     pass_fuse makes of an elementwise loop fused into a reduction).
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

static bool same_tuple(Expr *const *a, Expr *const *b, int rank)
{
    for (int d = 0; d < rank; d++)
        if (!ir_expr_equal(a[d], b[d]))
            return false;
    return true;
}

/* A store of a serial loop over v that no other iteration sees. */
static bool private_store(const Stmt *body, const Stmt *st, const Var *v)
{
    const Buffer *b = st->u.store.buf;
    bool moves = false;
    for (int d = 0; d < b->rank; d++)
        moves |= ir_var_plus(st->u.store.idx[d], v);
    if (!moves)
        return false;
    for (int i = 0; i < body->u.seq.n; i++) {
        const Stmt *t = body->u.seq.items[i];
        if (t->u.store.buf == b && !same_tuple(t->u.store.idx, st->u.store.idx, b->rank))
            return false;
        for (int d = 0; d < t->u.store.buf->rank; d++)
            if (!ir_loads_only_at(t->u.store.idx[d], b, st->u.store.idx))
                return false;
        if (!ir_loads_only_at(t->u.store.value, b, st->u.store.idx))
            return false;
    }
    return true;
}

/* The third shape at the top: private stores and one reduction step. */
static bool is_fused_reduction(const Stmt *loop)
{
    const Stmt *body = loop->u.loop.body;
    if (body->op != ST_SEQ || !is_innermost(body))
        return false;
    int steps = 0;
    for (int i = 0; i < body->u.seq.n; i++) {
        const Stmt *st = body->u.seq.items[i];
        if (ir_reduction_step(st, NULL)) {
            steps++;
            for (int j = 0; j < body->u.seq.n; j++) /* no one else touches the accumulator */
                if (j != i && (body->u.seq.items[j]->u.store.buf == st->u.store.buf ||
                               ir_loads_from(body->u.seq.items[j]->u.store.value, st->u.store.buf)))
                    return false;
        } else if (!private_store(body, st, loop->u.loop.var)) {
            return false;
        }
    }
    return steps == 1;
}

/* The fewest bytes an element stored by the loop's body takes (4 when
 * none is narrower than f32). */
static int narrowest_store(const Stmt *s)
{
    if (s->op == ST_SEQ) {
        int n = 4;
        for (int i = 0; i < s->u.seq.n; i++) {
            int m = narrowest_store(s->u.seq.items[i]);
            n = m < n ? m : n;
        }
        return n;
    }
    if (s->op != ST_STORE)
        return 4;
    int bits = dt_bits(s->u.store.buf->dtype);
    return bits >= 32 ? 4 : bits >= 16 ? 2 : 1;
}

/* Lanes for a vector loop: the f32 lanes of a register, times how many
 * registers of f32 one register of the narrowest stored element packs
 * (a byte store: 4), so the narrowed values of a step fill whole
 * registers and pack in a few full-width instructions instead of one
 * shuffle chain and a partial store per register; no more lanes than a
 * constant extent needs. */
static int vector_width(const Stmt *loop, int lanes)
{
    int w = lanes * (4 / narrowest_store(loop->u.loop.body));
    int64_t n;
    while (w > lanes && ir_expr_is_const(loop->u.loop.extent, &n) && n < w)
        w /= 2;
    return w;
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
    case ST_ONCE:
        walk(s->u.once.body, width);
        break;
    case ST_FOR:
        if ((s->u.loop.kind == LOOP_PARALLEL && is_innermost(s->u.loop.body)) ||
            (s->u.loop.kind == LOOP_SERIAL && (ir_reduction_step(s->u.loop.body, NULL) || is_fused_reduction(s)))) {
            s->u.loop.kind = LOOP_VECTOR;
            s->u.loop.arg = vector_width(s, width);
        } else {
            walk(s->u.loop.body, width);
        }
        break;
    default:
        break;
    }
}

/* ------------------------------------------------------ guards hoisted */

/* Whether e reads no buffer that `body` writes: its value does not change
 * while body runs (given the same variables). */
static bool unchanged_by(const Expr *e, const Stmt *body)
{
    if (e->op == EX_LOAD) {
        IrUse use = {0};
        ir_buffer_use(body, e->buf, &use);
        if (use.writes)
            return false;
    }
    for (int i = 0; i < e->nargs; i++)
        if (!unchanged_by(e->args[i], body))
            return false;
    return true;
}

static bool reads_nothing(const Expr *e)
{
    if (e->op == EX_LOAD)
        return false;
    for (int i = 0; i < e->nargs; i++)
        if (!reads_nothing(e->args[i]))
            return false;
    return true;
}

/* Whether loop s may read c once before it instead of in every step: c is
 * free of s's variable and the body does not change it; and a c that
 * reads buffers (moe kernels' row counts in `sched`) only where the loop
 * surely runs, else c might be read where the loop would not have. */
static bool invariant_guard(const Stmt *s, const Expr *c)
{
    int64_t trips = 0;
    bool runs = ir_expr_is_const(s->u.loop.extent, &trips) && trips > 0;
    return !ir_mentions_var(c, s->u.loop.var) && (reads_nothing(c) || (runs && unchanged_by(c, s->u.loop.body)));
}

/* s pushed onto seq, a sequence's items one by one: the vector-loop tests
 * read a loop body as one flat sequence of statements. */
static void push_flat(Kernel *k, Stmt *seq, Stmt *s)
{
    if (s->op != ST_SEQ) {
        ir_seq_push(k, seq, s);
        return;
    }
    for (int i = 0; i < s->u.seq.n; i++)
        push_flat(k, seq, s->u.seq.items[i]);
}

/* The one invariant guard `if c { ... }` (no else) that loop s's body is,
 * adjacent guards on equal conditions merged into it; NULL if none. */
static Stmt *sole_guard(Kernel *k, const Stmt *s)
{
    Stmt *body = s->u.loop.body;
    int n = body->op == ST_SEQ ? body->u.seq.n : 1;
    Stmt *const *items = body->op == ST_SEQ ? body->u.seq.items : &body;
    for (int i = 0; i < n; i++)
        if (items[i]->op != ST_IF || items[i]->u.if_.else_ ||
            !ir_expr_equal(items[i]->u.if_.cond, items[0]->u.if_.cond))
            return NULL;
    if (!invariant_guard(s, items[0]->u.if_.cond))
        return NULL;
    if (n == 1)
        return items[0];
    Stmt *then_ = ir_seq(k, items[0]->loc);
    for (int i = 0; i < n; i++)
        push_flat(k, then_, items[i]->u.if_.then_);
    return ir_if(k, items[0]->u.if_.cond, then_, NULL, items[0]->loc);
}

/* `for v { if c { S } }` with c invariant becomes `if c { for v { S } }`,
 * from the inside out, so a guard rises through every loop it does not
 * depend on: rope's `t < M` around each element (the spec's T.if_ in the
 * nest over a row) then stands outside the loops over the row, whose
 * innermost loop can run in vector lanes. */
static Stmt *hoist_guards(Kernel *k, Stmt *s)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            s->u.seq.items[i] = hoist_guards(k, s->u.seq.items[i]);
        return s;
    case ST_IF:
        s->u.if_.then_ = hoist_guards(k, s->u.if_.then_);
        if (s->u.if_.else_)
            s->u.if_.else_ = hoist_guards(k, s->u.if_.else_);
        return s;
    case ST_ONCE:
        s->u.once.body = hoist_guards(k, s->u.once.body);
        return s;
    case ST_FOR: {
        s->u.loop.body = hoist_guards(k, s->u.loop.body);
        Stmt *g = sole_guard(k, s);
        if (!g)
            return s;
        s->u.loop.body = g->u.if_.then_;
        Stmt *then_ = ir_seq(k, s->loc);
        ir_seq_push(k, then_, s);
        return ir_if(k, g->u.if_.cond, then_, NULL, g->loc);
    }
    default: return s;
    }
}

bool pass_vectorize(Kernel *k, const TargetInfo *t, Diag *d)
{
    (void)d;
    k->body = hoist_guards(k, k->body);
    walk(k->body, t->vector_bits / 32);
    return true;
}
