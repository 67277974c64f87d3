/* run.h — how operator tests run a kernel spec on one executor:
 *   NULL           the interpreter on the Tile IR the frontend built;
 *   a GPU target   its GPU lowering in the interpreter's SIMT mode (threads,
 *                  shared memory, async copies, and the race detector);
 *   a CPU target   the pass pipeline and the JIT, on `threads` threads.
 * Shared by the tests in tests/unit/ (tests/harness/run.c). */
#ifndef TILEC_TEST_RUN_H
#define TILEC_TEST_RUN_H

#include "frontend/frontend.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Can this machine run target?  The interpreter and SIMT mode always can;
 * a CPU target this CPU lacks prints "skipped: ..." (once per target). */
bool th_runs_here(const char *target);

/* Load spec with sets and run it on target over args; params: the dyn
 * values.  False (the diagnostic printed) when it does not compile or run. */
bool th_run(const char *spec, const FeSet *sets, int nsets, const char *target, void *const *args,
            const int64_t *params, int threads);

/* Does spec with sets fail to load?  Its diagnostic, as printed, goes to
 * msg (the one-line errors tests compare exactly). */
bool th_load_fails(const char *spec, const FeSet *sets, int nsets, char *msg, size_t size);

/* A spec compiled once and launched many times (a chain of kernels, a
 * decode one token per launch, a benchmark), on one executor as above. */
typedef struct ThKernel {
    Kernel *k;
    struct CgJit *jit; /* NULL: the interpreter (SIMT mode for a GPU target) */
    const char *target;
} ThKernel;

/* On target (NULL: the interpreter), tune{} parameters the sets leave out
 * at their first candidates.  False (the diagnostic printed, naming spec)
 * when it does not compile. */
bool th_kernel_build_on(ThKernel *tk, const char *spec, const FeSet *sets, int nsets, const char *target);
/* The same for a target description of the test's own (a named one with a
 * trait changed, say), which must outlive tk. */
bool th_kernel_build_for(ThKernel *tk, const char *spec, const FeSet *sets, int nsets, const TargetInfo *t);
/* On this CPU's best target (ir_host_target: this machine's caches), as
 * `tilec run` builds it: the spec's choose picks what the sets leave out. */
bool th_kernel_build(ThKernel *tk, const char *spec, const FeSet *sets, int nsets);
/* One launch over args; params: the dyn values, in the kernel's order. */
bool th_kernel_run(const ThKernel *tk, void *const *args, const int64_t *params, int threads);
void th_kernel_free(ThKernel *tk);

/* The whole file, NUL-terminated (malloc'd), or NULL when it cannot be read. */
char *th_read_file(const char *path);

/* "interp" for NULL, else the target's name (for messages). */
const char *th_name(const char *target);

#endif
