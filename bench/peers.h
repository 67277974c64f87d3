/* peers.h — what the CPU benchmarks measure their kernels against that is
 * not a library: this machine's memory bandwidth (bench/peers.c). */
#ifndef TILEC_BENCH_PEERS_H
#define TILEC_BENCH_PEERS_H

/* memcpy of 512 MiB split over `threads` threads of the runtime's pool,
 * median of 5, as bytes read + written per second / 1e9. */
double bench_copy_bandwidth(int threads);

/* Reading 512 MiB split over `threads` threads, each its part as 8
 * neighbouring 8 KiB rows at a time (the weight rows a decode GEMV walks
 * at once), median of 5, as bytes read per second / 1e9: what a kernel
 * that only reads can hope for. */
double bench_read_bandwidth(int threads);

#endif
