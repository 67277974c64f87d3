/* lower.h — what lower.c (every tile op) and lower_gemm.c (GEMM) share:
 * the pass's state and the pieces both build loops from.  Internal to
 * passes/; pass_lower (passes.h) is the entry point. */
#ifndef TILEC_PASSES_LOWER_H
#define TILEC_PASSES_LOWER_H

#include "ir/ir.h"

typedef struct Lower {
    Kernel *k;
    const TargetInfo *t;
    int ntemp; /* for unique scratch names */
    /* promoted fp8 GEMMs' partial products, one per accumulator: the
     * copies of a pipelined step share it (lower_gemm.c) */
    Buffer *part_of[8], *part[8];
    int nparts;
    /* CPU: the copy that reads each global input a second time in a block,
     * which also fetches the next grid block's window (lower.c) */
    const Stmt *fetch_next[8];
    int nfetch;
} Lower;

static inline Expr *ci(Lower *L, int64_t v) { return ir_const_i(L->k, v); }
static inline Expr *add(Lower *L, Expr *a, Expr *b) { return ir_binary(L->k, EX_ADD, a, b); }
static inline Region whole(Lower *L, Buffer *b) { return ir_region_whole(L->k, b); }

/* Index of region r's element at window position pos[] (one per dim). */
void lower_region_at(Lower *L, const Region *r, Expr *const *pos, Expr **idx);
/* The whole window lies inside its buffer (NULL: trivially true, a
 * scratch window). */
Expr *lower_window_inside(Lower *L, const Region *r);
/* The same with dimension dim's extent the expression ext instead (the
 * part of the window a run-time count covers); dim -1: the whole window. */
Expr *lower_window_part_inside(Lower *L, const Region *r, int dim, Expr *ext);
/* a && b, either NULL for true. */
Expr *lower_and(Lower *L, Expr *a, Expr *b);
/* A load reading 0 outside a global buffer (guard) without touching memory
 * there, and a store dropped outside it. */
Expr *lower_guarded_load(Lower *L, const Buffer *b, Expr **idx, bool guard);
Stmt *lower_guarded_store(Lower *L, Buffer *b, Expr **idx, Expr *v, bool guard, bool atomic, SrcLoc loc);
/* A nest of loops of `kind` over ext[0..n), variables prefix0.. in vars,
 * the innermost body in *inner. */
Stmt *lower_nest(Lower *L, int n, const int64_t *ext, LoopKind kind, const char *prefix, Expr **vars, Stmt **inner,
                 SrcLoc loc);
/* COPY (ATOMIC_ADD with atomic) of window src into dst as loops: the
 * unguarded nest where both windows are inside, the guarded one else. */
Stmt *lower_copy(Lower *L, const Region *src, const Region *dst, bool atomic, SrcLoc loc);
/* A copy between a global window that may lie partly outside its buffer
 * and scratch as row runs split at the buffer's edges (CPU; NULL where
 * the copy is not of that shape: lower.c says which). */
Stmt *lower_copy_rows_split(Lower *L, const Region *src, const Region *dst, SrcLoc loc);
/* One row of such a copy into scratch, found again after the passes that
 * follow (hoist, fuse): items [from, from + n) of seq are loops `for v <
 * count { X[row, start + v] = value }` (start 0 written as just v) whose
 * runs lie back to back from 0 to the end of X's constant last extent,
 * every store X's (2-D scratch) at the same row.  Their stores into st
 * (3 at most); n, 0 where the items from `from` on are not such runs. */
int lower_row_runs(const Stmt *seq, int from, Stmt **st);
/* A new scratch buffer named `what` and a number no buffer has. */
Buffer *lower_temp(Lower *L, const char *what, Scope scope, DType dt, int rank, const int64_t *shape, SrcLoc loc);

/* lower_gemm.c: a GEMM (block-scaled or not) as register tiles, dot tiles,
 * tensor-core tiles or plain loops, by target and shape. */
Stmt *lower_gemm(Lower *L, const Stmt *g);
/* Whether GEMM g runs on the CPU as broadcast register tiles (B packed
 * into panels, A read micro_m rows at a time), not as dot tiles. */
bool lower_gemm_in_register_tiles(Lower *L, const Stmt *g);
/* Copies into scratch that only a CPU GEMM of seq reads, forwarded: the
 * GEMM reads (or packs) the copy's source instead. */
void lower_forward_gemm_operands(Lower *L, Stmt *seq);

#endif
