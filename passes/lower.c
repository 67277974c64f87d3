/* lower.c — Tile IR → Loop IR.
 *
 * Every tile op becomes loops of element loads and stores with the tail
 * semantics of ir.h (reads past a global buffer's edge give 0, writes past it
 * are dropped), except GEMM (lower_gemm.c).  On the CPU a pipelined loop
 * also prefetches the windows its next steps read. */
#include "passes/lower.h"
#include "passes/passes.h"

#include <math.h>

static Expr *zero_of(Lower *L, DType dt)
{
    return dt_is_float(dt) ? ir_const_f(L->k, 0) : ci(L, 0);
}

/* Index of region r's element at window position pos[] (one per dim). */
void lower_region_at(Lower *L, const Region *r, Expr *const *pos, Expr **idx)
{
    for (int d = 0; d < r->buf->rank; d++)
        idx[d] = add(L, r->off[d], pos[d]);
}

/* 0 <= idx[d] < shape[d] for every d (true for scratch buffers, whose
 * windows are in bounds by construction). */
static Expr *in_bounds(Lower *L, const Buffer *b, Expr *const *idx)
{
    Expr *c = NULL;
    if (b->scope != SCOPE_GLOBAL)
        return NULL;
    for (int d = 0; d < b->rank; d++) {
        Expr *lo = ir_binary(L->k, EX_LE, ci(L, 0), idx[d]);
        Expr *hi = ir_binary(L->k, EX_LT, idx[d], b->shape[d]);
        Expr *both = ir_binary(L->k, EX_AND, lo, hi);
        c = c ? ir_binary(L->k, EX_AND, c, both) : both;
    }
    return c;
}

/* The whole window lies inside the buffer (NULL: trivially true). */
Expr *lower_window_inside(Lower *L, const Region *r)
{
    return lower_window_part_inside(L, r, -1, NULL);
}

Expr *lower_window_part_inside(Lower *L, const Region *r, int dim, Expr *ext)
{
    if (r->buf->scope != SCOPE_GLOBAL)
        return NULL;
    Expr *c = NULL;
    for (int d = 0; d < r->buf->rank; d++) {
        Expr *lo = ir_binary(L->k, EX_LE, ci(L, 0), r->off[d]);
        Expr *hi = ir_binary(L->k, EX_LE, add(L, r->off[d], d == dim ? ext : ci(L, r->ext[d])), r->buf->shape[d]);
        Expr *both = ir_binary(L->k, EX_AND, lo, hi);
        c = c ? ir_binary(L->k, EX_AND, c, both) : both;
    }
    return c;
}

Expr *lower_and(Lower *L, Expr *a, Expr *b)
{
    if (!a)
        return b;
    if (!b || ir_expr_equal(a, b)) /* (two windows over the same rows: one test) */
        return a;
    return ir_binary(L->k, EX_AND, a, b);
}

/* A load that reads 0 outside a global buffer without touching memory
 * there: the index is clamped into range and the value selected away. */
Expr *lower_guarded_load(Lower *L, const Buffer *b, Expr **idx, bool guard)
{
    Expr *cond = guard ? in_bounds(L, b, idx) : NULL;
    if (!cond)
        return ir_load(L->k, (Buffer *)b, idx);
    Expr *clamped[IR_MAX_RANK];
    for (int d = 0; d < b->rank; d++) {
        Expr *hi = ir_binary(L->k, EX_SUB, b->shape[d], ci(L, 1));
        clamped[d] = ir_binary(L->k, EX_MAX, ir_binary(L->k, EX_MIN, idx[d], hi), ci(L, 0));
    }
    return ir_select(L->k, cond, ir_load(L->k, (Buffer *)b, clamped), zero_of(L, b->dtype));
}

Stmt *lower_guarded_store(Lower *L, Buffer *b, Expr **idx, Expr *v, bool guard, bool atomic, SrcLoc loc)
{
    Stmt *st = ir_store(L->k, b, idx, v, loc);
    st->u.store.atomic = atomic;
    Expr *cond = guard ? in_bounds(L, b, idx) : NULL;
    if (!cond)
        return st;
    Stmt *then_ = ir_seq(L->k, loc);
    ir_seq_push(L->k, then_, st);
    return ir_if(L->k, cond, then_, NULL, loc);
}

/* ------------------------------------------------------- loop nests */

/* A nest of loops of `kind` over ext[0..n); the innermost body is returned
 * through *inner and the loop variables through vars.  n == 0 gives a plain
 * block. */
Stmt *lower_nest(Lower *L, int n, const int64_t *ext, LoopKind kind, const char *prefix, Expr **vars, Stmt **inner,
                 SrcLoc loc)
{
    Stmt *body = ir_seq(L->k, loc);
    *inner = body;
    Var *vs[IR_MAX_RANK];
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "%s%d", prefix, i);
        vs[i] = ir_var_new(L->k, name);
        vars[i] = ir_var(L->k, vs[i]);
    }
    for (int i = n - 1; i >= 0; i--) {
        Stmt *loop = ir_for(L->k, vs[i], ci(L, ext[i]), kind, 0, body, loc);
        body = ir_seq(L->k, loc);
        ir_seq_push(L->k, body, loop);
    }
    return body;
}

/* Window positions of a region from the loop variables over the squeezed
 * (non-unit) extents it shares with its partner. */
static void squeezed_pos(Lower *L, const Region *r, Expr *const *vars, Expr **pos)
{
    int v = 0;
    for (int d = 0; d < r->buf->rank; d++)
        pos[d] = r->ext[d] == 1 ? ci(L, 0) : vars[v++];
}

static int squeeze(const Region *r, int64_t *ext)
{
    int n = 0;
    for (int d = 0; d < r->buf->rank; d++)
        if (r->ext[d] != 1)
            ext[n++] = r->ext[d];
    return n;
}

enum { CACHE_LINE = 64 };

/* Window r where variable v reads as `ahead` (a later step's, a later
 * block's). */
static Region advanced(Lower *L, const Region *r, const Var *v, Expr *ahead)
{
    IrSubst sub = {.nvars = 1};
    sub.var[0] = v;
    sub.by[0] = ahead;
    Region n = *r;
    for (int d = 0; d < r->buf->rank; d++)
        n.off[d] = ir_clone_expr(L->k, r->off[d], &sub);
    return n;
}

/* The prefetch of the next block's copy of the innermost row at window
 * position pos (its other dimensions': a row of the copy's loops), a line
 * at a time — where that block's window lies inside the buffer (the last
 * block has none to fetch). */
static Stmt *fetch_next_row(Lower *L, const Region *src, Expr *const *pos, SrcLoc loc)
{
    int rank = src->buf->rank, last = rank - 1;
    while (last > 0 && src->ext[last] == 1)
        last--;
    int64_t per_line = CACHE_LINE * 8 / dt_bits(src->buf->dtype);
    int64_t lines = (src->ext[last] + per_line - 1) / per_line;
    Var *g = L->k->grid_var[L->k->ngrid - 1]; /* the next block along the innermost grid dimension */
    Region next = advanced(L, src, g, add(L, ir_var(L->k, g), ci(L, 1)));
    Expr *vars[1], *at[IR_MAX_RANK], *idx[IR_MAX_RANK];
    Stmt *inner;
    Stmt *loop = lower_nest(L, 1, &lines, LOOP_SERIAL, "pf", vars, &inner, loc);
    for (int d = 0; d < rank; d++)
        at[d] = d == last ? ir_binary(L->k, EX_MUL, vars[0], ci(L, per_line)) : pos[d];
    lower_region_at(L, &next, at, idx);
    ir_seq_push(L->k, inner, ir_prefetch(L->k, src->buf, idx, loc));
    Expr *inside = lower_window_inside(L, &next);
    return inside ? ir_if(L->k, inside, loop, NULL, loc) : loop;
}

/* COPY / ATOMIC_ADD as loops; guarded or not.  With fetch_next (an
 * unguarded copy plan_next_block_fetch chose), each row of the innermost
 * dimension also fetches the next grid block's row: the prefetches spread
 * over the copy (and whatever fuses with it) as its loads are — 32 of
 * them at once at the top of rmsnorm_fp8's 8 x 128 steps ran 4.3-4.5 ms,
 * against 3.75-3.83 spread and 4.6-4.75 without. */
static Stmt *copy_loops(Lower *L, const Region *src, const Region *dst, bool atomic, bool guard, bool fetch_next,
                        SrcLoc loc)
{
    int64_t ext[IR_MAX_RANK];
    int n = squeeze(dst, ext);
    Expr *vars[IR_MAX_RANK], *sp[IR_MAX_RANK], *dp[IR_MAX_RANK], *si[IR_MAX_RANK], *di[IR_MAX_RANK];
    Stmt *inner;
    Stmt *outer = lower_nest(L, n, ext, LOOP_PARALLEL, "c", vars, &inner, loc);
    squeezed_pos(L, src, vars, sp);
    squeezed_pos(L, dst, vars, dp);
    lower_region_at(L, src, sp, si);
    lower_region_at(L, dst, dp, di);
    Expr *v = lower_guarded_load(L, src->buf, si, guard);
    ir_seq_push(L->k, inner, lower_guarded_store(L, dst->buf, di, v, guard, atomic, loc));
    if (fetch_next && n >= 2) {
        Stmt *row = outer->u.seq.items[0]; /* the loop just outside the innermost */
        for (int d = 0; d < n - 2; d++)
            row = row->u.loop.body->u.seq.items[0];
        Stmt *body = ir_seq(L->k, loc);
        ir_seq_push(L->k, body, fetch_next_row(L, src, sp, loc));
        ir_seq_push(L->k, body, row->u.loop.body);
        row->u.loop.body = body;
    }
    return outer;
}

/* The buffer dimension of window r that carries the innermost of its
 * squeezed dimensions (-1: none). */
static int innermost_dim(const Region *r)
{
    for (int d = r->buf->rank - 1; d >= 0; d--)
        if (r->ext[d] != 1)
            return d;
    return -1;
}

/* min(max(e, lo), hi) of integers. */
static Expr *clamp_i(Lower *L, Expr *e, Expr *lo, Expr *hi)
{
    return ir_binary(L->k, EX_MIN, ir_binary(L->k, EX_MAX, e, lo), hi);
}

/* One run of a split row: for j < n, dst[.., start + j] = src[.., start +
 * j] (0 where `zero`).  sp and dp hold the row's window positions in src
 * and dst; si_d and di_d are the slots of their innermost dimensions. */
static Stmt *row_run(Lower *L, const Region *src, const Region *dst, Expr **sp, Expr **dp, int si_d, int di_d,
                     Expr *start, Expr *n, bool zero, SrcLoc loc)
{
    Var *jv = ir_var_new(L->k, zero ? "z" : "r");
    Expr *at = add(L, start, ir_var(L->k, jv));
    Expr *si[IR_MAX_RANK], *di[IR_MAX_RANK];
    dp[di_d] = at;
    lower_region_at(L, dst, dp, di);
    Expr *v = zero_of(L, dst->buf->dtype);
    if (!zero) {
        sp[si_d] = at;
        lower_region_at(L, src, sp, si);
        v = lower_guarded_load(L, src->buf, si, false);
    }
    Stmt *body = ir_seq(L->k, loc);
    ir_seq_push(L->k, body, lower_guarded_store(L, dst->buf, di, v, false, false, loc));
    return ir_for(L->k, jv, n, LOOP_PARALLEL, 0, body, loc);
}

/* A guarded copy between a global window that may lie partly outside its
 * buffer and scratch, split along the innermost dimension at the buffer's
 * edges: each row copies its inside run — contiguous loads and stores, no
 * index clamped — and, into scratch, fills the rest with zeros in two more
 * loops (rows outside the buffer: all zeros, or nothing stored).  The
 * guarded form clamped every index into the buffer, which the vectoriser
 * can only gather: a GEMM's K-tail step staged A one vinsertps per
 * element.  NULL where the copy is not of that shape (both windows global,
 * or the global one's innermost dimension not its last) and on a GPU
 * (whose threads take a copy's loops as they are: there the guarded form's
 * loads are one per thread anyway). */
Stmt *lower_copy_rows_split(Lower *L, const Region *src, const Region *dst, SrcLoc loc)
{
    bool from_global = src->buf->scope == SCOPE_GLOBAL, to_global = dst->buf->scope == SCOPE_GLOBAL;
    const Region *g = from_global ? src : dst;
    int64_t ext[IR_MAX_RANK];
    int n = squeeze(dst, ext), gd = innermost_dim(g), sd = innermost_dim(src), dd = innermost_dim(dst);
    if (L->t->gpu_sm || from_global == to_global || n < 1 || gd != g->buf->rank - 1 || sd < 0 || dd < 0)
        return NULL;
    Expr *vars[IR_MAX_RANK], *sp[IR_MAX_RANK], *dp[IR_MAX_RANK], *gi[IR_MAX_RANK];
    Stmt *inner;
    Stmt *outer = lower_nest(L, n - 1, ext, LOOP_PARALLEL, "c", vars, &inner, loc);
    vars[n - 1] = ci(L, 0);
    squeezed_pos(L, src, vars, sp);
    squeezed_pos(L, dst, vars, dp);
    /* the row's place in the buffer: inside in every other dimension, and
     * its run [lo, hi) of the innermost */
    lower_region_at(L, g, from_global ? sp : dp, gi);
    Expr *row_ok = NULL;
    for (int d = 0; d < g->buf->rank; d++) {
        if (d == gd)
            continue;
        Expr *in = ir_binary(L->k, EX_AND, ir_binary(L->k, EX_LE, ci(L, 0), gi[d]),
                             ir_binary(L->k, EX_LT, gi[d], g->buf->shape[d]));
        row_ok = row_ok ? ir_binary(L->k, EX_AND, row_ok, in) : in;
    }
    int64_t c;
    Expr *E = ci(L, ext[n - 1]), *off = g->off[gd];
    Expr *lo = clamp_i(L, ir_binary(L->k, EX_SUB, ci(L, 0), off), ci(L, 0), E);
    Expr *hi = clamp_i(L, ir_binary(L->k, EX_SUB, g->buf->shape[gd], off), lo, E);
    bool from_0 = ir_expr_is_const(lo, &c) && c == 0; /* (a window that cannot start before the buffer) */
    if (row_ok) {
        lo = from_0 ? lo : ir_select(L->k, row_ok, lo, ci(L, 0));
        hi = ir_select(L->k, row_ok, hi, ci(L, 0));
    }
    if (!to_global && !from_0)
        ir_seq_push(L->k, inner, row_run(L, src, dst, sp, dp, sd, dd, ci(L, 0), lo, true, loc));
    Expr *run = from_0 ? hi : ir_binary(L->k, EX_SUB, hi, lo);
    ir_seq_push(L->k, inner, row_run(L, src, dst, sp, dp, sd, dd, lo, run, false, loc));
    if (!to_global && !(ir_expr_is_const(hi, &c) && c == ext[n - 1]))
        ir_seq_push(L->k, inner, row_run(L, src, dst, sp, dp, sd, dd, hi, ir_binary(L->k, EX_SUB, E, hi), true, loc));
    return outer;
}

/* Run loop s of a split row: its store, and start through *start (NULL:
 * 0); NULL if s is no such loop. */
static Stmt *run_store(const Stmt *s, Expr **start)
{
    if (s->op != ST_FOR || s->u.loop.kind != LOOP_PARALLEL)
        return NULL;
    Stmt *b = s->u.loop.body;
    while (b->op == ST_SEQ && b->u.seq.n == 1)
        b = b->u.seq.items[0];
    if (b->op != ST_STORE || b->u.store.atomic || b->u.store.async || b->u.store.buf->rank != 2)
        return NULL;
    Expr *last = b->u.store.idx[1];
    const Var *v = s->u.loop.var;
    if (last->op == EX_VAR && last->var == v)
        *start = NULL;
    else if (last->op == EX_ADD && last->args[1]->op == EX_VAR && last->args[1]->var == v &&
             !ir_mentions_var(last->args[0], v))
        *start = last->args[0];
    else
        return NULL;
    return b;
}

/* Whether count is the length of a run from `start` (NULL: 0) to `next`:
 * `next - start`, or `next` from 0 — or the number it is where all three
 * are numbers (a padded row's tail, lowering's dot_a_copy). */
static bool run_length(const Expr *count, const Expr *start, const Expr *next)
{
    int64_t c, s, n;
    if (!start)
        return ir_expr_equal(count, next);
    if (ir_expr_is_const(count, &c) && ir_expr_is_const(start, &s) && ir_expr_is_const(next, &n))
        return c == n - s;
    return count->op == EX_SUB && ir_expr_equal(count->args[0], next) && ir_expr_equal(count->args[1], start);
}

/* Whether count is the length of a run from `start` (NULL: 0) to the
 * number end: `end - start`, or what that is where start is a number. */
static bool runs_to(const Expr *count, const Expr *start, int64_t end)
{
    int64_t c, s, e;
    if (!start)
        return ir_expr_is_const(count, &c) && c == end;
    if (ir_expr_is_const(count, &c) && ir_expr_is_const(start, &s))
        return c == end - s;
    return count->op == EX_SUB && ir_expr_is_const(count->args[0], &e) && e == end &&
           ir_expr_equal(count->args[1], start);
}

int lower_row_runs(const Stmt *seq, int from, Stmt **st)
{
    if (seq->op != ST_SEQ)
        return 0;
    Expr *start = NULL, *prev = NULL;
    for (int i = 0; i < 3 && from + i < seq->u.seq.n; i++) {
        const Stmt *run = seq->u.seq.items[from + i];
        if (!(st[i] = run_store(run, &start)) || st[i]->u.store.buf != st[0]->u.store.buf ||
            !ir_expr_equal(st[i]->u.store.idx[0], st[0]->u.store.idx[0]) || (i == 0 && start) ||
            (i > 0 && !run_length(seq->u.seq.items[from + i - 1]->u.loop.extent, prev, start)))
            return 0;
        prev = start;
        /* the last run ends at the row's end */
        const Buffer *x = st[0]->u.store.buf;
        int64_t width;
        if (x->scope != SCOPE_GLOBAL && ir_expr_is_const(x->shape[1], &width) &&
            runs_to(run->u.loop.extent, prev, width))
            return i + 1;
    }
    return 0;
}

/* A copy whose windows may lie partly outside their buffers: split at the
 * edges where it can be, guarded element by element otherwise. */
static Stmt *edge_copy(Lower *L, const Region *src, const Region *dst, bool atomic, SrcLoc loc)
{
    Stmt *split = atomic ? NULL : lower_copy_rows_split(L, src, dst, loc);
    return split ? split : copy_loops(L, src, dst, atomic, true, false, loc);
}

/* A fast unguarded nest when both windows are inside their buffers, the
 * edge form otherwise. */
static Stmt *copy_nest(Lower *L, const Region *src, const Region *dst, bool atomic, bool fetch_next, SrcLoc loc)
{
    Expr *inside = lower_and(L, lower_window_inside(L, src), lower_window_inside(L, dst));
    if (!inside)
        return copy_loops(L, src, dst, atomic, false, fetch_next, loc);
    if (inside->op == EX_CONST) /* decided at compile time */
        return inside->imm.i ? copy_loops(L, src, dst, atomic, false, fetch_next, loc)
                             : edge_copy(L, src, dst, atomic, loc);
    return ir_if(L->k, inside, copy_loops(L, src, dst, atomic, false, fetch_next, loc),
                 edge_copy(L, src, dst, atomic, loc), loc);
}

Stmt *lower_copy(Lower *L, const Region *src, const Region *dst, bool atomic, SrcLoc loc)
{
    return copy_nest(L, src, dst, atomic, false, loc);
}

static Stmt *lower_fill(Lower *L, const Region *dst, Expr *value, SrcLoc loc)
{
    int64_t ext[IR_MAX_RANK];
    int n = squeeze(dst, ext);
    Expr *vars[IR_MAX_RANK], *dp[IR_MAX_RANK], *di[IR_MAX_RANK];
    Stmt *inner;
    Stmt *outer = lower_nest(L, n, ext, LOOP_PARALLEL, "f", vars, &inner, loc);
    squeezed_pos(L, dst, vars, dp);
    lower_region_at(L, dst, dp, di);
    ir_seq_push(L->k, inner, lower_guarded_store(L, dst->buf, di, value, true, false, loc));
    return outer;
}

/* --------------------------------------------------------------- reduce */

Buffer *lower_temp(Lower *L, const char *what, Scope scope, DType dt, int rank, const int64_t *shape, SrcLoc loc)
{
    char name[32];
    do /* a name no buffer of the kernel has, user-named ones included */
        snprintf(name, sizeof name, "%s%d", what, L->ntemp++);
    while (ir_buf_find(L->k, name));
    return ir_buf_add(L->k, name, scope, dt, rank, shape, loc);
}

static Expr *combine(Lower *L, ReduceOp op, Expr *acc, Expr *x)
{
    switch (op) {
    case RED_SUM: return ir_binary(L->k, EX_ADD, acc, x);
    case RED_MAX: return ir_binary(L->k, EX_MAX, acc, x);
    case RED_MIN: return ir_binary(L->k, EX_MIN, acc, x);
    default: return ir_binary(L->k, EX_MAX, acc, ir_unary(L->k, EX_ABS, x));
    }
}

/* absmax on a CPU, over the bits: |x| has a clear sign bit, and for such
 * f32 values the order of the bit patterns as integers is the float order
 * (+0 lowest, +inf below every NaN), so an integer maximum of the patterns,
 * from 0 (+0.0), is the IEEE maximum the reduction is defined with — one
 * vpmaxsd, where the float maximum's NaN and signed-zero rules cost five
 * instructions on AVX2.  (A NaN result keeps the largest payload seen
 * rather than the canonical one: still a NaN.) */
static Expr *absmax_bits(Lower *L, Expr *acc, Expr *x)
{
    return ir_binary(L->k, EX_MAX, acc, ir_bitcast(L->k, DT_I32, ir_unary(L->k, EX_ABS, x)));
}

static Expr *identity(Lower *L, ReduceOp op)
{
    return ir_const_f(L->k, op == RED_MAX ? -INFINITY : op == RED_MIN ? INFINITY : 0.0);
}

/* A GPU reduction with fewer destination elements than threads: P threads
 * share each element.  Thread p of an element combines elements p, p + P,
 * ... of its row (neighbouring threads read neighbouring elements) into a
 * shared part[..., p]; then one thread per element combines the P parts. */
static Stmt *lower_reduce_split(Lower *L, const Stmt *s, int64_t P)
{
    const Region *src = &s->u.reduce.src, *dst = &s->u.reduce.dst;
    ReduceOp op = s->u.reduce.rop;
    int axis = s->u.reduce.axis, rank = src->buf->rank, dr = dst->buf->rank;
    int64_t one = 1, len = src->ext[axis], ext[IR_MAX_RANK + 1];
    Expr *zero[1] = {ci(L, 0)};
    for (int d = 0; d < dr; d++)
        ext[d] = dst->ext[d];
    ext[dr] = P;
    Buffer *part = lower_temp(L, "part", SCOPE_SHARED, DT_F32, dr + 1, ext, s->loc);
    Stmt *seq = ir_seq(L->k, s->loc);

    /* phase 1: strided partial reductions */
    Buffer *acc = lower_temp(L, "acc", SCOPE_LOCAL, DT_F32, 1, &one, s->loc);
    Expr *pv[IR_MAX_RANK + 1];
    Stmt *body;
    ir_seq_push(L->k, seq, lower_nest(L, dr + 1, ext, LOOP_PARALLEL, "r", pv, &body, s->loc));
    ir_seq_push(L->k, body, ir_store(L->k, acc, zero, identity(L, op), s->loc));
    Var *tv = ir_var_new(L->k, "red");
    Expr *idx = add(L, pv[dr], ir_binary(L->k, EX_MUL, ir_var(L->k, tv), ci(L, P)));
    Expr *pos[IR_MAX_RANK], *si[IR_MAX_RANK];
    for (int d = 0, o = 0; d < rank; d++)
        pos[d] = d == axis ? idx : (rank == 1 ? ci(L, 0) : pv[o++]);
    lower_region_at(L, src, pos, si);
    Expr *x = lower_guarded_load(L, src->buf, si, true);
    if (src->buf->scope == SCOPE_GLOBAL)
        x = ir_select(L->k, in_bounds(L, src->buf, si), x, identity(L, op));
    Stmt *upd = ir_seq(L->k, s->loc);
    ir_seq_push(L->k, upd, ir_store(L->k, acc, zero, combine(L, op, ir_load(L->k, acc, zero), x), s->loc));
    Stmt *step = upd;
    if (len % P) {
        step = ir_seq(L->k, s->loc);
        ir_seq_push(L->k, step, ir_if(L->k, ir_binary(L->k, EX_LT, idx, ci(L, len)), upd, NULL, s->loc));
    }
    ir_seq_push(L->k, body, ir_for(L->k, tv, ci(L, (len + P - 1) / P), LOOP_SERIAL, 0, step, s->loc));
    ir_seq_push(L->k, body, ir_store(L->k, part, pv, ir_load(L->k, acc, zero), s->loc));

    /* phase 2: the parts of each element, then into the destination */
    ReduceOp outer_op = op == RED_ABSMAX ? RED_MAX : op; /* parts are absolute already */
    Buffer *acc2 = lower_temp(L, "acc", SCOPE_LOCAL, DT_F32, 1, &one, s->loc);
    Expr *dv[IR_MAX_RANK + 1], *di[IR_MAX_RANK];
    ir_seq_push(L->k, seq, lower_nest(L, dr, dst->ext, LOOP_PARALLEL, "r", dv, &body, s->loc));
    ir_seq_push(L->k, body, ir_store(L->k, acc2, zero, identity(L, outer_op), s->loc));
    Var *qv = ir_var_new(L->k, "part");
    dv[dr] = ir_var(L->k, qv);
    Stmt *comb = ir_seq(L->k, s->loc);
    ir_seq_push(L->k, comb, ir_store(L->k, acc2, zero,
                                     combine(L, outer_op, ir_load(L->k, acc2, zero), ir_load(L->k, part, dv)), s->loc));
    ir_seq_push(L->k, body, ir_for(L->k, qv, ci(L, P), LOOP_SERIAL, 0, comb, s->loc));
    lower_region_at(L, dst, dv, di);
    Expr *result = ir_load(L->k, acc2, zero);
    if (!s->u.reduce.clear)
        result = combine(L, outer_op, lower_guarded_load(L, dst->buf, di, true), result);
    ir_seq_push(L->k, body, lower_guarded_store(L, dst->buf, di, result, true, false, s->loc));
    return seq;
}

/* Whether a CPU reduction runs across its rows (lower_reduce_across): its
 * axis is not the source's last, the kept elements after it — each
 * destination row's contiguous run — fill a vector at least, and the
 * accumulators, one per destination element, stay within half of L1 (a
 * global destination may be any size; the fragment is on the stack). */
static bool reduce_across(const Lower *L, const Stmt *s)
{
    const Region *src = &s->u.reduce.src;
    int axis = s->u.reduce.axis, rank = src->buf->rank;
    return !L->t->gpu_sm && rank >= 2 && axis < rank - 1 && src->ext[rank - 1] >= L->t->vector_bits / 32 &&
           ir_region_elems(&s->u.reduce.dst) * 4 <= L->t->l1_bytes / 2; /* (the verifier: dst has rank - 1 dims) */
}

/* A CPU reduction over an axis that is not the source's last, as an
 * accumulation: one accumulator per destination element (a fragment of
 * the destination's shape), and for each step along the axis a loop over
 * them whose innermost dimension is the source's contiguous one — vector
 * loads and one vector combine per step, where a loop along the axis per
 * element gathered a strided column (a column sum of 64 rows: one gather
 * of 8 floats 256 floats apart per 8 elements).  Each element still
 * combines its values in the axis's order, as the interpreter does. */
static Stmt *lower_reduce_across(Lower *L, const Stmt *s)
{
    const Region *src = &s->u.reduce.src, *dst = &s->u.reduce.dst;
    ReduceOp op = s->u.reduce.rop;
    int axis = s->u.reduce.axis, rank = src->buf->rank, dr = dst->buf->rank;
    bool bits = op == RED_ABSMAX;
    Buffer *acc = lower_temp(L, "acc", SCOPE_FRAGMENT, bits ? DT_I32 : DT_F32, dr, dst->ext, s->loc);
    Stmt *seq = ir_seq(L->k, s->loc), *body;
    Expr *av[IR_MAX_RANK];

    ir_seq_push(L->k, seq, lower_nest(L, dr, dst->ext, LOOP_PARALLEL, "a", av, &body, s->loc));
    ir_seq_push(L->k, body, ir_store(L->k, acc, av, bits ? ci(L, 0) : identity(L, op), s->loc));

    Var *rv = ir_var_new(L->k, "red");
    Stmt *step = ir_seq(L->k, s->loc);
    ir_seq_push(L->k, seq, ir_for(L->k, rv, ci(L, src->ext[axis]), LOOP_SERIAL, 0, step, s->loc));
    ir_seq_push(L->k, step, lower_nest(L, dr, dst->ext, LOOP_PARALLEL, "a", av, &body, s->loc));
    Expr *pos[IR_MAX_RANK], *si[IR_MAX_RANK];
    for (int d = 0, o = 0; d < rank; d++)
        pos[d] = d == axis ? ir_var(L->k, rv) : av[o++];
    lower_region_at(L, src, pos, si);
    Expr *x = lower_guarded_load(L, src->buf, si, true);
    if (src->buf->scope == SCOPE_GLOBAL) /* outside the edge: the identity, not 0 */
        x = ir_select(L->k, in_bounds(L, src->buf, si), x, identity(L, op));
    Expr *a = ir_load(L->k, acc, av);
    ir_seq_push(L->k, body, ir_store(L->k, acc, av, bits ? absmax_bits(L, a, x) : combine(L, op, a, x), s->loc));

    Expr *di[IR_MAX_RANK];
    ir_seq_push(L->k, seq, lower_nest(L, dr, dst->ext, LOOP_PARALLEL, "a", av, &body, s->loc));
    lower_region_at(L, dst, av, di);
    Expr *result = ir_load(L->k, acc, av);
    if (bits)
        result = ir_bitcast(L->k, DT_F32, result);
    if (!s->u.reduce.clear)
        result = combine(L, bits ? RED_MAX : op, lower_guarded_load(L, dst->buf, di, true), result);
    ir_seq_push(L->k, body, lower_guarded_store(L, dst->buf, di, result, true, false, s->loc));
    return seq;
}

/* dst[...] (op)= reduce over the axis, through an f32 accumulator so a
 * low-precision destination is rounded once, as the interpreter does. */
static Stmt *lower_reduce(Lower *L, const Stmt *s)
{
    if (reduce_across(L, s))
        return lower_reduce_across(L, s);
    if (L->t->gpu_sm) {
        int64_t D = ir_region_elems(&s->u.reduce.dst), P = 1;
        while (2 * P * D <= L->t->gpu_threads && 2 * P <= s->u.reduce.src.ext[s->u.reduce.axis])
            P *= 2;
        if (P > 1)
            return lower_reduce_split(L, s, P);
    }
    const Region *src = &s->u.reduce.src, *dst = &s->u.reduce.dst;
    ReduceOp op = s->u.reduce.rop;
    int axis = s->u.reduce.axis, rank = src->buf->rank;
    int64_t one = 1;
    bool bits = op == RED_ABSMAX && !L->t->gpu_sm;
    Buffer *acc = lower_temp(L, "acc", SCOPE_LOCAL, bits ? DT_I32 : DT_F32, 1, &one, s->loc);
    Expr *zero[1] = {ci(L, 0)};

    Expr *dv[IR_MAX_RANK], *di[IR_MAX_RANK];
    Stmt *body;
    /* On a CPU the destination loop is serial: every element reuses the one
     * accumulator.  On a GPU a LOCAL buffer is private to each thread, so
     * the elements are independent and spread over the threads. */
    LoopKind kind = L->t->gpu_sm ? LOOP_PARALLEL : LOOP_SERIAL;
    Stmt *outer = lower_nest(L, dst->buf->rank, dst->ext, kind, "r", dv, &body, s->loc);
    lower_region_at(L, dst, dv, di);
    ir_seq_push(L->k, body, ir_store(L->k, acc, zero, bits ? ci(L, 0) : identity(L, op), s->loc));

    Var *rv = ir_var_new(L->k, "red");
    Expr *pos[IR_MAX_RANK], *si[IR_MAX_RANK];
    for (int d = 0, o = 0; d < rank; d++)
        pos[d] = d == axis ? ir_var(L->k, rv) : (rank == 1 ? ci(L, 0) : dv[o++]);
    lower_region_at(L, src, pos, si);
    Expr *x = lower_guarded_load(L, src->buf, si, true);
    if (src->buf->scope == SCOPE_GLOBAL) /* outside the edge: the identity, not 0 */
        x = ir_select(L->k, in_bounds(L, src->buf, si), x, identity(L, op));
    Stmt *step = ir_seq(L->k, s->loc);
    Expr *next = bits ? absmax_bits(L, ir_load(L->k, acc, zero), x) : combine(L, op, ir_load(L->k, acc, zero), x);
    ir_seq_push(L->k, step, ir_store(L->k, acc, zero, next, s->loc));
    ir_seq_push(L->k, body, ir_for(L->k, rv, ci(L, src->ext[axis]), LOOP_SERIAL, 0, step, s->loc));

    Expr *result = ir_load(L->k, acc, zero);
    if (bits)
        result = ir_bitcast(L->k, DT_F32, result);
    if (!s->u.reduce.clear) {
        ReduceOp outer_op = op == RED_ABSMAX ? RED_MAX : op;
        result = combine(L, outer_op, lower_guarded_load(L, dst->buf, di, true), result);
    }
    ir_seq_push(L->k, body, lower_guarded_store(L, dst->buf, di, result, true, false, s->loc));
    return outer;
}

/* The stores of an async copy's loops that move an element unchanged from
 * the global source become async (tails, whose loads are guarded, stay
 * plain stores: they land at once, which is always allowed). */
static void mark_async(Stmt *s)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            mark_async(s->u.seq.items[i]);
        break;
    case ST_FOR: mark_async(s->u.loop.body); break;
    case ST_IF:
        mark_async(s->u.if_.then_);
        if (s->u.if_.else_)
            mark_async(s->u.if_.else_);
        break;
    case ST_STORE: {
        const Expr *v = s->u.store.value;
        s->u.store.async = v->op == EX_LOAD && v->buf->scope == SCOPE_GLOBAL &&
                           v->buf->dtype == s->u.store.buf->dtype && s->u.store.buf->scope != SCOPE_GLOBAL;
        break;
    }
    default: break;
    }
}

/* ------------------------------------------------ prefetch (CPU) */

/* Prefetches of every cache line of window r (a global one read by the
 * loop body), one step of the loop further on: its offsets with the loop
 * variable advanced by `ahead`. */
static Stmt *prefetch_window(Lower *L, const Region *r, const Var *v, Expr *ahead, SrcLoc loc)
{
    Region next = advanced(L, r, v, ahead);
    int rank = r->buf->rank, bits = dt_bits(r->buf->dtype);
    int64_t per_line = CACHE_LINE * 8 / bits, ext[IR_MAX_RANK];
    for (int d = 0; d < rank; d++)
        ext[d] = r->ext[d];
    ext[rank - 1] = (r->ext[rank - 1] + per_line - 1) / per_line;
    Expr *vars[IR_MAX_RANK], *idx[IR_MAX_RANK];
    Stmt *inner;
    Stmt *loops = lower_nest(L, rank, ext, LOOP_SERIAL, "pf", vars, &inner, loc);
    for (int d = 0; d < rank; d++) {
        Expr *pos = d == rank - 1 ? ir_binary(L->k, EX_MUL, vars[d], ci(L, per_line)) : vars[d];
        idx[d] = add(L, next.off[d], pos);
    }
    ir_seq_push(L->k, inner, ir_prefetch(L->k, r->buf, idx, loc));
    return loops;
}

/* A `pipelined(S)` loop on the CPU fetches, at the top of each step, the
 * global windows that step k + S - 1 will read — its copies' sources and
 * its GEMMs' operands read in place — into the cache while this step
 * computes: the CPU's counterpart of the GPU's multi-stage buffers (pass
 * `stages`).  Worth it where the hardware prefetcher cannot guess, e.g. a
 * tile of weight rows 4 KiB apart that each step walks 128 bytes further
 * (dot tiles; moe_gemm_swiglu at 512 tokens, one thread: 215 -> 191 ms).
 * A step with register-tile GEMMs is left to the hardware: they read A
 * and pack B in runs it follows, and compute long enough per byte that
 * the prefetch instructions cost more than they hide (f32 GEMM 2048^3,
 * one thread, 2-3% faster without at BK 64 to 1024, BM 96 to 512). */
static Stmt *prefetch_next_step(Lower *L, const Stmt *loop)
{
    const Stmt *body = loop->u.loop.body;
    if (body->op != ST_SEQ)
        return NULL;
    for (int i = 0; i < body->u.seq.n; i++)
        if (body->u.seq.items[i]->op == ST_GEMM && lower_gemm_in_register_tiles(L, body->u.seq.items[i]))
            return NULL;
    int stages = loop->u.loop.arg > 1 ? loop->u.loop.arg : 2;
    Expr *ahead = add(L, ir_var(L->k, loop->u.loop.var), ci(L, stages - 1));
    Stmt *seq = ir_seq(L->k, loop->loc);
    for (int i = 0; i < body->u.seq.n; i++) {
        const Stmt *s = body->u.seq.items[i];
        const Region *reads[4] = {NULL, NULL, NULL, NULL};
        if (s->op == ST_COPY)
            reads[0] = &s->u.copy.src;
        else if (s->op == ST_GEMM) {
            reads[0] = &s->u.gemm.a;
            reads[1] = &s->u.gemm.b;
            reads[2] = s->u.gemm.a_scale.buf ? &s->u.gemm.a_scale : NULL;
            reads[3] = s->u.gemm.b_scale.buf ? &s->u.gemm.b_scale : NULL;
        }
        for (int j = 0; j < 4; j++)
            if (reads[j] && reads[j]->buf->scope == SCOPE_GLOBAL)
                ir_seq_push(L->k, seq, prefetch_window(L, reads[j], loop->u.loop.var, ahead, s->loc));
    }
    if (!seq->u.seq.n)
        return NULL;
    Expr *more = ir_binary(L->k, EX_LT, ahead, loop->u.loop.extent);
    return ir_if(L->k, more, seq, NULL, loop->loc);
}

/* A grid block that reads the same window of a global input twice (a
 * two-pass kernel: RMSNorm's sum of squares, then its normalising pass)
 * computes its second pass from the cache while memory idles, and the next
 * block then waits for its first.  The runtime gives each thread
 * contiguous runs of blocks, so the block after this one is the next along
 * the innermost grid dimension: the copy of the second pass fetches that
 * block's window too, a row at a time (copy_loops).  One thread, 4096
 * tokens: rmsnorm_fp8 3.90-4.09 -> 3.46-3.64 ms, rmsnorm_quant 4.14-4.33 ->
 * 3.59-3.62, rmsnorm 2.02-2.12 -> 1.69-1.75.  The same window, or a part
 * of what an earlier copy read over its loops: hc_pre's second pass reads
 * its rows of x in 4 x 8 steps of 512 columns where the first read them in
 * 32 (4096 tokens, one thread: 39.1-54.5 -> 34.3-44.2 ms).  Only a re-read:
 * hc_post reads four windows of its r once each, streaming, and fetching
 * ahead there slowed it by 15%. */
enum { MAX_LOOPS = 8, MAX_COPIES = 16 };

typedef struct Reread {
    const Stmt *copy;
    Expr *key[IR_MAX_RANK];     /* src's offsets, enclosing loops' variables as placeholders */
    Expr *loop_ext[MAX_LOOPS];  /* the enclosing loops' extents */
    int nloops;
    IrRange span[IR_MAX_RANK];  /* the elements read over the loops, in one block (spans_known) */
    bool spans_known;
    bool again;                 /* an earlier copy read the same window, or some of it */
} Reread;

typedef struct Rereads {
    Lower *L;
    const Var *grid;
    const Stmt *loop[MAX_LOOPS];
    int depth;
    Var *ph[MAX_LOOPS]; /* the placeholders of the enclosing loops' variables, made as needed */
    Reread r[MAX_COPIES];
    int n;
} Rereads;

static bool same_window(const Reread *x, const Reread *y)
{
    const Region *a = &x->copy->u.copy.src, *b = &y->copy->u.copy.src;
    if (a->buf != b->buf || x->nloops != y->nloops)
        return false;
    for (int i = 0; i < x->nloops; i++)
        if (!ir_expr_equal(x->loop_ext[i], y->loop_ext[i]))
            return false;
    for (int d = 0; d < a->buf->rank; d++)
        if (a->ext[d] != b->ext[d] || !ir_expr_equal(x->key[d], y->key[d]))
            return false;
    return true;
}

/* The range of a copy's offset within one block: the enclosing loops'
 * variables over their constant extents, the grid's at 0 (both copies
 * compared are the same block's, and read the grid's rows alike — where
 * they do not, a fetch is misplaced, never a value wrong); anything else
 * unknown. */
static IrRange block_leaf(const Expr *e, void *ctx)
{
    const Rereads *rr = ctx;
    int64_t n;
    if (e->op != EX_VAR)
        return (IrRange){0, 0, false};
    for (int d = 0; d < rr->L->k->ngrid; d++)
        if (rr->L->k->grid_var[d] == e->var)
            return (IrRange){0, 0, true};
    for (int i = 0; i < rr->depth && i < MAX_LOOPS; i++)
        if (rr->loop[i]->u.loop.var == e->var && ir_expr_is_const(rr->loop[i]->u.loop.extent, &n) && n > 0)
            return (IrRange){0, n - 1, true};
    return (IrRange){0, 0, false};
}

/* Does y read some element x read (in the same block)? */
static bool overlaps(const Reread *x, const Reread *y)
{
    const Region *a = &x->copy->u.copy.src, *b = &y->copy->u.copy.src;
    if (a->buf != b->buf)
        return false;
    if (!x->spans_known || !y->spans_known)
        return same_window(x, y);
    for (int d = 0; d < a->buf->rank; d++)
        if (x->span[d].hi < y->span[d].lo || y->span[d].hi < x->span[d].lo)
            return false;
    return true;
}

static void note_copy(Rereads *rr, const Stmt *s)
{
    const Region *src = &s->u.copy.src;
    bool moves = false;
    for (int d = 0; d < src->buf->rank; d++)
        moves = moves || ir_mentions_var(src->off[d], rr->grid);
    if (src->buf->scope != SCOPE_GLOBAL || src->buf->dir != ARG_IN || !moves || rr->n == MAX_COPIES ||
        rr->depth > MAX_LOOPS)
        return;
    Reread *r = &rr->r[rr->n++];
    *r = (Reread){.copy = s, .nloops = rr->depth};
    IrSubst sub = {.nvars = rr->depth};
    for (int i = 0; i < rr->depth; i++) {
        if (!rr->ph[i])
            rr->ph[i] = ir_var_new(rr->L->k, "window");
        sub.var[i] = rr->loop[i]->u.loop.var;
        sub.by[i] = ir_var(rr->L->k, rr->ph[i]);
        r->loop_ext[i] = rr->loop[i]->u.loop.extent;
    }
    r->spans_known = true;
    for (int d = 0; d < src->buf->rank; d++) {
        r->key[d] = ir_clone_expr(rr->L->k, src->off[d], &sub);
        IrRange o = ir_range_of(src->off[d], block_leaf, rr);
        r->spans_known = r->spans_known && o.known;
        r->span[d] = (IrRange){o.lo, o.hi + src->ext[d] - 1, o.known};
    }
    for (int i = 0; i < rr->n - 1; i++)
        r->again = r->again || overlaps(&rr->r[i], r);
}

static void find_rereads(Rereads *rr, const Stmt *s)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            find_rereads(rr, s->u.seq.items[i]);
        return;
    case ST_FOR:
        if (rr->depth < MAX_LOOPS)
            rr->loop[rr->depth] = s;
        rr->depth++;
        find_rereads(rr, s->u.loop.body);
        rr->depth--;
        return;
    case ST_IF:
        find_rereads(rr, s->u.if_.then_);
        if (s->u.if_.else_)
            find_rereads(rr, s->u.if_.else_);
        return;
    case ST_COPY: note_copy(rr, s); return;
    default: return;
    }
}

/* The last copy of each re-read window fetches the next block's (CPU). */
static void plan_next_block_fetch(Lower *L)
{
    if (L->t->gpu_sm || L->k->ngrid == 0)
        return;
    Rereads rr = {.L = L, .grid = L->k->grid_var[L->k->ngrid - 1]};
    find_rereads(&rr, L->k->body);
    for (int i = 0; i < rr.n; i++) {
        bool last = rr.r[i].again;
        for (int j = i + 1; j < rr.n && last; j++)
            last = !overlaps(&rr.r[i], &rr.r[j]);
        if (last && L->nfetch < 8)
            L->fetch_next[L->nfetch++] = rr.r[i].copy;
    }
}

/* Whether copy s is one plan_next_block_fetch chose. */
static bool fetches_next_block(const Lower *L, const Stmt *s)
{
    for (int i = 0; i < L->nfetch; i++)
        if (L->fetch_next[i] == s)
            return true;
    return false;
}

/* ------------------------------------------------------------- the walk */

static Stmt *lower_stmt(Lower *L, Stmt *s)
{
    switch (s->op) {
    case ST_SEQ:
        if (!L->t->gpu_sm)
            lower_forward_gemm_operands(L, s);
        for (int i = 0; i < s->u.seq.n; i++)
            s->u.seq.items[i] = lower_stmt(L, s->u.seq.items[i]);
        return s;
    case ST_FOR: {
        Stmt *pf = NULL;
        if (!L->t->gpu_sm && s->u.loop.kind == LOOP_PIPELINED) {
            if (s->u.loop.body->op == ST_SEQ)
                lower_forward_gemm_operands(L, s->u.loop.body); /* prefetch what is read in the end */
            pf = prefetch_next_step(L, s);
        }
        s->u.loop.body = lower_stmt(L, s->u.loop.body);
        if (pf) {
            Stmt *body = ir_seq(L->k, s->loc);
            ir_seq_push(L->k, body, pf);
            ir_seq_push(L->k, body, s->u.loop.body);
            s->u.loop.body = body;
        }
        return s;
    }
    case ST_IF:
        s->u.if_.then_ = lower_stmt(L, s->u.if_.then_);
        if (s->u.if_.else_)
            s->u.if_.else_ = lower_stmt(L, s->u.if_.else_);
        return s;
    case ST_COPY: {
        Stmt *loops = copy_nest(L, &s->u.copy.src, &s->u.copy.dst, false, fetches_next_block(L, s), s->loc);
        if (s->u.copy.async)
            mark_async(loops);
        return loops;
    }
    case ST_ATOMIC_ADD: return lower_copy(L, &s->u.copy.src, &s->u.copy.dst, true, s->loc);
    case ST_FILL: return lower_fill(L, &s->u.fill.dst, s->u.fill.value, s->loc);
    case ST_REDUCE: return lower_reduce(L, s);
    case ST_GEMM: return lower_gemm(L, s);
    default: return s;
    }
}

bool pass_lower(Kernel *k, const TargetInfo *t, Diag *d)
{
    (void)d;
    if (k->level == LEVEL_LOOP)
        return true;
    Lower L = {.k = k, .t = t};
    plan_next_block_fetch(&L);
    k->body = lower_stmt(&L, k->body);
    ir_drop_unused_buffers(k); /* the scratch of copies a GEMM forwarded */
    k->level = LEVEL_LOOP;
    return true;
}
