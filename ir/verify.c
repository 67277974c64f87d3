/* verify.c — structural and type checks, run after every pass.
 *
 * The frontend reports the user's mistakes with hints; the verifier catches
 * what a buggy pass (or a hand-written .tir) produces, naming the statement's
 * source line and the rule broken. */
#include "ir/ir.h"

#include <stdlib.h>

typedef struct Verifier {
    const Kernel *k;
    Diag *d;
    unsigned char *in_scope; /* by Var.id: defined by an enclosing loop/grid */
    unsigned char *defined;  /* by Var.id: ever defined */
    bool ok;
} Verifier;

static bool fail(Verifier *v, SrcLoc loc, const char *fmt, const char *a, const char *b)
{
    if (v->ok)
        diag_error(v->d, loc, fmt, a, b);
    v->ok = false;
    return false;
}

static bool owns_buffer(const Kernel *k, const Buffer *b)
{
    for (int i = 0; i < k->nbufs; i++)
        if (k->bufs[i] == b)
            return true;
    return false;
}

static void check_expr(Verifier *v, const Expr *e, SrcLoc loc)
{
    if (!v->ok)
        return;
    int want = ex_nargs(e->op);
    if (want >= 0 && e->nargs != want) {
        fail(v, loc, "verify: %s takes a different number of operands%s", ex_name(e->op), "");
        return;
    }
    switch (e->op) {
    case EX_VAR:
        if (e->var->id >= v->k->next_id || !v->in_scope[e->var->id])
            fail(v, loc, "verify: variable %s is used outside the loop that defines it%s",
                 e->var->name, "");
        return;
    case EX_PARAM:
        if (e->param->index >= v->k->nparams || v->k->params[e->param->index] != e->param)
            fail(v, loc, "verify: %s is not a scalar of this kernel%s", e->param->name, "");
        return;
    case EX_LOAD:
        if (!owns_buffer(v->k, e->buf))
            fail(v, loc, "verify: load from %s, which is not a buffer of this kernel%s", e->buf->name, "");
        else if (e->nargs != e->buf->rank)
            fail(v, loc, "verify: load from %s has the wrong number of indices%s", e->buf->name, "");
        for (int i = 0; v->ok && i < e->nargs; i++)
            if (!dt_is_int(e->args[i]->dtype))
                fail(v, loc, "verify: index %s of a load from %s is not an integer", "", e->buf->name);
        break;
    case EX_BAND: case EX_BOR: case EX_BXOR: case EX_SHL: case EX_SHR:
        if (!dt_is_int(e->args[0]->dtype) || !dt_is_int(e->args[1]->dtype))
            fail(v, loc, "verify: bit operation %s needs integer operands%s", ex_name(e->op), "");
        break;
    case EX_BITCAST: {
        DType from = e->args[0]->dtype;
        bool f2i = e->dtype == DT_I32 && dt_is_float(from), i2f = e->dtype == DT_F32 && dt_is_int(from);
        if (!f2i && !i2f)
            fail(v, loc, "verify: bitcast<%s> of a %s value: only f32 <-> i32", dt_name(e->dtype), dt_name(from));
        break;
    }
    case EX_SELECT:
        if (e->args[0]->dtype != DT_BOOL)
            fail(v, loc, "verify: select condition is %s, not bool%s", dt_name(e->args[0]->dtype), "");
        break;
    default:
        break;
    }
    for (int i = 0; i < e->nargs; i++)
        check_expr(v, e->args[i], loc);
}

static void check_int(Verifier *v, const Expr *e, SrcLoc loc, const char *what)
{
    check_expr(v, e, loc);
    if (v->ok && !dt_is_int(e->dtype))
        fail(v, loc, "verify: %s must be an integer, not %s", what, dt_name(e->dtype));
}

static void check_region(Verifier *v, const Region *r, SrcLoc loc, const char *op)
{
    if (!owns_buffer(v->k, r->buf)) {
        fail(v, loc, "verify: %s uses %s, which is not a buffer of this kernel", op, r->buf->name);
        return;
    }
    for (int d = 0; d < r->buf->rank; d++) {
        if (!r->off[d]) {
            fail(v, loc, "verify: %s: region of %s lacks an offset", op, r->buf->name);
            return;
        }
        check_int(v, r->off[d], loc, "a region offset");
        if (r->ext[d] <= 0)
            fail(v, loc, "verify: %s: region of %s has a non-positive extent", op, r->buf->name);
    }
}

static void check_writable(Verifier *v, const Buffer *b, SrcLoc loc)
{
    if (b->scope == SCOPE_GLOBAL && b->dir == ARG_IN)
        fail(v, loc, "verify: write to input argument %s%s", b->name, "");
}

static int64_t squeezed(const Region *r, int64_t *out)
{
    int n = 0;
    for (int d = 0; d < r->buf->rank; d++)
        if (r->ext[d] != 1)
            out[n++] = r->ext[d];
    return n;
}

static void check_stmt(Verifier *v, const Stmt *s);

static void check_gemm(Verifier *v, const Stmt *s)
{
    const Region *a = &s->u.gemm.a, *b = &s->u.gemm.b, *c = &s->u.gemm.c;
    check_region(v, a, s->loc, st_name(s->op));
    check_region(v, b, s->loc, st_name(s->op));
    check_region(v, c, s->loc, st_name(s->op));
    if (!v->ok)
        return;
    if (a->buf->rank != 2 || b->buf->rank != 2 || c->buf->rank != 2) {
        fail(v, s->loc, "verify: %s operands must be 2-D%s", st_name(s->op), "");
        return;
    }
    int64_t m = s->u.gemm.trans_a ? a->ext[1] : a->ext[0], ka = s->u.gemm.trans_a ? a->ext[0] : a->ext[1];
    int64_t kb = s->u.gemm.trans_b ? b->ext[1] : b->ext[0], n = s->u.gemm.trans_b ? b->ext[0] : b->ext[1];
    if (s->u.gemm.b_pairs) { /* [K/2, 2N]: K is even */
        if (s->op != ST_MICRO_GEMM || s->u.gemm.trans_b || b->ext[1] % 2) {
            fail(v, s->loc, "verify: %s: b_pairs needs a micro_gemm with an untransposed [K/2, 2N] b%s",
                 st_name(s->op), "");
            return;
        }
        kb = 2 * b->ext[0];
        n = b->ext[1] / 2;
    }
    if (ka != kb || c->ext[0] != m || c->ext[1] != n)
        fail(v, s->loc, "verify: %s shapes disagree (M, N, K)%s", st_name(s->op), "");
    else if (c->buf->dtype != DT_F32)
        fail(v, s->loc, "verify: %s accumulator %s is not f32", st_name(s->op), c->buf->name);
    check_writable(v, c->buf, s->loc);
}

static void check_reduce(Verifier *v, const Stmt *s)
{
    const Region *src = &s->u.reduce.src, *dst = &s->u.reduce.dst;
    check_region(v, src, s->loc, "reduce");
    check_region(v, dst, s->loc, "reduce");
    if (!v->ok)
        return;
    int axis = s->u.reduce.axis, rank = src->buf->rank;
    if (axis < 0 || axis >= rank) {
        fail(v, s->loc, "verify: reduce axis is out of range%s%s", "", "");
        return;
    }
    bool scalar = rank == 1 && dst->buf->rank == 1 && dst->ext[0] == 1;
    bool ok = scalar || dst->buf->rank == rank - 1;
    for (int d = 0, o = 0; ok && !scalar && d < rank; d++)
        if (d != axis)
            ok = dst->ext[o++] == src->ext[d];
    if (!ok)
        fail(v, s->loc, "verify: reduce destination %s is not the source %s without the axis",
             dst->buf->name, src->buf->name);
    check_writable(v, dst->buf, s->loc);
}

static void check_copy(Verifier *v, const Stmt *s)
{
    const Region *src = &s->u.copy.src, *dst = &s->u.copy.dst;
    check_region(v, src, s->loc, st_name(s->op));
    check_region(v, dst, s->loc, st_name(s->op));
    if (!v->ok)
        return;
    int64_t a[IR_MAX_RANK], b[IR_MAX_RANK];
    int na = (int)squeezed(src, a), nb = (int)squeezed(dst, b);
    bool same = na == nb;
    for (int i = 0; same && i < na; i++)
        same = a[i] == b[i];
    if (!same)
        fail(v, s->loc, "verify: %s: %s and %s windows differ in shape", src->buf->name, dst->buf->name);
    check_writable(v, dst->buf, s->loc);
}

static bool level_allows(const Verifier *v, const Stmt *s)
{
    bool tile_op = s->op == ST_COPY || s->op == ST_FILL || s->op == ST_GEMM ||
                   s->op == ST_REDUCE || s->op == ST_ATOMIC_ADD;
    if (v->k->level == LEVEL_LOOP && tile_op)
        return false;
    if (v->k->level == LEVEL_TILE &&
        (s->op == ST_MICRO_GEMM || (s->op == ST_FOR && s->u.loop.kind == LOOP_VECTOR)))
        return false;
    return true;
}

static void check_for(Verifier *v, const Stmt *s)
{
    Var *var = s->u.loop.var;
    check_int(v, s->u.loop.extent, s->loc, "a loop extent");
    if (!v->ok)
        return;
    if (var->id >= v->k->next_id || v->defined[var->id]) {
        fail(v, s->loc, "verify: loop variable %s is defined twice%s", var->name, "");
        return;
    }
    if (s->u.loop.kind == LOOP_UNROLL && !ir_expr_is_const(s->u.loop.extent, NULL))
        fail(v, s->loc, "verify: unrolled loop over %s needs a constant extent%s", var->name, "");
    if ((s->u.loop.kind == LOOP_VECTOR || s->u.loop.kind == LOOP_PIPELINED) && s->u.loop.arg < 1)
        fail(v, s->loc, "verify: %s loop over %s needs a positive width/stages",
             loop_kind_name(s->u.loop.kind), var->name);
    v->defined[var->id] = v->in_scope[var->id] = 1;
    check_stmt(v, s->u.loop.body);
    v->in_scope[var->id] = 0;
}

static void check_stmt(Verifier *v, const Stmt *s)
{
    if (!v->ok)
        return;
    if (!level_allows(v, s)) {
        fail(v, s->loc, "verify: %s is not allowed in %s IR", st_name(s->op),
             v->k->level == LEVEL_TILE ? "tile" : "loop");
        return;
    }
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            check_stmt(v, s->u.seq.items[i]);
        break;
    case ST_FOR:
        check_for(v, s);
        break;
    case ST_IF:
        check_expr(v, s->u.if_.cond, s->loc);
        if (v->ok && s->u.if_.cond->dtype != DT_BOOL)
            fail(v, s->loc, "verify: if condition is %s, not bool%s", dt_name(s->u.if_.cond->dtype), "");
        check_stmt(v, s->u.if_.then_);
        if (s->u.if_.else_)
            check_stmt(v, s->u.if_.else_);
        break;
    case ST_STORE: {
        const Buffer *b = s->u.store.buf;
        if (!owns_buffer(v->k, b)) {
            fail(v, s->loc, "verify: store to %s, which is not a buffer of this kernel%s", b->name, "");
            break;
        }
        for (int i = 0; i < b->rank; i++)
            check_int(v, s->u.store.idx[i], s->loc, "a store index");
        check_expr(v, s->u.store.value, s->loc);
        check_writable(v, b, s->loc);
        break;
    }
    case ST_COPY:
    case ST_ATOMIC_ADD:
        check_copy(v, s);
        break;
    case ST_FILL:
        check_region(v, &s->u.fill.dst, s->loc, "fill");
        check_expr(v, s->u.fill.value, s->loc);
        check_writable(v, s->u.fill.dst.buf, s->loc);
        break;
    case ST_GEMM:
    case ST_MICRO_GEMM:
        check_gemm(v, s);
        break;
    case ST_REDUCE:
        check_reduce(v, s);
        break;
    default:
        fail(v, s->loc, "verify: unknown statement%s%s", "", "");
    }
}

bool ir_verify(const Kernel *k, Diag *d)
{
    Verifier v = {.k = k, .d = d, .ok = true};
    v.in_scope = calloc((size_t)k->next_id + 1, 1);
    v.defined = calloc((size_t)k->next_id + 1, 1);
    SrcLoc loc = k->loc;
    if (!v.in_scope || !v.defined)
        return diag_error(d, loc, "verify: out of memory");
    if (k->ngrid < 1 || k->ngrid > IR_MAX_GRID)
        fail(&v, loc, "verify: kernel %s has no block grid%s", k->name, "");
    for (int i = 0; v.ok && i < k->nbufs; i++) {
        const Buffer *b = k->bufs[i];
        if ((b->scope == SCOPE_GLOBAL) != (i < k->nargs))
            fail(&v, b->loc, "verify: %s: arguments must come first in the buffer list%s", b->name, "");
        for (int r = 0; v.ok && r < b->rank; r++) {
            int64_t n;
            if (b->scope != SCOPE_GLOBAL && (!ir_expr_is_const(b->shape[r], &n) || n < 1))
                fail(&v, b->loc, "verify: scratch buffer %s needs a constant positive shape%s", b->name, "");
            else
                check_int(&v, b->shape[r], b->loc, "a shape");
        }
    }
    for (int g = 0; v.ok && g < k->ngrid; g++) {
        check_int(&v, k->grid[g], loc, "a grid extent");
        Var *gv = k->grid_var[g];
        if (gv->id >= k->next_id || v.defined[gv->id])
            fail(&v, loc, "verify: grid variable %s is defined twice%s", gv->name, "");
        else
            v.defined[gv->id] = v.in_scope[gv->id] = 1;
    }
    if (v.ok)
        check_stmt(&v, k->body);
    free(v.in_scope);
    free(v.defined);
    return v.ok;
}
