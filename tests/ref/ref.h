/* ref.h — independent references, written from the math in plain C.
 * They share no code with tilec: rounding is computed from the formats'
 * definitions here, not by calling ir/dtype.c. */
#ifndef TILEC_TEST_REF_H
#define TILEC_TEST_REF_H

#include <stdint.h>

/* C[M,N] = A[M,K] · B[N,K]^T, accumulated in double. */
void ref_gemm(int M, int N, int K, const float *A, const float *B, float *C);
void ref_softmax(int M, int N, const float *x, float *y);
void ref_rmsnorm(int M, int N, const float *x, const float *w, float eps, float *y);
void ref_silu_mul(int64_t n, const float *gate, const float *up, float *y);

/* Nearest value of the format, ties to even; fp8/fp4 saturate to ±max. */
float ref_round_bf16(float x);
float ref_round_f16(float x);
float ref_round_e4m3(float x);
float ref_round_e5m2(float x);
float ref_round_e2m1(float x);
/* Value of every encoding, from the format's definition (NaN for NaNs). */
float ref_decode_e4m3(uint8_t b);
float ref_decode_e5m2(uint8_t b);
float ref_decode_bf16(uint16_t b);
float ref_decode_f16(uint16_t b);

double ref_max_abs_diff(const float *a, const float *b, int64_t n);

#endif

/* act_quant (v4-spec §2.2) for one row of K values (K % 128 == 0):
 * q[k] = the e4m3 value (as f32) of x[k]/s, s[b] = the block's power-of-two
 * scale, 2^ceil(log2(max(amax, 1e-4) / 448)). */
void ref_act_quant(int K, const float *x, float *q, float *s);

/* fp4_act_quant in place (v4-spec §2.5), one row of K (K % 32 == 0):
 * y[k] = bf16(e2m1(clamp(x/s, -6, 6)) * s), s[b] = 2^ceil(log2(max(amax, 6*2^-126) / 6)). */
void ref_fp4_act_quant(int K, const float *x, float *y, float *s);
/* The FP8 KV simulation (v4-spec §2.6) of one vector of D = nope + 64 dims:
 * nope dims through e4m3 with 64-wide ue8m0 blocks and back to bf16. */
void ref_kv_fp8_sim(int D, int nope, const float *x, float *y);

/* rotate_activation (v4-spec §2.7): y = bf16(x · H_N / sqrt(N)), H_N the
 * Sylvester Hadamard matrix, H[i][j] = (-1)^popcount(i & j); in double. */
void ref_hadamard(int N, const float *x, float *y);

/* The RoPE cos/sin table of v4-spec §3.7 for positions 0..P-1, in double:
 * freq_i = theta^(-2i/64), with YaRN (factor 16, original 65536, beta_fast
 * 32, beta_slow 1) when yarn is set; cs[(p*32 + i)*2 + {0,1}] = cos/sin(p·freq_i). */
void ref_rope_table(double theta, int yarn, int P, float *cs);
/* y = x with the last 64 dims of each of H heads rotated by the table row of
 * pos[t] (interleaved pairs); inverse applies the conjugate; bf16-rounded. */
void ref_rope(int M, int H, int D, const float *x, const int32_t *pos, const float *cs, int inverse,
              float *y);

/* fp8_gemm (v4-spec §2.3): C = Σ_kb (A_kb·B_kbᵀ)·sa[m,kb]·sb[n/128,kb] with
 * A, B given as their e4m3 values, scales as values; double, then bf16. */
void ref_fp8_gemm(int M, int N, int K, const float *a, const float *sa, const float *b, const float *sb,
                  float *c);
/* DeepGEMM's calc_diff: 1 - 2·Σxy / Σ(x² + y²). */
double ref_calc_diff(const float *x, const float *y, int64_t n);

/* hc_pre (v4-spec §3.3.1) for one token: x holds the 4 streams of D values
 * (4·D), fn is [24, 4D]; outputs y[D] (bf16-rounded), post[4], comb[16]
 * (row-major C[i][j]); double throughout. */
void ref_hc_pre(int D, const float *x, const float *fn, const float *scale, const float *base, float *y,
                float *post, float *comb);

/* hc_post (v4-spec §3.3.2) for one token: x[j·D + d] = bf16(post[j]·f[d] +
 * Σ_i comb[4i + j]·r[i·D + d]), in double. */
void ref_hc_post(int D, const float *f, const float *r, const float *post, const float *comb, float *x);

/* The MoE gate (v4-spec §3.5 steps 1–4) for one token: scores in double;
 * idx = top-k of score + bias (ties to the lower expert) unless hash_row is
 * given (hash routing); w = unbiased scores normalised, times route_scale.
 * Also returns every expert's biased score in sel (for tie checks). */
void ref_moe_gate(int D, int E, int K, const float *x, const float *wg, const float *bias, double route_scale,
                  const int32_t *hash_row, int32_t *idx, double *w, double *sel);

/* SwiGLU with the asymmetric clamp (v4-spec §3.5 steps 7–9) for one row of
 * I values: h = bf16(silu(min(g, L)) · clamp(u, ±L) · w), then act_quant. */
void ref_swiglu_quant(int I, const float *g, const float *u, float w, float limit, float *q, float *s);

/* hc_head (v4-spec §3.6 step 1) for one token: y[D] = bf16(Σ_i pre_i·X_i),
 * pre_i = sigmoid(mixes_i·scale[0] + base[i]) + 1e-6; double throughout. */
void ref_hc_head(int D, const float *x, const float *fn, const float *scale, const float *base, float *y);

/* The per-head query norm (v4-spec §3.4 step 3) of one head of HD values in
 * the reference's bf16 steps: y = bf16(q · bf16(rsqrt(bf16(bf16(mean(bf16(q²))) + 1e-6)))). */
void ref_q_norm(int HD, const float *q, float *y);

/* Grouped output projection (v4-spec §3.4 step 15): u[t, g, r] =
 * bf16(Σ_k wo_a[g, r, k] · o[t, g·GD + k]), in double. */
void ref_grouped_oproj(int M, int G, int R, int GD, const float *o, const float *w, float *u);

/* Sparse attention with a sink (v4-spec §3.4 step 12) for one query token:
 * o[h] = Σ_j e^(z_j − m) k_j / (Σ_j e^(z_j − m) + e^(sink_h − m)) over the
 * rows kv[idx[j]] with idx[j] >= 0, z_j = q_h·k_j / sqrt(D); exact, double. */
void ref_sparse_attn(int H, int D, const float *q, const float *kv, const int32_t *idx, int L,
                     const float *sink, float *o);

/* The lightning indexer's scores (v4-spec §3.4.2) for one query:
 * score[n] = Σ_h relu(q_h · K_n)·w_h for n < (pos+1)/ratio, else −inf. */
void ref_indexer_logits(int IH, int ID, const float *q, const float *k, int N, const float *w, int pos,
                        int ratio, double *score);
/* The positions of the K largest scores (ties to the lower position), −1
 * for −inf ones, plus offset. */
void ref_topk(int N, int K, const double *score, int offset, int32_t *idx);

/* The compressor's pooling (v4-spec §3.4.1 steps 2–3) over Tn tokens with
 * ratio r (overlap when r == 4: kv, g and ape are 2D wide): one entry of D
 * channels per block, per-channel softmax over the slots; double. */
void ref_compress(int Tn, int r, int D, const float *kv, const float *g, const float *ape, float *out);

/* The e2m1 nibble's value from the format's definition (sign | 2-bit
 * exponent, bias 1 | 1-bit fraction; exponent 0 is subnormal, no NaN/inf). */
float ref_decode_e2m1(uint8_t nibble);
/* UE8M0 (unsigned, 8-bit exponent, bias 127): 2^(b-127), 255 is NaN. */
float ref_decode_e8m0(uint8_t b);
/* The UE8M0 byte of the smallest power of two >= f, exponent clamped to
 * -127..127 (so +inf gives 254 and 0 gives 0); NaN and f < 0 give 255. */
uint8_t ref_encode_e8m0(float f);
