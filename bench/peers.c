/* peers.c — see peers.h. */
#include "bench/peers.h"

#include "runtime/timing.h"

#include <stdlib.h>
#include <string.h>

double bench_copy_bandwidth(void)
{
    size_t n = (size_t)512 << 20;
    char *a = malloc(n), *b = malloc(n);
    memset(a, 1, n);
    memset(b, 2, n);
    double t[5];
    for (int r = 0; r < 5; r++) {
        double t0 = rt_now();
        memcpy(b, a, n);
        t[r] = rt_now() - t0;
    }
    free(a);
    free(b);
    return 2.0 * (double)n / rt_median(t, 5) * 1e-9; /* read + write */
}
