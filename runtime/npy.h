/* npy.h — NumPy .npy files in and out (format versions 1.0-3.0, C order).
 *
 * Element types: <f4 f32, <f2 f16, <f8 (read only: rounded to f32), <i4 i32,
 * <i8 i64, |u1 u8, |i1 i8, |b1 bool, and <u2 read/written as raw bf16 bits.
 * Errors name the file: missing, truncated, not an .npy, an unsupported or
 * big-endian dtype, Fortran order. */
#ifndef TILEC_RUNTIME_NPY_H
#define TILEC_RUNTIME_NPY_H

#include "runtime/tensor.h"

RtTensor *rt_npy_load(const char *path, Diag *d);
/* Writes to PATH.tmp and renames, so a failed write never leaves a
 * half-written file where a good one was. */
bool rt_npy_save(const char *path, const RtTensor *t, Diag *d);

#endif
