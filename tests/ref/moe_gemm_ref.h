/* moe_gemm_ref.h — references for the routed experts' FP8 × FP4 GEMMs
 * (v4-spec §2.4, §3.5 steps 5–9), in plain C from the spec's formulas.
 * Like ref.h, they share no code with tilec or kernels_src: the e2m1
 * nibbles are decoded from the spec's table and unpacked here. */
#ifndef TILEC_TEST_MOE_GEMM_REF_H
#define TILEC_TEST_MOE_GEMM_REF_H

#include <stdint.h>

/* The value of an e2m1 nibble: v4-spec §2.4's table
 * [0, .5, 1, 1.5, 2, 3, 4, 6, -0, -.5, -1, -1.5, -2, -3, -4, -6]. */
float ref_e2m1_nibble(unsigned nibble);

/* One weight row of K values (K % 32 == 0) to FP4 the way the checkpoint
 * stores it: per 32 values s = 2^ceil(log2(max(amax, 6·2^-126) / 6)), the
 * code nearest w/s (ties to the even code), element 2j in the low nibble
 * of packed[j]; scales as UE8M0 bytes. */
void ref_fp4_quant_row(int K, const float *w, uint8_t *packed, uint8_t *scales);

/* fp4_gemm (v4-spec §2.4) for one row: c[n] = bf16(Σ_k32 (Σ_{k in k32}
 * a[k]·w[n, k]) · sa[k / 128] · sw[n, k / 32]) in double.  a: K e4m3
 * bytes, sa: K/128 UE8M0 bytes, w: [N, K/2] packed, sw: [N, K/32] UE8M0. */
void ref_fp4_gemm_row(int N, int K, const uint8_t *a, const uint8_t *sa, const uint8_t *w, const uint8_t *sw,
                      float *c);

/* The grouped GEMM over E experts: rows [off[e], off[e] + cnt[e]) of a
 * ([R, K] e4m3, sa [R, K/128]) through expert e's weights (w [E, N, K/2],
 * sw [E, N, K/32]) into c [R, N]; rows of no expert are left alone. */
void ref_moe_expert_gemm(int E, int N, int K, const int32_t *cnt, const int32_t *off, const uint8_t *a,
                         const uint8_t *sa, const uint8_t *w, const uint8_t *sw, float *c);

/* GEMM 1 of a routed expert with its SwiGLU for one row (v4-spec §3.5
 * steps 6–9): g, u = fp4_gemm_row through rows [0, I) and [I, 2I) of w13
 * (bf16 outputs), h = bf16(silu(min(g, L)) · clamp(u, ±L) · rw), then
 * act_quant: q = e4m3 values, s = I/128 scales (as f32). */
void ref_moe_swiglu_row(int I, int K, const uint8_t *a, const uint8_t *sa, const uint8_t *w13,
                        const uint8_t *sw13, float rw, float limit, float *q, float *s);

#endif
