/* pool.h — the thread pool that runs a kernel's block grid.
 *
 * rt_pool_run splits [0, ntasks) into one contiguous chunk per thread, so
 * independent blocks run with no barrier but the final join, and no two
 * threads write the same cache line of the pool's own state. */
#ifndef TILEC_RUNTIME_POOL_H
#define TILEC_RUNTIME_POOL_H

#include <stdint.h>

typedef struct RtPool RtPool;
typedef void (*RtTaskFn)(void *ctx, int64_t begin, int64_t end);

RtPool *rt_pool_new(int nthreads); /* nthreads <= 0: one per online core */
void rt_pool_free(RtPool *p);
int rt_pool_threads(const RtPool *p);
/* Run fn over [0, ntasks) on at most `use` threads (<= 0: all of them). */
void rt_pool_run(RtPool *p, int use, int64_t ntasks, RtTaskFn fn, void *ctx);
/* The process's pool, created on first use with one thread per core. */
RtPool *rt_pool_default(void);

#endif
