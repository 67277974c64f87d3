/* attn_index_ref.c — see attn_index_ref.h.  The decode window is found by
 * replaying the ring buffer's writes (§4: position q goes to slot q mod W)
 * and reading the slots back by age, not by a closed formula. */
#include "ref/attn_index_ref.h"

#include <math.h>
#include <stdlib.h>

int64_t ref_attn_index_width(const RefAttnIndex *a)
{
    switch (a->kind) {
    case REF_SWA: return a->W;
    case REF_CSA: return a->W + a->kt;
    default: return a->W + (a->decode ? (a->last + 1) / a->ratio : a->s / a->ratio);
    }
}

static int by_position(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

/* Decode: what the W ring slots hold after positions 0..p were written,
 * oldest first, as slot numbers. */
static void ring_window(int W, int64_t p, int32_t *out)
{
    int64_t *held = malloc((size_t)W * sizeof *held), *order = malloc((size_t)W * sizeof *order);
    for (int s = 0; s < W; s++)
        held[s] = -1;
    for (int64_t q = 0; q <= p; q++)
        held[q % W] = q;
    int n = 0;
    for (int s = 0; s < W; s++)
        if (held[s] >= 0)
            order[n++] = held[s];
    qsort(order, (size_t)n, sizeof *order, by_position);
    for (int i = 0; i < W; i++)
        out[i] = -1;
    for (int i = 0; i < n; i++)
        for (int s = 0; s < W; s++)
            if (held[s] == order[i])
                out[i] = s;
    free(held);
    free(order);
}

/* Prefill: the rows of positions max(0, p-W+1) .. p, then -1. */
static void prefill_window(int W, int64_t p, int32_t *out)
{
    int n = 0;
    for (int64_t q = p - W + 1; q <= p; q++)
        if (q >= 0)
            out[n++] = (int32_t)q;
    while (n < W)
        out[n++] = -1;
}

void ref_attn_index(const RefAttnIndex *a, int64_t p, const int32_t *topk_row, int32_t *out)
{
    if (a->decode)
        ring_window(a->W, p, out);
    else
        prefill_window(a->W, p, out);
    int32_t *rest = out + a->W;
    if (a->kind == REF_CSA) {
        for (int k = 0; k < a->kt; k++)
            rest[k] = topk_row[k];
    } else if (a->kind == REF_HCA) {
        int64_t n = ref_attn_index_width(a) - a->W, visible = (p + 1) / a->ratio;
        int64_t offset = a->decode ? a->W : a->s;
        for (int64_t j = 0; j < n; j++)
            rest[j] = j < visible ? (int32_t)(j + offset) : -1;
    }
}

static const float *sort_keys; /* qsort has no context argument */

/* Larger score first; equal scores by lower position. */
static int by_score(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    float sa = sort_keys[a], sb = sort_keys[b];
    if (sa != sb)
        return sa > sb ? -1 : 1;
    return (a > b) - (a < b);
}

int64_t ref_topk_sorted(int64_t N, int K, const float *score, int offset, int32_t *idx)
{
    int64_t *pos = malloc((size_t)N * sizeof *pos), n = 0;
    for (int64_t i = 0; i < N; i++)
        if (score[i] > -INFINITY) /* false for NaN too */
            pos[n++] = i;
    sort_keys = score;
    qsort(pos, (size_t)n, sizeof *pos, by_score);
    int64_t take = n < K ? n : K;
    qsort(pos, (size_t)take, sizeof *pos, by_position);
    for (int k = 0; k < K; k++)
        idx[k] = k < take ? (int32_t)(pos[k] + offset) : -1;
    free(pos);
    return n;
}
