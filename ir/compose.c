/* compose.c — two kernels into one: a producer and a consumer of the same
 * tensor (`T.compose`, Tile IR, before the pipeline).
 *
 * The producer P writes an output argument y that the consumer C reads as
 * its input x.  The pair runs P's grid to the end, then C's.  The composed
 * kernel runs one grid over P's dimensions; each block runs P's body, then
 * C's body for every block of C it stands for (C's extra grid dimensions
 * become serial loops inside the block), with y a block-local buffer that
 * never reaches memory.  It is legal when
 *   - P's grid is a prefix of C's, with equal extents, so block b of P and
 *     blocks (b, ...) of C agree on the dimensions they share;
 *   - y and x have one dtype and one shape; P only writes y, C only reads x;
 *   - in every dimension, what P's block writes of y is a window at an
 *     affine offset of the block (Σ c·var + const over grid variables,
 *     parameters and loops of constant extent), written whole, and what C's
 *     blocks read of x (extra dimensions over their extents) lies inside it.
 * Then y becomes a scratch buffer of the window's shape in y's dtype (so the
 * results are the pair's bits), its indices rebased by the window's origin.
 * Where the window may pass y's edge (a tail block), P's writes store 0
 * past the edge (`select(row < M, v, 0)`; a copy or fill becomes element
 * stores, a copy from a global tensor staged first): the pair drops those
 * writes and C reads 0 there.  In the stored value, not a nest of its own,
 * so nothing sits between P's last nest and C's first.  The intermediate's scope is shared: on a GPU the block's
 * threads hand it from P's phase to C's; on a CPU it is cache-resident
 * scratch.  Afterwards the ordinary pipeline runs (fuse merges P's and
 * C's window tests, fuses P's last nest with C's first and, inside the
 * window, drops the select). */
#include "ir/ir.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_TERMS = 12, MAX_LOOPS = 32, MAX_BOXES = 64, MAX_LINKS = 4, MAX_CELLS = 1 << 16 };

/* ------------------------------------------------------------ affine forms */

/* Σ coef·(var or param) + c over the index variables of one kernel. */
typedef struct Term {
    Var *var;
    Param *param;
    int64_t coef;
} Term;

typedef struct Affine {
    Term t[MAX_TERMS];
    int n;
    int64_t c;
} Affine;

static bool aff_add(Affine *a, Var *v, Param *p, int64_t coef)
{
    for (int i = 0; i < a->n; i++)
        if (a->t[i].var == v && a->t[i].param == p) {
            a->t[i].coef += coef;
            return true;
        }
    if (a->n == MAX_TERMS)
        return false;
    a->t[a->n++] = (Term){v, p, coef};
    return true;
}

/* a += scale · e, when e is affine in integer variables and parameters. */
static bool aff_of(const Expr *e, int64_t scale, Affine *a)
{
    int64_t k;
    switch (e->op) {
    case EX_CONST:
        if (!dt_is_int(e->dtype))
            return false;
        a->c += scale * e->imm.i;
        return true;
    case EX_VAR: return aff_add(a, e->var, NULL, scale);
    case EX_PARAM: return dt_is_int(e->dtype) && aff_add(a, NULL, e->param, scale);
    case EX_ADD: return aff_of(e->args[0], scale, a) && aff_of(e->args[1], scale, a);
    case EX_SUB: return aff_of(e->args[0], scale, a) && aff_of(e->args[1], -scale, a);
    case EX_NEG: return aff_of(e->args[0], -scale, a);
    case EX_MUL:
        if (ir_expr_is_const(e->args[0], &k))
            return aff_of(e->args[1], scale * k, a);
        if (ir_expr_is_const(e->args[1], &k))
            return aff_of(e->args[0], scale * k, a);
        return false;
    default: return false;
    }
}

static bool aff_same(const Affine *a, const Affine *b)
{
    Affine diff = *a;
    for (int i = 0; i < b->n; i++)
        if (!aff_add(&diff, b->t[i].var, b->t[i].param, -b->t[i].coef))
            return false;
    for (int i = 0; i < diff.n; i++)
        if (diff.t[i].coef)
            return false;
    return true;
}

/* The expression of a (terms in order, coefficients folded in). */
static Expr *aff_expr(Kernel *k, const Affine *a)
{
    Expr *e = NULL;
    for (int i = 0; i < a->n; i++) {
        if (!a->t[i].coef)
            continue;
        Expr *t = a->t[i].var ? ir_var(k, a->t[i].var) : ir_param(k, a->t[i].param);
        if (a->t[i].coef != 1)
            t = ir_binary(k, EX_MUL, t, ir_const_i(k, a->t[i].coef));
        e = e ? ir_binary(k, EX_ADD, e, t) : t;
    }
    if (!e)
        return ir_const_i(k, a->c);
    if (a->c > 0)
        e = ir_binary(k, EX_ADD, e, ir_const_i(k, a->c));
    else if (a->c < 0)
        e = ir_binary(k, EX_SUB, e, ir_const_i(k, -a->c));
    return e;
}

/* "bx*8 + 3" for messages. */
static void aff_text(const Affine *a, int64_t plus, char *out, size_t n)
{
    size_t used = 0;
    out[0] = 0;
    for (int i = 0; i < a->n && used < n; i++) {
        int64_t c = a->t[i].coef;
        if (!c)
            continue;
        const char *name = a->t[i].var ? a->t[i].var->name : a->t[i].param->name;
        const char *sign = used ? (c < 0 ? " - " : " + ") : (c < 0 ? "-" : "");
        int64_t m = c < 0 ? -c : c;
        used += (size_t)(m == 1 ? snprintf(out + used, n - used, "%s%s", sign, name)
                                : snprintf(out + used, n - used, "%s%s*%lld", sign, name, (long long)m));
    }
    int64_t c = a->c + plus;
    if (used < n && (c || !used))
        snprintf(out + used, n - used, used ? (c < 0 ? " - %lld" : " + %lld") : "%lld",
                 (long long)(used && c < 0 ? -c : c));
}

/* ------------------------------------------------------------ windows */

/* One dimension of what an access touches in a block: base + [lo, hi),
 * base the terms of grid variables and parameters, [lo, hi) the constant
 * part over the enclosing loops' ranges. */
typedef struct Span {
    Affine base;
    int64_t lo, hi;
} Span;

typedef struct Box {
    Span dim[IR_MAX_RANK];
    const Stmt *stmt; /* the write (P's side), for the tail zeroing */
} Box;

/* One connection: P's output `out` feeds C's input `in` through `local`. */
typedef struct Link {
    const char *out_name, *in_name;
    const Buffer *out, *in; /* in P and in C */
    Buffer *local;          /* in the composed kernel: both are mapped to it */
    Expr *shape[IR_MAX_RANK]; /* y's shape, in the composed kernel */
    Box writes[MAX_BOXES];
    int nwrites;
    Span window[IR_MAX_RANK];
} Link;

typedef struct Compose {
    Kernel *k;
    const Kernel *P, *C;
    Diag *d;
    Link links[MAX_LINKS];
    int nlinks;
} Compose;

/* The walk over one part's body that gathers its accesses of a link's buffer. */
typedef struct Walk {
    Compose *cx;
    Link *l;
    bool producer;
    Var *loops[MAX_LOOPS];
    int64_t extent[MAX_LOOPS]; /* -1: not a constant */
    int nloops, conds;
    Box reads[MAX_BOXES];
    int nreads;
    bool failed;
} Walk;

static bool fail(Compose *cx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(Compose *cx, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return diag_error(cx->d, cx->k->loc, "T.compose %s: %s", cx->k->name, msg);
}

static const char *part_name(const Walk *w) { return w->producer ? w->cx->P->name : w->cx->C->name; }
static const char *buf_name(const Walk *w) { return w->producer ? w->l->out_name : w->l->in_name; }

/* what: a phrase with one %s for the buffer's name. */
static void walk_fail(Walk *w, SrcLoc loc, const char *what)
{
    if (w->failed)
        return;
    char phrase[200];
    snprintf(phrase, sizeof phrase, what, buf_name(w));
    fail(w->cx, "%s %s (%s:%d)", part_name(w), phrase, loc.file ? loc.file : "?", loc.line);
    w->failed = true;
}

static int loop_index(const Walk *w, const Var *v)
{
    for (int i = 0; i < w->nloops; i++)
        if (w->loops[i] == v)
            return i;
    return -1;
}

/* The span of offset a with extent ext.  exact: every element of it is
 * touched (at most one loop per dimension, stepping no further than ext),
 * and *loop_used collects the loops it mentions. */
static bool span_of(const Walk *w, const Affine *a, int64_t ext, Span *s, bool *exact, uint64_t *loop_used)
{
    memset(s, 0, sizeof *s);
    s->lo = s->hi = a->c;
    int loops = 0;
    for (int i = 0; i < a->n; i++) {
        const Term *t = &a->t[i];
        int j = t->var ? loop_index(w, t->var) : -1;
        if (j < 0) {
            aff_add(&s->base, t->var, t->param, t->coef);
            continue;
        }
        if (w->extent[j] < 0)
            return false;
        int64_t n = w->extent[j] > 0 ? w->extent[j] : 1, reach = t->coef * (n - 1);
        s->lo += reach < 0 ? reach : 0;
        s->hi += reach > 0 ? reach : 0;
        loops++;
        if (w->extent[j] == 0 || t->coef > ext || -t->coef > ext || (*loop_used >> j & 1))
            *exact = false;
        *loop_used |= (uint64_t)1 << j;
    }
    if (loops > 1)
        *exact = false;
    s->hi += ext;
    return true;
}

static void access(Walk *w, const Stmt *s, Expr *const *off, const int64_t *ext, bool write)
{
    if (w->failed)
        return;
    if (w->producer && !write)
        return walk_fail(w, s->loc, "reads back %s");
    if (w->producer && w->conds)
        return walk_fail(w, s->loc, "writes %s under a T.if_ (only unconditional writes can be followed)");
    Box b = {.stmt = s};
    bool exact = true;
    uint64_t used = 0;
    int rank = write ? w->l->out->rank : w->l->in->rank;
    for (int d = 0; d < rank; d++) {
        Affine a = {0};
        if (!aff_of(off[d], 1, &a) || !span_of(w, &a, ext[d], &b.dim[d], &exact, &used))
            return walk_fail(w, s->loc, write ? "writes %s at an index that is not affine in the block's variables (or in a loop of run-time extent)"
                                              : "reads %s at an index that is not affine in the block's variables (or in a loop of run-time extent)");
    }
    if (write && !exact)
        return walk_fail(w, s->loc, "writes %s in steps that leave gaps (or with several loops in one dimension)");
    Box *list = write ? w->l->writes : w->reads;
    int *n = write ? &w->l->nwrites : &w->nreads;
    if (*n == MAX_BOXES)
        return walk_fail(w, s->loc, "has too many accesses of %s to follow");
    list[(*n)++] = b;
}

static void walk_expr(Walk *w, const Stmt *s, const Expr *e)
{
    if (e->op == EX_LOAD && e->buf == w->l->local) {
        int64_t ones[IR_MAX_RANK] = {1, 1, 1, 1, 1, 1};
        access(w, s, e->args, ones, false);
    }
    for (int i = 0; i < e->nargs; i++)
        walk_expr(w, s, e->args[i]);
}

static void walk_region(Walk *w, const Stmt *s, const Region *r, bool write)
{
    for (int d = 0; d < r->buf->rank; d++)
        walk_expr(w, s, r->off[d]);
    if (r->buf == w->l->local)
        access(w, s, r->off, r->ext, write);
}

/* A statement that reads and writes the buffer in one (accumulates). */
static void walk_accumulator(Walk *w, const Stmt *s, const Region *r, const char *what)
{
    for (int d = 0; d < r->buf->rank; d++)
        walk_expr(w, s, r->off[d]);
    if (r->buf == w->l->local)
        walk_fail(w, s->loc, what);
}

static void walk(Walk *w, const Stmt *s)
{
    if (!s || w->failed)
        return;
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            walk(w, s->u.seq.items[i]);
        break;
    case ST_FOR: {
        walk_expr(w, s, s->u.loop.extent);
        if (w->nloops == MAX_LOOPS)
            return walk_fail(w, s->loc, "nests loops too deeply to follow around %s");
        int64_t n;
        w->loops[w->nloops] = s->u.loop.var;
        w->extent[w->nloops++] = ir_expr_is_const(s->u.loop.extent, &n) ? n : -1;
        walk(w, s->u.loop.body);
        w->nloops--;
        break;
    }
    case ST_IF:
        walk_expr(w, s, s->u.if_.cond);
        w->conds++;
        walk(w, s->u.if_.then_);
        walk(w, s->u.if_.else_);
        w->conds--;
        break;
    case ST_STORE: {
        for (int d = 0; d < s->u.store.buf->rank; d++)
            walk_expr(w, s, s->u.store.idx[d]);
        walk_expr(w, s, s->u.store.value);
        int64_t ones[IR_MAX_RANK] = {1, 1, 1, 1, 1, 1};
        if (s->u.store.buf == w->l->local)
            access(w, s, s->u.store.idx, ones, true);
        break;
    }
    case ST_COPY:
        walk_region(w, s, &s->u.copy.src, false);
        walk_region(w, s, &s->u.copy.dst, true);
        break;
    case ST_ATOMIC_ADD:
        walk_region(w, s, &s->u.copy.src, false);
        walk_accumulator(w, s, &s->u.copy.dst, "adds atomically to %s");
        break;
    case ST_FILL:
        walk_expr(w, s, s->u.fill.value);
        walk_region(w, s, &s->u.fill.dst, true);
        break;
    case ST_GEMM:
        if (s->u.gemm.rows)
            walk_expr(w, s, s->u.gemm.rows);
        if (s->u.gemm.cols)
            walk_expr(w, s, s->u.gemm.cols);
        walk_region(w, s, &s->u.gemm.a, false);
        walk_region(w, s, &s->u.gemm.b, false);
        walk_accumulator(w, s, &s->u.gemm.c, "accumulates a gemm into %s");
        break;
    case ST_REDUCE:
        walk_region(w, s, &s->u.reduce.src, false);
        walk_accumulator(w, s, &s->u.reduce.dst, "reduces into %s");
        break;
    default: {
        IrUse u = {0};
        ir_buffer_use(s, w->l->local, &u);
        if (u.reads || u.writes)
            walk_fail(w, s->loc, "uses %s in a statement composition does not follow");
        break;
    }
    }
}

/* ------------------------------------------------------------ legality */

static void span_text(const Span *s, char *out, size_t n)
{
    char lo[96], hi[96];
    aff_text(&s->base, s->lo, lo, sizeof lo);
    aff_text(&s->base, s->hi, hi, sizeof hi);
    snprintf(out, n, "[%s, %s)", lo, hi);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Do the write boxes cover their bounding window whole?  Constant geometry
 * (the bases agree), so cut each dimension at every box edge and ask of
 * each cell whether a box holds it. */
static bool covers(const Link *l, int rank)
{
    int64_t cut[IR_MAX_RANK][2 * MAX_BOXES];
    int ncut[IR_MAX_RANK];
    int64_t cells = 1;
    for (int d = 0; d < rank; d++) {
        ncut[d] = 0;
        for (int b = 0; b < l->nwrites; b++)
            for (int e = 0; e < 2; e++) {
                int64_t x = e ? l->writes[b].dim[d].hi : l->writes[b].dim[d].lo;
                bool seen = false;
                for (int i = 0; i < ncut[d]; i++)
                    seen |= cut[d][i] == x;
                if (!seen)
                    cut[d][ncut[d]++] = x;
            }
        qsort(cut[d], (size_t)ncut[d], sizeof cut[d][0], cmp_i64);
        cells *= ncut[d] - 1;
    }
    if (cells > MAX_CELLS)
        return false;
    for (int64_t c = 0; c < cells; c++) {
        int64_t rest = c, at[IR_MAX_RANK];
        for (int d = 0; d < rank; d++) { /* a cell by its first point */
            at[d] = cut[d][rest % (ncut[d] - 1)];
            rest /= ncut[d] - 1;
        }
        bool held = false;
        for (int b = 0; b < l->nwrites && !held; b++) {
            held = true;
            for (int d = 0; d < rank; d++)
                held &= l->writes[b].dim[d].lo <= at[d] && at[d] < l->writes[b].dim[d].hi;
        }
        if (!held)
            return false;
    }
    return true;
}

/* The window P's block writes: the boxes move together with the block
 * and cover their hull. */
static bool write_window(Compose *cx, Link *l)
{
    int rank = l->out->rank;
    if (!l->nwrites)
        return fail(cx, "%s never writes %s", cx->P->name, l->out_name);
    for (int d = 0; d < rank; d++) {
        l->window[d] = l->writes[0].dim[d];
        for (int b = 1; b < l->nwrites; b++) {
            const Span *s = &l->writes[b].dim[d];
            if (!aff_same(&s->base, &l->window[d].base))
                return fail(cx, "%s's writes of %s do not move together with its block (dim %d)", cx->P->name,
                            l->out_name, d);
            l->window[d].lo = s->lo < l->window[d].lo ? s->lo : l->window[d].lo;
            l->window[d].hi = s->hi > l->window[d].hi ? s->hi : l->window[d].hi;
        }
    }
    if (!covers(l, rank))
        return fail(cx, "%s's block leaves gaps in the window of %s it writes", cx->P->name, l->out_name);
    return true;
}

/* Every read of C's blocks lies inside the window P's block wrote. */
static bool reads_inside(Compose *cx, Link *l, const Walk *w)
{
    for (int r = 0; r < w->nreads; r++)
        for (int d = 0; d < l->in->rank; d++) {
            const Span *s = &w->reads[r].dim[d], *win = &l->window[d];
            if (aff_same(&s->base, &win->base) && s->lo >= win->lo && s->hi <= win->hi)
                continue;
            char rt[200], wt[200];
            span_text(s, rt, sizeof rt);
            span_text(win, wt, sizeof wt);
            fail(cx, "%s's block reads %s dim %d %s but %s's block writes %s dim %d %s", cx->C->name, l->in_name,
                 d, rt, cx->P->name, l->out_name, d, wt);
            diag_hint(cx->d, "the consumer's block must read only what the producer's block writes: match their tiles");
            return false;
        }
    return true;
}

/* ------------------------------------------------------------ the rewrite */

static Expr *zero_of(Kernel *k, DType t)
{
    return t == DT_BOOL ? ir_const_bool(k, false) : dt_is_float(t) ? ir_const_f(k, 0.0) : ir_const_i(k, 0);
}

static const char *free_name(Kernel *k, const char *name)
{
    const char *n = name;
    for (int i = 1; ir_buf_find(k, n); i++)
        n = arena_printf(k->arena, "%s_%d", name, i);
    return n;
}

static Expr *clone(Kernel *k, const Expr *e) { return ir_clone_expr(k, e, &(IrSubst){0}); }

static Expr *both(Kernel *k, Expr *a, Expr *b) { return a ? ir_binary(k, EX_AND, a, b) : b; }

/* May a write's span pass y's edge in dimension d: above its extent, or
 * below 0?  Grid variables are >= 0 and run-time sizes positive. */
static void may_pass(const Link *l, const Span *s, int d, bool *above, bool *below)
{
    int64_t n;
    bool fixed = !s->base.n && ir_expr_is_const(l->shape[d], &n);
    *above = fixed ? s->hi > n : true;
    *below = s->lo < 0;
    for (int i = 0; i < s->base.n; i++)
        *below |= s->base.t[i].coef < 0;
}

/* Whether y's element idx (global indices) lies inside y, tested in the
 * dimensions where write w may pass y's edge; NULL when it cannot. */
static Expr *inside_y(Kernel *k, const Link *l, const Box *w, Expr *const *idx)
{
    Expr *in = NULL;
    for (int d = 0; d < l->out->rank; d++) {
        bool above, below;
        may_pass(l, &w->dim[d], d, &above, &below);
        if (below)
            in = both(k, in, ir_binary(k, EX_LE, ir_const_i(k, 0), clone(k, idx[d])));
        if (above)
            in = both(k, in, ir_binary(k, EX_LT, clone(k, idx[d]), clone(k, l->shape[d])));
    }
    return in;
}

/* The value P's write leaves in y: v where the pair's write lands, 0 past
 * y's edge, where the pair drops it and C reads 0.  Zeroing in the stored
 * value (not in a nest of its own) keeps P's last nest next to C's first,
 * so fuse can merge them when the rows are a run-time size. */
static Expr *landed(Kernel *k, Expr *in, Expr *v) { return in ? ir_select(k, in, v, zero_of(k, v->dtype)) : v; }

/* Loops over the non-unit extents of window r around an empty body
 * (*inner); pos[d] is the position in dimension d of the window. */
static Stmt *window_loops(Kernel *k, const Region *r, Expr **pos, Stmt **inner, SrcLoc loc)
{
    Var *z[IR_MAX_RANK] = {0};
    for (int d = 0; d < r->buf->rank; d++) {
        z[d] = r->ext[d] > 1 ? ir_var_new(k, "z") : NULL;
        pos[d] = z[d] ? ir_var(k, z[d]) : ir_const_i(k, 0);
    }
    Stmt *body = ir_seq(k, loc);
    *inner = body;
    for (int d = r->buf->rank - 1; d >= 0; d--) {
        if (!z[d])
            continue;
        Stmt *seq = ir_seq(k, loc);
        ir_seq_push(k, seq, ir_for(k, z[d], ir_const_i(k, r->ext[d]), LOOP_PARALLEL, 0, body, loc));
        body = seq;
    }
    return body;
}

static void element(Kernel *k, const Region *r, Expr *const *pos, Expr **idx)
{
    for (int d = 0; d < r->buf->rank; d++)
        idx[d] = ir_binary(k, EX_ADD, clone(k, r->off[d]), clone(k, pos[d]));
}

/* A copy's source element for destination position pos: the source's
 * non-unit dimensions take the destination's in order (COPY's rule). */
static Expr *source_at(Kernel *k, const Region *src, const Region *dst, Expr *const *pos)
{
    Expr *spos[IR_MAX_RANK], *idx[IR_MAX_RANK];
    int next = 0;
    for (int d = 0; d < src->buf->rank; d++) {
        while (next < dst->buf->rank && dst->ext[next] == 1)
            next++;
        spos[d] = src->ext[d] == 1 || next == dst->buf->rank ? ir_const_i(k, 0) : pos[next++];
    }
    element(k, src, spos, idx);
    return ir_load(k, src->buf, idx);
}

/* A fill or copy into y's window as element stores of landed values.  A
 * global source is copied into a scratch tile first, so its own edge keeps
 * lower's guards (reads past it give 0). */
static Stmt *land_window(Compose *cx, const Link *l, const Box *w, Stmt *s)
{
    Kernel *k = cx->k;
    const Region *dst = s->op == ST_COPY ? &s->u.copy.dst : &s->u.fill.dst;
    Region src = s->op == ST_COPY ? s->u.copy.src : (Region){0};
    Stmt *out = ir_seq(k, s->loc), *inner;
    if (src.buf && src.buf->scope == SCOPE_GLOBAL) {
        Buffer *stage = ir_buf_add(k, free_name(k, "stage"), SCOPE_SHARED, l->local->dtype, dst->buf->rank,
                                   dst->ext, s->loc);
        Region whole = ir_region_whole(k, stage);
        ir_seq_push(k, out, ir_copy(k, src, whole, s->loc));
        src = whole;
    }
    Expr *pos[IR_MAX_RANK], *idx[IR_MAX_RANK];
    ir_seq_push(k, out, window_loops(k, dst, pos, &inner, s->loc));
    element(k, dst, pos, idx);
    Expr *v = src.buf ? source_at(k, &src, dst, pos) : clone(k, s->u.fill.value);
    ir_seq_push(k, inner, ir_store(k, l->local, idx, landed(k, inside_y(k, l, w, idx), v), s->loc));
    return out;
}

static const Box *write_of(const Link *l, const Stmt *s)
{
    for (int i = 0; i < l->nwrites; i++)
        if (l->writes[i].stmt == s)
            return &l->writes[i];
    return NULL;
}

/* s, or what replaces it when it is a write of y that may pass y's edge. */
static Stmt *land_write(Compose *cx, Stmt *s)
{
    for (int i = 0; i < cx->nlinks; i++) {
        const Link *l = &cx->links[i];
        const Box *w = write_of(l, s);
        if (!w)
            continue;
        if (s->op == ST_STORE) {
            s->u.store.value = landed(cx->k, inside_y(cx->k, l, w, s->u.store.idx), s->u.store.value);
            return s;
        }
        const Region *dst = s->op == ST_COPY ? &s->u.copy.dst : &s->u.fill.dst;
        bool may = false;
        for (int d = 0; d < dst->buf->rank; d++) {
            bool above, below;
            may_pass(l, &w->dim[d], d, &above, &below);
            may |= above || below;
        }
        return may ? land_window(cx, l, w, s) : s;
    }
    return s;
}

static Stmt *land_writes(Compose *cx, Stmt *s)
{
    if (!s)
        return s;
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            s->u.seq.items[i] = land_writes(cx, s->u.seq.items[i]);
        return s;
    case ST_FOR: s->u.loop.body = land_writes(cx, s->u.loop.body); return s;
    case ST_IF:
        s->u.if_.then_ = land_writes(cx, s->u.if_.then_);
        s->u.if_.else_ = land_writes(cx, s->u.if_.else_);
        return s;
    default: return land_write(cx, s);
    }
}

/* Indices of the local buffer: global - window origin. */
static void rebase(Compose *cx, Expr **off, const Buffer *b)
{
    for (int i = 0; i < cx->nlinks; i++) {
        Link *l = &cx->links[i];
        if (b != l->local)
            continue;
        for (int d = 0; d < b->rank; d++) {
            Affine a = {0};
            aff_of(off[d], 1, &a); /* affine: every access was checked */
            for (int t = 0; t < l->window[d].base.n; t++)
                aff_add(&a, l->window[d].base.t[t].var, l->window[d].base.t[t].param, -l->window[d].base.t[t].coef);
            a.c -= l->window[d].lo;
            off[d] = aff_expr(cx->k, &a);
        }
    }
}

static void rebase_expr(Compose *cx, Expr *e)
{
    for (int i = 0; i < e->nargs; i++)
        rebase_expr(cx, e->args[i]);
    if (e->op == EX_LOAD)
        rebase(cx, e->args, e->buf);
}

static void rebase_region(Compose *cx, Region *r)
{
    for (int d = 0; d < r->buf->rank; d++)
        rebase_expr(cx, r->off[d]);
    rebase(cx, r->off, r->buf);
}

static void rebase_stmt(Compose *cx, Stmt *s)
{
    if (!s)
        return;
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            rebase_stmt(cx, s->u.seq.items[i]);
        break;
    case ST_FOR:
        rebase_expr(cx, s->u.loop.extent);
        rebase_stmt(cx, s->u.loop.body);
        break;
    case ST_IF:
        rebase_expr(cx, s->u.if_.cond);
        rebase_stmt(cx, s->u.if_.then_);
        rebase_stmt(cx, s->u.if_.else_);
        break;
    case ST_STORE:
        for (int d = 0; d < s->u.store.buf->rank; d++)
            rebase_expr(cx, s->u.store.idx[d]);
        rebase_expr(cx, s->u.store.value);
        rebase(cx, s->u.store.idx, s->u.store.buf);
        break;
    case ST_COPY:
    case ST_ATOMIC_ADD:
        rebase_region(cx, &s->u.copy.src);
        rebase_region(cx, &s->u.copy.dst);
        break;
    case ST_FILL:
        rebase_expr(cx, s->u.fill.value);
        rebase_region(cx, &s->u.fill.dst);
        break;
    case ST_GEMM:
        if (s->u.gemm.rows)
            rebase_expr(cx, s->u.gemm.rows);
        if (s->u.gemm.cols)
            rebase_expr(cx, s->u.gemm.cols);
        rebase_region(cx, &s->u.gemm.a);
        rebase_region(cx, &s->u.gemm.b);
        rebase_region(cx, &s->u.gemm.c);
        break;
    case ST_REDUCE:
        rebase_region(cx, &s->u.reduce.src);
        rebase_region(cx, &s->u.reduce.dst);
        break;
    default: break;
    }
}

/* ------------------------------------------------------------ the two kernels */

/* Structural equality of expressions of two kernels (scalars by name). */
static bool same_expr(const Expr *a, const Expr *b)
{
    if (a->op != b->op || a->dtype != b->dtype || a->nargs != b->nargs)
        return false;
    switch (a->op) {
    case EX_CONST:
        if (dt_is_float(a->dtype) ? a->imm.f != b->imm.f : a->imm.i != b->imm.i)
            return false;
        break;
    case EX_PARAM:
        if (strcmp(a->param->name, b->param->name))
            return false;
        break;
    case EX_VAR:
    case EX_LOAD: return false; /* not in shapes or grid extents */
    default: break;
    }
    for (int i = 0; i < a->nargs; i++)
        if (!same_expr(a->args[i], b->args[i]))
            return false;
    return true;
}

static void exprs_text(Expr *const *e, int n, char *out, size_t size)
{
    FILE *f = fmemopen(out, size, "w");
    if (!f) {
        out[0] = 0;
        return;
    }
    fputc('[', f);
    for (int i = 0; i < n; i++) {
        if (i)
            fputs(", ", f);
        ir_print_expr(e[i], f);
    }
    fputc(']', f);
    fclose(f);
}

static const Buffer *arg_named(const Kernel *k, const char *name)
{
    for (int i = 0; i < k->nargs; i++)
        if (!strcmp(k->bufs[i]->name, name))
            return k->bufs[i];
    return NULL;
}

static void arg_list(const Kernel *k, bool outputs, char *out, size_t n)
{
    size_t used = 0;
    out[0] = 0;
    for (int i = 0; i < k->nargs && used < n; i++)
        if ((k->bufs[i]->dir != ARG_IN) == outputs)
            used += (size_t)snprintf(out + used, n - used, "%s%s", used ? ", " : "", k->bufs[i]->name);
}

/* The connection's two ends exist, are an output and an input, and agree. */
static bool check_link(Compose *cx, Link *l)
{
    char list[200], a[200], b[200];
    l->out = arg_named(cx->P, l->out_name);
    l->in = arg_named(cx->C, l->in_name);
    if (!l->out || l->out->dir != ARG_OUT) {
        arg_list(cx->P, true, list, sizeof list);
        fail(cx, "via: %s has no output argument %s%s", cx->P->name, l->out_name,
             l->out && l->out->dir == ARG_INOUT ? " (it is inout: the producer would read it)" : "");
        diag_hint(cx->d, "its outputs: %s", list);
        return false;
    }
    if (!l->in || l->in->dir != ARG_IN) {
        arg_list(cx->C, false, list, sizeof list);
        fail(cx, "via: %s has no input argument %s", cx->C->name, l->in_name);
        diag_hint(cx->d, "its inputs: %s", list);
        return false;
    }
    for (int i = 0; i < cx->nlinks; i++)
        if (&cx->links[i] != l && (cx->links[i].out == l->out || cx->links[i].in == l->in))
            return fail(cx, "via: %s or %s is connected twice", l->out_name, l->in_name);
    if (l->out->dtype != l->in->dtype) {
        fail(cx, "%s's %s is %s but %s's %s is %s", cx->P->name, l->out_name, dt_name(l->out->dtype), cx->C->name,
             l->in_name, dt_name(l->in->dtype));
        diag_hint(cx->d, "the tensor they share has one dtype (the consumer's dtype parameter, if it has one, can be set in params = {...})");
        return false;
    }
    bool same = l->out->rank == l->in->rank;
    for (int d = 0; same && d < l->out->rank; d++)
        same = same_expr(l->out->shape[d], l->in->shape[d]);
    if (!same) {
        exprs_text(l->out->shape, l->out->rank, a, sizeof a);
        exprs_text(l->in->shape, l->in->rank, b, sizeof b);
        fail(cx, "%s's %s is %s but %s's %s is %s", cx->P->name, l->out_name, a, cx->C->name, l->in_name, b);
        diag_hint(cx->d, "unify the parameters that size them in params = {...}, e.g. K = function(p) return p.D end");
        return false;
    }
    return true;
}

static bool check_grids(Compose *cx)
{
    const Kernel *P = cx->P, *C = cx->C;
    bool prefix = P->ngrid <= C->ngrid;
    for (int i = 0; prefix && i < P->ngrid; i++)
        prefix = same_expr(P->grid[i], C->grid[i]);
    if (prefix)
        return true;
    char a[200], b[200];
    exprs_text(P->grid, P->ngrid, a, sizeof a);
    exprs_text(C->grid, C->ngrid, b, sizeof b);
    fail(cx, "%s's grid %s is not a prefix of %s's grid %s", P->name, a, C->name, b);
    diag_hint(cx->d, "the consumer's first grid dimensions must be the producer's: the same tiles over the same extents");
    return false;
}

/* ------------------------------------------------------------ building */

static bool map_params(Compose *cx, const Kernel *part, IrSubst *sub)
{
    for (int i = 0; i < part->nparams; i++) {
        Param *p = ir_param_find(cx->k, part->params[i]->name);
        if (!p || sub->nparams == (int)(sizeof sub->pfrom / sizeof sub->pfrom[0]))
            return fail(cx, "%s's run-time scalar %s is not one of the composition's", part->name,
                        part->params[i]->name);
        sub->pfrom[sub->nparams] = part->params[i];
        sub->pto[sub->nparams++] = p;
    }
    return true;
}

static bool map_buf(Compose *cx, IrSubst *sub, const Buffer *from, Buffer *to)
{
    if (sub->nbufs == (int)(sizeof sub->from / sizeof sub->from[0]))
        return fail(cx, "too many buffers to compose (at most %d per kernel)", sub->nbufs);
    sub->from[sub->nbufs] = from;
    sub->to[sub->nbufs++] = to;
    return true;
}

static const Link *link_of(const Compose *cx, const Buffer *b)
{
    for (int i = 0; i < cx->nlinks; i++)
        if (cx->links[i].out == b || cx->links[i].in == b)
            return &cx->links[i];
    return NULL;
}

/* A part's arguments (all but the connected ones) into the composed kernel. */
static bool add_args(Compose *cx, const Kernel *part, IrSubst *sub)
{
    for (int i = 0; i < part->nargs; i++) {
        const Buffer *b = part->bufs[i];
        if (link_of(cx, b))
            continue; /* becomes the local buffer */
        if (ir_buf_find(cx->k, b->name))
            return fail(cx, "%s and %s both have an argument %s", cx->P->name, cx->C->name, b->name);
        Expr *shape[IR_MAX_RANK];
        for (int d = 0; d < b->rank; d++)
            shape[d] = ir_clone_expr(cx->k, b->shape[d], sub);
        Buffer *nb = ir_arg_add(cx->k, b->name, b->dtype, b->dir, b->rank, shape, b->loc);
        for (int d = 0; d < b->rank; d++)
            nb->stride[d] = ir_clone_expr(cx->k, b->stride[d], sub);
        if (!map_buf(cx, sub, b, nb))
            return false;
    }
    return true;
}

/* A part's scratch buffers, renamed where the other part took the name. */
static bool add_scratch(Compose *cx, const Kernel *part, IrSubst *sub)
{
    for (int i = part->nargs; i < part->nbufs; i++) {
        const Buffer *b = part->bufs[i];
        int64_t shape[IR_MAX_RANK];
        for (int d = 0; d < b->rank; d++)
            ir_expr_is_const(b->shape[d], &shape[d]);
        Buffer *nb = ir_buf_add(cx->k, free_name(cx->k, b->name), b->scope, b->dtype, b->rank, shape, b->loc);
        nb->align = b->align;
        if (!map_buf(cx, sub, b, nb))
            return false;
    }
    return true;
}

/* The intermediate: a shared scratch buffer both ends map to, shaped once
 * its window is known. */
static bool add_local(Compose *cx, Link *l, IrSubst *ps, IrSubst *cs)
{
    int64_t ones[IR_MAX_RANK] = {1, 1, 1, 1, 1, 1};
    l->local = ir_buf_add(cx->k, free_name(cx->k, l->out_name), SCOPE_SHARED, l->out->dtype, l->out->rank, ones,
                          l->out->loc);
    return map_buf(cx, ps, l->out, l->local) && map_buf(cx, cs, l->in, l->local);
}

static void shape_local(Compose *cx, Link *l)
{
    Buffer *b = l->local;
    for (int d = 0; d < b->rank; d++)
        b->shape[d] = ir_const_i(cx->k, l->window[d].hi - l->window[d].lo);
    Expr *s = ir_const_i(cx->k, 1);
    for (int d = b->rank - 1; d >= 0; d--) {
        b->stride[d] = s;
        s = ir_binary(cx->k, EX_MUL, s, b->shape[d]);
    }
}

/* C's body for one block of P: its first grid variables are P's, the rest
 * serial loops over their extents. */
static Stmt *consumer_body(Compose *cx, IrSubst *sub)
{
    Kernel *k = cx->k;
    const Kernel *C = cx->C;
    Var *extra[IR_MAX_GRID];
    for (int i = 0; i < C->ngrid; i++) {
        sub->var[sub->nvars] = C->grid_var[i];
        if (i < cx->P->ngrid) {
            sub->by[sub->nvars++] = ir_var(k, k->grid_var[i]);
        } else {
            extra[i] = ir_var_new(k, C->grid_var[i]->name);
            sub->by[sub->nvars++] = ir_var(k, extra[i]);
        }
    }
    Stmt *body = ir_clone_stmt(k, C->body, sub);
    for (int i = C->ngrid - 1; i >= cx->P->ngrid; i--) {
        Stmt *seq = ir_seq(k, C->loc);
        ir_seq_push(k, seq, ir_for(k, extra[i], ir_clone_expr(k, C->grid[i], sub), LOOP_SERIAL, 0, body, C->loc));
        body = seq;
    }
    return body;
}

static Stmt *producer_body(Compose *cx, IrSubst *sub)
{
    Kernel *k = cx->k;
    const Kernel *P = cx->P;
    Var *vars[IR_MAX_GRID];
    Expr *ext[IR_MAX_GRID];
    for (int i = 0; i < P->ngrid; i++) {
        vars[i] = ir_var_new(k, P->grid_var[i]->name);
        ext[i] = ir_clone_expr(k, P->grid[i], sub);
        sub->var[sub->nvars] = P->grid_var[i];
        sub->by[sub->nvars++] = ir_var(k, vars[i]);
    }
    ir_set_grid(k, P->ngrid, vars, ext);
    return ir_clone_stmt(k, P->body, sub);
}

static bool follow(Compose *cx, Link *l, Stmt *pbody, Stmt *cbody)
{
    Walk *pw = calloc(1, sizeof *pw);
    *pw = (Walk){.cx = cx, .l = l, .producer = true};
    walk(pw, pbody);
    bool wrote = !pw->failed && write_window(cx, l);
    free(pw);
    if (!wrote)
        return false;
    Walk *cw = calloc(1, sizeof *cw);
    *cw = (Walk){.cx = cx, .l = l, .producer = false};
    walk(cw, cbody);
    bool ok = !cw->failed && reads_inside(cx, l, cw);
    free(cw);
    return ok;
}

bool ir_compose(Kernel *k, const Kernel *P, const Kernel *C, const ComposeVia *via, int nvia, Diag *d)
{
    Compose *cx = calloc(1, sizeof *cx);
    *cx = (Compose){.k = k, .P = P, .C = C, .d = d};
    bool ok = nvia > 0 && nvia <= MAX_LINKS;
    if (!ok)
        fail(cx, "via must connect 1 to %d tensors", MAX_LINKS);
    for (int i = 0; ok && i < nvia; i++) {
        Link *l = &cx->links[cx->nlinks++];
        l->out_name = via[i].out;
        l->in_name = via[i].in;
        ok = check_link(cx, l);
    }
    ok = ok && check_grids(cx);
    IrSubst *ps = calloc(1, sizeof *ps), *cs = calloc(1, sizeof *cs);
    ok = ok && map_params(cx, P, ps) && map_params(cx, C, cs);
    ok = ok && add_args(cx, P, ps) && add_args(cx, C, cs);
    for (int i = 0; ok && i < cx->nlinks; i++)
        ok = add_local(cx, &cx->links[i], ps, cs);
    ok = ok && add_scratch(cx, P, ps) && add_scratch(cx, C, cs);
    for (int i = 0; ok && i < cx->nlinks; i++)
        for (int dd = 0; dd < cx->links[i].out->rank; dd++)
            cx->links[i].shape[dd] = ir_clone_expr(k, cx->links[i].out->shape[dd], ps);
    Stmt *pbody = ok ? producer_body(cx, ps) : NULL;
    Stmt *cbody = ok ? consumer_body(cx, cs) : NULL;
    for (int i = 0; ok && i < cx->nlinks; i++)
        ok = follow(cx, &cx->links[i], pbody, cbody);
    if (ok) {
        land_writes(cx, pbody);
        for (int i = 0; i < cx->nlinks; i++)
            shape_local(cx, &cx->links[i]);
        rebase_stmt(cx, pbody);
        rebase_stmt(cx, cbody);
        k->body = ir_seq(k, k->loc);
        for (int i = 0; i < pbody->u.seq.n; i++)
            ir_seq_push(k, k->body, pbody->u.seq.items[i]);
        for (int i = 0; i < cbody->u.seq.n; i++)
            ir_seq_push(k, k->body, cbody->u.seq.items[i]);
    }
    free(ps);
    free(cs);
    free(cx);
    return ok;
}
