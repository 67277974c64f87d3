/* test_v4_formats.c — the number-format operators of v4-spec §2, bit for
 * bit against references written from the spec: act_quant (§2.2). */
#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "ref/ref.h"
#include "test.h"

#include <string.h>

/* Rows with magnitudes from 1e-6 to 1e4, an all-zero block, exact powers of
 * two and values on the e4m3 rounding midpoints after scaling. */
static void make_input(int M, int K, float *x)
{
    unsigned seed = 5;
    for (int i = 0; i < M; i++) {
        float mag = powf(10.0f, (float)(i % 11) - 6.0f);
        for (int k = 0; k < K; k++)
            x[i * K + k] = test_rand(&seed) * mag;
    }
    for (int k = 0; k < 128 && M > 1; k++)
        x[1 * K + k] = 0;                            /* amax floor 1e-4 */
    if (M > 2)
        for (int k = 0; k < 128; k++)
            x[2 * K + k] = ldexpf(1.0f, k % 20 - 10);  /* powers of two */
}

static void check_act_quant(const char *target, int threads, int M, int K, const char *dtype)
{
    char ks[16];
    snprintf(ks, sizeof ks, "%d", K);
    FeSet sets[] = {{"K", ks}, {"dtype", dtype}};
    Diag d = {0};
    Kernel *k = fe_load("kernels_src/act_quant.lua", sets, 2, &d);
    CHECK(k != NULL);
    if (!k) {
        diag_print(&d, stdout);
        return;
    }
    DType xt = dt_parse(dtype);
    float *x = calloc((size_t)M * K, 4), *xr = calloc((size_t)M * K, 4);
    float *qr = calloc((size_t)M * K, 4), *sr = calloc((size_t)M * K / 128, 4);
    void *xs = calloc((size_t)M * K, 4), *q = calloc((size_t)M * K, 1), *s = calloc((size_t)M * K / 128, 1);
    make_input(M, K, x);
    for (int64_t i = 0; i < (int64_t)M * K; i++) {
        dt_store(xt, xs, i, x[i]);
        xr[i] = (float)dt_load(xt, xs, i); /* what the kernel sees */
    }
    for (int i = 0; i < M; i++)
        ref_act_quant(K, xr + (int64_t)i * K, qr + (int64_t)i * K, sr + (int64_t)i * (K / 128));
    void *args[3] = {xs, q, s};
    int64_t params[1] = {M};
    bool ok;
    if (!target) {
        ok = ir_interp(k, args, params, &d);
    } else {
        const TargetInfo *t = ir_target(target);
        CgJit *j = NULL;
        ok = pass_pipeline(k, t, NULL, &d) && (j = cg_jit_compile(k, t, &d)) &&
             cg_launch(k, cg_jit_fn(j), args, params, threads, &d);
        cg_jit_free(j);
    }
    if (!ok)
        diag_print(&d, stdout);
    CHECK(ok);
    int bad = 0;
    for (int64_t i = 0; ok && i < (int64_t)M * K / 128; i++)
        if (dt_e8m0_to_f32(((uint8_t *)s)[i]) != sr[i] && bad++ < 3)
            printf("  %s %s M=%d K=%d: scale %lld = %g, want %g\n", target ? target : "interp", dtype, M, K,
                   (long long)i, dt_e8m0_to_f32(((uint8_t *)s)[i]), sr[i]);
    for (int64_t i = 0; ok && i < (int64_t)M * K; i++)
        if (dt_e4m3_to_f32(((uint8_t *)q)[i]) != qr[i] && bad++ < 6)
            printf("  %s %s M=%d K=%d: q %lld = %g, want %g\n", target ? target : "interp", dtype, M, K,
                   (long long)i, dt_e4m3_to_f32(((uint8_t *)q)[i]), qr[i]);
    CHECK(bad == 0);
    int64_t nonzero = 0; /* the comparison above is not of two empty results */
    for (int64_t i = 0; i < (int64_t)M * K; i++)
        nonzero += ((uint8_t *)q)[i] != 0;
    CHECKF(nonzero > (int64_t)M * K / 2, "only %lld non-zero codes", (long long)nonzero);
    free(x); free(xr); free(qr); free(sr); free(xs); free(q); free(s);
    ir_kernel_free(k);
}

TEST(act_quant_bit_exact)
{
    /* v4-mini (dim 512), Flash decode (dim 4096, M 1..16) and a prefill of
     * 512 tokens at dim 4096 (JIT only: the interpreter is slow there). */
    static const int shapes[][2] = {{1, 128}, {3, 384}, {13, 512}, {16, 4096}};
    const char *targets[] = {NULL, "x86-avx512", "x86-avx2"};
    for (size_t t = 0; t < 3; t++) {
        if (targets[t] && !ir_target_runs_here(ir_target(targets[t]))) {
            printf("skipped: this CPU cannot run %s\n", targets[t]);
            continue;
        }
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            check_act_quant(targets[t], 2, shapes[i][0], shapes[i][1], "bf16");
            check_act_quant(targets[t], 1, shapes[i][0], shapes[i][1], "f32");
        }
    }
    if (ir_target_runs_here(ir_target("x86-avx512")))
        check_act_quant("x86-avx512", 2, 512, 4096, "bf16");
}

TEST(act_quant_rejects_k_off_the_block)
{
    FeSet set = {"K", "200"};
    Diag d = {0};
    CHECK(fe_load("kernels_src/act_quant.lua", &set, 1, &d) == NULL);
    CHECKF(strstr(d.msg, "act_quant: K = 200 is not a multiple of the scale block (128)") && d.loc.line > 0,
           "%s", d.msg);
}

int main(void)
{
    RUN(act_quant_bit_exact);
    RUN(act_quant_rejects_k_off_the_block);
    return test_summary();
}
