/* passes.h — the pass pipeline: Tile IR in, Loop IR out.
 *
 * Each pass takes a kernel and a target, mutates the kernel, and returns
 * false with d set when the kernel cannot be compiled for that target.
 * The order lives in one table in pipeline.c; ir_verify runs after each. */
#ifndef TILEC_PASSES_H
#define TILEC_PASSES_H

#include "ir/ir.h"

typedef struct PassOptions {
    const char *dump_after; /* NULL, a pass name, or "all": print IR after it */
    FILE *dump;             /* where dumps and timings go (stderr if NULL) */
    bool time_passes;
} PassOptions;

/* Run every pass in order: Tile IR → Loop IR for target t (Loop IR read back
 * from a .tir is only verified: it has been through them). */
bool pass_pipeline(Kernel *k, const TargetInfo *t, const PassOptions *o, Diag *d);
/* "check, reuse, stages, tma, lower, bounds, fuse, hoist, vectorize, stream, threads, wgwait" */
const char *pass_names(void);


/* Semantic pre-check against the target (fragment sizes, ...). */
bool pass_check(Kernel *k, const TargetInfo *t, Diag *d);
/* Serial loops of one iteration unwrapped, then a copy of an input window
 * into a buffer that still holds it dropped (Tile IR; see reuse.c). */
bool pass_reuse(Kernel *k, const TargetInfo *t, Diag *d);
/* GPU: multi-stage buffering of `pipelined` loops with asynchronous copies
 * (Tile IR; see stages.c). */
bool pass_stages(Kernel *k, const TargetInfo *t, Diag *d);
/* sm_90a: a staged loop's copies of argument tiles become TMA loads that
 * complete on one mbarrier per stage (Tile IR, after stages; see tma.c). */
bool pass_tma(Kernel *k, const TargetInfo *t, Diag *d);
/* Tile ops → loops of element loads/stores; GEMM → MICRO_GEMM register
 * tiles over packed scratch operands. */
bool pass_lower(Kernel *k, const TargetInfo *t, Diag *d);
/* A GEMM (or block MICRO_GEMM) as plain loops: one iteration per element
 * of C, a private accumulator, a serial loop over K (lower_gemm.c). */
Stmt *pass_gemm_loops(Kernel *k, const TargetInfo *t, const Stmt *g);
/* Fold the conditions, selects and min/max that the ranges of the grid,
 * loop and thread variables decide; drop the branches never taken and the
 * scratch buffers only they used (Loop IR; see bounds.c). */
bool pass_bounds(Kernel *k, const TargetInfo *t, Diag *d);
/* Loop fusion within the kernel (Loop IR): consecutive nests over the
 * same iteration space merge when no iteration of one touches what another
 * iteration of the other writes; scratch values then used within one
 * iteration are forwarded and their stores dropped (see fuse.c). */
bool pass_fuse(Kernel *k, const TargetInfo *t, Diag *d);
/* Staging that consecutive blocks share (grid variables aside from the
 * fastest) runs once per run of them, in a `once` (CPU; see hoist.c). */
bool pass_hoist(Kernel *k, const TargetInfo *t, Diag *d);
/* Mark innermost loops that are safe to run in vector lanes (CPU). */
bool pass_vectorize(Kernel *k, const TargetInfo *t, Diag *d);
/* Mark the stores of vector loops that may bypass the cache: write-once
 * outputs, every vector aligned where the base is (CPU; see stream.c). */
bool pass_stream(Kernel *k, const TargetInfo *t, Diag *d);
/* GPU: spread parallel loops over the block's threads, place scratch in
 * shared or private memory, insert the barriers the data flow needs. */
bool pass_threads(Kernel *k, const TargetInfo *t, Diag *d);
/* sm_90a: the wgmma_wait (and barrier) each asynchronous wgmma group needs
 * before its accumulator is touched or its operand tiles are rewritten
 * (GPU Loop IR; see wgwait.c). */
bool pass_wgwait(Kernel *k, const TargetInfo *t, Diag *d);
/* Dynamic shared memory a threaded kernel needs (buffers 16-aligned, in
 * buffer order: codegen lays them out the same way). */
int64_t pass_shared_bytes(const Kernel *k);

#endif
