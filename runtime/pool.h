/* pool.h — the thread pool that runs a kernel's block grid.
 *
 * rt_pool_run hands out [0, ntasks) in contiguous chunks (8 per thread)
 * that threads claim from a shared counter as they finish the last, so
 * independent blocks run with no barrier but the final join, and a thread
 * slowed by another job on its core does less of the work. */
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
/* The threads rt_pool_run would take for ntasks, and its chunk of tasks
 * (for callers that claim their own chunks: codegen's launch). */
int rt_pool_use(const RtPool *p, int use, int64_t ntasks);
int64_t rt_pool_grain(int use, int64_t ntasks);
/* The process's pool, created on first use with one thread per core. */
RtPool *rt_pool_default(void);

#endif
