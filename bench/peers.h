/* peers.h — what the CPU benchmarks measure their kernels against that is
 * not a library: this machine's memory bandwidth (bench/peers.c). */
#ifndef TILEC_BENCH_PEERS_H
#define TILEC_BENCH_PEERS_H

#include <stdbool.h>

/* memcpy of 512 MiB split over `threads` threads of the runtime's pool,
 * median of 5, as bytes read + written per second / 1e9. */
double bench_copy_bandwidth(int threads);

/* Reading 512 MiB split over `threads` threads, each its part as 8
 * neighbouring 8 KiB rows at a time (the weight rows a decode GEMV walks
 * at once), median of 5, as bytes read per second / 1e9: what a kernel
 * that only reads can hope for. */
double bench_read_bandwidth(int threads);

/* The multiply-add peak of `threads` cores in GFLOP/s: 12 independent
 * chains of one instruction, enough to fill every FMA pipe — vfmadd231ps
 * on 256- or 512-bit vectors (vector_bits), or vdpbf16ps (bf16_dot, 512
 * bits; 2 products per lane).  Measured, not taken from a data sheet: the
 * clock a shared machine runs at moves with its other tenants. */
double bench_fma_peak(int threads, int vector_bits, bool bf16_dot);

#endif
