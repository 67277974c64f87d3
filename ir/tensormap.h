/* tensormap.h — the arguments of cuTensorMapEncodeTiled for a TMA tile copy
 * of a kernel argument, as a pure function (no driver, no GPU), so they
 * are tested where there is no GPU; cu_tensor_map_encode (cuda.h) makes
 * the call.
 *
 * Facts relied on (the toolkit's cuda.h, CUDA 13.0, the documentation of
 * cuTensorMapEncodeTiled and the enums it names):
 *   - dimensions are innermost first: dim[0] is the contiguous one, whose
 *     stride is implicit; strides[i] is the byte stride of dim[i + 1], a
 *     multiple of 16 below 2^40; dims are 1 .. 2^32; rank 1 .. 5;
 *   - the global address is 16-byte aligned;
 *   - box[i] is 1 .. 256 elements, box[0] * element bytes a multiple of 16
 *     and, with a swizzle, at most the swizzle's span (32, 64, 128 bytes);
 *   - element strides are 1 .. 8 (all 1 here: dense boxes);
 *   - CUtensorMapSwizzle: NONE 0, 32B 1, 64B 2, 128B 3 (16-byte chunks
 *     within a 32/64/128-byte span: the layout of wgmma's swizzled K-major
 *     operands, see passes/threads.c swizzle_index);
 *   - CUtensorMapDataType: UINT8 0, UINT16 1, UINT32 2, INT32 3, UINT64 4,
 *     INT64 5, FLOAT16 6, FLOAT32 7, FLOAT64 8, BFLOAT16 9 (fp8 moves as
 *     UINT8: TMA copies bits, and only OOB fill looks at float types);
 *   - CUtensorMapInterleave NONE 0; CUtensorMapL2promotion NONE 0, 64B 1,
 *     128B 2, 256B 3; CUtensorMapFloatOOBfill NONE 0 — out-of-bounds
 *     elements of a box are written as zeros, which is tilec's COPY rule
 *     for tails (ir.h), where NAN_REQUEST_ZERO_FMA (1) would write NaNs;
 *   - the map is 128 bytes, its address 64-byte aligned (a kernel takes it
 *     as `.param .align 64 .b8 map[128]`). */
#ifndef TILEC_IR_TENSORMAP_H
#define TILEC_IR_TENSORMAP_H

#include "ir/ir.h"

#include <stdbool.h>
#include <stdint.h>

enum {
    TMAP_BYTES = 128,
    TMAP_ALIGN = 64,
    TMAP_MAX_RANK = 5,
    TMAP_MAX_BOX = 256,
    /* enum values of cuda.h (checked against it in test_cuda when built
     * with the toolkit) */
    TMAP_DT_UINT8 = 0, TMAP_DT_UINT16 = 1, TMAP_DT_UINT32 = 2, TMAP_DT_INT32 = 3,
    TMAP_DT_INT64 = 5, TMAP_DT_FLOAT16 = 6, TMAP_DT_FLOAT32 = 7, TMAP_DT_BFLOAT16 = 9,
    TMAP_SWIZZLE_NONE = 0, TMAP_SWIZZLE_32B = 1, TMAP_SWIZZLE_64B = 2, TMAP_SWIZZLE_128B = 3,
    TMAP_INTERLEAVE_NONE = 0,
    TMAP_L2_256B = 3,
    TMAP_OOB_FILL_ZERO = 0, /* CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE */
};

/* cuTensorMapEncodeTiled's arguments after the map and the address. */
typedef struct TmapArgs {
    int data_type;
    unsigned rank;
    uint64_t dim[TMAP_MAX_RANK];      /* innermost first, elements */
    uint64_t stride[TMAP_MAX_RANK - 1]; /* bytes, of dim[1] .. dim[rank-1] */
    uint32_t box[TMAP_MAX_RANK];      /* innermost first, elements */
    uint32_t elem_stride[TMAP_MAX_RANK];
    int interleave, swizzle, l2_promotion, oob_fill;
} TmapArgs;

/* The arguments for boxes `box` (outermost first, as tilec writes shapes)
 * of a tensor of dtype dt with this shape and these strides (elements,
 * outermost first), written into shared memory with a swizzle_bytes-wide
 * swizzle (0, 32, 64 or 128).  False, with the reason in d, where TMA
 * cannot take the copy: the caller keeps cp.async there. */
bool tmap_args(DType dt, int rank, const int64_t *shape, const int64_t *stride, const int64_t *box,
               int swizzle_bytes, TmapArgs *out, Diag *d);

#endif
