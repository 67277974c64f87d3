/* timing.c — monotonic time and medians. */
#include "runtime/timing.h"

#include <stdlib.h>
#include <time.h>

double rt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double rt_median(double *samples, int n)
{
    qsort(samples, (size_t)n, sizeof samples[0], cmp_double);
    return samples[n / 2];
}
