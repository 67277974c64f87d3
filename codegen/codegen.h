/* codegen.h — Loop IR → LLVM IR → x86-64 machine code (JIT or files).
 *
 * Generated-code ABI: one external function per kernel, named after it:
 *   void NAME(void *const *args, const int64_t *params, int64_t begin, int64_t end);
 * runs blocks [begin, end) of the grid linearised row-major over its dims;
 * args[i] is the base of argument i, params[i] the value of runtime scalar i.
 * The JIT calls a second one, NAME.claimed (CgKernelFn), which with a
 * CgClaim runs chunks of blocks it claims from a counter that the threads
 * of a launch share, until none are left below end: one call per thread,
 * so that what a block stages for later ones (ONCE: a staged A, say)
 * survives from one chunk to the next (a call per chunk restaged it:
 * packed fp4 at 4 rows, two threads, 8 chunks each, ~9 us each time).
 * Arguments must not overlap where one of them is written (the code treats
 * them as `noalias`, as the PTX entry does): an update in place is one
 * inout argument.
 * fp8 conversions call the exported dt_* functions of ir/dtype.c, so an
 * object file links with tilec_ir and -lm (math is inline: vmath.c). */
#ifndef TILEC_CODEGEN_H
#define TILEC_CODEGEN_H

#include "ir/ir.h"
#include "ir/tensormap.h"

/* The blocks a launch's threads claim, grain at a time (NAME.claimed). */
typedef struct CgClaim {
    _Alignas(64) _Atomic int64_t next; /* the first block not yet claimed: its own line */
    int64_t grain;
} CgClaim;

/* NAME.claimed: blocks [begin, end), or with claim those claimed from it. */
typedef void (*CgKernelFn)(void *const *args, const int64_t *params, int64_t begin, int64_t end, CgClaim *claim);

typedef enum CgEmit { CG_EMIT_LLVM, CG_EMIT_ASM, CG_EMIT_OBJ } CgEmit;

/* Where code generation's time went, in seconds: LLVM IR built from the
 * Loop IR, LLVM's O3 pipeline over it, and machine code (the file's, or
 * the JIT's). */
typedef struct CgTimes {
    double build, optimise, machine;
} CgTimes;

/* Write k (at LEVEL_LOOP) as LLVM IR text, assembly or an object file;
 * the time each step took into *times unless it is NULL. */
bool cg_emit_file(const Kernel *k, const TargetInfo *t, CgEmit what, const char *path, CgTimes *times, Diag *d);

/* PTX text of k (GPU Loop IR, after pass_threads) for a GPU target t; the
 * kernel ABI is in ptx.c.  malloc'd, NULL with d set on failure. */
char *cg_emit_ptx(const Kernel *k, const TargetInfo *t, Diag *d);

/* A TMA tensor map a GPU kernel takes (sm_90a, codegen/tma.c): one per
 * distinct (argument, box, swizzle) of its tma_loads, in order of first
 * use.  A GPU kernel's parameters are its argument pointers, then these
 * maps (each `.param .align 64 .b8 NAME[128]`, grid-constant: the 128
 * bytes are passed by value), then its i64 scalars. */
enum { CG_MAX_TMAPS = 16 };
typedef struct CgTmaMap {
    int arg, rank;
    int64_t box[IR_MAX_RANK]; /* outermost first */
    int swizzle;              /* bytes: 0, 32, 64, 128 */
} CgTmaMap;
int cg_tma_maps(const Kernel *k, CgTmaMap *maps); /* maps[CG_MAX_TMAPS]; returns how many */
int cg_tma_map_of(const Kernel *k, const CgTmaMap *maps, int n, const Stmt *tma_load);
/* cuTensorMapEncodeTiled's arguments for map m, the shapes evaluated with
 * the launch's scalars (false where TMA cannot take them). */
bool cg_tma_args(const Kernel *k, const CgTmaMap *m, const int64_t *params, TmapArgs *out, Diag *d);
/* The position of argument pointer i, tensor map i or scalar i in the
 * kernel's parameters (kernelParams of cuLaunchKernel). */
typedef enum CgParamKind { CG_PARAM_ARG, CG_PARAM_TMAP, CG_PARAM_SCALAR } CgParamKind;
int cg_gpu_param_slot(const Kernel *k, int nmaps, CgParamKind kind, int i);

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
CgTimes cg_jit_times(const CgJit *j);
void cg_jit_free(CgJit *j);

/* Evaluate the grid with params and run every block on nthreads threads of
 * the runtime's pool (0: all cores). */
bool cg_launch(const Kernel *k, CgKernelFn fn, void *const *args, const int64_t *params,
               int nthreads, Diag *d);

#endif
