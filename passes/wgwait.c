/* wgwait.c — where the asynchronous wgmma groups of sm_90a must have
 * completed (GPU Loop IR, after threads).
 *
 * A MICRO_GEMM with descriptors leaves its wgmma group in flight (ir.h):
 * its thread may not touch the accumulator, and no thread may write the
 * operand tiles, until a WGMMA_WAIT retires the group.  This pass walks the
 * kernel in program order with the groups that may be in flight and, for
 * each, the fewest groups issued after it on any path (its "depth"), and
 * puts before the first statement that would break that rule
 *   - wgmma_wait d, d the least depth among the groups it conflicts with
 *     (waiting for exactly those, letting the d newer ones run on), and
 *   - a barrier after it when the statement writes an operand tile: the
 *     other threads' groups read it too, and each thread only retires its
 *     own.
 * So in a staged loop whose step k reads tile k and then refills the
 * buffer of tile k-1 (stages.c on sm_90a), step k's group runs on while
 * step k+1's data is awaited: `wgmma_wait 1; barrier` before the refill.
 * Waits go inside uniform control flow (an if or a loop holding a product
 * that every thread takes alike) as late as possible, never into code that
 * depends on the thread index (a barrier there would hang).  A kernel ends
 * with no group in flight. */
#include "passes/passes.h"

#include <string.h>

enum { MAXG = 64, CAP = 15 };

typedef struct Wg {
    Kernel *k;
    const Stmt *g[MAXG]; /* every wgmma product of the kernel */
    int ng;
} Wg;

/* By product (index in Wg.g): its depth while in flight, else -1. */
typedef struct Flight {
    signed char d[MAXG];
} Flight;

static void list_groups(Wg *w, const Stmt *s)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            list_groups(w, s->u.seq.items[i]);
        break;
    case ST_FOR: list_groups(w, s->u.loop.body); break;
    case ST_IF:
        list_groups(w, s->u.if_.then_);
        if (s->u.if_.else_)
            list_groups(w, s->u.if_.else_);
        break;
    case ST_MICRO_GEMM:
        if (s->u.gemm.desc && w->ng < MAXG)
            w->g[w->ng] = s;
        w->ng += s->u.gemm.desc != NULL;
        break;
    default: break;
    }
}

static int group_of(const Wg *w, const Stmt *s)
{
    for (int i = 0; i < w->ng; i++)
        if (w->g[i] == s)
            return i;
    return -1;
}

static bool has_group(const Wg *w, const Stmt *s)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            if (has_group(w, s->u.seq.items[i]))
                return true;
        return false;
    case ST_FOR: return has_group(w, s->u.loop.body);
    case ST_IF: return has_group(w, s->u.if_.then_) || (s->u.if_.else_ && has_group(w, s->u.if_.else_));
    default: return group_of(w, s) >= 0;
    }
}

/* Is s control flow every thread takes alike, worth placing waits inside
 * (an if, or a loop that issues products)? */
static bool descend(const Wg *w, const Stmt *s)
{
    const Var *tid = w->k->thread_var;
    return s->op == ST_SEQ || (s->op == ST_IF && !ir_mentions_var(s->u.if_.cond, tid)) ||
           (s->op == ST_FOR && !ir_mentions_var(s->u.loop.extent, tid) && has_group(w, s->u.loop.body));
}

/* The wait statement s needs first (-1: none) and whether a barrier must
 * follow it (s writes an operand tile of a group in flight). */
static int needed(const Wg *w, const Flight *f, const Stmt *s, bool *barrier)
{
    int n = -1;
    *barrier = false;
    for (int i = 0; i < w->ng; i++) {
        if (f->d[i] < 0)
            continue;
        const Stmt *g = w->g[i];
        IrUse c = {0}, a = {0}, b = {0};
        ir_buffer_use(s, g->u.gemm.c.buf, &c);
        ir_buffer_use(s, g->u.gemm.a.buf, &a);
        ir_buffer_use(s, g->u.gemm.b.buf, &b);
        bool tiles = a.writes || b.writes;
        if (!tiles && !c.reads && !c.writes)
            continue;
        *barrier |= tiles;
        n = n < 0 || f->d[i] < n ? f->d[i] : n;
    }
    return n;
}

static void retire(const Wg *w, Flight *f, int keep)
{
    for (int i = 0; i < w->ng; i++)
        if (f->d[i] >= keep)
            f->d[i] = -1;
}

static void issue(const Wg *w, Flight *f, int g)
{
    for (int i = 0; i < w->ng; i++)
        if (f->d[i] >= 0 && f->d[i] < CAP)
            f->d[i]++;
    f->d[g] = 0;
}

/* Either path may have been taken: in flight on either, the fewer newer
 * groups (a wait for that many completes it on both). */
static void merge(const Wg *w, Flight *into, const Flight *from)
{
    for (int i = 0; i < w->ng; i++)
        if (into->d[i] < 0 || (from->d[i] >= 0 && from->d[i] < into->d[i]))
            into->d[i] = from->d[i];
}

static void walk(Wg *w, Stmt *s, Flight *f, bool apply);

static void walk_loop(Wg *w, Stmt *s, Flight *f, bool apply)
{
    Flight in = *f;
    for (int iter = 0; iter < 4 * CAP; iter++) {
        Flight out = in, next = *f;
        walk(w, s->u.loop.body, &out, false);
        merge(w, &next, &out);
        if (!memcmp(&next, &in, sizeof in))
            break;
        in = next;
    }
    if (apply) {
        Flight out = in;
        walk(w, s->u.loop.body, &out, true);
    }
    *f = in;
}

static void walk_seq(Wg *w, Stmt *s, Flight *f, bool apply)
{
    Stmt **items = s->u.seq.items;
    int n = s->u.seq.n;
    if (apply) {
        s->u.seq.items = NULL;
        s->u.seq.n = s->u.seq.cap = 0;
    }
    for (int i = 0; i < n; i++) {
        Stmt *it = items[i];
        int g = group_of(w, it);
        bool barrier;
        int wait = descend(w, it) || g >= 0 ? -1 : needed(w, f, it, &barrier);
        if (wait >= 0) {
            retire(w, f, wait);
            if (apply) {
                /* a barrier just before (pass_threads' own) serves, once
                 * the wait goes ahead of it */
                bool before = barrier && s->u.seq.n && s->u.seq.items[s->u.seq.n - 1]->op == ST_BARRIER;
                Stmt *wait_stmt = ir_wgmma_wait(w->k, wait, it->loc);
                if (before) {
                    s->u.seq.items[s->u.seq.n - 1] = wait_stmt;
                    ir_seq_push(w->k, s, ir_barrier(w->k, it->loc));
                } else {
                    ir_seq_push(w->k, s, wait_stmt);
                    if (barrier)
                        ir_seq_push(w->k, s, ir_barrier(w->k, it->loc));
                }
            }
        }
        if (descend(w, it))
            walk(w, it, f, apply);
        else if (g >= 0)
            issue(w, f, g);
        else if (it->op == ST_WGMMA_WAIT)
            retire(w, f, it->u.wait.pending);
        if (apply)
            ir_seq_push(w->k, s, it);
    }
}

static void walk(Wg *w, Stmt *s, Flight *f, bool apply)
{
    switch (s->op) {
    case ST_SEQ: walk_seq(w, s, f, apply); break;
    case ST_FOR: walk_loop(w, s, f, apply); break;
    case ST_IF: {
        Flight other = *f;
        walk(w, s->u.if_.then_, f, apply);
        if (s->u.if_.else_)
            walk(w, s->u.if_.else_, &other, apply);
        merge(w, f, &other);
        break;
    }
    default: break;
    }
}

bool pass_wgwait(Kernel *k, const TargetInfo *t, Diag *d)
{
    (void)t;
    Wg w = {.k = k};
    if (!k->nthreads)
        return true;
    list_groups(&w, k->body);
    if (!w.ng)
        return true;
    if (w.ng > MAXG)
        return diag_error(d, k->loc, "kernel %s has %d wgmma products, more than the %d pass_wgwait tracks",
                          k->name, w.ng, MAXG);
    Flight f;
    memset(f.d, -1, sizeof f.d);
    walk(&w, k->body, &f, true);
    for (int i = 0; i < w.ng; i++)
        if (f.d[i] >= 0) {
            ir_seq_push(k, k->body, ir_wgmma_wait(k, 0, k->body->loc));
            break;
        }
    return true;
}
