/* peers.c — see peers.h. */
#include "bench/peers.h"

#include "runtime/pool.h"
#include "runtime/timing.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct Copy {
    char *dst;
    const char *src;
    size_t chunk;
} Copy;

static void copy_chunks(void *ctx, int64_t begin, int64_t end)
{
    const Copy *c = ctx;
    for (int64_t i = begin; i < end; i++)
        memcpy(c->dst + (size_t)i * c->chunk, c->src + (size_t)i * c->chunk, c->chunk);
}

/* The median of 5 runs of fn over `threads` parts on the runtime's pool,
 * in seconds. */
static double median_of_5(int threads, void (*fn)(void *, int64_t, int64_t), void *ctx)
{
    double t[5];
    for (int r = 0; r < 5; r++) {
        double t0 = rt_now();
        rt_pool_run(rt_pool_default(), threads, threads, fn, ctx);
        t[r] = rt_now() - t0;
    }
    return rt_median(t, 5);
}

double bench_copy_bandwidth(int threads)
{
    if (threads < 1)
        threads = 1;
    size_t n = (size_t)512 << 20;
    char *a = malloc(n), *b = malloc(n);
    memset(a, 1, n);
    memset(b, 2, n);
    /* as many chunks as threads: each copies one contiguous part, as a
     * kernel's block range does */
    Copy c = {b, a, n / (size_t)threads};
    double sec = median_of_5(threads, copy_chunks, &c);
    free(a);
    free(b);
    return 2.0 * (double)(c.chunk * (size_t)threads) / sec * 1e-9; /* read + write */
}

enum { READ_STREAMS = 8, READ_ROW = 8192 };

typedef uint64_t Lanes __attribute__((vector_size(16)));

typedef struct Read {
    const char *src;
    size_t bytes; /* per thread's part */
    uint64_t sums[64];
} Read;

/* Xors each part as a decode GEMV's dot tiles read a weight matrix: rows
 * of READ_ROW bytes, READ_STREAMS neighbouring rows at a time, each start
 * to end a cache line per step (on one core of the AVX2 host 13-20 GB/s
 * depending on the minute; 8 streams far apart read less, and software
 * prefetch adds nothing).  The sum is kept so the loads cannot go. */
static void read_chunks(void *ctx, int64_t begin, int64_t end)
{
    Read *r = ctx;
    size_t group = (size_t)READ_STREAMS * READ_ROW;
    for (int64_t i = begin; i < end; i++) {
        const char *p = r->src + (size_t)i * r->bytes;
        Lanes acc[READ_STREAMS] = {{0}};
        for (size_t g = 0; g + group <= r->bytes; g += group)
            for (size_t b = 0; b < READ_ROW; b += 64)
                for (int j = 0; j < READ_STREAMS; j++) {
                    Lanes v[4];
                    memcpy(v, p + g + (size_t)j * READ_ROW + b, sizeof v);
                    acc[j] ^= v[0] ^ v[1] ^ v[2] ^ v[3];
                }
        uint64_t t = 0;
        for (int j = 0; j < READ_STREAMS; j++)
            t += acc[j][0] + acc[j][1];
        r->sums[i % 64] += t;
    }
}

double bench_read_bandwidth(int threads)
{
    if (threads < 1)
        threads = 1;
    size_t n = (size_t)512 << 20;
    char *a = malloc(n);
    memset(a, 1, n);
    Read r = {a, n / (size_t)threads, {0}};
    double sec = median_of_5(threads, read_chunks, &r);
    free(a);
    volatile uint64_t keep = r.sums[0];
    (void)keep;
    size_t group = (size_t)READ_STREAMS * READ_ROW;
    return (double)(r.bytes / group * group * (size_t)threads) / sec * 1e-9;
}

enum { PEAK_CHAINS = 12, PEAK_ITERS = 20000000 };

#define CHAINS12(op, r) \
    op " %%" r "12, %%" r "13, %%" r "0\n" op " %%" r "12, %%" r "13, %%" r "1\n" \
    op " %%" r "12, %%" r "13, %%" r "2\n" op " %%" r "12, %%" r "13, %%" r "3\n" \
    op " %%" r "12, %%" r "13, %%" r "4\n" op " %%" r "12, %%" r "13, %%" r "5\n" \
    op " %%" r "12, %%" r "13, %%" r "6\n" op " %%" r "12, %%" r "13, %%" r "7\n" \
    op " %%" r "12, %%" r "13, %%" r "8\n" op " %%" r "12, %%" r "13, %%" r "9\n" \
    op " %%" r "12, %%" r "13, %%" r "10\n" op " %%" r "12, %%" r "13, %%" r "11\n"

#define ZERO(i) "vxorps %%xmm" #i ", %%xmm" #i ", %%xmm" #i "\n"
/* zeros everywhere (VEX clears the upper lanes): no NaN, no denormal */
#define PEAK_LOOP(body, n)                                                                                    \
    __asm__ volatile(ZERO(0) ZERO(1) ZERO(2) ZERO(3) ZERO(4) ZERO(5) ZERO(6) ZERO(7) ZERO(8) ZERO(9) ZERO(10) \
                     ZERO(11) ZERO(12) ZERO(13) "1:\n" body "dec %0\n jnz 1b\n"                              \
                     : "+r"(n)                                                                                \
                     :                                                                                        \
                     : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",         \
                       "xmm10", "xmm11", "xmm12", "xmm13", "cc")

typedef struct Peak {
    int kind; /* 0: FMA ymm, 1: FMA zmm, 2: vdpbf16ps zmm */
} Peak;

/* The values never matter (nothing reads them): only the issue rate. */
static void peak_chains(void *ctx, int64_t begin, int64_t end)
{
#if defined(__x86_64__)
    const Peak *p = ctx;
    for (int64_t i = begin; i < end; i++) {
        long n = PEAK_ITERS;
        if (p->kind == 0)
            PEAK_LOOP(CHAINS12("vfmadd231ps", "ymm"), n);
        else if (p->kind == 1)
            PEAK_LOOP(CHAINS12("vfmadd231ps", "zmm"), n);
        else
            PEAK_LOOP(CHAINS12("vdpbf16ps", "zmm"), n);
    }
#else
    (void)ctx, (void)begin, (void)end;
#endif
}

double bench_fma_peak(int threads, int vector_bits, bool bf16_dot)
{
    if (threads < 1)
        threads = 1;
#if !defined(__x86_64__)
    return NAN;
#endif
    Peak p = {bf16_dot ? 2 : vector_bits >= 512 ? 1 : 0};
    double lanes = (p.kind ? 512 : 256) / 32, flops_per_op = (bf16_dot ? 4 : 2) * lanes;
    double sec = median_of_5(threads, peak_chains, &p);
    return (double)threads * PEAK_ITERS * PEAK_CHAINS * flops_per_op / sec * 1e-9;
}
