/* mma.c — the layout in which a block's threads hold a tensor-core
 * accumulator (see MmaLayout in ir.h), shared by the passes that assign it,
 * the interpreter that checks it and the back end that issues the mma. */
#include "ir/ir.h"

bool ir_mma_layout(int64_t m, int64_t n, int nthreads, MmaLayout *l)
{
    int warps = nthreads / 32;
    if (nthreads % 32 || warps < 1 || m % 16 || n % 8)
        return false;
    /* the most square warp tile among the grids that divide the pieces */
    int best = 0;
    int64_t best_skew = 0;
    for (int wm = 1; wm <= warps; wm++) {
        int wn = warps / wm;
        if (warps % wm || (m / 16) % wm || (n / 8) % wn)
            continue;
        int64_t tm = m / wm, tn = n / wn, skew = tm > tn ? tm - tn : tn - tm;
        if (!best || skew < best_skew) {
            best = wm;
            best_skew = skew;
        }
    }
    if (!best)
        return false;
    l->m = m;
    l->n = n;
    l->nthreads = nthreads;
    l->wm = best;
    l->wn = warps / best;
    l->mt = (int)(m / best / 16);
    l->nt = (int)(n / l->wn / 8);
    l->slots = 4 * (int64_t)l->mt * l->nt;
    return true;
}

void ir_mma_pos(const MmaLayout *l, int64_t tid, int64_t slot, int64_t *i, int64_t *j)
{
    int64_t warp = tid / 32, lane = tid % 32;
    int64_t c = slot % 4, pnt = (slot / 4) % l->nt, pmt = slot / (4 * l->nt);
    *i = (warp / l->wn) * (l->m / l->wm) + pmt * 16 + lane / 4 + 8 * (c / 2);
    *j = (warp % l->wn) * (l->n / l->wn) + pnt * 8 + (lane % 4) * 2 + c % 2;
}

int64_t ir_buf_span(const Buffer *b)
{
    int64_t span = 1, dim, stride;
    for (int d = 0; d < b->rank; d++) {
        if (!ir_expr_is_const(b->shape[d], &dim) || !ir_expr_is_const(b->stride[d], &stride))
            return -1;
        span += (dim - 1) * stride;
    }
    return span;
}

int ir_mma_k(const TargetInfo *t, DType dt)
{
    if (t->gpu_sm >= 80 && (dt == DT_BF16 || dt == DT_F16))
        return 16;
    if (t->gpu_sm >= 89 && (dt == DT_F8E4M3 || dt == DT_F8E5M2))
        return 32;
    return 0;
}
