/* test_v4_formats.c — the number-format operators of v4-spec §2, bit for
 * bit against references written from the spec: act_quant (§2.2),
 * fp4_act_quant (§2.5) and the FP8 KV simulation (§2.6); the Hadamard
 * rotation (§2.7) and RoPE (§3.7) to within one bf16 rounding of exact math. */
#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "ref/ref.h"
#include "test.h"
#include "tests/harness/run.h"

#include <string.h>

/* One unit in the last place of v in a format with `mbits` fraction bits
 * (7 for bf16, 3 for e4m3). */
static float ulp_of(float v, int mbits) { return ldexpf(1.0f, ilogbf(fmaxf(fabsf(v), 1e-30f)) - mbits); }

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
    } else if (ir_target(target)->gpu_sm) {
        ok = pass_pipeline(k, ir_target(target), NULL, &d) && ir_interp(k, args, params, &d);
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
    const char *targets[] = {NULL, "x86-avx512", "x86-avx2", "sm_90a"};
    for (size_t t = 0; t < 4; t++) {
        if (!th_runs_here(targets[t]))
            continue;
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            check_act_quant(targets[t], 2, shapes[i][0], shapes[i][1], "bf16");
            check_act_quant(targets[t], 1, shapes[i][0], shapes[i][1], "f32");
        }
    }
    if (test_large_shapes())
        check_act_quant(ir_host_target()->name, 2, 512, 4096, "bf16");
}


/* bf16 inputs over many magnitudes; rows of the output compared exactly. */
static void check_dequant(const char *spec, const FeSet *sets, int nsets, int M, int D, bool with_scales,
                          void (*ref)(int D, const float *x, float *y, float *s))
{
    const char *targets[] = {NULL, "x86-avx512", "x86-avx2", "sm_90a"};
    uint16_t *x = calloc((size_t)M * D, 2), *y = calloc((size_t)M * D, 2);
    uint8_t *s = calloc((size_t)M * D, 1);
    float *xf = calloc((size_t)M * D, 4), *want = calloc((size_t)M * D, 4), *ws = calloc((size_t)M * D, 4);
    make_input(M, D, xf);
    for (int64_t i = 0; i < (int64_t)M * D; i++) {
        x[i] = dt_f32_to_bf16(xf[i]);
        xf[i] = dt_bf16_to_f32(x[i]);
    }
    int nblk = with_scales ? D / 32 : 0;
    for (int i = 0; i < M; i++)
        ref(D, xf + (int64_t)i * D, want + (int64_t)i * D, ws + (int64_t)i * nblk);
    for (size_t t = 0; t < 4; t++) {
        if (!th_runs_here(targets[t]))
            continue;
        memset(y, 0xff, (size_t)M * D * 2);
        void *args[3] = {x, y, s};
        int64_t params[1] = {M};
        CHECK(th_run(spec, sets, nsets, targets[t], args, params, 2));
        int bad = 0;
        for (int64_t i = 0; i < (int64_t)M * D; i++)
            if (dt_bf16_to_f32(y[i]) != want[i] && bad++ < 4)
                printf("  %s on %s: y[%lld] = %g, want %g (x %g)\n", spec, targets[t] ? targets[t] : "interp",
                       (long long)i, dt_bf16_to_f32(y[i]), want[i], xf[i]);
        for (int64_t i = 0; i < (int64_t)M * nblk; i++)
            if (dt_e8m0_to_f32(s[i]) != ws[i] && bad++ < 8)
                printf("  %s on %s: s[%lld] = %g, want %g\n", spec, targets[t] ? targets[t] : "interp", (long long)i,
                       dt_e8m0_to_f32(s[i]), ws[i]);
        CHECK(bad == 0);
    }
    free(x); free(y); free(s); free(xf); free(want); free(ws);
}

static void fp4_ref(int D, const float *x, float *y, float *s) { ref_fp4_act_quant(D, x, y, s); }
static void kv_ref_flash(int D, const float *x, float *y, float *s) { (void)s; ref_kv_fp8_sim(D, 448, x, y); }
static void kv_ref_mini(int D, const float *x, float *y, float *s) { (void)s; ref_kv_fp8_sim(D, 128, x, y); }

TEST(fp4_act_quant_bit_exact)
{
    /* the indexer's head dim is 128 in every config */
    FeSet sets[] = {{"K", "128"}};
    check_dequant("kernels_src/fp4_act_quant.lua", sets, 1, 21, 128, true, fp4_ref);
    FeSet wide[] = {{"K", "4096"}};
    check_dequant("kernels_src/fp4_act_quant.lua", wide, 1, 3, 4096, true, fp4_ref);
}

TEST(kv_fp8_simulation_bit_exact)
{
    check_dequant("kernels_src/kv_fp8_sim.lua", NULL, 0, 19, 512, false, kv_ref_flash);   /* Flash: 448 + 64 */
    FeSet mini[] = {{"D", "192"}, {"NOPE", "128"}};                                        /* v4-mini: 128 + 64 */
    check_dequant("kernels_src/kv_fp8_sim.lua", mini, 2, 7, 192, false, kv_ref_mini);
}

TEST(kv_fp8_simulation_rejects_a_bad_head_split)
{
    FeSet sets[] = {{"D", "512"}, {"NOPE", "384"}};
    Diag d = {0};
    CHECK(fe_load("kernels_src/kv_fp8_sim.lua", sets, 2, &d) == NULL);
    CHECKF(strstr(d.msg, "kv_fp8_sim: head dim 512 is not split as nope") != NULL, "%s", d.msg);
}

TEST(hadamard_rotation)
{
    /* f32 butterflies against an exact (double) product: the bf16 results
     * agree except where the exact value sits at a bf16 rounding boundary. */
    const int M = 33, N = 128;
    const char *targets[] = {NULL, "x86-avx512", "x86-avx2", "sm_90a"};
    uint16_t *x = calloc((size_t)M * N, 2), *y = calloc((size_t)M * N, 2);
    float *xf = calloc((size_t)M * N, 4), *want = calloc((size_t)M * N, 4);
    unsigned seed = 9;
    for (int i = 0; i < M * N; i++) {
        x[i] = dt_f32_to_bf16(test_rand(&seed) * (float)(1 + i % 7));
        xf[i] = dt_bf16_to_f32(x[i]);
    }
    for (int i = 0; i < M; i++)
        ref_hadamard(N, xf + i * N, want + i * N);
    for (size_t t = 0; t < 4; t++) {
        if (!th_runs_here(targets[t]))
            continue;
        void *args[2] = {x, y};
        int64_t params[1] = {M};
        CHECK(th_run("kernels_src/hadamard.lua", NULL, 0, targets[t], args, params, 2));
        int exact = 0, far = 0;
        for (int i = 0; i < M * N; i++) {
            float got = dt_bf16_to_f32(y[i]);
            exact += got == want[i];
            /* one bf16 ulp of the larger magnitude */
            float ulp = ulp_of(want[i], 7);
            far += fabsf(got - want[i]) > ulp;
        }
        CHECKF(far == 0 && exact >= M * N * 98 / 100, "%s: %d exact of %d, %d beyond one ulp",
               targets[t] ? targets[t] : "interp", exact, M * N, far);
    }
    free(x); free(y); free(xf); free(want);
}

static void check_rope(double theta, int yarn, const char *direction)
{
    const int M = 9, H = 3, D = 192, P = 4096; /* v4-mini heads: 128 nope + 64 rope */
    float *cs = calloc((size_t)P * 64, 4);
    ref_rope_table(theta, yarn, P, cs);
    uint16_t *x = calloc((size_t)M * H * D, 2), *y = calloc((size_t)M * H * D, 2);
    float *xf = calloc((size_t)M * H * D, 4), *want = calloc((size_t)M * H * D, 4);
    int32_t pos[9] = {0, 1, 2, 127, 128, 1000, 2047, 4000, 4095};
    unsigned seed = 17;
    for (int i = 0; i < M * H * D; i++) {
        x[i] = dt_f32_to_bf16(test_rand(&seed));
        xf[i] = dt_bf16_to_f32(x[i]);
    }
    int inverse = !strcmp(direction, "inverse");
    ref_rope(M, H, D, xf, pos, cs, inverse, want);
    FeSet sets[] = {{"H", "3"}, {"D", "192"}, {"P", "4096"}, {"direction", direction}};
    const char *targets[] = {NULL, "x86-avx512", "x86-avx2", "sm_90a"};
    for (size_t t = 0; t < 4; t++) {
        if (!th_runs_here(targets[t]))
            continue;
        void *args[4] = {x, pos, cs, y};
        int64_t params[1] = {M};
        CHECK(th_run("kernels_src/rope.lua", sets, 4, targets[t], args, params, 2));
        int far = 0, exact = 0;
        for (int i = 0; i < M * H * D; i++) {
            float got = dt_bf16_to_f32(y[i]);
            float ulp = ulp_of(want[i], 7);
            far += fabsf(got - want[i]) > ulp;
            exact += got == want[i];
        }
        CHECKF(far == 0 && exact >= M * H * D * 97 / 100, "rope theta %g yarn %d %s on %s: %d beyond 1 ulp, %d exact",
               theta, yarn, direction, targets[t] ? targets[t] : "interp", far, exact);
    }
    free(cs); free(x); free(y); free(xf); free(want);
}

TEST(rope_forward_and_inverse_with_and_without_yarn)
{
    check_rope(160000, 1, "forward"); /* compressed layers */
    check_rope(160000, 1, "inverse");
    check_rope(10000, 0, "forward");  /* SWA layers and MTP */
}

/* Two-level check (v4-spec §9): against a reference that rounds the norm's
 * output to bf16 and quantises it exactly as the spec says, with the sum of
 * squares in double — only the order of a 4096-term f32 sum differs, which
 * can move a value across a bf16 rounding boundary. */
TEST(rmsnorm_quant_against_the_spec)
{
    const int M = 6, D = 4096;
    uint16_t *x = calloc((size_t)M * D, 2);
    uint8_t *q = calloc((size_t)M * D, 1), *s = calloc((size_t)M * D / 128, 1);
    float *xf = calloc((size_t)M * D, 4), *w = calloc(D, 4), *y = calloc((size_t)M * D, 4);
    float *qr = calloc((size_t)M * D, 4), *sr = calloc((size_t)M * D / 128, 4);
    make_input(M, D, xf);
    for (int i = 0; i < M * D; i++) {
        x[i] = dt_f32_to_bf16(xf[i] + 0.01f); /* no all-zero rows: those have no norm */
        xf[i] = dt_bf16_to_f32(x[i]);
    }
    unsigned seed = 23;
    for (int j = 0; j < D; j++)
        w[j] = 0.5f + test_rand(&seed);
    ref_rmsnorm(M, D, xf, w, 1e-6f, y);
    for (int i = 0; i < M * D; i++)
        y[i] = ref_round_bf16(y[i]);
    for (int i = 0; i < M; i++)
        ref_act_quant(D, y + (int64_t)i * D, qr + (int64_t)i * D, sr + (int64_t)i * (D / 128));
    const char *targets[] = {NULL, "x86-avx512", "x86-avx2", "sm_90a"};
    for (size_t t = 0; t < 4; t++) {
        if (!th_runs_here(targets[t]))
            continue;
        void *args[4] = {x, w, q, s};
        int64_t params[1] = {M};
        CHECK(th_run("kernels_src/rmsnorm_quant.lua", NULL, 0, targets[t], args, params, 2));
        int qsame = 0, ssame = 0, far = 0;
        for (int i = 0; i < M * D; i++) {
            float got = dt_e4m3_to_f32(q[i]) * dt_e8m0_to_f32(s[i / 128]);
            float want = qr[i] * sr[i / 128];
            qsame += dt_e4m3_to_f32(q[i]) == qr[i];
            /* one e4m3 step at this magnitude: 2^(exponent - 3) */
            float step = ulp_of(want, 3);
            far += fabsf(got - want) > step;
        }
        for (int i = 0; i < M * D / 128; i++)
            ssame += dt_e8m0_to_f32(s[i]) == sr[i];
        CHECKF(far == 0 && qsame >= M * D * 99 / 100 && ssame >= M * D / 128 * 97 / 100,
               "%s: %d of %d codes and %d of %d scales equal, %d beyond one step", targets[t] ? targets[t] : "interp",
               qsame, M * D, ssame, M * D / 128, far);
    }
    free(x); free(q); free(s); free(xf); free(w); free(y); free(qr); free(sr);
}

/* The plain RMSNorm (bf16 out) against the spec within one bf16 rounding,
 * and composed with act_quant: the same bits as the fused rmsnorm_quant
 * (one kernel computes what the pair does, y never stored). */
TEST(rmsnorm_alone_and_composed_with_act_quant)
{
    const int M = 5, D = 4096;
    uint16_t *x = calloc((size_t)M * D, 2), *y = calloc((size_t)M * D, 2);
    uint8_t *q1 = calloc((size_t)M * D, 1), *s1 = calloc((size_t)M * D / 128, 1);
    uint8_t *q2 = calloc((size_t)M * D, 1), *s2 = calloc((size_t)M * D / 128, 1);
    float *xf = calloc((size_t)M * D, 4), *w = calloc(D, 4), *want = calloc((size_t)M * D, 4);
    make_input(M, D, xf);
    for (int i = 0; i < M * D; i++) {
        x[i] = dt_f32_to_bf16(xf[i] + 0.01f);
        xf[i] = dt_bf16_to_f32(x[i]);
    }
    unsigned seed = 29;
    for (int j = 0; j < D; j++)
        w[j] = 0.5f + test_rand(&seed);
    ref_rmsnorm(M, D, xf, w, 1e-6f, want);
    const char *targets[] = {NULL, "x86-avx512", "x86-avx2", "sm_90a"};
    FeSet kq[] = {{"K", "4096"}};
    for (size_t t = 0; t < 4; t++) {
        if (!th_runs_here(targets[t]))
            continue;
        const char *name = targets[t] ? targets[t] : "interp";
        int64_t params[1] = {M};
        void *a1[3] = {x, w, y}, *a2[3] = {y, q1, s1}, *a3[4] = {x, w, q2, s2};
        CHECK(th_run("kernels_src/rmsnorm.lua", NULL, 0, targets[t], a1, params, 2));
        int same = 0, far = 0;
        for (int i = 0; i < M * D; i++) {
            float got = dt_bf16_to_f32(y[i]), r = ref_round_bf16(want[i]);
            same += got == r;
            far += fabsf(got - want[i]) > ulp_of(want[i], 7);
        }
        CHECKF(far == 0 && same >= M * D * 99 / 100, "rmsnorm on %s: %d of %d equal, %d beyond one bf16 rounding",
               name, same, M * D, far);
        CHECK(th_run("kernels_src/act_quant.lua", kq, 1, targets[t], a2, params, 2));
        CHECK(th_run("kernels_src/rmsnorm_quant.lua", NULL, 0, targets[t], a3, params, 2));
        CHECKF(!memcmp(q1, q2, (size_t)M * D) && !memcmp(s1, s2, (size_t)M * D / 128),
               "rmsnorm then act_quant on %s differs from rmsnorm_quant", name);
    }
    free(x); free(y); free(q1); free(s1); free(q2); free(s2); free(xf); free(w); free(want);
}

/* fp8_gemm (§2.3), two levels: tight against the spec's math on the same
 * quantised inputs (bf16 results within one rounding), loose against the
 * unquantised product (DeepGEMM's calc_diff below 1e-3 for FP8). */
static void check_fp8_gemm_bk(const char *target, int M, int N, int K, const char *bn, const char *bk)
{
    int nkb = K / 128, nnb = (N + 127) / 128;
    float *xa = calloc((size_t)M * K, 4), *xb = calloc((size_t)N * K, 4);
    unsigned seed = 31;
    for (int64_t i = 0; i < (int64_t)M * K; i++)
        xa[i] = test_rand(&seed) * 3.0f;
    /* weights whose 128x128 blocks differ in magnitude (so in scale): a
     * block reading another block's scale is off by a power of two */
    for (int64_t i = 0; i < (int64_t)N * K; i++)
        xb[i] = test_rand(&seed) * 0.05f * (float)(1 << ((i / K / 128 + (i % K) / 128) % 2));
    /* quantise: A per 1×128 with act_quant's reference, B per 128×128 */
    float *qa = calloc((size_t)M * K, 4), *sa = calloc((size_t)M * nkb, 4);
    float *qb = calloc((size_t)N * K, 4), *sb = calloc((size_t)nnb * nkb, 4);
    for (int i = 0; i < M; i++)
        ref_act_quant(K, xa + (int64_t)i * K, qa + (int64_t)i * K, sa + (int64_t)i * nkb);
    for (int nb = 0; nb < nnb; nb++)
        for (int kb = 0; kb < nkb; kb++) {
            float amax = 1e-4f;
            for (int n = nb * 128; n < N && n < nb * 128 + 128; n++)
                for (int k = kb * 128; k < kb * 128 + 128; k++)
                    amax = fmaxf(amax, fabsf(xb[(int64_t)n * K + k]));
            float s = ldexpf(1.0f, (int)ceil(log2(amax / 448.0)));
            sb[nb * nkb + kb] = s;
            for (int n = nb * 128; n < N && n < nb * 128 + 128; n++)
                for (int k = kb * 128; k < kb * 128 + 128; k++)
                    qb[(int64_t)n * K + k] = ref_round_e4m3(xb[(int64_t)n * K + k] / s);
        }
    uint8_t *a8 = calloc((size_t)M * K, 1), *b8 = calloc((size_t)N * K, 1);
    uint8_t *sa8 = calloc((size_t)M * nkb, 1), *sb8 = calloc((size_t)nnb * nkb, 1);
    for (int64_t i = 0; i < (int64_t)M * K; i++)
        a8[i] = dt_f32_to_e4m3(qa[i]);
    for (int64_t i = 0; i < (int64_t)N * K; i++)
        b8[i] = dt_f32_to_e4m3(qb[i]);
    for (int i = 0; i < M * nkb; i++)
        sa8[i] = dt_f32_to_e8m0(sa[i]);
    for (int i = 0; i < nnb * nkb; i++)
        sb8[i] = dt_f32_to_e8m0(sb[i]);
    float *want = calloc((size_t)M * N, 4), *exact = calloc((size_t)M * N, 4), *got = calloc((size_t)M * N, 4);
    ref_fp8_gemm(M, N, K, qa, sa, qb, sb, want);
    ref_gemm(M, N, K, xa, xb, exact);
    uint16_t *c = calloc((size_t)M * N, 2);
    char ns[16], ks[16];
    snprintf(ns, sizeof ns, "%d", N);
    snprintf(ks, sizeof ks, "%d", K);
    FeSet sets[] = {{"N", ns}, {"K", ks}, {"BM", M <= 48 ? "16" : "64"}, {"BN", bn}, {"BK", bk}};
    void *args[5] = {a8, sa8, b8, sb8, c};
    int64_t params[1] = {M};
    CHECK(th_run("kernels_src/fp8_gemm.lua", sets, 5, target, args, params, 2));
    int far = 0, same = 0;
    for (int64_t i = 0; i < (int64_t)M * N; i++) {
        got[i] = dt_bf16_to_f32(c[i]);
        float ulp = ulp_of(want[i], 7);
        far += fabsf(got[i] - want[i]) > ulp;
        same += got[i] == want[i];
    }
    double diff = ref_calc_diff(got, exact, (int64_t)M * N);
    CHECKF(far == 0 && same >= M * N * 9 / 10 && diff < 1e-3,
           "fp8_gemm %dx%dx%d BN %s BK %s on %s: %d beyond one bf16 rounding, %d of %d equal, calc_diff %.2e", M,
           N, K, bn, bk, target ? target : "interp", far, same, M * N, diff);
    free(xa); free(xb); free(qa); free(sa); free(qb); free(sb); free(a8); free(b8); free(sa8); free(sb8);
    free(want); free(exact); free(got); free(c);
}

static void check_fp8_gemm_bn(const char *target, int M, int N, int K, const char *bn)
{
    check_fp8_gemm_bk(target, M, N, K, bn, "128");
}

static void check_fp8_gemm(const char *target, int M, int N, int K)
{
    check_fp8_gemm_bn(target, M, N, K, "128");
}

TEST(fp8_gemm_two_level)
{
    check_fp8_gemm(NULL, 5, 200, 256);           /* interpreter, a partial N block */
    check_fp8_gemm("sm_90a", 5, 200, 256);
    const char *targets[] = {"x86-avx512", "x86-avx2"};
    for (int t = 0; t < 2; t++) {
        if (!ir_target_runs_here(ir_target(targets[t])))
            continue;
        check_fp8_gemm(targets[t], 5, 200, 256);
        check_fp8_gemm(targets[t], 1, 4096, 4096);   /* Flash decode shapes */
        check_fp8_gemm(targets[t], 16, 1024, 4096);
        check_fp8_gemm_bn(targets[t], 5, 200, 256, "16"); /* 16-row blocks: eight share a row of weight scales */
        check_fp8_gemm_bn(targets[t], 1, 200, 256, "32");
        /* one scaled T.gemm per step: promoted per 128-wide block inside it
         * (at one row, e4m3 x e4m3 widened straight to f32), tall tiles at
         * 16 rows, a partial last N block, two steps */
        check_fp8_gemm_bk(targets[t], 1, 4096, 4096, "16", "4096");
        check_fp8_gemm_bk(targets[t], 1, 200, 512, "16", "256");
        check_fp8_gemm_bk(targets[t], 5, 200, 512, "32", "512");
        check_fp8_gemm_bk(targets[t], 16, 1024, 1024, "16", "256");
        /* three row blocks, the last partial: A's lifted rows staged once
         * per row block for its run of column blocks (pass_hoist, a once
         * keyed by by; two threads, whose runs of blocks cross rows) */
        check_fp8_gemm_bk(targets[t], 40, 256, 512, "16", "128");
    }
    check_fp8_gemm_bn("sm_90a", 5, 200, 256, "32");
    check_fp8_gemm_bk("sm_90a", 5, 200, 512, "32", "256");
    if (test_large_shapes())
        check_fp8_gemm(ir_host_target()->name, 512, 512, 1024); /* a prefill of 512 tokens */
}

/* hc_pre (§3.3.1) at v4-mini (D 512) and Flash (D 4096) widths. */
static void check_hc_pre(const char *target, int M, int D)
{
    int n = 4 * D;
    uint16_t *x = calloc((size_t)M * n, 2), *y = calloc((size_t)M * D, 2);
    float *xf = calloc((size_t)M * n, 4), *fn = calloc((size_t)24 * n, 4), scale[3], base[24];
    float *post = calloc((size_t)M * 4, 4), *comb = calloc((size_t)M * 16, 4);
    float *wy = calloc(D, 4), wpost[4], wcomb[16];
    unsigned seed = 41;
    for (int64_t i = 0; i < (int64_t)M * n; i++) {
        x[i] = dt_f32_to_bf16(test_rand(&seed) * (1 + (float)(i % 5)));
        xf[i] = dt_bf16_to_f32(x[i]);
    }
    for (int64_t i = 0; i < (int64_t)24 * n; i++)
        fn[i] = test_rand(&seed) * 0.05f;
    for (int i = 0; i < 3; i++)
        scale[i] = 0.75f + 0.25f * test_rand(&seed);
    for (int i = 0; i < 24; i++)
        base[i] = test_rand(&seed);
    char ds[16];
    snprintf(ds, sizeof ds, "%d", D);
    FeSet sets[] = {{"D", ds}};
    void *args[7] = {x, fn, scale, base, y, post, comb};
    int64_t params[1] = {M};
    CHECK(th_run("kernels_src/hc_pre.lua", sets, 1, target, args, params, 2));
    double worst_post = 0, worst_comb = 0;
    int yfar = 0, ysame = 0;
    for (int t = 0; t < M; t++) {
        ref_hc_pre(D, xf + (int64_t)t * n, fn, scale, base, wy, wpost, wcomb);
        for (int i = 0; i < 4; i++)
            worst_post = fmax(worst_post, fabs(post[t * 4 + i] - wpost[i]) / fabs(wpost[i]));
        for (int i = 0; i < 16; i++) /* comb entries lie in [0, 1] */
            worst_comb = fmax(worst_comb, fabs(comb[t * 16 + i] - wcomb[i]));
        for (int d = 0; d < D; d++) {
            float got = dt_bf16_to_f32(y[(int64_t)t * D + d]);
            /* one bf16 ulp, or f32 rounding of the four terms when they cancel */
            float ulp = fmaxf(ulp_of(wy[d], 7), 1e-5f);
            yfar += fabsf(got - wy[d]) > ulp;
            ysame += got == wy[d];
        }
    }
    CHECKF(worst_post < 2e-5 && worst_comb < 2e-5 && yfar == 0 && ysame >= M * D * 95 / 100,
           "hc_pre M=%d D=%d on %s: post rel %.2e, comb abs %.2e, y: %d beyond 1 ulp, %d of %d equal", M, D,
           target ? target : "interp", worst_post, worst_comb, yfar, ysame, M * D);
    free(x); free(y); free(xf); free(fn); free(post); free(comb); free(wy);
}

TEST(hc_pre_against_the_spec)
{
    check_hc_pre(NULL, 3, 512);
    check_hc_pre("sm_90a", 3, 512);
    const char *targets[] = {"x86-avx512", "x86-avx2"};
    for (int t = 0; t < 2; t++)
        if (ir_target_runs_here(ir_target(targets[t]))) {
            check_hc_pre(targets[t], 7, 512);
            check_hc_pre(targets[t], 16, 4096);
        }
}

TEST(hc_post_against_the_spec)
{
    /* comb is not symmetric, so a transposed combination fails */
    const int M = 6, D = 512;
    uint16_t *f = calloc((size_t)M * D, 2), *r = calloc((size_t)M * 4 * D, 2), *x = calloc((size_t)M * 4 * D, 2);
    float *ff = calloc((size_t)M * D, 4), *rf = calloc((size_t)M * 4 * D, 4), *want = calloc((size_t)4 * D, 4);
    float post[6 * 4], comb[6 * 16];
    unsigned seed = 43;
    for (int i = 0; i < M * D; i++) {
        f[i] = dt_f32_to_bf16(test_rand(&seed));
        ff[i] = dt_bf16_to_f32(f[i]);
    }
    for (int i = 0; i < M * 4 * D; i++) {
        r[i] = dt_f32_to_bf16(test_rand(&seed) * 2);
        rf[i] = dt_bf16_to_f32(r[i]);
    }
    for (int i = 0; i < M * 4; i++)
        post[i] = 1 + test_rand(&seed);
    for (int i = 0; i < M * 16; i++)
        comb[i] = 0.5f + 0.5f * test_rand(&seed);
    const char *targets[] = {NULL, "x86-avx512", "x86-avx2", "sm_90a"};
    for (size_t t = 0; t < 4; t++) {
        if (!th_runs_here(targets[t]))
            continue;
        FeSet sets[] = {{"D", "512"}};
        void *args[5] = {f, r, post, comb, x};
        int64_t params[1] = {M};
        CHECK(th_run("kernels_src/hc_post.lua", sets, 1, targets[t], args, params, 2));
        int far = 0, same = 0;
        for (int tok = 0; tok < M; tok++) {
            ref_hc_post(D, ff + tok * D, rf + tok * 4 * D, post + tok * 4, comb + tok * 16, want);
            for (int k = 0; k < 4 * D; k++) {
                float got = dt_bf16_to_f32(x[(int64_t)tok * 4 * D + k]);
                float ulp = fmaxf(ulp_of(want[k], 7), 1e-5f);
                far += fabsf(got - want[k]) > ulp;
                same += got == want[k];
            }
        }
        CHECKF(far == 0 && same >= M * 4 * D * 95 / 100, "hc_post on %s: %d beyond one rounding, %d of %d equal",
               targets[t] ? targets[t] : "interp", far, same, M * 4 * D);
    }
    free(f); free(r); free(x); free(ff); free(rf); free(want);
}

/* Routing is compared as index sets (v4-spec §9.2): an expert may differ
 * from the reference only where its biased score ties the k-th within
 * f32 rounding; weights are compared expert by expert. */
static void check_gate(const char *target, int M, int D, int E, bool hash)
{
    const int K = 6, V = 97;
    uint16_t *x = calloc((size_t)M * D, 2), *wg = calloc((size_t)E * D, 2);
    float *xf = calloc((size_t)M * D, 4), *wf = calloc((size_t)E * D, 4), *bias = calloc(E, 4);
    int32_t *ids = calloc(M, 4), *t2e = calloc((size_t)V * K, 4), *idx = calloc((size_t)M * K, 4);
    float *w = calloc((size_t)M * K, 4);
    unsigned seed = 47;
    for (int i = 0; i < M * D; i++) {
        x[i] = dt_f32_to_bf16(test_rand(&seed));
        xf[i] = dt_bf16_to_f32(x[i]);
    }
    for (int i = 0; i < E * D; i++) {
        wg[i] = dt_f32_to_bf16(test_rand(&seed) * 0.2f);
        wf[i] = dt_bf16_to_f32(wg[i]);
    }
    for (int e = 0; e < E; e++)
        bias[e] = 0.1f * test_rand(&seed);
    for (int i = 0; i < M; i++)
        ids[i] = (int32_t)((unsigned)(i * 37) % V);
    for (int i = 0; i < V * K; i++)
        t2e[i] = (int32_t)((unsigned)(i * 11 + i / K) % E);
    char ds[16], es[16];
    snprintf(ds, sizeof ds, "%d", D);
    snprintf(es, sizeof es, "%d", E);
    FeSet sets[] = {{"D", ds}, {"E", es}, {"routing", hash ? "hash" : "topk"}, {"V", "97"}};
    void *args_topk[5] = {x, wg, bias, idx, w};
    void *args_hash[7] = {x, wg, bias, ids, t2e, idx, w};
    int64_t params[1] = {M};
    CHECK(th_run("kernels_src/moe_gate.lua", sets, 4, target, hash ? args_hash : args_topk, params, 2));
    int wrong = 0;
    double worst_w = 0;
    for (int t = 0; t < M; t++) {
        int32_t ridx[6];
        double rw[6], sel[1024];
        ref_moe_gate(D, E, K, xf + (int64_t)t * D, wf, bias, 1.5, hash ? t2e + ids[t] * K : NULL, ridx, rw, sel);
        double kth = INFINITY;
        for (int k = 0; k < K; k++)
            kth = fmin(kth, sel[ridx[k]]);
        for (int k = 0; k < K; k++) {
            int32_t e = idx[t * K + k];
            int found = -1;
            for (int j = 0; j < K; j++)
                if (ridx[j] == e)
                    found = j;
            bool tie = !hash && e >= 0 && e < E && fabs(sel[e] - kth) < 1e-5;
            if (found < 0 && !tie && wrong++ < 3)
                printf("  token %d: expert %d is not in the reference's top-%d\n", t, e, K);
            if (found >= 0)
                worst_w = fmax(worst_w, fabs(w[t * K + k] - rw[found]) / rw[found]);
        }
    }
    CHECKF(wrong == 0 && worst_w < 1e-5, "moe_gate %s M=%d D=%d E=%d on %s: %d wrong experts, weight rel err %.2e",
           hash ? "hash" : "topk", M, D, E, target ? target : "interp", wrong, worst_w);
    free(x); free(wg); free(xf); free(wf); free(bias); free(ids); free(t2e); free(idx); free(w);
}

TEST(moe_gate_topk_and_hash_routing)
{
    check_gate(NULL, 5, 512, 16, false);     /* v4-mini: 16 experts, d 512 */
    check_gate("sm_90a", 5, 512, 16, false);
    check_gate(NULL, 5, 512, 16, true);
    check_gate("sm_90a", 5, 512, 16, true);
    const char *targets[] = {"x86-avx512", "x86-avx2"};
    for (int t = 0; t < 2; t++)
        if (ir_target_runs_here(ir_target(targets[t]))) {
            check_gate(targets[t], 16, 4096, 256, false);   /* Flash decode: 256 experts, d 4096 */
            check_gate(targets[t], 9, 512, 16, true);
        }
}

/* A corrupt hash table routes nowhere rather than out of bounds: a token id
 * outside the vocabulary or an expert id outside [0, E) gives expert -1 and
 * weight 0 (the dispatch drops such slots); a token's other slots share
 * route_scale among themselves. */
TEST(moe_gate_hash_entries_out_of_range_route_nowhere)
{
    enum { M = 3, D = 256, E = 16, K = 6, V = 97 };
    uint16_t x[M * D], wg[E * D];
    float bias[E] = {0}, w[M * K];
    int32_t ids[M] = {5, V + 3, 11}, t2e[V * K], idx[M * K];
    unsigned seed = 9;
    for (int i = 0; i < M * D; i++)
        x[i] = dt_f32_to_bf16(test_rand(&seed));
    for (int i = 0; i < E * D; i++)
        wg[i] = dt_f32_to_bf16(test_rand(&seed) * 0.2f);
    for (int i = 0; i < V * K; i++)
        t2e[i] = i % E;
    t2e[5 * K + 1] = -1;     /* token 0: two bad entries */
    t2e[5 * K + 4] = E + 5;
    FeSet sets[] = {{"D", "256"}, {"E", "16"}, {"routing", "hash"}, {"V", "97"}};
    void *args[7] = {x, wg, bias, ids, t2e, idx, w};
    int64_t params[1] = {M};
    const char *targets[] = {NULL, "sm_90a", ir_host_target()->name};
    for (int t = 0; t < 3; t++) {
        CHECK(th_run("kernels_src/moe_gate.lua", sets, 4, targets[t], args, params, 2));
        for (int m = 0; m < M; m++) {
            double sum = 0;
            for (int k = 0; k < K; k++) {
                int32_t want = m == 1 ? -1 : t2e[ids[m] * K + k];
                bool bad = want < 0 || want >= E;
                CHECKF(idx[m * K + k] == (bad ? -1 : want), "%s token %d slot %d: expert %d, want %d",
                       th_name(targets[t]), m, k, idx[m * K + k], bad ? -1 : want);
                CHECKF(!bad || w[m * K + k] == 0, "%s token %d slot %d: weight %g for no expert",
                       th_name(targets[t]), m, k, w[m * K + k]);
                sum += w[m * K + k];
            }
            CHECKF(fabs(sum - (m == 1 ? 0.0 : 1.5)) < 1e-5, "%s token %d: weights sum to %g",
                   th_name(targets[t]), m, sum);
        }
    }
}

TEST(moe_gate_rejects_topk_beyond_the_experts)
{
    FeSet sets[] = {{"E", "4"}};
    Diag d = {0};
    CHECK(fe_load("kernels_src/moe_gate.lua", sets, 1, &d) == NULL);
    CHECKF(strstr(d.msg, "moe_gate: top-k 6 is larger than the 4 experts") != NULL, "%s", d.msg);
}

TEST(swiglu_quant_against_the_spec)
{
    /* gate and up values up to ±15 so both sides of the clamp are hit */
    const int M = 7, I = 2048;
    uint16_t *g = calloc((size_t)M * I, 2), *u = calloc((size_t)M * I, 2);
    float *gf = calloc((size_t)M * I, 4), *uf = calloc((size_t)M * I, 4), w[7];
    uint8_t *q = calloc((size_t)M * I, 1), *sc = calloc((size_t)M * I / 128, 1);
    float *qr = calloc((size_t)M * I, 4), *sr = calloc((size_t)M * I / 128, 4);
    unsigned seed = 53;
    for (int i = 0; i < M * I; i++) {
        g[i] = dt_f32_to_bf16(test_rand(&seed) * 15);
        u[i] = dt_f32_to_bf16(test_rand(&seed) * 15);
        gf[i] = dt_bf16_to_f32(g[i]);
        uf[i] = dt_bf16_to_f32(u[i]);
    }
    for (int t = 0; t < M; t++) {
        w[t] = 0.05f + 0.5f * (test_rand(&seed) + 1);
        ref_swiglu_quant(I, gf + (int64_t)t * I, uf + (int64_t)t * I, w[t], 10, qr + (int64_t)t * I, sr + t * (I / 128));
    }
    const char *targets[] = {NULL, "x86-avx512", "x86-avx2", "sm_90a"};
    for (size_t t = 0; t < 4; t++) {
        if (!th_runs_here(targets[t]))
            continue;
        FeSet sets[] = {{"I", "2048"}};
        void *args[5] = {g, u, w, q, sc};
        int64_t params[1] = {M};
        CHECK(th_run("kernels_src/swiglu_quant.lua", sets, 1, targets[t], args, params, 2));
        int same = 0, far = 0, ssame = 0;
        for (int i = 0; i < M * I; i++) {
            float got = dt_e4m3_to_f32(q[i]) * dt_e8m0_to_f32(sc[i / 128]), want = qr[i] * sr[i / 128];
            same += dt_e4m3_to_f32(q[i]) == qr[i];
            far += fabsf(got - want) > ulp_of(want, 3);
        }
        for (int i = 0; i < M * I / 128; i++)
            ssame += dt_e8m0_to_f32(sc[i]) == sr[i];
        CHECKF(far == 0 && same >= M * I * 99 / 100 && ssame >= M * I / 128 * 97 / 100,
               "swiglu_quant on %s: %d of %d codes and %d of %d scales equal, %d beyond one step",
               targets[t] ? targets[t] : "interp", same, M * I, ssame, M * I / 128, far);
    }
    free(g); free(u); free(gf); free(uf); free(q); free(sc); free(qr); free(sr);
}

TEST(hc_head_against_the_spec)
{
    const int M = 6, D = 512, n = 4 * D;
    uint16_t *x = calloc((size_t)M * n, 2), *y = calloc((size_t)M * D, 2);
    float *xf = calloc((size_t)M * n, 4), *fn = calloc((size_t)4 * n, 4), *want = calloc(D, 4), scale[1], base[4];
    unsigned seed = 59;
    for (int i = 0; i < M * n; i++) {
        x[i] = dt_f32_to_bf16(test_rand(&seed) * 2);
        xf[i] = dt_bf16_to_f32(x[i]);
    }
    for (int i = 0; i < 4 * n; i++)
        fn[i] = test_rand(&seed) * 0.05f;
    scale[0] = 0.8f;
    for (int i = 0; i < 4; i++)
        base[i] = test_rand(&seed);
    const char *targets[] = {NULL, "x86-avx512", "x86-avx2", "sm_90a"};
    for (size_t t = 0; t < 4; t++) {
        if (!th_runs_here(targets[t]))
            continue;
        FeSet sets[] = {{"D", "512"}};
        void *args[5] = {x, fn, scale, base, y};
        int64_t params[1] = {M};
        CHECK(th_run("kernels_src/hc_head.lua", sets, 1, targets[t], args, params, 2));
        int far = 0, same = 0;
        for (int tok = 0; tok < M; tok++) {
            ref_hc_head(D, xf + (int64_t)tok * n, fn, scale, base, want);
            for (int d = 0; d < D; d++) {
                float got = dt_bf16_to_f32(y[tok * D + d]);
                float ulp = fmaxf(ulp_of(want[d], 7), 1e-5f);
                far += fabsf(got - want[d]) > ulp;
                same += got == want[d];
            }
        }
        CHECKF(far == 0 && same >= M * D * 95 / 100, "hc_head on %s: %d beyond one rounding, %d of %d equal",
               targets[t] ? targets[t] : "interp", far, same, M * D);
    }
    free(x); free(y); free(xf); free(fn); free(want);
}

TEST(q_norm_in_the_reference_bf16_steps)
{
    const int M = 5, H = 8, HD = 512; /* Flash heads; v4-mini heads are 192 */
    uint16_t *q = calloc((size_t)M * H * HD, 2), *y = calloc((size_t)M * H * HD, 2);
    float *qf = calloc((size_t)M * H * HD, 4), *want = calloc((size_t)M * H * HD, 4);
    unsigned seed = 61;
    for (int i = 0; i < M * H * HD; i++) {
        q[i] = dt_f32_to_bf16(test_rand(&seed) * (float)(1 + (i / HD) % 9));
        qf[i] = dt_bf16_to_f32(q[i]);
    }
    for (int i = 0; i < M * H; i++)
        ref_q_norm(HD, qf + (int64_t)i * HD, want + (int64_t)i * HD);
    const char *targets[] = {NULL, "x86-avx512", "x86-avx2", "sm_90a"};
    for (size_t t = 0; t < 4; t++) {
        if (!th_runs_here(targets[t]))
            continue;
        FeSet sets[] = {{"H", "8"}, {"HD", "512"}};
        void *args[2] = {q, y};
        int64_t params[1] = {M};
        CHECK(th_run("kernels_src/q_norm.lua", sets, 2, targets[t], args, params, 2));
        int same = 0, far = 0;
        for (int i = 0; i < M * H * HD; i++) {
            float got = dt_bf16_to_f32(y[i]);
            same += got == want[i];
            far += fabsf(got - want[i]) > ulp_of(want[i], 7);
        }
        CHECKF(far == 0 && same >= M * H * HD * 99 / 100, "q_norm on %s: %d of %d equal, %d beyond one ulp",
               targets[t] ? targets[t] : "interp", same, M * H * HD, far);
    }
    free(q); free(y); free(qf); free(want);
}

static void check_oproj(const char *target, int M, int G, int R, int GD, const char *bm)
{
    int64_t no = (int64_t)M * G * GD, nw = (int64_t)G * R * GD, nu = (int64_t)M * G * R;
    uint16_t *o = calloc((size_t)no, 2), *w = calloc((size_t)nw, 2), *u = calloc((size_t)nu, 2);
    float *of = calloc((size_t)no, 4), *wf = calloc((size_t)nw, 4), *want = calloc((size_t)nu, 4);
    unsigned seed = 67;
    for (int64_t i = 0; i < no; i++) {
        o[i] = dt_f32_to_bf16(test_rand(&seed));
        of[i] = dt_bf16_to_f32(o[i]);
    }
    for (int64_t i = 0; i < nw; i++) { /* each group's weights differ in scale: a group mix-up shows */
        w[i] = dt_f32_to_bf16(test_rand(&seed) * (float)(1 + i / ((int64_t)R * GD)) * 0.05f);
        wf[i] = dt_bf16_to_f32(w[i]);
    }
    ref_grouped_oproj(M, G, R, GD, of, wf, want);
    char gs[16], rs[16], ds[16];
    snprintf(gs, sizeof gs, "%d", G);
    snprintf(rs, sizeof rs, "%d", R);
    snprintf(ds, sizeof ds, "%d", GD);
    FeSet sets[] = {{"G", gs}, {"R", rs}, {"GD", ds}, {"BM", bm}};
    void *args[3] = {o, w, u};
    int64_t params[1] = {M};
    CHECK(th_run("kernels_src/grouped_oproj.lua", sets, bm ? 4 : 3, target, args, params, 2));
    int far = 0, same = 0;
    for (int64_t i = 0; i < nu; i++) {
        float got = dt_bf16_to_f32(u[i]);
        float ulp = fmaxf(ulp_of(want[i], 7), 1e-5f);
        far += fabsf(got - want[i]) > ulp;
        same += got == want[i];
    }
    CHECKF(far == 0 && same >= nu * 9 / 10, "grouped_oproj M=%d G=%d R=%d GD=%d on %s: %d beyond one rounding, %d of %lld equal",
           M, G, R, GD, target ? target : "interp", far, same, (long long)nu);
    free(o); free(w); free(u); free(of); free(wf); free(want);
}

/* The output head (§3.6 step 3): logits = y · headᵀ with bf16 y (the final
 * norm's output) and bf16 head, against a double-precision dot product of
 * the same values; f32 accumulation over D terms of magnitude ≤ 0.05. */
static void check_lm_head_tiles(const char *target, int M, int V, int D, const char *bm, const char *bv,
                                const char *bk)
{
    int64_t ny = (int64_t)M * D, nh = (int64_t)V * D, nl = (int64_t)M * V;
    uint16_t *y = calloc((size_t)ny, 2), *h = calloc((size_t)nh, 2);
    float *logits = calloc((size_t)nl, 4);
    unsigned seed = 71;
    for (int64_t i = 0; i < ny; i++)
        y[i] = dt_f32_to_bf16(test_rand(&seed) * 4.0f);
    for (int64_t i = 0; i < nh; i++)
        h[i] = dt_f32_to_bf16(test_rand(&seed) * 0.05f);
    char vs[16], ds[16];
    snprintf(vs, sizeof vs, "%d", V);
    snprintf(ds, sizeof ds, "%d", D);
    FeSet sets[] = {{"V", vs}, {"D", ds}, {"BM", bm}, {"BV", bv}, {"BK", bk}};
    void *args[3] = {y, h, logits};
    int64_t params[1] = {M};
    CHECK(th_run("kernels_src/lm_head.lua", sets, bv ? 5 : 3, target, args, params, 2));
    double worst = 0, tol = 1e-6 * D;
    for (int m = 0; m < M; m++)
        for (int v = 0; v < V; v++) {
            double want = 0;
            for (int k = 0; k < D; k++)
                want += (double)dt_bf16_to_f32(y[(int64_t)m * D + k]) * dt_bf16_to_f32(h[(int64_t)v * D + k]);
            double diff = fabs(want - logits[(int64_t)m * V + v]);
            worst = diff > worst || diff != diff ? diff : worst;
        }
    CHECKF(worst <= tol, "lm_head M=%d V=%d D=%d BM=%s on %s: max |diff| %g > %g", M, V, D, bm,
           target ? target : "interp", worst, tol);
    free(y); free(h); free(logits);
}

static void check_lm_head(const char *target, int M, int V, int D, const char *bm)
{
    check_lm_head_tiles(target, M, V, D, bm, NULL, NULL);
}

TEST(lm_head_on_the_last_positions)
{
    check_lm_head(NULL, 2, 300, 512, "1");                 /* v4-mini width, a partial vocab block */
    check_lm_head("sm_90a", 2, 300, 512, "16");
    const char *host = ir_host_target()->name;
    check_lm_head(host, 1, 2048, 512, "1");                /* v4-mini: vocab 2048 */
    if (test_large_shapes())
        check_lm_head(host, 4, 8192, 4096, "1");           /* Flash width (vocab cut to 8192 rows) */
    check_lm_head(host, 4, 1000, 4096, "16");
    check_lm_head_tiles(host, 1, 1000, 4096, "1", "32", "4096"); /* the decode GEMV's tiles (bench_ops) */
}

/* wo_b (§3.4 step 16) is fp8_gemm at [d, G·1024]: act_quant'ed u against
 * the FP8 weight with 128x128 scales. */
TEST(wo_b_is_fp8_gemm_at_its_shape)
{
    if (test_large_shapes())
        check_fp8_gemm(ir_host_target()->name, 4, 4096, 8192); /* Flash: d 4096, G·1024 = 8192 */
    check_fp8_gemm(ir_host_target()->name, 2, 512, 1024);  /* v4-mini-like: d 512 */
}

TEST(grouped_output_projection)
{
    check_oproj(NULL, 3, 2, 256, 768, NULL); /* v4-mini: 2 groups of 8·192/2, o_lora 256 */
    check_oproj("sm_90a", 3, 2, 256, 768, NULL);
    check_oproj("sm_90a", 40, 2, 256, 768, "64"); /* 64-row tiles: wgmma, rows past M */
    const char *targets[] = {"x86-avx512", "x86-avx2"};
    for (int t = 0; t < 2; t++)
        if (ir_target_runs_here(ir_target(targets[t]))) {
            check_oproj(targets[t], 5, 2, 256, 768, NULL);
            check_oproj(targets[t], 4, 8, 1024, 4096, NULL); /* Flash decode */
        }
}

/* bh: the head tile (0: 16 where H allows, else 8) */
static void check_attn(const char *target, int M, int H, int D, int L, int NKV, int bh)
{
    int64_t nq = (int64_t)M * H * D, nkv = (int64_t)NKV * D;
    uint16_t *q = calloc((size_t)nq, 2), *kv = calloc((size_t)nkv, 2), *o = calloc((size_t)nq, 2);
    float *qf = calloc((size_t)nq, 4), *kf = calloc((size_t)nkv, 4), *want = calloc((size_t)nq, 4);
    float *got = calloc((size_t)nq, 4), *sink = calloc(H, 4);
    int32_t *idx = calloc((size_t)M * L, 4);
    unsigned seed = 71;
    for (int64_t i = 0; i < nq; i++) {
        q[i] = dt_f32_to_bf16(test_rand(&seed) * 2);
        qf[i] = dt_bf16_to_f32(q[i]);
    }
    for (int64_t i = 0; i < nkv; i++) {
        kv[i] = dt_f32_to_bf16(test_rand(&seed));
        kf[i] = dt_bf16_to_f32(kv[i]);
    }
    for (int h = 0; h < H; h++)
        sink[h] = test_rand(&seed) * 3;
    for (int t = 0; t < M; t++)
        for (int j = 0; j < L; j++) {
            unsigned r = (unsigned)(test_rand(&seed) * 1e6f + 1e6f);
            idx[t * L + j] = r % 5 == 0 ? -1 : (int32_t)(r % (unsigned)NKV);
            if (t == 1 && j < 64)
                idx[t * L + j] = -1; /* a whole key block masked */
            if (t == 2)
                idx[t * L + j] = -1; /* nothing visible: o = 0 */
        }
    for (int t = 0; t < M; t++)
        ref_sparse_attn(H, D, qf + (int64_t)t * H * D, kf, idx + t * L, L, sink, want + (int64_t)t * H * D);
    char hs[16], ds[16], lsz[16], ns[16], bhs[16];
    snprintf(bhs, sizeof bhs, "%d", bh ? bh : H % 16 ? 8 : 16);
    snprintf(hs, sizeof hs, "%d", H);
    snprintf(ds, sizeof ds, "%d", D);
    snprintf(lsz, sizeof lsz, "%d", L);
    snprintf(ns, sizeof ns, "%d", NKV);
    FeSet sets[] = {{"H", hs}, {"D", ds}, {"L", lsz}, {"NKV", ns}, {"BH", bhs}};
    void *args[5] = {q, kv, idx, sink, o};
    int64_t params[1] = {M};
    CHECK(th_run("kernels_src/sparse_attn.lua", sets, 5, target, args, params, 2));
    double worst = 0, mag = 0;
    for (int64_t i = 0; i < nq; i++) {
        got[i] = dt_bf16_to_f32(o[i]);
        worst = fmax(worst, fabs(got[i] - want[i]));
        mag = fmax(mag, fabs(want[i]));
    }
    double diff = ref_calc_diff(got, want, nq);
    bool zero = true; /* token 2 sees nothing */
    for (int64_t i = 2 * H * D; M > 2 && i < 3 * (int64_t)H * D; i++)
        zero &= got[i] == 0;
    /* bf16 P and a bf16 output: a few parts in a thousand of the largest value */
    CHECKF(worst <= 1e-2 * mag && diff < 1e-5 && zero, "sparse_attn H=%d D=%d L=%d on %s: max |diff| %.3g of %.3g, calc_diff %.2e%s",
           H, D, L, target ? target : "interp", worst, mag, diff, zero ? "" : ", a fully masked query is not 0");
    free(q); free(kv); free(o); free(qf); free(kf); free(want); free(got); free(sink); free(idx);
}

TEST(sparse_attention_with_sink)
{
    check_attn(NULL, 3, 8, 192, 128, 150, 0);                  /* v4-mini heads */
    check_attn("sm_90a", 3, 8, 192, 128, 150, 0);
    check_attn("sm_90a", 3, 64, 128, 128, 150, 64);  /* 64-head tiles: P.V on wgmma, B MN-major */
    const char *targets[] = {"x86-avx512", "x86-avx2"};
    for (int t = 0; t < 2; t++)
        if (ir_target_runs_here(ir_target(targets[t]))) {
            check_attn(targets[t], 3, 8, 192, 128, 150, 0);
            check_attn(targets[t], 4, 64, 512, 640, 1000, 0);   /* Flash decode: 128 window + 512 top-k */
        }
    /* a 64K-entry compressed context, on the best target this CPU runs */
    if (test_large_shapes())
        check_attn(ir_host_target()->name, 3, 64, 512, 640, 65536 + 128, 0);
}

/* Indexer scores then top-k (§3.4.2), the selection compared as index sets
 * where the kernel's f32 scores may swap near-equal neighbours. */
static void check_indexer(const char *target, int M, int N, int K, int ratio)
{
    const int IH = 64, ID = 128;
    uint16_t *q = calloc((size_t)M * IH * ID, 2), *kk = calloc((size_t)N * ID, 2);
    float *qf = calloc((size_t)M * IH * ID, 4), *kf = calloc((size_t)N * ID, 4), *w = calloc((size_t)M * IH, 4);
    float *score = calloc((size_t)M * N, 4);
    double *want = calloc((size_t)N, 8);
    int32_t *pos = calloc(M, 4), *idx = calloc((size_t)M * K, 4), *ridx = calloc(K, 4);
    unsigned seed = 73;
    for (int i = 0; i < M * IH * ID; i++) {
        q[i] = dt_f32_to_bf16(test_rand(&seed));
        qf[i] = dt_bf16_to_f32(q[i]);
    }
    for (int i = 0; i < N * ID; i++) {
        kk[i] = dt_f32_to_bf16(test_rand(&seed));
        kf[i] = dt_bf16_to_f32(kk[i]);
    }
    for (int i = 0; i < M * IH; i++)
        w[i] = test_rand(&seed) * 0.011f;
    for (int t = 0; t < M; t++) /* from a few visible blocks (fewer than K) to all of them */
        pos[t] = t == 0 ? 3 * ratio : (t * 7919) % (N * ratio);
    char ns[16], ks[16], rs[16];
    snprintf(ns, sizeof ns, "%d", N);
    snprintf(ks, sizeof ks, "%d", K);
    snprintf(rs, sizeof rs, "%d", ratio);
    FeSet lsets[] = {{"N", ns}, {"ratio", rs}};
    void *largs[5] = {q, kk, w, pos, score};
    int64_t params[1] = {M};
    CHECK(th_run("kernels_src/indexer_logits.lua", lsets, 2, target, largs, params, 2));
    FeSet tsets[] = {{"N", ns}, {"K", ks}, {"offset", "128"}};
    void *targs[2] = {score, idx};
    CHECK(th_run("kernels_src/topk.lua", tsets, 3, target, targs, params, 2));
    double worst = 0;
    int wrong = 0;
    for (int t = 0; t < M; t++) {
        ref_indexer_logits(IH, ID, qf + (int64_t)t * IH * ID, kf, N, w + t * IH, pos[t], ratio, want);
        for (int n = 0; n < N; n++) {
            if (isinf(want[n]) || isinf(score[t * N + n])) {
                wrong += isinf(want[n]) != isinf(score[t * N + n]);
                continue;
            }
            worst = fmax(worst, fabs(score[t * N + n] - want[n]));
        }
        ref_topk(N, K, want, 128, ridx);
        double kth = INFINITY;
        for (int k = 0; k < K; k++)
            if (ridx[k] >= 0)
                kth = fmin(kth, want[ridx[k] - 128]);
        for (int k = 0; k < K; k++) {
            int32_t e = idx[t * K + k];
            bool in_ref = false;
            for (int j = 0; j < K; j++)
                in_ref |= ridx[j] == e;
            bool tie = e >= 128 && fabs(want[e - 128] - kth) < 1e-4;
            if (!in_ref && !tie && wrong++ < 3)
                printf("  token %d: position %d is not among the reference's top-%d\n", t, e, K);
        }
    }
    CHECKF(wrong == 0 && worst < 1e-4, "indexer N=%d K=%d on %s: %d wrong, max score |diff| %.2e", N, K,
           target ? target : "interp", wrong, worst);
    free(q); free(kk); free(qf); free(kf); free(w); free(score); free(want); free(pos); free(idx); free(ridx);
}

TEST(indexer_scores_and_topk)
{
    check_indexer(NULL, 3, 64, 16, 4);                     /* v4-mini: top-16 */
    check_indexer("sm_90a", 3, 64, 16, 4);
    const char *targets[] = {"x86-avx512", "x86-avx2"};
    for (int t = 0; t < 2; t++)
        if (ir_target_runs_here(ir_target(targets[t]))) {
            check_indexer(targets[t], 3, 64, 16, 4);
            check_indexer(targets[t], 4, 4096, 512, 4);    /* Flash: top-512 over 16K tokens' blocks */
        }
}

static void check_compress(const char *target, int Tn, int r, int D)
{
    int c = r == 4 ? 2 : 1;
    int64_t n = (int64_t)Tn * c * D, no = (int64_t)(Tn / r) * D;
    float *kv = calloc((size_t)n, 4), *g = calloc((size_t)n, 4), *ape = calloc((size_t)r * c * D, 4);
    float *out = calloc((size_t)no, 4), *want = calloc((size_t)no, 4);
    unsigned seed = 79;
    for (int64_t i = 0; i < n; i++) {
        kv[i] = test_rand(&seed);
        g[i] = test_rand(&seed) * 4;
    }
    for (int i = 0; i < r * c * D; i++)
        ape[i] = test_rand(&seed);
    ref_compress(Tn, r, D, kv, g, ape, want);
    char ts[16], rs[16], ds[16];
    snprintf(ts, sizeof ts, "%d", Tn);
    snprintf(rs, sizeof rs, "%d", r);
    snprintf(ds, sizeof ds, "%d", D);
    FeSet sets[] = {{"T", ts}, {"ratio", rs}, {"D", ds}};
    void *args[4] = {kv, g, ape, out};
    CHECK(th_run("kernels_src/compress.lua", sets, 3, target, args, NULL, 2));
    double worst = 0;
    for (int64_t i = 0; i < no; i++)
        worst = fmax(worst, fabs(out[i] - want[i]));
    CHECKF(worst < 2e-6, "compress T=%d r=%d D=%d on %s: max |diff| %.2e", Tn, r, D, target ? target : "interp", worst);
    free(kv); free(g); free(ape); free(out); free(want);
}

TEST(compressor_pooling_overlap_and_not)
{
    check_compress(NULL, 32, 4, 128);                 /* CSA with overlap; the indexer's D 128 */
    check_compress("sm_90a", 32, 4, 128);
    check_compress(NULL, 64, 16, 128);                /* v4-mini HCA */
    check_compress("sm_90a", 64, 16, 128);
    const char *targets[] = {"x86-avx512", "x86-avx2"};
    for (int t = 0; t < 2; t++)
        if (ir_target_runs_here(ir_target(targets[t]))) {
            check_compress(targets[t], 512, 4, 512);  /* CSA, 512-token prefill */
            check_compress(targets[t], 512, 128, 512); /* Flash HCA */
            check_compress(targets[t], 64, 16, 128);
        }
}

TEST(hc_post_fused_with_the_next_hc_pre)
{
    /* against the composition of the two references: X' from ref_hc_post,
     * then ref_hc_pre on that bf16 X' */
    const int M = 5, D = 512, n = 4 * D;
    uint16_t *f = calloc((size_t)M * D, 2), *r = calloc((size_t)M * n, 2), *x = calloc((size_t)M * n, 2);
    uint16_t *y = calloc((size_t)M * D, 2);
    float *ff = calloc((size_t)M * D, 4), *rf = calloc((size_t)M * n, 4), *fn = calloc((size_t)24 * n, 4);
    float *wx = calloc((size_t)n, 4), *wy = calloc(D, 4), post[5 * 4], comb[5 * 16], scale[3], base[24];
    float post2[5 * 4], comb2[5 * 16], wpost[4], wcomb[16];
    unsigned seed = 83;
    for (int i = 0; i < M * D; i++) {
        f[i] = dt_f32_to_bf16(test_rand(&seed));
        ff[i] = dt_bf16_to_f32(f[i]);
    }
    for (int i = 0; i < M * n; i++) {
        r[i] = dt_f32_to_bf16(test_rand(&seed) * 2);
        rf[i] = dt_bf16_to_f32(r[i]);
    }
    for (int i = 0; i < M * 4; i++)
        post[i] = 1 + test_rand(&seed);
    for (int i = 0; i < M * 16; i++)
        comb[i] = 0.5f + 0.5f * test_rand(&seed);
    for (int i = 0; i < 24 * n; i++)
        fn[i] = test_rand(&seed) * 0.05f;
    for (int i = 0; i < 3; i++)
        scale[i] = 0.75f + 0.25f * test_rand(&seed);
    for (int i = 0; i < 24; i++)
        base[i] = test_rand(&seed);
    const char *targets[] = {NULL, "x86-avx512", "x86-avx2", "sm_90a"};
    for (size_t t = 0; t < 4; t++) {
        if (!th_runs_here(targets[t]))
            continue;
        FeSet sets[] = {{"D", "512"}};
        void *args[11] = {f, r, post, comb, fn, scale, base, x, y, post2, comb2};
        int64_t params[1] = {M};
        CHECK(th_run("kernels_src/hc_post_pre.lua", sets, 1, targets[t], args, params, 2));
        int xfar = 0, yfar = 0;
        double worst = 0;
        for (int tok = 0; tok < M; tok++) {
            ref_hc_post(D, ff + tok * D, rf + (int64_t)tok * n, post + tok * 4, comb + tok * 16, wx);
            ref_hc_pre(D, wx, fn, scale, base, wy, wpost, wcomb);
            for (int k = 0; k < n; k++) {
                float got = dt_bf16_to_f32(x[(int64_t)tok * n + k]);
                xfar += fabsf(got - wx[k]) > fmaxf(ulp_of(wx[k], 7), 1e-5f);
            }
            for (int d = 0; d < D; d++) {
                float got = dt_bf16_to_f32(y[tok * D + d]);
                yfar += fabsf(got - wy[d]) > fmaxf(ulp_of(wy[d], 7), 1e-5f);
            }
            for (int i = 0; i < 4; i++)
                worst = fmax(worst, fabs(post2[tok * 4 + i] - wpost[i]) / fabs(wpost[i]));
            for (int i = 0; i < 16; i++)
                worst = fmax(worst, fabs(comb2[tok * 16 + i] - wcomb[i]));
        }
        CHECKF(xfar == 0 && yfar == 0 && worst < 2e-5, "hc_post_pre on %s: x %d and y %d beyond one rounding, post/comb %.2e",
               targets[t] ? targets[t] : "interp", xfar, yfar, worst);
    }
    free(f); free(r); free(x); free(y); free(ff); free(rf); free(fn); free(wx); free(wy);
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
    RUN(fp4_act_quant_bit_exact);
    RUN(kv_fp8_simulation_bit_exact);
    RUN(kv_fp8_simulation_rejects_a_bad_head_split);
    RUN(hadamard_rotation);
    RUN(rope_forward_and_inverse_with_and_without_yarn);
    RUN(rmsnorm_quant_against_the_spec);
    RUN(rmsnorm_alone_and_composed_with_act_quant);
    RUN(fp8_gemm_two_level);
    RUN(hc_pre_against_the_spec);
    RUN(hc_post_against_the_spec);
    RUN(hc_head_against_the_spec);
    RUN(hc_post_fused_with_the_next_hc_pre);
    RUN(q_norm_in_the_reference_bf16_steps);
    RUN(grouped_output_projection);
    RUN(sparse_attention_with_sink);
    RUN(indexer_scores_and_topk);
    RUN(compressor_pooling_overlap_and_not);
    RUN(moe_gate_topk_and_hash_routing);
    RUN(moe_gate_rejects_topk_beyond_the_experts);
    RUN(moe_gate_hash_entries_out_of_range_route_nowhere);
    RUN(swiglu_quant_against_the_spec);
    RUN(lm_head_on_the_last_positions);
    RUN(wo_b_is_fp8_gemm_at_its_shape);
    return test_summary();
}
