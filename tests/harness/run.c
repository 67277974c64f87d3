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

/* t: the target the kernel is compiled for (NULL: interpreted); choose:
 * whether the spec's choose picks the tile sizes the sets leave out. */
static bool build(ThKernel *tk, const char *spec, const FeSet *sets, int nsets, const TargetInfo *t, bool choose)
{
    Diag d = {0};
    tk->k = fe_load_for(spec, sets, nsets, choose ? t : NULL, &d);
    tk->jit = NULL;
    tk->target = t ? t->name : NULL;
    bool ok = tk->k != NULL;
    if (ok && t)
        ok = pass_pipeline(tk->k, t, NULL, &d);
    if (ok && t && !t->gpu_sm)
        ok = (tk->jit = cg_jit_compile(tk->k, t, &d)) != NULL;
    if (!ok) {
        printf("  %s: ", spec);
        diag_print(&d, stdout);
    }
    return ok;
}

bool th_kernel_build_for(ThKernel *tk, const char *spec, const FeSet *sets, int nsets, const TargetInfo *t)
{
    return build(tk, spec, sets, nsets, t, false);
}

bool th_kernel_build_on(ThKernel *tk, const char *spec, const FeSet *sets, int nsets, const char *target)
{
    return th_kernel_build_for(tk, spec, sets, nsets, target ? ir_target(target) : NULL);
}

bool th_kernel_build(ThKernel *tk, const char *spec, const FeSet *sets, int nsets)
{
    return build(tk, spec, sets, nsets, ir_host_target(), true);
}

bool th_kernel_run(const ThKernel *tk, void *const *args, const int64_t *params, int threads)
{
    Diag d = {0};
    bool ok = tk->jit ? cg_launch(tk->k, cg_jit_fn(tk->jit), args, params, threads, &d)
                      : ir_interp(tk->k, args, params, &d);
    if (!ok)
        diag_print(&d, stdout);
    return ok;
}

void th_kernel_free(ThKernel *tk)
{
    cg_jit_free(tk->jit);
    ir_kernel_free(tk->k);
    tk->jit = NULL;
    tk->k = NULL;
}

char *th_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t n = 0;
    FILE *m = open_memstream(&buf, &n);
    int ch;
    while (m && (ch = fgetc(f)) != EOF)
        fputc(ch, m);
    if (m)
        fclose(m);
    fclose(f);
    return buf;
}
