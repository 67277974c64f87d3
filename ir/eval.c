/* eval.c — integer expressions over runtime params (shapes, grid sizes). */
#include "ir/ir.h"

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

bool ir_eval_int(const Expr *e, const int64_t *params, int64_t *out)
{
    int64_t a = 0, b = 0;
    switch (e->op) {
    case EX_CONST:
        if (!dt_is_int(e->dtype))
            return false;
        *out = e->imm.i;
        return true;
    case EX_PARAM:
        if (!params)
            return false;
        *out = params[e->param->index];
        return true;
    case EX_ADD: case EX_SUB: case EX_MUL: case EX_DIV: case EX_MOD: case EX_MIN: case EX_MAX:
        if (!ir_eval_int(e->args[0], params, &a) || !ir_eval_int(e->args[1], params, &b))
            return false;
        break;
    case EX_NEG:
        if (!ir_eval_int(e->args[0], params, &a))
            return false;
        *out = -a;
        return true;
    default:
        return false;
    }
    switch (e->op) {
    case EX_ADD: *out = a + b; return true;
    case EX_SUB: *out = a - b; return true;
    case EX_MUL: *out = a * b; return true;
    case EX_DIV: if (!b) return false; *out = floor_div(a, b); return true;
    case EX_MOD: if (!b) return false; *out = a - floor_div(a, b) * b; return true;
    case EX_MIN: *out = a < b ? a : b; return true;
    default: *out = a > b ? a : b; return true;
    }
}

int64_t ir_buf_elems(const Buffer *b, const int64_t *params)
{
    int64_t n = 1, dim;
    for (int d = 0; d < b->rank; d++) {
        if (!ir_eval_int(b->shape[d], params, &dim) || dim < 0)
            return -1;
        n *= dim;
    }
    return n;
}
