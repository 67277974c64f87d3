/* hoist.c — staging shared by consecutive blocks is done once for them (CPU).
 *
 * A thread runs its blocks in order, the grid's last dimension fastest.
 * A staging nest (lower's widened, lifted copy of a GEMM's A rows, say)
 * whose values depend on none of the fastest grid variables computes the
 * same scratch in each of a run of blocks: fp8_gemm at 16 rows over N =
 * 4096 in blocks of 16 widens every A row 256 times, a fifth of its time.
 * This pass moves such a nest out of the step loop (or the block's top
 * level) into `once KEY { for k' { nest } }` at the loop's place (ir.h):
 * KEY is the linear index of the grid variables the nest reads, and its
 * scratch gains a leading block per step — X[i, ..] becomes
 * X[k·R + i, ..] (R: X's first extent), one contiguous step after
 * another — so the blocks after the first read what it staged.
 *
 * A nest qualifies when
 *   - it is a perfect nest of constant extents storing every element of
 *     one scratch buffer X once, at its own loop variables in order (what
 *     it leaves in X does not depend on what X held) — or an if whose two
 *     arms both are, for the same X (a window test's two copies), its
 *     condition as below;
 *   - it sits in a step loop (serial or pipelined, constant extent) at the
 *     block's top level, or at the top level itself, under ifs whose
 *     conditions read no buffer and depend on neither the step nor any
 *     loop (a window test: the same for every step of the block);
 *   - its values load only read-only arguments (nothing in the kernel
 *     writes them) and use only its own loop variables, the step, grid
 *     variables and parameters;
 *   - the grid variables it and its conditions use are the slowest grid
 *     dimensions (those of extent 1 aside), not all of them: consecutive
 *     blocks then share KEY;
 *   - nothing else writes X, and X is read only after the nest in its own
 *     sequence (as before, those reads see this step's values);
 *   - X, grown by the step count, fits the target's L2.
 * A step loop's prefetches of a buffer only the nest read go with it. */
#include "passes/passes.h"

#include <stdlib.h>
#include <string.h>

typedef struct Hoist {
    Kernel *k;
    const TargetInfo *t;
    Stmt *loop;                      /* the step loop, NULL at the block's top level */
    const Stmt *conds[8];            /* the ifs around the nest, outermost first */
    bool in_else[8];                 /* the nest lies in that if's else arm */
    int nconds;
    bool grid_used[IR_MAX_GRID];
    Buffer *x;                       /* the staged scratch */
    Expr *rows;                      /* its first extent, R */
} Hoist;

/* ------------------------------------------------------------ the tests */

static int grid_dim(const Kernel *k, const Var *v)
{
    for (int g = 0; g < k->ngrid; g++)
        if (k->grid_var[g] == v)
            return g;
    return -1;
}

/* Does e use only the nest's variables (vars[0..n)), the step, grid
 * variables (noted) and parameters, and load only read-only arguments? */
static bool invariant_expr(Hoist *H, const Expr *e, Var *const *vars, int n)
{
    if (e->op == EX_VAR) {
        int g = grid_dim(H->k, e->var);
        if (g >= 0) {
            H->grid_used[g] = true;
            return true;
        }
        if (H->loop && e->var == H->loop->u.loop.var)
            return true;
        for (int i = 0; i < n; i++)
            if (vars[i] == e->var)
                return true;
        return false;
    }
    if (e->op == EX_LOAD) {
        IrUse u = {0};
        ir_buffer_use(H->k->body, e->buf, &u);
        if (e->buf->scope != SCOPE_GLOBAL || e->buf->dir != ARG_IN || u.writes)
            return false;
    }
    for (int i = 0; i < e->nargs; i++)
        if (!invariant_expr(H, e->args[i], vars, n))
            return false;
    return true;
}

/* The store of a perfect nest of constant extents writing each element
 * of one scratch buffer at its loop variables in order (vars: the nest's,
 * outermost first); NULL if s is not such a nest. */
static Stmt *staging_store(Stmt *s, Var **vars, int *nvars)
{
    int n = 0;
    int64_t ext[IR_MAX_RANK];
    while (s->op == ST_FOR || (s->op == ST_SEQ && s->u.seq.n == 1)) {
        if (s->op == ST_SEQ) {
            s = s->u.seq.items[0];
            continue;
        }
        if (n == IR_MAX_RANK || !ir_expr_is_const(s->u.loop.extent, &ext[n]) ||
            (s->u.loop.kind != LOOP_SERIAL && s->u.loop.kind != LOOP_PARALLEL))
            return NULL;
        vars[n++] = s->u.loop.var;
        s = s->u.loop.body;
    }
    if (s->op != ST_STORE || s->u.store.atomic || s->u.store.async)
        return NULL;
    const Buffer *x = s->u.store.buf;
    if (x->scope == SCOPE_GLOBAL || x->rank != n)
        return NULL;
    for (int d = 0; d < n; d++) {
        int64_t want;
        const Expr *i = s->u.store.idx[d];
        int64_t zero;
        bool at_var = i->op == EX_VAR && i->var == vars[d];
        bool folded = ext[d] == 1 && ir_expr_is_const(i, &zero) && zero == 0; /* a loop of one, its variable 0 */
        if (!(at_var || folded) || !ir_expr_is_const(x->shape[d], &want) || want != ext[d])
            return NULL;
    }
    *nvars = n;
    return s;
}

/* The grid variables used are the slowest dimensions of extent other
 * than 1, and some such dimension is not used. */
static bool shared_by_a_run(const Hoist *H)
{
    bool unused_slower = false;
    for (int g = 0; g < H->k->ngrid; g++) {
        int64_t e;
        bool one = ir_expr_is_const(H->k->grid[g], &e) && e == 1;
        if (H->grid_used[g] && !one && unused_slower)
            return false;
        unused_slower |= !H->grid_used[g] && !one;
    }
    return unused_slower;
}

static int64_t steps(const Hoist *H)
{
    int64_t n = 1;
    if (H->loop)
        ir_expr_is_const(H->loop->u.loop.extent, &n);
    return n;
}

/* A condition the same for every step of a block: invariant, and free
 * of the step. */
static bool invariant_cond(Hoist *H, const Expr *cond)
{
    return invariant_expr(H, cond, NULL, 0) && !(H->loop && ir_mentions_var(cond, H->loop->u.loop.var));
}

/* The buffer s stores every element of, whichever way it goes — a staging
 * nest, or an if on an invariant condition whose arms both stage the same
 * buffer (a row-count variant's copy, say) — its values invariant; NULL if
 * none. */
static Buffer *staged_by(Hoist *H, const Stmt *s)
{
    if (s->op == ST_IF) {
        if (!s->u.if_.else_ || !invariant_cond(H, s->u.if_.cond))
            return NULL;
        Buffer *x = staged_by(H, s->u.if_.then_);
        return x && staged_by(H, s->u.if_.else_) == x ? x : NULL;
    }
    Var *vars[IR_MAX_RANK];
    int n;
    Stmt *st = staging_store((Stmt *)s, vars, &n);
    if (!st)
        return NULL;
    for (int d = 0; d < n; d++)
        if (!invariant_expr(H, st->u.store.idx[d], vars, n))
            return NULL;
    return invariant_expr(H, st->u.store.value, vars, n) ? st->u.store.buf : NULL;
}

/* Is item i of seq one to hoist (the ifs around it in H)? */
static bool qualifies(Hoist *H, Stmt *seq, int i)
{
    const Stmt *s = seq->u.seq.items[i];
    memset(H->grid_used, 0, sizeof H->grid_used);
    Buffer *x = staged_by(H, s);
    if (!x)
        return false;
    for (int c = 0; c < H->nconds; c++)
        if (!invariant_cond(H, H->conds[c]->u.if_.cond))
            return false;
    if (!shared_by_a_run(H))
        return false;
    IrUse all = {0}, mine = {0}, after = {0};
    ir_buffer_use(H->k->body, x, &all);
    ir_buffer_use(s, x, &mine);
    for (int j = i + 1; j < seq->u.seq.n; j++)
        ir_buffer_use(seq->u.seq.items[j], x, &after);
    if (all.writes != mine.writes || all.reads != after.reads)
        return false;
    int64_t rows;
    if (!ir_expr_is_const(x->shape[0], &rows) ||
        (double)dt_storage_bytes(x->dtype, ir_buf_span(x)) * (double)steps(H) > (double)H->t->l2_bytes)
        return false;
    H->x = x;
    H->rows = ir_const_i(H->k, rows);
    return true;
}

/* ------------------------------------------------------------ the moves */

/* X[i, ..] → X[step·R + i, ..]; e itself when it holds no load of X (an
 * expression may be shared). */
static Expr *rebase_expr(Hoist *H, Expr *e, Expr *step)
{
    Expr *args[IR_MAX_RANK > 3 ? IR_MAX_RANK : 3];
    Expr **a = e->nargs <= (int)(sizeof args / sizeof args[0]) ? args
                                                              : arena_alloc(H->k->arena, sizeof(Expr *) * e->nargs);
    bool changed = false;
    for (int i = 0; i < e->nargs; i++) {
        a[i] = rebase_expr(H, e->args[i], step);
        changed |= a[i] != e->args[i];
    }
    if (e->op == EX_LOAD && e->buf == H->x) {
        a[0] = ir_binary(H->k, EX_ADD, ir_binary(H->k, EX_MUL, step, H->rows), a[0]);
        changed = true;
    }
    if (!changed)
        return e;
    Expr *c = arena_alloc(H->k->arena, sizeof *c);
    *c = *e;
    c->args = arena_alloc(H->k->arena, sizeof(Expr *) * e->nargs);
    memcpy(c->args, a, sizeof(Expr *) * e->nargs);
    return c;
}

static void rebase_region(Hoist *H, Region *r, Expr *step)
{
    if (!r->buf)
        return;
    for (int d = 0; d < r->buf->rank; d++)
        r->off[d] = rebase_expr(H, r->off[d], step);
    if (r->buf == H->x)
        r->off[0] = ir_binary(H->k, EX_ADD, ir_binary(H->k, EX_MUL, step, H->rows), r->off[0]);
}

/* Every access of X in s (Loop IR) moves to step's block. */
static void rebase(Hoist *H, Stmt *s, Expr *step)
{
    if (!s)
        return;
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            rebase(H, s->u.seq.items[i], step);
        break;
    case ST_FOR:
        s->u.loop.extent = rebase_expr(H, s->u.loop.extent, step);
        rebase(H, s->u.loop.body, step);
        break;
    case ST_IF:
        s->u.if_.cond = rebase_expr(H, s->u.if_.cond, step);
        rebase(H, s->u.if_.then_, step);
        rebase(H, s->u.if_.else_, step);
        break;
    case ST_ONCE:
        s->u.once.key = rebase_expr(H, s->u.once.key, step);
        rebase(H, s->u.once.body, step);
        break;
    case ST_STORE:
    case ST_PREFETCH: {
        Buffer *b = s->u.store.buf;
        for (int d = 0; d < b->rank; d++)
            s->u.store.idx[d] = rebase_expr(H, s->u.store.idx[d], step);
        if (s->op == ST_STORE)
            s->u.store.value = rebase_expr(H, s->u.store.value, step);
        if (b == H->x)
            s->u.store.idx[0] = ir_binary(H->k, EX_ADD, ir_binary(H->k, EX_MUL, step, H->rows), s->u.store.idx[0]);
        break;
    }
    case ST_MICRO_GEMM:
        rebase_region(H, &s->u.gemm.a, step);
        rebase_region(H, &s->u.gemm.b, step);
        rebase_region(H, &s->u.gemm.c, step);
        rebase_region(H, &s->u.gemm.a_scale, step);
        rebase_region(H, &s->u.gemm.b_scale, step);
        break;
    default: break; /* (tile ops and GPU statements are not in a CPU's Loop IR) */
    }
}

/* KEY: the used grid variables' linear index (0 with none). */
static Expr *run_key(Hoist *H)
{
    Kernel *k = H->k;
    Expr *key = ir_const_i(k, 0);
    for (int g = 0; g < k->ngrid; g++)
        if (H->grid_used[g])
            key = ir_binary(k, EX_ADD, ir_binary(k, EX_MUL, key, k->grid[g]), ir_var(k, k->grid_var[g]));
    return key;
}

/* Drop the prefetches of buffers the step loop no longer reads (and the
 * loops and ifs left empty). */
static Stmt *drop_prefetches(Hoist *H, Stmt *s)
{
    switch (s->op) {
    case ST_SEQ: {
        int n = 0;
        for (int i = 0; i < s->u.seq.n; i++) {
            Stmt *c = drop_prefetches(H, s->u.seq.items[i]);
            if (c)
                s->u.seq.items[n++] = c;
        }
        s->u.seq.n = n;
        return n ? s : NULL;
    }
    case ST_FOR:
        s->u.loop.body = s->u.loop.body ? drop_prefetches(H, s->u.loop.body) : NULL;
        return s->u.loop.body ? s : NULL;
    case ST_IF:
        s->u.if_.then_ = s->u.if_.then_ ? drop_prefetches(H, s->u.if_.then_) : NULL;
        s->u.if_.else_ = s->u.if_.else_ ? drop_prefetches(H, s->u.if_.else_) : NULL;
        if (!s->u.if_.then_ && !s->u.if_.else_)
            return NULL;
        if (!s->u.if_.then_)
            s->u.if_.then_ = ir_seq(H->k, s->loc);
        return s;
    case ST_PREFETCH: {
        IrUse u = {0};
        ir_buffer_use(H->loop, s->u.store.buf, &u);
        return u.reads ? s : NULL;
    }
    default: return s;
    }
}

/* Move item i of seq (qualifies() said yes) into a once before the step
 * loop (item `at` of the block's body). */
static void hoist(Hoist *H, Stmt *seq, int i, int at)
{
    Kernel *k = H->k;
    Stmt *nest = seq->u.seq.items[i];
    memmove(&seq->u.seq.items[i], &seq->u.seq.items[i + 1], sizeof(Stmt *) * (size_t)(seq->u.seq.n - i - 1));
    seq->u.seq.n--;
    Stmt *staged = nest;
    for (int c = H->nconds - 1; c >= 0; c--) {
        const Stmt *g = H->conds[c];
        Expr *cond = H->in_else[c] ? ir_unary(k, EX_NOT, g->u.if_.cond) : g->u.if_.cond;
        staged = ir_if(k, cond, staged, NULL, g->loc);
    }
    if (H->loop && steps(H) == 1) { /* one step: the nest as it is, at step 0 */
        IrSubst sub = {.var = {H->loop->u.loop.var}, .by = {ir_const_i(k, 0)}, .nvars = 1};
        staged = ir_clone_stmt(k, staged, &sub);
        H->loop->u.loop.body = drop_prefetches(H, H->loop->u.loop.body);
        if (!H->loop->u.loop.body)
            H->loop->u.loop.body = ir_seq(k, H->loop->loc);
    } else if (H->loop) {
        Var *kv = H->loop->u.loop.var, *step = ir_var_new(k, kv->name);
        IrSubst sub = {.var = {kv}, .by = {ir_var(k, step)}, .nvars = 1};
        Stmt *copy = ir_clone_stmt(k, staged, &sub);
        rebase(H, copy, ir_var(k, step));
        staged = ir_for(k, step, H->loop->u.loop.extent, LOOP_SERIAL, 0, copy, nest->loc);
        rebase(H, H->loop->u.loop.body, ir_var(k, kv));
        int64_t n = steps(H);
        H->x->shape[0] = ir_const_i(k, n * H->rows->imm.i);
        H->loop->u.loop.body = drop_prefetches(H, H->loop->u.loop.body);
        if (!H->loop->u.loop.body)
            H->loop->u.loop.body = ir_seq(k, H->loop->loc);
    }
    Stmt *body = k->body;
    ir_seq_push(k, body, ir_once(k, run_key(H), staged, nest->loc));
    Stmt *once = body->u.seq.items[body->u.seq.n - 1];
    memmove(&body->u.seq.items[at + 1], &body->u.seq.items[at], sizeof(Stmt *) * (size_t)(body->u.seq.n - 1 - at));
    body->u.seq.items[at] = once;
}

/* Find a nest to hoist in seq (under H's ifs); true once one moved. */
static bool scan(Hoist *H, Stmt *seq, int at)
{
    for (int i = 0; i < seq->u.seq.n; i++) {
        Stmt *s = seq->u.seq.items[i];
        if ((s->op == ST_FOR || s->op == ST_IF) && qualifies(H, seq, i)) {
            hoist(H, seq, i, at);
            return true;
        }
        if (s->op != ST_IF || H->nconds == (int)(sizeof H->conds / sizeof H->conds[0]))
            continue;
        Stmt *arms[2] = {s->u.if_.then_, s->u.if_.else_};
        for (int a = 0; a < 2; a++) {
            if (!arms[a] || arms[a]->op != ST_SEQ)
                continue;
            H->conds[H->nconds] = s;
            H->in_else[H->nconds++] = a;
            bool moved = scan(H, arms[a], at);
            H->nconds--;
            if (moved)
                return true;
        }
    }
    return false;
}

bool pass_hoist(Kernel *k, const TargetInfo *t, Diag *d)
{
    (void)d;
    if (t->gpu_sm || k->nthreads || k->body->op != ST_SEQ)
        return true;
    Hoist H = {.k = k, .t = t};
    Stmt *body = k->body;
    for (int i = 0; i < body->u.seq.n; i++) { /* nests at the top level stay where they are */
        Stmt *s = body->u.seq.items[i];
        if ((s->op == ST_FOR || s->op == ST_IF) && qualifies(&H, body, i))
            body->u.seq.items[i] = ir_once(k, run_key(&H), s, s->loc);
    }
    for (int i = 0; i < k->body->u.seq.n; i++) {
        Stmt *s = k->body->u.seq.items[i];
        H.loop = s->op == ST_FOR && (s->u.loop.kind == LOOP_SERIAL || s->u.loop.kind == LOOP_PIPELINED) &&
                         ir_expr_is_const(s->u.loop.extent, NULL) && s->u.loop.body->op == ST_SEQ
                     ? s
                     : NULL;
        if (H.loop) {
            while (scan(&H, s->u.loop.body, i))
                i++; /* the loop moved one item down */
        }
    }
    return true;
}
