/* pipeline.c — the one list of passes, in order, and the driver that dumps,
 * times and verifies after each. */
#include "passes/passes.h"

#include <string.h>
#include <time.h>

enum { ANY, CPU, GPU }; /* which targets a pass runs for */

static const struct {
    const char *name;
    bool (*run)(Kernel *, const TargetInfo *, Diag *);
    int on;
} passes[] = {
    {"check", pass_check, ANY},
    {"reuse", pass_reuse, ANY},
    {"stages", pass_stages, GPU},
    {"tma", pass_tma, GPU}, /* sm_90a only */
    {"lower", pass_lower, ANY},
    {"bounds", pass_bounds, CPU}, /* GPU: softmax then spills 12 bytes on sm_90a (ptxas stops at 128 registers) */
    {"fuse", pass_fuse, CPU}, /* GPU: the rule is there (see fuse.c) but softmax then spills on sm_90a */
    {"hoist", pass_hoist, CPU}, /* a GPU block's shared memory starts anew */
    {"vectorize", pass_vectorize, CPU},
    {"stream", pass_stream, CPU},
    {"threads", pass_threads, GPU},
    {"wgwait", pass_wgwait, GPU},
};

enum { NPASSES = sizeof passes / sizeof passes[0] };

const char *pass_names(void) { return "check, reuse, stages, tma, lower, bounds, fuse, hoist, vectorize, stream, threads, wgwait"; }

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

bool pass_pipeline(Kernel *k, const TargetInfo *t, const PassOptions *o, Diag *d)
{
    PassOptions none = {0};
    if (!o)
        o = &none;
    FILE *out = o->dump ? o->dump : stderr;
    const char *dump = o->dump_after;
    if (dump && strcmp(dump, "all")) {
        bool known = false;
        for (int i = 0; i < NPASSES; i++)
            known |= !strcmp(passes[i].name, dump);
        if (!known) {
            SrcLoc none_loc = {0};
            return diag_error(d, none_loc, "--dump-after: unknown pass '%s' (passes: %s, or all)",
                              dump, pass_names());
        }
    }
    if (!ir_verify(k, d))
        return false;
    /* Loop IR read back from its printed form (a .tir) has been through
     * the passes already, for the target it was printed for. */
    if (k->level == LEVEL_LOOP) {
        if (dump || o->time_passes) /* say why nothing follows */
            fprintf(out, "# %s is Loop IR: its passes ran before it was printed, none run now\n", k->name);
        return true;
    }
    for (int i = 0; i < NPASSES; i++) {
        if (passes[i].on != ANY && (passes[i].on == GPU) != (t->gpu_sm > 0))
            continue;
        double t0 = now();
        if (!passes[i].run(k, t, d))
            return false;
        double t1 = now();
        if (!ir_verify(k, d)) {
            diag_hint(d, "IR after pass '%s' is malformed: a tilec bug, please report it",
                      passes[i].name);
            return false;
        }
        if (o->time_passes)
            fprintf(out, "pass %-10s %8.3f ms\n", passes[i].name, (t1 - t0) * 1e3);
        if (dump && (!strcmp(dump, "all") || !strcmp(dump, passes[i].name))) {
            fprintf(out, "# after %s\n", passes[i].name);
            ir_print(k, out);
        }
    }
    return true;
}
