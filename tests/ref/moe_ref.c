/* moe_ref.c — see moe_ref.h.  Written straight from the definitions: the
 * layout walks experts, then tokens, then slots, and hands out rows in that
 * order; no counting pass, no scan. */
#include "moe_ref.h"

#include <string.h>

void ref_moe_layout(int T, int K, int E, const int32_t *idx, const float *w, int32_t *counts, int32_t *offsets,
                    int32_t *row, int32_t *src, float *wr)
{
    int64_t n = (int64_t)T * K;
    for (int64_t i = 0; i < n; i++) {
        row[i] = -1;
        src[i] = -1;
        wr[i] = 0;
    }
    int32_t next = 0;
    for (int e = 0; e < E; e++) {
        offsets[e] = next;
        for (int64_t i = 0; i < n; i++) {
            if (idx[i] != e)
                continue;
            row[i] = next;
            src[next] = (int32_t)(i / K);
            wr[next] = w[i];
            next++;
        }
        counts[e] = next - offsets[e];
    }
    offsets[E] = next;
}

void ref_moe_gather(int R, size_t bytes, const int32_t *src, const uint8_t *x, uint8_t *xe)
{
    for (int r = 0; r < R; r++) {
        if (src[r] < 0)
            memset(xe + (size_t)r * bytes, 0, bytes);
        else
            memcpy(xe + (size_t)r * bytes, x + (size_t)src[r] * bytes, bytes);
    }
}

void ref_moe_combine(int T, int K, int E, int D, const int32_t *idx, const int32_t *row, const float *w,
                     const float *y, const float *shared, float *out)
{
    memset(out, 0, sizeof(float) * (size_t)T * D);
    for (int e = 0; e < E; e++)
        for (int t = 0; t < T; t++)
            for (int s = 0; s < K; s++) {
                int64_t i = (int64_t)t * K + s;
                if (idx[i] != e)
                    continue;
                const float *yr = y + (int64_t)row[i] * D;
                for (int d = 0; d < D; d++)
                    out[(int64_t)t * D + d] += w ? w[i] * yr[d] : yr[d];
            }
    if (shared)
        for (int64_t i = 0; i < (int64_t)T * D; i++)
            out[i] += shared[i];
}
