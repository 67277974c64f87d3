/* check.c — the semantic pre-check: what the target cannot hold, reported
 * at the user's line before any lowering. */
#include "passes/passes.h"

#include <string.h>

bool pass_check(Kernel *k, const TargetInfo *t, Diag *d)
{
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
