/* fuse.c — loop fusion within a kernel (Loop IR, right after `lower`).
 *
 * lower makes one loop nest per tile op; consecutive nests over the same
 * iteration space are merged here, and scratch values that then live
 * within one iteration stop going through memory.  These steps, each over
 * every sequence of the kernel:
 *
 *  0. merge ifs: two adjacent `if`s on structurally equal conditions, the
 *     first writing nothing the condition loads, become one whose arms are
 *     the concatenations (`if c {A; B} else {A'; B'}`), so their nests can
 *     fuse (T.compose leaves the producer's and the consumer's window
 *     tests side by side).
 *  1. unswitch: a run of nests and lower's `if inside {fast} else {guarded}`
 *     copies becomes one `if` per distinct condition, each arm a straight
 *     run of nests (2^k versions, k <= MAX_CONDS on a CPU; k = 1 on a GPU,
 *     where every version carries its own barriers and some combinations
 *     of conditions never occur: one fast arm and one tail arm).  Only conditions without
 *     loads qualify: they read loop variables bound outside the run and
 *     parameters, so the run cannot change them.  Kept only where it lets
 *     the all-fast arm fuse.
 *  2. fuse two FOR nests A, B (B later in the sequence, everything between
 *     commuting with A — no buffer written by one and touched by the
 *     other) when their extents are equal expressions, their kinds are
 *     parallel or serial, both bodies are plain loads/stores/ifs/loops, and
 *     — renaming B's variable to A's, v — every pair of accesses to the same
 *     buffer, one in A and one in B, at least one a store, agree in some
 *     dimension on an index `v + c` with c free of the nests' own variables,
 *     or on strided blocks: both indices `s·v + e` with one constant s > 0
 *     and e, from constants and the nests' inner loop variables (constant
 *     extents), within [0, s) (so they can only meet in the same iteration
 *     of v, where A's part still runs first).  The fused loop is
 *     parallel only when both were.  CPU: a parallel loop of plain
 *     statements (one value per row) and a nest with inner loops stay apart
 *     (keeps_vector_leaf), and so do nests with no buffer in common.
 *     The fused body is a sequence again, so inner loops fuse the same way.
 *     GPU: only perfect nests of parallel loops with equal extents at every
 *     level fuse (threads spreads a nest over the block; putting a row's
 *     column loop under a per-row reduction would leave it to one thread).
 *  2b. decide: in the then arm of `if c`, the integer comparisons of c
 *     (its load-free conjuncts, `lo < hi` / `lo <= hi`) hold; a comparison
 *     inside whose difference from one of them, its shared terms
 *     cancelled, is bounded by the loops' ranges is folded, and the select
 *     or if on it goes (under `bx * 8 + 8 <= M`, `bx * 8 + c0 < M` for
 *     c0 < 8).  bounds cannot: the arms exist only after steps 0 and 1.
 *  3. forward: in straight-line code a load of scratch X at the indices of
 *     the last store to X (nothing in between storing X or a buffer the
 *     stored value reads) becomes the stored value (rounded to X's dtype);
 *     an update in place X[I] = f(X[I]) first sinks below the stores that
 *     load X[I], which then load f (sink_updates).
 *  4. dead stores: a loop nest that stores scratch X and no longer reads it
 *     (or reads it only before writing it, one element per iteration:
 *     reads_before_write) loses those stores when no later statement —
 *     including the next iterations of enclosing loops — can read X before
 *     a nest overwrites all of X (or a loop that runs at least once and,
 *     each time round, overwrites X before its reads); a scratch buffer
 *     nothing uses any more is removed.
 *  5. contract (CPU): a scratch buffer whose every access lies in one
 *     loop over v (one with inner loops), indexing one dimension as
 *     `s·v + e`, e in [0, s), and which each iteration writes whole (its
 *     block) before reading, keeps s elements of that dimension, indexed
 *     e: what fusing the producer of a strided tile with its consumer
 *     leaves behind when the inner loops do not fuse as well.
 *
 * Runs before vectorize (which then sees the fused innermost loops: a
 * serial loop of independent stores plus one reduction step vectorises) and
 * before threads (which spreads the fused nests and places barriers between
 * what remains; barriers do not exist yet, and a statement that is not a
 * plain nest — barrier, micro_gemm, async op — never commutes or fuses). */
#include "passes/lower.h"
#include "passes/passes.h"

#include <stdlib.h>
#include <string.h>

enum { MAX_CONDS = 3, MAX_VALUE_NODES = 256 };

typedef struct Fuse {
    Kernel *k;
    bool gpu;
    bool no_math; /* the store being forwarded may not be (see math_may_forward) */
} Fuse;

/* ---------------------------------------------------------- helpers */

static int expr_nodes(const Expr *e)
{
    int n = 1;
    for (int i = 0; i < e->nargs; i++)
        n += expr_nodes(e->args[i]);
    return n;
}

/* Only loops, ifs, plain stores and prefetches: what this pass reasons
 * about. */
static bool plain(const Stmt *s)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            if (!plain(s->u.seq.items[i]))
                return false;
        return true;
    case ST_FOR: return plain(s->u.loop.body);
    case ST_IF: return plain(s->u.if_.then_) && (!s->u.if_.else_ || plain(s->u.if_.else_));
    case ST_STORE: return !s->u.store.atomic && !s->u.store.async;
    case ST_PREFETCH: return true; /* a hint: it reads and writes nothing */
    default: return false;
    }
}

static IrUse use_of(const Stmt *s, const Buffer *b)
{
    IrUse u = {0};
    ir_buffer_use(s, b, &u);
    return u;
}

static bool reads(const Stmt *s, const Buffer *b) { return use_of(s, b).reads > 0; }

/* No buffer is written by one and touched by the other. */
static bool commute(const Fuse *F, const Stmt *a, const Stmt *b)
{
    if (!plain(a) || !plain(b))
        return false;
    for (int i = 0; i < F->k->nbufs; i++) {
        IrUse ua = use_of(a, F->k->bufs[i]), ub = use_of(b, F->k->bufs[i]);
        if ((ua.writes && (ub.reads || ub.writes)) || (ub.writes && ua.reads))
            return false;
    }
    return true;
}

/* A sequence's items with nested sequences spliced in (same meaning). */
static void flatten(Fuse *F, Stmt *seq)
{
    Stmt *out = ir_seq(F->k, seq->loc);
    for (int i = 0; i < seq->u.seq.n; i++) {
        Stmt *it = seq->u.seq.items[i];
        if (it->op == ST_SEQ) {
            flatten(F, it);
            for (int j = 0; j < it->u.seq.n; j++)
                ir_seq_push(F->k, out, it->u.seq.items[j]);
        } else {
            ir_seq_push(F->k, out, it);
        }
    }
    seq->u.seq = out->u.seq;
}

/* --------------------------------------------------- access pairs */

typedef struct Access {
    const Buffer *buf;
    Expr **idx;
    bool write;
} Access;

typedef struct Accesses {
    Access *a;
    int n, cap;
} Accesses;

static void acc_push(Accesses *s, const Buffer *b, Expr **idx, bool write)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        s->a = realloc(s->a, (size_t)s->cap * sizeof *s->a);
    }
    s->a[s->n++] = (Access){b, idx, write};
}

static void loads_of(const Expr *e, Accesses *s)
{
    if (e->op == EX_LOAD)
        acc_push(s, e->buf, e->args, false);
    for (int i = 0; i < e->nargs; i++)
        loads_of(e->args[i], s);
}

/* The loop variables bound inside some statements, each with its range
 * [0, hi] where its loop's extent is a constant (hi < 0: unknown). */
typedef struct Vars {
    const Var *v[128];
    int64_t hi[128];
    int n;
    bool full; /* more loops than fit: nothing may be assumed of the rest */
} Vars;

static void vars_push(Vars *vs, const Stmt *loop)
{
    if (vs->n == 128) {
        vs->full = true;
        return;
    }
    int64_t ext;
    vs->v[vs->n] = loop->u.loop.var;
    vs->hi[vs->n++] = ir_expr_is_const(loop->u.loop.extent, &ext) && ext > 0 ? ext - 1 : -1;
}

/* Every load and store in s, and the variables its loops bind. */
static void accesses_of(const Stmt *s, Accesses *acc, Vars *vars)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            accesses_of(s->u.seq.items[i], acc, vars);
        break;
    case ST_FOR:
        vars_push(vars, s);
        loads_of(s->u.loop.extent, acc);
        accesses_of(s->u.loop.body, acc, vars);
        break;
    case ST_IF:
        loads_of(s->u.if_.cond, acc);
        accesses_of(s->u.if_.then_, acc, vars);
        if (s->u.if_.else_)
            accesses_of(s->u.if_.else_, acc, vars);
        break;
    case ST_STORE:
        for (int d = 0; d < s->u.store.buf->rank; d++)
            loads_of(s->u.store.idx[d], acc);
        loads_of(s->u.store.value, acc);
        acc_push(acc, s->u.store.buf, s->u.store.idx, true);
        break;
    default: break;
    }
}

static bool mentions_any(const Expr *e, const Vars *vs)
{
    for (int i = 0; i < vs->n; i++)
        if (ir_mentions_var(e, vs->v[i]))
            return true;
    return false;
}

/* e is v + c (either order), with c free of the nests' variables: distinct
 * values of v give distinct values of e. */
static bool moves_with(const Expr *e, const Var *v, const Vars *inner)
{
    if (e->op == EX_VAR)
        return e->var == v;
    if (e->op != EX_ADD)
        return false;
    for (int s = 0; s < 2; s++)
        if (moves_with(e->args[s], v, inner) && !ir_mentions_var(e->args[1 - s], v) &&
            !mentions_any(e->args[1 - s], inner))
            return true;
    return false;
}

/* ------------------------------------------------- strided indices */

/* The inner variables' ranges (loops with constant extents); outer
 * variables and parameters are unknown, so s·v + e is decided by what
 * moves within one iteration of v only. */
static IrRange inner_range(const Expr *e, void *ctx)
{
    const Vars *inner = ctx;
    if (e->op == EX_VAR)
        for (int i = 0; i < inner->n; i++)
            if (inner->v[i] == e->var)
                return inner->hi[i] >= 0 ? (IrRange){0, inner->hi[i], true} : (IrRange){0, 0, false};
    return (IrRange){0, 0, false};
}

static IrRange range_in(const Expr *e, const Vars *inner) { return ir_range_of(e, inner_range, (void *)inner); }

/* An index split as s·v + e: the terms of its sum, signed. */
typedef struct Split {
    int64_t s;          /* v's coefficient; 0: not of the form */
    Expr *t[16];        /* the terms of e */
    bool neg[16];
    int n;
    IrRange e;          /* e's range */
} Split;

static bool split_terms(Expr *x, bool neg, const Var *v, Split *sp)
{
    if (x->op == EX_ADD || (x->op == EX_SUB && dt_is_int(x->dtype)))
        return split_terms(x->args[0], neg, v, sp) && split_terms(x->args[1], x->op == EX_SUB ? !neg : neg, v, sp);
    if (ir_mentions_var(x, v)) {
        int64_t c = 1;
        bool ok = x->op == EX_VAR || (x->op == EX_MUL && ((x->args[0]->op == EX_VAR && x->args[0]->var == v &&
                                                           ir_expr_is_const(x->args[1], &c)) ||
                                                          (x->args[1]->op == EX_VAR && x->args[1]->var == v &&
                                                           ir_expr_is_const(x->args[0], &c))));
        if (!ok || neg || c <= 0 || sp->s)
            return false; /* v elsewhere, a second v term, or a stride not positive */
        sp->s = c;
        return true;
    }
    if (sp->n == 16)
        return false;
    sp->t[sp->n] = x;
    sp->neg[sp->n++] = neg;
    return true;
}

/* idx as s·v + e, e's range from the inner variables; false when idx is
 * not of that form or e's range is unknown. */
static bool split_index(Expr *idx, const Var *v, const Vars *inner, Split *sp)
{
    *sp = (Split){0};
    if (!split_terms(idx, false, v, sp) || !sp->s)
        return false;
    sp->e = (IrRange){0, 0, true};
    for (int i = 0; i < sp->n; i++) {
        IrRange r = range_in(sp->t[i], inner);
        int64_t lo = sp->neg[i] ? -r.hi : r.lo, hi = sp->neg[i] ? -r.lo : r.hi;
        if (!r.known || __builtin_add_overflow(sp->e.lo, lo, &sp->e.lo) ||
            __builtin_add_overflow(sp->e.hi, hi, &sp->e.hi))
            return false;
    }
    return true;
}

/* idx is s·v + e with e in [0, s): iteration v touches only block v of
 * width s in this dimension (returns s, or 0). */
static int64_t block_stride(Expr *idx, const Var *v, const Vars *inner, Split *sp)
{
    if (!split_index(idx, v, inner, sp))
        return 0;
    return sp->e.lo >= 0 && sp->e.hi < sp->s ? sp->s : 0;
}

/* Accesses x (of A) and y (of B) can only touch the same element in the
 * same iteration of v: in some dimension both indices are the same v + c,
 * or both are s·v + e with one s and e in [0, s) (s·i + e = s·j + e' with
 * |e - e'| < s gives i = j). */
static bool same_iteration(const Access *x, const Access *y, const Var *v, const Vars *inner, bool strided)
{
    for (int d = 0; d < x->buf->rank; d++) {
        if (ir_expr_equal(x->idx[d], y->idx[d]) && moves_with(x->idx[d], v, inner))
            return true;
        if (!strided)
            continue;
        Split sx, sy;
        int64_t s = block_stride(x->idx[d], v, inner, &sx);
        if (s && s == block_stride(y->idx[d], v, inner, &sy))
            return true;
    }
    return false;
}

/* The dependence test of step 2 (B's variable already renamed to v);
 * strided blocks only on a CPU (the GPU rule stays the one tested there).
 * On a CPU the nests must also touch a common buffer: fusing two that do
 * not saves a loop's overhead at most, and it can cost much more — a
 * GEMM's A staging fused with B's k-pair packing left the packing a nest
 * codegen no longer copies in register blocks (2.4x slower). */
static bool fusable_accesses(const Fuse *F, const Stmt *a, const Stmt *b, const Var *v)
{
    Accesses aa = {0}, ab = {0};
    Vars inner = {0};
    accesses_of(a, &aa, &inner);
    accesses_of(b, &ab, &inner);
    bool ok = !inner.full, shared = false;
    for (int i = 0; ok && i < aa.n; i++)
        for (int j = 0; ok && j < ab.n; j++) {
            const Access *x = &aa.a[i], *y = &ab.a[j];
            shared |= x->buf == y->buf;
            if (x->buf == y->buf && (x->write || y->write))
                ok = same_iteration(x, y, v, &inner, !F->gpu);
        }
    free(aa.a);
    free(ab.a);
    return ok && (shared || F->gpu);
}

/* ------------------------------------------------------------ fusion */

static void fuse_seq(Fuse *F, Stmt *seq);

static bool fusable_kind(LoopKind k) { return k == LOOP_PARALLEL || k == LOOP_SERIAL; }

/* A perfect nest of parallel loops: each body one loop, down to a body
 * without loops.  Returns its depth (0: not one) and the extents. */
static int perfect_depth(const Stmt *s, Expr **ext)
{
    int n = 0;
    while (s->op == ST_FOR && s->u.loop.kind == LOOP_PARALLEL && n < IR_MAX_RANK) {
        ext[n++] = s->u.loop.extent;
        const Stmt *b = s->u.loop.body;
        while (b->op == ST_SEQ && b->u.seq.n == 1 && b->u.seq.items[0]->op != ST_STORE)
            b = b->u.seq.items[0];
        s = b;
    }
    if (s->op == ST_FOR)
        return 0;
    Accesses none = {0};
    Vars below = {0};
    accesses_of(s, &none, &below); /* any loop left below: not perfect */
    free(none.a);
    return below.n || below.full ? 0 : n;
}

static bool gpu_shapes_match(const Stmt *a, const Stmt *b)
{
    Expr *ea[IR_MAX_RANK], *eb[IR_MAX_RANK];
    int na = perfect_depth(a, ea), nb = perfect_depth(b, eb);
    if (!na || na != nb)
        return false;
    for (int i = 0; i < na; i++)
        if (!ir_expr_equal(ea[i], eb[i]))
            return false;
    return true;
}

static bool contains_loop(const Stmt *s)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            if (contains_loop(s->u.seq.items[i]))
                return true;
        return false;
    case ST_FOR: return true;
    case ST_IF: return contains_loop(s->u.if_.then_) || (s->u.if_.else_ && contains_loop(s->u.if_.else_));
    default: return false;
    }
}

/* CPU: a parallel loop of plain statements (one value per row: a scale,
 * a reciprocal) stays apart from a nest with inner loops.  vectorize runs
 * it over all rows at once; fused, it would run once per row between the
 * inner loops, scalar, and where it turns a row's reduction into that
 * row's factor (absmax → scale → quantise) the chain's latency would stall
 * every row, which the out-of-order window cannot hide across inner loops. */
static bool keeps_vector_leaf(const Fuse *F, const Stmt *a, const Stmt *b)
{
    if (F->gpu)
        return false;
    bool la = !contains_loop(a->u.loop.body), lb = !contains_loop(b->u.loop.body);
    return (la && a->u.loop.kind == LOOP_PARALLEL && !lb) || (lb && b->u.loop.kind == LOOP_PARALLEL && !la);
}

/* A and B as one loop, or NULL when step 2's conditions do not hold. */
static Stmt *try_fuse(Fuse *F, const Stmt *a, const Stmt *b)
{
    if (a->op != ST_FOR || b->op != ST_FOR || !fusable_kind(a->u.loop.kind) ||
        !fusable_kind(b->u.loop.kind) || !ir_expr_equal(a->u.loop.extent, b->u.loop.extent) ||
        !plain(a) || !plain(b) || (F->gpu && !gpu_shapes_match(a, b)) || keeps_vector_leaf(F, a, b))
        return NULL;
    IrSubst sub = {.nvars = 1};
    sub.var[0] = b->u.loop.var;
    sub.by[0] = ir_var(F->k, a->u.loop.var);
    Stmt *bbody = ir_clone_stmt(F->k, b->u.loop.body, &sub);
    if (!fusable_accesses(F, a->u.loop.body, bbody, a->u.loop.var))
        return NULL;
    Stmt *body = ir_seq(F->k, a->loc);
    ir_seq_push(F->k, body, a->u.loop.body);
    ir_seq_push(F->k, body, bbody);
    flatten(F, body);
    fuse_seq(F, body);
    LoopKind kind = a->u.loop.kind == LOOP_PARALLEL && b->u.loop.kind == LOOP_PARALLEL ? LOOP_PARALLEL
                                                                                       : LOOP_SERIAL;
    return ir_for(F->k, a->u.loop.var, a->u.loop.extent, kind, 0, body, a->loc);
}

static void seq_remove(Stmt *seq, int i)
{
    memmove(&seq->u.seq.items[i], &seq->u.seq.items[i + 1],
            (size_t)(seq->u.seq.n - i - 1) * sizeof seq->u.seq.items[0]);
    seq->u.seq.n--;
}

/* Step 2 over one flat sequence: each loop fuses with the first later loop
 * it can reach by commuting past the statements between. */
static void fuse_run(Fuse *F, Stmt *seq)
{
    for (int i = 0; i < seq->u.seq.n; i++) {
        Stmt *a = seq->u.seq.items[i];
        if (a->op != ST_FOR)
            continue;
        for (int j = i + 1; j < seq->u.seq.n; j++) {
            Stmt *f = try_fuse(F, a, seq->u.seq.items[j]);
            if (f) {
                seq->u.seq.items[j] = f;
                seq_remove(seq, i);
                i--; /* the fused loop may fuse further on */
                break;
            }
            if (!commute(F, a, seq->u.seq.items[j]))
                break;
        }
    }
}

/* ------------------------------------------------------------ unswitch */

/* lower's guarded copy: `if c {...} else {...}`, c without loads. */
static bool switchable(const Stmt *s)
{
    return s->op == ST_IF && s->u.if_.else_ && !ir_loads_any(s->u.if_.cond) && plain(s);
}

static int cond_index(Expr **conds, int n, const Expr *c)
{
    for (int i = 0; i < n; i++)
        if (ir_expr_equal(conds[i], c))
            return i;
    return -1;
}

/* The run [from, to) with every condition decided by the bits of `truth`:
 * copies (fresh loop variables), so each version stands alone. */
static Stmt *version(Fuse *F, Stmt *seq, int from, int to, Expr **conds, int nconds, unsigned truth)
{
    Stmt *out = ir_seq(F->k, seq->loc);
    for (int i = from; i < to; i++) {
        const Stmt *s = seq->u.seq.items[i];
        if (switchable(s)) {
            int c = cond_index(conds, nconds, s->u.if_.cond);
            s = (truth >> c) & 1 ? s->u.if_.then_ : s->u.if_.else_;
        }
        ir_seq_push(F->k, out, ir_clone_stmt(F->k, s, &(IrSubst){0}));
    }
    flatten(F, out);
    fuse_seq(F, out);
    return out;
}

/* if c0 { if c1 ... } else { ... }: one version per leaf. */
static Stmt *versions(Fuse *F, Stmt *seq, int from, int to, Expr **conds, int nconds, int c,
                      unsigned truth)
{
    if (c == nconds)
        return version(F, seq, from, to, conds, nconds, truth);
    Stmt *t = ir_seq(F->k, seq->loc), *e = ir_seq(F->k, seq->loc);
    ir_seq_push(F->k, t, versions(F, seq, from, to, conds, nconds, c + 1, truth | 1u << c));
    ir_seq_push(F->k, e, versions(F, seq, from, to, conds, nconds, c + 1, truth));
    return ir_if(F->k, conds[c], t, e, seq->u.seq.items[from]->loc);
}

static int count_loops(const Stmt *s)
{
    int n = 0;
    for (int i = 0; i < s->u.seq.n; i++)
        n += s->u.seq.items[i]->op != ST_IF; /* the arms' nests, in the count below */
    return n;
}

/* Step 1 on the run [from, to) of loops and switchable ifs; true if done. */
static bool unswitch_run(Fuse *F, Stmt *seq, int from, int to)
{
    Expr *conds[MAX_CONDS];
    int nconds = 0, nifs = 0;
    for (int i = from; i < to; i++) {
        const Stmt *s = seq->u.seq.items[i];
        if (!switchable(s))
            continue;
        nifs++;
        if (cond_index(conds, nconds, s->u.if_.cond) < 0) {
            if (nconds == (F->gpu ? 1 : MAX_CONDS))
                return false;
            conds[nconds++] = s->u.if_.cond;
        }
    }
    if (!nifs || to - from < 2)
        return false;
    Stmt *fast = version(F, seq, from, to, conds, nconds, ~0u);
    if (count_loops(fast) >= to - from)
        return false; /* nothing fused: keep the original */
    Stmt *sw = versions(F, seq, from, to, conds, nconds, 0, 0);
    seq->u.seq.items[from] = sw;
    for (int i = from + 1; i < to; i++)
        seq_remove(seq, from + 1);
    return true;
}

static void unswitch(Fuse *F, Stmt *seq)
{
    for (int i = 0; i < seq->u.seq.n; i++) {
        int j = i;
        while (j < seq->u.seq.n && (seq->u.seq.items[j]->op == ST_FOR || switchable(seq->u.seq.items[j])) &&
               plain(seq->u.seq.items[j]))
            j++;
        if (j - i >= 2 && unswitch_run(F, seq, i, j))
            continue;
        i = j > i ? j - 1 : i;
    }
}

/* ------------------------------------------------------------ merge ifs */

/* Does s write a buffer that e loads?  (Loop variables never change.) */
static bool writes_loaded(const Stmt *s, const Expr *e)
{
    if (e->op == EX_LOAD && use_of(s, e->buf).writes)
        return true;
    for (int i = 0; i < e->nargs; i++)
        if (writes_loaded(s, e->args[i]))
            return true;
    return false;
}

/* x then y as one arm (either may be absent). */
static Stmt *joined(Fuse *F, Stmt *x, Stmt *y)
{
    if (!x || !y)
        return x ? x : y;
    Stmt *s = ir_seq(F->k, x->loc);
    ir_seq_push(F->k, s, x);
    ir_seq_push(F->k, s, y);
    flatten(F, s);
    return s;
}

/* Step 0: `if c {A} else {A'}; if c {B} else {B'}` becomes
 * `if c {A; B} else {A'; B'}` when c is the same expression in both and
 * the first if writes nothing c loads (so c still has its value when the
 * second is tested): the nests of A and B, and of A' and B', can then
 * fuse, which unswitch cannot arrange for two ifs that are a run of two. */
static void merge_ifs(Fuse *F, Stmt *seq)
{
    for (int i = 0; i + 1 < seq->u.seq.n; i++) {
        Stmt *a = seq->u.seq.items[i], *b = seq->u.seq.items[i + 1];
        if (a->op != ST_IF || b->op != ST_IF || !ir_expr_equal(a->u.if_.cond, b->u.if_.cond) ||
            writes_loaded(a, a->u.if_.cond))
            continue;
        seq->u.seq.items[i] = ir_if(F->k, a->u.if_.cond, joined(F, a->u.if_.then_, b->u.if_.then_),
                                    joined(F, a->u.if_.else_, b->u.if_.else_), a->loc);
        seq_remove(seq, i + 1);
        i--; /* the merged if may merge with the next */
    }
}

/* Steps 0, 1 and 2 on a sequence and everything in it, innermost first. */
static void fuse_seq(Fuse *F, Stmt *seq)
{
    flatten(F, seq);
    merge_ifs(F, seq);
    for (int i = 0; i < seq->u.seq.n; i++) {
        Stmt *s = seq->u.seq.items[i];
        if (s->op == ST_FOR && s->u.loop.body->op == ST_SEQ)
            fuse_seq(F, s->u.loop.body);
        if (s->op == ST_IF && s->u.if_.then_->op == ST_SEQ)
            fuse_seq(F, s->u.if_.then_);
        if (s->op == ST_IF && s->u.if_.else_ && s->u.if_.else_->op == ST_SEQ)
            fuse_seq(F, s->u.if_.else_);
    }
    unswitch(F, seq);
    fuse_run(F, seq);
}

/* ------------------------------------------------------------ decide */

/* A load-free integer comparison as `hi - lo >= k` (a < b: b - a >= 1). */
typedef struct Fact {
    const Expr *hi, *lo;
    int64_t k;
} Fact;

/* What holds where a walk stands: the tests of the `if`s whose then arm
 * it is in, and the loops around it (their variables' ranges). */
typedef struct Facts {
    Fact f[16];
    int n;
    Vars loops;
} Facts;

/* The least value of Σ sign[i]·e[i] over the loops' ranges (shared terms
 * cancelled first); false when unknown. */
static bool least(const Expr *const *e, const int64_t *sign, int n, const Vars *loops, int64_t *lo)
{
    return ir_least_of_sum(e, sign, n, inner_range, (void *)loops, lo);
}

static bool as_fact(const Expr *e, Fact *f)
{
    if ((e->op != EX_LT && e->op != EX_LE) || !dt_is_int(e->args[0]->dtype) || ir_loads_any(e))
        return false;
    *f = (Fact){e->args[1], e->args[0], e->op == EX_LT};
    return true;
}

static void add_facts(Facts *fs, const Expr *c)
{
    if (c->op == EX_AND) {
        add_facts(fs, c->args[0]);
        add_facts(fs, c->args[1]);
    } else if (fs->n < 16 && as_fact(c, &fs->f[fs->n])) {
        fs->n++;
    }
}

/* 1 when a fact proves q, 0 when one refutes it, -1 otherwise.  With f
 * `fhi - flo >= fk`: q holds when (hi - lo) - (fhi - flo) >= k - fk, and
 * fails when (lo - hi) - (fhi - flo) >= 1 - k - fk. */
static int implied(const Facts *fs, const Fact *q)
{
    for (int i = 0; i < fs->n; i++) {
        const Fact *f = &fs->f[i];
        const Expr *e[4] = {q->hi, q->lo, f->hi, f->lo};
        int64_t lo;
        if (least(e, (int64_t[]){1, -1, -1, 1}, 4, &fs->loops, &lo) && lo >= q->k - f->k)
            return 1;
        if (least(e, (int64_t[]){-1, 1, -1, 1}, 4, &fs->loops, &lo) && lo >= 1 - q->k - f->k)
            return 0;
    }
    return -1;
}

/* e with the comparisons the facts decide folded (new nodes where
 * anything changed: a node may be shared with code outside the arm). */
static Expr *decide(Fuse *F, Expr *e, const Facts *fs)
{
    Fact q;
    if (fs->n && as_fact(e, &q)) {
        int t = implied(fs, &q);
        return t < 0 ? e : ir_const_bool(F->k, t);
    }
    Expr *args[8];
    bool changed = false;
    for (int i = 0; i < e->nargs && i < 8; i++) {
        args[i] = decide(F, e->args[i], fs);
        changed |= args[i] != e->args[i];
    }
    if (!changed)
        return e;
    if (e->op == EX_SELECT && args[0]->op == EX_CONST)
        return args[args[0]->imm.i ? 1 : 2];
    if (e->op == EX_AND || e->op == EX_OR) /* the builder folds a constant side */
        return ir_binary(F->k, e->op, args[0], args[1]);
    Expr *n = ir_clone_expr(F->k, e, &(IrSubst){0});
    for (int i = 0; i < e->nargs; i++)
        n->args[i] = args[i];
    return n;
}

/* Step 2b: in the then arm of `if c`, c's comparisons hold, and decide the
 * selects and ifs they imply: what the window test of a merged or
 * unswitched arm proves of the guards inside it (a composed kernel's
 * `select(row < M, v, 0)` under `bx * 8 + 8 <= M`).  Returns s or what
 * replaces it. */
static Stmt *decide_stmt(Fuse *F, Stmt *s, Facts *fs)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            s->u.seq.items[i] = decide_stmt(F, s->u.seq.items[i], fs);
        return s;
    case ST_FOR: {
        int outside = fs->loops.n;
        s->u.loop.extent = decide(F, s->u.loop.extent, fs); /* (an edge copy's run, as its stores' indices) */
        vars_push(&fs->loops, s);
        s->u.loop.body = decide_stmt(F, s->u.loop.body, fs);
        fs->loops.n = outside;
        return s;
    }
    case ST_IF: {
        s->u.if_.cond = decide(F, s->u.if_.cond, fs);
        if (s->u.if_.cond->op == EX_CONST) {
            Stmt *taken = s->u.if_.cond->imm.i ? s->u.if_.then_ : s->u.if_.else_;
            return taken ? decide_stmt(F, taken, fs) : ir_seq(F->k, s->loc);
        }
        Facts *inside = malloc(sizeof *inside);
        *inside = *fs;
        add_facts(inside, s->u.if_.cond);
        s->u.if_.then_ = decide_stmt(F, s->u.if_.then_, inside);
        free(inside);
        if (s->u.if_.else_)
            s->u.if_.else_ = decide_stmt(F, s->u.if_.else_, fs);
        return s;
    }
    case ST_STORE:
        for (int d = 0; d < s->u.store.buf->rank; d++)
            s->u.store.idx[d] = decide(F, s->u.store.idx[d], fs);
        s->u.store.value = decide(F, s->u.store.value, fs);
        return s;
    default: return s;
    }
}

/* ------------------------------------------------------------ forward */

/* The stores whose values later loads may take (at most one per buffer). */
typedef struct Avails {
    Stmt *st[64];
    int n;
} Avails;

/* Forget what a write to b makes stale: the store to b and stores whose
 * value reads b. */
static void kill_writes(Avails *av, const Buffer *b)
{
    for (int i = 0; i < av->n; i++) {
        const Stmt *s = av->st[i];
        if (s->u.store.buf == b || ir_loads_from(s->u.store.value, b)) {
            av->st[i--] = av->st[--av->n];
        }
    }
}

static void kill_stmt_writes(const Fuse *F, Avails *av, const Stmt *s)
{
    for (int i = 0; i < F->k->nbufs; i++)
        if (use_of(s, F->k->bufs[i]).writes)
            kill_writes(av, F->k->bufs[i]);
}

/* The stored value as a load would see it: rounded to the buffer's dtype. */
static Expr *as_loaded(Fuse *F, const Stmt *st)
{
    Expr *v = st->u.store.value;
    DType dt = st->u.store.buf->dtype;
    if (v->dtype == dt)
        return v;
    return ir_cast(F->k, dt, v);
}

static bool same_idx(Expr *const *a, Expr *const *b, int rank)
{
    for (int d = 0; d < rank; d++)
        if (!ir_expr_equal(a[d], b[d]))
            return false;
    return true;
}

/* e with the loads an available store answers replaced by its value.
 * Expressions may be shared between statements (lower reuses index
 * trees), so a changed node is a copy, never an edit. */
static Expr *forward_expr(Fuse *F, Expr *e, const Avails *av)
{
    if (e->op == EX_LOAD)
        for (int i = 0; i < av->n; i++) {
            const Stmt *s = av->st[i];
            if (s->u.store.buf == e->buf && same_idx(s->u.store.idx, e->args, e->buf->rank))
                return as_loaded(F, s);
        }
    Expr *copy = NULL;
    for (int i = 0; i < e->nargs; i++) {
        Expr *a = forward_expr(F, e->args[i], av);
        if (a == e->args[i])
            continue;
        if (!copy) {
            copy = arena_alloc(F->k->arena, sizeof *copy);
            *copy = *e;
            copy->args = arena_alloc(F->k->arena, (size_t)e->nargs * sizeof *copy->args);
            memcpy(copy->args, e->args, (size_t)e->nargs * sizeof *copy->args);
        }
        copy->args[i] = a;
    }
    return copy ? copy : e;
}

/* A stored value may take a forwarded one (the types stay as the builder
 * made them: float values widen to f32 in every executor alike). */
static bool forwardable(const Stmt *s)
{
    const Buffer *b = s->u.store.buf;
    DType vt = s->u.store.value->dtype;
    if (b->scope == SCOPE_GLOBAL || s->u.store.atomic || s->u.store.async)
        return false;
    if (expr_nodes(s->u.store.value) > MAX_VALUE_NODES || ir_loads_from(s->u.store.value, b))
        return false; /* a value reading b would read the element this store replaced */
    return vt == b->dtype || (dt_is_float(vt) && dt_is_float(b->dtype) && b->dtype != DT_F4E2M1);
}

static void forward_seq(Fuse *F, Stmt *seq, Avails *av);

static void forward_stmt(Fuse *F, Stmt *s, Avails *av)
{
    switch (s->op) {
    case ST_SEQ: forward_seq(F, s, av); break;
    case ST_STORE:
        for (int d = 0; d < s->u.store.buf->rank; d++)
            s->u.store.idx[d] = forward_expr(F, s->u.store.idx[d], av);
        s->u.store.value = forward_expr(F, s->u.store.value, av);
        kill_writes(av, s->u.store.buf);
        if (forwardable(s) && !F->no_math && av->n < 64)
            av->st[av->n++] = s;
        break;
    case ST_IF: {
        s->u.if_.cond = forward_expr(F, s->u.if_.cond, av);
        Avails t = *av, e = *av;
        forward_stmt(F, s->u.if_.then_, &t);
        if (s->u.if_.else_)
            forward_stmt(F, s->u.if_.else_, &e);
        kill_stmt_writes(F, av, s);
        break;
    }
    case ST_FOR: {
        Avails none = {0}; /* the body repeats: nothing from before holds in it */
        kill_stmt_writes(F, av, s);
        forward_stmt(F, s->u.loop.body, &none);
        break;
    }
    default: kill_stmt_writes(F, av, s); av->n = 0; break;
    }
}

/* Store i of seq is overwritten by a later store at the same indices
 * with only stores between that do not read its buffer. */
static bool overwritten(const Stmt *seq, int i)
{
    const Stmt *s = seq->u.seq.items[i];
    const Buffer *b = s->u.store.buf;
    for (int j = i + 1; j < seq->u.seq.n; j++) {
        const Stmt *t = seq->u.seq.items[j];
        if (t->op != ST_STORE || reads(t, b))
            return false;
        if (t->u.store.buf == b && !t->u.store.atomic && same_idx(t->u.store.idx, s->u.store.idx, b->rank))
            return true;
    }
    return false;
}

static bool calls_math(const Expr *e)
{
    if (e->op == EX_EXP || e->op == EX_EXP2 || e->op == EX_LOG || e->op == EX_SIGMOID || e->op == EX_SILU ||
        e->op == EX_SOFTPLUS)
        return true;
    for (int i = 0; i < e->nargs; i++)
        if (calls_math(e->args[i]))
            return true;
    return false;
}

/* Forwarding copies the value to each load; worth it for a value that
 * calls math (exp, silu: calls codegen does not merge) only where every
 * read of the buffer comes after the store in this sequence, so that the
 * store dies and the value is still computed once. */
static bool math_may_forward(const Fuse *F, const Stmt *seq, int i)
{
    const Stmt *st = seq->u.seq.items[i];
    if (st->op != ST_STORE || !calls_math(st->u.store.value))
        return true;
    int here = 0;
    for (int j = i + 1; j < seq->u.seq.n; j++)
        here += use_of(seq->u.seq.items[j], st->u.store.buf).reads;
    return here == use_of(F->k->body, st->u.store.buf).reads;
}

/* An update in place, X[I] = f(X[I]) (f reading X only at I), cannot be
 * forwarded: a later load of X[I] would get f of the new X[I].  So it
 * sinks instead, past each next store S that touches X only by loading
 * X[I], writes nothing f reads and nothing f's value depends on: S then
 * loads f (of the old X[I], as it now runs first) — act_quant's
 * `t = clamp(t / s); q = t` becomes `q = clamp(t / s); t = clamp(t / s)`,
 * LLVM computes the clamp once, and the dead-store step can drop t's
 * store, now that the nest reads X only before writing it
 * (reads_before_write). */
static void sink_updates(Fuse *F, Stmt *seq)
{
    for (int i = seq->u.seq.n - 2; i >= 0; i--) {
        Stmt *up = seq->u.seq.items[i];
        if (up->op != ST_STORE || up->u.store.atomic || up->u.store.async)
            continue;
        const Buffer *x = up->u.store.buf;
        Expr *f = as_loaded(F, up);
        if (x->scope == SCOPE_GLOBAL || !ir_loads_from(up->u.store.value, x) ||
            !ir_loads_only_at(up->u.store.value, x, up->u.store.idx) || expr_nodes(f) > MAX_VALUE_NODES ||
            calls_math(f)) /* LLVM merges copies of f, but not of its math calls (swiglu's silu) */
            continue;
        for (int j = i + 1; j < seq->u.seq.n; j++) {
            Stmt *st = seq->u.seq.items[j];
            if (st->op != ST_STORE || st->u.store.atomic || st->u.store.async || st->u.store.buf == x ||
                ir_loads_from(up->u.store.value, st->u.store.buf) || !ir_loads_only_at(st->u.store.value, x, up->u.store.idx))
                break;
            bool idx_ok = true;
            for (int d = 0; d < st->u.store.buf->rank; d++)
                idx_ok = idx_ok && !ir_loads_from(st->u.store.idx[d], x);
            if (!idx_ok)
                break;
            Avails only_up = {.st = {up}, .n = 1}; /* its loads of X[I] become f */
            st->u.store.value = forward_expr(F, st->u.store.value, &only_up);
            seq->u.seq.items[j - 1] = st;
            seq->u.seq.items[j] = up;
        }
    }
}

static void forward_seq(Fuse *F, Stmt *seq, Avails *av)
{
    sink_updates(F, seq);
    for (int i = 0; i < seq->u.seq.n; i++) {
        F->no_math = !math_may_forward(F, seq, i);
        forward_stmt(F, seq->u.seq.items[i], av);
    }
    for (int i = 0; i < seq->u.seq.n; i++) {
        Stmt *s = seq->u.seq.items[i];
        if (s->op == ST_STORE && s->u.store.buf->scope != SCOPE_GLOBAL && !s->u.store.atomic &&
            !s->u.store.async && overwritten(seq, i))
            seq_remove(seq, i--);
    }
}

/* --------------------------------------------------------- dead stores */

typedef enum { NEITHER, LIVE, KILLED } Fate;

typedef struct Frame {
    Stmt *seq;   /* a sequence on the way down */
    int pos;     /* the item being looked at */
    Stmt *owner; /* the FOR or IF whose body or arm seq is; NULL at the top */
} Frame;


static bool const_is(const Expr *e, int64_t want)
{
    int64_t v;
    return ir_expr_is_const(e, &v) && v == want;
}

/* The part of a buffer a store must reach: all of it (NULL), or block v
 * of dimension dim — indices s·v + 0 .. s·v + s-1 there — and in each
 * dimension d with fixed[d] set, only the index fixed[d]. */
typedef struct Slice {
    int dim;
    const Var *v;
    int64_t s;
    const Var *fixed[IR_MAX_RANK];
} Slice;

/* A store to b at the loop variables `vars` (extents ext) covers all of b
 * (or of the slice: there, an index s·v + w with w one of vars). */
static bool covers(const Stmt *st, const Buffer *b, const Var *const *vars, Expr *const *ext, int n,
                   const Slice *sl)
{
    bool used[64] = {false};
    for (int d = 0; d < b->rank; d++) {
        int64_t dim;
        if (!ir_expr_is_const(b->shape[d], &dim))
            return false;
        Expr *e = st->u.store.idx[d];
        if (sl && sl->fixed[d]) {
            if (e->op == EX_VAR && e->var == sl->fixed[d])
                continue;
            return false;
        }
        if (sl && d == sl->dim) {
            Split sp = {0};
            if (!split_terms(e, false, sl->v, &sp) || sp.s != sl->s || sp.n > 1 || (sp.n == 1 && sp.neg[0]))
                return false;
            if (sp.n == 0 && sl->s == 1)
                continue;
            e = sp.n ? sp.t[0] : e;
            dim = sl->s;
        }
        if (dim == 1 && const_is(e, 0))
            continue;
        int v = 0;
        while (v < n && !(e->op == EX_VAR && e->var == vars[v]))
            v++;
        if (v == n || used[v] || !const_is(ext[v], dim))
            return false;
        used[v] = true;
    }
    return true;
}

/* Does s store every element of b (or of the slice) unconditionally (ifs
 * not entered; enclosing loops of the store run at least once)? */
static bool overwrites(const Stmt *s, const Buffer *b, const Var **vars, Expr **ext, int n, const Slice *sl)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            if (overwrites(s->u.seq.items[i], b, vars, ext, n, sl))
                return true;
        return false;
    case ST_FOR: {
        int64_t e;
        if (n == 64 || !ir_expr_is_const(s->u.loop.extent, &e) || e < 1)
            return false;
        vars[n] = s->u.loop.var;
        ext[n] = s->u.loop.extent;
        return overwrites(s->u.loop.body, b, vars, ext, n + 1, sl);
    }
    case ST_STORE: return s->u.store.buf == b && !s->u.store.atomic && covers(s, b, vars, ext, n, sl);
    default: return false;
    }
}

static bool read_after_write(const Stmt *s, const Buffer *b, const Slice *sl);

/* What s, taken whole, does to b: reads it, or stores all of it. */
static Fate fate_of_leaf(const Stmt *s, const Buffer *b)
{
    if (reads(s, b))
        return LIVE;
    const Var *vars[64];
    Expr *ext[64];
    return overwrites(s, b, vars, ext, 0, NULL) ? KILLED : NEITHER;
}

/* What s does to b's old contents, read in program order. */
static Fate fate(const Stmt *s, const Buffer *b)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++) {
            Fate f = fate(s->u.seq.items[i], b);
            if (f != NEITHER)
                return f;
        }
        return NEITHER;
    case ST_IF: {
        if (ir_loads_from(s->u.if_.cond, b))
            return LIVE;
        Fate t = fate(s->u.if_.then_, b), e = s->u.if_.else_ ? fate(s->u.if_.else_, b) : NEITHER;
        return t == LIVE || e == LIVE ? LIVE : t == KILLED && e == KILLED ? KILLED : NEITHER;
    }
    case ST_FOR: {
        /* a loop that reads b may still overwrite it before each read
         * (rmsnorm's normalising steps after its sum of squares, through
         * the same scratch tile) */
        Slice whole = {.dim = -1};
        return !reads(s, b) ? fate_of_leaf(s, b) : read_after_write(s, b, &whole) ? KILLED : LIVE;
    }
    default: return fate_of_leaf(s, b);
    }
}

/* Can anything after item frames[depth-1].pos read what it stored in b? */
static bool live_after(const Frame *fr, int depth, const Buffer *b)
{
    for (int l = depth - 1; l >= 0; l--) {
        const Stmt *seq = fr[l].seq;
        for (int i = fr[l].pos + 1; i < seq->u.seq.n; i++) {
            Fate f = fate(seq->u.seq.items[i], b);
            if (f != NEITHER)
                return f == LIVE;
        }
        if (fr[l].owner && fr[l].owner->op == ST_FOR) /* the next iteration */
            for (int i = 0; i <= fr[l].pos; i++) {
                Fate f = fate(seq->u.seq.items[i], b);
                if (f == LIVE)
                    return true;
                if (f == KILLED)
                    break; /* the loop's exit still leads outward */
            }
    }
    return false;
}

/* Stores to b in s become nothing. */
static void drop_stores(Fuse *F, Stmt *s, const Buffer *b)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++) {
            Stmt *it = s->u.seq.items[i];
            if (it->op == ST_STORE && it->u.store.buf == b)
                s->u.seq.items[i] = ir_seq(F->k, it->loc);
            else
                drop_stores(F, it, b);
        }
        break;
    case ST_FOR: drop_stores(F, s->u.loop.body, b); break;
    case ST_IF:
        drop_stores(F, s->u.if_.then_, b);
        if (s->u.if_.else_)
            drop_stores(F, s->u.if_.else_, b);
        break;
    default: break;
    }
}

static void dead_stores_in(Fuse *F, Frame *fr, int depth);

/* A perfect nest whose innermost body is plain stores, touching b only at
 * one index tuple of the nest's own variables (one element per iteration)
 * and storing it only after every load of it: what the nest reads of b
 * are the values from before it, never its own stores (sink_updates'
 * `q = f(t[i, j]); t[i, j] = f(t[i, j])`). */
static bool reads_before_write(const Stmt *s, const Buffer *b)
{
    const Var *vars[IR_MAX_RANK + 4];
    int nv = 0;
    while (s->op == ST_FOR && nv < IR_MAX_RANK + 4) {
        vars[nv++] = s->u.loop.var;
        s = s->u.loop.body;
        while (s->op == ST_SEQ && s->u.seq.n == 1 && s->u.seq.items[0]->op == ST_FOR)
            s = s->u.seq.items[0];
    }
    if (s->op != ST_SEQ)
        return false;
    Expr *const *idx = NULL;
    int last_load = -1, first_store = -1;
    for (int i = 0; i < s->u.seq.n; i++) {
        const Stmt *st = s->u.seq.items[i];
        if (st->op == ST_SEQ && st->u.seq.n == 0)
            continue; /* a store already dropped */
        if (st->op != ST_STORE)
            return false;
        if (st->u.store.buf == b) {
            if (!idx)
                idx = st->u.store.idx;
            if (!same_idx(st->u.store.idx, idx, b->rank))
                return false;
            first_store = first_store < 0 ? i : first_store;
        }
        bool loads = ir_loads_from(st->u.store.value, b);
        for (int d = 0; d < st->u.store.buf->rank; d++)
            if (ir_loads_from(st->u.store.idx[d], b))
                return false;
        if (loads)
            last_load = i;
    }
    if (!idx || (last_load > first_store && first_store >= 0))
        return false;
    for (int i = 0; i < s->u.seq.n; i++)
        if (s->u.seq.items[i]->op == ST_STORE && !ir_loads_only_at(s->u.seq.items[i]->u.store.value, b, idx))
            return false;
    /* one element per iteration: each of the nest's variables is one
     * dimension's whole index, and the other dimensions' indices do not
     * change in the nest */
    for (int v = 0; v < nv; v++) {
        int found = 0;
        for (int d = 0; d < b->rank; d++) {
            if (idx[d]->op == EX_VAR && idx[d]->var == vars[v])
                found++;
            else if (ir_mentions_var(idx[d], vars[v]))
                return false;
        }
        if (found != 1)
            return false;
    }
    return true;
}

static void dead_stores_item(Fuse *F, Frame *fr, int depth, Stmt *s)
{
    if (s->op == ST_FOR && plain(s))
        for (int i = 0; i < F->k->nbufs; i++) {
            const Buffer *b = F->k->bufs[i];
            IrUse u = use_of(s, b);
            if (b->scope != SCOPE_GLOBAL && u.writes && (!u.reads || reads_before_write(s, b)) &&
                !live_after(fr, depth, b))
                drop_stores(F, s, b);
        }
    Stmt *kids[2] = {NULL, NULL};
    if (s->op == ST_SEQ) /* a nested sequence (an unswitched arm): no owner */
        kids[0] = s;
    if (s->op == ST_FOR)
        kids[0] = s->u.loop.body;
    if (s->op == ST_IF) {
        kids[0] = s->u.if_.then_;
        kids[1] = s->u.if_.else_;
    }
    for (int c = 0; c < 2; c++)
        if (kids[c] && kids[c]->op == ST_SEQ && depth < 64) {
            fr[depth] = (Frame){kids[c], 0, s->op == ST_SEQ ? NULL : s};
            dead_stores_in(F, fr, depth + 1);
        }
}

static void dead_stores_in(Fuse *F, Frame *fr, int depth)
{
    Stmt *seq = fr[depth - 1].seq;
    for (int i = 0; i < seq->u.seq.n; i++) {
        fr[depth - 1].pos = i;
        dead_stores_item(F, fr, depth, seq->u.seq.items[i]);
    }
}

/* Loops and ifs left without a store do nothing (their conditions and
 * extents have no effects), nor do loops of no steps: removed, and
 * sequences flattened. */
static bool prune(Fuse *F, Stmt *s)
{
    switch (s->op) {
    case ST_SEQ: {
        flatten(F, s);
        for (int i = 0; i < s->u.seq.n; i++)
            if (!prune(F, s->u.seq.items[i]))
                seq_remove(s, i--);
        return s->u.seq.n > 0;
    }
    case ST_FOR: { /* (a loop of no steps: an edge copy's empty run, bounds having folded its start) */
        int64_t n;
        bool body = prune(F, s->u.loop.body);
        return body && !(ir_expr_is_const(s->u.loop.extent, &n) && n <= 0);
    }
    case ST_IF: {
        bool t = prune(F, s->u.if_.then_);
        bool e = s->u.if_.else_ && prune(F, s->u.if_.else_);
        return t || e;
    }
    default: return true;
    }
}

/* ------------------------------------------------------------ contract */

/* Step 5, on a scratch buffer b and a loop L over v that holds every
 * access to b: when each access indexes dimension d as s·v + e, e in
 * [0, s) (one s), iteration v touches only block v of that dimension; when
 * moreover each iteration writes its whole block before reading any of it,
 * no value crosses iterations, so one block suffices: shape[d] = s, the
 * indices e. */
typedef struct Contraction {
    Buffer *b;
    Slice sl;
    Vars inner; /* the variables bound inside L */
} Contraction;

/* Dimension and stride every access in acc agrees on (sl->dim < 0: none). */
static void find_slice(Contraction *c, const Accesses *acc, const Var *v)
{
    c->sl = (Slice){.dim = -1, .v = v};
    for (int d = 0; d < c->b->rank; d++) {
        int64_t s = 0, dim;
        bool ok = ir_expr_is_const(c->b->shape[d], &dim);
        for (int i = 0; ok && i < acc->n; i++) {
            Split sp;
            if (acc->a[i].buf != c->b)
                continue;
            int64_t si = block_stride(acc->a[i].idx[d], v, &c->inner, &sp);
            ok = si && (!s || si == s);
            s = si;
        }
        if (ok && s && s < dim) {
            c->sl = (Slice){.dim = d, .v = v, .s = s};
            return;
        }
    }
}

static bool written_first(const Stmt *body, const Buffer *b, const Slice *sl);

/* A loop over w whose accesses to b all index some free dimension as w,
 * over all of it, and each of whose iterations writes its row of the
 * slice before reading it: by its end it has written the whole slice, and
 * every read in it came after the write of its element. */
static bool rows_written_first(const Stmt *loop, const Buffer *b, const Slice *sl)
{
    int64_t ext, dim;
    if (loop->op != ST_FOR || !ir_expr_is_const(loop->u.loop.extent, &ext))
        return false;
    Accesses acc = {0};
    Vars below = {0};
    accesses_of(loop->u.loop.body, &acc, &below);
    bool found = false;
    Slice row = *sl;
    for (int d = 0; d < b->rank && !found; d++) {
        if (d == sl->dim || sl->fixed[d] || !ir_expr_is_const(b->shape[d], &dim) || dim != ext)
            continue;
        found = true;
        for (int i = 0; found && i < acc.n; i++) {
            const Expr *e = acc.a[i].idx[d];
            found = acc.a[i].buf != b || (e->op == EX_VAR && e->var == loop->u.loop.var);
        }
        row.fixed[d] = loop->u.loop.var;
    }
    free(acc.a);
    return found && written_first(loop->u.loop.body, b, &row);
}

/* Whether items i.. of body are the runs of one row of a copy split at a
 * buffer's edges (lower_row_runs) that store all of the slice: b's row
 * that the slice fixes.  A column sum's fast arm (the copy forwarded into
 * the sum) kept its store of the tile because the edge arm's split copy
 * was not seen to overwrite each row before its sum read it (1000 x 1000,
 * the store dropped by hand: 0.148 -> 0.133 ms). */
static bool runs_overwrite_row(const Stmt *body, int i, const Buffer *b, const Slice *sl)
{
    Stmt *st[3];
    int n = lower_row_runs(body, i, st);
    if (!n || st[0]->u.store.buf != b || sl->dim >= 0 || !sl->fixed[0] || sl->fixed[1])
        return false;
    const Expr *row = st[0]->u.store.idx[0];
    for (int r = 0; r < n; r++)
        if (reads(body->u.seq.items[i + r], b))
            return false;
    return row->op == EX_VAR && row->var == sl->fixed[0];
}

/* Whether body's items, in order, overwrite the slice of b before any
 * read of it (1; reads in that item come after their element's write), or
 * read it first (0), or neither (-1).  A nested sequence (an unswitched
 * arm, before prune flattens it) is looked into: taken as one item, its
 * reads had kept rmsnorm_quant's sum of squares storing its dead squares. */
static int first_access(const Stmt *body, const Buffer *b, const Slice *sl)
{
    int n = body->op == ST_SEQ ? body->u.seq.n : 1;
    for (int i = 0; i < n; i++) {
        const Stmt *it = body->op == ST_SEQ ? body->u.seq.items[i] : body;
        if (it->op == ST_SEQ) {
            int r = first_access(it, b, sl);
            if (r >= 0)
                return r;
            continue;
        }
        if (runs_overwrite_row(body, i, b, sl))
            return 1;
        if (reads(it, b))
            return read_after_write(it, b, sl);
        const Var *vars[64];
        Expr *ext[64];
        if (overwrites(it, b, vars, ext, 0, sl))
            return 1;
    }
    return -1;
}

/* Each iteration of L writes its slice of b before reading any of it. */
static bool written_first(const Stmt *body, const Buffer *b, const Slice *sl)
{
    return first_access(body, b, sl) == 1;
}

/* s reads b and overwrites the slice, each read after the write of the
 * element it reads: row by row, or in both arms of an if, or in a loop
 * that does so each time round and runs at least once. */
static bool read_after_write(const Stmt *s, const Buffer *b, const Slice *sl)
{
    int64_t n;
    switch (s->op) {
    case ST_IF:
        return !ir_loads_from(s->u.if_.cond, b) && s->u.if_.else_ && written_first(s->u.if_.then_, b, sl) &&
               written_first(s->u.if_.else_, b, sl);
    case ST_FOR:
        return !ir_loads_from(s->u.loop.extent, b) &&
               (rows_written_first(s, b, sl) ||
                (ir_expr_is_const(s->u.loop.extent, &n) && n >= 1 && written_first(s->u.loop.body, b, sl)));
    default: return false;
    }
}

/* The index s·v + e as e. */
static Expr *block_offset(Fuse *F, const Contraction *c, Expr *idx)
{
    Split sp;
    split_index(idx, c->sl.v, &c->inner, &sp); /* holds: find_slice checked it */
    Expr *e = NULL;
    for (int i = 0; i < sp.n; i++)
        e = !e && !sp.neg[i] ? sp.t[i]
                             : ir_binary(F->k, sp.neg[i] ? EX_SUB : EX_ADD, e ? e : ir_const_i(F->k, 0), sp.t[i]);
    return e ? e : ir_const_i(F->k, 0);
}

/* e with its loads of b indexed within the block (copies, never edits:
 * expression nodes may be shared). */
static Expr *contract_expr(Fuse *F, const Contraction *c, Expr *e)
{
    Expr *copy = NULL;
    for (int i = 0; i < e->nargs; i++) {
        Expr *a = contract_expr(F, c, e->args[i]);
        if (a == e->args[i] && !(e->op == EX_LOAD && e->buf == c->b && i == c->sl.dim))
            continue;
        if (!copy) {
            copy = arena_alloc(F->k->arena, sizeof *copy);
            *copy = *e;
            copy->args = arena_alloc(F->k->arena, (size_t)e->nargs * sizeof *copy->args);
            memcpy(copy->args, e->args, (size_t)e->nargs * sizeof *copy->args);
        }
        copy->args[i] = e->op == EX_LOAD && e->buf == c->b && i == c->sl.dim ? block_offset(F, c, a) : a;
    }
    return copy ? copy : e;
}

static void contract_stmt(Fuse *F, const Contraction *c, Stmt *s)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            contract_stmt(F, c, s->u.seq.items[i]);
        break;
    case ST_FOR:
        s->u.loop.extent = contract_expr(F, c, s->u.loop.extent);
        contract_stmt(F, c, s->u.loop.body);
        break;
    case ST_IF:
        s->u.if_.cond = contract_expr(F, c, s->u.if_.cond);
        contract_stmt(F, c, s->u.if_.then_);
        if (s->u.if_.else_)
            contract_stmt(F, c, s->u.if_.else_);
        break;
    case ST_STORE: {
        int rank = s->u.store.buf->rank;
        Expr **idx = arena_alloc(F->k->arena, (size_t)(rank ? rank : 1) * sizeof *idx);
        for (int d = 0; d < rank; d++)
            idx[d] = contract_expr(F, c, s->u.store.idx[d]);
        if (s->u.store.buf == c->b)
            idx[c->sl.dim] = block_offset(F, c, idx[c->sl.dim]);
        s->u.store.idx = idx;
        s->u.store.value = contract_expr(F, c, s->u.store.value);
        break;
    }
    default: break;
    }
}

/* b's strides are the row-major ones of its constant shape. */
static bool dense(const Buffer *b)
{
    int64_t want = 1, dim, got;
    for (int d = b->rank - 1; d >= 0; d--) {
        if (!ir_expr_is_const(b->shape[d], &dim) || !ir_expr_is_const(b->stride[d], &got) || got != want)
            return false;
        want *= dim;
    }
    return true;
}

static void shrink(Fuse *F, Buffer *b, int dim, int64_t s)
{
    b->shape[dim] = ir_const_i(F->k, s);
    int64_t stride = 1, n;
    for (int d = b->rank - 1; d >= 0; d--) {
        b->stride[d] = ir_const_i(F->k, stride);
        ir_expr_is_const(b->shape[d], &n);
        stride *= n;
    }
}

/* Contract b to loop L if step 5's conditions hold. */
static bool contract_in(Fuse *F, Buffer *b, Stmt *L)
{
    if (L->op != ST_FOR || !plain(L) || ir_loads_from(L->u.loop.extent, b))
        return false;
    Contraction c = {.b = b};
    Accesses acc = {0};
    accesses_of(L->u.loop.body, &acc, &c.inner);
    if (c.inner.n && !c.inner.full) /* innermost: forwarding's business, and vectorize's loop */
        find_slice(&c, &acc, L->u.loop.var);
    free(acc.a);
    if (c.sl.dim < 0 || !written_first(L->u.loop.body, b, &c.sl))
        return false;
    contract_stmt(F, &c, L->u.loop.body);
    shrink(F, b, c.sl.dim, c.sl.s);
    if (L->u.loop.kind == LOOP_PARALLEL)
        L->u.loop.kind = LOOP_SERIAL; /* its iterations now share b's block */
    return true;
}

/* The loops holding every access to b (use counts equal to the kernel's),
 * outermost first, until one contracts it. */
static bool contract_under(Fuse *F, Buffer *b, Stmt *s, IrUse all)
{
    IrUse u = use_of(s, b);
    if (u.reads != all.reads || u.writes != all.writes)
        return false;
    if (s->op == ST_FOR && contract_in(F, b, s))
        return true;
    Stmt *kids[2] = {NULL, NULL};
    if (s->op == ST_FOR)
        kids[0] = s->u.loop.body;
    if (s->op == ST_IF) {
        kids[0] = s->u.if_.then_;
        kids[1] = s->u.if_.else_;
    }
    if (s->op == ST_SEQ)
        for (int i = 0; i < s->u.seq.n; i++)
            if (contract_under(F, b, s->u.seq.items[i], all))
                return true;
    for (int i = 0; i < 2; i++)
        if (kids[i] && contract_under(F, b, kids[i], all))
            return true;
    return false;
}

static void contract(Fuse *F)
{
    for (int i = F->k->nargs; i < F->k->nbufs; i++) {
        Buffer *b = F->k->bufs[i];
        IrUse all = use_of(F->k->body, b);
        if (b->scope != SCOPE_GLOBAL && dense(b) && (all.reads || all.writes))
            contract_under(F, b, F->k->body, all);
    }
}

bool pass_fuse(Kernel *k, const TargetInfo *t, Diag *d)
{
    (void)d;
    if (k->level != LEVEL_LOOP)
        return true;
    Fuse F = {.k = k, .gpu = t->gpu_sm > 0};
    fuse_seq(&F, k->body);
    Facts *none = calloc(1, sizeof *none);
    decide_stmt(&F, k->body, none);
    free(none);
    Avails av = {0};
    forward_seq(&F, k->body, &av);
    Frame fr[64] = {{k->body, 0, NULL}};
    dead_stores_in(&F, fr, 1);
    prune(&F, k->body);
    if (!F.gpu)
        contract(&F);
    ir_drop_unused_buffers(k);
    return true;
}
