/* codegen.h — Loop IR → LLVM IR → x86-64 machine code (JIT or files).
 *
 * Generated-code ABI: one external function per kernel, named after it:
 *   void NAME(void *const *args, const int64_t *params, int64_t begin, int64_t end);
 * runs blocks [begin, end) of the grid linearised row-major over its dims;
 * args[i] is the base of argument i, params[i] the value of runtime scalar i.
 * fp8 conversions call the exported dt_* functions of ir/dtype.c and vector
 * math calls glibc's libmvec, so an object file links with tilec_ir and
 * -lmvec -lm. */
#ifndef TILEC_CODEGEN_H
#define TILEC_CODEGEN_H

#include "ir/ir.h"

typedef void (*CgKernelFn)(void *const *args, const int64_t *params, int64_t begin, int64_t end);

typedef enum CgEmit { CG_EMIT_LLVM, CG_EMIT_ASM, CG_EMIT_OBJ } CgEmit;

/* Write k (at LEVEL_LOOP) as LLVM IR text, assembly or an object file. */
bool cg_emit_file(const Kernel *k, const TargetInfo *t, CgEmit what, const char *path, Diag *d);

/* PTX text of k (GPU Loop IR, after pass_threads) for a GPU target t; the
 * kernel ABI is in ptx.c.  malloc'd, NULL with d set on failure. */
char *cg_emit_ptx(const Kernel *k, const TargetInfo *t, Diag *d);

/* Host copies of a kernel's arguments for a GPU run: host[i] holds bytes[i]
 * bytes of argument i (dense, the kernel's strides); params[i] is runtime
 * scalar i.  Outputs are copied back into host[]. */
typedef struct CgGpuArgs {
    void *const *host;
    const size_t *bytes;
    const int64_t *params;
} CgGpuArgs;

/* Run k (after the pass pipeline for GPU target t) on the first CUDA device:
 * PTX, load, copy in, launch, copy out (gpu_run.c).  reps > 1 also times
 * that many launches (median ms into *median_ms).  Fails with a one-line
 * message when there is no CUDA driver or device. */
bool cg_gpu_run(const Kernel *k, const TargetInfo *t, const CgGpuArgs *a, int reps, double *median_ms,
                Diag *d);

typedef struct CgJit CgJit;
CgJit *cg_jit_compile(const Kernel *k, const TargetInfo *t, Diag *d);
CgKernelFn cg_jit_fn(const CgJit *j);
void cg_jit_free(CgJit *j);

/* Evaluate the grid with params and run every block on nthreads threads of
 * the runtime's pool (0: all cores). */
bool cg_launch(const Kernel *k, CgKernelFn fn, void *const *args, const int64_t *params,
               int nthreads, Diag *d);

#endif
