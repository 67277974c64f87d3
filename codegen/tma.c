/* tma.c — the tensor maps a GPU kernel's TMA loads use, and where they go
 * in its parameter list (see codegen.h): what ptx.c declares and what
 * gpu_run.c builds at launch, from one description.  No LLVM, no driver. */
#include "codegen/codegen.h"

#include <string.h>

static bool same_map(const CgTmaMap *m, int arg, int rank, const int64_t *box, int swizzle)
{
    return m->arg == arg && m->rank == rank && m->swizzle == swizzle &&
           !memcmp(m->box, box, (size_t)rank * sizeof *box);
}

static int arg_index(const Kernel *k, const Buffer *b)
{
    for (int i = 0; i < k->nargs; i++)
        if (k->bufs[i] == b)
            return i;
    return -1;
}

int cg_tma_map_of(const Kernel *k, const CgTmaMap *maps, int n, const Stmt *s)
{
    int64_t box[IR_MAX_RANK];
    ir_tma_box(s, box);
    int arg = arg_index(k, s->u.mbar.src.buf);
    for (int i = 0; i < n; i++)
        if (same_map(&maps[i], arg, s->u.mbar.src.buf->rank, box, s->u.mbar.swizzle))
            return i;
    return -1;
}

static void collect(const Kernel *k, const Stmt *s, CgTmaMap *maps, int *n)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            collect(k, s->u.seq.items[i], maps, n);
        break;
    case ST_FOR: collect(k, s->u.loop.body, maps, n); break;
    case ST_IF:
        collect(k, s->u.if_.then_, maps, n);
        if (s->u.if_.else_)
            collect(k, s->u.if_.else_, maps, n);
        break;
    case ST_TMA_LOAD:
        if (cg_tma_map_of(k, maps, *n, s) < 0 && *n < CG_MAX_TMAPS) {
            CgTmaMap *m = &maps[(*n)++];
            *m = (CgTmaMap){.arg = arg_index(k, s->u.mbar.src.buf), .rank = s->u.mbar.src.buf->rank,
                            .swizzle = s->u.mbar.swizzle};
            ir_tma_box(s, m->box);
        }
        break;
    default: break;
    }
}

int cg_tma_maps(const Kernel *k, CgTmaMap *maps)
{
    int n = 0;
    collect(k, k->body, maps, &n);
    return n;
}

int cg_gpu_param_slot(const Kernel *k, int nmaps, CgParamKind kind, int i)
{
    switch (kind) {
    case CG_PARAM_ARG: return i;
    case CG_PARAM_TMAP: return k->nargs + i;
    default: return k->nargs + nmaps + i;
    }
}

bool cg_tma_args(const Kernel *k, const CgTmaMap *m, const int64_t *params, TmapArgs *out, Diag *d)
{
    const Buffer *g = k->bufs[m->arg];
    int64_t shape[IR_MAX_RANK], stride[IR_MAX_RANK];
    for (int i = 0; i < g->rank; i++)
        if (!ir_eval_int(g->shape[i], params, &shape[i]) || !ir_eval_int(g->stride[i], params, &stride[i]))
            return diag_error(d, g->loc, "kernel %s: cannot evaluate the shape of %s", k->name, g->name);
    Diag why = {0};
    if (!tmap_args(g->dtype, g->rank, shape, stride, m->box, m->swizzle, out, &why))
        return diag_error(d, g->loc, "kernel %s: argument %s cannot be loaded by TMA at this shape: %s", k->name,
                          g->name, why.msg);
    return true;
}
