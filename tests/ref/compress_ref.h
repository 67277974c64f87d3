/* compress_ref.h — an independent reference for the V4 compressor
 * (v4-spec §3.4.1), written from the spec in plain C: the projections, the
 * per-channel softmax pooling of a block's slots, the emit chain on a
 * pooled entry (bf16, RMSNorm with weight, bf16, RoPE at the block's first
 * position, then FP8 on the nope dims or Hadamard + FP4), and the
 * streaming state replayed the way the reference model's Compressor runs:
 * one bulk prefill from position 0, then one decode call per token.
 * Shares no code with kernels_src/; the roundings are ref.c's. */
#ifndef TILEC_TEST_COMPRESS_REF_H
#define TILEC_TEST_COMPRESS_REF_H

#include <stdbool.h>
#include <stdint.h>

/* kv = wkv·x, g = wgate·x in double for T tokens: x [T, d], wkv and wgate
 * [cw, d] (the bf16 values as floats), outputs [T, cw]; kmag and gmag get
 * Σ_k |w[j,k]·x[t,k]| of each output (what bounds its f32 rounding error). */
void ref_compress_project(int T, int d, int cw, const float *x, const float *wkv, const float *wgate, double *kv,
                          double *g, double *kmag, double *gmag);

/* One compressor and its cache.  exact: the spec's roundings (bf16 steps,
 * e4m3 / e2m1 with UE8M0 scales); false: the same math in double with no
 * rounding and no quantisation (the "plain float math" level of §9). */
typedef struct RefCompressor {
    int ratio, D;
    bool index;                     /* the indexer's (D 128: Hadamard + FP4), else attention (FP8 nope dims) */
    bool exact;
    const float *ape, *w, *cs;      /* ape [ratio, c·D], norm weight [D], ref_rope_table rows */
    float *kv_state, *score_state;  /* [c·r, c·D] f32, as the spec keeps them */
    float *cache;                   /* [rows, D]: the entries' values */
    float *scale;                   /* [rows, D/32]: each quantisation block's scale, in block order */
    int64_t rows;
} RefCompressor;

/* How many D-wide halves a projection has: 2 for CSA (ratio 4), else 1. */
int ref_compress_halves(int ratio);

/* A fresh compressor (state kv 0, scores −inf; cache zero). */
void ref_compressor_init(RefCompressor *c, int ratio, int D, bool index, bool exact, const float *ape,
                         const float *w, const float *cs, int64_t rows);
void ref_compressor_free(RefCompressor *c);

/* A prefill of s tokens at position 0: kv, g [s, c·D] without ape.  Every
 * complete block is pooled in bulk and emitted; the rest fills the state. */
void ref_compressor_prefill(RefCompressor *c, int64_t s, const float *kv, const float *g);

/* One decode token at position pos: kv, g [c·D] without ape. */
void ref_compressor_decode(RefCompressor *c, int64_t pos, const float *kv, const float *g);

#endif
