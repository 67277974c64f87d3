/* gpu_run.c — running a GPU-lowered kernel on the device: PTX from
 * cg_emit_ptx, arguments copied in and out, launched with the ABI of ptx.c.
 * The CUDA driver is optional: without it this fails with a clear message
 * and nothing else in tilec changes. */
#include "codegen/codegen.h"
#include "passes/passes.h"
#include "runtime/cuda.h"

#include <stdlib.h>

static bool grid_blocks(const Kernel *k, const int64_t *params, int64_t *nblocks, Diag *d)
{
    *nblocks = 1;
    for (int g = 0; g < k->ngrid; g++) {
        int64_t n;
        if (!ir_eval_int(k->grid[g], params, &n) || n < 0)
            return diag_error(d, k->loc, "kernel %s: cannot evaluate grid dimension %d", k->name, g);
        *nblocks *= n;
    }
    if (*nblocks > 0x7fffffff)
        return diag_error(d, k->loc, "kernel %s: %lld blocks, more than a launch takes (2^31 - 1)",
                          k->name, (long long)*nblocks);
    return true;
}

bool cg_gpu_run(const Kernel *k, const TargetInfo *t, const CgGpuArgs *a, int reps, double *median_ms,
                Diag *d)
{
    int64_t nblocks;
    if (!grid_blocks(k, a->params, &nblocks, d))
        return false;
    Diag why = {0};
    CuDevice *dev = cu_open(&why);
    if (!dev) {
        diag_error(d, k->loc, "kernel %s cannot run on %s: %s", k->name, t->name, why.msg);
        diag_hint(d, "--simt runs the GPU lowering in the interpreter; compile --emit ptx needs no GPU");
        return false;
    }
    if (cu_sm_version(dev) < t->gpu_sm) {
        diag_error(d, k->loc, "kernel %s was compiled for %s, but the GPU (%s) is sm_%d", k->name,
                   t->name, cu_device_name(dev), cu_sm_version(dev));
        cu_close(dev);
        return false;
    }
    bool ok = false;
    char *ptx = cg_emit_ptx(k, t, d);
    size_t smem = (size_t)pass_shared_bytes(k);
    CuKernel *kern = ptx ? cu_kernel_load(dev, ptx, k->name, smem, d) : NULL;
    free(ptx);
    CgTmaMap maps[CG_MAX_TMAPS];
    int nmaps = cg_tma_maps(k, maps);
    CuPtr *dptr = calloc((size_t)k->nargs + 1, sizeof *dptr);
    void **params = calloc((size_t)(k->nargs + nmaps + k->nparams) + 1, sizeof *params);
    /* the maps' 128 bytes each, 64-aligned, passed by value */
    unsigned char *tmaps = aligned_alloc(TMAP_ALIGN, (size_t)(nmaps + 1) * TMAP_BYTES);
    if (!kern || !dptr || !params || !tmaps)
        goto out;
    for (int i = 0; i < k->nargs; i++) {
        if (!(dptr[i] = cu_alloc(dev, a->bytes[i], d)))
            goto out;
        if (k->bufs[i]->dir != ARG_OUT && !cu_htod(dev, dptr[i], a->host[i], a->bytes[i], d))
            goto out;
        if (k->bufs[i]->dir == ARG_OUT && !cu_memset(dev, dptr[i], 0, a->bytes[i], d))
            goto out;
        params[cg_gpu_param_slot(k, nmaps, CG_PARAM_ARG, i)] = &dptr[i];
    }
    for (int j = 0; j < nmaps; j++) {
        TmapArgs ta;
        unsigned char *map = tmaps + (size_t)j * TMAP_BYTES;
        if (!cg_tma_args(k, &maps[j], a->params, &ta, d) ||
            !cu_tensor_map_encode(dev, &ta, dptr[maps[j].arg], map, d))
            goto out;
        params[cg_gpu_param_slot(k, nmaps, CG_PARAM_TMAP, j)] = map;
    }
    for (int i = 0; i < k->nparams; i++)
        params[cg_gpu_param_slot(k, nmaps, CG_PARAM_SCALAR, i)] = (void *)&a->params[i];
    unsigned grid[3] = {(unsigned)nblocks, 1, 1};
    if (nblocks > 0) {
        if (reps > 1) {
            if (!cu_time_launches(kern, grid, (unsigned)k->nthreads, smem, params, reps, median_ms, d))
                goto out;
            /* outputs of inout arguments saw reps launches: start over once */
            for (int i = 0; i < k->nargs; i++)
                if (k->bufs[i]->dir == ARG_INOUT && !cu_htod(dev, dptr[i], a->host[i], a->bytes[i], d))
                    goto out;
        }
        if (!cu_launch(kern, grid, (unsigned)k->nthreads, smem, params, d) || !cu_sync(dev, d))
            goto out;
    }
    for (int i = 0; i < k->nargs; i++)
        if (k->bufs[i]->dir != ARG_IN && !cu_dtoh(dev, a->host[i], dptr[i], a->bytes[i], d))
            goto out;
    ok = true;
out:
    for (int i = 0; dptr && i < k->nargs; i++)
        if (dptr[i])
            cu_free(dev, dptr[i]);
    free(dptr);
    free(params);
    free(tmaps);
    cu_kernel_free(kern);
    cu_close(dev);
    return ok;
}
