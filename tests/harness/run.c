/* run.c — see run.h. */
#include "tests/harness/run.h"

#include "codegen/codegen.h"
#include "passes/passes.h"

#include <stdio.h>
#include <string.h>

bool th_runs_here(const char *target)
{
    static const char *said[8];
    if (!target || ir_target(target)->gpu_sm || ir_target_runs_here(ir_target(target)))
        return true;
    for (int i = 0; i < 8; i++) {
        if (said[i] && !strcmp(said[i], target))
            return false;
        if (!said[i]) {
            said[i] = target;
            break;
        }
    }
    printf("skipped: this CPU cannot run %s\n", target);
    return false;
}

const char *th_name(const char *target) { return target ? target : "interp"; }

static bool execute(Kernel *k, const char *target, void *const *args, const int64_t *params, int threads,
                    Diag *d)
{
    if (!target)
        return ir_interp(k, args, params, d);
    const TargetInfo *t = ir_target(target);
    if (!pass_pipeline(k, t, NULL, d))
        return false;
    if (t->gpu_sm)
        return ir_interp(k, args, params, d);
    CgJit *j = cg_jit_compile(k, t, d);
    bool ok = j && cg_launch(k, cg_jit_fn(j), args, params, threads, d);
    cg_jit_free(j);
    return ok;
}

bool th_run(const char *spec, const FeSet *sets, int nsets, const char *target, void *const *args,
            const int64_t *params, int threads)
{
    Diag d = {0};
    Kernel *k = fe_load(spec, sets, nsets, &d);
    bool ok = k && execute(k, target, args, params, threads, &d);
    if (!ok)
        diag_print(&d, stdout);
    ir_kernel_free(k);
    return ok;
}

bool th_load_fails(const char *spec, const FeSet *sets, int nsets, char *msg, size_t size)
{
    Diag d = {0};
    Kernel *k = fe_load(spec, sets, nsets, &d);
    msg[0] = 0;
    FILE *f = fmemopen(msg, size, "w");
    if (f) {
        diag_print(&d, f);
        fclose(f);
    }
    ir_kernel_free(k);
    return k == NULL;
}
