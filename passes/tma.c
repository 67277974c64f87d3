/* tma.c — TMA tile loads for the staged loops of sm_90a (Tile IR, after
 * stages).
 *
 * pass_stages leaves a `pipelined` loop as (see stages.c)
 *
 *   prologue: copy async G(s) -> X_s ... ; async_commit      (s < S-1)
 *   for kb < ceil(n / S) {
 *     if kb S + u < n { async_wait S-2; ...; copy async G(k+S-1) -> X_{(u+S-1)%S} ...; ... }
 *   }                                                          (u < S)
 *
 * Each async copy here whose source is a global argument with constant
 * dense strides, and whose tile TMA can take (ir/tensormap.h: box of at
 * most 256 per dimension, 16-byte rows, both without a swizzle and with
 * the one pass_threads gives a wgmma operand of that shape), becomes a
 * tma_load completing on mbarrier tma_bar[s] of its stage s, preceded in
 * its group of copies by one mbar_expect_tx of the group's bytes; step u
 * waits for its tiles with `mbar_wait tma_bar[u], kb % 2` right after its
 * async_wait (fill j of a loop goes to stage j % S, so the fill step k
 * waits for is stage u's (k / S)-th: phase kb, parity kb % 2).  Copies
 * that do not qualify stay cp.async; where none is left, the loop's
 * async_commit and async_wait go too (pass_threads puts the barriers the
 * data flow still needs).  The mbarriers are set up (one arrival a phase:
 * the expect_tx) at the top of the kernel, where pass_threads follows them
 * with a barrier.
 * Out-of-bounds elements of a box are zeros, COPY's tail rule.
 *
 * Phases count from the start of the block, so a staged loop inside
 * another loop (whose second run would restart kb at 0) is left alone. */
#include "ir/tensormap.h"
#include "passes/passes.h"

#include <stdio.h>

enum { MAXDST = 32 };

typedef struct Tma {
    Kernel *k;
    Stmt *loop;
    int S;
    Buffer *bar;
    const Buffer *dst[MAXDST]; /* the buffers TMA fills, and their stage */
    int stage[MAXDST];
    int ndst;
} Tma;

static Expr *ci(Tma *m, int64_t v) { return ir_const_i(m->k, v); }

/* The swizzle pass_threads gives a K-major wgmma operand [R, K] of this
 * row size (threads.c swizzle_width), 0 where it could not be one. */
static int operand_swizzle(const Buffer *x)
{
    int64_t row, cols;
    if (x->rank != 2 || !ir_expr_is_const(x->shape[1], &cols))
        return 0;
    row = cols * dt_bits(x->dtype) / 8;
    return row % 128 == 0 ? 128 : row % 64 == 0 ? 64 : row % 32 == 0 ? 32 : 0;
}

/* Can TMA carry copy c (an async copy of a global window into a whole
 * shared buffer) in every layout pass_threads may give its tile? */
static bool tma_fits(const Stmt *c)
{
    const Buffer *g = c->u.copy.src.buf, *x = c->u.copy.dst.buf;
    int rank = g->rank;
    if (!c->u.copy.async || g->scope != SCOPE_GLOBAL || x->scope != SCOPE_SHARED || x->rank != rank ||
        g->dtype != x->dtype || !ir_region_is_whole(&c->u.copy.dst) || rank > TMAP_MAX_RANK)
        return false;
    int64_t shape[IR_MAX_RANK], stride[IR_MAX_RANK], box[IR_MAX_RANK];
    for (int d = 0; d < rank; d++) {
        if (!ir_expr_is_const(g->stride[d], &stride[d]) || c->u.copy.src.ext[d] != c->u.copy.dst.ext[d])
            return false;
        shape[d] = 1; /* (the real extents are checked at launch) */
        box[d] = c->u.copy.src.ext[d];
    }
    Diag why = {0};
    if (!tmap_args(g->dtype, rank, shape, stride, box, 0, &(TmapArgs){0}, &why))
        return false;
    int W = operand_swizzle(x);
    if (!W)
        return true;
    int64_t eb = dt_bits(x->dtype) / 8;
    if (box[0] * W % 128) /* each W-byte column box starts 128-byte aligned */
        return false;
    box[1] = W / eb < box[1] ? W / eb : box[1];
    return tmap_args(g->dtype, rank, shape, stride, box, W, &(TmapArgs){0}, &why);
}

static int stage_of(const Tma *m, const Buffer *x)
{
    for (int i = 0; i < m->ndst; i++)
        if (m->dst[i] == x)
            return m->stage[i];
    return -1;
}

/* The async copies TMA can carry in s (not inside loops) fill stage st. */
static void note_stage(Tma *m, const Stmt *s, int st)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            note_stage(m, s->u.seq.items[i], st);
        break;
    case ST_IF:
        note_stage(m, s->u.if_.then_, st);
        if (s->u.if_.else_)
            note_stage(m, s->u.if_.else_, st);
        break;
    case ST_COPY:
        if (tma_fits(s) && stage_of(m, s->u.copy.dst.buf) < 0 && m->ndst < MAXDST) {
            m->dst[m->ndst] = s->u.copy.dst.buf;
            m->stage[m->ndst++] = st;
        }
        break;
    default: break;
    }
}

/* Is loop a staged loop of pass_stages, with S steps per iteration? */
static bool staged(const Stmt *loop, int *S)
{
    const Stmt *body = loop->u.loop.body;
    if (loop->u.loop.kind != LOOP_SERIAL || body->op != ST_SEQ || body->u.seq.n < 2)
        return false;
    *S = body->u.seq.n;
    for (int u = 0; u < *S; u++) {
        const Stmt *step = body->u.seq.items[u];
        if (step->op != ST_IF || step->u.if_.else_ || step->u.if_.then_->op != ST_SEQ ||
            !step->u.if_.then_->u.seq.n)
            return false;
        const Stmt *w = step->u.if_.then_->u.seq.items[0];
        if (w->op != ST_ASYNC_WAIT || w->u.wait.pending != *S - 2)
            return false;
    }
    return true;
}

/* Each run of async copies into one stage's TMA buffers in seq becomes
 * mbar_expect_tx of their bytes, then their tma_loads. */
static void rewrite_copies(Tma *m, Stmt *seq)
{
    Stmt **items = seq->u.seq.items;
    int n = seq->u.seq.n;
    seq->u.seq.items = NULL;
    seq->u.seq.n = seq->u.seq.cap = 0;
    for (int i = 0; i < n; i++) {
        Stmt *it = items[i];
        int st = it->op == ST_COPY ? stage_of(m, it->u.copy.dst.buf) : -1;
        if (st < 0) {
            if (it->op == ST_IF) {
                rewrite_copies(m, it->u.if_.then_);
                if (it->u.if_.else_)
                    rewrite_copies(m, it->u.if_.else_);
            } else if (it->op == ST_SEQ) {
                rewrite_copies(m, it);
            }
            ir_seq_push(m->k, seq, it);
            continue;
        }
        int j = i;
        int64_t bytes = 0;
        for (; j < n && items[j]->op == ST_COPY && stage_of(m, items[j]->u.copy.dst.buf) == st; j++)
            bytes += (int64_t)dt_storage_bytes(items[j]->u.copy.dst.buf->dtype,
                                               ir_region_elems(&items[j]->u.copy.dst));
        ir_seq_push(m->k, seq, ir_mbar_expect(m->k, m->bar, ci(m, st), bytes, it->loc));
        for (; i < j; i++) {
            Stmt *c = items[i];
            ir_seq_push(m->k, seq, ir_tma_load(m->k, c->u.copy.src, c->u.copy.dst, m->bar, ci(m, st), 0, c->loc));
        }
        i--;
    }
}

/* Step u's wait for its tiles, after its async_wait. */
static void add_wait(Tma *m, Stmt *step, int u)
{
    bool used = false;
    for (int i = 0; i < m->ndst; i++)
        used |= m->stage[i] == u;
    if (!used)
        return;
    Stmt *then_ = step->u.if_.then_;
    Expr *parity = ir_binary(m->k, EX_MOD, ir_var(m->k, m->loop->u.loop.var), ci(m, 2));
    Stmt *w = ir_mbar_wait(m->k, m->bar, ci(m, u), parity, step->loc);
    ir_seq_push(m->k, then_, w); /* (grows the array) then moves it into place */
    for (int i = then_->u.seq.n - 1; i > 1; i--)
        then_->u.seq.items[i] = then_->u.seq.items[i - 1];
    then_->u.seq.items[1] = w;
}

static Buffer *bar_buffer(Kernel *k, int S, SrcLoc loc)
{
    char name[32] = "tma_bar";
    for (int i = 1; ir_buf_find(k, name); i++)
        snprintf(name, sizeof name, "tma_bar_%d", i);
    int64_t shape[1] = {S};
    return ir_buf_add(k, name, SCOPE_SHARED, DT_I64, 1, shape, loc);
}

static bool has_async(const Stmt *s)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            if (has_async(s->u.seq.items[i]))
                return true;
        return false;
    case ST_IF: return has_async(s->u.if_.then_) || (s->u.if_.else_ && has_async(s->u.if_.else_));
    case ST_FOR: return has_async(s->u.loop.body);
    case ST_COPY: return s->u.copy.async;
    default: return false;
    }
}

/* With no cp.async left, its commits and waits go (the waits were the
 * barriers that ordered the copies; the mbarriers order the loads now). */
static void drop_async_sync(Kernel *k, Stmt *s)
{
    if (s->op == ST_IF) {
        drop_async_sync(k, s->u.if_.then_);
        if (s->u.if_.else_)
            drop_async_sync(k, s->u.if_.else_);
    }
    if (s->op == ST_FOR)
        drop_async_sync(k, s->u.loop.body);
    if (s->op != ST_SEQ)
        return;
    int n = 0;
    for (int i = 0; i < s->u.seq.n; i++) {
        Stmt *it = s->u.seq.items[i];
        if (it->op != ST_ASYNC_COMMIT && it->op != ST_ASYNC_WAIT) {
            drop_async_sync(k, it);
            s->u.seq.items[n++] = it;
        }
    }
    s->u.seq.n = n;
}

/* The staged loop at items[at] of seq: its TMA loads, waits and mbarriers. */
static void convert(Kernel *k, Stmt *seq, int at, Stmt **inits)
{
    Stmt *loop = seq->u.seq.items[at];
    Tma m = {.k = k, .loop = loop};
    if (!staged(loop, &m.S))
        return;
    for (int u = 0; u < m.S; u++)
        note_stage(&m, loop->u.loop.body->u.seq.items[u]->u.if_.then_, (u + m.S - 1) % m.S);
    if (!m.ndst)
        return;
    m.bar = bar_buffer(k, m.S, loop->loc);
    for (int i = 0; i < m.ndst; i++) /* cp.async.bulk.tensor writes 128-byte aligned boxes */
        if (((Buffer *)m.dst[i])->align < 128)
            ((Buffer *)m.dst[i])->align = 128;
    for (int u = 0; u < m.S; u++) {
        Stmt *step = loop->u.loop.body->u.seq.items[u];
        rewrite_copies(&m, step->u.if_.then_);
        add_wait(&m, step, u);
    }
    /* the prologue: the items before the loop (later ones are not its) */
    Stmt *before = ir_seq(k, loop->loc);
    for (int i = 0; i < at; i++)
        ir_seq_push(k, before, seq->u.seq.items[i]);
    rewrite_copies(&m, before);
    Stmt **old = seq->u.seq.items;
    int n = seq->u.seq.n;
    seq->u.seq.items = NULL;
    seq->u.seq.n = seq->u.seq.cap = 0;
    for (int i = 0; i < before->u.seq.n; i++)
        ir_seq_push(k, seq, before->u.seq.items[i]);
    for (int i = at; i < n; i++)
        ir_seq_push(k, seq, old[i]);
    for (int s = 0; s < m.S; s++)
        ir_seq_push(k, *inits, ir_mbar_init(k, m.bar, ci(&m, s), 1, loop->loc));
    if (has_async(seq))
        return;
    for (int i = 0; i <= at; i++) /* (the prologue kept its count: at is the loop) */
        drop_async_sync(k, seq->u.seq.items[i]);
    drop_async_sync(k, seq);
}

/* Staged loops outside other loops (SEQ and IF only on the way). */
static void walk(Kernel *k, Stmt *s, Stmt **inits)
{
    if (s->op == ST_IF) {
        walk(k, s->u.if_.then_, inits);
        if (s->u.if_.else_)
            walk(k, s->u.if_.else_, inits);
        return;
    }
    if (s->op != ST_SEQ)
        return;
    for (int i = 0; i < s->u.seq.n; i++) {
        Stmt *it = s->u.seq.items[i];
        if (it->op == ST_FOR) {
            int before = s->u.seq.n;
            convert(k, s, i, inits);
            i += s->u.seq.n - before; /* (the prologue may have grown) */
        } else {
            walk(k, it, inits);
        }
    }
}

bool pass_tma(Kernel *k, const TargetInfo *t, Diag *d)
{
    (void)d;
    if (t->gpu_sm < 90 || k->level != LEVEL_TILE)
        return true;
    Stmt *inits = ir_seq(k, k->body->loc);
    walk(k, k->body, &inits);
    if (!inits->u.seq.n)
        return true;
    for (int i = 0; i < k->body->u.seq.n; i++)
        ir_seq_push(k, inits, k->body->u.seq.items[i]);
    k->body = inits;
    return true;
}
