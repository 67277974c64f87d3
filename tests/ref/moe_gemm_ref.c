/* moe_gemm_ref.c — see moe_gemm_ref.h.  Sums run in double over exact
 * products, so the only roundings are the ones the spec names. */
#include "ref/moe_gemm_ref.h"

#include "ref/ref.h"

#include <math.h>
#include <stdlib.h>

static const float E2M1[16] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -0.5f, -1, -1.5f, -2, -3, -4, -6};

float ref_e2m1_nibble(unsigned nibble) { return E2M1[nibble & 15]; }

/* Halfway between neighbouring magnitudes of the table. */
static const double MID[7] = {0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5};

/* The nearest code to v (|v| <= 6 after the scale; beyond, 6): the number of
 * midpoints |v| passes; on a midpoint the code with an even index, i.e. a
 * zero fraction bit. */
static unsigned nearest_e2m1(double v)
{
    double a = fabs(v);
    unsigned c = 0;
    for (unsigned i = 0; i < 7; i++)
        c += (a > MID[i]) + (a == MID[i]) * (i % 2);
    return signbit(v) ? c | 8 : c;
}

void ref_fp4_quant_row(int K, const float *w, uint8_t *packed, uint8_t *scales)
{
    for (int b = 0; b < K / 32; b++) {
        double amax = 6 * ldexp(1, -126);
        for (int k = 0; k < 32; k++)
            amax = fabs(w[b * 32 + k]) > amax ? fabs(w[b * 32 + k]) : amax;
        int e;
        double m = frexp(amax / 6, &e); /* amax/6 = m·2^e, m in [0.5, 1) */
        int p = m == 0.5 ? e - 1 : e;   /* 2^p = 2^ceil(log2(amax/6)) */
        scales[b] = (uint8_t)(p + 127);
        double inv = ldexp(1, -p); /* dividing by a power of two is exact */
        for (int k = 0; k < 32; k += 2) {
            unsigned lo = nearest_e2m1(w[b * 32 + k] * inv), hi = nearest_e2m1(w[b * 32 + k + 1] * inv);
            packed[(b * 32 + k) / 2] = (uint8_t)(lo | hi << 4);
        }
    }
}

static double weight(const uint8_t *row, int k) { return E2M1[(row[k / 2] >> (k % 2 ? 4 : 0)) & 15]; }

void ref_fp4_gemm_row(int N, int K, const uint8_t *a, const uint8_t *sa, const uint8_t *w, const uint8_t *sw,
                      float *c)
{
    double *x = malloc(sizeof(double) * (size_t)K); /* the activations, decoded once */
    for (int k = 0; k < K; k++)
        x[k] = ref_decode_e4m3(a[k]);
    for (int n = 0; n < N; n++) {
        const uint8_t *wn = w + (int64_t)n * (K / 2);
        double acc = 0;
        for (int g = 0; g < K / 32; g++) {
            double part = 0;
            for (int k = g * 32; k < g * 32 + 32; k++)
                part += x[k] * weight(wn, k);
            acc += part * ref_decode_e8m0(sa[g / 4]) * ref_decode_e8m0(sw[(int64_t)n * (K / 32) + g]);
        }
        c[n] = ref_round_bf16((float)acc);
    }
    free(x);
}

void ref_moe_expert_gemm(int E, int N, int K, const int32_t *cnt, const int32_t *off, const uint8_t *a,
                         const uint8_t *sa, const uint8_t *w, const uint8_t *sw, float *c)
{
    for (int e = 0; e < E; e++)
        for (int64_t r = off[e]; r < (int64_t)off[e] + cnt[e]; r++)
            ref_fp4_gemm_row(N, K, a + r * K, sa + r * (K / 128), w + (int64_t)e * N * (K / 2),
                             sw + (int64_t)e * N * (K / 32), c + r * N);
}

void ref_moe_swiglu_row(int I, int K, const uint8_t *a, const uint8_t *sa, const uint8_t *w13,
                        const uint8_t *sw13, float rw, float limit, float *q, float *s)
{
    float *gu = malloc(sizeof(float) * 2 * (size_t)I);
    ref_fp4_gemm_row(2 * I, K, a, sa, w13, sw13, gu);
    ref_swiglu_quant(I, gu, gu + I, rw, limit, q, s);
    free(gu);
}
