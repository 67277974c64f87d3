/* moe_ref.h — MoE dispatch and combine on one rank (v4-spec §3.5), plain C
 * from the spec's loops; shares no code with kernels_src. */
#ifndef TILEC_TEST_MOE_REF_H
#define TILEC_TEST_MOE_REF_H

#include <stddef.h>
#include <stdint.h>

/* The expert-contiguous layout of T tokens' K routed experts idx[T·K]:
 * experts in ascending order, inside an expert by token, then slot.
 * counts[E]; offsets[E + 1] exclusive (offsets[E] = rows placed);
 * row[T·K] the row of each (token, slot), −1 for an id outside [0, E);
 * src[T·K] and wr[T·K] the token and weight of each row, −1 and 0 past
 * offsets[E]. */
void ref_moe_layout(int T, int K, int E, const int32_t *idx, const float *w, int32_t *counts, int32_t *offsets,
                    int32_t *row, int32_t *src, float *wr);

/* xe[r] = x[src[r]], rows of `bytes` bytes; zero bytes where src[r] < 0. */
void ref_moe_gather(int R, size_t bytes, const int32_t *src, const uint8_t *x, uint8_t *xe);

/* The spec's accumulation, `for e in range(E): y[idx] += expert_e(...)`, in
 * f32 starting from 0: out[t] += (w[t, s] ·) y[row[t, s]] for every slot
 * with idx[t, s] == e, expert by expert; then out[t] += shared[t] (NULL:
 * none).  w NULL: unweighted (V4 weights inside the expert).  y holds the
 * rows' values (bf16 widened), D wide. */
void ref_moe_combine(int T, int K, int E, int D, const int32_t *idx, const int32_t *row, const float *w,
                     const float *y, const float *shared, float *out);

#endif
