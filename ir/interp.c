/* interp.c — the reference interpreter: runs a kernel at either IR level on
 * the CPU, one block after another, with the value semantics of ir.h.
 *
 * It is deliberately simple — a tree walk over one frame of variable values —
 * because it is what compiled code is checked against.  Every element access
 * is bounds-checked: an out-of-range index is an error at the user's line. */
#include "ir/ir.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct Mem {
    void *base;
    int64_t shape[IR_MAX_RANK], stride[IR_MAX_RANK];
} Mem;

typedef struct Interp {
    const Kernel *k;
    const int64_t *params;
    int64_t *vars; /* indexed by Var.id */
    Mem *mem;      /* indexed by Buffer.id */
    Diag *d;
    bool failed;
} Interp;

static Mem *mem_of(Interp *in, const Buffer *b) { return &in->mem[b->id]; }

/* Offset of idx in b, or -1 (with a diagnostic) when out of bounds. */
static int64_t offset(Interp *in, const Buffer *b, const int64_t *idx, SrcLoc loc)
{
    Mem *m = mem_of(in, b);
    int64_t off = 0;
    for (int d = 0; d < b->rank; d++) {
        if (idx[d] < 0 || idx[d] >= m->shape[d]) {
            char shape[128] = "", index[128] = "";
            for (int j = 0; j < b->rank; j++) {
                size_t ls = strlen(shape), li = strlen(index);
                snprintf(shape + ls, sizeof shape - ls, "%s%lld", j ? ", " : "", (long long)m->shape[j]);
                snprintf(index + li, sizeof index - li, "%s%lld", j ? ", " : "", (long long)idx[j]);
            }
            diag_error(in->d, loc, "index [%s] is out of bounds for %s of shape [%s]", index,
                       b->name, shape);
            in->failed = true;
            return -1;
        }
        off += idx[d] * m->stride[d];
    }
    return off;
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
    case EX_VAR: return (double)in->vars[e->var->id];
    case EX_PARAM: return (double)in->params[e->param->index];
    case EX_LOAD: {
        int64_t idx[IR_MAX_RANK];
        for (int d = 0; d < e->nargs; d++)
            idx[d] = eval_int(in, e->args[d], loc);
        int64_t off = offset(in, e->buf, idx, loc);
        return off < 0 ? 0 : dt_load(e->buf->dtype, mem_of(in, e->buf)->base, off);
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
        diag_error(in->d, loc, "interpreter: unsupported expression %s", ex_name(e->op));
        in->failed = true;
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


static double region_load(Interp *in, const Region *r, const int64_t *idx)
{
    Mem *m = mem_of(in, r->buf);
    int64_t off = 0;
    for (int d = 0; d < r->buf->rank; d++)
        off += idx[d] * m->stride[d];
    return dt_load(r->buf->dtype, m->base, off);
}

static void region_store(Interp *in, const Region *r, const int64_t *idx, double v)
{
    Mem *m = mem_of(in, r->buf);
    int64_t off = 0;
    for (int d = 0; d < r->buf->rank; d++)
        off += idx[d] * m->stride[d];
    dt_store(r->buf->dtype, m->base, off, v);
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
    for (int64_t i = 0; i < n && !in->failed; i++) {
        if (!region_index(in, dst, dso, i, di))
            continue; /* writes past the destination's edge are dropped */
        double v = region_index(in, src, so, i, si) ? region_load(in, src, si) : 0.0;
        if (add)
            v = f32(f32(region_load(in, dst, di)) + f32(v));
        region_store(in, dst, di, v);
    }
}

static void exec_fill(Interp *in, const Stmt *s)
{
    const Region *dst = &s->u.fill.dst;
    int64_t o[IR_MAX_RANK], idx[IR_MAX_RANK];
    region_origin(in, dst, o, s->loc);
    double v = eval(in, s->u.fill.value, s->loc);
    int64_t n = ir_region_elems(dst);
    for (int64_t i = 0; i < n; i++)
        if (region_index(in, dst, o, i, idx))
            region_store(in, dst, idx, v);
}

/* Element (i, j) of a 2-D operand window, transposed on request;
 * outside the buffer reads as 0. */
static double operand(Interp *in, const Region *r, const int64_t *o, int64_t i, int64_t j,
                      bool trans)
{
    int64_t idx[2] = {o[0] + (trans ? j : i), o[1] + (trans ? i : j)};
    Mem *m = mem_of(in, r->buf);
    if (idx[0] < 0 || idx[0] >= m->shape[0] || idx[1] < 0 || idx[1] >= m->shape[1])
        return 0;
    return dt_load(r->buf->dtype, m->base, idx[0] * m->stride[0] + idx[1] * m->stride[1]);
}

static void exec_gemm(Interp *in, const Stmt *s)
{
    const Region *a = &s->u.gemm.a, *b = &s->u.gemm.b, *c = &s->u.gemm.c;
    bool ta = s->u.gemm.trans_a, tb = s->u.gemm.trans_b;
    int64_t ao[2], bo[2], co[2];
    region_origin(in, a, ao, s->loc);
    region_origin(in, b, bo, s->loc);
    region_origin(in, c, co, s->loc);
    int64_t M = c->ext[0], N = c->ext[1], K = ta ? a->ext[0] : a->ext[1];
    Mem *cm = mem_of(in, c->buf);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            int64_t ci = co[0] + i, cj = co[1] + j;
            if (ci < 0 || ci >= cm->shape[0] || cj < 0 || cj >= cm->shape[1])
                continue;
            int64_t off = ci * cm->stride[0] + cj * cm->stride[1];
            float acc = s->u.gemm.clear ? 0.0f : (float)dt_load(c->buf->dtype, cm->base, off);
            for (int64_t kk = 0; kk < K; kk++) {
                double bv = s->u.gemm.b_pairs ? operand(in, b, bo, kk / 2, 2 * j + kk % 2, false)
                                              : operand(in, b, bo, kk, j, tb);
                acc += (float)operand(in, a, ao, i, kk, ta) * (float)bv;
            }
            dt_store(c->buf->dtype, cm->base, off, acc);
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

static void exec_reduce(Interp *in, const Stmt *s)
{
    const Region *src = &s->u.reduce.src, *dst = &s->u.reduce.dst;
    int axis = s->u.reduce.axis, rank = src->buf->rank;
    ReduceOp op = s->u.reduce.rop;
    int64_t so[IR_MAX_RANK], dso[IR_MAX_RANK], di[IR_MAX_RANK], si[IR_MAX_RANK];
    region_origin(in, src, so, s->loc);
    region_origin(in, dst, dso, s->loc);
    int64_t n = ir_region_elems(dst);
    for (int64_t i = 0; i < n; i++) {
        if (!region_index(in, dst, dso, i, di))
            continue;
        /* The source row: dst's window index with the axis re-inserted. */
        int64_t rest = i, outer[IR_MAX_RANK];
        for (int d = dst->buf->rank - 1; d >= 0; d--) {
            outer[d] = rest % dst->ext[d];
            rest /= dst->ext[d];
        }
        float acc = reduce_init(op);
        for (int64_t r = 0; r < src->ext[axis]; r++) {
            bool inside = true;
            Mem *m = mem_of(in, src->buf);
            for (int d = 0, o = 0; d < rank; d++) {
                si[d] = so[d] + (d == axis ? r : outer[o++]);
                inside &= si[d] >= 0 && si[d] < m->shape[d];
            }
            if (inside)
                acc = reduce_step(op, acc, (float)region_load(in, src, si));
        }
        if (!s->u.reduce.clear)
            acc = reduce_step(op == RED_ABSMAX ? RED_MAX : op, (float)region_load(in, dst, di), acc);
        region_store(in, dst, di, acc);
    }
}

/* ----------------------------------------------------------- statements */

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
            in->vars[s->u.loop.var->id] = i;
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
    case ST_STORE: {
        int64_t idx[IR_MAX_RANK];
        for (int d = 0; d < s->u.store.buf->rank; d++)
            idx[d] = eval_int(in, s->u.store.idx[d], s->loc);
        double v = eval(in, s->u.store.value, s->loc);
        int64_t off = offset(in, s->u.store.buf, idx, s->loc);
        if (off < 0)
            break;
        void *base = mem_of(in, s->u.store.buf)->base;
        if (s->u.store.atomic) /* blocks run one by one here: a plain add */
            v = f32(f32(dt_load(s->u.store.buf->dtype, base, off)) + f32(v));
        dt_store(s->u.store.buf->dtype, base, off, v);
        break;
    }
    case ST_COPY: exec_copy(in, s, false); break;
    case ST_ATOMIC_ADD: exec_copy(in, s, true); break;
    case ST_FILL: exec_fill(in, s); break;
    case ST_GEMM:
    case ST_MICRO_GEMM: exec_gemm(in, s); break;
    case ST_REDUCE: exec_reduce(in, s); break;
    default:
        diag_error(in->d, s->loc, "interpreter: unsupported statement %s", st_name(s->op));
        in->failed = true;
    }
}

static bool setup_mem(Interp *in, void *const *args)
{
    const Kernel *k = in->k;
    SrcLoc none = {0};
    for (int i = 0; i < k->nbufs; i++) {
        const Buffer *b = k->bufs[i];
        Mem *m = &in->mem[b->id];
        int64_t n = 1;
        for (int d = 0; d < b->rank; d++) {
            if (!ir_eval_int(b->shape[d], in->params, &m->shape[d]) ||
                !ir_eval_int(b->stride[d], in->params, &m->stride[d]))
                return diag_error(in->d, b->loc, "interpreter: cannot evaluate the shape of %s",
                                  b->name);
            n *= m->shape[d];
        }
        if (b->scope == SCOPE_GLOBAL) {
            m->base = args[i];
        } else {
            m->base = calloc(1, dt_storage_bytes(b->dtype, n) + 16);
            if (!m->base)
                return diag_error(in->d, none, "interpreter: out of memory");
        }
    }
    return true;
}

bool ir_interp(const Kernel *k, void *const *args, const int64_t *params, Diag *d)
{
    Interp in = {.k = k, .params = params, .d = d};
    in.vars = calloc((size_t)k->next_id + 1, sizeof *in.vars);
    in.mem = calloc((size_t)k->next_id + 1, sizeof *in.mem);
    bool ok = in.vars && in.mem && setup_mem(&in, args);
    int64_t grid[IR_MAX_GRID] = {1, 1, 1}, nblocks = 1;
    for (int g = 0; ok && g < k->ngrid; g++) {
        ok = ir_eval_int(k->grid[g], params, &grid[g]);
        nblocks *= grid[g];
    }
    for (int64_t blk = 0; ok && blk < nblocks && !in.failed; blk++) {
        int64_t rest = blk;
        for (int g = k->ngrid - 1; g >= 0; g--) {
            in.vars[k->grid_var[g]->id] = rest % grid[g];
            rest /= grid[g];
        }
        exec(&in, k->body);
    }
    ok = ok && !in.failed;
    for (int i = 0; in.mem && i < k->nbufs; i++)
        if (k->bufs[i]->scope != SCOPE_GLOBAL)
            free(in.mem[k->bufs[i]->id].base);
    free(in.vars);
    free(in.mem);
    return ok;
}
