/* build.c — constructors for every IR node, and the name tables.
 *
 * Typing happens here, once: the frontend and the parser both build through
 * these functions, so a parsed kernel has exactly the types and folded
 * constants of the kernel that was printed. */
#include "ir/ir.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------ name tables */

static const struct { const char *name; int nargs; } expr_info[] = {
#define X(e, t, n) {t, n},
    IR_EXPR_OPS(X)
#undef X
};

static const char *const stmt_names[] = {
#define X(e, t) t,
    IR_STMT_OPS(X)
#undef X
};

const char *ex_name(ExprOp op) { return op < EX_COUNT ? expr_info[op].name : "?"; }
int ex_nargs(ExprOp op) { return op < EX_COUNT ? expr_info[op].nargs : 0; }
const char *st_name(StmtOp op) { return op < ST_COUNT ? stmt_names[op] : "?"; }

const char *scope_name(Scope s)
{
    static const char *const names[] = {"global", "shared", "fragment", "local"};
    return s <= SCOPE_LOCAL ? names[s] : "?";
}

const char *loop_kind_name(LoopKind k)
{
    static const char *const names[] = {"serial", "parallel", "unroll", "pipelined", "vector"};
    return k <= LOOP_VECTOR ? names[k] : "?";
}

const char *reduce_op_name(ReduceOp r)
{
    static const char *const names[] = {"sum", "max", "min", "absmax"};
    return r <= RED_ABSMAX ? names[r] : "?";
}

/* ---------------------------------------------------------------- kernel */

Kernel *ir_kernel_new(const char *name, SrcLoc loc)
{
    Arena *a = arena_new();
    Kernel *k = arena_alloc(a, sizeof *k);
    k->arena = a;
    k->name = arena_strdup(a, name);
    k->loc = loc;
    if (loc.file)
        k->loc.file = arena_strdup(a, loc.file);
    k->level = LEVEL_TILE;
    k->body = ir_seq(k, loc);
    return k;
}

void ir_kernel_free(Kernel *k)
{
    if (k)
        arena_free(k->arena);
}

/* Grow an arena array by one slot (arrays here stay small). */
static void *grow(Arena *a, void *old, int n, size_t elem)
{
    void *p = arena_alloc(a, (size_t)(n + 1) * elem);
    if (n)
        memcpy(p, old, (size_t)n * elem);
    return p;
}

KParam *ir_kparam_find(const Kernel *k, const char *name)
{
    for (int i = 0; i < k->nkparams; i++)
        if (!strcmp(k->kparams[i].name, name))
            return &k->kparams[i];
    return NULL;
}

KParam *ir_kparam_add(Kernel *k, const char *name, KParamKind kind, const char *value)
{
    k->kparams = grow(k->arena, k->kparams, k->nkparams, sizeof *k->kparams);
    KParam *p = &k->kparams[k->nkparams++];
    p->name = arena_strdup(k->arena, name);
    p->kind = kind;
    p->value = value ? arena_strdup(k->arena, value) : NULL;
    return p;
}

void ir_kparam_cand(Kernel *k, KParam *p, const char *cand)
{
    p->cands = grow(k->arena, p->cands, p->ncands, sizeof *p->cands);
    p->cands[p->ncands++] = arena_strdup(k->arena, cand);
}

Param *ir_param_add(Kernel *k, const char *name, DType dtype)
{
    Param *p = arena_alloc(k->arena, sizeof *p);
    p->name = arena_strdup(k->arena, name);
    p->dtype = dtype;
    p->index = k->nparams;
    k->params = grow(k->arena, k->params, k->nparams, sizeof *k->params);
    k->params[k->nparams++] = p;
    return p;
}

Param *ir_param_find(const Kernel *k, const char *name)
{
    for (int i = 0; i < k->nparams; i++)
        if (!strcmp(k->params[i]->name, name))
            return k->params[i];
    return NULL;
}

static Buffer *buf_new(Kernel *k, const char *name, Scope scope, DType dt, int rank, SrcLoc loc)
{
    Buffer *b = arena_alloc(k->arena, sizeof *b);
    b->name = arena_strdup(k->arena, name);
    b->id = k->next_id++;
    b->scope = scope;
    b->dtype = dt;
    b->rank = rank;
    b->loc = loc;
    return b;
}

/* Row-major strides: stride[r-1] = 1, stride[d] = stride[d+1] * shape[d+1]. */
static void set_row_major(Kernel *k, Buffer *b)
{
    Expr *s = ir_const_i(k, 1);
    for (int d = b->rank - 1; d >= 0; d--) {
        b->stride[d] = s;
        s = ir_binary(k, EX_MUL, s, b->shape[d]);
    }
}

Buffer *ir_arg_add(Kernel *k, const char *name, DType dt, ArgDir dir, int rank,
                   Expr *const *shape, SrcLoc loc)
{
    Buffer *b = buf_new(k, name, SCOPE_GLOBAL, dt, rank, loc);
    b->dir = dir;
    for (int d = 0; d < rank; d++)
        b->shape[d] = shape[d];
    set_row_major(k, b);
    /* Arguments come first in bufs: insert before the first scratch buffer. */
    k->bufs = grow(k->arena, k->bufs, k->nbufs, sizeof *k->bufs);
    memmove(&k->bufs[k->nargs + 1], &k->bufs[k->nargs],
            (size_t)(k->nbufs - k->nargs) * sizeof *k->bufs);
    k->bufs[k->nargs++] = b;
    k->nbufs++;
    return b;
}

Buffer *ir_buf_add(Kernel *k, const char *name, Scope scope, DType dt, int rank,
                   const int64_t *shape, SrcLoc loc)
{
    Buffer *b = buf_new(k, name, scope, dt, rank, loc);
    for (int d = 0; d < rank; d++)
        b->shape[d] = ir_const_i(k, shape[d]);
    set_row_major(k, b);
    k->bufs = grow(k->arena, k->bufs, k->nbufs, sizeof *k->bufs);
    k->bufs[k->nbufs++] = b;
    return b;
}

Buffer *ir_buf_find(const Kernel *k, const char *name)
{
    for (int i = 0; i < k->nbufs; i++)
        if (!strcmp(k->bufs[i]->name, name))
            return k->bufs[i];
    return NULL;
}

Var *ir_var_find(const Kernel *k, const char *name)
{
    for (int i = 0; i < k->nvars; i++)
        if (!strcmp(k->vars[i]->name, name))
            return k->vars[i];
    return NULL;
}

Var *ir_var_new(Kernel *k, const char *name)
{
    Var *v = arena_alloc(k->arena, sizeof *v);
    v->id = k->next_id++;
    v->name = arena_strdup(k->arena, name);
    for (int n = 1; ir_var_find(k, v->name); n++)
        v->name = arena_printf(k->arena, "%s_%d", name, n);
    k->vars = grow(k->arena, k->vars, k->nvars, sizeof *k->vars);
    k->vars[k->nvars++] = v;
    return v;
}

void ir_set_grid(Kernel *k, int n, Var *const *vars, Expr *const *extents)
{
    k->ngrid = n;
    for (int i = 0; i < n; i++) {
        k->grid_var[i] = vars[i];
        k->grid[i] = extents[i];
    }
}

void ir_set_threads(Kernel *k, int n, Var *v)
{
    k->nthreads = n;
    k->thread_var = v;
}

/* ------------------------------------------------------------ expressions */

static Expr *expr_new(Kernel *k, ExprOp op, DType dt, int nargs)
{
    Expr *e = arena_alloc(k->arena, sizeof *e);
    e->op = op;
    e->dtype = dt;
    e->nargs = nargs;
    if (nargs)
        e->args = arena_alloc(k->arena, (size_t)nargs * sizeof *e->args);
    return e;
}

Expr *ir_const_i(Kernel *k, int64_t v)
{
    Expr *e = expr_new(k, EX_CONST, DT_I64, 0);
    e->imm.i = v;
    return e;
}

Expr *ir_const_f(Kernel *k, double v)
{
    Expr *e = expr_new(k, EX_CONST, DT_F32, 0);
    e->imm.f = (float)v; /* F32 constants hold exactly an f32 value */
    return e;
}

Expr *ir_const_bool(Kernel *k, bool v)
{
    Expr *e = expr_new(k, EX_CONST, DT_BOOL, 0);
    e->imm.i = v;
    return e;
}

Expr *ir_var(Kernel *k, Var *v)
{
    Expr *e = expr_new(k, EX_VAR, DT_I64, 0);
    e->var = v;
    return e;
}

Expr *ir_param(Kernel *k, Param *p)
{
    Expr *e = expr_new(k, EX_PARAM, p->dtype, 0);
    e->param = p;
    return e;
}

Expr *ir_load(Kernel *k, Buffer *b, Expr *const *idx)
{
    Expr *e = expr_new(k, EX_LOAD, b->dtype, b->rank);
    e->buf = b;
    for (int d = 0; d < b->rank; d++)
        e->args[d] = idx[d];
    return e;
}

bool ir_expr_is_const(const Expr *e, int64_t *out)
{
    if (e->op != EX_CONST || !dt_is_int(e->dtype))
        return false;
    if (out)
        *out = e->imm.i;
    return true;
}

bool ir_expr_equal(const Expr *a, const Expr *b)
{
    if (a == b)
        return true;
    if (a->op != b->op || a->dtype != b->dtype || a->nargs != b->nargs)
        return false;
    switch (a->op) {
    case EX_CONST:
        return dt_is_float(a->dtype) ? a->imm.f == b->imm.f : a->imm.i == b->imm.i;
    case EX_VAR:
        return a->var == b->var;
    case EX_PARAM:
        return a->param == b->param;
    case EX_LOAD:
        if (a->buf != b->buf)
            return false;
        break;
    default:
        break;
    }
    for (int i = 0; i < a->nargs; i++)
        if (!ir_expr_equal(a->args[i], b->args[i]))
            return false;
    return true;
}

/* The arithmetic type of a and b: f32 if either is a float, else i64. */
static DType arith_type(DType a, DType b)
{
    return dt_is_float(a) || dt_is_float(b) ? DT_F32 : DT_I64;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

static int64_t floor_mod(int64_t a, int64_t b) { return a - floor_div(a, b) * b; }

/* Fold integer constants; identities that keep index math readable. */
static Expr *fold_int(Kernel *k, ExprOp op, Expr *a, Expr *b)
{
    int64_t x, y;
    bool ca = ir_expr_is_const(a, &x), cb = ir_expr_is_const(b, &y);
    if (ca && cb) {
        switch (op) {
        case EX_ADD: return ir_const_i(k, x + y);
        case EX_SUB: return ir_const_i(k, x - y);
        case EX_MUL: return ir_const_i(k, x * y);
        case EX_DIV: return y ? ir_const_i(k, floor_div(x, y)) : NULL;
        case EX_MOD: return y ? ir_const_i(k, floor_mod(x, y)) : NULL;
        case EX_MIN: return ir_const_i(k, x < y ? x : y);
        case EX_MAX: return ir_const_i(k, x > y ? x : y);
        case EX_BAND: return ir_const_i(k, x & y);
        case EX_BOR: return ir_const_i(k, x | y);
        case EX_BXOR: return ir_const_i(k, x ^ y);
        case EX_SHL: return y >= 0 && y < 64 ? ir_const_i(k, (int64_t)((uint64_t)x << y)) : NULL;
        case EX_SHR: return y >= 0 && y < 64 ? ir_const_i(k, x >> y) : NULL;
        default: return NULL;
        }
    }
    if (op == EX_ADD && ca && x == 0) return b;
    if ((op == EX_ADD || op == EX_SUB) && cb && y == 0) return a;
    if (op == EX_MUL && ca && x == 1) return b;
    if ((op == EX_MUL || op == EX_DIV) && cb && y == 1) return a;
    if (op == EX_MUL && ((ca && x == 0) || (cb && y == 0))) return ir_const_i(k, 0);
    return NULL;
}

static bool is_bool_const(const Expr *e, bool *v)
{
    if (e->op != EX_CONST || e->dtype != DT_BOOL)
        return false;
    *v = e->imm.i != 0;
    return true;
}

/* Comparisons of integer constants, and and/or with a constant side. */
static Expr *fold_bool(Kernel *k, ExprOp op, Expr *a, Expr *b)
{
    int64_t x, y;
    if (ir_expr_is_const(a, &x) && ir_expr_is_const(b, &y)) {
        switch (op) {
        case EX_LT: return ir_const_bool(k, x < y);
        case EX_LE: return ir_const_bool(k, x <= y);
        case EX_EQ: return ir_const_bool(k, x == y);
        case EX_NE: return ir_const_bool(k, x != y);
        default: break;
        }
    }
    bool c;
    if (op == EX_AND || op == EX_OR) {
        bool is_and = op == EX_AND;
        if (is_bool_const(a, &c))
            return c == is_and ? b : ir_const_bool(k, c);
        if (is_bool_const(b, &c))
            return c == is_and ? a : ir_const_bool(k, c);
    }
    return NULL;
}

Expr *ir_binary(Kernel *k, ExprOp op, Expr *a, Expr *b)
{
    DType t;
    switch (op) {
    case EX_LT: case EX_LE: case EX_EQ: case EX_NE:
    case EX_AND: case EX_OR: {
        Expr *f = fold_bool(k, op, a, b);
        if (f)
            return f;
        t = DT_BOOL;
        break;
    }
    default:
        t = arith_type(a->dtype, b->dtype);
        if (t == DT_I64) {
            Expr *f = fold_int(k, op, a, b);
            if (f)
                return f;
        }
        break;
    }
    Expr *e = expr_new(k, op, t, 2);
    e->args[0] = a;
    e->args[1] = b;
    return e;
}

Expr *ir_unary(Kernel *k, ExprOp op, Expr *a)
{
    DType t;
    int64_t x;
    switch (op) {
    case EX_NOT:
        t = DT_BOOL;
        break;
    case EX_NEG:
        if (ir_expr_is_const(a, &x))
            return ir_const_i(k, -x);
        t = dt_is_float(a->dtype) ? DT_F32 : DT_I64;
        break;
    case EX_ABS:
        if (ir_expr_is_const(a, &x))
            return ir_const_i(k, x < 0 ? -x : x);
        t = dt_is_float(a->dtype) ? DT_F32 : DT_I64;
        break;
    default: /* exp, log, sqrt, ...: f32 math */
        t = DT_F32;
        break;
    }
    Expr *e = expr_new(k, op, t, 1);
    e->args[0] = a;
    return e;
}

Expr *ir_select(Kernel *k, Expr *c, Expr *a, Expr *b)
{
    Expr *e = expr_new(k, EX_SELECT, arith_type(a->dtype, b->dtype), 3);
    if (a->dtype == DT_BOOL && b->dtype == DT_BOOL)
        e->dtype = DT_BOOL;
    e->args[0] = c;
    e->args[1] = a;
    e->args[2] = b;
    return e;
}

Expr *ir_bitcast(Kernel *k, DType to, Expr *a)
{
    Expr *e = expr_new(k, EX_BITCAST, to, 1);
    e->args[0] = a;
    return e;
}

Expr *ir_cast(Kernel *k, DType to, Expr *a)
{
    /* Rounding a value to `to` twice is rounding it once, also through an
     * exact f32 in between (what forwarding a stored bf16 value makes). */
    if (dt_is_float(to) && a->op == EX_CAST && a->dtype == to)
        return a;
    if (dt_is_float(to) && a->op == EX_CAST && a->dtype == DT_F32 && a->args[0]->op == EX_CAST &&
        a->args[0]->dtype == to && dt_is_float(a->args[0]->args[0]->dtype))
        return a->args[0];
    Expr *e = expr_new(k, EX_CAST, to, 1);
    e->args[0] = a;
    return e;
}

/* ------------------------------------------------------------- statements */

static Stmt *stmt_new(Kernel *k, StmtOp op, SrcLoc loc)
{
    Stmt *s = arena_alloc(k->arena, sizeof *s);
    s->op = op;
    s->loc = loc;
    return s;
}

Stmt *ir_seq(Kernel *k, SrcLoc loc) { return stmt_new(k, ST_SEQ, loc); }

void ir_seq_push(Kernel *k, Stmt *seq, Stmt *s)
{
    if (seq->u.seq.n == seq->u.seq.cap) {
        int cap = seq->u.seq.cap ? 2 * seq->u.seq.cap : 8;
        Stmt **items = arena_alloc(k->arena, (size_t)cap * sizeof *items);
        if (seq->u.seq.n)
            memcpy(items, seq->u.seq.items, (size_t)seq->u.seq.n * sizeof *items);
        seq->u.seq.items = items;
        seq->u.seq.cap = cap;
    }
    seq->u.seq.items[seq->u.seq.n++] = s;
}

Stmt *ir_for(Kernel *k, Var *v, Expr *extent, LoopKind kind, int arg, Stmt *body, SrcLoc loc)
{
    Stmt *s = stmt_new(k, ST_FOR, loc);
    s->u.loop.var = v;
    s->u.loop.extent = extent;
    s->u.loop.kind = kind;
    s->u.loop.arg = arg;
    s->u.loop.body = body;
    return s;
}

Stmt *ir_if(Kernel *k, Expr *cond, Stmt *then_, Stmt *else_, SrcLoc loc)
{
    Stmt *s = stmt_new(k, ST_IF, loc);
    s->u.if_.cond = cond;
    s->u.if_.then_ = then_;
    s->u.if_.else_ = else_;
    return s;
}

Stmt *ir_once(Kernel *k, Expr *key, Stmt *body, SrcLoc loc)
{
    Stmt *s = stmt_new(k, ST_ONCE, loc);
    s->u.once.key = key;
    s->u.once.body = body;
    return s;
}

Stmt *ir_store(Kernel *k, Buffer *b, Expr *const *idx, Expr *value, SrcLoc loc)
{
    Stmt *s = stmt_new(k, ST_STORE, loc);
    s->u.store.buf = b;
    s->u.store.idx = arena_alloc(k->arena, (size_t)(b->rank ? b->rank : 1) * sizeof(Expr *));
    for (int d = 0; d < b->rank; d++)
        s->u.store.idx[d] = idx[d];
    s->u.store.value = value;
    return s;
}

Stmt *ir_prefetch(Kernel *k, Buffer *b, Expr *const *idx, SrcLoc loc)
{
    Stmt *s = ir_store(k, b, idx, NULL, loc);
    s->op = ST_PREFETCH;
    return s;
}

Stmt *ir_copy(Kernel *k, Region src, Region dst, SrcLoc loc)
{
    Stmt *s = stmt_new(k, ST_COPY, loc);
    s->u.copy.src = src;
    s->u.copy.dst = dst;
    return s;
}

Stmt *ir_atomic_add(Kernel *k, Region src, Region dst, SrcLoc loc)
{
    Stmt *s = ir_copy(k, src, dst, loc);
    s->op = ST_ATOMIC_ADD;
    return s;
}

Stmt *ir_barrier(Kernel *k, SrcLoc loc) { return stmt_new(k, ST_BARRIER, loc); }
Stmt *ir_async_commit(Kernel *k, SrcLoc loc) { return stmt_new(k, ST_ASYNC_COMMIT, loc); }

Stmt *ir_async_wait(Kernel *k, int pending, SrcLoc loc)
{
    Stmt *s = stmt_new(k, ST_ASYNC_WAIT, loc);
    s->u.wait.pending = pending;
    return s;
}

Stmt *ir_wgmma_wait(Kernel *k, int pending, SrcLoc loc)
{
    Stmt *s = stmt_new(k, ST_WGMMA_WAIT, loc);
    s->u.wait.pending = pending;
    return s;
}

static Stmt *mbar_stmt(Kernel *k, StmtOp op, Buffer *bar, Expr *slot, Expr *arg, SrcLoc loc)
{
    Stmt *s = stmt_new(k, op, loc);
    s->u.mbar.bar = bar;
    s->u.mbar.slot = slot;
    s->u.mbar.arg = arg;
    return s;
}

Stmt *ir_mbar_init(Kernel *k, Buffer *bar, Expr *slot, int64_t count, SrcLoc loc)
{
    return mbar_stmt(k, ST_MBAR_INIT, bar, slot, ir_const_i(k, count), loc);
}

Stmt *ir_mbar_expect(Kernel *k, Buffer *bar, Expr *slot, int64_t bytes, SrcLoc loc)
{
    return mbar_stmt(k, ST_MBAR_EXPECT, bar, slot, ir_const_i(k, bytes), loc);
}

Stmt *ir_mbar_wait(Kernel *k, Buffer *bar, Expr *slot, Expr *parity, SrcLoc loc)
{
    return mbar_stmt(k, ST_MBAR_WAIT, bar, slot, parity, loc);
}

Stmt *ir_tma_load(Kernel *k, Region src, Region dst, Buffer *bar, Expr *slot, int swizzle, SrcLoc loc)
{
    Stmt *s = mbar_stmt(k, ST_TMA_LOAD, bar, slot, NULL, loc);
    s->u.mbar.src = src;
    s->u.mbar.dst = dst;
    s->u.mbar.swizzle = swizzle;
    return s;
}

int64_t ir_tma_box(const Stmt *s, int64_t *box)
{
    const Region *r = &s->u.mbar.dst;
    int rank = r->buf->rank;
    for (int d = 0; d < rank; d++)
        box[d] = r->ext[d];
    int W = s->u.mbar.swizzle;
    int64_t row = (int64_t)dt_storage_bytes(r->buf->dtype, r->ext[rank - 1]);
    if (!W || row <= W)
        return 1;
    box[rank - 1] = W / (dt_bits(r->buf->dtype) / 8);
    return row / W;
}

int64_t ir_swizzle_byte(int64_t b, int W)
{
    return W ? b ^ (((b >> 7) & (W / 16 - 1)) << 4) : b;
}

Stmt *ir_fill(Kernel *k, Region dst, Expr *value, SrcLoc loc)
{
    Stmt *s = stmt_new(k, ST_FILL, loc);
    s->u.fill.dst = dst;
    s->u.fill.value = value;
    return s;
}

Stmt *ir_gemm(Kernel *k, Region a, Region b, Region c, bool trans_a, bool trans_b,
              bool clear, SrcLoc loc)
{
    Stmt *s = stmt_new(k, ST_GEMM, loc);
    s->u.gemm.a = a;
    s->u.gemm.b = b;
    s->u.gemm.c = c;
    s->u.gemm.trans_a = trans_a;
    s->u.gemm.trans_b = trans_b;
    s->u.gemm.clear = clear;
    return s;
}

Stmt *ir_micro_gemm(Kernel *k, Region a, Region b, Region c, bool trans_a, bool trans_b,
                    bool clear, SrcLoc loc)
{
    Stmt *s = ir_gemm(k, a, b, c, trans_a, trans_b, clear, loc);
    s->op = ST_MICRO_GEMM;
    return s;
}

Stmt *ir_reduce(Kernel *k, Region src, Region dst, int axis, ReduceOp rop, bool clear,
                SrcLoc loc)
{
    Stmt *s = stmt_new(k, ST_REDUCE, loc);
    s->u.reduce.src = src;
    s->u.reduce.dst = dst;
    s->u.reduce.axis = axis;
    s->u.reduce.rop = rop;
    s->u.reduce.clear = clear;
    return s;
}

Region ir_region_whole(Kernel *k, Buffer *b)
{
    Region r = {.buf = b};
    for (int d = 0; d < b->rank; d++) {
        r.off[d] = ir_const_i(k, 0);
        int64_t n = 0;
        ir_expr_is_const(b->shape[d], &n);
        r.ext[d] = n; /* 0 for a dyn global: callers give explicit extents */
    }
    return r;
}

bool ir_region_is_whole(const Region *r)
{
    for (int d = 0; d < r->buf->rank; d++) {
        int64_t off, dim;
        if (!ir_expr_is_const(r->off[d], &off) || off || !ir_expr_is_const(r->buf->shape[d], &dim) ||
            dim != r->ext[d])
            return false;
    }
    return true;
}

int64_t ir_region_elems(const Region *r)
{
    int64_t n = 1;
    for (int d = 0; d < r->buf->rank; d++)
        n *= r->ext[d];
    return n;
}
