/* v4ops.h — the V4 operators of kernels_src/ at Flash decode shapes, one
 * table for the CPU bench (bench_ops) and the GPU one (bench_gpu --ops):
 * each operator's spec, the sizes it runs at, the tile sizes measured best
 * on the CPU host (a GPU takes its spec's choose instead), and arguments
 * made so that every kernel does meaningful work. */
#ifndef TILEC_BENCH_V4OPS_H
#define TILEC_BENCH_V4OPS_H

#include "frontend/frontend.h"
#include "ir/ir.h"

#include <stddef.h>

enum { V4OP_MAX_SETS = 8, V4OP_MAX_ARGS = 16 };

typedef struct V4Op {
    const char *spec;
    const char *sets[V4OP_MAX_SETS][2];  /* sizes and configuration */
    const char *tiles[V4OP_MAX_SETS][2]; /* CPU tile sizes */
    const char *ints[2][2];              /* integer inputs spread over [0, bound): {name, bound} */
    int64_t m;                           /* the dyn size (tokens, a position; 0: none) */
    const char *label;                   /* the row's name (NULL: the spec's file name) */
    int64_t tokens;                      /* the row's token count (0: m) */
} V4Op;

extern const V4Op v4_ops[];
extern const size_t v4_nops;

/* The row name and token count of op. */
const char *v4_op_name(const V4Op *op);
int64_t v4_op_tokens(const V4Op *op);
/* op's --set list into out (V4OP_MAX_SETS * 2 entries): its sizes, and its
 * CPU tiles when cpu_tiles.  Returns the count. */
int v4_op_sets(const V4Op *op, bool cpu_tiles, FeSet *out);
/* Host arrays for the arguments of k (op's kernel) at the dyn sizes params:
 * floats small and varied, e8m0 scales 1, integers 0 (always in range) but
 * op's `ints` (positions, gather indices, expert ids: spread over their
 * range, as a model's are) and the expert GEMMs' per-expert row counts and
 * offsets (m rows spread evenly, so every expert works).  bytes[i] gets
 * each one's size; returns their sum.  Free with free(). */
size_t v4_make_args(const V4Op *op, const Kernel *k, const int64_t *params, void **args, size_t *bytes);

#endif
