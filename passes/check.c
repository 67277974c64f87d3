/* check.c — the semantic pre-check: what the target cannot hold, reported
 * at the user's line before any lowering. */
#include "passes/passes.h"

#include <string.h>

/* The narrow float formats (fp8, fp4) exist for tensor cores: a GEMM on
 * them where the target's tensor cores do not take them is an error, not a
 * slow loop of widened bytes.  (A CPU widens them; wider dtypes on a GPU
 * fall back to FMA loops.) */
static bool check_gemm_dtypes(const Kernel *k, const Stmt *s, const TargetInfo *t, Diag *d)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            if (!check_gemm_dtypes(k, s->u.seq.items[i], t, d))
                return false;
        return true;
    case ST_FOR:
        return check_gemm_dtypes(k, s->u.loop.body, t, d);
    case ST_IF:
        return check_gemm_dtypes(k, s->u.if_.then_, t, d) &&
               (!s->u.if_.else_ || check_gemm_dtypes(k, s->u.if_.else_, t, d));
    case ST_GEMM:
        break;
    default:
        return true;
    }
    const Buffer *ops[2] = {s->u.gemm.a.buf, s->u.gemm.b.buf};
    const bool scaled[2] = {s->u.gemm.a_scale.buf != NULL, s->u.gemm.b_scale.buf != NULL};
    for (int i = 0; i < 2; i++) {
        DType dt = ops[i]->dtype;
        if (scaled[i]) /* pass_lower dequantises it into a bf16 or f32 tile */
            continue;
        if (!t->gpu_sm || dt_bits(dt) > 8 || !dt_is_float(dt) || ir_mma_k(t, dt))
            continue;
        diag_error(d, s->loc, "kernel %s: T.gemm on %s operand %s: the tensor cores of %s take only %s "
                   "(%s needs %s)", k->name, dt_name(dt), ops[i]->name, t->name,
                   t->gpu_sm >= 89 ? "bf16, f16, f8e4m3 and f8e5m2" : "bf16 and f16", dt_name(dt),
                   dt == DT_F4E2M1 ? "sm_100 or later" : "sm_89 or later");
        diag_hint(d, "copy the tiles into bf16 shared buffers first; fp8 and fp4 widen to bf16 exactly");
        return false;
    }
    return true;
}

bool pass_check(Kernel *k, const TargetInfo *t, Diag *d)
{
    if (!check_gemm_dtypes(k, k->body, t, d))
        return false;
    for (int i = 0; i < k->nbufs; i++) {
        const Buffer *b = k->bufs[i];
        if (b->scope != SCOPE_FRAGMENT && b->scope != SCOPE_LOCAL)
            continue;
        int64_t n = 1, dim;
        char shape[96] = "";
        for (int r = 0; r < b->rank; r++) {
            ir_expr_is_const(b->shape[r], &dim);
            n *= dim;
            size_t used = strlen(shape);
            snprintf(shape + used, sizeof shape - used, "%s%lld", r ? "x" : "", (long long)dim);
        }
        int64_t bytes = (int64_t)dt_storage_bytes(b->dtype, n);
        if (bytes > t->max_fragment_bytes) {
            diag_error(d, b->loc, "kernel %s: %s %s is %s %s (%lld KiB), larger than %s allows (%lld KiB)",
                       k->name, scope_name(b->scope), b->name, shape, dt_name(b->dtype),
                       (long long)(bytes / 1024), t->name, (long long)(t->max_fragment_bytes / 1024));
            diag_hint(d, "use smaller tiles, or keep large tiles in T.shared");
            return false;
        }
    }
    return true;
}
