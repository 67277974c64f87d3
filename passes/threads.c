/* threads.c — Loop IR of one logical thread per block → GPU Loop IR with
 * nthreads threads per block (see "Threads" in ir/ir.h).
 *
 * The block's statements run in every thread ("uniform" code) except:
 *   - a nest of parallel loops is flattened to one index space and spread
 *     cyclically over the threads (iteration f runs in thread f % NT, so
 *     neighbouring threads touch neighbouring elements: coalesced), and
 *     everything inside it runs in that one thread;
 *   - other work with side effects (a store, or a loop or if holding one but
 *     no parallel loop) runs in thread 0 only, guarded by `tid == 0`.
 *   - a MICRO_GEMM (tensor-core product) is issued by all threads together;
 *     its accumulator takes the MMA layout of ir.h, and every nest over the
 *     accumulator is distributed in that layout instead of cyclically.  On
 *     sm_90a a product whose operands are shared tiles, A K-major and B
 *     K-major or (16-bit types) MN-major, and whose accumulator splits into
 *     64-row pieces over warpgroups runs as wgmma (plan_wgmma): warpgroup
 *     layout, operands stored swizzled (every access rewritten,
 *     swizzle_index), and the matrix descriptors of each instruction on the
 *     MICRO_GEMM once shared memory is laid out.
 * Memory follows from that: a scratch buffer that every access reaches at
 * the element its thread owns becomes a private array (registers); other
 * LOCAL buffers touched only inside distributed nests stay private; every
 * other scratch buffer becomes SHARED, one per block, with rows padded where
 * tensor-core operand loads would hit one bank.  Barriers then order the
 * phases where the data flow needs them: two accesses to one element by
 * different threads, one a write, with no barrier between (accesses that
 * two nests of the same distribution make at the element their thread owns
 * are by one thread, and need none).  The shared total is checked
 * against the target's limit here, where it is first known. */
#include "passes/passes.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct Threads {
    Kernel *k;
    const TargetInfo *t;
    Var *tid;
    unsigned char *uniform_use; /* by Buffer.id: touched outside distributed nests */
    int nids;                   /* ids below this have entries in the by-id arrays */
    Stmt **phases;              /* the statements this pass made: distributed */
    bool *phase_one;            /* loops, and (phase_one) thread-0 guards */
    /* by phase, then Buffer.id (below nkeys[phase]): the distribution its
     * accesses to the buffer all follow at owned elements (dist_key), or
     * NOT_OWNED, or 0 (not accessed); NULL for thread-0 phases */
    uint16_t **phase_keys;
    int *phase_nkeys;
    int nphases, capphases;
    /* Register candidates: scratch accesses whose index is exactly the
     * element a distributed nest's thread owns (see find_owned). */
    unsigned char *misaligned;  /* by Buffer.id: some access is not owned */
    /* an owned access's private index: slot, or slot * V + elem where a
     * thread takes V consecutive elements per round */
    struct Owned { Expr *load; Stmt *store; Var *slot, *elem; int64_t V; } *owned;
    int nowned, capowned;
    /* by Buffer.id: the distribution its owned accesses follow: 0 none yet,
     * 1 cyclic, 2 + g for the layout of the g-th MICRO_GEMM's accumulator */
    int *layout_of;
    /* by Buffer.id: 2 + g for a fragment that takes accumulator g's layout
     * without being one — combined with it element by element (a partial
     * product added into a running sum), see adopt_nest */
    int *adopted;
    /* by Buffer.id: the elements per thread and round (V) that every cyclic
     * nest reaching the fragment at owned elements uses (agree_nest) */
    int64_t *chunk_of;
    int cur_layout; /* the layout of the nest find_owned is walking */
    MmaLayout mma[16];
    Stmt *mma_stmt[16]; /* the first product into each accumulator */
    int nmma;
    Stmt *uses[64];     /* every tensor-core product, and its accumulator */
    int use_mma[64];
    int nuses;
    /* sm_90a: the products that run as wgmma (see plan_wgmma), and the
     * operand buffers stored in their swizzled layout, W bytes wide */
    Stmt *wg[64];
    int nwg;
    Buffer *swz[64];
    int swz_w[64];
    int nswz;
} Threads;

static void add_phase(Threads *T, Stmt *s, bool one, uint16_t *keys, int nkeys)
{
    if (T->nphases == T->capphases) {
        T->capphases = T->capphases ? 2 * T->capphases : 32;
        T->phases = realloc(T->phases, (size_t)T->capphases * sizeof *T->phases);
        T->phase_one = realloc(T->phase_one, (size_t)T->capphases * sizeof *T->phase_one);
        T->phase_keys = realloc(T->phase_keys, (size_t)T->capphases * sizeof *T->phase_keys);
        T->phase_nkeys = realloc(T->phase_nkeys, (size_t)T->capphases * sizeof *T->phase_nkeys);
    }
    T->phases[T->nphases] = s;
    T->phase_one[T->nphases] = one;
    T->phase_keys[T->nphases] = keys;
    T->phase_nkeys[T->nphases++] = nkeys;
}

static Expr *ci(Threads *T, int64_t v) { return ir_const_i(T->k, v); }

/* ------------------------------------------------------------ queries */

static bool stmt_has_parallel(const Stmt *s)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            if (stmt_has_parallel(s->u.seq.items[i]))
                return true;
        return false;
    case ST_MICRO_GEMM: /* all threads issue it */
    case ST_ASYNC_COMMIT:
    case ST_ASYNC_WAIT:
    case ST_MBAR_WAIT: return true;
    case ST_FOR: return s->u.loop.kind == LOOP_PARALLEL || stmt_has_parallel(s->u.loop.body);
    case ST_IF:
        return stmt_has_parallel(s->u.if_.then_) || (s->u.if_.else_ && stmt_has_parallel(s->u.if_.else_));
    default: return false;
    }
}

static void mark_expr(Threads *T, const Expr *e)
{
    if (e->op == EX_LOAD)
        T->uniform_use[e->buf->id] = 1;
    for (int i = 0; i < e->nargs; i++)
        mark_expr(T, e->args[i]);
}

/* Every buffer a statement touches is used by uniform (one-thread or
 * all-thread) code. */
static void mark_stmt(Threads *T, const Stmt *s)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            mark_stmt(T, s->u.seq.items[i]);
        break;
    case ST_FOR:
        mark_expr(T, s->u.loop.extent);
        mark_stmt(T, s->u.loop.body);
        break;
    case ST_IF:
        mark_expr(T, s->u.if_.cond);
        mark_stmt(T, s->u.if_.then_);
        if (s->u.if_.else_)
            mark_stmt(T, s->u.if_.else_);
        break;
    case ST_STORE:
        T->uniform_use[s->u.store.buf->id] = 1;
        for (int d = 0; d < s->u.store.buf->rank; d++)
            mark_expr(T, s->u.store.idx[d]);
        mark_expr(T, s->u.store.value);
        break;
    case ST_TMA_LOAD:
        T->uniform_use[s->u.mbar.dst.buf->id] = 1;
        /* fall through */
    case ST_MBAR_INIT:
    case ST_MBAR_EXPECT:
    case ST_MBAR_WAIT:
        T->uniform_use[s->u.mbar.bar->id] = 1;
        break;
    default: break;
    }
}

/* Does a TMA load fill b?  (Its rows must stay dense: no padding.) */
static bool tma_fills(const Stmt *s, const Buffer *b)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            if (tma_fills(s->u.seq.items[i], b))
                return true;
        return false;
    case ST_FOR: return tma_fills(s->u.loop.body, b);
    case ST_IF: return tma_fills(s->u.if_.then_, b) || (s->u.if_.else_ && tma_fills(s->u.if_.else_, b));
    case ST_TMA_LOAD: return s->u.mbar.dst.buf == b;
    default: return false;
    }
}

/* ------------------------------------------------------- substitution */

static void subst_expr(Expr *e, const Var *v, const Expr *by)
{
    if (e->op == EX_VAR && e->var == v) {
        *e = *by; /* every use of v is replaced, so shared nodes are fine */
        return;
    }
    for (int i = 0; i < e->nargs; i++)
        subst_expr(e->args[i], v, by);
}

static void subst_stmt(Stmt *s, const Var *v, const Expr *by)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            subst_stmt(s->u.seq.items[i], v, by);
        break;
    case ST_FOR:
        subst_expr(s->u.loop.extent, v, by);
        subst_stmt(s->u.loop.body, v, by);
        break;
    case ST_IF:
        subst_expr(s->u.if_.cond, v, by);
        subst_stmt(s->u.if_.then_, v, by);
        if (s->u.if_.else_)
            subst_stmt(s->u.if_.else_, v, by);
        break;
    case ST_STORE:
        for (int d = 0; d < s->u.store.buf->rank; d++)
            subst_expr(s->u.store.idx[d], v, by);
        subst_expr(s->u.store.value, v, by);
        break;
    default: break;
    }
}

/* Inside a distributed nest everything runs in one thread: parallel loops
 * there are plain loops. */
static void serialize(Stmt *s)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            serialize(s->u.seq.items[i]);
        break;
    case ST_FOR:
        if (s->u.loop.kind == LOOP_PARALLEL)
            s->u.loop.kind = LOOP_SERIAL;
        serialize(s->u.loop.body);
        break;
    case ST_IF:
        serialize(s->u.if_.then_);
        if (s->u.if_.else_)
            serialize(s->u.if_.else_);
        break;
    default: break;
    }
}

/* ------------------------------------------------- register promotion */

/* A scratch buffer whose every access sits in a distributed nest of its own
 * shape, indexed by that nest's loop variables in order, is only ever
 * touched by the thread that owns the element: iteration f of the nest runs
 * in thread f % NT as its (f / NT)-th round.  Such a buffer needs no shared
 * memory and no barriers: each thread keeps its ceil(size / NT) elements in
 * a private array indexed by the round (registers, once unrolled).
 * Dimensions of extent 1 do not count, in the buffer (indexed by 0 or by a
 * loop of one iteration) or in the nest, as they leave f unchanged: a copy
 * of a [1, N] tile lowers to one loop over N, the element-wise nests on it
 * to two. */
static bool unit_index(const Expr *e, Stmt *const *loops, int n)
{
    int64_t v;
    if (ir_expr_is_const(e, &v))
        return v == 0;
    for (int l = 0; e->op == EX_VAR && l < n; l++)
        if (e->var == loops[l]->u.loop.var)
            return ir_expr_is_const(loops[l]->u.loop.extent, &v) && v == 1;
    return false;
}

static bool owned_index(Expr *const *idx, const Buffer *b, Stmt *const *loops, int n)
{
    if (b->scope != SCOPE_FRAGMENT && b->scope != SCOPE_LOCAL)
        return false;
    int d = 0, l = 0;
    for (;;) {
        int64_t dim = 0, ext = 0;
        while (d < b->rank && ir_expr_is_const(b->shape[d], &dim) && dim == 1 && unit_index(idx[d], loops, n))
            d++;
        while (l < n && ir_expr_is_const(loops[l]->u.loop.extent, &ext) && ext == 1)
            l++;
        if (d == b->rank || l == n)
            return d == b->rank && l == n;
        if (idx[d]->op != EX_VAR || idx[d]->var != loops[l]->u.loop.var ||
            !ir_expr_is_const(loops[l]->u.loop.extent, &ext) || !ir_expr_is_const(b->shape[d], &dim) || ext != dim)
            return false;
        d++;
        l++;
    }
}

static int mma_of(const Threads *T, const Buffer *b)
{
    for (int g = 0; g < T->nmma; g++)
        if (T->mma_stmt[g]->u.gemm.c.buf == b)
            return g;
    return -1;
}

/* The distribution a nest over these loops uses: the MMA layout of the
 * first accumulator it reaches at owned elements, else cyclic. */
static int nest_layout(Threads *T, Stmt *s, Stmt *const *loops, int n);

/* The loop directly nested as the only statement of s's body, if parallel. */
static Stmt *only_parallel_child(Stmt *s)
{
    Stmt *b = s->u.loop.body;
    while (b->op == ST_SEQ && b->u.seq.n == 1)
        b = b->u.seq.items[0];
    return b->op == ST_FOR && b->u.loop.kind == LOOP_PARALLEL ? b : NULL;
}

enum { MAX_NEST = IR_MAX_RANK * 4 };

/* The perfect nest of parallel loops from s down: loops[0..n), n returned. */
static int parallel_nest(Stmt *s, Stmt **loops)
{
    int n = 0;
    for (Stmt *l = s; l && n < MAX_NEST; l = only_parallel_child(l))
        loops[n++] = l;
    return n;
}

static void add_owned(Threads *T, Expr *load, Stmt *store, Var *slot)
{
    if (T->nowned == T->capowned) {
        T->capowned = T->capowned ? 2 * T->capowned : 64;
        T->owned = realloc(T->owned, (size_t)T->capowned * sizeof *T->owned);
    }
    T->owned[T->nowned++] = (struct Owned){load, store, slot, NULL, 1};
}

/* layout_of's value for a cyclic nest of V elements per thread and round
 * (1 for one; 2 + g is accumulator g's) */
enum { CYCLIC_V = 1000 };
static int cyclic_layout(int64_t V) { return V > 1 ? CYCLIC_V + (int)V : 1; }

static void note_layout(Threads *T, const Buffer *b)
{
    int *l = &T->layout_of[b->id];
    if (*l && *l != T->cur_layout)
        T->misaligned[b->id] = 1; /* owned in two different distributions */
    *l = T->cur_layout;
}

static void owned_expr(Threads *T, Expr *e, Stmt *const *loops, int n, Var *slot)
{
    if (e->op == EX_LOAD) {
        if (owned_index(e->args, e->buf, loops, n)) {
            add_owned(T, e, NULL, slot);
            note_layout(T, e->buf);
        } else
            T->misaligned[e->buf->id] = 1;
    }
    for (int i = 0; i < e->nargs; i++)
        owned_expr(T, e->args[i], loops, n, slot);
}

/* Record the owned accesses of a nest's body (before its variables are
 * substituted); anything else marks its buffer misaligned. */
static void find_owned(Threads *T, Stmt *s, Stmt *const *loops, int n, Var *slot)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            find_owned(T, s->u.seq.items[i], loops, n, slot);
        break;
    case ST_FOR:
        owned_expr(T, s->u.loop.extent, loops, n, slot);
        /* an inner loop reaches elements other than the thread's own */
        find_owned(T, s->u.loop.body, loops, 0, slot);
        break;
    case ST_IF:
        owned_expr(T, s->u.if_.cond, loops, n, slot);
        find_owned(T, s->u.if_.then_, loops, n, slot);
        if (s->u.if_.else_)
            find_owned(T, s->u.if_.else_, loops, n, slot);
        break;
    case ST_STORE:
        if (owned_index(s->u.store.idx, s->u.store.buf, loops, n)) {
            add_owned(T, NULL, s, slot);
            note_layout(T, s->u.store.buf);
        } else
            T->misaligned[s->u.store.buf->id] = 1;
        for (int d = 0; d < s->u.store.buf->rank; d++)
            owned_expr(T, s->u.store.idx[d], loops, n, slot);
        owned_expr(T, s->u.store.value, loops, n, slot);
        break;
    default: break;
    }
}

/* The tensor-core layout b's elements follow: 2 + g for accumulator g or a
 * fragment that adopted its layout, else 0. */
static int mma_layout_of(const Threads *T, const Buffer *b)
{
    int g = mma_of(T, b);
    if (g >= 0)
        return 2 + g;
    return b->id < T->nids ? T->adopted[b->id] : 0;
}

static int layout_expr(Threads *T, const Expr *e, Stmt *const *loops, int n)
{
    if (e->op == EX_LOAD && owned_index(e->args, e->buf, loops, n) && mma_layout_of(T, e->buf))
        return mma_layout_of(T, e->buf);
    for (int i = 0; i < e->nargs; i++) {
        int l = layout_expr(T, e->args[i], loops, n);
        if (l)
            return l;
    }
    return 0;
}

static int nest_layout(Threads *T, Stmt *s, Stmt *const *loops, int n)
{
    int l = 0;
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; !l && i < s->u.seq.n; i++)
            l = nest_layout(T, s->u.seq.items[i], loops, n);
        return l;
    case ST_IF:
        l = layout_expr(T, s->u.if_.cond, loops, n);
        if (!l)
            l = nest_layout(T, s->u.if_.then_, loops, n);
        if (!l && s->u.if_.else_)
            l = nest_layout(T, s->u.if_.else_, loops, n);
        return l;
    case ST_STORE:
        if (owned_index(s->u.store.idx, s->u.store.buf, loops, n) && mma_layout_of(T, s->u.store.buf))
            return mma_layout_of(T, s->u.store.buf);
        return layout_expr(T, s->u.store.value, loops, n);
    default: return 0;
    }
}

/* Register scratch a nest reaches at owned elements (at most max). */
static void owned_bufs_expr(const Expr *e, Stmt *const *loops, int n, const Buffer **out, int *nout, int max)
{
    if (e->op == EX_LOAD && owned_index(e->args, e->buf, loops, n) && *nout < max)
        out[(*nout)++] = e->buf;
    for (int i = 0; i < e->nargs; i++)
        owned_bufs_expr(e->args[i], loops, n, out, nout, max);
}

static void owned_bufs(const Stmt *s, Stmt *const *loops, int n, const Buffer **out, int *nout, int max)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            owned_bufs(s->u.seq.items[i], loops, n, out, nout, max);
        break;
    case ST_IF:
        owned_bufs_expr(s->u.if_.cond, loops, n, out, nout, max);
        owned_bufs(s->u.if_.then_, loops, n, out, nout, max);
        if (s->u.if_.else_)
            owned_bufs(s->u.if_.else_, loops, n, out, nout, max);
        break;
    case ST_STORE:
        if (owned_index(s->u.store.idx, s->u.store.buf, loops, n) && *nout < max)
            out[(*nout)++] = s->u.store.buf;
        owned_bufs_expr(s->u.store.value, loops, n, out, nout, max);
        break;
    default: break;
    }
}

enum { MAX_OWNED_BUFS = 64 };

/* A decision about every perfect parallel nest (not one inside another),
 * repeated until none changes anything: *changed says one did. */
typedef void (*NestFn)(Threads *T, Stmt *const *loops, int n, bool *changed);

static void visit_nests(Threads *T, Stmt *s, NestFn fn, bool *changed)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            visit_nests(T, s->u.seq.items[i], fn, changed);
        break;
    case ST_FOR:
        if (s->u.loop.kind == LOOP_PARALLEL) {
            Stmt *loops[MAX_NEST];
            fn(T, loops, parallel_nest(s, loops), changed);
        } else
            visit_nests(T, s->u.loop.body, fn, changed);
        break;
    case ST_IF:
        visit_nests(T, s->u.if_.then_, fn, changed);
        if (s->u.if_.else_)
            visit_nests(T, s->u.if_.else_, fn, changed);
        break;
    default: break;
    }
}

static void to_fixed_point(Threads *T, Stmt *body, NestFn fn)
{
    bool changed = true;
    for (int round = 0; changed && round < 16; round++) {
        changed = false;
        visit_nests(T, body, fn, &changed);
    }
}

/* A running sum that only ever meets a tensor-core accumulator element by
 * element (acc += part, after `part = A B` per step) is best kept in the
 * same register layout: each thread then adds its own slots, where a
 * cyclic layout would put the sum in shared memory behind barriers (it made
 * an fp8 GEMM with per-step promotion 7x slower on an H200).  A nest of a
 * tensor-core layout passes it to the other fragments it reaches at owned
 * elements (to a fixed point: a nest that clears the sum comes before the
 * one that ties it to the accumulator). */
static void adopt_nest(Threads *T, Stmt *const *loops, int n, bool *changed)
{
    Stmt *body = loops[n - 1]->u.loop.body;
    int lay = nest_layout(T, body, loops, n);
    if (lay < 2)
        return;
    const Buffer *own[MAX_OWNED_BUFS];
    int nown = 0;
    owned_bufs(body, loops, n, own, &nown, MAX_OWNED_BUFS);
    for (int i = 0; i < nown; i++)
        if (!mma_layout_of(T, own[i]) && own[i]->id < T->nids) {
            T->adopted[own[i]->id] = lay;
            *changed = true;
        }
}

static bool promotable(const Threads *T, const Buffer *b)
{
    return b->id < T->nids && (b->scope == SCOPE_FRAGMENT || b->scope == SCOPE_LOCAL) && !T->misaligned[b->id] &&
           !T->uniform_use[b->id];
}

/* Owned buffers become private [rounds] arrays indexed by the round. */
static void promote(Threads *T)
{
    int64_t nt = T->k->nthreads;
    for (int i = T->k->nargs; i < T->k->nbufs; i++) {
        Buffer *b = T->k->bufs[i];
        if (!promotable(T, b))
            continue;
        int64_t n = 1, dim;
        for (int d = 0; d < b->rank; d++) {
            ir_expr_is_const(b->shape[d], &dim);
            n *= dim;
        }
        b->scope = SCOPE_LOCAL;
        b->rank = 1;
        int l = T->layout_of[b->id];
        int64_t V = T->chunk_of[b->id] > 1 ? T->chunk_of[b->id] : 1, rounds = (n / V + nt - 1) / nt;
        b->shape[0] = ci(T, l >= 2 && l < CYCLIC_V ? T->mma[l - 2].slots : rounds * V);
        b->stride[0] = ci(T, 1);
    }
    for (int u = 0; u < T->nuses; u++) { /* c: the thread's whole share */
        Region *c = &T->uses[u]->u.gemm.c;
        if (c->buf->rank == 1) {
            c->off[0] = ci(T, 0);
            c->ext[0] = T->mma[T->use_mma[u]].slots;
        }
    }
    for (int i = 0; i < T->nowned; i++) {
        struct Owned *o = &T->owned[i];
        Buffer *b = o->load ? o->load->buf : o->store->u.store.buf;
        if (b->scope != SCOPE_LOCAL || b->rank != 1 || !promotable(T, b))
            continue;
        Expr **idx = arena_alloc(T->k->arena, sizeof *idx);
        idx[0] = ir_var(T->k, o->slot);
        if (o->elem)
            idx[0] = ir_binary(T->k, EX_ADD, ir_binary(T->k, EX_MUL, idx[0], ci(T, o->V)), ir_var(T->k, o->elem));
        if (o->load) {
            o->load->args = idx;
            o->load->nargs = 1;
        } else {
            o->store->u.store.idx = idx;
        }
    }
}

/* ------------------------------------------------------- distribution */

/* Scratch that may live in registers: its width does not limit vectors. */
static bool in_registers(const Buffer *b) { return b->scope == SCOPE_FRAGMENT || b->scope == SCOPE_LOCAL; }

static int widest_expr(const Expr *e, bool memory_only)
{
    int w = e->op == EX_LOAD && !(memory_only && in_registers(e->buf)) ? dt_bits(e->buf->dtype) / 8 : 1;
    for (int i = 0; i < e->nargs; i++) {
        int a = widest_expr(e->args[i], memory_only);
        w = a > w ? a : w;
    }
    return w;
}

/* Bytes of the widest element a statement loads or stores (at least 1);
 * memory_only: of global and shared buffers only. */
static int widest_bytes(const Stmt *s, bool memory_only)
{
    int w = 1, a;
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            if ((a = widest_bytes(s->u.seq.items[i], memory_only)) > w)
                w = a;
        return w;
    case ST_FOR: return widest_bytes(s->u.loop.body, memory_only);
    case ST_IF:
        w = widest_bytes(s->u.if_.then_, memory_only);
        if (s->u.if_.else_ && (a = widest_bytes(s->u.if_.else_, memory_only)) > w)
            w = a;
        return w;
    case ST_STORE:
        w = memory_only && in_registers(s->u.store.buf) ? 1 : dt_bits(s->u.store.buf->dtype) / 8;
        a = widest_expr(s->u.store.value, memory_only);
        return a > w ? a : w;
    default: return 16; /* anything else: no vectors */
    }
}


static bool has_loop(const Stmt *s)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            if (has_loop(s->u.seq.items[i]))
                return true;
        return false;
    case ST_FOR: return true;
    case ST_IF: return has_loop(s->u.if_.then_) || (s->u.if_.else_ && has_loop(s->u.if_.else_));
    default: return false;
    }
}

/* Elements per thread and round of a cyclic nest: 16 bytes of the widest
 * dtype it moves to or from memory — so that neighbouring accesses merge
 * into vector loads and stores — as far as the innermost extent divides
 * and every thread keeps a chunk.  A nest that keeps values in registers
 * takes no more than the other nests on those registers (they must agree
 * on which thread holds which element: agree_nest), and one element per
 * round if it loops inside (a SIMT GEMM's k loop: a chunk there spilled
 * the f32 gemm's accumulator to the stack). */
static int64_t nest_chunk(Threads *T, const Stmt *body, Stmt *const *loops, int n)
{
    const Buffer *own[MAX_OWNED_BUFS];
    int nown = 0;
    owned_bufs(body, loops, n, own, &nown, MAX_OWNED_BUFS);
    if (nown > 0 && has_loop(body))
        return 1;
    int64_t V = 16 / widest_bytes(body, nown > 0), ein, tot = 1, e;
    for (int i = 0; i < n; i++)
        tot = ir_expr_is_const(loops[i]->u.loop.extent, &e) && tot > 0 ? tot * e : -1;
    if (tot < 0 || !ir_expr_is_const(loops[n - 1]->u.loop.extent, &ein) || V < 1)
        return 1;
    while (V > 1 && (ein % V || tot / V < T->k->nthreads))
        V /= 2;
    for (int i = 0; i < nown; i++)
        if (own[i]->id < T->nids && T->chunk_of[own[i]->id] && T->chunk_of[own[i]->id] < V)
            V = T->chunk_of[own[i]->id];
    return V;
}

/* Every cyclic nest that reaches a register fragment at owned elements
 * takes the same V, the smallest any of them can (run to a fixed point:
 * chunks only shrink, by halves). */
static void agree_nest(Threads *T, Stmt *const *loops, int n, bool *changed)
{
    Stmt *body = loops[n - 1]->u.loop.body;
    if (nest_layout(T, body, loops, n) >= 2)
        return;
    int64_t V = nest_chunk(T, body, loops, n);
    const Buffer *own[MAX_OWNED_BUFS];
    int nown = 0;
    owned_bufs(body, loops, n, own, &nown, MAX_OWNED_BUFS);
    for (int i = 0; i < nown; i++) {
        int64_t *c = own[i]->id < T->nids ? &T->chunk_of[own[i]->id] : NULL;
        if (c && (!*c || *c > V)) {
            *c = V;
            *changed = true;
        }
    }
}


/* Which thread touches an element a nest reaches at the element its thread
 * owns depends only on the nest's distribution: cyclic with V elements per
 * chunk, or an MMA layout (extents equal the buffer's shape there). */
enum { NOT_OWNED = 0xffff };
static uint16_t dist_key(int layout, int64_t V) { return (uint16_t)(layout * 32 + V); }

static void keys_expr(uint16_t *keys, const Expr *e, Stmt *const *loops, int n, uint16_t key)
{
    if (e->op == EX_LOAD && keys[e->buf->id] != NOT_OWNED)
        keys[e->buf->id] = owned_index(e->args, e->buf, loops, n) ? key : NOT_OWNED;
    for (int i = 0; i < e->nargs; i++)
        keys_expr(keys, e->args[i], loops, n, key);
}

/* Mark in keys (by Buffer.id) each buffer the nest body s reaches: key
 * when every access is at the owned element, else NOT_OWNED.  Walked
 * before the nest's variables are substituted, like find_owned. */
static void keys_stmt(uint16_t *keys, const Stmt *s, Stmt *const *loops, int n, uint16_t key)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            keys_stmt(keys, s->u.seq.items[i], loops, n, key);
        break;
    case ST_FOR:
        keys_expr(keys, s->u.loop.extent, loops, n, key);
        keys_stmt(keys, s->u.loop.body, loops, 0, key);
        break;
    case ST_IF:
        keys_expr(keys, s->u.if_.cond, loops, n, key);
        keys_stmt(keys, s->u.if_.then_, loops, n, key);
        if (s->u.if_.else_)
            keys_stmt(keys, s->u.if_.else_, loops, n, key);
        break;
    case ST_STORE: {
        const Buffer *b = s->u.store.buf;
        if (keys[b->id] != NOT_OWNED)
            keys[b->id] = owned_index(s->u.store.idx, b, loops, n) ? key : NOT_OWNED;
        for (int d = 0; d < b->rank; d++)
            keys_expr(keys, s->u.store.idx[d], loops, n, key);
        keys_expr(keys, s->u.store.value, loops, n, key);
        break;
    }
    default: break;
    }
}

static uint16_t *nest_keys(Threads *T, const Stmt *body, Stmt *const *loops, int n, uint16_t key)
{
    uint16_t *keys = calloc((size_t)T->k->next_id + 1, sizeof *keys);
    keys_stmt(keys, body, loops, n, key);
    return keys;
}

/* The same nest over an [M, N] tensor-core accumulator: slot s of thread t
 * runs element ir_mma_pos(t, s) (the formulas of ir/mma.c, as IR). */
static Stmt *distribute_mma(Threads *T, Stmt *s, Stmt *const *loops, int n, const MmaLayout *L,
                            int lay)
{
    Kernel *k = T->k;
    Stmt *body = loops[n - 1]->u.loop.body;
    uint16_t *keys = nest_keys(T, body, loops, n, dist_key(lay, 1));
    int nkeys = k->next_id + 1;
    Var *sv = ir_var_new(k, "slot");
    T->cur_layout = lay;
    find_owned(T, body, loops, n, sv);
    Expr *tid = ir_var(k, T->tid), *slot = ir_var(k, sv);
#define B(op, a, b) ir_binary(k, EX_##op, a, b)
    Expr *warp = B(DIV, tid, ci(T, 32)), *lane = B(MOD, tid, ci(T, 32));
    Expr *unit = L->unit > 1 ? B(DIV, warp, ci(T, L->unit)) : warp; /* warp, or warpgroup */
    Expr *c = B(MOD, slot, ci(T, 4));
    Expr *pnt = B(MOD, B(DIV, slot, ci(T, 4)), ci(T, L->nt)), *pmt = B(DIV, slot, ci(T, 4 * L->nt));
    Expr *i = B(ADD, B(ADD, B(MUL, B(DIV, unit, ci(T, L->wn)), ci(T, L->m / L->wm)), B(MUL, pmt, ci(T, 16 * L->unit))),
                B(ADD, B(DIV, lane, ci(T, 4)), B(MUL, B(DIV, c, ci(T, 2)), ci(T, 8))));
    if (L->unit > 1) /* warp w of a warpgroup: rows 16w.. of each 64-row piece */
        i = B(ADD, i, B(MUL, B(MOD, warp, ci(T, L->unit)), ci(T, 16)));
    Expr *j = B(ADD, B(ADD, B(MUL, B(MOD, unit, ci(T, L->wn)), ci(T, L->n / L->wn)), B(MUL, pnt, ci(T, 8))),
                B(ADD, B(MUL, B(MOD, lane, ci(T, 4)), ci(T, 2)), B(MOD, c, ci(T, 2))));
#undef B
    subst_stmt(body, loops[0]->u.loop.var, i);
    subst_stmt(body, loops[1]->u.loop.var, j);
    serialize(body);
    Stmt *loop = ir_for(k, sv, ci(T, L->slots), L->slots <= 128 ? LOOP_UNROLL : LOOP_SERIAL, 0, body, s->loc);
    add_phase(T, loop, false, keys, nkeys);
    return loop;
}

/* for v0 < e0 parallel { for v1 < e1 parallel { B } } becomes
 *   for r < ceil(E / NT) { if r*NT + tid < E { B[v0 := f / e1, v1 := f % e1] } }
 * with f = r*NT + tid and E = e0*e1 (any depth). */
static Stmt *distribute(Threads *T, Stmt *s)
{
    Stmt *loops[MAX_NEST];
    int n = parallel_nest(s, loops);
    Stmt *body = loops[n - 1]->u.loop.body;
    Expr *total = ci(T, 1);
    for (int i = 0; i < n; i++)
        total = ir_binary(T->k, EX_MUL, total, loops[i]->u.loop.extent);

    int lay = nest_layout(T, body, loops, n);
    if (lay >= 2)
        return distribute_mma(T, s, loops, n, &T->mma[lay - 2], lay);
    /* A thread takes V consecutive elements along the innermost loop (see
     * nest_chunk); an owned element's private index is round * V + e. */
    int64_t tot, V = nest_chunk(T, body, loops, n);
    bool known = ir_expr_is_const(total, &tot);
    Var *rv = ir_var_new(T->k, "r"), *ev = V > 1 ? ir_var_new(T->k, "e") : NULL;
    T->cur_layout = cyclic_layout(V);
    int owned_before = T->nowned;
    find_owned(T, body, loops, n, rv);
    bool has_owned = false; /* of buffers that will be promoted (see prescan) */
    for (int i = owned_before; i < T->nowned; i++) {
        const Buffer *b = T->owned[i].load ? T->owned[i].load->buf : T->owned[i].store->u.store.buf;
        has_owned |= promotable(T, b);
        T->owned[i].elem = ev;
        T->owned[i].V = V;
    }
    Expr *nt = ci(T, T->k->nthreads);
    Expr *chunk = ir_binary(T->k, EX_ADD, ir_binary(T->k, EX_MUL, ir_var(T->k, rv), nt), ir_var(T->k, T->tid));
    Expr *base = ir_binary(T->k, EX_MUL, chunk, ci(T, V)); /* first element of the chunk */
    Expr *inner = ci(T, 1); /* product of the extents inside loop i */
    int nkeys = T->k->next_id + 1;
    uint16_t *keys = nest_keys(T, body, loops, n, dist_key(1, V));
    for (int i = n - 1; i >= 0; i--) {
        Expr *e = loops[i]->u.loop.extent;
        Expr *q = ir_binary(T->k, EX_DIV, base, inner);
        Expr *vi = i == 0 ? q : ir_binary(T->k, EX_MOD, q, e);
        if (ev && i == n - 1)
            vi = ir_binary(T->k, EX_ADD, vi, ir_var(T->k, ev));
        subst_stmt(body, loops[i]->u.loop.var, vi);
        inner = ir_binary(T->k, EX_MUL, inner, e);
    }
    serialize(body);
    if (ev)
        body = ir_for(T->k, ev, ci(T, V), LOOP_UNROLL, 0, body, s->loc);

    int64_t nthr = T->k->nthreads;
    Expr *chunks = V > 1 ? ci(T, tot / V) : total; /* V > 1 only with constant extents */
    int64_t nchunks = known ? tot / V : 0;
    Expr *rounds = known ? ci(T, (nchunks + nthr - 1) / nthr)
                         : ir_binary(T->k, EX_DIV, ir_binary(T->k, EX_ADD, total, ci(T, nthr - 1)), nt);
    Stmt *guarded = body;
    if (!known || nchunks % nthr) {
        Stmt *then_ = ir_seq(T->k, s->loc);
        ir_seq_push(T->k, then_, body);
        guarded = ir_seq(T->k, s->loc);
        ir_seq_push(T->k, guarded, ir_if(T->k, ir_binary(T->k, EX_LT, chunk, chunks), then_, NULL, s->loc));
    }
    /* unrolled when the rounds index private arrays, which then live in
     * registers; other nests stay loops (short code, few live addresses) */
    bool unroll = has_owned && known && (tot + nthr - 1) / nthr <= 128;
    Stmt *loop = ir_for(T->k, rv, rounds, unroll ? LOOP_UNROLL : LOOP_SERIAL, 0, guarded, s->loc);
    add_phase(T, loop, false, keys, nkeys);
    return loop;
}

static Stmt *one_thread(Threads *T, Stmt *group)
{
    Expr *first = ir_binary(T->k, EX_EQ, ir_var(T->k, T->tid), ci(T, 0));
    Stmt *s = ir_if(T->k, first, group, NULL, group->loc);
    add_phase(T, s, true, NULL, 0);
    return s;
}

/* A dry run of uniform(): which scratch buffers every access reaches at an
 * owned element (so they will live in registers), before any nest is
 * distributed: distribute() needs it to choose its vector width. */
static void prescan(Threads *T, Stmt *s)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++) {
            Stmt *it = s->u.seq.items[i];
            if (!stmt_has_parallel(it) && it->op != ST_SEQ)
                mark_stmt(T, it);
            else
                prescan(T, it);
        }
        break;
    case ST_FOR:
        if (s->u.loop.kind == LOOP_PARALLEL) {
            Stmt *loops[MAX_NEST];
            int n = parallel_nest(s, loops);
            Stmt *body = loops[n - 1]->u.loop.body;
            int lay = nest_layout(T, body, loops, n);
            int saved = T->nowned;
            T->cur_layout = lay >= 2 ? lay : cyclic_layout(nest_chunk(T, body, loops, n));
            find_owned(T, body, loops, n, NULL);
            T->nowned = saved; /* flags only */
            break;
        }
        mark_expr(T, s->u.loop.extent);
        prescan(T, s->u.loop.body);
        break;
    case ST_IF:
        mark_expr(T, s->u.if_.cond);
        prescan(T, s->u.if_.then_);
        if (s->u.if_.else_)
            prescan(T, s->u.if_.else_);
        break;
    case ST_MICRO_GEMM:
    case ST_ASYNC_COMMIT:
    case ST_ASYNC_WAIT:
    case ST_MBAR_WAIT: break;
    default: mark_stmt(T, s); break;
    }
}

static Stmt *uniform(Threads *T, Stmt *s);

/* Items in order; neighbouring one-thread items share one guard. */
static Stmt *uniform_seq(Threads *T, Stmt *s)
{
    Stmt *out = ir_seq(T->k, s->loc), *group = NULL;
    for (int i = 0; i < s->u.seq.n; i++) {
        Stmt *it = s->u.seq.items[i];
        bool solo = !stmt_has_parallel(it) && it->op != ST_SEQ;
        if (solo) {
            mark_stmt(T, it);
            if (!group) {
                group = ir_seq(T->k, it->loc);
                ir_seq_push(T->k, out, one_thread(T, group));
            }
            ir_seq_push(T->k, group, it);
            continue;
        }
        group = NULL;
        ir_seq_push(T->k, out, uniform(T, it));
    }
    return out;
}

/* A statement run by every thread of the block. */
static Stmt *uniform(Threads *T, Stmt *s)
{
    switch (s->op) {
    case ST_SEQ: return uniform_seq(T, s);
    case ST_FOR:
        if (s->u.loop.kind == LOOP_PARALLEL)
            return distribute(T, s);
        mark_expr(T, s->u.loop.extent);
        s->u.loop.body = uniform(T, s->u.loop.body);
        return s;
    case ST_IF:
        mark_expr(T, s->u.if_.cond);
        s->u.if_.then_ = uniform(T, s->u.if_.then_);
        if (s->u.if_.else_)
            s->u.if_.else_ = uniform(T, s->u.if_.else_);
        return s;
    case ST_MICRO_GEMM:
        add_phase(T, s, false, NULL, 0);
        return s;
    case ST_ASYNC_COMMIT: /* every thread, for its own copies */
    case ST_ASYNC_WAIT:
        return s;
    case ST_MBAR_WAIT: /* every thread waits for the TMA data it reads */
        mark_stmt(T, s);
        return s;
    default: { /* a lone statement: one thread */
        Stmt *g = ir_seq(T->k, s->loc);
        mark_stmt(T, s);
        ir_seq_push(T->k, g, s);
        return one_thread(T, g);
    }
    }
}

/* ------------------------------------------------------------- memory */

static int64_t buf_bytes(const Buffer *b) { return (int64_t)dt_storage_bytes(b->dtype, ir_buf_span(b)); }

/* Fragments and uniformly used locals go to shared memory; the total must
 * fit the target. */
static bool place_buffers(Threads *T, Diag *d)
{
    int64_t total = 0;
    const Buffer *largest = NULL;
    for (int i = T->k->nargs; i < T->k->nbufs; i++) {
        Buffer *b = T->k->bufs[i];
        if (b->scope == SCOPE_FRAGMENT ||
            (b->scope == SCOPE_LOCAL && b->id < T->nids && T->uniform_use[b->id]))
            b->scope = SCOPE_SHARED;
        if (b->scope != SCOPE_SHARED)
            continue;
        if (!largest || buf_bytes(b) > buf_bytes(largest))
            largest = b;
    }
    total = ir_shared_bytes(T->k);
    if (total > T->t->max_shared_bytes) {
        diag_error(d, largest->loc,
                   "kernel %s needs %lld bytes of shared memory, more than %s's %lld per block "
                   "(largest: %s, %lld bytes)",
                   T->k->name, (long long)total, T->t->name, (long long)T->t->max_shared_bytes,
                   largest->name, (long long)buf_bytes(largest));
        diag_hint(d, "use smaller tiles (--set the block sizes)");
        return false;
    }
    return true;
}


/* ------------------------------------------------------------ barriers */

/* What the threads of a block did to each buffer since the last barrier,
 * by Buffer.id: access bits, and above them (<< KEY_SHIFT) the distribution
 * every access followed at owned elements (dist_key), NOT_OWNED, or 0 for
 * none yet.  MANY: by threads in general; ONE: by thread 0 only (two
 * thread-0 phases never race with each other). */
enum { RD_MANY = 1, WR_MANY = 2, RD_ONE = 4, WR_ONE = 8, BITS = 15, KEY_SHIFT = 4 };

typedef struct Sync {
    Threads *T;
    int nbufs;
    int nbarriers;
} Sync;

static unsigned key_of(unsigned a) { return a >> KEY_SHIFT; }

/* The state after accesses a and b, in either order, with no barrier. */
static unsigned combine(unsigned a, unsigned b)
{
    unsigned ka = key_of(a), kb = key_of(b);
    unsigned k = !ka ? kb : !kb || ka == kb ? ka : NOT_OWNED;
    return ((a | b) & BITS) | k << KEY_SHIFT;
}

static int phase_index(const Threads *T, const Stmt *s)
{
    for (int i = 0; i < T->nphases; i++)
        if (T->phases[i] == s)
            return i;
    return -1;
}

static bool tracked(const Buffer *b) { return b->scope == SCOPE_SHARED || b->scope == SCOPE_GLOBAL; }

static void acc_expr(unsigned *acc, const Expr *e, unsigned rd)
{
    if (e->op == EX_LOAD && tracked(e->buf))
        acc[e->buf->id] |= rd;
    for (int i = 0; i < e->nargs; i++)
        acc_expr(acc, e->args[i], rd);
}

static void acc_stmt(unsigned *acc, const Stmt *s, unsigned rd, unsigned wr)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            acc_stmt(acc, s->u.seq.items[i], rd, wr);
        break;
    case ST_FOR:
        acc_expr(acc, s->u.loop.extent, rd);
        acc_stmt(acc, s->u.loop.body, rd, wr);
        break;
    case ST_IF:
        acc_expr(acc, s->u.if_.cond, rd);
        acc_stmt(acc, s->u.if_.then_, rd, wr);
        if (s->u.if_.else_)
            acc_stmt(acc, s->u.if_.else_, rd, wr);
        break;
    case ST_MICRO_GEMM: /* reads its operand tiles; c is private by now */
        if (tracked(s->u.gemm.a.buf))
            acc[s->u.gemm.a.buf->id] |= rd;
        if (tracked(s->u.gemm.b.buf))
            acc[s->u.gemm.b.buf->id] |= rd;
        if (tracked(s->u.gemm.c.buf))
            acc[s->u.gemm.c.buf->id] |= wr;
        break;
    case ST_STORE:
        if (tracked(s->u.store.buf))
            acc[s->u.store.buf->id] |= wr;
        for (int d = 0; d < s->u.store.buf->rank; d++)
            acc_expr(acc, s->u.store.idx[d], rd);
        acc_expr(acc, s->u.store.value, rd);
        break;
    case ST_TMA_LOAD: /* a write where issued: what others read must be done */
        acc[s->u.mbar.dst.buf->id] |= wr;
        acc[s->u.mbar.src.buf->id] |= rd;
        acc[s->u.mbar.bar->id] |= rd;
        break;
    case ST_MBAR_INIT: acc[s->u.mbar.bar->id] |= wr; break;
    case ST_MBAR_EXPECT: /* arrivals and waits are atomic on the mbarrier */
    case ST_MBAR_WAIT: acc[s->u.mbar.bar->id] |= rd; break;
    default: break;
    }
}

/* Give each buffer the phase touched its distribution key (from the
 * phase's table; NOT_OWNED where the phase has none). */
static void add_keys(const Sync *S, unsigned *acc, int phase)
{
    const uint16_t *keys = phase >= 0 ? S->T->phase_keys[phase] : NULL;
    int nkeys = phase >= 0 ? S->T->phase_nkeys[phase] : 0;
    for (int i = 0; i < S->nbufs; i++)
        if (acc[i]) {
            unsigned k = keys && i < nkeys && keys[i] ? keys[i] : NOT_OWNED;
            acc[i] |= k << KEY_SHIFT;
        }
}

/* Do accesses `now` after `before` (same epoch) let two threads meet on a
 * buffer with one of them writing? */
static bool conflict(const Sync *S, const unsigned *before, const unsigned *now)
{
    for (int i = 0; i < S->nbufs; i++) {
        unsigned b = before[i], n = now[i];
        bool bw = b & (WR_MANY | WR_ONE), nw = n & (WR_MANY | WR_ONE);
        if (!(bw && n) && !(nw && b))
            continue;
        bool b_one = !(b & (RD_MANY | WR_MANY)), n_one = !(n & (RD_MANY | WR_MANY));
        if (b_one && n_one)
            continue;
        /* every access at owned elements of one distribution: one thread
         * per element on both sides */
        if (key_of(b) != NOT_OWNED && key_of(b) == key_of(n) && !(b & (RD_ONE | WR_ONE)) &&
            !(n & (RD_ONE | WR_ONE)))
            continue;
        return true;
    }
    return false;
}

static void merge(const Sync *S, unsigned *into, const unsigned *from)
{
    for (int i = 0; i < S->nbufs; i++)
        into[i] = combine(into[i], from[i]);
}

static void sync_stmt(Sync *S, Stmt *s, unsigned *st);

/* A one-thread group of mbar_init? */
static bool inits_mbarriers(const Stmt *s)
{
    if (s->op != ST_IF || s->u.if_.else_ || s->u.if_.then_->op != ST_SEQ || !s->u.if_.then_->u.seq.n)
        return false;
    for (int i = 0; i < s->u.if_.then_->u.seq.n; i++)
        if (s->u.if_.then_->u.seq.items[i]->op != ST_MBAR_INIT)
            return false;
    return true;
}

/* A TMA load's write must come after what other threads did to its tile
 * (a barrier before it), but readers after it wait on its mbarrier, not a
 * barrier: its write is not left in the state. */
static void forget_tma_writes(unsigned *st, const Stmt *s)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            forget_tma_writes(st, s->u.seq.items[i]);
        break;
    case ST_FOR: forget_tma_writes(st, s->u.loop.body); break;
    case ST_IF:
        forget_tma_writes(st, s->u.if_.then_);
        if (s->u.if_.else_)
            forget_tma_writes(st, s->u.if_.else_);
        break;
    case ST_TMA_LOAD: st[s->u.mbar.dst.buf->id] &= ~(unsigned)(WR_ONE | WR_MANY); break;
    default: break;
    }
}

/* Account one step that all threads take with accesses acc: a barrier goes
 * before it when it conflicts with what happened since the last one. */
static bool step(Sync *S, unsigned *st, const unsigned *acc)
{
    bool need = conflict(S, st, acc);
    if (need)
        memset(st, 0, (size_t)S->nbufs * sizeof *st);
    merge(S, st, acc);
    return need;
}

static void sync_seq(Sync *S, Stmt *seq, unsigned *st)
{
    Stmt **items = seq->u.seq.items;
    int n = seq->u.seq.n;
    size_t bytes = (size_t)S->nbufs * sizeof *st;
    seq->u.seq.items = NULL;
    seq->u.seq.n = seq->u.seq.cap = 0;
    unsigned *acc = calloc((size_t)S->nbufs, sizeof *acc);
    for (int i = 0; i < n; i++) {
        Stmt *it = items[i];
        if (it->op == ST_BARRIER || it->op == ST_ASYNC_WAIT) { /* a wait is a barrier too */
            memset(st, 0, bytes);
            ir_seq_push(S->T->k, seq, it);
            continue;
        }
        if (inits_mbarriers(it)) { /* mbarriers are set up, then a barrier */
            ir_seq_push(S->T->k, seq, it);
            ir_seq_push(S->T->k, seq, ir_barrier(S->T->k, it->loc));
            memset(st, 0, bytes);
            continue;
        }
        int p = phase_index(S->T, it);
        if (p >= 0) {
            memset(acc, 0, bytes);
            bool one = S->T->phase_one[p];
            acc_stmt(acc, it, one ? RD_ONE : RD_MANY, one ? WR_ONE : WR_MANY);
            add_keys(S, acc, p);
            if (step(S, st, acc)) {
                ir_seq_push(S->T->k, seq, ir_barrier(S->T->k, it->loc));
                S->nbarriers++;
            }
            forget_tma_writes(st, it);
            ir_seq_push(S->T->k, seq, it);
            continue;
        }
        /* uniform control flow: every thread reads its extent or condition
         * (or, for a wait, its mbarrier) */
        memset(acc, 0, bytes);
        if (it->op == ST_MBAR_WAIT)
            acc_stmt(acc, it, RD_MANY, WR_MANY);
        if (it->op == ST_FOR)
            acc_expr(acc, it->u.loop.extent, RD_MANY);
        else if (it->op == ST_IF)
            acc_expr(acc, it->u.if_.cond, RD_MANY);
        add_keys(S, acc, -1);
        if (step(S, st, acc)) {
            ir_seq_push(S->T->k, seq, ir_barrier(S->T->k, it->loc));
            S->nbarriers++;
        }
        sync_stmt(S, it, st);
        ir_seq_push(S->T->k, seq, it);
    }
    free(acc);
}

/* Control flow all threads take: its extent or condition is read by all
 * of them (a barrier may be needed before it); a loop body is followed by
 * itself, so it is synchronised until the state at its top is stable. */
static void sync_stmt(Sync *S, Stmt *s, unsigned *st)
{
    size_t n = (size_t)S->nbufs, bytes = n * sizeof *st;
    unsigned *in = calloc(n, sizeof *in), *out = calloc(n, sizeof *out);
    switch (s->op) {
    case ST_SEQ: sync_seq(S, s, st); break;
    case ST_FOR: /* (its extent was accounted for by sync_seq) */
        memcpy(in, st, bytes);
        for (int iter = 0; iter < 4; iter++) {
            memcpy(out, in, bytes);
            sync_stmt(S, s->u.loop.body, out);
            unsigned *next = calloc(n, sizeof *next);
            merge(S, next, st);
            merge(S, next, out);
            bool same = !memcmp(next, in, bytes);
            memcpy(in, next, bytes);
            free(next);
            if (same)
                break;
        }
        memcpy(st, in, bytes);
        break;
    case ST_IF:
        memcpy(out, st, bytes);
        sync_stmt(S, s->u.if_.then_, st);
        if (s->u.if_.else_)
            sync_stmt(S, s->u.if_.else_, out);
        merge(S, st, out);
        break;
    default: break;
    }
    free(in);
    free(out);
}

/* ------------------------------------------- tensor-core compatibility */

static bool reach_ok_expr(const Expr *e, const Buffer *c, Stmt *const *loops, int n)
{
    if (e->op == EX_LOAD && e->buf == c && !owned_index(e->args, c, loops, n))
        return false;
    for (int i = 0; i < e->nargs; i++)
        if (!reach_ok_expr(e->args[i], c, loops, n))
            return false;
    return true;
}

/* Is every access to the accumulator c (besides the products into it) at
 * the element a distributed nest over c's shape owns?  Then c can live in
 * the MMA layout.  n < 0: uniform level, outside any parallel nest. */
static bool reach_ok(const Stmt *s, const Buffer *c, Stmt *const *loops, int n)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            if (!reach_ok(s->u.seq.items[i], c, loops, n))
                return false;
        return true;
    case ST_FOR: {
        if (!reach_ok_expr(s->u.loop.extent, c, loops, n < 0 ? 0 : n))
            return false;
        if (n < 0 && s->u.loop.kind == LOOP_PARALLEL) { /* a nest that pass_threads distributes */
            Stmt *chain[IR_MAX_RANK * 4];
            int m = 0;
            for (Stmt *l = (Stmt *)s; l && m < (int)(sizeof chain / sizeof chain[0]); l = only_parallel_child(l))
                chain[m++] = l;
            return reach_ok(chain[m - 1]->u.loop.body, c, chain, m);
        }
        return reach_ok(s->u.loop.body, c, loops, n < 0 ? -1 : 0);
    }
    case ST_IF:
        return reach_ok_expr(s->u.if_.cond, c, loops, n < 0 ? 0 : n) &&
               reach_ok(s->u.if_.then_, c, loops, n) &&
               (!s->u.if_.else_ || reach_ok(s->u.if_.else_, c, loops, n));
    case ST_STORE:
        if (s->u.store.buf == c && !owned_index(s->u.store.idx, c, loops, n < 0 ? 0 : n))
            return false;
        for (int d = 0; d < s->u.store.buf->rank; d++)
            if (!reach_ok_expr(s->u.store.idx[d], c, loops, n < 0 ? 0 : n))
                return false;
        return reach_ok_expr(s->u.store.value, c, loops, n < 0 ? 0 : n);
    case ST_MICRO_GEMM:
        return s->u.gemm.a.buf != c && s->u.gemm.b.buf != c;
    default: return true;
    }
}

/* ------------------------------------------------------------ wgmma */

/* The widest swizzle (128, 64 or 32 bytes; 0: none) whose W-byte atoms
 * along N tile the n of one wgmma: an MN-major operand's descriptors start
 * each instruction (and each warpgroup's columns) at an atom's first byte. */
static int mn_swizzle_width(int64_t wg_n, DType dt)
{
    int64_t bytes = wg_n * dt_bits(dt) / 8;
    return bytes % 128 == 0 ? 128 : bytes % 64 == 0 ? 64 : bytes % 32 == 0 ? 32 : 0;
}

/* Can the product run as wgmma (sm_90a)?  Whole 2-D shared operands, A
 * K-major ([M, K]) and B K-major ([N, K], trans_b: the layout wgmma takes
 * for every dtype) or, for 16-bit types only, MN-major ([K, N], read with
 * the instruction's transpose immediate; 8-bit operands must be K-major),
 * and an accumulator that splits into 64-row pieces over warpgroups. */
static bool wgmma_fits(const Threads *T, const Stmt *s)
{
    const Region *a = &s->u.gemm.a, *b = &s->u.gemm.b, *c = &s->u.gemm.c;
    MmaLayout l;
    bool ok = T->t->gpu_sm >= 90 && !s->u.gemm.trans_a && !s->u.gemm.b_pairs && a->buf->rank == 2 &&
              b->buf->rank == 2 && c->buf->rank == 2 && a->buf != b->buf && ir_region_is_whole(a) &&
              ir_region_is_whole(b) && ir_wgmma_layout(c->ext[0], c->ext[1], T->k->nthreads, &l);
    if (!ok || s->u.gemm.trans_b)
        return ok;
    return dt_bits(b->buf->dtype) == 16 && mn_swizzle_width(l.wg_n, b->buf->dtype) != 0;
}

static void list_products(Stmt *s, Stmt **out, int *n, int cap)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            list_products(s->u.seq.items[i], out, n, cap);
        break;
    case ST_FOR: list_products(s->u.loop.body, out, n, cap); break;
    case ST_IF:
        list_products(s->u.if_.then_, out, n, cap);
        if (s->u.if_.else_)
            list_products(s->u.if_.else_, out, n, cap);
        break;
    case ST_MICRO_GEMM:
        if (*n < cap)
            out[(*n)++] = s;
        break;
    default: break;
    }
}

static bool share_buffer(const Stmt *p, const Stmt *q)
{
    const Buffer *x[3] = {p->u.gemm.a.buf, p->u.gemm.b.buf, p->u.gemm.c.buf};
    const Buffer *y[3] = {q->u.gemm.a.buf, q->u.gemm.b.buf, q->u.gemm.c.buf};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            if (x[i] == y[j])
                return true;
    return false;
}

/* The products that run as wgmma: those that fit, except where one shares
 * a buffer with an mma.sync product (its operands want padded row-major
 * rows, wgmma's swizzled ones; an accumulator has one layout).  Products
 * whose accumulator falls back to FMA loops read their operands
 * elementwise, which works in either layout. */
static void plan_wgmma(Threads *T)
{
    Stmt *all[64];
    bool on[64], sync[64];
    int n = 0;
    list_products(T->k->body, all, &n, 64);
    for (int i = 0; i < n; i++) {
        bool fma = !reach_ok(T->k->body, all[i]->u.gemm.c.buf, NULL, -1);
        on[i] = !fma && wgmma_fits(T, all[i]);
        sync[i] = !fma && !on[i];
    }
    for (bool changed = true; changed;) {
        changed = false;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                if (sync[i] && on[j] && share_buffer(all[i], all[j])) {
                    on[j] = false;
                    sync[j] = changed = true;
                }
    }
    for (int i = 0; i < n; i++)
        if (on[i])
            T->wg[T->nwg++] = all[i];
}

static bool is_wgmma(const Threads *T, const Stmt *s)
{
    for (int i = 0; i < T->nwg; i++)
        if (T->wg[i] == s)
            return true;
    return false;
}

/* Bytes of K each row of a K-major operand keeps in one swizzle atom: the
 * widest of the PTX ISA's 128-, 64- and 32-byte swizzles that divides the
 * row (a row is a multiple of 32 bytes: K is a multiple of the mma's k). */
static int swizzle_width(const Buffer *b)
{
    int64_t cols;
    ir_expr_is_const(b->shape[1], &cols);
    int64_t row = cols * dt_bits(b->dtype) / 8;
    return row % 128 == 0 ? 128 : row % 64 == 0 ? 64 : 32;
}

/* b is a wgmma operand whose descriptors need a swizzle of at most W bytes
 * (W: the widest its row takes, or for an MN-major B the widest whose
 * atoms tile one instruction's n): a buffer read both ways gets the
 * narrowest, which every use's descriptors can describe. */
static void note_swizzled(Threads *T, Buffer *b, int W)
{
    for (int i = 0; i < T->nswz; i++)
        if (T->swz[i] == b) {
            if (W < T->swz_w[i])
                T->swz_w[i] = W;
            return;
        }
    T->swz[T->nswz] = b;
    T->swz_w[T->nswz++] = W;
    /* the swizzle XORs address bits 4.. with bits 7..: its pattern repeats
     * every 1024 bytes, and the descriptors assume it starts at 0 */
    b->align = 1024;
}

static Expr *dup(Threads *T, const Expr *e) { return ir_clone_expr(T->k, e, &(IrSubst){0}); }

/* Where element (r, k) of a K-major operand [R, K] lies in the layout the
 * wgmma descriptors describe (PTX ISA, "shared memory matrix layout" of
 * wgmma, K-major with 128/64/32-byte swizzle): K is cut into columns of W
 * bytes, each column R rows of W bytes (8-row groups 8W bytes apart), and
 * within the 1024-aligned storage the 16-byte chunk bits 4.. of every byte
 * address are XORed with its bits 7.. (as many bits as W has chunks, log2
 * W/16).  The element's new place is returned as an index of the same
 * [R, K] buffer (its storage is only permuted).  An MN-major B [K, N] is
 * the same permutation with the roles named the other way: N, its
 * contiguous dimension, is cut into W-byte columns of K rows each (the
 * MN-major canonical layout: W-byte atoms of 8 k rows, atoms along N LBO =
 * K W bytes apart, 8-row groups of k SBO = 8 W apart). */
static void swizzle_index(Threads *T, const Buffer *b, int W, Expr **idx)
{
    Kernel *k = T->k;
    int64_t R, K;
    ir_expr_is_const(b->shape[0], &R);
    ir_expr_is_const(b->shape[1], &K);
    int64_t eb = dt_bits(b->dtype) / 8;
#define B(op, x, y) ir_binary(k, EX_##op, x, y)
    Expr *byte = B(MUL, idx[1], ci(T, eb));
    Expr *lin = B(ADD, B(ADD, B(MUL, B(DIV, byte, ci(T, W)), ci(T, R * W)), B(MUL, idx[0], ci(T, W))),
                  B(MOD, dup(T, byte), ci(T, W)));
    Expr *bits = B(SHL, B(BAND, B(SHR, lin, ci(T, 7)), ci(T, W / 16 - 1)), ci(T, 4));
    Expr *elem = B(DIV, B(BXOR, dup(T, lin), bits), ci(T, eb));
    idx[0] = B(DIV, elem, ci(T, K));
    idx[1] = B(MOD, dup(T, elem), ci(T, K));
#undef B
}

static int swizzled(const Threads *T, const Buffer *b)
{
    for (int i = 0; i < T->nswz; i++)
        if (T->swz[i] == b)
            return T->swz_w[i];
    return 0;
}

static void swizzle_expr(Threads *T, Expr *e)
{
    for (int i = 0; i < e->nargs; i++)
        swizzle_expr(T, e->args[i]);
    int W = e->op == EX_LOAD ? swizzled(T, e->buf) : 0;
    if (W) {
        Expr **idx = arena_alloc(T->k->arena, 2 * sizeof *idx);
        idx[0] = e->args[0];
        idx[1] = e->args[1];
        swizzle_index(T, e->buf, W, idx);
        e->args = idx;
    }
}

/* Every access to a swizzled operand goes to its swizzled place (the copies
 * that fill it, and any elementwise use). */
static void swizzle_stmt(Threads *T, Stmt *s)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            swizzle_stmt(T, s->u.seq.items[i]);
        break;
    case ST_FOR:
        swizzle_expr(T, s->u.loop.extent);
        swizzle_stmt(T, s->u.loop.body);
        break;
    case ST_IF:
        swizzle_expr(T, s->u.if_.cond);
        swizzle_stmt(T, s->u.if_.then_);
        if (s->u.if_.else_)
            swizzle_stmt(T, s->u.if_.else_);
        break;
    case ST_STORE: {
        for (int d = 0; d < s->u.store.buf->rank; d++)
            swizzle_expr(T, s->u.store.idx[d]);
        swizzle_expr(T, s->u.store.value);
        int W = swizzled(T, s->u.store.buf);
        if (W) {
            Expr **idx = arena_alloc(T->k->arena, 2 * sizeof *idx);
            idx[0] = s->u.store.idx[0];
            idx[1] = s->u.store.idx[1];
            swizzle_index(T, s->u.store.buf, W, idx);
            s->u.store.idx = idx;
        }
        break;
    }
    case ST_TMA_LOAD: /* the hardware writes the same layout (ir.h, "TMA") */
        s->u.mbar.swizzle = swizzled(T, s->u.mbar.dst.buf);
        break;
    default: break;
    }
}

/* The descriptor (low, high 32-bit words) of rows row0.. and k step k0 of
 * a K-major swizzled operand at byte offset base of the shared array, as
 * the PTX ISA's wgmma matrix descriptor: start address >> 4 in bits 0-13,
 * leading byte offset >> 4 in 16-29 (unused by swizzled K-major layouts:
 * one k step never leaves its W-byte column; 1 by convention), stride byte
 * offset >> 4 (8-row groups, 8W bytes) in 32-45, base offset 0 in 49-51
 * (the storage is 1024-aligned), swizzle mode in 62-63 (1: 128 bytes,
 * 2: 64, 3: 32).  extra: a per-warpgroup start offset >> 4 (or NULL). */
static void make_desc(Threads *T, const Buffer *b, int64_t base, int64_t row0, int64_t k0, Expr *extra,
                      Expr **lo, Expr **hi)
{
    int W = swizzled(T, b);
    int64_t R, eb = dt_bits(b->dtype) / 8;
    ir_expr_is_const(b->shape[0], &R);
    int64_t byte = k0 * eb;
    int64_t addr = base + byte / W * R * W + row0 * W + byte % W;
    int64_t mode = W == 128 ? 1 : W == 64 ? 2 : 3;
    *lo = ci(T, (addr >> 4) | (int64_t)1 << 16);
    if (extra)
        *lo = ir_binary(T->k, EX_ADD, *lo, extra);
    *hi = ci(T, (8 * W >> 4) | mode << 30);
}

/* The descriptor of k rows k0.. (one k step) and columns n0.. of an
 * MN-major B [K, N] (n0 a multiple of the W-byte atom's elements), stored
 * by swizzle_index in W-byte columns of K rows: start at column n0 / (W /
 * eb), row k0; for MN-major swizzled layouts the PTX ISA's leading byte
 * offset is the step between atoms along N (one column, K W bytes) and the
 * stride byte offset the step between groups of 8 k rows (8 W bytes). */
static void make_desc_mn(Threads *T, const Buffer *b, int64_t base, int64_t k0, int64_t n0, Expr *extra,
                         Expr **lo, Expr **hi)
{
    int W = swizzled(T, b);
    int64_t K, eb = dt_bits(b->dtype) / 8;
    ir_expr_is_const(b->shape[0], &K);
    int64_t addr = base + n0 * eb / W * K * W + k0 * W;
    int64_t mode = W == 128 ? 1 : W == 64 ? 2 : 3;
    *lo = ci(T, (addr >> 4) | (K * W >> 4) << 16);
    if (extra)
        *lo = ir_binary(T->k, EX_ADD, *lo, extra);
    *hi = ci(T, (8 * W >> 4) | mode << 30);
}

/* i * step, with i the warpgroup's row (or column) in the grid, >> 4 for a
 * descriptor's start address; NULL when it is always 0. */
static Expr *group_offset(Threads *T, const MmaLayout *L, bool rows, int64_t step)
{
    int count = rows ? L->wm : L->wn;
    if (count == 1)
        return NULL;
    Expr *g = ir_binary(T->k, EX_DIV, ir_var(T->k, T->tid), ci(T, 128));
    g = rows ? ir_binary(T->k, EX_DIV, g, ci(T, L->wn)) : ir_binary(T->k, EX_MOD, g, ci(T, L->wn));
    return ir_binary(T->k, EX_MUL, g, ci(T, step >> 4));
}

/* The descriptors of every wgmma a warpgroup issues for product s (in the
 * order of ir.h), now that the shared array is laid out. */
static void wgmma_descs(Threads *T, Stmt *s, const MmaLayout *L)
{
    const Buffer *A = s->u.gemm.a.buf, *Bb = s->u.gemm.b.buf;
    int64_t K = s->u.gemm.a.ext[1], kstep = dt_bits(A->dtype) == 8 ? 32 : 16;
    int64_t offa = ir_shared_offset(T->k, A), offb = ir_shared_offset(T->k, Bb);
    int n = (int)(4 * (K / kstep) * L->mt * L->nq), i = 0;
    Expr **d = arena_alloc(T->k->arena, (size_t)n * sizeof *d);
    for (int64_t ks = 0; ks < K / kstep; ks++)
        for (int p = 0; p < L->mt; p++)
            for (int q = 0; q < L->nq; q++, i += 4) {
                Expr *ea = group_offset(T, L, true, L->m / L->wm * swizzled(T, A));
                make_desc(T, A, offa, 64 * p, ks * kstep, ea, &d[i], &d[i + 1]);
                if (s->u.gemm.trans_b) {
                    Expr *eb = group_offset(T, L, false, L->n / L->wn * swizzled(T, Bb));
                    make_desc(T, Bb, offb, (int64_t)q * L->wg_n, ks * kstep, eb, &d[i + 2], &d[i + 3]);
                } else { /* a warpgroup's columns start K W bytes per atom later */
                    int64_t Kb, W = swizzled(T, Bb), bytes = L->n / L->wn * (dt_bits(Bb->dtype) / 8);
                    ir_expr_is_const(Bb->shape[0], &Kb);
                    Expr *eb = group_offset(T, L, false, bytes / W * Kb * W);
                    make_desc_mn(T, Bb, offb, ks * kstep, (int64_t)q * L->wg_n, eb, &d[i + 2], &d[i + 3]);
                }
            }
    s->u.gemm.desc = d;
    s->u.gemm.ndesc = n;
}

static void all_wgmma_descs(Threads *T)
{
    for (int u = 0; u < T->nuses; u++)
        if (is_wgmma(T, T->uses[u]))
            wgmma_descs(T, T->uses[u], &T->mma[T->use_mma[u]]);
}

/* Tensor-core products: their accumulators get the MMA layout (of wgmma
 * where plan_wgmma chose it); mma.sync operands live in shared memory, rows
 * padded by 16 bytes when a row is a multiple of 32 bytes (else the 8 rows
 * a warp's fragment load reads at once would share banks); wgmma operands
 * in the swizzled layout of swizzle_index. */
static bool find_mma(Threads *T, Stmt *s, Diag *d)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            if (!find_mma(T, s->u.seq.items[i], d))
                return false;
        return true;
    case ST_FOR: return find_mma(T, s->u.loop.body, d);
    case ST_IF:
        return find_mma(T, s->u.if_.then_, d) && (!s->u.if_.else_ || find_mma(T, s->u.if_.else_, d));
    case ST_MICRO_GEMM: {
        const Region *c = &s->u.gemm.c;
        int g = mma_of(T, c->buf);
        if (g < 0 && !reach_ok(T->k->body, c->buf, NULL, -1)) {
            /* c is read across rows or outside parallel loops (a softmax
             * over scores, say): the product runs on plain FMA loops */
            *s = *pass_gemm_loops(T->k, T->t, s);
            return true;
        }
        if (g < 0 && T->nmma == (int)(sizeof T->mma / sizeof T->mma[0]))
            return diag_error(d, s->loc, "kernel %s has more than %d tensor-core accumulators",
                              T->k->name, T->nmma);
        bool wg = is_wgmma(T, s);
        if (g < 0 && wg)
            ir_wgmma_layout(c->ext[0], c->ext[1], T->k->nthreads, &T->mma[T->nmma]); /* (plan_wgmma checked) */
        else if (g < 0 && !ir_mma_layout(c->ext[0], c->ext[1], T->k->nthreads, &T->mma[T->nmma]))
            return diag_error(d, s->loc, "gemm accumulator %s [%lld, %lld] cannot map to %s%d threads "
                              "(needs multiples of 16 x 8 per warp)", c->buf->name,
                              (long long)c->ext[0], (long long)c->ext[1],
                              T->k->block_threads ? "the spec's " : "", T->k->nthreads);
        if (g < 0)
            T->mma_stmt[g = T->nmma++] = s;
        if (T->nuses == (int)(sizeof T->uses / sizeof T->uses[0]))
            return diag_error(d, s->loc, "kernel %s has more than %d tensor-core products", T->k->name,
                              T->nuses);
        T->uses[T->nuses] = s;
        T->use_mma[T->nuses++] = g;
        Buffer *ops[2] = {s->u.gemm.a.buf, s->u.gemm.b.buf};
        for (int o = 0; o < 2; o++) {
            Buffer *b = ops[o];
            int64_t cols;
            T->uniform_use[b->id] = 1; /* shared: every warp reads all of it */
            if (wg) {
                bool mn = o == 1 && !s->u.gemm.trans_b; /* B as [K, N] */
                note_swizzled(T, b, mn ? mn_swizzle_width(T->mma[g].wg_n, b->dtype) : swizzle_width(b));
                continue;
            }
            ir_expr_is_const(b->shape[1], &cols);
            /* rows of 4 mod 8 words put the 8 rows one fragment load reads
             * (4 words each) on 32 different banks */
            int64_t words = cols * dt_bits(b->dtype) / 32;
            if (b->scope != SCOPE_GLOBAL && (cols * dt_bits(b->dtype)) % 128 == 0 && words % 8 == 0 &&
                !tma_fills(T->k->body, b))
                b->stride[0] = ci(T, cols + 128 / dt_bits(b->dtype));
        }
        return true;
    }
    default: return true;
    }
}

/* Threads per block: the target's default, doubled for a large
 * tensor-core tile (128 x 128 or more), which 8 warps cover with half the
 * accumulator registers each (measured on an H100: 0.62 ms instead of
 * 0.77 ms for a 4096^3 bf16 GEMM in 128 x 128 x 64 tiles). */
static int block_size(const Stmt *s, int dflt)
{
    int best = dflt, b;
    MmaLayout l;
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            if ((b = block_size(s->u.seq.items[i], dflt)) > best)
                best = b;
        return best;
    case ST_FOR: return block_size(s->u.loop.body, dflt);
    case ST_IF:
        best = block_size(s->u.if_.then_, dflt);
        if (s->u.if_.else_ && (b = block_size(s->u.if_.else_, dflt)) > best)
            best = b;
        return best;
    case ST_MICRO_GEMM:
        if (s->u.gemm.c.ext[0] * s->u.gemm.c.ext[1] >= 128 * 128 &&
            ir_mma_layout(s->u.gemm.c.ext[0], s->u.gemm.c.ext[1], 2 * dflt, &l))
            return 2 * dflt;
        return dflt;
    default: return dflt;
    }
}

/* Every tensor-core accumulator must have become a private [slots] array. */
static bool check_mma(Threads *T, Diag *d)
{
    for (int g = 0; g < T->nmma; g++) {
        const Buffer *b = T->mma_stmt[g]->u.gemm.c.buf;
        if (b->scope != SCOPE_LOCAL || b->rank != 1)
            return diag_error(d, T->mma_stmt[g]->loc,
                              "the gemm accumulator %s is also used elementwise in a way that does not "
                              "follow its tensor-core layout (a loop over other indices, or a read "
                              "outside a parallel loop over its shape)", b->name);
    }
    return true;
}

bool pass_threads(Kernel *k, const TargetInfo *t, Diag *d)
{
    if (!t->gpu_sm || k->nthreads)
        return true;
    Threads T = {.k = k, .t = t};
    T.tid = ir_var_new(k, "tid");
    ir_set_threads(k, k->block_threads ? k->block_threads : block_size(k->body, t->gpu_threads), T.tid);
    T.nids = k->next_id + 1;
    T.uniform_use = calloc((size_t)k->next_id + 1, 1);
    T.misaligned = calloc((size_t)k->next_id + 1, 1);
    T.layout_of = calloc((size_t)k->next_id + 1, sizeof *T.layout_of);
    T.adopted = calloc((size_t)k->next_id + 1, sizeof *T.adopted);
    T.chunk_of = calloc((size_t)k->next_id + 1, sizeof *T.chunk_of);
    if (!T.uniform_use || !T.misaligned || !T.layout_of || !T.adopted || !T.chunk_of)
        return diag_error(d, k->loc, "out of memory");
    plan_wgmma(&T);
    bool ok = find_mma(&T, k->body, d);
    if (ok && T.nswz)
        swizzle_stmt(&T, k->body);
    if (ok && k->next_id + 1 > T.nids) { /* find_mma made buffers (FMA fallbacks) */
        int n = k->next_id + 1;
        T.uniform_use = realloc(T.uniform_use, (size_t)n);
        T.misaligned = realloc(T.misaligned, (size_t)n);
        T.layout_of = realloc(T.layout_of, (size_t)n * sizeof *T.layout_of);
        T.adopted = realloc(T.adopted, (size_t)n * sizeof *T.adopted);
        memset(T.adopted + T.nids, 0, (size_t)(n - T.nids) * sizeof *T.adopted);
        T.chunk_of = realloc(T.chunk_of, (size_t)n * sizeof *T.chunk_of);
        memset(T.chunk_of + T.nids, 0, (size_t)(n - T.nids) * sizeof *T.chunk_of);
        memset(T.uniform_use + T.nids, 0, (size_t)(n - T.nids));
        memset(T.misaligned + T.nids, 0, (size_t)(n - T.nids));
        memset(T.layout_of + T.nids, 0, (size_t)(n - T.nids) * sizeof *T.layout_of);
        T.nids = n;
    }
    if (ok) {
        to_fixed_point(&T, k->body, adopt_nest);
        to_fixed_point(&T, k->body, agree_nest);
        prescan(&T, k->body);
        k->body = uniform(&T, k->body);
        promote(&T);
        ok = check_mma(&T, d) && place_buffers(&T, d);
    }
    if (ok)
        all_wgmma_descs(&T);
    if (ok) { /* shared placement known: order the phases */
        Sync S = {.T = &T, .nbufs = k->next_id + 1};
        unsigned *st = calloc((size_t)S.nbufs, sizeof *st);
        sync_seq(&S, k->body, st);
        free(st);
    }
    free(T.uniform_use);
    free(T.misaligned);
    free(T.layout_of);
    free(T.adopted);
    free(T.chunk_of);
    free(T.owned);
    free(T.phases);
    free(T.phase_one);
    for (int i = 0; i < T.nphases; i++)
        free(T.phase_keys[i]);
    free(T.phase_keys);
    free(T.phase_nkeys);
    return ok;
}

/* Bytes of shared memory a threaded kernel's buffers take, 16-aligned each
 * (what a launch must provide as dynamic shared memory). */
int64_t pass_shared_bytes(const Kernel *k) { return ir_shared_bytes(k); }
