/* cli.h — what the commands of the tilec command line share: the parsed
 * options and running a kernel on bound arguments (main.c), used by the
 * sweep (sweep.c). */
#ifndef TILEC_CLI_H
#define TILEC_CLI_H

#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "ir/ir.h"
#include "runtime/tensor.h"

enum { MAX_OPTS = 64 };

typedef struct NamedFile {
    const char *name, *path;
} NamedFile;

/* Options of every command, parsed in one place. */
typedef struct Opts {
    const char *cmd, *spec;
    FeSet sets[MAX_OPTS];
    int nsets;
    NamedFile ins[MAX_OPTS], outs[MAX_OPTS];
    int nins, nouts;
    const char *target, *emit, *dump_after, *out_path;
    bool interp, simt, check, raw, time_passes, report;
    int threads, repeat, rotate;
    bool repeat_given;
    unsigned seed;
    long long stream_bytes; /* -1: the target's */
    FeSet overs[MAX_OPTS];  /* sweep: --over NAME=V1,V2,... */
    int novers;
    const char *store;      /* sweep: --store FILE */
    int jobs;               /* sweep: --jobs N (0: one per core) */
    const char *tuned;      /* run, compile: --tuned FILE */
} Opts;

/* The run-time state of one invocation: a tensor per argument, values of
 * the dyn params, and which params are bound so far. */
typedef struct Bindings {
    RtTensor *t[64];
    int64_t params[64];
    bool bound[64];
} Bindings;

/* One line on stderr: exit code 2 (malformed command line) or 1 (d). */
int usage_error(const char *fmt, const char *arg);
int fail(const Diag *d);
/* The target of --target (the host's best by default), with --stream-bytes. */
const TargetInfo *target_of(const Opts *o, Diag *d);
/* Every argument of k: --in files, random inputs (--seed), zeroed outputs. */
bool setup_args(const Kernel *k, const Opts *o, Bindings *bd, Diag *d);
Bindings *bindings_clone(const Kernel *k, const Bindings *src);
/* Whether bd, made for kernel `of`, binds kernel k's arguments too: the
 * same names, directions, dtypes and shapes (k another point of its spec). */
bool bindings_fit(const Kernel *k, const Kernel *of, const Bindings *bd);
void bindings_free(Bindings *b, int n);
/* Runs k on bd o->repeat times (the interpreter on Tile IR, or the pass
 * pipeline and the JIT / the CUDA device; k is lowered in place) and
 * gives the median time in seconds. */
bool execute(Kernel *k, bool interp, const TargetInfo *t, const Opts *o, Bindings *bd, double *median, Diag *d);
/* execute's two halves on a CPU, for a caller that compiles apart from
 * running (a sweep, on several threads): the pass pipeline and the JIT
 * (k lowered in place; --time-passes printed), then `untimed` runs of the
 * code (jit NULL: the interpreter) and o->repeat timed ones, their median
 * in seconds. */
CgJit *compile_jit(Kernel *k, const TargetInfo *t, const Opts *o, Diag *d);
bool run_cpu(Kernel *k, CgJit *jit, const Opts *o, Bindings *bd, int untimed, double *median, Diag *d);
/* How far output got lies from ref (same dtype dt and size): the largest
 * difference (infinite where a NaN or infinity is not matched exactly),
 * the largest relative one, and the tolerance a check allows. */
typedef struct OutputDiff {
    double maxabs, maxrel, tol;
} OutputDiff;
/* got against ref within the tolerance of dt (wider for f32 results of
 * fp8 tensor-core products: fp8_mma, see fp8_tensor_cores). */
OutputDiff output_diff(DType dt, bool fp8_mma, const RtTensor *ref, const RtTensor *got);
/* Lowered k multiplies 8-bit floats with tensor-core instructions. */
bool fp8_tensor_cores(const Kernel *k);

/* sweep.c: `tilec sweep`, and the results store `run`/`compile --tuned`
 * read: o itself without --tuned, else a copy in *buf whose --set list
 * gains the best recorded point's values for the tune parameters o does
 * not set (NULL with d set on a malformed or unreadable store). */
int cmd_sweep(const Opts *o);
const Opts *with_tuned(const Opts *o, const TargetInfo *t, Opts *buf, Diag *d);

#endif
