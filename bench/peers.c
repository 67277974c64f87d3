/* peers.c — see peers.h. */
#include "bench/peers.h"

#include "runtime/pool.h"
#include "runtime/timing.h"

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
    double t[5];
    for (int r = 0; r < 5; r++) {
        double t0 = rt_now();
        rt_pool_run(rt_pool_default(), threads, threads, copy_chunks, &c);
        t[r] = rt_now() - t0;
    }
    free(a);
    free(b);
    return 2.0 * (double)(c.chunk * (size_t)threads) / rt_median(t, 5) * 1e-9; /* read + write */
}
