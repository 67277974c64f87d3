/* bench/decode.c — decode GEMMs: weight bytes per second against this
 * machine's copy bandwidth on the same thread count (issue 3's goal: ≥ 90%).
 *
 *   build/bench/bench_decode [--threads N] [--quick] [--fmt bf16|fp8|fp4]
 *
 * M = 1, 4, 16 tokens through the Flash weight shapes N×K = 4096×4096 and
 * 7168×2048 in three formats:
 *   bf16   examples/gemm.lua (bf16 A and B, f32 out)
 *   fp8    kernels_src/fp8_gemm.lua (e4m3, 1×128 / 128×128 UE8M0 scales)
 *   fp4    kernels_src/moe_expert_gemm.lua with one expert (packed e2m1,
 *          1×32 UE8M0 scales; e4m3 activations)
 * bf16 and fp8 take the tiles their spec's choose picks for this machine,
 * as `tilec run --set M=...` gets them (the specs say what and why: few
 * weight rows per block for the prefetchers, long K steps); fp4's are set
 * here (build()): BN 4 up to 4 rows (M = 1: 3.4-4.4 ms at 16 against 10-11
 * at 128, a loaded AVX2 host; Zen 5, M = 4: 0.94 ms at 16, 0.78 at 4), 128
 * at 16.
 * Enough copies of the weights to fill three times the last-level cache
 * (at least three) are rotated between repetitions, so the weights come
 * from DRAM (two copies of bf16's 32 MiB beside a 32 MiB L3 read faster
 * than memory does).  Every kernel's output is checked on sampled columns against double-
 * precision sums of the decoded operands before it is timed (a fast wrong
 * answer fails the run).  of_read compares with a plain C loop reading
 * memory the way the dot tiles do (bench_read_bandwidth): copy counts the
 * bytes written too, and one core of the AVX2 host reads ~0.75 of what
 * memcpy moves. */
#include "bench/peers.h"
#include "ir/ir.h"
#include "runtime/timing.h"
#include "tests/harness/run.h"
#include "tests/ref/moe_gemm_ref.h"
#include "tests/ref/ref.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { FMT_BF16, FMT_FP8, FMT_FP4, NFMT };
static const char *fmt_name[NFMT] = {"bf16", "fp8", "fp4"};

typedef struct Problem {
    int fmt, M, N, K;
} Problem;

/* One weight copy and the activations / outputs it is used with. */
typedef struct Data {
    void *a, *sa, *c;      /* activations, their scales, the output */
    void **w, **sw;        /* [copies]: weights and their scales */
    int copies;
    int32_t cnt[1], off[1];
} Data;

static unsigned rng = 12345;
static unsigned next(void) { return rng = rng * 1103515245u + 12345u; }
static float uniform(void) { return (float)((next() >> 8) & 0xffff) / 32768.0f - 1.0f; }

/* An e4m3 code that is not NaN; a UE8M0 scale near 1. */
static uint8_t e4m3_code(void)
{
    uint8_t b = (uint8_t)(next() >> 16);
    return (b & 0x7f) == 0x7f ? (uint8_t)(b - 1) : b;
}
static uint8_t e8m0_near_one(void) { return (uint8_t)(124 + (next() >> 16) % 7); }

static void *fill_bytes(size_t n, uint8_t (*gen)(void))
{
    uint8_t *p = aligned_alloc(64, (n + 63) / 64 * 64);
    for (size_t i = 0; i < n; i++)
        p[i] = gen();
    return p;
}

static uint8_t any_byte(void) { return (uint8_t)(next() >> 16); }

/* e4m3 weights as a checkpoint holds them: bell-shaped values (a sum of
 * four uniforms) quantised per 128x128 block, the block's largest scaled
 * into (224, 448] as a UE8M0 scale leaves it.  Codes of exponent 0 (zero,
 * subnormals) are then rare — below 2^-6 of a range reaching 448 — where
 * uniform random codes hold one in 16; the fp8 dot tiles decode blocks
 * without them in fewer instructions (codegen/micro.c, e4m3_words). */
static void *fill_e4m3_weights(size_t N, size_t K)
{
    uint8_t *p = aligned_alloc(64, (N * K + 63) / 64 * 64);
    float *v = malloc(128 * K * sizeof *v);
    for (size_t r0 = 0; r0 < N; r0 += 128) {
        size_t rows = N - r0 < 128 ? N - r0 : 128;
        for (size_t i = 0; i < rows * K; i++)
            v[i] = uniform() + uniform() + uniform() + uniform();
        for (size_t k0 = 0; k0 < K; k0 += 128) {
            float amax = 0;
            for (size_t r = 0; r < rows; r++)
                for (size_t k = k0; k < k0 + 128 && k < K; k++)
                    amax = fmaxf(amax, fabsf(v[r * K + k]));
            float inv = amax > 0 ? 1.0f / ldexpf(1.0f, (int)ceilf(log2f(amax / 448.0f))) : 1.0f;
            for (size_t r = 0; r < rows; r++)
                for (size_t k = k0; k < k0 + 128 && k < K; k++)
                    p[(r0 + r) * K + k] = dt_f32_to_e4m3(v[r * K + k] * inv);
        }
    }
    free(v);
    return p;
}

static void *fill_bf16(size_t n)
{
    uint16_t *p = aligned_alloc(64, (n * 2 + 63) / 64 * 64);
    for (size_t i = 0; i < n; i++)
        p[i] = dt_f32_to_bf16(uniform());
    return p;
}

/* The last-level cache as the kernel reports it (sysfs), else as libc
 * does (which a VM's CPUID may inflate), else 32 MiB. */
static size_t llc_bytes(void)
{
    int64_t l3 = ir_read_caches("/sys/devices/system/cpu/cpu0").l3;
    if (l3 > 0)
        return (size_t)l3;
    long libc = sysconf(_SC_LEVEL3_CACHE_SIZE);
    return libc > 0 ? (size_t)libc : (size_t)32 << 20;
}

/* The bytes of one copy of the weights, scales included. */
static size_t weight_bytes(const Problem *p)
{
    size_t N = (size_t)p->N, K = (size_t)p->K;
    return p->fmt == FMT_BF16 ? N * K * 2 : p->fmt == FMT_FP8 ? N * K + (N / 128) * (K / 128) : N * K / 2 + N * K / 32;
}

static void data_make(const Problem *p, Data *d)
{
    size_t M = (size_t)p->M, N = (size_t)p->N, K = (size_t)p->K;
    memset(d, 0, sizeof *d);
    size_t wb = weight_bytes(p);
    d->copies = (int)((3 * llc_bytes() + wb - 1) / wb);
    d->copies = d->copies < 3 ? 3 : d->copies > 48 ? 48 : d->copies;
    d->w = calloc((size_t)d->copies, sizeof(void *));
    d->sw = calloc((size_t)d->copies, sizeof(void *));
    for (int r = 0; r < d->copies; r++) {
        if (p->fmt == FMT_BF16) {
            d->w[r] = fill_bf16(N * K);
        } else if (p->fmt == FMT_FP8) {
            d->w[r] = fill_e4m3_weights(N, K);
            d->sw[r] = fill_bytes((N / 128) * (K / 128), e8m0_near_one);
        } else {
            d->w[r] = fill_bytes(N * K / 2, any_byte);
            d->sw[r] = fill_bytes(N * K / 32, e8m0_near_one);
        }
    }
    if (p->fmt == FMT_BF16) {
        d->a = fill_bf16(M * K);
        d->c = calloc(M * N, 4);
    } else {
        d->a = fill_bytes(M * K, e4m3_code);
        d->sa = fill_bytes(M * (K / 128), e8m0_near_one);
        d->c = calloc(M * N, 2);
    }
    d->cnt[0] = p->M;
    d->off[0] = 0;
}

static void data_free(Data *d)
{
    for (int r = 0; r < d->copies; r++) {
        free(d->w[r]);
        free(d->sw[r]);
    }
    free(d->w);
    free(d->sw);
    free(d->a);
    free(d->sa);
    free(d->c);
}

/* The kernel's argument list for weight copy r. */
static int args_of(const Problem *p, Data *d, int r, void **args)
{
    switch (p->fmt) {
    case FMT_BF16:
        args[0] = d->a, args[1] = d->w[r], args[2] = d->c;
        return 3;
    case FMT_FP8:
        args[0] = d->a, args[1] = d->sa, args[2] = d->w[r], args[3] = d->sw[r], args[4] = d->c;
        return 5;
    default:
        args[0] = d->a, args[1] = d->sa, args[2] = d->cnt, args[3] = d->off, args[4] = d->w[r];
        args[5] = d->sw[r], args[6] = d->c;
        return 7;
    }
}

/* Output (m, n) in f32, and the double-precision value it should be, with
 * the sum of the terms' magnitudes (the scale of rounding errors). */
static float got_at(const Problem *p, const Data *d, int m, int n)
{
    size_t i = (size_t)m * (size_t)p->N + (size_t)n;
    return p->fmt == FMT_BF16 ? ((float *)d->c)[i] : dt_bf16_to_f32(((uint16_t *)d->c)[i]);
}

static double want_at(const Problem *p, const Data *d, int m, int n, double *mag)
{
    int K = p->K;
    double s = 0, a = 0;
    if (p->fmt == FMT_BF16) {
        const uint16_t *x = (const uint16_t *)d->a + (size_t)m * K, *w = (const uint16_t *)d->w[0] + (size_t)n * K;
        for (int k = 0; k < K; k++) {
            double t = (double)ref_decode_bf16(x[k]) * ref_decode_bf16(w[k]);
            s += t, a += fabs(t);
        }
    } else if (p->fmt == FMT_FP8) {
        const uint8_t *x = (const uint8_t *)d->a + (size_t)m * K, *w = (const uint8_t *)d->w[0] + (size_t)n * K;
        const uint8_t *sa = (const uint8_t *)d->sa + (size_t)m * (K / 128);
        const uint8_t *sw = (const uint8_t *)d->sw[0] + (size_t)(n / 128) * (K / 128);
        for (int k = 0; k < K; k++) {
            double t = (double)ref_decode_e4m3(x[k]) * ref_decode_e4m3(w[k]) * ref_decode_e8m0(sa[k / 128]) *
                       ref_decode_e8m0(sw[k / 128]);
            s += t, a += fabs(t);
        }
    } else {
        const uint8_t *x = (const uint8_t *)d->a + (size_t)m * K, *w = (const uint8_t *)d->w[0] + (size_t)n * (K / 2);
        const uint8_t *sa = (const uint8_t *)d->sa + (size_t)m * (K / 128);
        const uint8_t *sw = (const uint8_t *)d->sw[0] + (size_t)n * (K / 32);
        for (int k = 0; k < K; k++) {
            unsigned nib = k % 2 ? w[k / 2] >> 4 : w[k / 2] & 15;
            double t = (double)ref_decode_e4m3(x[k]) * ref_e2m1_nibble(nib) * ref_decode_e8m0(sa[k / 128]) *
                       ref_decode_e8m0(sw[k / 32]);
            s += t, a += fabs(t);
        }
    }
    *mag = a;
    return s;
}

/* Sampled columns of every row against want_at: within f32 accumulation
 * error plus one output rounding (bf16 outputs). */
static bool verify(const Problem *p, const Data *d)
{
    for (int m = 0; m < p->M; m++)
        for (int j = 0; j < 24; j++) {
            int n = (int)((j * 2654435761u + (unsigned)m) % (unsigned)p->N);
            double mag, want = want_at(p, d, m, n, &mag), got = got_at(p, d, m, n);
            double tol = 1e-5 * mag + (p->fmt == FMT_BF16 ? 0 : fabs(want) / 128);
            if (!(fabs(got - want) <= tol)) {
                fprintf(stderr, "bench_decode: %s M=%d N=%d K=%d: c[%d][%d] = %g, want %g (tolerance %g)\n",
                        fmt_name[p->fmt], p->M, p->N, p->K, m, n, got, want, tol);
                return false;
            }
        }
    return true;
}

static const char *spec_of(int fmt)
{
    return fmt == FMT_BF16 ? "examples/gemm.lua" : fmt == FMT_FP8 ? "kernels_src/fp8_gemm.lua"
                                                                 : "kernels_src/moe_expert_gemm.lua";
}

/* The kernel of p's format, its tile sizes as the spec's choose picks them
 * for this machine (as `tilec run` does): bf16 and fp8 at a known M (the
 * GEMM specialised to the batch, as a decode step would compile it; see
 * examples/gemm.lua and kernels_src/fp8_gemm.lua for the choices and why).
 * fp4, moe_expert_gemm with one expert, whose rows are a run-time count,
 * takes them from here: all of K in one scaled T.gemm at every row count
 * (the A rows staged as f32 once; 4096^2, one thread: 1 row 2.73 -> 2.55
 * ms, 4 rows 5.13 -> 4.15, 16 rows 14.7 -> 13.0, weights in L3), 16 weight
 * rows per block up to 4 rows, else 128. */
static bool build(const Problem *p, ThKernel *tk)
{
    char m[16], n[16], k[16];
    snprintf(m, sizeof m, "%d", p->M);
    snprintf(n, sizeof n, "%d", p->N);
    snprintf(k, sizeof k, "%d", p->K);
    FeSet bf16[] = {{"M", m}, {"N", n}, {"K", k}, {"dtype", "bf16"}};
    FeSet fp8[] = {{"M", m}, {"N", n}, {"K", k}};
    const char *bm = p->M <= 1 ? "1" : p->M <= 4 ? "4" : "16";
    FeSet fp4[] = {{"E", "1"}, {"N", n}, {"K", k}, {"BM", bm}, {"BN", p->M <= 4 ? "4" : "128"}, {"BK", k}};
    const FeSet *sets = p->fmt == FMT_BF16 ? bf16 : p->fmt == FMT_FP8 ? fp8 : fp4;
    int nsets = p->fmt == FMT_BF16 ? 4 : p->fmt == FMT_FP4 ? 6 : 3;
    return th_kernel_build(tk, spec_of(p->fmt), sets, nsets);
}

/* The median time of one launch, weights rotated; < 0 when it fails. */
static double run(const Problem *p, int threads, int reps)
{
    ThKernel tk = {0};
    if (!build(p, &tk))
        return -1;
    Data d;
    data_make(p, &d);
    void *args[8];
    int64_t params[1] = {p->M};
    const int64_t *pp = p->fmt == FMT_FP4 ? params : NULL; /* (bf16 and fp8: M is set) */
    args_of(p, &d, 0, args);
    bool ok = th_kernel_run(&tk, args, pp, threads) && verify(p, &d);
    double *t = calloc((size_t)reps, sizeof *t), med = -1;
    for (int r = 0; ok && r < reps; r++) {
        args_of(p, &d, (r + 1) % d.copies, args);
        double t0 = rt_now();
        ok = th_kernel_run(&tk, args, pp, threads);
        t[r] = rt_now() - t0;
    }
    if (ok)
        med = rt_median(t, reps);
    free(t);
    data_free(&d);
    th_kernel_free(&tk);
    return med;
}

int main(int argc, char **argv)
{
    int threads = 1, quick = 0, only = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (!strcmp(argv[i], "--fmt") && i + 1 < argc) {
            i++;
            for (int f = 0; f < NFMT; f++)
                if (!strcmp(argv[i], fmt_name[f]))
                    only = f;
            if (only < 0) {
                fprintf(stderr, "bench_decode: unknown format %s (bf16, fp8, fp4)\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "usage: bench_decode [--threads N] [--quick] [--fmt bf16|fp8|fp4]\n");
            return 2;
        }
    }
    static const int shapes[][2] = {{4096, 4096}, {7168, 2048}}, ms[] = {1, 4, 16};
    int reps = quick ? 5 : 11;
    const TargetInfo *t = ir_host_target();
    double bw = bench_copy_bandwidth(threads), rd = bench_read_bandwidth(threads);
    printf("bench_decode: target %s, %d thread(s), median of %d, weights rotated over 3x the %zu MiB LLC\n",
           t ? t->name : "none", threads, reps, llc_bytes() >> 20);
    printf("copy bandwidth %.1f GB/s (read+write, %d thread(s)); of_copy = weight GB/s / that\n", bw, threads);
    printf("read bandwidth %.1f GB/s (8 neighbouring 8 KiB rows at a time, bench/peers.c); of_read = weight GB/s / that\n", rd);
    printf("%-5s %3s %5s %5s %10s %9s %8s %8s\n", "fmt", "M", "N", "K", "median_us", "weightGB/s", "of_copy",
           "of_read");
    int failures = 0;
    for (int f = 0; f < NFMT; f++)
        for (int s = 0; s < 2; s++)
            for (int i = 0; i < 3; i++) {
                Problem p = {f, ms[i], shapes[s][0], shapes[s][1]};
                if ((quick && s) || (only >= 0 && f != only))
                    continue;
                double sec = run(&p, threads, reps);
                if (sec < 0) {
                    printf("%-5s %3d %5d %5d failed\n", fmt_name[f], p.M, p.N, p.K);
                    failures++;
                    continue;
                }
                double gbs = (double)weight_bytes(&p) / sec * 1e-9;
                printf("%-5s %3d %5d %5d %10.1f %9.2f %8.2f %8.2f\n", fmt_name[f], p.M, p.N, p.K, sec * 1e6, gbs,
                       gbs / bw, gbs / rd);
                fflush(stdout);
            }
    return failures ? 1 : 0;
}
