/* frontend.h — Lua specs in, Tile IR out.
 *
 * A spec is a Lua 5.4 file that returns `T.kernel "name" {...}` (or
 * `T.compose "name" {...}`, two specs joined by ir/compose.c) built with the
 * `tile` module (frontend/tile.lua; the language is described in
 * frontend/README.md).  Lua runs at build time: loops, tables and functions
 * in the spec build IR; T.* calls and operators on IR values become IR. */
#ifndef TILEC_FRONTEND_H
#define TILEC_FRONTEND_H

#include "ir/ir.h"

/* One --set NAME=VALUE. */
typedef struct FeSet {
    const char *name;
    const char *value;
} FeSet;

/* Run the spec at path and build its kernel with parameters overridden by
 * sets.  NULL on error, with d naming the user's file and line.  The caller
 * frees the kernel with ir_kernel_free. */
Kernel *fe_load(const char *path, const FeSet *sets, int nsets, Diag *d);
/* The same, built for target t: a spec's `choose` picks the tune{}
 * parameters the sets leave out from the shape and t's figures (vector
 * width, caches).  fe_load (t NULL) leaves them at their first candidates. */
Kernel *fe_load_for(const char *path, const FeSet *sets, int nsets, const TargetInfo *t, Diag *d);

#endif
