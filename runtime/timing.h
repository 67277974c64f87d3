/* timing.h — wall-clock time and medians, the one way tilec measures
 * (the CLI's --repeat, benchmarks, and later the autotuner). */
#ifndef TILEC_RUNTIME_TIMING_H
#define TILEC_RUNTIME_TIMING_H

/* Seconds on a monotonic clock. */
double rt_now(void);
/* Median of n samples (sorts them in place). */
double rt_median(double *samples, int n);

#endif
