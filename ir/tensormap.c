/* tensormap.c — cuTensorMapEncodeTiled's arguments (see tensormap.h). */
#include "ir/tensormap.h"

/* TMA moves elements of 1, 2, 4 or 8 bytes; it reinterprets nothing but
 * the out-of-bounds fill, so every 8-bit type (fp8 too) moves as UINT8. */
static int tmap_dtype(DType dt)
{
    switch (dt) {
    case DT_BF16: return TMAP_DT_BFLOAT16;
    case DT_F16: return TMAP_DT_FLOAT16;
    case DT_F32: return TMAP_DT_FLOAT32;
    case DT_I32: return TMAP_DT_INT32;
    case DT_I64: return TMAP_DT_INT64;
    case DT_I8: case DT_U8: case DT_BOOL: case DT_F8E4M3: case DT_F8E5M2: case DT_E8M0: return TMAP_DT_UINT8;
    default: return -1; /* fp4 packs two elements a byte: not a TMA element */
    }
}

static int tmap_swizzle(int bytes)
{
    return bytes == 0 ? TMAP_SWIZZLE_NONE : bytes == 32 ? TMAP_SWIZZLE_32B : bytes == 64 ? TMAP_SWIZZLE_64B
           : bytes == 128 ? TMAP_SWIZZLE_128B : -1;
}

static bool no(Diag *d, const char *why, long long v)
{
    return diag_error(d, (SrcLoc){0}, "no TMA copy: %s (%lld)", why, v);
}

bool tmap_args(DType dt, int rank, const int64_t *shape, const int64_t *stride, const int64_t *box,
               int swizzle_bytes, TmapArgs *out, Diag *d)
{
    *out = (TmapArgs){.data_type = tmap_dtype(dt), .rank = (unsigned)rank,
                      .swizzle = tmap_swizzle(swizzle_bytes), .interleave = TMAP_INTERLEAVE_NONE,
                      .l2_promotion = TMAP_L2_256B, .oob_fill = TMAP_OOB_FILL_ZERO};
    if (out->data_type < 0)
        return no(d, "the dtype is no whole-byte TMA element", (long long)dt);
    if (rank < 1 || rank > TMAP_MAX_RANK)
        return no(d, "rank outside 1..5", rank);
    if (out->swizzle < 0)
        return no(d, "swizzle width not 0, 32, 64 or 128 bytes", swizzle_bytes);
    int64_t eb = dt_bits(dt) / 8;
    if (stride[rank - 1] != 1)
        return no(d, "the innermost dimension is not contiguous, stride", (long long)stride[rank - 1]);
    for (int i = 0; i < rank; i++) { /* i counts innermost first */
        int o = rank - 1 - i;
        if (shape[o] < 1 || shape[o] > ((int64_t)1 << 32))
            return no(d, "a dimension outside 1..2^32", (long long)shape[o]);
        if (box[o] < 1 || box[o] > TMAP_MAX_BOX)
            return no(d, "a box dimension outside 1..256", (long long)box[o]);
        out->dim[i] = (uint64_t)shape[o];
        out->box[i] = (uint32_t)box[o];
        out->elem_stride[i] = 1;
        if (i > 0) {
            int64_t bytes = stride[o] * eb;
            if (bytes % 16 || bytes <= 0 || bytes >= ((int64_t)1 << 40))
                return no(d, "a global stride is no multiple of 16 bytes below 2^40", (long long)bytes);
            out->stride[i - 1] = (uint64_t)bytes;
        }
    }
    int64_t inner = box[rank - 1] * eb;
    if (inner % 16)
        return no(d, "the box's inner extent is no multiple of 16 bytes", (long long)inner);
    if (swizzle_bytes && inner > swizzle_bytes)
        return no(d, "the box's inner extent exceeds the swizzle span", (long long)inner);
    return true;
}
