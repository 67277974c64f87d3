/* pool.c — a persistent pthread pool: workers sleep on a condition variable
 * between runs; in a run every thread claims contiguous chunks of tasks
 * from a shared counter until none are left. */
#include "runtime/pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

enum { WORKER_STACK_BYTES = 32 << 20 };

typedef struct Worker {
    _Alignas(64) struct RtPool *pool; /* one cache line per worker */
    int index;
    pthread_t thread;
} Worker;

struct RtPool {
    pthread_mutex_t mu;
    pthread_cond_t start, done;
    int nthreads;    /* workers besides the caller */
    int use;         /* threads taking part in the current run */
    uint64_t epoch;  /* bumped per run; workers wait for a new one */
    int pending;     /* workers still busy in this run */
    bool quit;
    RtTaskFn fn;
    void *ctx;
    int64_t ntasks, grain;
    _Alignas(64) _Atomic int64_t next; /* the first task not yet claimed: its own line */
    Worker *workers;
};

/* Claim chunks of p->grain tasks until the run has none left.  Claiming
 * instead of a fixed share per thread: on a machine shared with other
 * jobs one thread can run at half speed, and the others then take its
 * part (f32 2048^3 on two threads spent 20% longer in one of them than
 * in the other, the other then idle). */
static void claim_and_run(RtPool *p, RtTaskFn fn, void *ctx)
{
    int64_t n = p->ntasks, g = p->grain;
    for (;;) {
        int64_t b = atomic_fetch_add_explicit(&p->next, g, memory_order_relaxed);
        if (b >= n)
            return;
        fn(ctx, b, b + g < n ? b + g : n);
    }
}

static void *worker_main(void *arg)
{
    Worker *w = arg;
    RtPool *p = w->pool;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->epoch == seen && !p->quit)
            pthread_cond_wait(&p->start, &p->mu);
        if (p->quit)
            break;
        seen = p->epoch;
        int parts = p->use, me = w->index + 1; /* the caller is part 0 */
        if (me < parts) {
            RtTaskFn fn = p->fn;
            void *ctx = p->ctx;
            pthread_mutex_unlock(&p->mu);
            claim_and_run(p, fn, ctx);
            pthread_mutex_lock(&p->mu);
            if (--p->pending == 0)
                pthread_cond_signal(&p->done);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

RtPool *rt_pool_new(int nthreads)
{
    if (nthreads <= 0)
        nthreads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (nthreads < 1)
        nthreads = 1;
    RtPool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start, NULL);
    pthread_cond_init(&p->done, NULL);
    p->nthreads = nthreads - 1;
    p->workers = aligned_alloc(64, sizeof(Worker) * (size_t)(p->nthreads + 1));
    /* Kernels keep their scratch in stack arrays for the run of blocks
     * they are given (codegen/llvm.c), a staging shared by those blocks up
     * to two L2s' worth per buffer (passes/hoist.c): the stack is sized for
     * that rather than left to the C library's default (the stack rlimit,
     * which a user may have lowered).  Pages are only touched as used. */
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, WORKER_STACK_BYTES);
    for (int i = 0; i < p->nthreads; i++) {
        p->workers[i].pool = p;
        p->workers[i].index = i;
        pthread_create(&p->workers[i].thread, &attr, worker_main, &p->workers[i]);
    }
    pthread_attr_destroy(&attr);
    return p;
}

void rt_pool_free(RtPool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->quit = true;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->workers[i].thread, NULL);
    free(p->workers);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->start);
    pthread_cond_destroy(&p->done);
    free(p);
}

int rt_pool_threads(const RtPool *p) { return p->nthreads + 1; }

int rt_pool_use(const RtPool *p, int use, int64_t ntasks)
{
    int total = p->nthreads + 1;
    if (use <= 0 || use > total)
        use = total;
    return use > ntasks ? (ntasks > 0 ? (int)ntasks : 1) : use;
}

/* 8 chunks per thread: fewer claims than blocks, and each chunk still a
 * contiguous run of blocks (neighbouring memory for one thread) */
int64_t rt_pool_grain(int use, int64_t ntasks)
{
    return ntasks / ((int64_t)use * 8) > 1 ? ntasks / ((int64_t)use * 8) : 1;
}

void rt_pool_run(RtPool *p, int use, int64_t ntasks, RtTaskFn fn, void *ctx)
{
    use = rt_pool_use(p, use, ntasks);
    if (use == 1) {
        if (ntasks > 0)
            fn(ctx, 0, ntasks);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->ntasks = ntasks;
    p->grain = rt_pool_grain(use, ntasks);
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    p->use = use;
    p->pending = use - 1;
    p->epoch++;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    claim_and_run(p, fn, ctx);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

/* The runtime's one shared context: made once, lives until exit. */
static RtPool *default_pool;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static void make_default(void) { default_pool = rt_pool_new(0); }

RtPool *rt_pool_default(void)
{
    pthread_once(&default_once, make_default);
    return default_pool;
}
