/* attn_index_ref.h — the index lists of sparse attention (v4-spec §3.4
 * steps 9–11) and a sort-based top-k (§3.4.2 step 5), from the spec in
 * plain C; nothing here is shared with kernels_src/. */
#ifndef TILEC_TEST_ATTN_INDEX_REF_H
#define TILEC_TEST_ATTN_INDEX_REF_H

#include <stdint.h>

enum { REF_SWA, REF_CSA, REF_HCA };

/* The [window (W) | compressed] list of the query at position p, written
 * to out (ref_attn_index_width entries), −1 masked.
 *   decode: W ring slots holding the latest positions (slot q mod W), in
 *           the order their tokens came, unfilled slots −1 at the end;
 *   prefill: the same positions as rows of this call's s tokens.
 * SWA stops there.  HCA appends compressed block j < nc (nc = s // ratio in
 * prefill, (last + 1) // ratio in decode, last the call's last position) as
 * j + s (prefill) or j + W (decode) while j < (p + 1) // ratio, else −1.
 * CSA appends the kt entries of topk_row as they are. */
typedef struct RefAttnIndex {
    int kind, decode, W, ratio;
    int64_t s;    /* prefill: this call's tokens */
    int64_t last; /* decode: the call's last position */
    int kt;       /* CSA: the top-k width */
} RefAttnIndex;

int64_t ref_attn_index_width(const RefAttnIndex *a);
void ref_attn_index(const RefAttnIndex *a, int64_t p, const int32_t *topk_row, int32_t *out);

/* Top-k by sorting: the positions of the min(K, visible) largest scores
 * (visible: > −inf and not NaN; equal scores, −0 and +0 included, ordered by
 * position), plus offset, in ascending position order, then −1 up to K.
 * Returns how many were visible (before the min with K). */
int64_t ref_topk_sorted(int64_t N, int K, const float *score, int offset, int32_t *idx);

#endif
