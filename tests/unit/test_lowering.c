/* test_lowering.c — the passes on printed IR: golden outputs of pass_lower
 * and pass_vectorize, and the interpreter's proof that lowering keeps the
 * meaning: Tile IR and Loop IR give bitwise-equal results. */
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "test.h"
#include "tests/harness/run.h"

#include <string.h>


/* tests/passes/NAME.in.tir through lower+vectorize == NAME.out.tir
 * (TILEC_BLESS=1 writes NAME.out.tir first, as test_passes does). */
static void golden(const char *name)
{
    char in[256], out[256];
    snprintf(in, sizeof in, "tests/passes/%s.in.tir", name);
    snprintf(out, sizeof out, "tests/passes/%s.out.tir", name);
    char *src = th_read_file(in);
    CHECKF(src != NULL, "missing %s", in);
    if (!src)
        return;
    Diag d = {0};
    Kernel *k = ir_parse(src, in, &d);
    const TargetInfo *t = ir_target("x86-avx512");
    bool ok = k && pass_lower(k, t, &d) && ir_verify(k, &d) && pass_vectorize(k, t, &d) && ir_verify(k, &d);
    if (!ok)
        diag_print(&d, stdout);
    CHECK(ok);
    char *got = ok ? ir_print_string(k) : NULL;
    FILE *f = got && getenv("TILEC_BLESS") ? fopen(out, "w") : NULL;
    if (f) {
        fputs(got, f);
        fclose(f);
    }
    char *want = th_read_file(out);
    CHECKF(want != NULL, "missing %s", out);
    if (got && want)
        CHECKF(!strcmp(got, want), "%s differs from %s:\n%s", name, out, got);
    ir_kernel_free(k);
    free(got);
    free(src);
    free(want);
}

TEST(lower_copy_with_tails_golden) { golden("copy_tail"); }
TEST(lower_gemm_and_reduce_golden) { golden("reduce_gemm"); }

/* Run k on seeded inputs with the interpreter; returns the outputs. */
static float *interp_outputs(const Kernel *k, const int64_t *params, size_t *total)
{
    void *args[8];
    size_t sizes[8], sum = 0;
    unsigned seed = 11;
    for (int i = 0; i < k->nargs; i++) {
        int64_t n = 1, dim;
        for (int r = 0; r < k->bufs[i]->rank; r++) {
            ir_eval_int(k->bufs[i]->shape[r], params, &dim);
            n *= dim;
        }
        sizes[i] = dt_storage_bytes(k->bufs[i]->dtype, n);
        args[i] = calloc(sizes[i] + 8, 1);
        for (int64_t j = 0; j < n; j++)
            dt_store(k->bufs[i]->dtype, args[i], j, test_rand(&seed));
        sum += sizes[i];
    }
    Diag d = {0};
    bool ok = ir_interp(k, args, params, &d);
    if (!ok)
        diag_print(&d, stdout);
    float *all = calloc(sum / 4 + 8, 4);
    size_t at = 0;
    for (int i = 0; i < k->nargs; i++) {
        memcpy((char *)all + at, args[i], sizes[i]);
        at += sizes[i];
        free(args[i]);
    }
    *total = ok ? at : 0;
    return all;
}

TEST(lowering_keeps_the_meaning_bit_for_bit)
{
    static const struct { const char *spec; FeSet set; int64_t param; } cases[] = {
        {"examples/gemm.lua", {"M", "67"}, 0},     {"examples/gemm.lua", {"dtype", "bf16"}, 0},
        {"examples/softmax.lua", {"N", "300"}, 0}, {"examples/rmsnorm.lua", {"M", "9"}, 0},
        {"examples/silu_mul.lua", {"N", "70"}, 0}, {"examples/dyn_scale.lua", {"N", "9"}, 21},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Diag d = {0};
        Kernel *tile = fe_load(cases[i].spec, &cases[i].set, 1, &d);
        Kernel *loop = fe_load(cases[i].spec, &cases[i].set, 1, &d);
        CHECK(tile && loop && pass_pipeline(loop, ir_target("x86-avx512"), NULL, &d));
        if (d.set)
            diag_print(&d, stdout);
        int64_t params[1] = {cases[i].param};
        size_t n1, n2;
        float *a = interp_outputs(tile, params, &n1), *b = interp_outputs(loop, params, &n2);
        CHECKF(n1 && n1 == n2 && !memcmp(a, b, n1), "%s --set %s=%s: tile and loop IR differ", cases[i].spec,
               cases[i].set.name, cases[i].set.value);
        free(a);
        free(b);
        ir_kernel_free(tile);
        ir_kernel_free(loop);
    }
}

TEST(pipeline_errors)
{
    Diag d = {0};
    FeSet sets[] = {{"BM", "192"}, {"BN", "256"}};
    Kernel *k = fe_load("examples/gemm.lua", sets, 2, &d);
    CHECK(k && !pass_pipeline(k, ir_target("x86-avx512"), NULL, &d));
    CHECKF(strstr(d.msg, "fragment acc is 192x256 f32 (192 KiB), larger than x86-avx512 allows (128 KiB)"), "%s", d.msg);
    CHECK(d.loc.line == 22);
    ir_kernel_free(k);
    Diag d2 = {0};
    k = fe_load("examples/gemm.lua", NULL, 0, &d2);
    PassOptions o = {.dump_after = "tile"};
    CHECK(k && !pass_pipeline(k, ir_target("x86-avx512"), &o, &d2));
    CHECKF(!strcmp(d2.msg, "--dump-after: unknown pass 'tile' (passes: check, reuse, stages, tma, lower, bounds, fuse, hoist, vectorize, stream, threads, wgwait, or all)"), "%s", d2.msg);
    ir_kernel_free(k);
}

int main(void)
{
    RUN(lower_copy_with_tails_golden);
    RUN(lower_gemm_and_reduce_golden);
    RUN(lowering_keeps_the_meaning_bit_for_bit);
    RUN(pipeline_errors);
    return test_summary();
}
