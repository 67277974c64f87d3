/* tensor.h — host tensors: a dtype, a shape and owned row-major storage. */
#ifndef TILEC_RUNTIME_TENSOR_H
#define TILEC_RUNTIME_TENSOR_H

#include "ir/ir.h"

typedef struct RtTensor {
    DType dtype;
    int rank;
    int64_t shape[IR_MAX_RANK];
    void *data; /* 64-byte aligned, dt_storage_bytes(dtype, numel) bytes */
} RtTensor;

/* Zero-filled tensor; NULL if memory is short. */
RtTensor *rt_tensor_new(DType dt, int rank, const int64_t *shape);
/* Storage as a tensor's: `bytes` zeroed, 64-byte aligned (a kernel's
 * vector loads do not straddle cache lines), with room for vector tails
 * past the end; free() releases it.  NULL if memory is short. */
void *rt_tensor_storage(size_t bytes);
void rt_tensor_free(RtTensor *t);
int64_t rt_tensor_numel(const RtTensor *t);
size_t rt_tensor_bytes(const RtTensor *t);
/* A copy converted to another dtype (exact dtype conversions of ir/dtype.c);
 * to its own dtype, the bytes as they are. */
RtTensor *rt_tensor_convert(const RtTensor *t, DType to);
/* "f32[256, 512]" into buf. */
const char *rt_tensor_describe(const RtTensor *t, char *buf, size_t n);

#endif
