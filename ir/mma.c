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
    l->unit = 1;
    l->wg_n = l->nq = 0;
    return true;
}

/* The widest wgmma (n a multiple of 8 up to 256) that divides cols. */
static int wgmma_n(int64_t cols)
{
    for (int n = 256; n >= 8; n -= 8)
        if (cols % n == 0)
            return n;
    return 0;
}

/* Warpgroups split m first (64-row pieces), then n: B is then shared by
 * the warpgroups of a column and each wgmma is as wide as the tile allows
 * (fewer, longer instructions). */
bool ir_wgmma_layout(int64_t m, int64_t n, int nthreads, MmaLayout *l)
{
    int groups = nthreads / 128;
    if (nthreads % 128 || groups < 1 || m % 64 || n % 8)
        return false;
    for (int wm = groups; wm >= 1; wm--) {
        int wn = groups / wm;
        if (groups % wm || (m / 64) % wm || n % wn || (n / wn) % 8)
            continue;
        l->m = m;
        l->n = n;
        l->nthreads = nthreads;
        l->wm = wm;
        l->wn = wn;
        l->mt = (int)(m / wm / 64);
        l->nt = (int)(n / wn / 8);
        l->slots = 4 * (int64_t)l->mt * l->nt;
        l->unit = 4;
        l->wg_n = wgmma_n(n / wn);
        l->nq = (int)(n / wn / l->wg_n);
        return true;
    }
    return false;
}

void ir_mma_pos(const MmaLayout *l, int64_t tid, int64_t slot, int64_t *i, int64_t *j)
{
    int64_t warp = tid / 32, lane = tid % 32, u = warp / l->unit;
    int64_t c = slot % 4, pnt = (slot / 4) % l->nt, pmt = slot / (4 * l->nt);
    *i = (u / l->wn) * (l->m / l->wm) + pmt * 16 * l->unit + 16 * (warp % l->unit) + lane / 4 + 8 * (c / 2);
    *j = (u % l->wn) * (l->n / l->wn) + pnt * 8 + (lane % 4) * 2 + c % 2;
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

int64_t ir_shared_offset(const Kernel *k, const Buffer *b)
{
    int64_t off = 0;
    for (int i = k->nargs; i < k->nbufs; i++) {
        const Buffer *x = k->bufs[i];
        if (x->scope != SCOPE_SHARED)
            continue;
        int64_t al = x->align > 16 ? x->align : 16;
        off = (off + al - 1) / al * al;
        if (x == b)
            return off;
        off += (int64_t)dt_storage_bytes(x->dtype, ir_buf_span(x));
    }
    return b ? -1 : (off + 15) / 16 * 16;
}

int64_t ir_shared_bytes(const Kernel *k) { return ir_shared_offset(k, NULL); }

int ir_mma_k(const TargetInfo *t, DType dt)
{
    if (t->gpu_sm >= 80 && (dt == DT_BF16 || dt == DT_F16))
        return 16;
    if (t->gpu_sm >= 89 && (dt == DT_F8E4M3 || dt == DT_F8E5M2))
        return 32;
    return 0;
}
