/* hoist.c — staging shared by consecutive blocks is done once for them (CPU).
 *
 * A thread runs its blocks in order, the grid's last dimension fastest.
 * A staging nest (lower's widened, lifted copy of a GEMM's A rows, say)
 * whose values depend on none of the fastest grid variables computes the
 * same scratch in each of a run of blocks: fp8_gemm at 16 rows over N =
 * 4096 in blocks of 16 widens every A row 256 times, a fifth of its time.
 * This pass moves such a nest into a `once KEY { ... }` (ir.h) placed
 * just before the block's top-level statement that held it, the loops and
 * ifs that were around the nest repeated around it there (a nest at the
 * top level itself is wrapped where it is).  KEY is the linear index of
 * the grid variables it depends on; where a step loop of n steps enclosed
 * it, its scratch gains a block of rows per step — X[i, ..] becomes
 * X[k·R + i, ..] (R: X's first extent), one contiguous step after another
 * — so the blocks after the first read what it staged.
 *
 * A nest qualifies when
 *   - it is a perfect nest of constant extents storing every element of
 *     one scratch buffer X once (what it leaves in X does not depend on
 *     what X held): a store at its own loop variables in order, or
 *     several whose indices are numbers in mixed radix of its variables
 *     (writes_each_once: an e2m1-order copy's block transposed, a store
 *     per row of the block) — or an if whose two arms both are, for the
 *     same X (a window test's two copies);
 *   - the statements around it (from the block's top level) are ifs and
 *     loops (serial or pipelined) of at most one step, and at most one
 *     step loop of a bounded number of steps (a constant, or an extent
 *     whose range is known: an MoE tile's `select(0 < rows, 7, 0)`, its
 *     scratch grown by the most);
 *   - its values, its conditions and those loops' extents load only
 *     read-only arguments and block-derived scratch (below), and use only
 *     its own variables, the enclosing loops', grid variables and
 *     parameters, no condition or extent around it the step's (an if
 *     without an else would leave some steps' blocks unwritten) — but
 *     the nest's own if, both arms staging X, may test the step: a K
 *     tail's window test, `k·BK + BK <= K`, whose copies are staged per
 *     step in the once as they were in the loop (bf16 320 x 768 x 555,
 *     BK 64: A's rows were staged again for each of 12 column blocks);
 *   - the grid variables all that depends on are the slowest dimensions
 *     (those of extent 1 aside), not all of them: consecutive blocks then
 *     share KEY;
 *   - nothing else writes X, and X is read only after the nest in its own
 *     sequence (as before, those reads see this step's values);
 *   - X, grown by the step count, fits twice the target's L2 (HOIST_L2S):
 *     from L3 it still costs less than staging every block again from
 *     memory (bf16 GEMM 4096^3, Zen 5 with 1 MiB of L2, A's 256 rows x
 *     4096 staged: one thread, 326-335 -> 302-314 ms).
 * Block-derived scratch: a buffer written only by top-level statements
 * before the one holding the nest, statements of stores, loops and ifs
 * whose values use only their own loop variables, grid variables (KEY's
 * too then), parameters, read-only arguments and block-derived scratch
 * (itself included): an MoE block's schedule (expert, first row, rows),
 * found from the grid row and the expert counts.
 * The prefetches of a buffer that only the nest read go with it.  An if
 * whose arms stage several buffers in the same order (fusion's one window
 * test over A's and B's copies) is first split into one if per buffer,
 * where one of them then qualifies (split_window_test). */
#include "passes/lower.h"
#include "passes/passes.h"

#include <stdlib.h>
#include <string.h>

enum { HOIST_L2S = 2 }; /* the most a hoisted scratch takes, in L2s */

enum { MAX_DEPTH = 8 };

typedef struct Hoist {
    Kernel *k;
    const TargetInfo *t;
    int item;                   /* the block's top-level statement being searched */
    Stmt *path[MAX_DEPTH];      /* the loops and ifs around the nest, outermost first */
    bool in_else[MAX_DEPTH];    /* (an if) the nest lies in its else arm */
    int depth;
    Stmt *step;                 /* the step loop among them, NULL if none */
    bool grid_used[IR_MAX_GRID];
    const Buffer *deriving[4];  /* derived(): the buffers whose writers are being checked */
    int nderiving;
    Buffer *x;                  /* the staged scratch */
    Expr *rows;                 /* its first extent, R */
} Hoist;

/* ------------------------------------------------------------ the tests */

static int grid_dim(const Kernel *k, const Var *v)
{
    for (int g = 0; g < k->ngrid; g++)
        if (k->grid_var[g] == v)
            return g;
    return -1;
}

static bool read_only_arg(const Kernel *k, const Buffer *b)
{
    IrUse u = {0};
    ir_buffer_use(k->body, b, &u);
    return b->scope == SCOPE_GLOBAL && b->dir == ARG_IN && !u.writes;
}

static bool derived(Hoist *H, const Buffer *b);

/* Loop variables defined in s (vars[*n..]). */
static void loop_vars(const Stmt *s, const Var **vars, int *n, int cap)
{
    if (!s)
        return;
    if (s->op == ST_SEQ)
        for (int i = 0; i < s->u.seq.n; i++)
            loop_vars(s->u.seq.items[i], vars, n, cap);
    else if (s->op == ST_IF) {
        loop_vars(s->u.if_.then_, vars, n, cap);
        loop_vars(s->u.if_.else_, vars, n, cap);
    } else if (s->op == ST_FOR) {
        if (*n < cap)
            vars[(*n)++] = s->u.loop.var;
        loop_vars(s->u.loop.body, vars, n, cap);
    }
}

/* Does e use only vars[0..n), grid variables (noted) and parameters, and
 * load only read-only arguments and block-derived scratch? */
static bool invariant_in(Hoist *H, const Expr *e, const Var *const *vars, int n)
{
    if (e->op == EX_VAR) {
        int g = grid_dim(H->k, e->var);
        if (g >= 0) {
            H->grid_used[g] = true;
            return true;
        }
        for (int i = 0; i < n; i++)
            if (vars[i] == e->var)
                return true;
        return false;
    }
    if (e->op == EX_LOAD && !read_only_arg(H->k, e->buf) && !derived(H, e->buf))
        return false; /* (derived() allows the loads of a buffer in its own writers) */
    for (int i = 0; i < e->nargs; i++)
        if (!invariant_in(H, e->args[i], vars, n))
            return false;
    return true;
}

/* Is statement s (stores, loops and ifs) invariant given vars[0..n)? */
static bool invariant_stmt(Hoist *H, const Stmt *s, const Var *const *vars, int n)
{
    if (!s)
        return true;
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            if (!invariant_stmt(H, s->u.seq.items[i], vars, n))
                return false;
        return true;
    case ST_FOR:
        return invariant_in(H, s->u.loop.extent, vars, n) &&
               invariant_stmt(H, s->u.loop.body, vars, n);
    case ST_IF:
        return invariant_in(H, s->u.if_.cond, vars, n) && invariant_stmt(H, s->u.if_.then_, vars, n) &&
               invariant_stmt(H, s->u.if_.else_, vars, n);
    case ST_STORE:
        for (int d = 0; d < s->u.store.buf->rank; d++)
            if (!invariant_in(H, s->u.store.idx[d], vars, n))
                return false;
        return !s->u.store.atomic && invariant_in(H, s->u.store.value, vars, n);
    default: return false;
    }
}

/* Is scratch b block-derived (see the top) for the statement H->item? */
static bool derived(Hoist *H, const Buffer *b)
{
    for (int i = 0; i < H->nderiving; i++)
        if (H->deriving[i] == b)
            return true;
    if (b->scope == SCOPE_GLOBAL || H->nderiving == (int)(sizeof H->deriving / sizeof H->deriving[0]))
        return false;
    Stmt *body = H->k->body;
    for (int i = H->item; i < body->u.seq.n; i++) {
        IrUse u = {0};
        ir_buffer_use(body->u.seq.items[i], b, &u);
        if (u.writes)
            return false;
    }
    for (int i = 0; i < H->item; i++) {
        const Stmt *s = body->u.seq.items[i];
        IrUse u = {0};
        ir_buffer_use(s, b, &u);
        if (!u.writes)
            continue;
        const Var *vars[32];
        int n = 0;
        loop_vars(s, vars, &n, 32);
        H->deriving[H->nderiving++] = b;
        bool ok = n < 32 && invariant_stmt(H, s, vars, n);
        H->nderiving--;
        if (!ok)
            return false;
    }
    return true;
}

/* Loop variables of the path and the nest's (extra[0..n)), for
 * invariant_in. */
static int scope_vars(const Hoist *H, const Var **vars, Var *const *extra, int n)
{
    int m = 0;
    for (int i = 0; i < H->depth; i++)
        if (H->path[i]->op == ST_FOR)
            vars[m++] = H->path[i]->u.loop.var;
    for (int i = 0; i < n; i++)
        vars[m++] = extra[i];
    return m;
}

static bool invariant_expr(Hoist *H, const Expr *e, Var *const *nest_vars, int n)
{
    const Var *vars[MAX_DEPTH + IR_MAX_RANK];
    int m = scope_vars(H, vars, nest_vars, n);
    return invariant_in(H, e, vars, m);
}

/* Add mul·e to Σ coef[i]·vars[i] + *c; false where e is not such a sum
 * of the n variables (integer constants, + - and products with them). */
static bool add_linear(const Expr *e, int64_t mul, Var *const *vars, int n, int64_t *coef, int64_t *c)
{
    switch (e->op) {
    case EX_CONST:
        if (!dt_is_int(e->dtype))
            return false;
        *c += mul * e->imm.i;
        return true;
    case EX_VAR:
        for (int i = 0; i < n; i++)
            if (vars[i] == e->var) {
                coef[i] += mul;
                return true;
            }
        return false;
    case EX_ADD:
    case EX_SUB:
        return add_linear(e->args[0], mul, vars, n, coef, c) &&
               add_linear(e->args[1], e->op == EX_SUB ? -mul : mul, vars, n, coef, c);
    case EX_MUL:
        for (int k = 0; k < 2; k++)
            if (e->args[k]->op == EX_CONST && dt_is_int(e->args[k]->dtype))
                return add_linear(e->args[1 - k], mul * e->args[k]->imm.i, vars, n, coef, c);
        return false;
    default: return false;
    }
}

typedef struct Digit {
    int64_t weight, count;
} Digit;

static int by_weight(const void *a, const void *b)
{
    int64_t x = ((const Digit *)a)->weight, y = ((const Digit *)b)->weight;
    return (x > y) - (x < y);
}

/* Are digits a number system for [0, extent): weights 1, c0, c0·c1, ...
 * (sorted), the counts' product the extent — every value once? */
static bool mixed_radix(Digit *d, int n, int64_t extent)
{
    qsort(d, (size_t)n, sizeof *d, by_weight);
    int64_t w = 1;
    for (int i = 0; i < n; i++) {
        if (d[i].weight != w)
            return false;
        w *= d[i].count;
    }
    return w == extent;
}

enum { MAX_STORES = 16 };

/* Do stores st[0..m) in a nest over vars (extents ext) write each element
 * of their buffer once?  Each index is a number in mixed radix: the terms
 * weight·v of the nest's variables, each variable in one dimension with
 * the same weight in every store, and a constant; the stores' constants
 * differ in one dimension only, as 0, u, ..., (m-1)·u — a digit of its
 * own (m stores that unroll a loop: lower's e2m1-order copies).  A store
 * at the nest's variables in order is the one-store case. */
static bool writes_each_once(Stmt *const *st, int m, Var *const *vars, const int64_t *ext, int n)
{
    const Buffer *x = st[0]->u.store.buf;
    int64_t coef[IR_MAX_RANK][IR_MAX_RANK], c[MAX_STORES][IR_MAX_RANK], coef_j[IR_MAX_RANK];
    int unrolled = -1;
    for (int j = 0; j < m; j++)
        for (int d = 0; d < x->rank; d++) {
            int64_t *w = j ? coef_j : coef[d];
            memset(w, 0, sizeof coef_j);
            c[j][d] = 0;
            if (!add_linear(st[j]->u.store.idx[d], 1, vars, n, w, &c[j][d]) ||
                (j && memcmp(coef_j, coef[d], sizeof coef_j)))
                return false;
            if (c[j][d] != c[0][d]) {
                if (unrolled >= 0 && unrolled != d)
                    return false;
                unrolled = d;
            }
        }
    if (m > 1 && unrolled < 0)
        return false;
    int used[IR_MAX_RANK] = {0};
    for (int d = 0; d < x->rank; d++) {
        Digit dig[IR_MAX_RANK + 1];
        int nd = 0;
        int64_t extent;
        for (int i = 0; i < n; i++)
            if (coef[d][i] && ext[i] > 1) {
                dig[nd++] = (Digit){coef[d][i], ext[i]};
                used[i]++;
            }
        if (d == unrolled) {
            int64_t lo = c[0][d], hi = c[0][d];
            for (int j = 1; j < m; j++) {
                lo = c[j][d] < lo ? c[j][d] : lo;
                hi = c[j][d] > hi ? c[j][d] : hi;
            }
            int64_t u = (hi - lo) / (m - 1);
            bool seen[MAX_STORES] = {0};
            for (int j = 0; j < m; j++) {
                int64_t k = u ? (c[j][d] - lo) / u : -1;
                if (lo != 0 || k < 0 || k >= m || k * u != c[j][d] - lo || seen[k])
                    return false;
                seen[k] = true;
            }
            dig[nd++] = (Digit){u, m};
        } else if (c[0][d] != 0) {
            return false;
        }
        if (!ir_expr_is_const(x->shape[d], &extent) || !mixed_radix(dig, nd, extent))
            return false;
    }
    for (int i = 0; i < n; i++)
        if (ext[i] > 1 && used[i] != 1)
            return false;
    return true;
}

/* The stores of a perfect nest of constant extents that write each
 * element of one scratch buffer once (writes_each_once), into st (vars:
 * the nest's, outermost first); 0 if s is not such a nest. */
static int staging_stores(Stmt *s, Stmt **st, Var **vars, int *nvars)
{
    int n = 0, m = 0;
    int64_t ext[IR_MAX_RANK];
    while (s->op == ST_FOR || (s->op == ST_SEQ && s->u.seq.n == 1)) {
        if (s->op == ST_SEQ) {
            s = s->u.seq.items[0];
            continue;
        }
        if (n == IR_MAX_RANK || !ir_expr_is_const(s->u.loop.extent, &ext[n]) ||
            (s->u.loop.kind != LOOP_SERIAL && s->u.loop.kind != LOOP_PARALLEL))
            return 0;
        vars[n++] = s->u.loop.var;
        s = s->u.loop.body;
    }
    Stmt *const *items = s->op == ST_SEQ ? s->u.seq.items : &s;
    int count = s->op == ST_SEQ ? s->u.seq.n : 1;
    if (count > MAX_STORES)
        return 0;
    for (int j = 0; j < count; j++) {
        Stmt *t = items[j];
        if (t->op != ST_STORE || t->u.store.atomic || t->u.store.async || t->u.store.buf != items[0]->u.store.buf)
            return 0;
        st[m++] = t;
    }
    const Buffer *x = m ? st[0]->u.store.buf : NULL;
    if (!x || x->scope == SCOPE_GLOBAL || !writes_each_once(st, m, vars, ext, n))
        return 0;
    *nvars = n;
    return m;
}

/* A copy's rows split at a buffer's edges (lower_copy_rows_split), the
 * row loop of constant extent over a 2-D scratch X — or one row of it —
 * each row's runs back to back from 0 to X's extent (lower_row_runs):
 * every element stored once, as a staging nest (staging_stores) stores
 * it.  Its stores into st (vars: the row loop's variable, if any, then the
 * runs'); their count, 0 if s is not such a nest. */
static int split_rows_stores(Stmt *s, Stmt **st, Var **vars, int *nvars)
{
    int n = 0;
    int64_t rows = 1, have_rows;
    while (s->op == ST_SEQ && s->u.seq.n == 1)
        s = s->u.seq.items[0];
    if (s->op == ST_FOR) {
        if (!ir_expr_is_const(s->u.loop.extent, &rows) || s->u.loop.kind != LOOP_PARALLEL)
            return 0;
        vars[n++] = s->u.loop.var;
        s = s->u.loop.body;
    }
    int m = lower_row_runs(s, 0, st);
    if (m < 2 || m != s->u.seq.n || !ir_expr_is_const(st[0]->u.store.buf->shape[0], &have_rows) || have_rows != rows)
        return 0;
    Expr *row = st[0]->u.store.idx[0];
    if (n ? !(row->op == EX_VAR && row->var == vars[0]) : !(row->op == EX_CONST && row->imm.i == 0))
        return 0;
    for (int i = 0; i < m; i++)
        vars[n + i] = s->u.seq.items[i]->u.loop.var;
    *nvars = n + m;
    return m;
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

static IrRange no_leaf(const Expr *e, void *ctx)
{
    (void)e;
    (void)ctx;
    return (IrRange){0, 0, false};
}

/* The most iterations loop s runs: its constant extent, or the top of its
 * extent's range (an MoE tile's K steps, `select(0 < rows, 7, 0)`: none
 * for an empty tile); -1 where unknown. */
static int64_t most_steps(const Stmt *s)
{
    int64_t n;
    if (ir_expr_is_const(s->u.loop.extent, &n))
        return n;
    IrRange r = ir_range_of(s->u.loop.extent, no_leaf, NULL);
    return r.known ? r.hi : -1;
}

static int64_t steps(const Hoist *H)
{
    return H->step ? most_steps(H->step) : 1;
}

/* A loop the search may pass through: serial or pipelined, of at most one
 * step, or the (one) step loop of a bounded count. */
static bool passable(const Hoist *H, const Stmt *s)
{
    if (s->u.loop.kind != LOOP_SERIAL && s->u.loop.kind != LOOP_PIPELINED)
        return false;
    int64_t n = most_steps(s);
    return n >= 0 && (n <= 1 || !H->step);
}

/* The conditions and extents around the nest: invariant, free of the
 * step. */
static bool invariant_path(Hoist *H)
{
    for (int i = 0; i < H->depth; i++) {
        const Stmt *s = H->path[i];
        const Expr *e = s->op == ST_IF ? s->u.if_.cond : s->u.loop.extent;
        if (!invariant_expr(H, e, NULL, 0) || (H->step && ir_mentions_var(e, H->step->u.loop.var)))
            return false;
    }
    return true;
}

/* The extents of a split row's runs (split_rows_stores) are invariant as
 * its stores' values must be. */
static bool runs_invariant(Hoist *H, const Stmt *s, Var *const *vars, int n)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            if (!runs_invariant(H, s->u.seq.items[i], vars, n))
                return false;
        return true;
    case ST_FOR: return invariant_expr(H, s->u.loop.extent, vars, n) && runs_invariant(H, s->u.loop.body, vars, n);
    default: return true;
    }
}

/* The buffer s stores every element of, whichever way it goes — a staging
 * nest, or an if on an invariant condition whose arms both stage the same
 * buffer (a row-count variant's copy, say) — its values invariant; NULL if
 * none. */
static Buffer *staged_by(Hoist *H, const Stmt *s)
{
    if (s->op == ST_IF) {
        if (!s->u.if_.else_ || !invariant_expr(H, s->u.if_.cond, NULL, 0))
            return NULL;
        Buffer *x = staged_by(H, s->u.if_.then_);
        return x && staged_by(H, s->u.if_.else_) == x ? x : NULL;
    }
    Var *vars[IR_MAX_RANK + 3];
    Stmt *st[MAX_STORES];
    int n, m = staging_stores((Stmt *)s, st, vars, &n);
    if (!m && (m = split_rows_stores((Stmt *)s, st, vars, &n)) && !runs_invariant(H, s, vars, n))
        return NULL;
    for (int j = 0; j < m; j++) {
        for (int d = 0; d < st[j]->u.store.buf->rank; d++)
            if (!invariant_expr(H, st[j]->u.store.idx[d], vars, n))
                return NULL;
        if (!invariant_expr(H, st[j]->u.store.value, vars, n))
            return NULL;
    }
    return m ? st[0]->u.store.buf : NULL;
}

/* Is item i of seq one to hoist (the statements around it in H)? */
static bool qualifies(Hoist *H, Stmt *seq, int i)
{
    const Stmt *s = seq->u.seq.items[i];
    memset(H->grid_used, 0, sizeof H->grid_used);
    Buffer *x = staged_by(H, s);
    if (!x || !invariant_path(H) || !shared_by_a_run(H))
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
        (double)dt_storage_bytes(x->dtype, ir_buf_span(x)) * (double)steps(H) > HOIST_L2S * (double)H->t->l2_bytes)
        return false;
    H->x = x;
    H->rows = ir_const_i(H->k, rows);
    return true;
}

/* ------------------------------------------------------------ the moves */

/* step·R + i: X's first index i in step's block. */
static Expr *in_block(Hoist *H, Expr *step, Expr *i)
{
    return ir_binary(H->k, EX_ADD, ir_binary(H->k, EX_MUL, step, H->rows), i);
}

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
        a[0] = in_block(H, step, a[0]);
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
        r->off[0] = in_block(H, step, r->off[0]);
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
            s->u.store.idx[0] = in_block(H, step, s->u.store.idx[0]);
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

/* Drop the prefetches in s of buffers the moved nest read and `top` no
 * longer reads (and the loops and ifs left empty). */
static Stmt *drop_prefetches(Hoist *H, Stmt *s, const Stmt *top, const Stmt *nest)
{
    switch (s->op) {
    case ST_SEQ: {
        int n = 0;
        for (int i = 0; i < s->u.seq.n; i++) {
            Stmt *c = drop_prefetches(H, s->u.seq.items[i], top, nest);
            if (c)
                s->u.seq.items[n++] = c;
        }
        s->u.seq.n = n;
        return n ? s : NULL;
    }
    case ST_FOR:
        s->u.loop.body = drop_prefetches(H, s->u.loop.body, top, nest);
        return s->u.loop.body ? s : NULL;
    case ST_IF:
        s->u.if_.then_ = drop_prefetches(H, s->u.if_.then_, top, nest);
        s->u.if_.else_ = s->u.if_.else_ ? drop_prefetches(H, s->u.if_.else_, top, nest) : NULL;
        if (!s->u.if_.then_ && !s->u.if_.else_)
            return NULL;
        if (!s->u.if_.then_)
            s->u.if_.then_ = ir_seq(H->k, s->loc);
        return s;
    case ST_PREFETCH: {
        IrUse left = {0}, moved = {0};
        ir_buffer_use(top, s->u.store.buf, &left);
        ir_buffer_use(nest, s->u.store.buf, &moved);
        return left.reads || !moved.reads ? s : NULL;
    }
    default: return s;
    }
}

/* Move item i of seq (qualifies() said yes) into a once before the
 * block's top-level statement H->item, inside copies of the loops and
 * ifs around it. */
static void hoist(Hoist *H, Stmt *seq, int i)
{
    Kernel *k = H->k;
    Stmt *nest = seq->u.seq.items[i];
    memmove(&seq->u.seq.items[i], &seq->u.seq.items[i + 1], sizeof(Stmt *) * (size_t)(seq->u.seq.n - i - 1));
    seq->u.seq.n--;
    if (steps(H) > 1) {
        rebase(H, nest, ir_var(k, H->step->u.loop.var)); /* its stores; the clone renames the step */
        rebase(H, H->step->u.loop.body, ir_var(k, H->step->u.loop.var));
        H->x->shape[0] = ir_const_i(k, steps(H) * H->rows->imm.i);
    }
    Stmt *staged = nest;
    for (int d = H->depth - 1; d >= 0; d--) {
        const Stmt *s = H->path[d];
        if (s->op == ST_IF) {
            Expr *cond = H->in_else[d] ? ir_unary(k, EX_NOT, s->u.if_.cond) : s->u.if_.cond;
            staged = ir_if(k, cond, staged, NULL, s->loc);
        } else {
            staged = ir_for(k, s->u.loop.var, s->u.loop.extent, LOOP_SERIAL, 0, staged, s->loc);
        }
    }
    staged = ir_clone_stmt(k, staged, &(IrSubst){0}); /* fresh loop variables */
    Stmt *body = k->body, *top = body->u.seq.items[H->item];
    Stmt *left = drop_prefetches(H, top, top, nest);
    body->u.seq.items[H->item] = left ? left : ir_seq(k, top->loc);
    ir_seq_push(k, body, ir_once(k, run_key(H), staged, nest->loc));
    Stmt *once = body->u.seq.items[body->u.seq.n - 1];
    memmove(&body->u.seq.items[H->item + 1], &body->u.seq.items[H->item],
            sizeof(Stmt *) * (size_t)(body->u.seq.n - 1 - H->item));
    body->u.seq.items[H->item] = once;
}

/* The one buffer s (stores, loops and ifs) writes; NULL if none or more. */
static Buffer *written(const Stmt *s)
{
    if (!s)
        return NULL;
    switch (s->op) {
    case ST_STORE: return s->u.store.buf;
    case ST_FOR: return written(s->u.loop.body);
    case ST_IF: {
        Buffer *a = written(s->u.if_.then_), *b = s->u.if_.else_ ? written(s->u.if_.else_) : a;
        return a == b ? a : NULL;
    }
    case ST_SEQ: {
        Buffer *x = NULL;
        for (int i = 0; i < s->u.seq.n; i++) {
            Buffer *y = written(s->u.seq.items[i]);
            if (!y || (x && y != x))
                return NULL;
            x = y;
        }
        return x;
    }
    default: return NULL;
    }
}

/* Fusion joins the copies under one window test — `if k·BK + BK <= K
 * {A's rows; B's panel} else {their edge forms}` where no M edge sets A's
 * test apart (bf16 2048 x 2048 x 2000) — and such an if stages neither
 * buffer alone.  Where item i of seq is one whose arms are nests in the
 * same order, nest n of each writing one buffer X_n of its own that the
 * test does not read, it becomes one if per buffer — the same meaning: the
 * nests still run in their order and the test reads the same values each
 * time — if one of them then qualifies (a later nest reading X_n, as
 * anything after the nest, has its reads moved with it); else it stays. */
static void split_window_test(Hoist *H, Stmt *seq, int i)
{
    enum { MOST = 4 };
    Stmt *s = seq->u.seq.items[i], *then_ = s->u.if_.then_, *else_ = s->u.if_.else_;
    if (!else_ || then_->op != ST_SEQ || else_->op != ST_SEQ || then_->u.seq.n != else_->u.seq.n ||
        then_->u.seq.n < 2 || then_->u.seq.n > MOST)
        return;
    int n = then_->u.seq.n;
    Buffer *x[MOST];
    for (int a = 0; a < n; a++) {
        x[a] = written(then_->u.seq.items[a]);
        if (!x[a] || written(else_->u.seq.items[a]) != x[a] || ir_loads_from(s->u.if_.cond, x[a]))
            return;
        for (int b = 0; b < a; b++)
            if (x[b] == x[a])
                return;
    }
    Stmt *split[MOST];
    for (int a = 0; a < n; a++)
        split[a] = ir_if(H->k, a ? ir_clone_expr(H->k, s->u.if_.cond, &(IrSubst){0}) : s->u.if_.cond,
                         then_->u.seq.items[a], else_->u.seq.items[a], s->loc);
    Stmt **items;
    for (int a = 1; a < n; a++)
        ir_seq_push(H->k, seq, s); /* room for n - 1 more */
    items = seq->u.seq.items;
    memmove(&items[i + n], &items[i + 1], sizeof(Stmt *) * (size_t)(seq->u.seq.n - (i + n)));
    for (int a = 0; a < n; a++)
        items[i + a] = split[a];
    for (int a = 0; a < n; a++)
        if (qualifies(H, seq, i + a))
            return;
    memmove(&items[i + 1], &items[i + n], sizeof(Stmt *) * (size_t)(seq->u.seq.n - (i + n)));
    items[i] = s;
    seq->u.seq.n -= n - 1;
}

/* Find a nest to hoist in seq (under H's path); true once one moved. */
static bool scan(Hoist *H, Stmt *seq)
{
    for (int i = 0; i < seq->u.seq.n; i++) {
        Stmt *s = seq->u.seq.items[i];
        if (s->op == ST_IF && H->depth > 0) {
            split_window_test(H, seq, i);
            s = seq->u.seq.items[i];
        }
        if ((s->op == ST_FOR || s->op == ST_IF) && H->depth > 0 && qualifies(H, seq, i)) {
            hoist(H, seq, i);
            return true;
        }
        if (H->depth == MAX_DEPTH)
            continue;
        Stmt **inner[2] = {NULL, NULL};
        if (s->op == ST_IF) {
            inner[0] = &s->u.if_.then_;
            inner[1] = s->u.if_.else_ ? &s->u.if_.else_ : NULL;
        } else if (s->op == ST_FOR && passable(H, s)) {
            inner[0] = &s->u.loop.body;
        }
        bool is_step = s->op == ST_FOR && most_steps(s) > 1;
        for (int a = 0; a < 2; a++) {
            if (!inner[a])
                continue;
            if ((*inner[a])->op != ST_SEQ) { /* a lone statement: a sequence of one, the same meaning */
                Stmt *one = ir_seq(H->k, (*inner[a])->loc);
                ir_seq_push(H->k, one, *inner[a]);
                *inner[a] = one;
            }
            H->path[H->depth] = s;
            H->in_else[H->depth++] = a;
            if (is_step)
                H->step = s;
            bool moved = scan(H, *inner[a]);
            H->depth--;
            if (is_step)
                H->step = NULL;
            if (moved)
                return true;
        }
    }
    return false;
}

/* ------------------------------------------------------------ merging */

/* Two statements alike up to their loop variables' names and scratch
 * buffer xb standing where xa does. */
typedef struct Alike {
    const Var *a[MAX_DEPTH * 4], *b[MAX_DEPTH * 4];
    int n;
    const Buffer *xa, *xb;
} Alike;

static bool same_buf(const Alike *m, const Buffer *a, const Buffer *b)
{
    return a == b || (a == m->xa && b == m->xb);
}

static bool same_expr(const Alike *m, const Expr *a, const Expr *b)
{
    if (a->op != b->op || a->dtype != b->dtype || a->nargs != b->nargs)
        return false;
    if (a->op == EX_VAR) {
        for (int i = m->n - 1; i >= 0; i--)
            if (m->a[i] == a->var || m->b[i] == b->var)
                return m->a[i] == a->var && m->b[i] == b->var;
        return a->var == b->var;
    }
    if (a->op == EX_LOAD && !same_buf(m, a->buf, b->buf))
        return false;
    if (a->nargs == 0)
        return a->op == EX_LOAD || ir_expr_equal(a, b);
    for (int i = 0; i < a->nargs; i++)
        if (!same_expr(m, a->args[i], b->args[i]))
            return false;
    return true;
}

/* Alike, for the statements a staging nest is made of (loops, ifs,
 * sequences, stores); anything else is not. */
static bool same_stmt(Alike *m, const Stmt *a, const Stmt *b)
{
    if (!a || !b)
        return a == b;
    if (a->op != b->op)
        return false;
    switch (a->op) {
    case ST_SEQ:
        if (a->u.seq.n != b->u.seq.n)
            return false;
        for (int i = 0; i < a->u.seq.n; i++)
            if (!same_stmt(m, a->u.seq.items[i], b->u.seq.items[i]))
                return false;
        return true;
    case ST_FOR: {
        if (a->u.loop.kind != b->u.loop.kind || a->u.loop.arg != b->u.loop.arg ||
            !same_expr(m, a->u.loop.extent, b->u.loop.extent) || m->n == (int)(sizeof m->a / sizeof m->a[0]))
            return false;
        m->a[m->n] = a->u.loop.var;
        m->b[m->n++] = b->u.loop.var;
        bool same = same_stmt(m, a->u.loop.body, b->u.loop.body);
        m->n--;
        return same;
    }
    case ST_IF:
        return same_expr(m, a->u.if_.cond, b->u.if_.cond) && same_stmt(m, a->u.if_.then_, b->u.if_.then_) &&
               same_stmt(m, a->u.if_.else_, b->u.if_.else_);
    case ST_STORE:
        if (!same_buf(m, a->u.store.buf, b->u.store.buf) || a->u.store.atomic || b->u.store.atomic ||
            a->u.store.async || b->u.store.async || a->u.store.stream != b->u.store.stream ||
            !same_expr(m, a->u.store.value, b->u.store.value))
            return false;
        for (int d = 0; d < a->u.store.buf->rank; d++)
            if (!same_expr(m, a->u.store.idx[d], b->u.store.idx[d]))
                return false;
        return true;
    default: return false;
    }
}

/* Whether the statements under s store to one buffer at most (*x: it,
 * NULL for none): loops, ifs, sequences and stores only. */
static bool stores_one(const Stmt *s, Buffer **x)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            if (!stores_one(s->u.seq.items[i], x))
                return false;
        return true;
    case ST_FOR: return stores_one(s->u.loop.body, x);
    case ST_IF: return stores_one(s->u.if_.then_, x) && (!s->u.if_.else_ || stores_one(s->u.if_.else_, x));
    case ST_STORE:
        if (*x && *x != s->u.store.buf)
            return false;
        *x = s->u.store.buf;
        return true;
    default: return false;
    }
}

/* The scratch a once stages (NULL: not a once of one such nest). */
static Buffer *staged_once(const Stmt *s)
{
    Buffer *x = NULL;
    return s->op == ST_ONCE && stores_one(s->u.once.body, &x) ? x : NULL;
}

static bool same_shape(const Buffer *a, const Buffer *b)
{
    int64_t x, y;
    if (a->dtype != b->dtype || a->rank != b->rank || a->scope != b->scope)
        return false;
    for (int d = 0; d < a->rank; d++)
        if (!ir_expr_is_const(a->shape[d], &x) || !ir_expr_is_const(b->shape[d], &y) || x != y)
            return false;
    return true;
}

static void rename_in_expr(Expr *e, const Buffer *from, Buffer *to)
{
    if (e->op == EX_LOAD && e->buf == from)
        e->buf = to;
    for (int i = 0; i < e->nargs; i++)
        rename_in_expr(e->args[i], from, to);
}

static void rename_in_region(Region *r, const Buffer *from, Buffer *to)
{
    if (!r->buf)
        return;
    if (r->buf == from)
        r->buf = to;
    for (int d = 0; d < r->buf->rank; d++)
        rename_in_expr(r->off[d], from, to);
}

/* Every access of buffer `from` in s reads `to` instead (expressions are
 * changed in place: a shared one means `from` wherever it appears). */
static void rename_buffer(Stmt *s, const Buffer *from, Buffer *to)
{
    if (!s)
        return;
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            rename_buffer(s->u.seq.items[i], from, to);
        break;
    case ST_FOR:
        rename_in_expr(s->u.loop.extent, from, to);
        rename_buffer(s->u.loop.body, from, to);
        break;
    case ST_IF:
        rename_in_expr(s->u.if_.cond, from, to);
        rename_buffer(s->u.if_.then_, from, to);
        rename_buffer(s->u.if_.else_, from, to);
        break;
    case ST_ONCE:
        rename_in_expr(s->u.once.key, from, to);
        rename_buffer(s->u.once.body, from, to);
        break;
    case ST_STORE:
    case ST_PREFETCH:
        if (s->u.store.buf == from)
            s->u.store.buf = to;
        for (int d = 0; d < s->u.store.buf->rank; d++)
            rename_in_expr(s->u.store.idx[d], from, to);
        if (s->op == ST_STORE)
            rename_in_expr(s->u.store.value, from, to);
        break;
    case ST_MICRO_GEMM:
        rename_in_region(&s->u.gemm.a, from, to);
        rename_in_region(&s->u.gemm.b, from, to);
        rename_in_region(&s->u.gemm.c, from, to);
        rename_in_region(&s->u.gemm.a_scale, from, to);
        rename_in_region(&s->u.gemm.b_scale, from, to);
        break;
    default: break;
    }
}

/* A once staging what an earlier one stages, under the same key — two
 * GEMMs over the same rows of A (moe_gemm_swiglu's gate and up halves)
 * copy A in e2m1 order twice — goes, its scratch read from the earlier
 * one's: each is written only by its once, from the same read-only and
 * block-derived values (qualifies()), so both hold the same whenever a
 * key's blocks read them. */
static void merge_equal_onces(Kernel *k)
{
    Stmt *body = k->body;
    for (int j = 0; j < body->u.seq.n; j++) {
        Stmt *b = body->u.seq.items[j];
        Buffer *xb = staged_once(b);
        for (int i = 0; xb && i < j; i++) {
            Stmt *a = body->u.seq.items[i];
            Buffer *xa = staged_once(a);
            Alike m = {.xa = xa, .xb = xb};
            if (!xa || xa == xb || !same_shape(xa, xb) || !same_expr(&m, a->u.once.key, b->u.once.key) ||
                !same_stmt(&m, a->u.once.body, b->u.once.body))
                continue;
            memmove(&body->u.seq.items[j], &body->u.seq.items[j + 1], sizeof(Stmt *) * (size_t)(body->u.seq.n - j - 1));
            body->u.seq.n--;
            rename_buffer(body, xb, xa);
            j--;
            break;
        }
    }
    ir_drop_unused_buffers(k);
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
        H.item = i;
        if ((s->op == ST_FOR || s->op == ST_IF) && qualifies(&H, body, i))
            body->u.seq.items[i] = ir_once(k, run_key(&H), s, s->loc);
    }
    for (int i = 0; i < body->u.seq.n; i++) {
        Stmt *s = body->u.seq.items[i];
        if (s->op == ST_ONCE)
            continue;
        Stmt wrap = {.op = ST_SEQ, .u.seq = {.items = &s, .n = 1, .cap = 1}};
        H.item = i;
        while (scan(&H, &wrap)) {
            i++; /* a once went before it */
            H.item = i;
            s = body->u.seq.items[i];
            wrap.u.seq.items = &s;
        }
    }
    merge_equal_onces(k);
    return true;
}
