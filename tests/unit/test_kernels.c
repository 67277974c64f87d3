/* test_kernels.c — every example kernel, run by the interpreter, by the
 * JIT on each target this CPU runs, by the interpreter's SIMT mode on the
 * GPU-lowered kernel (threads, shared memory, barriers, race checks) and on
 * the CUDA device when there is one, at many shapes (tile multiples and not,
 * 1-element edges, dyn dims, 1 and 2 threads), against the plain-C
 * references of tests/ref. */
#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "ref/ref.h"
#include "runtime/cuda.h"
#include "test.h"
#include "tests/harness/run.h"

#include <float.h>
#include <math.h>
#include <string.h>

enum { MAXARGS = 8 };

/* A kernel's arguments as f32 arrays (what the references read) plus the
 * storage in the argument's own dtype (what the kernel reads). */
typedef struct Args {
    int n;
    float *f[MAXARGS];
    void *raw[MAXARGS];
    int64_t numel[MAXARGS];
    DType dt[MAXARGS];
} Args;

static void args_free(Args *a)
{
    for (int i = 0; i < a->n; i++) {
        free(a->f[i]);
        free(a->raw[i]);
    }
}

/* Random inputs, already rounded to each argument's dtype (so the
 * references see exactly what the kernel sees). */
static void args_make(const Kernel *k, const int64_t *params, Args *a, unsigned seed)
{
    a->n = k->nargs;
    for (int i = 0; i < k->nargs; i++) {
        const Buffer *b = k->bufs[i];
        int64_t n = 1, dim;
        for (int d = 0; d < b->rank; d++) {
            ir_eval_int(b->shape[d], params, &dim);
            n *= dim;
        }
        a->numel[i] = n;
        a->dt[i] = b->dtype;
        a->f[i] = calloc((size_t)n + 1, sizeof(float));
        a->raw[i] = calloc(dt_storage_bytes(b->dtype, n) + 64, 1);
        for (int64_t j = 0; j < n && b->dir != ARG_OUT; j++) {
            float v = test_rand(&seed);
            dt_store(b->dtype, a->raw[i], j, v);
            a->f[i][j] = (float)dt_load(b->dtype, a->raw[i], j);
        }
    }
}

static void args_read_back(Args *a)
{
    for (int i = 0; i < a->n; i++)
        for (int64_t j = 0; j < a->numel[i]; j++)
            a->f[i][j] = (float)dt_load(a->dt[i], a->raw[i], j);
}

typedef enum Mode { INTERP, JIT, SIMT, GPU } Mode;

static bool run_gpu(Kernel *k, const TargetInfo *t, void *const *args, const int64_t *params, Diag *d)
{
    size_t bytes[MAXARGS];
    for (int i = 0; i < k->nargs; i++) {
        int64_t n = 1, dim;
        for (int r = 0; r < k->bufs[i]->rank; r++) {
            ir_eval_int(k->bufs[i]->shape[r], params, &dim);
            n *= dim;
        }
        bytes[i] = dt_storage_bytes(k->bufs[i]->dtype, n);
    }
    CgGpuArgs a = {args, bytes, params};
    return pass_pipeline(k, t, NULL, d) && cg_gpu_run(k, t, &a, 1, NULL, d);
}

/* Run a Tile IR kernel with the interpreter, or lower it and run it: JIT on
 * this CPU, SIMT interpretation of the GPU lowering, or the GPU. */
static bool execute(Kernel *k, Mode mode, const char *target, int threads, void *const *args,
                    const int64_t *params, Diag *d)
{
    if (mode == INTERP)
        return ir_interp(k, args, params, d);
    const TargetInfo *t = ir_target(target);
    if (mode == SIMT)
        return pass_pipeline(k, t, NULL, d) && ir_interp(k, args, params, d);
    if (mode == GPU)
        return run_gpu(k, t, args, params, d);
    CgJit *j = NULL;
    bool ok = pass_pipeline(k, t, NULL, d) && (j = cg_jit_compile(k, t, d)) &&
              cg_launch(k, cg_jit_fn(j), args, params, threads, d);
    cg_jit_free(j);
    return ok;
}

/* Run spec with sets on fresh random inputs; outputs land in a->f. */
static bool run_spec(const char *spec, const FeSet *sets, int nsets, const int64_t *params, Mode mode,
                     const char *target, int threads, Args *a)
{
    Diag d = {0};
    Kernel *k = fe_load(spec, sets, nsets, &d);
    if (!k) {
        diag_print(&d, stdout);
        return false;
    }
    args_make(k, params, a, 42);
    bool ok = execute(k, mode, target, threads, a->raw, params, &d);
    if (!ok)
        diag_print(&d, stdout);
    args_read_back(a);
    ir_kernel_free(k);
    return ok;
}

/* The executors to compare: the interpreter, and the JIT per target and
 * thread count (targets this CPU cannot run are reported as skipped). */
typedef struct Exec {
    Mode mode;
    const char *target;
    int threads;
} Exec;

static const Exec execs[] = {
    {INTERP, NULL, 0},
    {JIT, "x86-avx512", 1},
    {JIT, "x86-avx512", 2},
    {JIT, "x86-avx2", 2},
    {SIMT, "sm_90a", 0},
    {GPU, "sm_90a", 0},
};
enum { NEXECS = sizeof execs / sizeof execs[0] };

/* Is there a CUDA device (asked once; "skipped" said once)? */
static bool gpu_present(void)
{
    static int state; /* 0 unknown, 1 yes, 2 no */
    if (!state) {
        Diag d = {0};
        CuDevice *dev = cu_open(&d);
        state = dev ? 1 : 2;
        if (dev)
            printf("GPU: %s (sm_%d)\n", cu_device_name(dev), cu_sm_version(dev));
        else
            printf("skipped: no CUDA device (%s)\n", d.msg);
        cu_close(dev);
    }
    return state == 1;
}

static bool exec_available(const Exec *e)
{
    if (e->mode == INTERP || e->mode == SIMT)
        return true;
    if (e->mode == GPU)
        return gpu_present();
    static bool said[2];
    bool ok = ir_target_runs_here(ir_target(e->target));
    int which = !strcmp(e->target, "x86-avx2");
    if (!ok && !said[which]) {
        printf("skipped: this CPU cannot run %s\n", e->target);
        said[which] = true;
    }
    return ok;
}

/* Builds spec with sets and runs it on e with args. */
static bool run_spec_on(const Exec *e, const char *spec, const FeSet *sets, int nsets, void *const *args, Diag *d)
{
    Kernel *k = fe_load(spec, sets, nsets, d);
    if (!k)
        return false;
    bool ok = execute(k, e->mode, e->target, e->threads, args, NULL, d);
    ir_kernel_free(k);
    return ok;
}

static const char *exec_name(const Exec *e)
{
    static char buf[64];
    if (e->mode == INTERP)
        return "interpreter";
    if (e->mode != JIT) {
        snprintf(buf, sizeof buf, "%s %s", e->target, e->mode == SIMT ? "SIMT interpreter" : "GPU");
        return buf;
    }
    snprintf(buf, sizeof buf, "%s/%d thread(s)", e->target, e->threads);
    return buf;
}

static char num[16][32];
static const char *itoa_slot(int slot, int64_t v)
{
    snprintf(num[slot], sizeof num[slot], "%lld", (long long)v);
    return num[slot];
}

/* ------------------------------------------------------------------ gemm */

/* bm: the row tile (NULL: the spec's default). */
static void check_gemm_bm(const char *dtype, int M, int N, int K, const char *bm)
{
    FeSet sets[] = {{"M", itoa_slot(0, M)}, {"N", itoa_slot(1, N)}, {"K", itoa_slot(2, K)}, {"dtype", dtype},
                    {"BM", bm}};
    for (int e = 0; e < NEXECS; e++) {
        if (!exec_available(&execs[e]))
            continue;
        Args a = {0};
        bool ok = run_spec("examples/gemm.lua", sets, bm ? 5 : 4, NULL, execs[e].mode, execs[e].target,
                           execs[e].threads, &a);
        CHECKF(ok, "gemm %s %dx%dx%d on %s did not run", dtype, M, N, K, exec_name(&execs[e]));
        if (ok) {
            float *ref = calloc((size_t)M * N, sizeof(float));
            ref_gemm(M, N, K, a.f[0], a.f[1], ref);
            /* f32 accumulation of K products of magnitude <= 1; a GPU's fp8
             * tensor cores keep their sum with ~13 fraction bits (2^-12 of
             * it per instruction, drifting with K, measured on an H200:
             * 0.008 at K = 256) */
            bool fp8_mma = execs[e].mode == GPU && !strcmp(dtype, "f8e4m3");
            double tol = fp8_mma ? 1e-4 * K + 1e-4 : 1e-6 * K + 1e-6;
            double diff = ref_max_abs_diff(ref, a.f[2], (int64_t)M * N);
            CHECKF(diff <= tol, "gemm %s %dx%dx%d on %s: max |diff| %g > %g", dtype, M, N, K,
                   exec_name(&execs[e]), diff, tol);
            free(ref);
        }
        args_free(&a);
    }
}

static void check_gemm(const char *dtype, int M, int N, int K) { check_gemm_bm(dtype, M, N, K, NULL); }

TEST(gemm_f32_shapes)
{
    /* tile multiples, non-multiples of every tile size (BM 192, BN 64, BK 128,
     * micro tiles 6x32), and 1-element edges */
    static const int shapes[][3] = {
        {96, 128, 256}, {67, 45, 131}, {1, 1, 1}, {1, 100, 7}, {49, 65, 129}, {5, 33, 2}, {200, 31, 300},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        check_gemm("f32", shapes[i][0], shapes[i][1], shapes[i][2]);
}

TEST(gemm_bf16_shapes)
{
    static const int shapes[][3] = {{96, 128, 256}, {67, 45, 131}, {1, 1, 1}, {16, 64, 3}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        check_gemm("bf16", shapes[i][0], shapes[i][1], shapes[i][2]);
}

/* e4m3 operands: tensor cores of sm_89+ (m16n8k32) on the GPU, widened on
 * the CPU; the products are exact in f32 like bf16's. */
TEST(gemm_fp8_shapes)
{
    static const int shapes[][3] = {{96, 128, 256}, {67, 45, 131}, {16, 64, 3}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        check_gemm("f8e4m3", shapes[i][0], shapes[i][1], shapes[i][2]);
}

/* B as [K, N] (tests/specs/gemm_kn.lua): on AVX-512 with vdpbf16ps its
 * tile is packed in k-pairs by zipping rows 2kk and 2kk + 1 (lower_gemm.c,
 * stage_row_pairs) — windows inside the matrices, tails in every
 * dimension, and an odd K. */
TEST(gemm_kn_bf16_shapes)
{
    static const int shapes[][3] = {{64, 128, 256}, {37, 50, 30}, {20, 33, 67}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        int M = shapes[i][0], N = shapes[i][1], K = shapes[i][2];
        FeSet sets[] = {{"M", itoa_slot(0, M)}, {"N", itoa_slot(1, N)}, {"K", itoa_slot(2, K)}, {"dtype", "bf16"}};
        for (int e = 0; e < NEXECS; e++) {
            if (!exec_available(&execs[e]))
                continue;
            Args a = {0};
            bool ok = run_spec("tests/specs/gemm_kn.lua", sets, 4, NULL, execs[e].mode, execs[e].target,
                               execs[e].threads, &a);
            CHECKF(ok, "gemm_kn %dx%dx%d on %s did not run", M, N, K, exec_name(&execs[e]));
            if (ok) {
                float *bt = malloc((size_t)N * K * sizeof(float)), *ref = calloc((size_t)M * N, sizeof(float));
                for (int k = 0; k < K; k++) /* ref_gemm's B is [N, K] */
                    for (int n = 0; n < N; n++)
                        bt[(int64_t)n * K + k] = a.f[1][(int64_t)k * N + n];
                ref_gemm(M, N, K, a.f[0], bt, ref);
                double diff = ref_max_abs_diff(ref, a.f[2], (int64_t)M * N), tol = 1e-6 * K + 1e-6;
                CHECKF(diff <= tol, "gemm_kn %dx%dx%d on %s: max |diff| %g > %g", M, N, K, exec_name(&execs[e]),
                       diff, tol);
                free(bt);
                free(ref);
            }
            args_free(&a);
        }
    }
}

/* Row tiles of up to 16 rows run as dot tiles along K on the CPU (decode):
 * one row, row bands with a remainder (4 = 3 + 1 on AVX2), 16 rows; tails
 * in N and in K (K not a multiple of the 8, 16 or 32 elements per step);
 * rows of A 4 or 8 KiB apart (K 2048), which the tiles read from a copy
 * with padded rows (lower_gemm's dot_a_copy). */
TEST(gemm_decode_rows)
{
    static const int shapes[][3] = {{1, 100, 300}, {2, 64, 256}, {3, 33, 129}, {16, 40, 37}, {7, 9, 70}, {5, 40, 2048}};
    static const char *dtypes[] = {"f32", "bf16", "f8e4m3"};
    static const char *bms[] = {"1", "4", "16"};
    for (int d = 0; d < 3; d++)
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
            for (int b = 0; b < 3; b++)
                check_gemm_bm(dtypes[d], shapes[i][0], shapes[i][1], shapes[i][2], bms[b]);
}

/* bf16 at one row where the core streams one run of weight rows best
 * (TargetInfo.one_stream, Zen 4): one weight row at a time, two chains per
 * sum (codegen/micro.c, pair_chains; fails with the odd chain's sum left
 * out — checked); K 300's last step in a zero-padded window; and as
 * before, in 1x4 tiles. */
TEST(gemm_one_row_bf16_one_stream)
{
    if (!th_runs_here("x86-avx512"))
        return;
    static const int shapes[][2] = {{50, 320}, {50, 300}, {9, 2048}};
    for (int one = 0; one < 2; one++)
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            int N = shapes[i][0], K = shapes[i][1];
            TargetInfo ti = *ir_target("x86-avx512");
            ti.has_bf16_dot = ti.split_512 = true;
            ti.subnormal_assists = false;
            ti.one_stream = one;
            FeSet sets[] = {{"M", "1"}, {"N", itoa_slot(0, N)}, {"K", itoa_slot(1, K)}, {"dtype", "bf16"}};
            Diag d = {0};
            Kernel *k = fe_load_for("examples/gemm.lua", sets, 4, &ti, &d); /* choose: the decode tiles */
            CHECKF(k, "gemm bf16 1x%dx%d does not load", N, K);
            if (!k)
                continue;
            Args a = {0};
            args_make(k, NULL, &a, 7);
            CgJit *j = NULL;
            bool ok = pass_pipeline(k, &ti, NULL, &d) && (j = cg_jit_compile(k, &ti, &d)) &&
                      cg_launch(k, cg_jit_fn(j), a.raw, NULL, 1, &d);
            CHECKF(ok, "gemm bf16 1x%dx%d (one stream %d): %s", N, K, one, d.msg);
            args_read_back(&a);
            float ref[64];
            ref_gemm(1, N, K, a.f[0], a.f[1], ref);
            double diff = ref_max_abs_diff(ref, a.f[2], N), tol = 1e-6 * K + 1e-6;
            CHECKF(!ok || diff <= tol, "gemm bf16 1x%dx%d (one stream %d): max |diff| %g > %g", N, K, one, diff, tol);
            cg_jit_free(j);
            args_free(&a);
            ir_kernel_free(k);
        }
}

/* A copy of a read-only weight tile into scratch that only feeds a decode
 * GEMM is skipped when the dot tile can read the weights in place — but
 * not for packed fp4, which it cannot (it once read the nibbles as bytes).
 * Every e2m1 code appears in B; c[i][n] against a double sum. */
TEST(fp4_weights_copied_for_a_decode_gemm)
{
    static const char *src = "kernel fp4w level tile\n"
                             "arg a: bf16[3, 64] in\n"
                             "arg w: f4e2m1[40, 64] in\n"
                             "arg c: f32[3, 40] out\n"
                             "buf as: shared bf16[3, 64]\n"
                             "buf ws: shared bf16[40, 64]\n"
                             "buf acc: fragment f32[3, 40]\n"
                             "grid (g) < [1]\n"
                             "{\n"
                             "  copy a[0 +: 3, 0 +: 64] -> as\n"
                             "  copy w[0 +: 40, 0 +: 64] -> ws\n"
                             "  gemm as, ws -> acc trans_b clear\n"
                             "  copy acc -> c[0 +: 3, 0 +: 40]\n"
                             "}\n";
    uint16_t a[3 * 64];
    uint8_t w[40 * 32];
    unsigned seed = 5;
    for (int i = 0; i < 3 * 64; i++)
        a[i] = dt_f32_to_bf16(test_rand(&seed));
    for (int i = 0; i < 40 * 32; i++)
        w[i] = (uint8_t)((i * 37 + 11) & 0xff);
    for (int e = 0; e < NEXECS; e++) {
        if (!exec_available(&execs[e]) || execs[e].mode == GPU)
            continue;
        Diag d = {0};
        Kernel *k = ir_parse(src, "fp4w.tir", &d);
        float c[3 * 40];
        void *args[3] = {a, w, c};
        bool ok = k && execute(k, execs[e].mode, execs[e].target, 1, args, NULL, &d);
        CHECKF(ok, "%s: %s", exec_name(&execs[e]), d.msg);
        for (int i = 0; ok && i < 3; i++)
            for (int n = 0; n < 40; n++) {
                double want = 0;
                for (int kk = 0; kk < 64; kk++) {
                    int idx = n * 64 + kk;
                    unsigned nib = idx % 2 ? w[idx / 2] >> 4 : w[idx / 2] & 15;
                    want += (double)dt_bf16_to_f32(a[i * 64 + kk]) * ref_decode_e2m1((uint8_t)nib);
                }
                CHECKF(fabs(c[i * 40 + n] - want) <= 1e-4, "%s: c[%d][%d] = %g, want %g", exec_name(&execs[e]), i, n,
                       c[i * 40 + n], want);
            }
        ir_kernel_free(k);
    }
}

/* A dot tile widens its fp8 operand in registers (codegen/micro.c): every
 * code of both formats, NaN and ±inf included, through a product with
 * known rows — C[i][n] = Σ_k a_i · decode(n) = 40 · a_i · decode(n), exact
 * in f32 — with A in f32 and in bf16.  K = 40 is one 16- or 32-element
 * step and a masked tail. */
TEST(dot_tiles_widen_every_fp8_code)
{
    static const char *fmts[] = {"f8e4m3", "f8e5m2"}, *adts[] = {"f32", "bf16"};
    static const float rows[3] = {1.0f, 0.5f, -1.0f};
    for (int f = 0; f < 2; f++)
        for (int t = 0; t < 2; t++) {
            char src[1024];
            snprintf(src, sizeof src,
                     "kernel dotw level tile\n"
                     "arg a: %s[3, 40] in\n"
                     "arg b: %s[256, 40] in\n"
                     "arg c: f32[3, 256] out\n"
                     "buf acc: fragment f32[3, 256]\n"
                     "grid (g) < [1]\n"
                     "{\n"
                     "  gemm a[0 +: 3, 0 +: 40], b[0 +: 256, 0 +: 40] -> acc trans_b clear\n"
                     "  copy acc -> c[0 +: 3, 0 +: 256]\n"
                     "}\n",
                     adts[t], fmts[f]);
            float af[3 * 40];
            uint16_t ab[3 * 40];
            uint8_t codes[256 * 40];
            for (int i = 0; i < 3 * 40; i++) {
                af[i] = rows[i / 40];
                ab[i] = dt_f32_to_bf16(af[i]);
            }
            for (int i = 0; i < 256 * 40; i++)
                codes[i] = (uint8_t)(i / 40);
            for (int e = 0; e < NEXECS; e++) {
                if (!exec_available(&execs[e]) || execs[e].mode == GPU)
                    continue;
                Diag d = {0};
                Kernel *k = ir_parse(src, "dotw.tir", &d);
                static float c[3 * 256];
                void *args[3] = {t ? (void *)ab : (void *)af, codes, c};
                bool ok = k && execute(k, execs[e].mode, execs[e].target, 1, args, NULL, &d);
                CHECKF(ok, "%s %s x %s: %s", exec_name(&execs[e]), adts[t], fmts[f], d.msg);
                int bad = 0;
                for (int i = 0; ok && i < 3; i++)
                    for (int n = 0; n < 256; n++) {
                        float v = f ? ref_decode_e5m2((uint8_t)n) : ref_decode_e4m3((uint8_t)n);
                        float want = 40.0f * rows[i] * v, got = c[i * 256 + n];
                        if (!((isnan(want) && isnan(got)) || got == want) && bad++ < 3)
                            CHECKF(false, "%s %s x %s: c[%d][%02x] = %g, want %g", exec_name(&execs[e]), adts[t],
                                   fmts[f], i, n, got, want);
                    }
                CHECKF(bad == 0, "%s %s x %s: %d wrong", exec_name(&execs[e]), adts[t], fmts[f], bad);
                ir_kernel_free(k);
            }
        }
}

/* e4m3 x e4m3: the dot tile widens B through F16C, or (for a target whose
 * FMAs take subnormals at full speed, TargetInfo subnormal_assists false)
 * straight into f32's fields (a 2^-120 scale, undone with A's lift: staged
 * — micro_gemm a_lifted; codegen/micro.c, e4m3_direct), or (a 512-bit
 * target with a fast vdpbf16ps, TargetInfo has_bf16_dot, at two rows or
 * more) to bf16 words beside A staged bf16 (e4m3_words).  Every pair of
 * codes, NaN, ±0 and subnormals included, through tests/specs/dot_fp8.lua
 * compiled once per target and row count: a row of A = one code i along all
 * of K, row n of B = code n, so C[., n] = K · a · b, exact in f32 (e4m3
 * values are multiples of 2^-9 with four significant bits).  K = 40 runs
 * whole steps and a masked tail; with S > 0 both operands are scaled, A per
 * S-wide block (2^-3, 2^2), row n of B per SB-wide one (sb_exp), applied
 * to each block's sums in registers — the finer of the two blocks: C[n] =
 * a · b · Σ_k sa sb, still exact (the terms lie within 2^9 of each other).
 * Those scales lie within the window the bf16-word tiles fold into their
 * operands (ir.h, IR_FOLD_SCALE_LO/HI); `scales` OUT_OF_WINDOW takes A's
 * below it (2^-60, 2^-58) and B's above it (times 2^55), which those tiles
 * promote per block instead, A's bf16 copy holding the scale clamped into
 * the window (micro_gemm a_prescaled) and the tile the rest; NAN_SCALE
 * makes A's second block's scale NaN.  With bt f4e2m1, row n of B is
 * packed e2m1 code n % 16 (both nibbles of every byte): the same over
 * every e4m3 code of A times every e2m1 code. */
typedef enum { IN_WINDOW, OUT_OF_WINDOW, NAN_SCALE } PairScales;

/* Row n's scale exponent in B's scale block j (the first two as they
 * were when B had at most two). */
static int sb_exp(int n, int j)
{
    return j == 0 ? n % 5 - 2 : j == 1 ? -(n % 3) : (n + j) % 4 - 2;
}

static void check_dot_pairs(const TargetInfo *target, DType bt, int M, int K, int S, int SB, PairScales scales)
{
    enum { N = 256, MAX_M = 16, MAX_K = 256, MAX_SB = MAX_K / 32 };
    bool fp4 = bt == DT_F4E2M1;
    char ms[16], ks[16], ss[16], sbs[16], what[128];
    snprintf(ms, sizeof ms, "%d", M);
    snprintf(ks, sizeof ks, "%d", K);
    snprintf(ss, sizeof ss, "%d", S);
    snprintf(sbs, sizeof sbs, "%d", SB);
    static const char *scale_names[] = {"", " scales out of the window", " a NaN scale"};
    snprintf(what, sizeof what, "%s%s%s M=%d K=%d S=%d SB=%d%s", target->name, fp4 ? " e2m1 B" : "",
             target->has_bf16_dot ? " (B to bf16)" : target->subnormal_assists ? "" : " (B straight to f32)", M, K, S,
             SB, scale_names[scales]);
    FeSet sets[] = {{"M", ms}, {"N", "256"}, {"K", ks}, {"S", ss}, {"SB", sbs}, {"bdt", fp4 ? "f4e2m1" : "f8e4m3"}};
    ThKernel tk = {0};
    CHECKF(th_kernel_build_for(&tk, "tests/specs/dot_fp8.lua", sets, 6, target), "%s: does not build", what);
    if (!tk.k)
        return;
    int na = S ? K / S : 1, nb = S ? K / SB : 1, row_bytes = fp4 ? K / 2 : K;
    static uint8_t a[MAX_M * MAX_K], b[N * MAX_K], sa[MAX_M * 2], sb[N * MAX_SB];
    static float c[MAX_M * N];
    double sav[2] = {0.125, 4}, sbv[N][MAX_SB];
    int b_exp = 0;
    if (scales == OUT_OF_WINDOW) {
        sav[0] = ldexp(1, -60);
        sav[1] = ldexp(1, -58);
        b_exp = 55;
    } else if (scales == NAN_SCALE) {
        sav[1] = NAN;
    }
    for (int n = 0; n < N; n++) {
        memset(b + n * row_bytes, fp4 ? n % 16 * 17 : n, (size_t)row_bytes);
        for (int j = 0; j < nb; j++) {
            sbv[n][j] = ldexp(1, sb_exp(n, j) + b_exp);
            sb[n * nb + j] = dt_f32_to_e8m0((float)sbv[n][j]);
        }
    }
    for (int r = 0; r < M; r++)
        for (int j = 0; j < na; j++)
            sa[r * na + j] = dt_f32_to_e8m0((float)sav[j]);
    int bad = 0;
    /* row r of launch l holds code l·M + r */
    for (int l = 0; l * M < 256 && bad < 3; l++) {
        for (int r = 0; r < M; r++)
            memset(a + r * K, (l * M + r) % 256, (size_t)K);
        void *args[5] = {a, b, sa, sb, c};
        CHECKF(th_kernel_run(&tk, args, NULL, 1), "%s: does not run", what);
        for (int r = 0; r < M; r++)
            for (int n = 0; n < N; n++) {
                int i = (l * M + r) % 256;
                double bv = fp4 ? ref_decode_e2m1((uint8_t)(n % 16)) : ref_decode_e4m3((uint8_t)n);
                double p = (double)ref_decode_e4m3((uint8_t)i) * bv, want = K * p;
                if (S) {
                    double sum = 0;
                    for (int k = 0; k < K; k++)
                        sum += sav[k / S] * sbv[n][k / SB];
                    want = p * sum;
                }
                float got = c[r * N + n];
                bool right = isnan(want) ? isnan(got) : got == (float)want;
                if (!right && bad++ < 3)
                    CHECKF(false, "%s: a %02x, b %02x: %g, want %g", what, i, fp4 ? n % 16 : n, got, want);
            }
    }
    CHECKF(bad == 0, "%s: wrong products", what);
    th_kernel_free(&tk);
}

/* 1 row, 3 (one band) and 16 (two bands of 8); unscaled, scaled per
 * 32-block on both sides, nested blocks, and blocks of 64 and 128 (two
 * steps and more: a one-column tile's two chains, codegen/micro.c's
 * pair_chains); every way of widening B, and bf16 words at one row both
 * in 1x8 tiles and one weight row at a time (TargetInfo.one_stream). */
TEST(dot_tiles_e4m3_by_e4m3_every_pair)
{
    const char *targets[] = {"x86-avx512", "x86-avx2"};
    static const int rows[] = {1, 3, 16};
    for (int t = 0; t < 2; t++) {
        if (!th_runs_here(targets[t]))
            continue;
        for (int way = 0; way < 4; way++) { /* F16C, straight to f32, bf16 words (one stream) */
            TargetInfo ti = *ir_target(targets[t]);
            ti.subnormal_assists = way == 0;
            ti.has_bf16_dot = way >= 2;
            ti.split_512 = way >= 2; /* bf16 words at one row too */
            ti.one_stream = way == 3;
            if (way >= 2 && ti.vector_bits != 512)
                continue;
            for (int r = 0; r < 3; r++) {
                check_dot_pairs(&ti, DT_F8E4M3, rows[r], 256, 128, 128, IN_WINDOW);
                check_dot_pairs(&ti, DT_F8E4M3, rows[r], 256, 128, 64, OUT_OF_WINDOW);
                check_dot_pairs(&ti, DT_F8E4M3, rows[r], 256, 128, 128, NAN_SCALE);
                check_dot_pairs(&ti, DT_F8E4M3, rows[r], 40, 0, 0, IN_WINDOW);
                check_dot_pairs(&ti, DT_F8E4M3, rows[r], 64, 32, 32, IN_WINDOW);
                check_dot_pairs(&ti, DT_F8E4M3, rows[r], 64, 32, 64, IN_WINDOW); /* nested: promoted per A's 32 */
                check_dot_pairs(&ti, DT_F8E4M3, rows[r], 64, 64, 32, IN_WINDOW); /* and per B's 32 */
                check_dot_pairs(&ti, DT_F8E4M3, rows[r], 64, 32, 64, OUT_OF_WINDOW);
                check_dot_pairs(&ti, DT_F8E4M3, rows[r], 64, 32, 32, NAN_SCALE);
            }
        }
    }
}

/* e4m3 A by packed e2m1 B, both block-scaled (an MoE expert's GEMM):
 * where the target has a fast vdpbf16ps, A staged bf16 in e2m1 order and
 * B decoded to bf16 words (codegen/micro.c, dot_pair8_block), the scales
 * folded into both at two rows and more (A's bf16 copy prescaled) or
 * promoted per block (at one row without A's residual where its codes lie
 * in the window, a_unit_versions: fails applying that version to the
 * codes out of it — checked); elsewhere the byte- or f32-table tiles.  1 row, 2
 * (2x2 tiles, two chains per sum), 3, 8 (8x2, one chain) and 16 (bands);
 * B's scales per 32, 64 and 128; out of the window and NaN. */
TEST(dot_tiles_e4m3_by_e2m1_every_pair)
{
    const char *targets[] = {"x86-avx512", "x86-avx2"};
    static const int rows[] = {1, 2, 3, 8, 16};
    for (int t = 0; t < 2; t++) {
        if (!th_runs_here(targets[t]))
            continue;
        for (int dot = 0; dot < 2; dot++) {
            TargetInfo ti = *ir_target(targets[t]);
            ti.has_bf16_dot = dot == 1;
            if (dot && ti.vector_bits != 512)
                continue;
            for (int r = 0; r < 5; r++) {
                check_dot_pairs(&ti, DT_F4E2M1, rows[r], 256, 128, 32, IN_WINDOW);
                check_dot_pairs(&ti, DT_F4E2M1, rows[r], 256, 128, 64, IN_WINDOW);
                check_dot_pairs(&ti, DT_F4E2M1, rows[r], 256, 128, 128, IN_WINDOW);
                check_dot_pairs(&ti, DT_F4E2M1, rows[r], 256, 128, 32, OUT_OF_WINDOW);
                check_dot_pairs(&ti, DT_F4E2M1, rows[r], 256, 128, 32, NAN_SCALE);
            }
        }
    }
}

/* The dot tiles widen e4m3 B without its NaN codes and scan each column
 * for them apart (codegen/micro.c, dot_b_nans): one NaN weight, at every
 * position of K (the scan's 32-byte steps and its masked tail, K = 40),
 * either sign, must make its column NaN and leave the others exact.  Rows
 * of B below K hold a NaN at their own index; the rest none, but the
 * finite codes next to it (±448, ±416).  1, 3 and 16 rows of A (one band,
 * bands, all rows of a block). */
TEST(dot_tiles_find_each_e4m3_nan)
{
    enum { K = 40, N = 2 * K + 8 };
    static const int rows[] = {1, 3, 16};
    for (int r = 0; r < 3; r++) {
        int M = rows[r];
        char src[1024];
        snprintf(src, sizeof src,
                 "kernel dotnan level tile\n"
                 "arg a: bf16[%d, %d] in\n"
                 "arg b: f8e4m3[%d, %d] in\n"
                 "arg c: f32[%d, %d] out\n"
                 "buf acc: fragment f32[%d, %d]\n"
                 "grid (g) < [1]\n"
                 "{\n"
                 "  gemm a[0 +: %d, 0 +: %d], b[0 +: %d, 0 +: %d] -> acc trans_b clear\n"
                 "  copy acc -> c[0 +: %d, 0 +: %d]\n"
                 "}\n",
                 M, K, N, K, M, N, M, N, M, K, N, K, M, N);
        static uint16_t a[16 * K];
        static uint8_t b[N * K];
        static float c[16 * N];
        unsigned seed = 5;
        for (int i = 0; i < M * K; i++)
            a[i] = dt_f32_to_bf16((float)((int)(rand_r(&seed) % 17) - 8) / 8);
        for (int n = 0; n < N; n++)
            for (int k = 0; k < K; k++) {
                static const uint8_t edge[4] = {0x7e, 0xfe, 0x7d, 0xfd};
                uint8_t v = (uint8_t)(rand_r(&seed) % 256);
                if ((v & 0x7f) == 0x7f || k % 5 == 0)
                    v = edge[(n + k) % 4];
                b[n * K + k] = n < K && k == n ? (n % 2 ? 0xff : 0x7f) : v;
            }
        for (int e = 0; e < NEXECS; e++) {
            if (!exec_available(&execs[e]) || execs[e].mode == GPU)
                continue;
            Diag d = {0};
            Kernel *k = ir_parse(src, "dotnan.tir", &d);
            void *args[3] = {a, b, c};
            bool ok = k && execute(k, execs[e].mode, execs[e].target, 1, args, NULL, &d);
            CHECKF(ok, "%s M=%d: %s", exec_name(&execs[e]), M, d.msg);
            int bad = 0;
            for (int i = 0; ok && i < M; i++)
                for (int n = 0; n < N; n++) {
                    double want = 0, mag = 0;
                    for (int kk = 0; kk < K; kk++) {
                        double x = dt_bf16_to_f32(a[i * K + kk]) * (double)ref_decode_e4m3(b[n * K + kk]);
                        want += x;
                        mag += fabs(x);
                    }
                    float got = c[i * N + n];
                    bool right = isnan(want) ? isnan(got) : fabs(got - want) <= 1e-6 * mag;
                    if (!right && bad++ < 3)
                        CHECKF(false, "%s M=%d: c[%d][%d] = %g, want %g", exec_name(&execs[e]), M, i, n, got, want);
                }
            CHECKF(bad == 0, "%s M=%d: %d wrong", exec_name(&execs[e]), M, bad);
            ir_kernel_free(k);
        }
    }
}

/* A dot tile reads a block-scaled packed e2m1 B in place (codegen/micro.c:
 * table lookup, sign, scale; elsewhere lowering dequantises it): C = A ·
 * (B ⊙ expand(S))ᵀ with B [16, K] and 1x32 scales S [16, K / 32], at K
 * 64 and 128 (tiles of one and two rows read A in e2m1 order: micro_gemm
 * a_decode_order) and 96 (no 64-element blocks: A in its own order).
 *   exact: row n of B is code n everywhere (all 16 codes, ±0 included),
 *     scales 2^-3 .. 2^3 per block, rows of A constant, so C[i][n] =
 *     a_i · e2m1(n) · 32 · (s[n][0] + s[n][1]) exactly in f32;
 *   mixed: random codes, A varying along K, f32 scales that are not
 *     powers of two, against a double sum — and against the same sum with
 *     each byte's nibbles swapped, which must fail: the inputs would catch
 *     a decoder that took the high nibble first. */
enum { FP4_KMAX = 128, FP4_MMAX = 16 };

static const char *fp4_src(const char *adt, const char *sdt, int M, int K)
{
    static char src[1024];
    snprintf(src, sizeof src,
             "kernel dotf4 level tile\n"
             "arg a: %s[%d, %d] in\n"
             "arg b: f4e2m1[16, %d] in\n"
             "arg s: %s[16, %d] in\n"
             "arg c: f32[%d, 16] out\n"
             "buf acc: fragment f32[%d, 16]\n"
             "grid (g) < [1]\n"
             "{\n"
             "  gemm a[0 +: %d, 0 +: %d], b[0 +: 16, 0 +: %d] -> acc trans_b clear b_scale s[0 +: 16, 0 +: %d]\n"
             "  copy acc -> c[0 +: %d, 0 +: 16]\n"
             "}\n",
             adt, M, K, K, sdt, K / 32, M, M, M, K, K, K / 32, M);
    return src;
}

static bool run_fp4(const Exec *x, const char *src, void *a, void *b, void *s, float *c)
{
    Diag d = {0};
    Kernel *k = ir_parse(src, "dotf4.tir", &d);
    void *args[4] = {a, b, s, c};
    bool ok = k && execute(k, x->mode, x->target, 1, args, NULL, &d);
    CHECKF(ok, "%s: %s", exec_name(x), d.msg);
    ir_kernel_free(k);
    return ok;
}

/* Σ_k a[i][k] · e2m1(B[n][k]) · s[n][k / 32], nibbles swapped on request. */
static double fp4_dot(const float *a, const uint8_t *b, const float *s, int K, int i, int n, bool swap, double *mag)
{
    double sum = 0;
    *mag = 0;
    for (int k = 0; k < K; k++) {
        int idx = n * K + k;
        bool high = (idx % 2 == 1) != swap;
        unsigned nib = high ? b[idx / 2] >> 4 : b[idx / 2] & 15;
        double t = (double)a[i * K + k] * ref_decode_e2m1((uint8_t)nib) * s[n * (K / 32) + k / 32];
        sum += t;
        *mag += fabs(t);
    }
    return sum;
}

/* exact: row n of B is code n in every nibble, rows of A constant */
static void check_fp4_codes_exact(int M, int K)
{
    static const char *adts[] = {"f32", "bf16"};
    static const float rows[3] = {1.0f, 0.5f, -1.0f};
    static float af[FP4_MMAX * FP4_KMAX];
    static uint16_t ab[FP4_MMAX * FP4_KMAX];
    uint8_t codes[16 * FP4_KMAX / 2], s8[16 * FP4_KMAX / 32];
    int nb = K / 32;
    for (int t = 0; t < 2; t++) {
        for (int i = 0; i < M * K; i++) {
            af[i] = rows[i / K % 3];
            ab[i] = dt_f32_to_bf16(af[i]);
        }
        for (int i = 0; i < 16 * K / 2; i++)
            codes[i] = (uint8_t)((i / (K / 2)) * 17); /* code n in both nibbles of row n */
        for (int i = 0; i < 16 * nb; i++)
            s8[i] = (uint8_t)(127 + (i * 5) % 7 - 3);
        for (int e = 0; e < NEXECS; e++) {
            if (!exec_available(&execs[e]) || execs[e].mode == GPU)
                continue;
            static float c[FP4_MMAX * 16];
            if (!run_fp4(&execs[e], fp4_src(adts[t], "e8m0", M, K), t ? (void *)ab : (void *)af, codes, s8, c))
                continue;
            int bad = 0;
            for (int i = 0; i < M; i++)
                for (int n = 0; n < 16; n++) {
                    float scales = 0;
                    for (int b = 0; b < nb; b++)
                        scales += ref_decode_e8m0(s8[nb * n + b]);
                    float want = rows[i % 3] * ref_decode_e2m1((uint8_t)n) * 32.0f * scales;
                    float got = c[i * 16 + n];
                    bool same = got == want; /* (a sum from +0: -0 terms give +0) */
                    if (!same && bad++ < 3)
                        CHECKF(false, "%s %s M=%d K=%d: c[%d][%x] = %g, want %g", exec_name(&execs[e]), adts[t], M, K,
                               i, n, got, want);
                }
            CHECKF(bad == 0, "%s %s x e2m1 M=%d K=%d: %d wrong", exec_name(&execs[e]), adts[t], M, K, bad);
        }
    }
}

/* mixed: random codes and A, f32 scales, against a double sum */
static void check_fp4_codes_mixed(int M, int K)
{
    static const char *adts[] = {"f32", "bf16"};
    static float af[FP4_MMAX * FP4_KMAX];
    static uint16_t ab[FP4_MMAX * FP4_KMAX];
    float sf[16 * FP4_KMAX / 32];
    uint8_t codes[16 * FP4_KMAX / 2];
    unsigned seed = 7;
    for (int i = 0; i < M * K; i++) {
        af[i] = test_rand(&seed);
        ab[i] = dt_f32_to_bf16(af[i]);
        af[i] = dt_bf16_to_f32(ab[i]); /* the same values in both dtypes */
    }
    for (int i = 0; i < 16 * K / 2; i++)
        codes[i] = (uint8_t)((test_rand(&seed) + 1.0f) * 128.0f);
    for (int i = 0; i < 16 * K / 32; i++)
        sf[i] = 0.3f + 0.7f * (float)(i % 8) / 7.0f * (i % 3 == 1 ? -1.0f : 1.0f);
    for (int t = 0; t < 2; t++)
        for (int e = 0; e < NEXECS; e++) {
            if (!exec_available(&execs[e]) || execs[e].mode == GPU)
                continue;
            static float c[FP4_MMAX * 16];
            if (!run_fp4(&execs[e], fp4_src(adts[t], "f32", M, K), t ? (void *)ab : (void *)af, codes, sf, c))
                continue;
            int bad = 0, caught = 0;
            for (int i = 0; i < M; i++)
                for (int n = 0; n < 16; n++) {
                    double mag, want = fp4_dot(af, codes, sf, K, i, n, false, &mag), tol = 1e-6 * mag;
                    double swapped = fp4_dot(af, codes, sf, K, i, n, true, &mag);
                    double got = c[i * 16 + n];
                    if (!(fabs(got - want) <= tol) && bad++ < 3)
                        CHECKF(false, "%s %s f32 scales: c[%d][%d] = %g, want %g", exec_name(&execs[e]), adts[t], i, n,
                               got, want);
                    caught += !(fabs(got - swapped) <= tol);
                }
            CHECKF(bad == 0, "%s %s f32 scales M=%d K=%d: %d wrong", exec_name(&execs[e]), adts[t], M, K, bad);
            CHECKF(caught >= M * 16 * 5 / 6, "%s %s M=%d K=%d: swapped nibbles would pass for %d of %d outputs",
                   exec_name(&execs[e]), adts[t], M, K, M * 16 - caught, M * 16);
        }
}

TEST(dot_tiles_widen_every_fp4_code)
{
    static const int Ks[] = {64, 96, 128};
    for (int M = 3; M >= 1; M--)
        for (int k = 0; k < 3; k++) {
            check_fp4_codes_exact(M, Ks[k]);
            check_fp4_codes_mixed(M, Ks[k]);
        }
}

/* 12 to 16 rows of a K a multiple of 64 (IR_BCAST_CHUNK) on AVX2:
 * broadcast tiles (micro_gemm trans_a trans_b; 12 and 14: the second
 * vector of rows masked), B decoded through the scaled f32 table into
 * their scratch; at K 96, and at 8 rows, the tall dot tiles. */
TEST(broadcast_tiles_decode_every_fp4_code)
{
    static const int Ms[] = {8, 12, 14, 16}, Ks[] = {64, 96, 128};
    for (int m = 0; m < 4; m++)
        for (int k = 0; k < 3; k++) {
            check_fp4_codes_exact(Ms[m], Ks[k]);
            check_fp4_codes_mixed(Ms[m], Ks[k]);
        }
}

/* Block scales on other operands and shapes, against a double sum of the
 * decoded, scaled operands (tolerance: f32 accumulation, 1e-5 of Σ|terms|):
 *   bf16 B with f32 1x32 scales and e4m3 B with e8m0 6x32 scales, decode
 *     rows: the dot tile scales B in registers (checked in the Loop IR);
 *   a scaled A (e8m0 1x32), and both scaled with B as [K, N] (no trans_b)
 *     in 20 rows: dequantised into scratch first. */
typedef struct ScaledCase {
    int M, N, K;
    const char *adt, *bdt, *sdt; /* the scales' dtype (both operands) */
    bool a_scaled, b_scaled, trans_b;
    int sa[2], sb[2];            /* scale shapes (window = buffer) */
    bool dot_scales_b;           /* the CPU's Loop IR has micro_gemm ... b_scale */
    bool bcast;                  /* ... as broadcast tiles (micro_gemm trans_a trans_b) */
} ScaledCase;

/* Element (r, c) of an [rows, cols] array of dtype dt, decoded. */
static double decoded(const char *dt, const void *p, int cols, int r, int c)
{
    size_t i = (size_t)r * (size_t)cols + (size_t)c;
    if (!strcmp(dt, "f32"))
        return ((const float *)p)[i];
    if (!strcmp(dt, "bf16"))
        return ref_decode_bf16(((const uint16_t *)p)[i]);
    if (!strcmp(dt, "f8e4m3"))
        return ref_decode_e4m3(((const uint8_t *)p)[i]);
    return ref_decode_e8m0(((const uint8_t *)p)[i]); /* e8m0 */
}

static void *fill_dtype(const char *dt, size_t n, unsigned *seed)
{
    void *p = calloc(n, 4);
    for (size_t i = 0; i < n; i++) {
        float v = test_rand(seed);
        if (!strcmp(dt, "f32"))
            ((float *)p)[i] = v * 1.5f;
        else if (!strcmp(dt, "bf16"))
            ((uint16_t *)p)[i] = dt_f32_to_bf16(v);
        else if (!strcmp(dt, "f8e4m3"))
            ((uint8_t *)p)[i] = dt_f32_to_e4m3(v * 8);
        else /* e8m0: 2^-3 .. 2^3 */
            ((uint8_t *)p)[i] = (uint8_t)(124 + (int)((v + 1) * 3.5f));
    }
    return p;
}

static void check_scaled_case(const ScaledCase *t)
{
    char src[1024], as[128] = "", bs[128] = "";
    int bro = t->trans_b ? t->N : t->K, bco = t->trans_b ? t->K : t->N; /* B's storage shape */
    if (t->a_scaled)
        snprintf(as, sizeof as, " a_scale sa[0 +: %d, 0 +: %d]", t->sa[0], t->sa[1]);
    if (t->b_scaled)
        snprintf(bs, sizeof bs, " b_scale sb[0 +: %d, 0 +: %d]", t->sb[0], t->sb[1]);
    snprintf(src, sizeof src,
             "kernel scaled level tile\n"
             "arg a: %s[%d, %d] in\n"
             "arg b: %s[%d, %d] in\n"
             "arg sa: %s[%d, %d] in\n"
             "arg sb: %s[%d, %d] in\n"
             "arg c: f32[%d, %d] out\n"
             "buf acc: fragment f32[%d, %d]\n"
             "grid (g) < [1]\n"
             "{\n"
             "  gemm a[0 +: %d, 0 +: %d], b[0 +: %d, 0 +: %d] -> acc%s clear%s%s\n"
             "  copy acc -> c[0 +: %d, 0 +: %d]\n"
             "}\n",
             t->adt, t->M, t->K, t->bdt, bro, bco, t->sdt, t->sa[0], t->sa[1], t->sdt, t->sb[0], t->sb[1], t->M,
             t->N, t->M, t->N, t->M, t->K, bro, bco, t->trans_b ? " trans_b" : "", as, bs, t->M, t->N);
    unsigned seed = 11;
    void *a = fill_dtype(t->adt, (size_t)t->M * t->K, &seed), *b = fill_dtype(t->bdt, (size_t)t->N * t->K, &seed);
    void *sa = fill_dtype(t->sdt, (size_t)t->sa[0] * t->sa[1], &seed);
    void *sb = fill_dtype(t->sdt, (size_t)t->sb[0] * t->sb[1], &seed);
    float *c = calloc((size_t)t->M * t->N, sizeof(float));
    Diag d = {0};
    Kernel *k = ir_parse(src, "scaled.tir", &d);
    CHECKF(k != NULL, "%s", d.msg);
    if (k && pass_pipeline(k, ir_target("x86-avx2"), NULL, &d)) {
        char *text = ir_print_string(k);
        bool dot = strstr(text, "b_scale") != NULL, bcast = strstr(text, "trans_a trans_b") != NULL;
        CHECKF(dot == t->dot_scales_b, "%s x %s, M=%d: the dot tiles %s B's scale", t->adt, t->bdt, t->M,
               dot ? "take" : "do not take");
        CHECKF(bcast == t->bcast, "%s x %s, M=%d: %sbroadcast tiles", t->adt, t->bdt, t->M, bcast ? "" : "no ");
        free(text);
    }
    ir_kernel_free(k);
    for (int e = 0; e < NEXECS; e++) {
        if (!exec_available(&execs[e]) || execs[e].mode == GPU)
            continue;
        k = ir_parse(src, "scaled.tir", &d);
        void *args[5] = {a, b, sa, sb, c};
        bool ok = k && execute(k, execs[e].mode, execs[e].target, 1, args, NULL, &d);
        CHECKF(ok, "%s: %s", exec_name(&execs[e]), d.msg);
        ir_kernel_free(k);
        int bad = 0;
        for (int i = 0; ok && i < t->M; i++)
            for (int n = 0; n < t->N; n++) {
                double want = 0, mag = 0;
                for (int kk = 0; kk < t->K; kk++) {
                    double x = decoded(t->adt, a, t->K, i, kk), y;
                    if (t->a_scaled)
                        x *= decoded(t->sdt, sa, t->sa[1], i / (t->M / t->sa[0]), kk / (t->K / t->sa[1]));
                    int r = t->trans_b ? n : kk, q = t->trans_b ? kk : n;
                    y = decoded(t->bdt, b, bco, r, q);
                    if (t->b_scaled)
                        y *= decoded(t->sdt, sb, t->sb[1], r / (bro / t->sb[0]), q / (bco / t->sb[1]));
                    want += x * y;
                    mag += fabs(x * y);
                }
                double got = c[i * t->N + n];
                if (!(fabs(got - want) <= 1e-5 * mag) && bad++ < 3)
                    CHECKF(false, "%s %s x %s M=%d: c[%d][%d] = %g, want %g", exec_name(&execs[e]), t->adt, t->bdt,
                           t->M, i, n, got, want);
            }
        CHECKF(bad == 0, "%s %s x %s M=%d: %d wrong", exec_name(&execs[e]), t->adt, t->bdt, t->M, bad);
    }
    free(a);
    free(b);
    free(sa);
    free(sb);
    free(c);
}

TEST(gemm_block_scales_other_operands)
{
    static const ScaledCase cases[] = {
        {3, 40, 256, "bf16", "bf16", "f32", false, true, true, {1, 1}, {40, 8}, true, false},
        {3, 48, 128, "f32", "f8e4m3", "e8m0", false, true, true, {1, 1}, {8, 4}, true, false},
        {2, 16, 64, "bf16", "f32", "e8m0", true, false, true, {2, 2}, {1, 1}, false, false},
        {20, 24, 64, "bf16", "bf16", "f32", true, true, false, {10, 2}, {2, 3}, false, false},
        /* broadcast tiles (14 to 16 rows on AVX2, K a multiple of 64): A
         * staged transposed times its scale (e4m3 1x128, fp8_gemm's), B's
         * 128x128 or 1x32 in the tiles; 14 and 15 rows: a masked vector;
         * 12 rows: dot tiles */
        {16, 20, 256, "f8e4m3", "f8e4m3", "e8m0", true, true, true, {16, 2}, {1, 2}, true, true},
        /* ... and over K 2048, where x86-avx512's e4m3 pair tiles (a
         * fast vdpbf16ps) run their 8-row bands in K chunks of 1024 (its
         * L1 is 32 KiB), C cleared first */
        {16, 4, 2048, "f8e4m3", "f8e4m3", "e8m0", true, true, true, {16, 16}, {1, 16}, true, true},
        {14, 14, 128, "bf16", "bf16", "f32", false, true, true, {1, 1}, {14, 4}, true, true},
        {15, 9, 64, "f32", "f8e4m3", "e8m0", true, true, true, {15, 1}, {9, 2}, true, true},
        {12, 9, 64, "f32", "f8e4m3", "e8m0", true, true, true, {12, 1}, {9, 2}, true, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_scaled_case(&cases[i]);
}

/* ------------------------------------------------------- row operations */

typedef void (*RowRef)(int M, int N, const Args *a, float *out);

static void softmax_ref(int M, int N, const Args *a, float *out) { ref_softmax(M, N, a->f[0], out); }
static void rmsnorm_ref(int M, int N, const Args *a, float *out)
{
    ref_rmsnorm(M, N, a->f[0], a->f[1], 1e-6f, out);
}
static void silu_ref(int M, int N, const Args *a, float *out)
{
    ref_silu_mul((int64_t)M * N, a->f[0], a->f[1], out);
}

static void check_rows(const char *spec, int M, int N, RowRef ref, int out_arg, double tol,
                       const char *extra_name, const char *extra_value)
{
    FeSet sets[3] = {{"M", itoa_slot(3, M)}, {"N", itoa_slot(4, N)}, {extra_name, extra_value}};
    for (int e = 0; e < NEXECS; e++) {
        if (!exec_available(&execs[e]))
            continue;
        Args a = {0};
        bool ok = run_spec(spec, sets, extra_name ? 3 : 2, NULL, execs[e].mode, execs[e].target,
                           execs[e].threads, &a);
        CHECKF(ok, "%s %dx%d on %s did not run", spec, M, N, exec_name(&execs[e]));
        if (ok) {
            float *want = calloc((size_t)M * N, sizeof(float));
            ref(M, N, &a, want);
            /* outputs in a low-precision dtype: compare after its rounding */
            if (a.dt[out_arg] == DT_BF16)
                for (int64_t i = 0; i < (int64_t)M * N; i++)
                    want[i] = ref_round_bf16(want[i]);
            double diff = ref_max_abs_diff(want, a.f[out_arg], (int64_t)M * N);
            CHECKF(diff <= tol, "%s %dx%d on %s: max |diff| %g > %g", spec, M, N, exec_name(&execs[e]), diff, tol);
            free(want);
        }
        args_free(&a);
    }
}

TEST(softmax_shapes)
{
    static const int shapes[][2] = {{16, 256}, {13, 1000}, {1, 1}, {3, 1}, {1, 513}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        check_rows("examples/softmax.lua", shapes[i][0], shapes[i][1], softmax_ref, 1, 2e-6, NULL, NULL);
}

TEST(rmsnorm_shapes)
{
    static const int shapes[][2] = {{16, 256}, {13, 1000}, {1, 1}, {9, 257}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        check_rows("examples/rmsnorm.lua", shapes[i][0], shapes[i][1], rmsnorm_ref, 2, 1e-5, NULL, NULL);
}

TEST(silu_mul_f32_and_bf16)
{
    static const int shapes[][2] = {{4, 512}, {7, 1000}, {1, 1}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        check_rows("examples/silu_mul.lua", shapes[i][0], shapes[i][1], silu_ref, 2, 1e-6, "dtype", "f32");
        /* bf16 output: one rounding of a value near the f32 result (<= 1 ulp) */
        check_rows("examples/silu_mul.lua", shapes[i][0], shapes[i][1], silu_ref, 2, 8e-3, "dtype", "bf16");
    }
}

/* ------------------------------------------------------------- dyn dims */

TEST(dyn_dimension_at_run_time)
{
    /* One compiled kernel serves every M: M is a runtime scalar. */
    Diag d = {0};
    Kernel *k = fe_load("examples/dyn_scale.lua", NULL, 0, &d);
    CHECK(k && k->nparams == 1);
    if (!k)
        return;
    const TargetInfo *t = ir_host_target();
    CgJit *j = NULL;
    CHECK(pass_pipeline(k, t, NULL, &d) && (j = cg_jit_compile(k, t, &d)));
    for (int64_t M = 0; j && M <= 40; M += 13) {
        int64_t N = 100, params[1] = {M};
        Args a = {0};
        args_make(k, params, &a, 7);
        CHECK(cg_launch(k, cg_jit_fn(j), a.raw, params, 2, &d));
        args_read_back(&a);
        for (int64_t i = 0; i < M * N; i++)
            CHECKF(a.f[1][i] == a.f[0][i] * 2.0f + 1.0f, "M=%lld element %lld", (long long)M, (long long)i);
        args_free(&a);
    }
    cg_jit_free(j);
    ir_kernel_free(k);
}

/* -------------------------------------------------------- atomic add */

TEST(atomic_add_across_blocks)
{
    /* 64 blocks all add their row sums into one accumulator concurrently. */
    const char *src =
        "kernel colsum level tile\n"
        "arg x: f32[64, 32] in\n"
        "arg y: f32[1, 32] inout\n"
        "buf t: fragment f32[1, 32]\n"
        "grid (b) < [64]\n"
        "{\n"
        "  copy x[b +: 1, 0 +: 32] -> t\n"
        "  atomic_add t -> y[0 +: 1, 0 +: 32]\n"
        "}\n";
    Diag d = {0};
    for (int e = 0; e < NEXECS; e++) {
        if (!exec_available(&execs[e]))
            continue;
        Kernel *k = ir_parse(src, "colsum.tir", &d);
        CHECK(k != NULL);
        if (!k) {
            diag_print(&d, stdout);
            return;
        }
        float x[64 * 32], y[32] = {0}, want[32] = {0};
        unsigned seed = 3;
        for (int i = 0; i < 64 * 32; i++) {
            x[i] = (float)(int)(test_rand(&seed) * 8); /* integers: any order sums exactly */
            want[i % 32] += x[i];
        }
        void *args[2] = {x, y};
        bool ok = execute(k, execs[e].mode, execs[e].target, execs[e].threads, args, NULL, &d);
        CHECKF(ok, "colsum on %s", exec_name(&execs[e]));
        for (int i = 0; ok && i < 32; i++)
            CHECKF(y[i] == want[i], "column %d on %s: %g != %g", i, exec_name(&execs[e]), y[i], want[i]);
        ir_kernel_free(k);
    }
}

TEST(max_and_min_follow_ieee_maximum_minimum)
{
    /* NaN anywhere in a row makes its max NaN; max(-0, +0) is +0 — the
     * same in the interpreter and in vectorised code. */
    const char *src =
        "kernel rowmax level tile\n"
        "arg x: f32[4, 40] in\n"
        "arg y: f32[4] out\n"
        "arg z: f32[4] out\n"
        "buf t: fragment f32[4, 40]\n"
        "buf r: fragment f32[4]\n"
        "grid (b) < [1]\n"
        "{\n"
        "  copy x[0 +: 4, 0 +: 40] -> t\n"
        "  reduce max axis 1 t -> r clear\n"
        "  copy r -> y[0 +: 4]\n"
        "  for i: parallel < 4 {\n"
        "    z[i] = min(x[i, 0], x[i, 1])\n"
        "  }\n"
        "}\n";
    for (int e = 0; e < NEXECS; e++) {
        if (!exec_available(&execs[e]))
            continue;
        Diag d = {0};
        Kernel *k = ir_parse(src, "rowmax.tir", &d);
        CHECK(k != NULL);
        if (!k)
            return;
        float x[4 * 40], y[4], z[4];
        for (int i = 0; i < 4 * 40; i++)
            x[i] = (float)(i % 40) - 50.0f;
        x[1 * 40 + 17] = NAN;      /* row 1: NaN inside */
        x[2 * 40 + 0] = NAN;       /* row 2: NaN first (also min's operand) */
        for (int i = 0; i < 40; i++) /* row 3: only zeros of both signs */
            x[3 * 40 + i] = (i % 2) ? 0.0f : -0.0f;
        void *args[3] = {x, y, z};
        bool ok = execute(k, execs[e].mode, execs[e].target, execs[e].threads, args, NULL, &d);
        CHECKF(ok, "rowmax on %s", exec_name(&execs[e]));
        CHECKF(y[0] == -11.0f && isnan(y[1]) && isnan(y[2]) && y[3] == 0 && !signbit(y[3]),
               "%s: max rows %g %g %g %g", exec_name(&execs[e]), y[0], y[1], y[2], y[3]);
        CHECKF(z[0] == -50.0f && isnan(z[2]) && z[3] == 0 && signbit(z[3]), "%s: min %g %g %g",
               exec_name(&execs[e]), z[0], z[2], z[3]);
        ir_kernel_free(k);
    }
}

/* llvm.maximum / llvm.minimum of two floats as the definition has them:
 * NaN if either is, -0 below +0. */
static float ieee_extreme(float a, float b, bool max)
{
    if (isnan(a) || isnan(b))
        return NAN;
    if (a == b) /* equal zeros of either sign: max +0 unless both -0 */
        return max ? (signbit(a) ? b : a) : (signbit(a) ? a : b);
    return (a > b) == max ? a : b;
}

TEST(max_and_min_against_signed_zeros)
{
    /* max and min of x and a constant +0 or -0, either side (codegen's
     * minmax.c turns those into a maxps / minps with the zero first): the
     * IEEE maximum / minimum bit for bit at NaN, both zeros, subnormals and
     * infinities, in vector lanes and a scalar tail (37 elements). */
    static const char *ops[] = {"max(x[i], 0.0)", "max(x[i], -0.0)", "min(x[i], 0.0)", "min(x[i], -0.0)",
                                "max(0.0, x[i])", "max(-0.0, x[i])", "min(0.0, x[i])", "min(-0.0, x[i])"};
    enum { N = 37, OPS = 8 };
    char src[2048];
    int at = snprintf(src, sizeof src,
                      "kernel zeroext level loop\n"
                      "arg x: f32[%d] in\n"
                      "arg y: f32[%d, %d] out\n"
                      "grid (b) < [1]\n"
                      "{\n"
                      "  for i: parallel < %d {\n",
                      N, OPS, N, N);
    for (int o = 0; o < OPS; o++)
        at += snprintf(src + at, sizeof src - (size_t)at, "    y[%d, i] = %s\n", o, ops[o]);
    snprintf(src + at, sizeof src - (size_t)at, "  }\n}\n");
    static const float vals[] = {0.0f, -0.0f, 1.0f, -1.0f, 1e-45f, -1e-45f, INFINITY, -INFINITY, 3.5f, -2e-39f};
    float x[N];
    for (int i = 0; i < N; i++)
        x[i] = vals[i % 10];
    x[11] = NAN;
    x[N - 1] = -NAN;
    for (int e = 0; e < NEXECS; e++) {
        if (!exec_available(&execs[e]))
            continue;
        Diag d = {0};
        Kernel *k = ir_parse(src, "zeroext.tir", &d);
        if (!k)
            diag_print(&d, stdout);
        CHECK(k != NULL);
        if (!k)
            return;
        float y[OPS * N];
        void *args[2] = {x, y};
        bool ok = execute(k, execs[e].mode, execs[e].target, execs[e].threads, args, NULL, &d);
        CHECKF(ok, "zeroext on %s", exec_name(&execs[e]));
        for (int o = 0; ok && o < OPS; o++)
            for (int i = 0; i < N; i++) {
                float z = o % 2 ? -0.0f : 0.0f, want = ieee_extreme(x[i], z, o % 4 < 2);
                float got = y[o * N + i];
                bool same = isnan(want) ? isnan(got) : memcmp(&got, &want, 4) == 0;
                CHECKF(same, "%s: %s at x = %g: %g, want %g", exec_name(&execs[e]), ops[o], x[i], got, want);
            }
        ir_kernel_free(k);
    }
}

/* How far y is from e (a double), in units in the last place of the
 * float nearest e (the least subnormal's below the normals). */
static double ulps_off(float y, double e)
{
    float r = (float)e;
    double ulp = fabs(r) < FLT_MIN ? ldexp(1, -149) : (double)nextafterf(fabsf(r), INFINITY) - fabs(r);
    return fabs((double)y - e) / ulp;
}

/* e^x or 2^x of one float against the math: within 1.5 ulps; 0 below the
 * subnormals' half step; inf past the largest float; NaN for a NaN. */
static bool exp_ok(float x, float y, bool base2)
{
    if (isnan(x))
        return isnan(y);
    double e = base2 ? exp2((double)x) : exp((double)x);
    if (e >= (double)FLT_MAX * (1 + ldexp(1, -23)))
        return isinf(y) && y > 0;
    if (isinf(y))
        return e >= (double)FLT_MAX * (1 - ldexp(1, -22));
    return ulps_off(y, e) <= 1.5;
}

/* ln x of one float against the math: within 1.5 ulps; -inf at ±0,
 * inf at inf, NaN below 0 and for a NaN. */
static bool log_ok(float x, float y)
{
    if (isnan(x) || x < 0)
        return isnan(y);
    if (x == 0)
        return isinf(y) && y < 0;
    if (isinf(x))
        return isinf(y) && y > 0;
    return ulps_off(y, log((double)x)) <= 1.5;
}

/* exp, exp2 and log on the CPU (codegen/vmath.c's arithmetic on the JIT
 * targets, libm in the interpreter) against double precision, over
 * their whole range: [-1, 1] densely, every binade's edges near overflow
 * and into the subnormals, the special values; log over the positive
 * floats' bit patterns (every binade, subnormals too) and around 1.  The
 * GPU executors are not run here: their ex2.approx and lg2.approx have
 * errors of their own (tests/gpu). */
TEST(cpu_exp_and_log_within_one_and_a_half_ulps)
{
    const char *src =
        "kernel exps level loop\n"
        "param N size 65536\n"
        "arg x: f32[65536] in\n"
        "arg y: f32[65536] out\n"
        "arg z: f32[65536] out\n"
        "arg u: f32[65536] in\n"
        "arg l: f32[65536] out\n"
        "grid (b) < [16]\n"
        "{\n"
        "  for i: parallel < 4096 {\n"
        "    y[b * 4096 + i] = exp(x[b * 4096 + i])\n"
        "    z[b * 4096 + i] = exp2(x[b * 4096 + i])\n"
        "    l[b * 4096 + i] = log(u[b * 4096 + i])\n"
        "  }\n"
        "}\n";
    enum { N = 65536 };
    static float x[N], y[N], z[N], u[N], l[N];
    const float log_special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -1.0f, 1.0f, FLT_MIN, FLT_MAX, 1e-45f,
                                 0.70710677f, 0.70710683f, 1.4142135f, 1.4142137f, nextafterf(1.0f, 0), nextafterf(1.0f, 2)};
    int nl = (int)(sizeof log_special / sizeof log_special[0]);
    for (int i = 0; i < N; i++) {
        if (i < nl) {
            u[i] = log_special[i];
        } else if (i < N / 2) {                    /* every positive bit pattern's neighbourhood, evenly */
            uint32_t bits = (uint32_t)((uint64_t)(i - nl) * 0x7f800000u / (N / 2 - nl));
            memcpy(&u[i], &bits, 4);
        } else {
            u[i] = 0.5f + 1.5f * (float)(i - N / 2) / (N / 2); /* around 1, where ln x is small */
        }
    }
    const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, 88.72283f, 88.72284f, 88.7229f,
                             -87.33654f, -87.33655f, -103.27893f, -103.97208f, -103.9721f, 127.99999f, 128.0f,
                             -126.0f, -149.0f, -149.5f, -150.0f, 1e-30f, -1e-30f, 0.5f * 0.6931472f};
    int ns = (int)(sizeof special / sizeof special[0]);
    for (int i = 0; i < N; i++) {
        if (i < ns)
            x[i] = special[i];
        else if (i < N / 2)
            x[i] = -1.0f + 2.0f * (float)i / (N / 2);         /* the polynomial's range and around */
        else
            x[i] = -155.0f + 250.0f * (float)(i - N / 2) / (N / 2); /* under- to overflow, both bases */
    }
    for (int e = 0; e < NEXECS; e++) {
        if (execs[e].mode == SIMT || execs[e].mode == GPU || !exec_available(&execs[e]))
            continue;
        Diag d = {0};
        Kernel *k = ir_parse(src, "exps.tir", &d);
        CHECK(k != NULL);
        if (!k)
            return;
        void *args[5] = {x, y, z, u, l};
        bool ok = execute(k, execs[e].mode, execs[e].target, execs[e].threads, args, NULL, &d);
        CHECKF(ok, "exps on %s: %s", exec_name(&execs[e]), d.msg);
        int bad = 0;
        for (int i = 0; ok && i < N && bad < 4; i++) {
            if (!exp_ok(x[i], y[i], false) || !exp_ok(x[i], z[i], true)) {
                bad++;
                CHECKF(false, "%s: exp(%.9g) = %.9g (%.2f ulps), exp2 = %.9g (%.2f ulps)", exec_name(&execs[e]),
                       x[i], y[i], ulps_off(y[i], exp(x[i])), z[i], ulps_off(z[i], exp2(x[i])));
            }
            if (!log_ok(u[i], l[i])) {
                bad++;
                CHECKF(false, "%s: log(%.9g) = %.9g (%.2f ulps)", exec_name(&execs[e]), u[i], l[i],
                       ulps_off(l[i], log(u[i])));
            }
        }
        ir_kernel_free(k);
    }
}

TEST(max_min_reductions_of_every_width_keep_nans_and_signed_zeros)
{
    /* Row max and min reductions at widths that vectorise whole (16, 64),
     * with a tail (37) and below a register (3): NaN at the start, middle
     * or end of a row, rows of zeros of both signs in either order, one of
     * subnormals — against the definition (x86-avx512 rewrites these into
     * vrangeps with a NaN test beside it: codegen/minmax.c). */
    static const int widths[] = {3, 16, 37, 64};
    for (int wi = 0; wi < 4; wi++) {
        int W = widths[wi];
        char src[1024];
        snprintf(src, sizeof src,
                 "kernel rowext level tile\n"
                 "arg x: f32[7, %d] in\n"
                 "arg y: f32[7] out\n"
                 "arg z: f32[7] out\n"
                 "buf t: fragment f32[7, %d]\n"
                 "buf r: fragment f32[7]\n"
                 "buf q: fragment f32[7]\n"
                 "grid (b) < [1]\n"
                 "{\n"
                 "  copy x[0 +: 7, 0 +: %d] -> t\n"
                 "  reduce max axis 1 t -> r clear\n"
                 "  reduce min axis 1 t -> q clear\n"
                 "  copy r -> y[0 +: 7]\n"
                 "  copy q -> z[0 +: 7]\n"
                 "}\n",
                 W, W, W);
        float x[7 * 64], want_max[7], want_min[7];
        for (int i = 0; i < W; i++) {
            x[0 * W + i] = (float)((i * 7) % W) - 20.0f;
            x[1 * W + i] = (float)i;
            x[2 * W + i] = (float)-i;
            x[3 * W + i] = (float)i;
            x[4 * W + i] = (i % 2) ? -0.0f : 0.0f; /* +0 first */
            x[5 * W + i] = (i % 2) ? 0.0f : -0.0f; /* -0 first */
            x[6 * W + i] = (i % 3 == 0) ? 1e-45f : (i % 3 == 1) ? -3e-39f : -0.0f; /* subnormals */
        }
        if (W == 3) /* a row of one sign of zero */
            x[4 * W + 1] = 0.0f;
        x[1 * W + 0] = NAN;
        x[2 * W + W / 2] = NAN;
        x[3 * W + W - 1] = -NAN;
        for (int r = 0; r < 7; r++) {
            want_max[r] = x[r * W];
            want_min[r] = x[r * W];
            for (int i = 1; i < W; i++) {
                want_max[r] = ieee_extreme(want_max[r], x[r * W + i], true);
                want_min[r] = ieee_extreme(want_min[r], x[r * W + i], false);
            }
        }
        for (int e = 0; e < NEXECS; e++) {
            if (!exec_available(&execs[e]))
                continue;
            Diag d = {0};
            Kernel *k = ir_parse(src, "rowext.tir", &d);
            CHECK(k != NULL);
            if (!k)
                return;
            float y[7], z[7];
            void *args[3] = {x, y, z};
            bool ok = execute(k, execs[e].mode, execs[e].target, execs[e].threads, args, NULL, &d);
            CHECKF(ok, "rowext W=%d on %s", W, exec_name(&execs[e]));
            for (int r = 0; ok && r < 7; r++) {
                bool same_max = isnan(want_max[r]) ? isnan(y[r]) : memcmp(&y[r], &want_max[r], 4) == 0;
                bool same_min = isnan(want_min[r]) ? isnan(z[r]) : memcmp(&z[r], &want_min[r], 4) == 0;
                CHECKF(same_max && same_min, "%s W=%d row %d: max %g min %g, want %g %g", exec_name(&execs[e]), W,
                       r, y[r], z[r], want_max[r], want_min[r]);
            }
            ir_kernel_free(k);
        }
    }
}

TEST(column_reductions_of_every_width)
{
    /* Reductions over the rows (axis 0) of 5 x W, at widths below a
     * register (3, the per-element loop), whole registers (8, 16, 64) and
     * with a tail (37), which pass_lower runs across the rows (vector
     * accumulators along the row): NaN in one column, zeros of both signs,
     * subnormals, columns of one sign — max, min and absmax against the definition bit for bit,
     * sums against a row-order sum (to rounding: below a register the
     * per-element loop may add in lanes). */
    static const int widths[] = {3, 8, 16, 37, 64};
    enum { R = 5 };
    for (int wi = 0; wi < 5; wi++) {
        int W = widths[wi];
        char src[2048];
        snprintf(src, sizeof src,
                 "kernel colext level tile\n"
                 "arg x: f32[%d, %d] in\n"
                 "arg y: f32[4, %d] out\n"
                 "buf t: fragment f32[%d, %d]\n"
                 "buf r: fragment f32[%d]\n"
                 "grid (b) < [1]\n"
                 "{\n"
                 "  copy x[0 +: %d, 0 +: %d] -> t\n"
                 "  reduce max axis 0 t -> r clear\n"
                 "  copy r -> y[0 +: 1, 0 +: %d]\n"
                 "  reduce min axis 0 t -> r clear\n"
                 "  copy r -> y[1 +: 1, 0 +: %d]\n"
                 "  reduce absmax axis 0 t -> r clear\n"
                 "  copy r -> y[2 +: 1, 0 +: %d]\n"
                 "  reduce sum axis 0 x[0 +: %d, 0 +: %d] -> r clear\n"
                 "  copy r -> y[3 +: 1, 0 +: %d]\n"
                 "}\n",
                 R, W, W, R, W, W, R, W, W, W, W, R, W, W);
        float x[R * 64], want[4][64];
        for (int r = 0; r < R; r++)
            for (int i = 0; i < W; i++) {
                float v = (float)((i * 7 + r * 3) % 11) - 5.0f + (float)r * 0.25f;
                if (i % 5 == 1)
                    v = (r % 2) ? -0.0f : 0.0f;
                if (i % 5 == 2)
                    v = r == 3 ? 1e-45f : -3e-39f;
                if (i % 5 == 3) /* all negative: a max from 0 would show */
                    v = -1.0f - (float)r;
                if (i % 5 == 4) /* all positive: a min from 0 would show */
                    v = 1.0f + (float)r * 0.5f;
                x[r * W + i] = v;
            }
        x[2 * W + W - 1] = NAN;
        for (int i = 0; i < W; i++) {
            float mx = x[i], mn = x[i], ab = fabsf(x[i]), sum = 0.0f;
            for (int r = 0; r < R; r++) {
                float v = x[r * W + i];
                mx = ieee_extreme(mx, v, true);
                mn = ieee_extreme(mn, v, false);
                ab = ieee_extreme(ab, fabsf(v), true);
                sum += v;
            }
            want[0][i] = mx, want[1][i] = mn, want[2][i] = ab, want[3][i] = sum;
        }
        for (int e = 0; e < NEXECS; e++) {
            if (!exec_available(&execs[e]))
                continue;
            Diag d = {0};
            Kernel *k = ir_parse(src, "colext.tir", &d);
            CHECK(k != NULL);
            if (!k)
                return;
            float y[4 * 64];
            void *args[2] = {x, y};
            bool ok = execute(k, execs[e].mode, execs[e].target, execs[e].threads, args, NULL, &d);
            CHECKF(ok, "colext W=%d on %s", W, exec_name(&execs[e]));
            for (int q = 0; ok && q < 4; q++)
                for (int i = 0; i < W; i++) {
                    float got = y[q * W + i], w = want[q][i];
                    bool same = isnan(w) ? isnan(got) : q < 3 ? memcmp(&got, &w, 4) == 0 : fabsf(got - w) <= 1e-6f * 32;
                    CHECKF(same, "%s W=%d reduction %d column %d: %g, want %g", exec_name(&execs[e]), W, q, i, got,
                           w);
                }
            ir_kernel_free(k);
        }
    }
}

TEST(every_fp8_byte_widens_exactly)
{
    /* Compiled fp8 loads (inline bit arithmetic, vectorised) decode all 256
     * codes of both formats like the formats' definitions. */
    static const char *src =
        "kernel widen level tile\n"
        "arg a: f8e4m3[256] in\n"
        "arg b: f8e5m2[256] in\n"
        "arg x: f32[256] out\n"
        "arg y: f32[256] out\n"
        "grid (g) < [1]\n"
        "{\n"
        "  for i: parallel < 256 {\n"
        "    x[i] = a[i]\n"
        "    y[i] = b[i]\n"
        "  }\n"
        "}\n";
    uint8_t codes[256];
    for (int i = 0; i < 256; i++)
        codes[i] = (uint8_t)i;
    for (int e = 0; e < NEXECS; e++) {
        if (!exec_available(&execs[e]))
            continue;
        Diag d = {0};
        Kernel *k = ir_parse(src, "widen.tir", &d);
        float x[256], y[256];
        void *args[4] = {codes, codes, x, y};
        CHECK(k && execute(k, execs[e].mode, execs[e].target, 1, args, NULL, &d));
        for (int i = 0; i < 256; i++) {
            float wa = ref_decode_e4m3((uint8_t)i), wb = ref_decode_e5m2((uint8_t)i);
            CHECKF((isnan(wa) && isnan(x[i])) || x[i] == wa, "%s: e4m3 %02x -> %g, want %g", exec_name(&execs[e]), i, x[i], wa);
            CHECKF((isnan(wb) && isnan(y[i])) || y[i] == wb, "%s: e5m2 %02x -> %g, want %g", exec_name(&execs[e]), i, y[i], wb);
        }
        ir_kernel_free(k);
    }
}

/* A bf16 store of a value already rounded to bf16 (rmsnorm's
 * y = cast<bf16>(...)) moves its top 16 bits instead of rounding again:
 * every executor still stores the reference's rounding of x · 3, NaNs as
 * NaNs, infinities and the halfway cases included, and rounds x · 3 itself
 * (z) when the store must. */
TEST(bf16_store_of_a_rounded_value)
{
    static const char *src =
        "kernel rounded level tile\n"
        "arg x: f32[4096] in\n"
        "arg y: bf16[4096] out\n"
        "arg z: bf16[4096] out\n"
        "grid (g) < [1]\n"
        "{\n"
        "  for i: parallel < 4096 {\n"
        "    y[i] = cast<f32>(cast<bf16>(x[i] * 3.0))\n"
        "    z[i] = x[i] * 3.0\n"
        "  }\n"
        "}\n";
    static float x[4096];
    static uint16_t y[4096], z[4096];
    unsigned seed = 11;
    for (int i = 0; i < 4096; i++) {
        uint32_t bits = (uint32_t)rand_r(&seed) << 17 ^ (uint32_t)rand_r(&seed);
        if (i % 4 == 1) /* x · 3 lands on a bf16 halfway point or next to one */
            bits = (bits & 0xffff0000u) | 0x5555u;
        memcpy(&x[i], &bits, 4);
    }
    const float special[] = {NAN, -NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1e-45f, 3.4e38f, -3.4e38f, 1.0f / 3};
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++)
        x[i] = special[i];
    for (int e = 0; e < NEXECS; e++) {
        if (!exec_available(&execs[e]))
            continue;
        Diag d = {0};
        Kernel *k = ir_parse(src, "rounded.tir", &d);
        void *args[3] = {x, y, z};
        CHECKF(k && execute(k, execs[e].mode, execs[e].target, 1, args, NULL, &d), "%s: %s", exec_name(&execs[e]), d.msg);
        int bad = 0;
        for (int i = 0; i < 4096; i++) {
            float want = ref_round_bf16(x[i] * 3.0f), got[2] = {dt_bf16_to_f32(y[i]), dt_bf16_to_f32(z[i])};
            for (int o = 0; o < 2; o++) /* rounded by the cast, by the store */
                if (!(isnan(want) ? isnan(got[o]) : memcmp(&want, &got[o], 4) == 0) && bad++ < 3)
                    CHECKF(false, "%s: x = %a: %c %a, want %a", exec_name(&execs[e]), x[i], "yz"[o], got[o], want);
        }
        CHECKF(bad == 0, "%s: %d wrong", exec_name(&execs[e]), bad);
        ir_kernel_free(k);
    }
}

/* Compiled fp8 stores (inline, vectorised, no helper calls) against the
 * definition over a sweep of f32 bit patterns and the values around every
 * code; dt is f8e4m3 or f8e5m2. */
static void check_fp8_stores(DType dt, float (*widen)(uint8_t), uint8_t (*narrow)(float), uint8_t max_code)
{
    enum { N = 1 << 20 };
    char src[512];
    snprintf(src, sizeof src,
             "kernel narrow level tile\n"
             "arg x: f32[1048576] in\n"
             "arg y: %s[1048576] out\n"
             "grid (g) < [16]\n"
             "{\n"
             "  for i: parallel < 65536 {\n"
             "    y[g * 65536 + i] = x[g * 65536 + i]\n"
             "  }\n"
             "}\n",
             dt_name(dt));
    float *x = malloc(N * sizeof(float));
    uint8_t *y = malloc(N);
    int n = 0;
    for (int c = 0; c < 256; c++) { /* each code's value, its neighbours, the midpoints */
        float v = widen((uint8_t)c), w = widen((uint8_t)(c + 1));
        x[n++] = v;
        x[n++] = nextafterf(v, INFINITY);
        x[n++] = nextafterf(v, -INFINITY);
        if ((c & 0x7f) < max_code) {
            float mid = (float)(((double)v + w) / 2);
            x[n++] = mid;
            x[n++] = nextafterf(mid, INFINITY);
            x[n++] = nextafterf(mid, -INFINITY);
        }
    }
    for (uint64_t u = 0; n < N; u += 4099, n++) {
        uint32_t bits = (uint32_t)u;
        memcpy(&x[n], &bits, 4);
    }
    x[0] = INFINITY;
    x[1] = -INFINITY;
    x[2] = NAN;
    for (int e = 1; e < NEXECS; e++) {
        if (!exec_available(&execs[e]))
            continue;
        Diag d = {0};
        Kernel *k = ir_parse(src, "narrow.tir", &d);
        void *args[2] = {x, y};
        CHECK(k && execute(k, execs[e].mode, execs[e].target, execs[e].threads, args, NULL, &d));
        int bad = 0;
        for (int i = 0; i < N; i++)
            if (y[i] != narrow(x[i]) && bad++ < 4)
                printf("  %s: %s(%a) = %02x, want %02x\n", exec_name(&execs[e]), dt_name(dt), x[i], y[i],
                       narrow(x[i]));
        CHECK(bad == 0);
        ir_kernel_free(k);
    }
    free(x);
    free(y);
}

TEST(fp8_stores_round_like_the_definition)
{
    check_fp8_stores(DT_F8E4M3, dt_e4m3_to_f32, dt_f32_to_e4m3, 0x7e);
    check_fp8_stores(DT_F8E5M2, dt_e5m2_to_f32, dt_f32_to_e5m2, 0x7b);
}

TEST(fp4_casts_round_like_the_definition)
{
    /* cast<f4e2m1> in compiled code (inline) against dt_round_f32 over a
     * sweep of f32 patterns, the values around each code, inf and NaN. */
    enum { N = 1 << 18 };
    static const char *src =
        "kernel cast4 level tile\n"
        "arg x: f32[262144] in\n"
        "arg y: f32[262144] out\n"
        "grid (g) < [4]\n"
        "{\n"
        "  for i: parallel < 65536 {\n"
        "    y[g * 65536 + i] = cast<f4e2m1>(x[g * 65536 + i])\n"
        "  }\n"
        "}\n";
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    int n = 0;
    for (int c = 0; c < 16; c++) {
        float v = dt_e2m1_to_f32((uint8_t)c), w = dt_e2m1_to_f32((uint8_t)((c + 1) & 15));
        float mid = (float)(((double)v + w) / 2);
        float vals[] = {v, nextafterf(v, INFINITY), nextafterf(v, -INFINITY), mid, nextafterf(mid, INFINITY),
                        nextafterf(mid, -INFINITY)};
        for (int i = 0; i < 6; i++)
            x[n++] = vals[i];
    }
    x[n++] = INFINITY;
    x[n++] = -INFINITY;
    x[n++] = NAN;
    x[n++] = -NAN;
    for (uint64_t u = 0; n < N; u += 16411, n++) {
        uint32_t bits = (uint32_t)u;
        memcpy(&x[n], &bits, 4);
    }
    for (int e = 1; e < NEXECS; e++) {
        if (!exec_available(&execs[e]))
            continue;
        Diag d = {0};
        Kernel *k = ir_parse(src, "cast4.tir", &d);
        void *args[2] = {x, y};
        CHECK(k && execute(k, execs[e].mode, execs[e].target, execs[e].threads, args, NULL, &d));
        int bad = 0;
        for (int i = 0; i < N; i++) {
            float want = dt_round_f32(DT_F4E2M1, x[i]);
            if ((y[i] != want || signbit(y[i]) != signbit(want)) && bad++ < 4)
                printf("  %s: e2m1(%a) = %g, want %g\n", exec_name(&execs[e]), x[i], y[i], want);
        }
        CHECK(bad == 0);
        ir_kernel_free(k);
    }
    free(x);
    free(y);
}

TEST(views_take_same_rank_extents_as_they_are)
{
    /* a [2, 1, D] fragment copied to and from a view of a [M, H, D] tensor */
    for (int e = 0; e < NEXECS; e++) {
        if (!exec_available(&execs[e]))
            continue;
        Args a = {0};
        CHECK(run_spec("tests/specs/view_unit_extent.lua", NULL, 0, NULL, execs[e].mode, execs[e].target,
                       execs[e].threads, &a));
        CHECKF(ref_max_abs_diff(a.f[0], a.f[1], 5 * 3 * 4) == 0, "%s: y differs from x", exec_name(&execs[e]));
        args_free(&a);
    }
}

/* Copies move bits: every e4m3/e5m2 code, and bf16/f16/f32 NaNs with
 * either sign and several payloads, arrive unchanged on every executor. */
TEST(copies_move_bits)
{
    static const char *dtypes[] = {"f8e4m3", "f8e5m2", "bf16", "f16", "f32"};
    for (int t = 0; t < 5; t++) {
        FeSet sets[] = {{"N", "256"}, {"dtype", dtypes[t]}};
        DType dt = dt_parse(dtypes[t]);
        size_t w = (size_t)dt_bits(dt) / 8;
        uint8_t x[256 * 4], y[256 * 4];
        for (int i = 0; i < 256; i++) /* byte patterns: all codes for fp8, NaNs and the rest above */
            for (size_t j = 0; j < w; j++)
                x[i * w + j] = (uint8_t)(j == w - 1 ? (i & 1 ? 0xff : 0x7f) : i * 37 + (int)j);
        if (w == 1)
            for (int i = 0; i < 256; i++)
                x[i] = (uint8_t)i;
        for (int e = 0; e < NEXECS; e++) {
            if (!exec_available(&execs[e]))
                continue;
            Diag d = {0};
            memset(y, 0, sizeof y);
            void *args[2] = {x, y};
            bool ok = run_spec_on(&execs[e], "tests/specs/copy_bits.lua", sets, 2, args, &d);
            CHECKF(ok, "copy %s on %s: %s", dtypes[t], exec_name(&execs[e]), d.msg);
            int bad = 0;
            for (size_t i = 0; ok && i < 256 * w; i++)
                bad += x[i] != y[i];
            CHECKF(bad == 0, "copy %s on %s: %d bytes changed", dtypes[t], exec_name(&execs[e]), bad);
        }
    }
}

/* A transposing copy, Y[i][j] = X[j][i + 3], moves every element to its
 * place on every executor: in 8x8 register blocks on the CPU where R and C
 * are multiples of 8 (f32 as it is, bf16 and f16 widened to f32), element
 * by element elsewhere (a 12-column tail, bf16 kept as bf16). */
static float widened(const uint8_t *x, const char *dtype)
{
    uint16_t h;
    float f;
    if (!strcmp(dtype, "f32")) {
        memcpy(&f, x, 4);
        return f;
    }
    if (!strcmp(dtype, "f8e4m3"))
        return dt_e4m3_to_f32(*x);
    if (!strcmp(dtype, "f8e5m2"))
        return dt_e5m2_to_f32(*x);
    memcpy(&h, x, 2);
    return !strcmp(dtype, "bf16") ? dt_bf16_to_f32(h) : dt_f16_to_f32(h);
}

TEST(transposing_copies_move_every_element)
{
    /* "pairs": Y[i][j] = X[j / 2][2i + j % 2 + 3], 16-bit k-pairs (the
     * register tiles' B for vdpbf16ps) moved as 32-bit elements where R is
     * a multiple of 8 and C of 16; "edge": rows j >= C - 5 of X past the
     * edge, zeros in Y; "pairs_edge": pairs whose rows j / 2 >= C/2 - 3 are
     * past the edge and whose columns 2i + j % 2 + 3 >= 2R - 2 past K, zeros */
    static const struct { const char *r, *c, *dtype, *to, *form; } cases[] = {
        {"24", "16", "f32", "same", "plain"},  {"8", "40", "f32", "same", "plain"},
        {"20", "12", "f32", "same", "plain"},  {"24", "16", "bf16", "same", "plain"},
        {"24", "16", "bf16", "f32", "plain"},  {"16", "8", "f16", "f32", "plain"},
        {"24", "16", "bf16", "same", "pairs"}, {"8", "48", "f16", "same", "pairs"},
        {"20", "12", "bf16", "same", "pairs"}, {"24", "16", "f8e4m3", "bf16", "pairs"},
        {"8", "32", "f8e5m2", "bf16", "pairs"}, {"20", "12", "f8e4m3", "bf16", "pairs"},
        {"24", "16", "f32", "same", "edge"},   {"16", "24", "bf16", "f32", "edge"},
        {"8", "16", "f16", "f32", "edge"},     {"20", "12", "f32", "same", "edge"},
        {"24", "32", "bf16", "same", "pairs_edge"}, {"8", "16", "f8e4m3", "bf16", "pairs_edge"},
        {"16", "48", "f16", "same", "pairs_edge"},  {"20", "12", "bf16", "same", "pairs_edge"}};
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        FeSet sets[] = {{"R", cases[t].r}, {"C", cases[t].c}, {"dtype", cases[t].dtype}, {"to", cases[t].to},
                        {"form", cases[t].form}};
        int R = atoi(cases[t].r), C = atoi(cases[t].c);
        int w = !strcmp(cases[t].dtype, "f32") ? 4 : strncmp(cases[t].dtype, "f8", 2) ? 2 : 1;
        bool pairs_edge = !strcmp(cases[t].form, "pairs_edge");
        bool same = !strcmp(cases[t].to, "same"), pairs = !strcmp(cases[t].form, "pairs") || pairs_edge;
        bool edge = !strcmp(cases[t].form, "edge");
        bool to_bf16 = !strcmp(cases[t].to, "bf16"); /* fp8 values, exactly */
        int wy = same ? w : to_bf16 ? 2 : 4;
        uint8_t x[64 * 64 * 4], y[64 * 64 * 4];
        for (int i = 0; i < (C + 1) * (2 * R + 3) * w; i++) /* finite values: exponent bytes kept below all-ones */
            x[i] = (uint8_t)(w > 1 && i % w == w - 1 ? (i * 7 + i / 251) & 0x3f : i * 7 + i / 251); /* fp8: every code, NaN too */
        for (int e = 0; e < NEXECS; e++) {
            if (!exec_available(&execs[e]))
                continue;
            Diag d = {0};
            memset(y, 0, sizeof y);
            void *args[2] = {x, y};
            bool ok = run_spec_on(&execs[e], "tests/specs/transpose.lua", sets, 5, args, &d);
            CHECKF(ok, "transpose %sx%s %s to %s (%s) on %s: %s", cases[t].r, cases[t].c, cases[t].dtype,
                   cases[t].to, cases[t].form, exec_name(&execs[e]), d.msg);
            int bad = 0;
            for (int i = 0; ok && i < R; i++)
                for (int j = 0; j < C; j++) {
                    int at = pairs ? (j / 2) * (2 * R + 3) + 2 * i + j % 2 + 3 : j * (R + 3) + i + 3;
                    const uint8_t *src = x + at * w, *dst = y + (i * C + j) * wy;
                    static const uint8_t zero[4];
                    if ((edge && j >= C - 5) || (pairs_edge && (j / 2 >= C / 2 - 3 || 2 * i + j % 2 + 3 >= 2 * R - 2)))
                        src = zero; /* +0.0 in every dtype */
                    float want = widened(src, cases[t].dtype), got;
                    if (to_bf16) {
                        uint16_t h;
                        memcpy(&h, dst, 2);
                        got = dt_bf16_to_f32(h);
                        bad += isnan(want) ? !isnan(got) : memcmp(&got, &want, 4) != 0;
                        continue;
                    }
                    memcpy(&got, dst, 4);
                    bad += same ? memcmp(dst, src, (size_t)w) != 0 : memcmp(&got, &want, 4) != 0;
                }
            CHECKF(bad == 0, "transpose %sx%s %s to %s (%s) on %s: %d elements misplaced", cases[t].r, cases[t].c,
                   cases[t].dtype, cases[t].to, cases[t].form, exec_name(&execs[e]), bad);
        }
    }
}

/* Packed fp4 inputs: every pair of codes in a byte decodes to the e2m1
 * value of each nibble (low nibble first) on every executor. */
/* Streamed (non-temporal) stores write every element: tests/specs/stream.lua
 * (y = x * 2 + 1, f32 and bf16 out, a whole last block and a partial one)
 * compiled for x86-avx2 with an output of any size large enough to stream,
 * its base on a vector boundary (the streamed version), 4 bytes off one
 * (the plain version: a streamed store there would fault), and for the
 * target as it is (16 MiB: plain); against the values computed here, every
 * element (y starts as all-ones bytes, which no result is). */
static bool run_streamed(const char *out, int M, const TargetInfo *t, uint8_t *y, const float *x)
{
    char m[16];
    snprintf(m, sizeof m, "%d", M);
    FeSet sets[] = {{"M", m}, {"out", out}};
    Diag d = {0};
    Kernel *k = fe_load("tests/specs/stream.lua", sets, 2, &d);
    CgJit *j = NULL;
    void *args[2] = {(void *)x, y};
    bool ok = k && pass_pipeline(k, t, NULL, &d) && (j = cg_jit_compile(k, t, &d)) &&
              cg_launch(k, cg_jit_fn(j), args, NULL, 2, &d);
    if (!ok)
        diag_print(&d, stdout);
    cg_jit_free(j);
    ir_kernel_free(k);
    return ok;
}

TEST(streamed_stores_write_every_element)
{
    const TargetInfo *avx2 = ir_target("x86-avx2");
    if (!ir_target_runs_here(avx2)) {
        printf("skipped: streamed stores (this CPU cannot run x86-avx2)\n");
        return;
    }
    TargetInfo any = *avx2;
    any.stream_bytes = 1;
    const struct { const TargetInfo *t; int skew; const char *what; } runs[] = {
        {&any, 0, "streamed"}, {&any, 4, "misaligned, plain"}, {avx2, 0, "small, plain"}};
    enum { D = 64, MAXM = 13 };
    float x[MAXM * D];
    unsigned seed = 7;
    for (int i = 0; i < MAXM * D; i++)
        x[i] = test_rand(&seed);
    uint8_t *mem = aligned_alloc(64, MAXM * D * 4 + 64);
    for (int o = 0; o < 2; o++) {
        const char *out = o ? "bf16" : "f32";
        DType dt = o ? DT_BF16 : DT_F32;
        for (int M = 8; M <= MAXM; M += MAXM - 8)
            for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
                uint8_t *y = mem + runs[r].skew;
                memset(mem, 0xff, MAXM * D * 4 + 64);
                bool ok = run_streamed(out, M, runs[r].t, y, x);
                CHECKF(ok, "stream.lua %s M=%d %s: did not run", out, M, runs[r].what);
                int bad = 0;
                for (int i = 0; ok && i < M * D; i++) {
                    uint8_t want[4];
                    dt_store(dt, want, 0, x[i] * 2.0f + 1.0f);
                    bad += memcmp(y + (size_t)i * (o ? 2 : 4), want, o ? 2 : 4) != 0;
                }
                CHECKF(bad == 0, "stream.lua %s M=%d %s: %d of %d elements wrong", out, M, runs[r].what, bad, M * D);
            }
    }
    free(mem);
}

TEST(fp4_inputs_decode_every_code)
{
    static const float mag[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6}; /* e2m1, v4-spec §2.4 */
    uint8_t w[256];
    float want[512], y[512];
    for (int i = 0; i < 256; i++) {
        w[i] = (uint8_t)i;
        for (int h = 0; h < 2; h++) {
            int code = h ? i >> 4 : i & 15;
            want[2 * i + h] = (code & 8 ? -1.0f : 1.0f) * mag[code & 7];
        }
    }
    for (int e = 0; e < NEXECS; e++) {
        if (!exec_available(&execs[e]))
            continue;
        Diag d = {0};
        Kernel *k = fe_load("tests/specs/fp4_load.lua", NULL, 0, &d);
        CHECK(k != NULL);
        if (!k)
            continue;
        memset(y, 0xff, sizeof y);
        void *args[2] = {w, y};
        bool ok = execute(k, execs[e].mode, execs[e].target, execs[e].threads, args, NULL, &d);
        CHECKF(ok, "fp4 load on %s: %s", exec_name(&execs[e]), d.msg);
        int bad = 0;
        for (int i = 0; ok && i < 512; i++)
            bad += memcmp(&want[i], &y[i], 4) != 0; /* -0 included */
        CHECKF(bad == 0, "fp4 load on %s: %d of 512 elements wrong", exec_name(&execs[e]), bad);
        ir_kernel_free(k);
    }
}

TEST(interpreter_reports_out_of_bounds)
{
    const char *src =
        "kernel oob level tile\n"
        "arg y: f32[4] out\n"
        "grid (b) < [1]\n"
        "{\n"
        "  for i: serial < 5 {\n"
        "    y[i] = 1.0\n"
        "  }\n"
        "}\n";
    Diag d = {0};
    Kernel *k = ir_parse(src, "oob.tir", &d);
    float y[4];
    void *args[1] = {y};
    CHECK(k && !ir_interp(k, args, NULL, &d));
    char line[700];
    FILE *f = fmemopen(line, sizeof line, "w");
    diag_print(&d, f);
    fclose(f);
    CHECKF(!strcmp(line, "oob.tir:6: index [4] is out of bounds for y of shape [4]\n"), "%s", line);
    ir_kernel_free(k);
}

int main(void)
{
    RUN(gemm_f32_shapes);
    RUN(gemm_bf16_shapes);
    RUN(gemm_fp8_shapes);
    RUN(gemm_kn_bf16_shapes);
    RUN(gemm_decode_rows);
    RUN(gemm_one_row_bf16_one_stream);
    RUN(dot_tiles_widen_every_fp8_code);
    RUN(dot_tiles_e4m3_by_e4m3_every_pair);
    RUN(dot_tiles_e4m3_by_e2m1_every_pair);
    RUN(dot_tiles_find_each_e4m3_nan);
    RUN(dot_tiles_widen_every_fp4_code);
    RUN(broadcast_tiles_decode_every_fp4_code);
    RUN(gemm_block_scales_other_operands);
    RUN(fp4_weights_copied_for_a_decode_gemm);
    RUN(softmax_shapes);
    RUN(rmsnorm_shapes);
    RUN(silu_mul_f32_and_bf16);
    RUN(dyn_dimension_at_run_time);
    RUN(atomic_add_across_blocks);
    RUN(max_and_min_follow_ieee_maximum_minimum);
    RUN(max_and_min_against_signed_zeros);
    RUN(cpu_exp_and_log_within_one_and_a_half_ulps);
    RUN(max_min_reductions_of_every_width_keep_nans_and_signed_zeros);
    RUN(column_reductions_of_every_width);
    RUN(every_fp8_byte_widens_exactly);
    RUN(bf16_store_of_a_rounded_value);
    RUN(fp8_stores_round_like_the_definition);
    RUN(fp4_casts_round_like_the_definition);
    RUN(views_take_same_rank_extents_as_they_are);
    RUN(copies_move_bits);
    RUN(transposing_copies_move_every_element);
    RUN(streamed_stores_write_every_element);
    RUN(fp4_inputs_decode_every_code);
    RUN(interpreter_reports_out_of_bounds);
    return test_summary();
}
