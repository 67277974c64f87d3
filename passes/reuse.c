/* reuse.c — a tile still in a buffer is not loaded again.
 *
 * Kernels that pass over a row twice (RMSNorm: the sum of squares, then the
 * scaling; softmax: the max and sum, then the quotients) copy each input
 * tile twice, once per pass.  When the row is one tile (the spec's tile
 * spans it), the second copy reads the same window of the same input into
 * the same buffer, which nothing has written since: it moves nothing new,
 * yet costs a second trip to memory — on a GPU, where the row does not
 * stay in a cache between the passes, a third of a memory-bound kernel's
 * traffic.  This pass drops such copies, on Tile IR before any lowering:
 *
 *   1. a serial loop of one iteration becomes its body with the variable
 *      replaced by 0 (the two passes' loops then name the same window);
 *   2. in each sequence, a COPY of a window of a read-only input (an `in`
 *      argument: nothing in the launch writes it) into the whole of a
 *      scratch buffer is dropped when an earlier statement of the same
 *      sequence made the same copy (same input, offsets structurally equal
 *      and free of loads, same extents, same destination) and no statement
 *      since has written the destination.
 *
 * A sequence starts knowing nothing (what a loop body or branch sees on
 * entry depends on the iteration), so the rule is local and cheap; the
 * kernels it serves have both passes in the block's top sequence. */
#include "passes/passes.h"

/* A serial loop of one iteration, as its body with the variable 0 (a body
 * that is itself such a loop too). */
static Stmt *unwrap(Kernel *k, Stmt *s)
{
    int64_t n;
    if (s->op != ST_FOR || s->u.loop.kind != LOOP_SERIAL || !ir_expr_is_const(s->u.loop.extent, &n) || n != 1)
        return s;
    IrSubst sub = {.nvars = 1};
    sub.var[0] = s->u.loop.var;
    sub.by[0] = ir_const_i(k, 0);
    return unwrap(k, ir_clone_stmt(k, s->u.loop.body, &sub));
}

static void unwrap_all(Kernel *k, Stmt *s)
{
    switch (s->op) {
    case ST_SEQ: { /* an unwrapped body's statements join the sequence */
        Stmt *flat = ir_seq(k, s->loc);
        for (int i = 0; i < s->u.seq.n; i++) {
            Stmt *item = s->u.seq.items[i], *u = unwrap(k, item);
            unwrap_all(k, u);
            if (u != item && u->op == ST_SEQ)
                for (int j = 0; j < u->u.seq.n; j++)
                    ir_seq_push(k, flat, u->u.seq.items[j]);
            else
                ir_seq_push(k, flat, u);
        }
        s->u.seq = flat->u.seq;
        break;
    }
    case ST_FOR:
        s->u.loop.body = unwrap(k, s->u.loop.body);
        unwrap_all(k, s->u.loop.body);
        break;
    case ST_IF:
        unwrap_all(k, s->u.if_.then_);
        if (s->u.if_.else_)
            unwrap_all(k, s->u.if_.else_);
        break;
    default:
        break;
    }
}

/* A copy this pass tracks: a pure window of a read-only input into a whole
 * scratch buffer. */
static bool reusable(const Stmt *s)
{
    if (s->op != ST_COPY || s->u.copy.async)
        return false;
    const Region *src = &s->u.copy.src, *dst = &s->u.copy.dst;
    if (src->buf->scope != SCOPE_GLOBAL || src->buf->dir != ARG_IN || dst->buf->scope == SCOPE_GLOBAL ||
        !ir_region_is_whole(dst))
        return false;
    for (int d = 0; d < src->buf->rank; d++)
        if (ir_loads_any(src->off[d]))
            return false;
    return true;
}

static bool same_window(const Region *a, const Region *b)
{
    if (a->buf != b->buf)
        return false;
    for (int d = 0; d < a->buf->rank; d++)
        if (a->ext[d] != b->ext[d] || !ir_expr_equal(a->off[d], b->off[d]))
            return false;
    return true;
}

static bool writes(const Stmt *s, const Buffer *b)
{
    IrUse u = {0};
    ir_buffer_use(s, b, &u);
    return u.writes > 0;
}

enum { MAX_HELD = 16 };

/* Drops the repeated copies of one sequence (its items in place), then
 * looks inside its statements' own sequences. */
static int drop_repeats(Stmt *seq)
{
    const Stmt *held[MAX_HELD]; /* copies whose destinations still hold their windows */
    int nheld = 0, dropped = 0, n = 0;
    for (int i = 0; i < seq->u.seq.n; i++) {
        Stmt *s = seq->u.seq.items[i];
        bool repeat = false;
        for (int h = 0; h < nheld && !repeat; h++)
            repeat = reusable(s) && held[h]->u.copy.dst.buf == s->u.copy.dst.buf &&
                     same_window(&held[h]->u.copy.src, &s->u.copy.src);
        if (repeat) {
            dropped++;
            continue;
        }
        for (int h = 0; h < nheld;) /* what s writes no longer holds its window */
            if (writes(s, held[h]->u.copy.dst.buf))
                held[h] = held[--nheld];
            else
                h++;
        if (reusable(s) && nheld < MAX_HELD)
            held[nheld++] = s;
        seq->u.seq.items[n++] = s;
    }
    seq->u.seq.n = n;
    for (int i = 0; i < n; i++) {
        Stmt *s = seq->u.seq.items[i];
        if (s->op == ST_SEQ)
            dropped += drop_repeats(s);
        else if (s->op == ST_FOR && s->u.loop.body->op == ST_SEQ)
            dropped += drop_repeats(s->u.loop.body);
        else if (s->op == ST_IF) {
            if (s->u.if_.then_->op == ST_SEQ)
                dropped += drop_repeats(s->u.if_.then_);
            if (s->u.if_.else_ && s->u.if_.else_->op == ST_SEQ)
                dropped += drop_repeats(s->u.if_.else_);
        }
    }
    return dropped;
}

bool pass_reuse(Kernel *k, const TargetInfo *t, Diag *d)
{
    (void)t;
    (void)d;
    if (k->level != LEVEL_TILE)
        return true;
    k->body = unwrap(k, k->body);
    unwrap_all(k, k->body);
    if (k->body->op == ST_SEQ && drop_repeats(k->body))
        ir_drop_unused_buffers(k);
    return true;
}
