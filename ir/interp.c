/* interp.c — the reference interpreter: runs a kernel at either IR level on
 * the CPU, one block after another, with the value semantics of ir.h.
 *
 * It is deliberately simple — a tree walk over one frame of variable values
 * per thread — because it is what compiled code is checked against.  Every
 * element access is bounds-checked: an out-of-range index is an error at the
 * user's line.
 *
 * SIMT mode (kernels with threads, see "Threads" in ir.h).  Each thread of a
 * block has its own variable frame and its own copy of every LOCAL buffer;
 * SHARED buffers are one per block.  All scratch is filled with ones bits
 * (NaN for floats, -1 for integers) at the start of every block, so a read
 * before the first write shows in the results, as garbage would on a GPU.
 * (Without threads scratch is zeroed once, as before.)
 * Threads run without coroutines, by the structure of the statement tree: a
 * subtree without a barrier runs for thread 0 to completion, then thread 1,
 * and so on; a SEQ with barriers runs its items in turn that way; a loop or
 * if with a barrier inside runs in lock-step, which needs its extent or
 * condition to be the same in every thread (else an error: on a GPU that
 * barrier would hang or misbehave).  A barrier starts a new epoch.
 *
 * The race detector watches shared and global buffers in SIMT mode: per
 * element (shadow arrays allocated on the first access) the epoch and thread
 * of the last write and the epoch and thread(s) of the reads.  Two accesses
 * to one element by different threads in the same epoch, one of them a
 * write, are an error at the second access's line — atomic adds excepted
 * among themselves.  Every block starts a new epoch, so blocks are only
 * checked against themselves (the grid's blocks run one by one here).
 *
 * Async stores (see ir.h) land immediately without threads; in SIMT mode
 * each thread's stay pending, in its groups, until an async_wait lands the
 * old groups: a read before then sees the stale (NaN-filled) scratch.  The
 * race detector sees them as writes where they are issued.
 *
 * TMA and mbarriers (ir.h, "TMA"): a tma_load lands at once, in the layout
 * the hardware writes (boxes, zero fill, the address swizzle), and its
 * bytes complete transactions on its mbarrier, whose arrivals, expected
 * bytes and phase are kept per block.  Each element a TMA load wrote
 * carries the mbarrier and phase it completes with, and a thread reading
 * it before a wait that saw that phase complete is an error, as is a TMA
 * overwriting what another thread read since the last barrier.  An
 * mbar_wait runs in lock-step like a barrier (without starting an epoch):
 * every thread is at it, so a phase that is not complete then never will
 * be — a deadlock, reported with its likely cause (wrong parity, or bytes
 * expected that no load delivers).  A load that delivers more bytes than
 * its phase still expects, and any use of an mbarrier before mbar_init,
 * are errors too. */
#include "ir/ir.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Race-detector state of one element.  Epoch 0 is "never".  Two threads
 * per side are enough: the first conflict is reported, and naming a thread
 * other than the current one needs at most two candidates. */
typedef struct Shadow {
    uint32_t wep, rep; /* epochs of the writes and of the reads recorded */
    uint16_t wt, wt2;  /* the writing thread; a second one (atomic adds only) */
    uint16_t rt, rt2;  /* the first reading thread; a second one */
    uint8_t plain;     /* wt's writes in epoch wep were not all atomic adds */
    uint16_t tma_bar;  /* written by a TMA load on mbarrier tma_bar - 1 (0: not) */
    uint32_t tma_phase; /* ... whose phase tma_phase its bytes complete */
} Shadow;

#define NO_THREAD 0xffff

typedef enum Access { ACC_READ, ACC_WRITE, ACC_ATOMIC } Access;

typedef struct Mem {
    char *base;     /* storage (a LOCAL buffer in SIMT mode: thread 0's copy) */
    size_t tbytes;  /* bytes from one thread's copy to the next; 0: one copy */
    size_t bytes;   /* bytes of one copy (scratch buffers) */
    int64_t span;   /* elements the storage spans: the shadow's length */
    int64_t shape[IR_MAX_RANK], stride[IR_MAX_RANK];
    bool tracked;   /* the race detector watches it */
    int64_t smem;   /* SIMT mode, shared buffers: byte offset in the shared array */
    Shadow *shadow; /* by element offset; allocated on the first access */
} Mem;

/* An async store not landed yet: the bytes of element off of buffer b. */
typedef struct Pending {
    const Buffer *b;
    int64_t off, group;
    int thread;
    uint8_t bytes[8];
} Pending;

typedef struct Interp {
    const Kernel *k;
    const int64_t *params;
    int64_t *vars; /* nthreads frames of nvars values, indexed by Var.id */
    int64_t nvars;
    int64_t *tv;   /* the current thread's frame */
    int nthreads;  /* 1 without SIMT mode */
    int cur;       /* the current thread */
    bool simt;
    uint32_t epoch; /* advanced by every barrier and every block */
    Mem *mem;       /* indexed by Buffer.id */
    Pending *pending; /* SIMT mode: async stores in flight, in issue order */
    int64_t npending, cappending;
    int64_t *groups;  /* by thread: async groups committed so far */
    /* SIMT mode: each thread's wgmma groups in flight, oldest first
     * (WG_MAX per thread), and by Buffer.id how many of all threads'
     * groups read it as an operand (see wg_check) */
    const Stmt **wg;
    int *nwg;
    int *wg_readers;
    /* by Buffer.id: the epoch and thread of the last wgmma_wait that
     * retired a group reading it: until a barrier, other threads' writes
     * to it race with that group's reads */
    uint32_t *wg_done_epoch;
    int *wg_done_thread;
    /* mbarriers used in this block (MBAR_MAX), and by thread the phases of
     * each it has seen complete */
    struct Mbar *mbar;
    int nmbar;
    int64_t *seen;
    Diag *d;
    bool failed;
} Interp;

/* An mbarrier: element slot of buffer b, in this block. */
typedef struct Mbar {
    const Buffer *b;
    int64_t slot;
    int64_t count;   /* arrivals per phase */
    int64_t pending; /* arrivals the current phase still needs */
    int64_t tx;      /* bytes it expects and no load delivered yet */
    int64_t expected, delivered; /* this phase's totals, for messages */
    int64_t phase;   /* phases completed */
} Mbar;

enum { MBAR_MAX = 32 };

static Mem *mem_of(Interp *in, const Buffer *b) { return &in->mem[b->id]; }
static bool wg_check(Interp *in, const Buffer *b, bool write, SrcLoc loc);
static void wg_issue(Interp *in, const Stmt *s);

/* Storage of b as the current thread sees it. */
static void *base_of(Interp *in, const Buffer *b)
{
    Mem *m = mem_of(in, b);
    return m->base + (size_t)in->cur * m->tbytes;
}

static void set_thread(Interp *in, int t)
{
    in->cur = t;
    in->tv = in->vars + (int64_t)t * in->nvars;
}

static bool fail(Interp *in, SrcLoc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static bool fail(Interp *in, SrcLoc loc, const char *fmt, ...)
{
    char msg[sizeof in->d->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    in->failed = true;
    return diag_error(in->d, loc, "%s", msg);
}

/* "3, 17": an index vector for messages. */
static void format_index(char *out, size_t size, const int64_t *idx, int rank)
{
    out[0] = 0;
    for (int j = 0; j < rank; j++) {
        size_t l = strlen(out);
        snprintf(out + l, size - l, "%s%lld", j ? ", " : "", (long long)idx[j]);
    }
}

/* Offset of idx in b, or -1 (with a diagnostic) when out of bounds. */
static int64_t offset(Interp *in, const Buffer *b, const int64_t *idx, SrcLoc loc)
{
    Mem *m = mem_of(in, b);
    int64_t off = 0;
    for (int d = 0; d < b->rank; d++) {
        if (idx[d] < 0 || idx[d] >= m->shape[d]) {
            char shape[128], index[128];
            format_index(shape, sizeof shape, m->shape, b->rank);
            format_index(index, sizeof index, idx, b->rank);
            fail(in, loc, "index [%s] is out of bounds for %s of shape [%s]", index, b->name, shape);
            return -1;
        }
        off += idx[d] * m->stride[d];
    }
    return off;
}

/* --------------------------------------------------------- race detector */

static const char *access_text(Access a)
{
    return a == ACC_READ ? "reads it" : a == ACC_WRITE ? "writes it" : "adds to it atomically";
}

static bool report_race(Interp *in, const Buffer *b, const int64_t *idx, Access a, int other,
                        const char *what, SrcLoc loc)
{
    char index[128];
    format_index(index, sizeof index, idx, b->rank);
    fail(in, loc, "race on %s[%s]: thread %d %s after thread %d %s with no barrier between",
         b->name, index, in->cur, access_text(a), other, what);
    diag_hint(in->d, "a barrier between the two accesses orders them; only atomic adds may "
                     "meet without one");
    return false;
}

/* One of the two recorded threads that is not t, or -1. */
static int other_than(int t, uint16_t first, uint16_t second)
{
    return first != t ? first : second != NO_THREAD ? second : -1;
}

static void record(Shadow *sh, uint32_t e, int t, Access a)
{
    if (a == ACC_READ) {
        if (sh->rep != e) {
            sh->rep = e;
            sh->rt = (uint16_t)t;
            sh->rt2 = NO_THREAD;
        } else if (sh->rt != t && sh->rt2 == NO_THREAD) {
            sh->rt2 = (uint16_t)t;
        }
    } else if (sh->wep != e || a == ACC_WRITE) {
        sh->wep = e;
        sh->wt = (uint16_t)t;
        sh->wt2 = NO_THREAD;
        sh->plain = a == ACC_WRITE;
    } else if (sh->wt != t && sh->wt2 == NO_THREAD) {
        sh->wt2 = (uint16_t)t; /* atomic adds of several threads */
    }
}

/* Check and record an access to element off (index idx) of b: a race is
 * another thread's access in this epoch where either writes, unless both
 * are atomic adds. */
static bool track(Interp *in, const Buffer *b, int64_t off, const int64_t *idx, Access a,
                  SrcLoc loc)
{
    Mem *m = mem_of(in, b);
    if (!m->tracked)
        return true;
    if (!m->shadow && !(m->shadow = calloc((size_t)(m->span > 0 ? m->span : 1), sizeof *m->shadow)))
        return fail(in, loc, "interpreter: out of memory for the race detector");
    Shadow *sh = &m->shadow[off];
    uint32_t e = in->epoch;
    int t = in->cur, w = sh->wep == e ? other_than(t, sh->wt, sh->wt2) : -1;
    if (sh->tma_bar && a == ACC_READ) { /* the mbarrier orders it, not barriers */
        const Mbar *mb = &in->mbar[sh->tma_bar - 1];
        if (in->seen[(int64_t)t * MBAR_MAX + sh->tma_bar - 1] <= sh->tma_phase) {
            char index[128];
            format_index(index, sizeof index, idx, b->rank);
            fail(in, loc, "thread %d reads %s[%s], written by a TMA load, before waiting for phase %u of "
                 "mbarrier %s[%lld]", t, b->name, index, sh->tma_phase, mb->b->name, (long long)mb->slot);
            diag_hint(in->d, "an mbar_wait with that phase's parity must come first");
            return false;
        }
        w = -1;
    } else if (a != ACC_READ) {
        sh->tma_bar = 0;
    }
    if (w >= 0 && !(a == ACC_ATOMIC && !sh->plain))
        return report_race(in, b, idx, a, w, sh->plain ? "wrote it" : "added to it atomically", loc);
    int r = sh->rep == e ? other_than(t, sh->rt, sh->rt2) : -1;
    if (a != ACC_READ && r >= 0)
        return report_race(in, b, idx, a, r, "read it", loc);
    record(sh, e, t, a);
    return true;
}

/* --------------------------------------------------------- expressions */

static double eval(Interp *in, const Expr *e, SrcLoc loc);

static int64_t eval_int(Interp *in, const Expr *e, SrcLoc loc) { return (int64_t)eval(in, e, loc); }

static double f32(double x) { return (double)(float)x; }

/* IEEE 754-2019 maximum/minimum: NaN if either is NaN, and -0 < +0. */
static float fmaximum(float a, float b)
{
    if (isnan(a) || isnan(b))
        return NAN;
    if (a == b)
        return signbit(a) ? b : a;
    return a > b ? a : b;
}

static float fminimum(float a, float b)
{
    if (isnan(a) || isnan(b))
        return NAN;
    if (a == b)
        return signbit(a) ? a : b;
    return a < b ? a : b;
}

static double int_div(double a, double b, bool mod)
{
    int64_t x = (int64_t)a, y = (int64_t)b;
    if (y == 0)
        return 0;
    int64_t q = x / y;
    if (x % y != 0 && ((x < 0) != (y < 0)))
        q--;
    return mod ? (double)(x - q * y) : (double)q;
}

static double eval(Interp *in, const Expr *e, SrcLoc loc)
{
    if (in->failed)
        return 0;
    bool fl = dt_is_float(e->dtype);
    double a = 0, b = 0;
    switch (e->op) {
    case EX_CONST: return fl ? e->imm.f : (double)e->imm.i;
    case EX_VAR: return (double)in->tv[e->var->id];
    case EX_PARAM: return (double)in->params[e->param->index];
    case EX_LOAD: {
        int64_t idx[IR_MAX_RANK];
        for (int d = 0; d < e->nargs; d++)
            idx[d] = eval_int(in, e->args[d], loc);
        int64_t off = offset(in, e->buf, idx, loc);
        if (off < 0 || !track(in, e->buf, off, idx, ACC_READ, loc) || !wg_check(in, e->buf, false, loc))
            return 0;
        return dt_load(e->buf->dtype, base_of(in, e->buf), off);
    }
    case EX_SELECT:
        return eval(in, e->args[0], loc) != 0 ? eval(in, e->args[1], loc)
                                              : eval(in, e->args[2], loc);
    case EX_CAST: {
        double v = eval(in, e->args[0], loc);
        if (dt_is_float(e->dtype))
            return dt_round_f32(e->dtype, (float)v);
        if (e->dtype == DT_BOOL)
            return v != 0;
        /* To an integer: the store semantics of dt_store (clamp, truncate). */
        int64_t tmp = 0;
        dt_store(e->dtype == DT_I64 ? DT_I64 : e->dtype, &tmp, 0, v);
        return dt_load(e->dtype, &tmp, 0);
    }
    case EX_BITCAST: {
        double v = eval(in, e->args[0], loc);
        uint32_t u;
        if (e->dtype == DT_F32) { /* the low 32 bits of an integer */
            u = (uint32_t)(int64_t)v;
            float f;
            memcpy(&f, &u, 4);
            return f;
        }
        float f = (float)v;
        memcpy(&u, &f, 4);
        return (double)(int32_t)u;
    }
    default:
        break;
    }
    a = eval(in, e->args[0], loc);
    if (e->nargs > 1)
        b = eval(in, e->args[1], loc);
    /* Float ops act on f32 operands and round their result to f32. */
    bool fop = fl || (e->nargs > 1 && (dt_is_float(e->args[0]->dtype) || dt_is_float(e->args[1]->dtype)));
    if (fop) {
        a = f32(a);
        b = f32(b);
    }
    switch (e->op) {
    case EX_ADD: return fop ? f32(a + b) : a + b;
    case EX_SUB: return fop ? f32(a - b) : a - b;
    case EX_MUL: return fop ? f32(a * b) : a * b;
    case EX_DIV: return fop ? f32(a / b) : int_div(a, b, false);
    case EX_MOD: return fop ? (double)fmodf((float)a, (float)b) : int_div(a, b, true);
    case EX_MIN: return fop ? fminimum((float)a, (float)b) : (a < b ? a : b);
    case EX_MAX: return fop ? fmaximum((float)a, (float)b) : (a > b ? a : b);
    case EX_LT: return a < b;
    case EX_LE: return a <= b;
    case EX_EQ: return a == b;
    case EX_NE: return a != b;
    case EX_BAND: return (double)((int64_t)a & (int64_t)b);
    case EX_BOR: return (double)((int64_t)a | (int64_t)b);
    case EX_BXOR: return (double)((int64_t)a ^ (int64_t)b);
    case EX_SHL: return (double)(int64_t)((uint64_t)(int64_t)a << ((int64_t)b & 63));
    case EX_SHR: return (double)((int64_t)a >> ((int64_t)b & 63));
    case EX_AND: return a != 0 && b != 0;
    case EX_OR: return a != 0 || b != 0;
    case EX_NOT: return a == 0;
    case EX_NEG: return -a;
    case EX_ABS: return fabs(a);
    case EX_EXP: return expf((float)a);
    case EX_EXP2: return exp2f((float)a);
    case EX_LOG: return logf((float)a);
    case EX_SQRT: return sqrtf((float)a);
    case EX_RSQRT: return f32(1.0f / sqrtf((float)a));
    case EX_SIGMOID: return f32(1.0f / (1.0f + expf(-(float)a)));
    case EX_SILU: return f32((float)a / (1.0f + expf(-(float)a)));
    case EX_SOFTPLUS: {
        float x = (float)a; /* log(1 + e^x) without overflow */
        return f32(x > 0 ? x + log1pf(expf(-x)) : log1pf(expf(x)));
    }
    default:
        fail(in, loc, "interpreter: unsupported expression %s", ex_name(e->op));
        return 0;
    }
}

/* --------------------------------------------------------- tile regions */

/* Element n (row-major over the window) of region r: its index vector.
 * Returns false when the element lies outside the buffer (a tail). */
static bool region_index(Interp *in, const Region *r, const int64_t *origin, int64_t n,
                         int64_t *idx)
{
    Mem *m = mem_of(in, r->buf);
    bool inside = true;
    for (int d = r->buf->rank - 1; d >= 0; d--) {
        idx[d] = origin[d] + n % r->ext[d];
        n /= r->ext[d];
        inside &= idx[d] >= 0 && idx[d] < m->shape[d];
    }
    return inside;
}

static void region_origin(Interp *in, const Region *r, int64_t *origin, SrcLoc loc)
{
    for (int d = 0; d < r->buf->rank; d++)
        origin[d] = eval_int(in, r->off[d], loc);
}

/* Offset of an in-bounds index, after the race detector saw the access;
 * -1 when it reported a race. */
static int64_t elem_off(Interp *in, const Buffer *b, const int64_t *idx, Access a, SrcLoc loc)
{
    Mem *m = mem_of(in, b);
    int64_t off = 0;
    for (int d = 0; d < b->rank; d++)
        off += idx[d] * m->stride[d];
    return track(in, b, off, idx, a, loc) ? off : -1;
}

static double region_load(Interp *in, const Region *r, const int64_t *idx, SrcLoc loc)
{
    int64_t off = elem_off(in, r->buf, idx, ACC_READ, loc);
    return off < 0 ? 0 : dt_load(r->buf->dtype, base_of(in, r->buf), off);
}

static void region_store(Interp *in, const Region *r, const int64_t *idx, double v, SrcLoc loc)
{
    int64_t off = elem_off(in, r->buf, idx, ACC_WRITE, loc);
    if (off >= 0)
        dt_store(r->buf->dtype, base_of(in, r->buf), off, v);
}

/* dst += v as one atomic read-modify-write, rounded like an f32 add.
 * Blocks (and threads) run one at a time here, so a plain add is atomic. */
static void region_add(Interp *in, const Region *r, const int64_t *idx, double v, SrcLoc loc)
{
    int64_t off = elem_off(in, r->buf, idx, ACC_ATOMIC, loc);
    if (off < 0)
        return;
    void *base = base_of(in, r->buf);
    dt_store(r->buf->dtype, base, off, f32(f32(dt_load(r->buf->dtype, base, off)) + f32(v)));
}

/* COPY and ATOMIC_ADD: windows of equal element count, walked in row-major
 * order together (unit extents don't change the order). */
static void exec_copy(Interp *in, const Stmt *s, bool add)
{
    const Region *src = &s->u.copy.src, *dst = &s->u.copy.dst;
    int64_t so[IR_MAX_RANK], dso[IR_MAX_RANK], si[IR_MAX_RANK], di[IR_MAX_RANK];
    region_origin(in, src, so, s->loc);
    region_origin(in, dst, dso, s->loc);
    int64_t n = ir_region_elems(dst);
    DType t = dst->buf->dtype;
    size_t w = (size_t)dt_bits(t) / 8;
    bool bits = !add && src->buf->dtype == t && t != DT_BOOL && dt_bits(t) >= 8; /* see ir.h */
    for (int64_t i = 0; i < n && !in->failed; i++) {
        if (!region_index(in, dst, dso, i, di))
            continue; /* writes past the destination's edge are dropped */
        if (bits && region_index(in, src, so, i, si)) {
            int64_t from = elem_off(in, src->buf, si, ACC_READ, s->loc);
            int64_t to = from < 0 ? -1 : elem_off(in, dst->buf, di, ACC_WRITE, s->loc);
            if (to >= 0)
                memcpy((char *)base_of(in, dst->buf) + (size_t)to * w,
                       (char *)base_of(in, src->buf) + (size_t)from * w, w);
            continue;
        }
        double v = region_index(in, src, so, i, si) ? region_load(in, src, si, s->loc) : 0.0;
        if (add)
            region_add(in, dst, di, v, s->loc);
        else
            region_store(in, dst, di, v, s->loc);
    }
}

static void exec_fill(Interp *in, const Stmt *s)
{
    const Region *dst = &s->u.fill.dst;
    int64_t o[IR_MAX_RANK], idx[IR_MAX_RANK];
    region_origin(in, dst, o, s->loc);
    double v = eval(in, s->u.fill.value, s->loc);
    int64_t n = ir_region_elems(dst);
    for (int64_t i = 0; i < n && !in->failed; i++)
        if (region_index(in, dst, o, i, idx))
            region_store(in, dst, idx, v, s->loc);
}

/* Element (r, c) of the matrix of a window (its last two dims; the others
 * have extent 1); outside the buffer reads as 0. */
static double matrix_elem(Interp *in, const Region *x, const int64_t *o, int64_t r, int64_t c, SrcLoc loc)
{
    int rank = x->buf->rank;
    int64_t idx[IR_MAX_RANK];
    Mem *m = mem_of(in, x->buf);
    for (int d = 0; d < rank; d++) {
        idx[d] = o[d] + (d == rank - 2 ? r : d == rank - 1 ? c : 0);
        if (idx[d] < 0 || idx[d] >= m->shape[d])
            return 0;
    }
    return region_load(in, x, idx, loc);
}

/* A GEMM operand window with its origin, and its block scale's if any. */
typedef struct Operand {
    const Region *r, *scale;
    int64_t o[IR_MAX_RANK], so[IR_MAX_RANK];
    int64_t br, bc; /* block shape */
    bool prescaled; /* micro_gemm a_prescaled: the scale left is s / clamp(s) */
} Operand;

static void operand_init(Interp *in, Operand *x, const Region *r, const Region *scale, SrcLoc loc)
{
    x->r = r;
    x->scale = scale->buf ? scale : NULL;
    x->prescaled = false;
    region_origin(in, r, x->o, loc);
    if (x->scale) {
        int rank = r->buf->rank;
        region_origin(in, scale, x->so, loc);
        x->br = r->ext[rank - 2] / scale->ext[rank - 2];
        x->bc = r->ext[rank - 1] / scale->ext[rank - 1];
    }
}

/* The operand's element stored at (r, c) times the block scale of (r,
 * sc), sc its logical column (an f32 product). */
static double operand_at(Interp *in, const Operand *x, int64_t r, int64_t c, int64_t sc, SrcLoc loc)
{
    double v = matrix_elem(in, x->r, x->o, r, c, loc);
    if (!x->scale)
        return v;
    double s = matrix_elem(in, x->scale, x->so, r / x->br, sc / x->bc, loc);
    if (x->prescaled) /* exact: powers of two in f32's normal range (NaN stays NaN) */
        s /= fmin(fmax(s, ldexp(1, IR_FOLD_SCALE_LO - 127)), ldexp(1, IR_FOLD_SCALE_HI - 127));
    return f32(v * s);
}

/* Element (i, j) of an operand, transposed on request, times its block's
 * scale. */
static double operand(Interp *in, const Operand *x, int64_t i, int64_t j, bool trans, SrcLoc loc)
{
    int64_t r = trans ? j : i, c = trans ? i : j;
    return operand_at(in, x, r, c, c, loc);
}

/* acc + the dot product of row i of op(a) and column j of op(b), summed in
 * f32 in k order (GEMM and MICRO_GEMM alike). */
static float dot(Interp *in, const Stmt *s, const Operand *a, const Operand *b, int64_t i,
                 int64_t j, int64_t K, float acc)
{
    IrOrder order = ir_decode_order(a->r->buf->dtype, b->r->buf->dtype);
    for (int64_t kk = 0; kk < K && !in->failed; kk++) {
        double bv = s->u.gemm.b_pairs ? operand(in, b, kk / 2, 2 * j + kk % 2, false, s->loc)
                                      : operand(in, b, kk, j, s->u.gemm.trans_b, s->loc);
        double av = s->u.gemm.a_decode_order ? operand_at(in, a, i, ir_order_position(order, kk), kk, s->loc)
                                           : operand(in, a, i, kk, s->u.gemm.trans_a, s->loc);
        acc += (float)(s->u.gemm.a_lifted ? ldexp(av, -IR_A_LIFT_EXP) : av) * (float)bv;
    }
    return acc;
}

static void exec_gemm(Interp *in, const Stmt *s)
{
    const Region *a = &s->u.gemm.a, *c = &s->u.gemm.c;
    Operand ao, bo;
    int64_t co[2];
    operand_init(in, &ao, a, &s->u.gemm.a_scale, s->loc);
    ao.prescaled = s->u.gemm.a_prescaled;
    operand_init(in, &bo, &s->u.gemm.b, &s->u.gemm.b_scale, s->loc);
    region_origin(in, c, co, s->loc);
    int rank = a->buf->rank;
    int64_t M = c->ext[0], N = c->ext[1], K = s->u.gemm.trans_a ? a->ext[rank - 2] : a->ext[rank - 1];
    Mem *cm = mem_of(in, c->buf);
    if (s->u.gemm.rows) { /* the rows wanted; the others are left as they were */
        int64_t n = eval_int(in, s->u.gemm.rows, s->loc);
        M = n < 0 ? 0 : n < M ? n : M;
    }
    if (s->u.gemm.cols) { /* and the columns */
        int64_t n = eval_int(in, s->u.gemm.cols, s->loc);
        N = n < 0 ? 0 : n < N ? n : N;
    }
    for (int64_t i = 0; i < M && !in->failed; i++)
        for (int64_t j = 0; j < N && !in->failed; j++) {
            int64_t ci[2] = {co[0] + i, co[1] + j};
            if (ci[0] < 0 || ci[0] >= cm->shape[0] || ci[1] < 0 || ci[1] >= cm->shape[1])
                continue;
            float acc = s->u.gemm.clear ? 0.0f : (float)region_load(in, c, ci, s->loc);
            region_store(in, c, ci, dot(in, s, &ao, &bo, i, j, K, acc), s->loc);
        }
}

/* ------------------------------------------------------ wgmma (sm_90a) */

/* A wgmma matrix descriptor, decoded as the PTX ISA lays it out (64 bits:
 * start address >> 4 in bits 0-13, leading dimension byte offset >> 4 in
 * 16-29, stride dimension byte offset >> 4 in 32-45, matrix base offset in
 * 49-51, swizzle mode in 62-63: 0 none, 1 128-byte, 2 64-byte, 3 32-byte). */
typedef struct Desc {
    int64_t start, lbo, sbo;
    int base, swizzle; /* swizzle: the pattern's width in bytes, 0 none */
} Desc;

static Desc decode_desc(uint64_t d)
{
    static const int widths[4] = {0, 128, 64, 32};
    Desc x = {.start = (int64_t)(d & 0x3fff) << 4,
              .lbo = (int64_t)(d >> 16 & 0x3fff) << 4,
              .sbo = (int64_t)(d >> 32 & 0x3fff) << 4,
              .base = (int)(d >> 49 & 7),
              .swizzle = widths[d >> 62 & 3]};
    return x;
}

/* The shared byte address of byte kb (of K) of row r of a K-major operand
 * (PTX ISA, wgmma "shared memory matrix layout").  Without swizzling, the
 * matrix is 8-row x 16-byte core matrices, rows 16 bytes apart, core
 * matrices LBO apart along K and SBO apart along M/N.  With a W-byte
 * swizzle, 8 rows of W bytes (rows W apart) repeat SBO apart, and the
 * address's 16-byte chunk bits (4..) are XORed with its bits 7.. (log2
 * W/16 of them). */
static int64_t desc_addr(const Desc *x, int64_t r, int64_t kb)
{
    if (!x->swizzle)
        return x->start + r / 8 * x->sbo + r % 8 * 16 + kb / 16 * x->lbo + kb % 16;
    int64_t a = x->start + r / 8 * x->sbo + r % 8 * x->swizzle + kb;
    return a ^ ((a >> 7) & (x->swizzle / 16 - 1)) << 4;
}

/* The same for byte nb (of N) of k row k of an MN-major B ([K, N], N
 * contiguous: wgmma's imm-trans-b).  Without swizzling, core matrices of 8
 * k rows x 16 bytes of N (rows 16 bytes apart) lie SBO apart along N and
 * LBO apart along K (the PTX ISA's "interleave" meanings); with a W-byte
 * swizzle, an atom is 8 k rows of W bytes of N (rows W apart), atoms lie
 * LBO apart along N and 8-row groups of k SBO apart, and the address is
 * XORed as for K-major. */
static int64_t desc_addr_mn(const Desc *x, int64_t k, int64_t nb)
{
    if (!x->swizzle)
        return x->start + nb / 16 * x->sbo + nb % 16 + k % 8 * 16 + k / 8 * x->lbo;
    int64_t a = x->start + nb / x->swizzle * x->lbo + nb % x->swizzle + k / 8 * x->sbo + k % 8 * x->swizzle;
    return a ^ ((a >> 7) & (x->swizzle / 16 - 1)) << 4;
}

/* The element of operand buffer b at shared address addr, read (and seen
 * by the race detector) as a wgmma reads it; an address outside b is an
 * error: the descriptor disagrees with the buffer the product names. */
static float desc_load(Interp *in, const Stmt *s, const Buffer *b, int64_t addr)
{
    Mem *m = mem_of(in, b);
    int64_t eb = dt_bits(b->dtype) / 8, off = addr - m->smem;
    if (off < 0 || off % eb || off / eb >= m->span) {
        fail(in, s->loc, "wgmma descriptor reads shared address %lld, outside %s (bytes %lld..%lld)",
             (long long)addr, b->name, (long long)m->smem, (long long)(m->smem + m->span * eb));
        return 0;
    }
    int64_t e = off / eb, idx[2] = {e / m->stride[0], e % m->stride[0]};
    if (!track(in, b, e, idx, ACC_READ, s->loc))
        return 0;
    return (float)dt_load(b->dtype, mem_of(in, b)->base, e);
}

static uint64_t desc_word(Interp *in, const Stmt *s, int i)
{
    uint64_t lo = (uint64_t)eval_int(in, s->u.gemm.desc[i], s->loc) & 0xffffffffu;
    uint64_t hi = (uint64_t)eval_int(in, s->u.gemm.desc[i + 1], s->loc) & 0xffffffffu;
    return hi << 32 | lo;
}

/* One wgmma (instruction i of the warpgroup, for its 64-row piece p and
 * column chunk q) in the current thread: its registers of the m64nNk
 * accumulator, which the PTX ISA gives thread t of the warpgroup as
 * d[r], r = 4j + c: row 16 (t/32) + (t%32)/4 + 8 (c/2), column
 * 8j + 2 (t%4) + c%2 — slot 4 (p nt + q N/8 + j) + c of c (ir.h). */
static void wgmma_one(Interp *in, const Stmt *s, const MmaLayout *l, int i, int p, int q, bool zero)
{
    const Buffer *A = s->u.gemm.a.buf, *B = s->u.gemm.b.buf, *C = s->u.gemm.c.buf;
    int kstep = dt_bits(A->dtype) == 8 ? 32 : 16, eb = dt_bits(A->dtype) / 8;
    Desc da = decode_desc(desc_word(in, s, 4 * i)), db = decode_desc(desc_word(in, s, 4 * i + 2));
    if (da.base || db.base) {
        fail(in, s->loc, "interpreter: wgmma descriptor with a matrix base offset");
        return;
    }
    int t = in->cur % 128, warp = t / 32, lane = t % 32;
    float a[2][32], b[64][32]; /* wg_n <= 256: two columns per 8 */
    for (int h = 0; h < 2; h++) /* this thread's two rows of A */
        for (int kk = 0; kk < kstep; kk++)
            a[h][kk] = desc_load(in, s, A, desc_addr(&da, 16 * warp + lane / 4 + 8 * h, kk * eb));
    for (int j = 0; j < l->wg_n / 8; j++) /* and its two columns of B per 8 */
        for (int e = 0; e < 2; e++)
            for (int kk = 0; kk < kstep; kk++) {
                int64_t n = 8 * j + 2 * (lane % 4) + e;
                int64_t addr = s->u.gemm.trans_b ? desc_addr(&db, n, kk * eb) : desc_addr_mn(&db, kk, n * eb);
                b[2 * j + e][kk] = desc_load(in, s, B, addr);
            }
    float *acc = (float *)base_of(in, C);
    for (int r = 0; r < l->wg_n / 2 && !in->failed; r++) {
        int c = r % 4, j = r / 4;
        int64_t slot = 4 * ((int64_t)p * l->nt + (int64_t)q * (l->wg_n / 8) + j) + c;
        float d = zero ? 0.0f : acc[slot];
        for (int kk = 0; kk < kstep; kk++)
            d += a[c / 2][kk] * b[2 * j + c % 2][kk];
        acc[slot] = d;
    }
}

/* MICRO_GEMM with descriptors: the warpgroup's wgmma instructions in
 * issue order (ir.h), each reading its operands from shared memory through
 * its descriptors; the results are complete at the end (the back end waits
 * for them there). */
static void exec_wgmma(Interp *in, const Stmt *s)
{
    const Region *a = &s->u.gemm.a, *b = &s->u.gemm.b, *c = &s->u.gemm.c;
    int64_t M = a->ext[0], K = a->ext[1], N = s->u.gemm.trans_b ? b->ext[0] : b->ext[1];
    MmaLayout l;
    if (!ir_wgmma_layout(M, N, in->nthreads, &l) || c->buf->dtype != DT_F32 || l.wg_n > 256) {
        fail(in, s->loc, "interpreter: micro_gemm [%lld x %lld] has no wgmma layout over %d threads",
             (long long)M, (long long)N, in->nthreads);
        return;
    }
    int kstep = dt_bits(a->buf->dtype) == 8 ? 32 : 16, i = 0;
    for (int64_t ks = 0; ks < K / kstep; ks++)
        for (int p = 0; p < l.mt; p++)
            for (int q = 0; q < l.nq && !in->failed; q++, i++)
                wgmma_one(in, s, &l, i, p, q, s->u.gemm.clear && ks == 0);
}

/* MICRO_GEMM of a threaded kernel: the whole block's tensor-core product.
 * Each thread's share depends only on the shared operands, so the current
 * thread computes just its own slots of c (element ir_mma_pos of the [M, N]
 * accumulator each). */
static void exec_block_mma(Interp *in, const Stmt *s)
{
    const Region *a = &s->u.gemm.a, *b = &s->u.gemm.b, *c = &s->u.gemm.c;
    bool ta = s->u.gemm.trans_a, tb = s->u.gemm.trans_b;
    Operand ao, bo;
    int64_t co[1];
    operand_init(in, &ao, a, &s->u.gemm.a_scale, s->loc);
    operand_init(in, &bo, b, &s->u.gemm.b_scale, s->loc);
    region_origin(in, c, co, s->loc);
    int64_t M = ta ? a->ext[1] : a->ext[0], K = ta ? a->ext[0] : a->ext[1];
    int64_t N = s->u.gemm.b_pairs ? b->ext[1] / 2 : tb ? b->ext[0] : b->ext[1];
    MmaLayout l;
    if (s->u.gemm.desc) {
        exec_wgmma(in, s);
        wg_issue(in, s);
        return;
    }
    if (!ir_mma_layout(M, N, in->nthreads, &l) || c->buf->rank != 1) {
        fail(in, s->loc, "interpreter: micro_gemm [%lld x %lld] has no tensor-core layout over %d threads",
             (long long)M, (long long)N, in->nthreads);
        return;
    }
    for (int64_t slot = 0; slot < l.slots && !in->failed; slot++) {
        int64_t i, j, ci[1] = {co[0] + slot};
        ir_mma_pos(&l, in->cur, slot, &i, &j);
        if (offset(in, c->buf, ci, s->loc) < 0)
            return;
        float acc = s->u.gemm.clear ? 0.0f : (float)region_load(in, c, ci, s->loc);
        region_store(in, c, ci, dot(in, s, &ao, &bo, i, j, K, acc), s->loc);
    }
}

static float reduce_init(ReduceOp op)
{
    return op == RED_MAX ? -INFINITY : op == RED_MIN ? INFINITY : 0.0f;
}

static float reduce_step(ReduceOp op, float acc, float x)
{
    switch (op) {
    case RED_SUM: return acc + x;
    case RED_MAX: return fmaximum(acc, x);
    case RED_MIN: return fminimum(acc, x);
    default: return fmaximum(acc, fabsf(x));
    }
}

/* The reduction of one source row: dst's window element `i` (index di)
 * with the axis re-inserted. */
static float reduce_row(Interp *in, const Stmt *s, const int64_t *so, int64_t i)
{
    const Region *src = &s->u.reduce.src, *dst = &s->u.reduce.dst;
    int axis = s->u.reduce.axis, rank = src->buf->rank;
    ReduceOp op = s->u.reduce.rop;
    int64_t rest = i, outer[IR_MAX_RANK], si[IR_MAX_RANK];
    for (int d = dst->buf->rank - 1; d >= 0; d--) {
        outer[d] = rest % dst->ext[d];
        rest /= dst->ext[d];
    }
    float acc = reduce_init(op);
    Mem *m = mem_of(in, src->buf);
    for (int64_t r = 0; r < src->ext[axis] && !in->failed; r++) {
        bool inside = true;
        for (int d = 0, o = 0; d < rank; d++) {
            si[d] = so[d] + (d == axis ? r : outer[o++]);
            inside &= si[d] >= 0 && si[d] < m->shape[d];
        }
        if (inside)
            acc = reduce_step(op, acc, (float)region_load(in, src, si, s->loc));
    }
    return acc;
}

static void exec_reduce(Interp *in, const Stmt *s)
{
    const Region *src = &s->u.reduce.src, *dst = &s->u.reduce.dst;
    ReduceOp op = s->u.reduce.rop;
    int64_t so[IR_MAX_RANK], dso[IR_MAX_RANK], di[IR_MAX_RANK];
    region_origin(in, src, so, s->loc);
    region_origin(in, dst, dso, s->loc);
    int64_t n = ir_region_elems(dst);
    for (int64_t i = 0; i < n && !in->failed; i++) {
        if (!region_index(in, dst, dso, i, di))
            continue;
        float acc = reduce_row(in, s, so, i);
        if (!s->u.reduce.clear)
            acc = reduce_step(op == RED_ABSMAX ? RED_MAX : op, (float)region_load(in, dst, di, s->loc), acc);
        region_store(in, dst, di, acc, s->loc);
    }
}


/* ------------------------------------------------- wgmma groups in flight */

/* A MICRO_GEMM with descriptors computes at issue here, but stays in
 * flight (ir.h) until a wgmma_wait retires it: until then its thread may
 * not touch its accumulator and no thread may write its operands.  Every
 * such access is reported, so a missing or too lax wgmma_wait fails even
 * where the product happens to come out right. */
enum { WG_MAX = 16 };

static bool wg_failed(Interp *in, const Buffer *b, const char *what, int t, const Stmt *g, SrcLoc loc)
{
    fail(in, loc, "race on %s: thread %d %s while thread %d's wgmma group (line %d) %s it is in flight",
         b->name, in->cur, what, t, g->loc.line, b == g->u.gemm.c.buf ? "writing" : "reading");
    diag_hint(in->d, "a wgmma_wait that retires the group must come first (and, for a shared "
                     "operand other threads read, a barrier after it)");
    return false;
}

/* May the current thread access b now (write: overwrite it)? */
static bool wg_check(Interp *in, const Buffer *b, bool write, SrcLoc loc)
{
    if (in->wg && write && b->scope != SCOPE_LOCAL && in->wg_done_epoch[b->id] == in->epoch &&
        in->wg_done_thread[b->id] != in->cur) {
        fail(in, loc, "race on %s: thread %d writes it after thread %d's wgmma group read it (retired by its "
             "wgmma_wait) with no barrier between", b->name, in->cur, in->wg_done_thread[b->id]);
        diag_hint(in->d, "after the wgmma_wait, a barrier: each thread retires only its own groups");
        return false;
    }
    if (!in->wg || (b->scope == SCOPE_LOCAL ? !in->nwg[in->cur] : !write || !in->wg_readers[b->id]))
        return true;
    bool local = b->scope == SCOPE_LOCAL;
    for (int t = local ? in->cur : 0; t < (local ? in->cur + 1 : in->nthreads); t++)
        for (int i = 0; i < in->nwg[t]; i++) {
            const Stmt *g = in->wg[t * WG_MAX + i];
            bool acc = t == in->cur && g->u.gemm.c.buf == b;
            if (acc || (write && (g->u.gemm.a.buf == b || g->u.gemm.b.buf == b)))
                return wg_failed(in, b, write ? "writes it" : "reads it", t, g, loc);
        }
    return true;
}

static void wg_issue(Interp *in, const Stmt *s)
{
    if (in->nwg[in->cur] == WG_MAX) {
        fail(in, s->loc, "thread %d has more than %d wgmma groups in flight", in->cur, WG_MAX);
        return;
    }
    in->wg[in->cur * WG_MAX + in->nwg[in->cur]++] = s;
    in->wg_readers[s->u.gemm.a.buf->id]++;
    in->wg_readers[s->u.gemm.b.buf->id]++;
}

/* wgmma_wait n: the current thread's groups but its n newest complete. */
static void wg_retire(Interp *in, int keep)
{
    const Stmt **q = in->wg + in->cur * WG_MAX;
    int n = in->nwg[in->cur], drop = n > keep ? n - keep : 0;
    for (int i = 0; i < drop; i++) {
        const Buffer *ops[2] = {q[i]->u.gemm.a.buf, q[i]->u.gemm.b.buf};
        for (int o = 0; o < 2; o++) {
            in->wg_readers[ops[o]->id]--;
            in->wg_done_epoch[ops[o]->id] = in->epoch;
            in->wg_done_thread[ops[o]->id] = in->cur;
        }
    }
    memmove(q, q + drop, (size_t)(n - drop) * sizeof *q);
    in->nwg[in->cur] = n - drop;
}

/* A block ends with no group in flight (its results would be lost). */
static bool wg_block_end(Interp *in)
{
    for (int t = 0; in->wg && t < in->nthreads; t++)
        if (in->nwg[t])
            return fail(in, in->wg[t * WG_MAX]->loc, "thread %d ends the block with a wgmma group in flight "
                        "(no wgmma_wait retires it)", t);
    return true;
}

/* ----------------------------------------------------------- statements */

static void exec(Interp *in, const Stmt *s);

/* Does the store copy an element of its own dtype (whole bytes)?  Then it
 * moves the bits, as compiled code does: a NaN keeps its sign and payload. */
static bool moves_bits(const Stmt *s)
{
    const Expr *v = s->u.store.value;
    DType t = s->u.store.buf->dtype;
    return !s->u.store.atomic && v->op == EX_LOAD && v->buf->dtype == t && t != DT_BOOL && dt_bits(t) >= 8;
}

/* The bytes of the element a load reads (it is tracked as a read). */
static bool load_bytes(Interp *in, const Expr *e, SrcLoc loc, uint8_t *out)
{
    int64_t idx[IR_MAX_RANK];
    for (int d = 0; d < e->nargs; d++)
        idx[d] = eval_int(in, e->args[d], loc);
    int64_t off = in->failed ? -1 : offset(in, e->buf, idx, loc);
    if (off < 0 || !track(in, e->buf, off, idx, ACC_READ, loc) || !wg_check(in, e->buf, false, loc))
        return false;
    size_t n = (size_t)dt_bits(e->buf->dtype) / 8;
    memcpy(out, (char *)base_of(in, e->buf) + (size_t)off * n, n);
    return true;
}

static void exec_store(Interp *in, const Stmt *s)
{
    const Buffer *b = s->u.store.buf;
    int64_t idx[IR_MAX_RANK];
    for (int d = 0; d < b->rank; d++)
        idx[d] = eval_int(in, s->u.store.idx[d], s->loc);
    uint8_t bytes[8];
    bool raw = moves_bits(s);
    double v = 0;
    if (raw)
        raw = load_bytes(in, s->u.store.value, s->loc, bytes);
    else
        v = eval(in, s->u.store.value, s->loc);
    if (in->failed)
        return;
    int64_t off = offset(in, b, idx, s->loc);
    Access a = s->u.store.atomic ? ACC_ATOMIC : ACC_WRITE;
    if (off < 0 || !track(in, b, off, idx, a, s->loc) || !wg_check(in, b, true, s->loc))
        return;
    size_t n = (size_t)dt_bits(b->dtype) / 8;
    if (s->u.store.async && in->simt) { /* async stores always move bits (verified) */
        if (in->npending == in->cappending) {
            in->cappending = in->cappending ? 2 * in->cappending : 1024;
            in->pending = realloc(in->pending, (size_t)in->cappending * sizeof *in->pending);
        }
        Pending *p = &in->pending[in->npending++];
        *p = (Pending){b, off, in->groups[in->cur], in->cur, {0}};
        memcpy(p->bytes, bytes, n);
        return;
    }
    if (raw) {
        memcpy((char *)base_of(in, b) + (size_t)off * n, bytes, n);
        return;
    }
    void *base = base_of(in, b);
    if (s->u.store.atomic) /* blocks and threads run one by one here: a plain add */
        v = f32(f32(dt_load(b->dtype, base, off)) + f32(v));
    dt_store(b->dtype, base, off, v);
}

/* ------------------------------------------------------ TMA, mbarriers */

/* The mbarrier a statement names; NULL (reported) before its mbar_init,
 * or a new one for MBAR_INIT. */
static Mbar *mbar_of(Interp *in, const Stmt *s)
{
    int64_t slot = eval_int(in, s->u.mbar.slot, s->loc);
    int64_t off = in->failed ? -1 : offset(in, s->u.mbar.bar, &slot, s->loc);
    if (off < 0)
        return NULL;
    bool init = s->op == ST_MBAR_INIT;
    if (!track(in, s->u.mbar.bar, off, &slot, init ? ACC_WRITE : ACC_ATOMIC, s->loc))
        return NULL;
    for (int i = 0; i < in->nmbar; i++)
        if (in->mbar[i].b == s->u.mbar.bar && in->mbar[i].slot == slot) {
            if (init)
                fail(in, s->loc, "mbarrier %s[%lld] is initialised twice in a block", s->u.mbar.bar->name,
                     (long long)slot);
            return init ? NULL : &in->mbar[i];
        }
    if (!init) {
        fail(in, s->loc, "mbarrier %s[%lld] is used before mbar_init", s->u.mbar.bar->name, (long long)slot);
        diag_hint(in->d, "one thread initialises each mbarrier at the start of the block, then a barrier");
        return NULL;
    }
    if (in->nmbar == MBAR_MAX) {
        fail(in, s->loc, "interpreter: more than %d mbarriers in a block", MBAR_MAX);
        return NULL;
    }
    in->mbar[in->nmbar] = (Mbar){.b = s->u.mbar.bar, .slot = slot};
    return &in->mbar[in->nmbar++];
}

/* The current phase completes when it has every arrival and every byte. */
static void mbar_progress(Mbar *mb)
{
    if (mb->pending == 0 && mb->tx == 0) {
        mb->phase++;
        mb->pending = mb->count;
        mb->expected = mb->delivered = 0;
    }
}

static void exec_mbar_init(Interp *in, const Stmt *s)
{
    Mbar *mb = mbar_of(in, s);
    if (mb)
        mb->count = mb->pending = eval_int(in, s->u.mbar.arg, s->loc);
}

static void exec_mbar_expect(Interp *in, const Stmt *s)
{
    Mbar *mb = mbar_of(in, s);
    if (!mb)
        return;
    int64_t bytes = eval_int(in, s->u.mbar.arg, s->loc);
    mb->tx += bytes;
    mb->expected += bytes;
    mb->pending--;
    mbar_progress(mb);
}

/* The boxes land now, in the hardware's layout, and complete their bytes. */
static void exec_tma(Interp *in, const Stmt *s)
{
    Mbar *mb = mbar_of(in, s);
    if (!mb)
        return;
    const Region *src = &s->u.mbar.src;
    const Buffer *x = s->u.mbar.dst.buf;
    int rank = x->rank;
    int64_t bshape[IR_MAX_RANK], so[IR_MAX_RANK], si[IR_MAX_RANK], di[IR_MAX_RANK];
    int64_t nbox = ir_tma_box(s, bshape), eb = dt_bits(x->dtype) / 8, per = 1;
    region_origin(in, src, so, s->loc);
    for (int d = 0; d < rank; d++)
        per *= bshape[d];
    Mem *m = mem_of(in, x);
    Mem *g = mem_of(in, src->buf);
    if (!wg_check(in, x, true, s->loc)) /* no wgmma group may still read the tile */
        return;
    for (int64_t c = 0; c < nbox && !in->failed; c++)
        for (int64_t e = 0; e < per && !in->failed; e++) {
            bool inside = true;
            int64_t rest = e, goff = 0;
            for (int d = rank - 1; d >= 0; d--) {
                si[d] = so[d] + rest % bshape[d] + (d == rank - 1 ? c * bshape[d] : 0);
                rest /= bshape[d];
                inside &= si[d] >= 0 && si[d] < g->shape[d];
                goff += si[d] * g->stride[d];
            }
            /* boxes one after another, each dense, then the swizzle */
            int64_t byte = ir_swizzle_byte((c * per + e) * eb, s->u.mbar.swizzle), off = byte / eb;
            for (int64_t d = rank - 1, r = off; d >= 0; r /= m->shape[d], d--) /* for messages */
                di[d] = r % m->shape[d];
            if (inside && !track(in, src->buf, goff, si, ACC_READ, s->loc))
                return;
            if (off >= m->span || !track(in, x, off, di, ACC_WRITE, s->loc)) {
                if (!in->failed)
                    fail(in, s->loc, "tma_load writes byte %lld of %s, outside its storage", (long long)byte,
                         x->name);
                return;
            }
            if (m->shadow) { /* the mbarrier orders the data from here on */
                m->shadow[off].tma_bar = (uint16_t)(mb - in->mbar + 1);
                m->shadow[off].tma_phase = (uint32_t)mb->phase;
                m->shadow[off].wep = 0;
            }
            char *to = m->base + byte;
            if (inside)
                memcpy(to, (char *)g->base + goff * eb, (size_t)eb);
            else
                memset(to, 0, (size_t)eb);
        }
    int64_t bytes = nbox * per * eb;
    if (bytes > mb->tx || mb->pending == mb->count) {
        fail(in, s->loc, "tma_load delivers %lld bytes to mbarrier %s[%lld], whose phase %lld expects only "
             "%lld more (mbar_expect_tx counts fewer bytes than its loads deliver, or comes after them)",
             (long long)bytes, mb->b->name, (long long)mb->slot, (long long)mb->phase,
             (long long)(mb->pending == mb->count ? 0 : mb->tx));
        return;
    }
    mb->tx -= bytes;
    mb->delivered += bytes;
    mbar_progress(mb);
}

/* One thread's mbar_wait: the phase of the parity asked for is complete
 * when the current phase has the other parity.  Every thread is at the
 * wait (it runs in lock-step), so otherwise it never completes. */
static void mbar_wait(Interp *in, const Stmt *s)
{
    Mbar *mb = mbar_of(in, s);
    if (!mb)
        return;
    int64_t parity = eval_int(in, s->u.mbar.arg, s->loc) & 1;
    if ((mb->phase & 1) != parity) {
        in->seen[(int64_t)in->cur * MBAR_MAX + (mb - in->mbar)] = mb->phase;
        return;
    }
    if (mb->pending == 0 && mb->tx > 0)
        fail(in, s->loc, "deadlock: mbar_wait on %s[%lld] never returns: phase %lld expects %lld bytes "
             "(mbar_expect_tx) but its TMA loads deliver %lld", mb->b->name, (long long)mb->slot,
             (long long)mb->phase, (long long)mb->expected, (long long)mb->delivered);
    else
        fail(in, s->loc, "deadlock: mbar_wait on %s[%lld] with parity %lld never returns: phase %lld "
             "(parity %lld) has %lld of its %lld arrivals and nothing else will arrive", mb->b->name,
             (long long)mb->slot, (long long)parity, (long long)mb->phase, (long long)(mb->phase & 1),
             (long long)(mb->count - mb->pending), (long long)mb->count);
    diag_hint(in->d, "a wait's parity is its phase %% 2; each phase needs its mbar_expect_tx and the loads "
                     "that deliver exactly those bytes");
}

/* One thread's walk of s (in SIMT mode: a subtree without barriers). */
static void exec(Interp *in, const Stmt *s)
{
    if (in->failed)
        return;
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n && !in->failed; i++)
            exec(in, s->u.seq.items[i]);
        break;
    case ST_FOR: {
        int64_t n = eval_int(in, s->u.loop.extent, s->loc);
        for (int64_t i = 0; i < n && !in->failed; i++) {
            in->tv[s->u.loop.var->id] = i;
            exec(in, s->u.loop.body);
        }
        break;
    }
    case ST_IF:
        if (eval(in, s->u.if_.cond, s->loc) != 0)
            exec(in, s->u.if_.then_);
        else if (s->u.if_.else_)
            exec(in, s->u.if_.else_);
        break;
    case ST_ONCE: /* the meaning: the body each time (ir.h) */
        eval_int(in, s->u.once.key, s->loc);
        exec(in, s->u.once.body);
        break;
    case ST_STORE: exec_store(in, s); break;
    case ST_COPY: exec_copy(in, s, false); break;
    case ST_ATOMIC_ADD: exec_copy(in, s, true); break;
    case ST_FILL: exec_fill(in, s); break;
    case ST_GEMM: exec_gemm(in, s); break;
    case ST_MICRO_GEMM: in->simt ? exec_block_mma(in, s) : exec_gemm(in, s); break;
    case ST_REDUCE: exec_reduce(in, s); break;
    case ST_ASYNC_COMMIT:
        if (in->simt)
            in->groups[in->cur]++;
        break;
    case ST_ASYNC_WAIT: break; /* without threads every async store has landed */
    case ST_WGMMA_WAIT:
        if (in->wg)
            wg_retire(in, s->u.wait.pending);
        break;
    case ST_PREFETCH: break;   /* a hint about caches */
    case ST_MBAR_INIT: exec_mbar_init(in, s); break;
    case ST_MBAR_EXPECT: exec_mbar_expect(in, s); break;
    case ST_TMA_LOAD: exec_tma(in, s); break;
    case ST_MBAR_WAIT: mbar_wait(in, s); break; /* (one thread: SIMT mode waits in simt()) */
    default: fail(in, s->loc, "interpreter: unsupported statement %s", st_name(s->op));
    }
}

/* ------------------------------------------------------------ SIMT mode */

static bool has_barrier(const Stmt *s)
{
    if (!s)
        return false;
    switch (s->op) {
    case ST_BARRIER:
    case ST_ASYNC_WAIT:
    case ST_MBAR_WAIT: return true; /* (a lock-step point, not a barrier) */
    case ST_FOR: return has_barrier(s->u.loop.body);
    case ST_IF: return has_barrier(s->u.if_.then_) || has_barrier(s->u.if_.else_);
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            if (has_barrier(s->u.seq.items[i]))
                return true;
        return false;
    default: return false;
    }
}

static void format_value(char *out, size_t size, const Expr *e, double v)
{
    if (e->dtype == DT_BOOL)
        snprintf(out, size, "%s", v != 0 ? "true" : "false");
    else
        snprintf(out, size, "%lld", (long long)v);
}

/* The value of e, which must be the same in every thread: control flow
 * around a barrier that depends on the thread would leave some threads
 * waiting at a barrier the others never reach. */
static bool uniform(Interp *in, const Expr *e, SrcLoc loc, const char *what, double *out)
{
    for (int t = 0; t < in->nthreads && !in->failed; t++) {
        set_thread(in, t);
        double v = eval(in, e, loc);
        if (t == 0) {
            *out = v;
        } else if (v != *out && !in->failed) {
            char a[32], b[32];
            format_value(a, sizeof a, e, *out);
            format_value(b, sizeof b, e, v);
            fail(in, loc, "barrier inside %s differs between threads (thread 0: %s, thread %d: %s)",
                 what, a, t, b);
            diag_hint(in->d, "every thread of a block must reach the same barriers: keep them "
                             "out of control flow that depends on the thread index");
        }
    }
    return !in->failed;
}

static void simt(Interp *in, const Stmt *s);

/* async_wait n: every thread's groups but its n newest committed land (in
 * issue order), then the barrier. */
static void simt_async_wait(Interp *in, const Stmt *s)
{
    int64_t kept = 0;
    for (int64_t i = 0; i < in->npending; i++) {
        Pending *p = &in->pending[i];
        if (p->group < in->groups[p->thread] - s->u.wait.pending) {
            set_thread(in, p->thread);
            size_t n = (size_t)dt_bits(p->b->dtype) / 8;
            memcpy((char *)base_of(in, p->b) + (size_t)p->off * n, p->bytes, n);
        } else {
            in->pending[kept++] = *p;
        }
    }
    in->npending = kept;
    in->epoch++;
}

/* A loop with a barrier inside: iterations in lock-step over all threads. */
static void simt_for(Interp *in, const Stmt *s)
{
    double n;
    if (!uniform(in, s->u.loop.extent, s->loc, "a loop whose extent", &n))
        return;
    int id = s->u.loop.var->id;
    for (int64_t i = 0; i < (int64_t)n && !in->failed; i++) {
        for (int t = 0; t < in->nthreads; t++)
            in->vars[(int64_t)t * in->nvars + id] = i;
        simt(in, s->u.loop.body);
    }
}

static void simt_if(Interp *in, const Stmt *s)
{
    double c;
    if (!uniform(in, s->u.if_.cond, s->loc, "an if whose condition", &c))
        return;
    const Stmt *branch = c != 0 ? s->u.if_.then_ : s->u.if_.else_;
    if (branch)
        simt(in, branch);
}

/* Run s for every thread of the block (see the top of this file). */
static void simt(Interp *in, const Stmt *s)
{
    if (in->failed)
        return;
    if (!has_barrier(s)) {
        for (int t = 0; t < in->nthreads && !in->failed; t++) {
            set_thread(in, t);
            exec(in, s);
        }
        return;
    }
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n && !in->failed; i++)
            simt(in, s->u.seq.items[i]);
        break;
    case ST_FOR: simt_for(in, s); break;
    case ST_IF: simt_if(in, s); break;
    case ST_ASYNC_WAIT: simt_async_wait(in, s); break;
    case ST_MBAR_WAIT: /* every thread, in lock-step; no new epoch */
        for (int t = 0; t < in->nthreads && !in->failed; t++) {
            set_thread(in, t);
            mbar_wait(in, s);
        }
        break;
    default: in->epoch++; break; /* ST_BARRIER: accesses after it are ordered */
    }
}

/* ----------------------------------------------------------------- setup */

/* Elements from offset 0 to the last element, plus one (0 if empty). */
static int64_t span_of(const Mem *m, int rank)
{
    int64_t span = 1;
    for (int d = 0; d < rank; d++) {
        if (m->shape[d] <= 0)
            return 0;
        span += (m->shape[d] - 1) * m->stride[d];
    }
    return span;
}

/* Storage of a scratch buffer: one copy, or one per thread for a LOCAL
 * buffer in SIMT mode. */
static bool alloc_scratch(Interp *in, const Buffer *b, Mem *m)
{
    bool per_thread = in->simt && b->scope == SCOPE_LOCAL;
    size_t copies = per_thread ? (size_t)in->nthreads : 1;
    m->bytes = (dt_storage_bytes(b->dtype, m->span) + 16 + 15) / 16 * 16;
    m->tbytes = per_thread ? m->bytes : 0;
    m->base = calloc(copies, m->bytes);
    return m->base != NULL;
}

static bool setup_mem(Interp *in, void *const *args)
{
    const Kernel *k = in->k;
    for (int i = 0; i < k->nbufs; i++) {
        const Buffer *b = k->bufs[i];
        Mem *m = &in->mem[b->id];
        bool nonneg = true;
        for (int d = 0; d < b->rank; d++) {
            if (!ir_eval_int(b->shape[d], in->params, &m->shape[d]) ||
                !ir_eval_int(b->stride[d], in->params, &m->stride[d]))
                return fail(in, b->loc, "interpreter: cannot evaluate the shape of %s", b->name);
            nonneg &= m->stride[d] >= 0;
        }
        m->span = span_of(m, b->rank);
        /* a LOCAL buffer is private; the rest is what threads share */
        m->tracked = in->simt && b->scope != SCOPE_LOCAL && nonneg;
        m->smem = b->scope == SCOPE_SHARED ? ir_shared_offset(k, b) : -1;
        if (b->scope == SCOPE_GLOBAL)
            m->base = args[i];
        else if (!alloc_scratch(in, b, m))
            return fail(in, k->loc, "interpreter: out of memory");
    }
    return true;
}

/* Bind the block's grid variables (and in SIMT mode each frame's thread
 * index); SIMT mode also gives the block fresh scratch, filled with ones
 * bits, and a new epoch. */
static void start_block(Interp *in, int64_t blk, const int64_t *grid)
{
    const Kernel *k = in->k;
    for (int t = 0; t < in->nthreads; t++) {
        int64_t *frame = in->vars + (int64_t)t * in->nvars, rest = blk;
        for (int g = k->ngrid - 1; g >= 0; g--) {
            frame[k->grid_var[g]->id] = rest % grid[g];
            rest /= grid[g];
        }
        if (in->simt)
            frame[k->thread_var->id] = t;
    }
    set_thread(in, 0);
    in->nmbar = 0;
    memset(in->seen, 0, (size_t)in->nthreads * MBAR_MAX * sizeof *in->seen);
    if (!in->simt)
        return;
    in->epoch++;
    in->npending = 0; /* (a kernel that never waits leaves its stores unlanded) */
    memset(in->groups, 0, (size_t)in->nthreads * sizeof *in->groups);
    for (int i = 0; i < k->nbufs; i++) {
        Mem *m = mem_of(in, k->bufs[i]);
        if (k->bufs[i]->scope != SCOPE_GLOBAL)
            memset(m->base, 0xff, m->tbytes ? m->tbytes * (size_t)in->nthreads : m->bytes);
    }
}

static void free_mem(Interp *in)
{
    for (int i = 0; in->mem && i < in->k->nbufs; i++) {
        Mem *m = mem_of(in, in->k->bufs[i]);
        if (in->k->bufs[i]->scope != SCOPE_GLOBAL)
            free(m->base);
        free(m->shadow);
    }
    free(in->mem);
    free(in->vars);
    free(in->pending);
    free(in->groups);
    free(in->wg);
    free(in->nwg);
    free(in->wg_readers);
    free(in->wg_done_epoch);
    free(in->wg_done_thread);
    free(in->mbar);
    free(in->seen);
}

bool ir_interp(const Kernel *k, void *const *args, const int64_t *params, Diag *d)
{
    Interp in = {.k = k, .params = params, .d = d, .simt = k->nthreads > 0};
    in.nthreads = in.simt ? k->nthreads : 1;
    in.nvars = k->next_id + 1;
    in.vars = calloc((size_t)(in.nthreads * in.nvars), sizeof *in.vars);
    in.mem = calloc((size_t)in.nvars, sizeof *in.mem);
    in.groups = calloc((size_t)in.nthreads, sizeof *in.groups);
    in.mbar = calloc(MBAR_MAX, sizeof *in.mbar);
    in.seen = calloc((size_t)in.nthreads * MBAR_MAX, sizeof *in.seen);
    if (in.simt) {
        in.wg = calloc((size_t)in.nthreads * WG_MAX, sizeof *in.wg);
        in.nwg = calloc((size_t)in.nthreads, sizeof *in.nwg);
        in.wg_readers = calloc((size_t)in.nvars, sizeof *in.wg_readers);
        in.wg_done_epoch = calloc((size_t)in.nvars, sizeof *in.wg_done_epoch);
        in.wg_done_thread = calloc((size_t)in.nvars, sizeof *in.wg_done_thread);
    }
    bool ok = (in.vars && in.mem && in.groups && in.mbar && in.seen) ? setup_mem(&in, args)
                                               : fail(&in, k->loc, "interpreter: out of memory");
    int64_t grid[IR_MAX_GRID] = {1, 1, 1}, nblocks = 1;
    for (int g = 0; ok && g < k->ngrid; g++) {
        ok = ir_eval_int(k->grid[g], params, &grid[g]) ||
             fail(&in, k->loc, "interpreter: cannot evaluate the grid of %s", k->name);
        nblocks *= grid[g];
    }
    for (int64_t blk = 0; ok && blk < nblocks && !in.failed; blk++) {
        start_block(&in, blk, grid);
        if (in.simt) {
            simt(&in, k->body);
            wg_block_end(&in);
        } else
            exec(&in, k->body);
    }
    ok = ok && !in.failed;
    free_mem(&in);
    return ok;
}
