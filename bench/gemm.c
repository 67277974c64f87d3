/* bench/gemm.c — tilec's examples/gemm.lua against oneDNN's matmul and
 * OpenBLAS's sgemm, same run.
 *
 *   build/bench_gemm [--threads N] [--quick] [--spec examples/gemm.lua]
 *                    [--shape MxNxK] [--dtype f32|bf16]   (one row instead of the table)
 *                    [--tuned FILE]   (tile sizes from a `tilec sweep --store` results store)
 *
 * For each shape and dtype (f32, bf16 inputs; f32 output C = A·Bᵀ) it checks
 * each result (tilec, oneDNN, and OpenBLAS's sgemm for f32 where it was
 * found at build time) against a double-precision dot product on sampled
 * entries, then times them in turns and prints the median GFLOP/s of each,
 * the ratios of tilec to each peer, and tilec's fraction of the machine's
 * multiply-add peak (bench/peers.c, measured after each row).
 * oneDNN uses OpenMP, so the thread count is set before its first call. */
#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "bench/peers.h"
#include "passes/passes.h"
#include "runtime/timing.h"
#include "runtime/tuned.h"

#include <dnnl.h>
#include <math.h>
#ifdef TILEC_HAVE_OPENBLAS
#include <cblas-openblas.h>
#endif
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct Shape {
    int64_t m, n, k;
} Shape;

/* The square products of the goals, the decode rows, and two
 * that no tile divides (edge blocks in every dimension: a tail K step, a
 * partial row block, a partial column block). */
static const Shape shapes[] = {
    {1024, 1024, 1024}, {2048, 2048, 2048}, {4096, 4096, 4096}, {1, 4096, 4096},
    {4, 4096, 4096},    {16, 4096, 4096},   {1000, 1000, 1000}, {333, 777, 555},
};

/* "MxNxK", each at least 1. */
static bool parse_shape(const char *text, Shape *s)
{
    long long m, n, k;
    char end;
    if (sscanf(text, "%lldx%lldx%lld%c", &m, &n, &k, &end) != 3 || m < 1 || n < 1 || k < 1)
        return false;
    *s = (Shape){m, n, k};
    return true;
}

static void *xalloc(size_t n)
{
    void *p = aligned_alloc(64, (n + 63) / 64 * 64 + 64);
    if (!p) {
        fprintf(stderr, "bench_gemm: out of memory\n");
        exit(1);
    }
    return p;
}

/* Inputs in the benchmark dtype (f32 or bf16 bits) and their f32 values. */
typedef struct Problem {
    Shape s;
    DType dt;
    void *a, *b; /* A[M,K], B[N,K] in dt */
    float *c;    /* C[M,N] */
} Problem;

static void fill(void *p, DType dt, int64_t n, unsigned seed)
{
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        dt_store(dt, p, i, (double)(seed >> 8) / 8388608.0 - 1.0);
    }
}

/* Sampled entries against a double dot product of the stored inputs. */
static bool verify(const Problem *p, const char *who)
{
    unsigned seed = 7;
    double worst = 0;
    for (int t = 0; t < 64; t++) {
        seed = seed * 1664525u + 1013904223u;
        int64_t i = (int64_t)(seed % (unsigned)p->s.m);
        seed = seed * 1664525u + 1013904223u;
        int64_t j = (int64_t)(seed % (unsigned)p->s.n);
        double ref = 0, mag = 0;
        for (int64_t k = 0; k < p->s.k; k++) {
            double x = dt_load(p->dt, p->a, i * p->s.k + k) * dt_load(p->dt, p->b, j * p->s.k + k);
            ref += x;
            mag += fabs(x);
        }
        double err = fabs(ref - p->c[i * p->s.n + j]) / (mag + 1e-30);
        worst = fmax(worst, err);
    }
    if (worst > 1e-4) {
        printf("  %s: WRONG RESULT (relative error %.3g on sampled entries)\n", who, worst);
        return false;
    }
    return true;
}

typedef struct Tilec {
    Kernel *k;
    CgJit *jit;
    char point[RT_TUNED_LINE]; /* --tuned: the store's values, split in place */
    char tuned[RT_TUNED_LINE]; /* --tuned: the same as the store has them ("" if none) */
} Tilec;

/* --tuned FILE: the fastest point the results store has for gemm on
 * target with these sizes (sets[0..5]: M, N, K, dtype and the spec's BN
 * and stages) replaces the spec's choices (choose); its values into point. */
static bool tuned_sets(const char *path, const TargetInfo *target, FeSet *sets, int *nsets, char *point, char *desc,
                       Diag *d)
{
    RtSetting fixed[6];
    for (int i = 0; i < 6; i++)
        fixed[i] = (RtSetting){sets[i].name, sets[i].value};
    double ms;
    if (!rt_tuned_best(path, "gemm", target->name, fixed, 6, point, RT_TUNED_LINE, &ms, d))
        return false;
    if (isinf(ms))
        return true;
    snprintf(desc, RT_TUNED_LINE, "%s", point);
    RtSetting best[16];
    int n = rt_tuned_split(point, best, 16);
    for (int b = 0; b < n; b++) {
        int i = 0;
        while (i < *nsets && strcmp(sets[i].name, best[b].name))
            i++;
        if (i == *nsets && *nsets == 16)
            continue; /* more values than the spec has parameters: not ours */
        *nsets += i == *nsets;
        sets[i] = (FeSet){best[b].name, best[b].value};
    }
    return true;
}

static bool tilec_prepare(Tilec *t, const char *spec, const char *tuned, const Problem *p, double *compile_ms)
{
    char m[32], n[32], k[32];
    snprintf(m, sizeof m, "%lld", (long long)p->s.m);
    snprintf(n, sizeof n, "%lld", (long long)p->s.n);
    snprintf(k, sizeof k, "%lld", (long long)p->s.k);
    /* BM and BK: what examples/gemm.lua's choose picks for this machine
     * and shape (as `tilec run` gets them; the spec says why), unless the
     * store has the shape.  BN 64 and stages 2 are set: the tuned store's
     * key (tuned_sets). */
    FeSet sets[16] = {{"M", m}, {"N", n}, {"K", k}, {"dtype", dt_name(p->dt)}, {"BN", "64"}, {"stages", "2"}};
    int nsets = 6;
    Diag d = {0};
    const TargetInfo *target = ir_host_target();
    if (tuned && !tuned_sets(tuned, target, sets, &nsets, t->point, t->tuned, &d)) {
        fputs("bench_gemm: ", stderr);
        diag_print(&d, stderr);
        return false;
    }
    /* the median of COMPILES compiles, the last one kept: a compile is
     * the same work each time, and a shared machine's noise only adds */
    enum { COMPILES = 3 };
    double ms[COMPILES];
    for (int c = 0; c < COMPILES; c++) {
        if (c) {
            cg_jit_free(t->jit);
            ir_kernel_free(t->k);
        }
        double t0 = rt_now();
        t->jit = NULL;
        t->k = fe_load_for(spec, sets, nsets, target, &d);
        PassOptions po = {0};
        if (!t->k || !pass_pipeline(t->k, target, &po, &d) || !(t->jit = cg_jit_compile(t->k, target, &d))) {
            fputs("bench_gemm: ", stderr);
            diag_print(&d, stderr);
            return false;
        }
        ms[c] = (rt_now() - t0) * 1e3;
    }
    *compile_ms = rt_median(ms, COMPILES);
    return true;
}

enum { SIDES = 3 }; /* tilec, oneDNN, OpenBLAS */

/* Medians of the fn[] timed in turns, after a warm-up of each: on a
 * shared machine a slow spell then slows every side instead of one.  A
 * NULL fn is skipped and its median is NaN. */
static void time_alternating(int reps, void (*fn[SIDES])(void *), void *ctx[SIDES], double median[SIDES])
{
    double times[SIDES][16];
    for (int w = 0; w < SIDES; w++)
        if (fn[w])
            fn[w](ctx[w]);
    for (int r = 0; r < reps; r++)
        for (int w = 0; w < SIDES; w++)
            if (fn[w]) {
                double t0 = rt_now();
                fn[w](ctx[w]);
                times[w][r] = rt_now() - t0;
            }
    for (int w = 0; w < SIDES; w++)
        median[w] = fn[w] ? rt_median(times[w], reps) : NAN;
}

typedef struct TilecRun {
    Tilec *t;
    Problem *p;
    int threads;
} TilecRun;

static void tilec_call(void *ctx)
{
    TilecRun *r = ctx;
    void *args[] = {r->p->a, r->p->b, r->p->c};
    Diag d = {0};
    if (!cg_launch(r->t->k, cg_jit_fn(r->t->jit), args, NULL, r->threads, &d)) {
        diag_print(&d, stderr);
        exit(1);
    }
}

typedef struct Dnnl {
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    dnnl_primitive_t prim;
    dnnl_memory_t a, b, c;
} Dnnl;

#define DNNL_CHECK(x)                                                      \
    do {                                                                   \
        dnnl_status_t st_ = (x);                                           \
        if (st_ != dnnl_success) {                                         \
            fprintf(stderr, "bench_gemm: oneDNN %s failed (%d)\n", #x, st_); \
            exit(1);                                                       \
        }                                                                  \
    } while (0)

/* C[M,N] = A[M,K] · W where W = Bᵀ is [K,N] stored as B[N,K] ("ba").
 * False when this oneDNN has no implementation for the dtype on this CPU
 * (bf16 matmul needs AVX-512 in oneDNN 2.6). */
static bool dnnl_prepare(Dnnl *o, Problem *p)
{
    dnnl_data_type_t dt = p->dt == DT_BF16 ? dnnl_bf16 : dnnl_f32;
    dnnl_dims_t ad = {p->s.m, p->s.k}, bd = {p->s.k, p->s.n}, cd = {p->s.m, p->s.n};
    dnnl_memory_desc_t amd, bmd, cmd;
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&amd, 2, ad, dt, dnnl_ab));
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&bmd, 2, bd, dt, dnnl_ba));
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&cmd, 2, cd, dnnl_f32, dnnl_ab));
    DNNL_CHECK(dnnl_engine_create(&o->eng, dnnl_cpu, 0));
    DNNL_CHECK(dnnl_stream_create(&o->stream, o->eng, dnnl_stream_default_flags));
    dnnl_matmul_desc_t md;
    DNNL_CHECK(dnnl_matmul_desc_init(&md, &amd, &bmd, NULL, &cmd));
    dnnl_primitive_desc_t pd;
    if (dnnl_primitive_desc_create(&pd, &md, NULL, o->eng, NULL) == dnnl_unimplemented) {
        dnnl_stream_destroy(o->stream);
        dnnl_engine_destroy(o->eng);
        return false;
    }
    DNNL_CHECK(dnnl_primitive_create(&o->prim, pd));
    DNNL_CHECK(dnnl_primitive_desc_destroy(pd));
    DNNL_CHECK(dnnl_memory_create(&o->a, &amd, o->eng, p->a));
    DNNL_CHECK(dnnl_memory_create(&o->b, &bmd, o->eng, p->b));
    DNNL_CHECK(dnnl_memory_create(&o->c, &cmd, o->eng, p->c));
    return true;
}

static void dnnl_call(void *ctx)
{
    Dnnl *o = ctx;
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, o->a}, {DNNL_ARG_WEIGHTS, o->b}, {DNNL_ARG_DST, o->c}};
    DNNL_CHECK(dnnl_primitive_execute(o->prim, o->stream, 3, args));
    DNNL_CHECK(dnnl_stream_wait(o->stream));
}

static void dnnl_release(Dnnl *o)
{
    dnnl_memory_destroy(o->a);
    dnnl_memory_destroy(o->b);
    dnnl_memory_destroy(o->c);
    dnnl_primitive_destroy(o->prim);
    dnnl_stream_destroy(o->stream);
    dnnl_engine_destroy(o->eng);
}

/* OpenBLAS's sgemm, C = A·Bᵀ with B[N,K] row-major (f32 only). */
static void blas_call(void *ctx)
{
#ifdef TILEC_HAVE_OPENBLAS
    Problem *p = ctx;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)p->s.m, (blasint)p->s.n, (blasint)p->s.k, 1.0f,
                p->a, (blasint)p->s.k, p->b, (blasint)p->s.k, 0.0f, p->c, (blasint)p->s.n);
#else
    (void)ctx;
#endif
}

static bool have_blas(DType dt)
{
#ifdef TILEC_HAVE_OPENBLAS
    return dt == DT_F32;
#else
    return false;
#endif
}

static bool bench_one(const char *spec, const char *tuned, Shape s, DType dt, int threads)
{
    Problem p = {.s = s, .dt = dt};
    p.a = xalloc(dt_storage_bytes(dt, s.m * s.k));
    p.b = xalloc(dt_storage_bytes(dt, s.n * s.k));
    p.c = xalloc(sizeof(float) * (size_t)(s.m * s.n));
    fill(p.a, dt, s.m * s.k, 1);
    fill(p.b, dt, s.n * s.k, 2);
    double flop = 2.0 * (double)s.m * (double)s.n * (double)s.k;
    int reps = flop > 3e10 ? 3 : flop > 3e9 ? 5 : 9;
    bool ok = true;

    Tilec t = {0};
    Dnnl o;
    double compile_ms = 0, med[SIDES];
    bool have_tilec = tilec_prepare(&t, spec, tuned, &p, &compile_ms);
    bool have_dnnl = dnnl_prepare(&o, &p);
    TilecRun r = {&t, &p, threads};
    void (*fn[SIDES])(void *) = {NULL, NULL, NULL};
    void *ctx[SIDES] = {&r, &o, &p};
    if (have_tilec) {
        memset(p.c, 0, sizeof(float) * (size_t)(s.m * s.n));
        tilec_call(&r);
        if (verify(&p, "tilec"))
            fn[0] = tilec_call;
    }
    if (have_dnnl) {
        memset(p.c, 0, sizeof(float) * (size_t)(s.m * s.n));
        dnnl_call(&o);
        if (verify(&p, "oneDNN"))
            fn[1] = dnnl_call;
    }
    if (have_blas(dt)) {
        memset(p.c, 0, sizeof(float) * (size_t)(s.m * s.n));
        blas_call(&p);
        if (verify(&p, "OpenBLAS"))
            fn[2] = blas_call;
    }
    ok = fn[0] && (!have_dnnl || fn[1]) && (!have_blas(dt) || fn[2]);
    time_alternating(reps, fn, ctx, med);
    double t_tilec = med[0], t_dnnl = med[1], t_blas = med[2];
    if (have_tilec) {
        cg_jit_free(t.jit);
        ir_kernel_free(t.k);
    }
    if (have_dnnl)
        dnnl_release(&o);

    /* the peak of the instruction the kernel multiplies with, measured
     * now: the clock moves with the machine's other tenants */
    const TargetInfo *target = ir_host_target();
    double peak = bench_fma_peak(threads, target->vector_bits, dt == DT_BF16 && target->has_bf16_dot);
    double g_tilec = flop / t_tilec * 1e-9, g_dnnl = flop / t_dnnl * 1e-9, g_blas = flop / t_blas * 1e-9;
    printf("%-5s %5lld %5lld %5lld %9.1f %7.2f %9.1f %7.2f %9.1f %7.2f %10.0f\n", dt_name(dt), (long long)s.m,
           (long long)s.n, (long long)s.k, g_tilec, g_tilec / peak, g_dnnl, g_tilec / g_dnnl, g_blas,
           g_tilec / g_blas, compile_ms);
    if (isnan(t_dnnl))
        printf("      (oneDNN has no %s matmul for this CPU: no peer for this row)\n", dt_name(dt));
    if (t.tuned[0])
        printf("      (tilec tuned to %s from %s)\n", t.tuned, tuned);
    fflush(stdout);
    free(p.a);
    free(p.b);
    free(p.c);
    return ok;
}

int main(int argc, char **argv)
{
    int threads = 1;
    bool quick = false;
    const char *spec = "examples/gemm.lua", *tuned = NULL;
    Shape only = {0, 0, 0};
    int dtype_only = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick"))
            quick = true;
        else if (!strcmp(argv[i], "--spec") && i + 1 < argc)
            spec = argv[++i];
        else if (!strcmp(argv[i], "--tuned") && i + 1 < argc)
            tuned = argv[++i];
        else if (!strcmp(argv[i], "--shape") && i + 1 < argc && parse_shape(argv[i + 1], &only))
            i++;
        else if (!strcmp(argv[i], "--dtype") && i + 1 < argc && (!strcmp(argv[i + 1], "f32") || !strcmp(argv[i + 1], "bf16")))
            dtype_only = !strcmp(argv[++i], "bf16");
        else {
            fprintf(stderr, "usage: bench_gemm [--threads N] [--quick] [--spec FILE] [--shape MxNxK] [--dtype f32|bf16] "
                            "[--tuned FILE]\n");
            return 2;
        }
    }
    if (threads < 1)
        threads = 1;
    /* OpenMP reads OMP_NUM_THREADS when its library loads, before main:
     * re-run this program with it set so oneDNN uses the same threads.
     * Passive waiting too, unless the caller chose: an OpenMP worker that
     * spins after oneDNN's row would share a core with tilec's pool while
     * the next row times tilec (2 threads, bf16 1024^3 after f32 rows: 71
     * GFLOP/s with the default policy, 111 with passive; oneDNN's own
     * large rows moved within noise). */
    char env[16];
    snprintf(env, sizeof env, "%d", threads);
    const char *cur = getenv("OMP_NUM_THREADS");
    if (!cur || strcmp(cur, env)) {
        setenv("OMP_NUM_THREADS", env, 1);
        setenv("OMP_WAIT_POLICY", "passive", 0);
        execv("/proc/self/exe", argv);
        fprintf(stderr, "bench_gemm: cannot re-run itself to set OMP_NUM_THREADS\n");
        return 1;
    }
    const TargetInfo *t = ir_host_target();
#ifdef TILEC_HAVE_OPENBLAS
    openblas_set_num_threads(threads);
#endif
    printf("bench_gemm: target %s, %d thread(s), medians; ratios = tilec / the peer on their left;\n"
           "of_peak = tilec / this machine's multiply-add peak, measured after each row (FMA; vdpbf16ps for\n"
           "bf16 where the target has it)\n",
           t ? t->name : "none", threads);
    printf("%-5s %5s %5s %5s %9s %7s %9s %7s %9s %7s %10s\n", "dtype", "M", "N", "K", "tilec", "of_peak", "oneDNN",
           "ratio", "OpenBLAS", "ratio", "compile_ms");
    printf("%-5s %5s %5s %5s %9s %7s %9s %7s %9s\n", "", "", "", "", "GFLOP/s", "", "GFLOP/s", "", "GFLOP/s");
    bool ok = true;
    DType dts[] = {DT_F32, DT_BF16};
    for (int d = 0; d < 2; d++) {
        if (dtype_only >= 0 && d != dtype_only)
            continue;
        if (only.m) {
            ok &= bench_one(spec, tuned, only, dts[d], threads);
            continue;
        }
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            if (quick && shapes[i].m * shapes[i].n * shapes[i].k > 1100LL * 1100 * 1100)
                continue;
            ok &= bench_one(spec, tuned, shapes[i], dts[d], threads);
        }
    }
    return ok ? 0 : 1;
}
