/* compress_ref.c — see compress_ref.h.  Follows v4-spec §3.4.1 step by
 * step; softmax, norm and rotations in double, the state in f32. */
#include "ref/compress_ref.h"

#include "ref/ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { ROPE = 64 };

int ref_compress_halves(int ratio) { return ratio == 4 ? 2 : 1; }

void ref_compress_project(int T, int d, int cw, const float *x, const float *wkv, const float *wgate, double *kv,
                          double *g, double *kmag, double *gmag)
{
    for (int t = 0; t < T; t++)
        for (int j = 0; j < cw; j++) {
            double sk = 0, sg = 0, ak = 0, ag = 0;
            for (int k = 0; k < d; k++) {
                double xv = x[(int64_t)t * d + k];
                double pk = xv * wkv[(int64_t)j * d + k], pg = xv * wgate[(int64_t)j * d + k];
                sk += pk, sg += pg, ak += fabs(pk), ag += fabs(pg);
            }
            int64_t o = (int64_t)t * cw + j;
            kv[o] = sk, g[o] = sg, kmag[o] = ak, gmag[o] = ag;
        }
}

void ref_compressor_init(RefCompressor *c, int ratio, int D, bool index, bool exact, const float *ape,
                         const float *w, const float *cs, int64_t rows)
{
    int h = ref_compress_halves(ratio);
    int64_t n = (int64_t)h * ratio * h * D;
    *c = (RefCompressor){.ratio = ratio, .D = D, .index = index, .exact = exact, .ape = ape, .w = w, .cs = cs,
                         .rows = rows};
    c->kv_state = calloc((size_t)n, 4);
    c->score_state = malloc((size_t)n * 4);
    for (int64_t i = 0; i < n; i++)
        c->score_state[i] = -INFINITY;
    c->cache = calloc((size_t)(rows * D), 4);
    c->scale = calloc((size_t)(rows * D / 32), 4);
}

void ref_compressor_free(RefCompressor *c)
{
    free(c->kv_state);
    free(c->score_state);
    free(c->cache);
    free(c->scale);
}

/* ------------------------------------------------------------- emit chain */

static float bf16_if(const RefCompressor *c, double v) { return c->exact ? ref_round_bf16((float)v) : (float)v; }

/* 2^ceil(log2(v)) for v > 0. */
static double pow2_ceil(float v)
{
    int e;
    double m = frexp(v, &e);
    return m == 0.5 ? ldexp(1, e - 1) : ldexp(1, e);
}

/* §2.6: the nope dims in 64-wide blocks through e4m3 with a UE8M0 scale of
 * max(amax, 1e-4)/448 (an f32 division), back to bf16; rope dims kept. */
static void fp8_nope(int D, const float *z, float *out, float *scale)
{
    for (int b = 0; b < (D - ROPE) / 64; b++) {
        float amax = 1e-4f;
        for (int k = 0; k < 64; k++)
            amax = fmaxf(amax, fabsf(z[b * 64 + k]));
        double s = pow2_ceil(amax / 448.0f);
        scale[b] = (float)s;
        for (int k = 0; k < 64; k++) {
            double v = fmin(fmax(z[b * 64 + k] / s, -448), 448);
            out[b * 64 + k] = ref_round_bf16((float)(ref_round_e4m3((float)v) * s));
        }
    }
    memcpy(out + D - ROPE, z + D - ROPE, ROPE * sizeof *z);
}

/* y = x·H/sqrt(N) in double, unrounded (the plain-math level). */
static void hadamard_plain(int N, const float *x, float *y)
{
    for (int j = 0; j < N; j++) {
        double s = 0;
        for (int i = 0; i < N; i++)
            s += __builtin_popcount((unsigned)(i & j)) & 1 ? -x[i] : x[i];
        y[j] = (float)(s / sqrt(N));
    }
}

/* Steps 4–7 for the entry pooled[D] of block n (RoPE at position n·r). */
static void emit(RefCompressor *c, int64_t n, const double *pooled)
{
    int D = c->D, base = D - ROPE;
    float *y = malloc((size_t)D * 4), *z = malloc((size_t)D * 4), *h = malloc((size_t)D * 4);
    double ss = 0;
    for (int d = 0; d < D; d++) {
        y[d] = bf16_if(c, pooled[d]); /* C.to(bf16) */
        ss += (double)y[d] * y[d];
    }
    double rms = 1 / sqrt(ss / D + 1e-6);
    for (int d = 0; d < D; d++)
        z[d] = bf16_if(c, y[d] * rms * c->w[d]);
    const float *cs = c->cs + n * c->ratio * ROPE; /* table row n·r: 32 (cos, sin) pairs */
    for (int i = 0; i < ROPE / 2; i++) {
        double a = z[base + 2 * i], b = z[base + 2 * i + 1], co = cs[2 * i], si = cs[2 * i + 1];
        z[base + 2 * i] = bf16_if(c, a * co - b * si);
        z[base + 2 * i + 1] = bf16_if(c, a * si + b * co);
    }
    float *row = c->cache + n * D, *scale = c->scale + n * (D / 32);
    if (n >= c->rows)
        row = NULL; /* beyond the cache: dropped */
    if (row && !c->exact) {
        if (c->index)
            hadamard_plain(D, z, row);
        else
            memcpy(row, z, (size_t)D * 4);
    } else if (row && c->index) {
        ref_hadamard(D, z, h); /* bf16 in, bf16 out */
        ref_fp4_act_quant(D, h, row, scale);
    } else if (row) {
        fp8_nope(D, z, row, scale);
    }
    free(y); free(z); free(h);
}

/* Per channel d < D: Σ_s softmax_s(score[s][d]) · kv[s][d] over nslots
 * slots, each a row of `stride` floats starting at column col0[s]. */
static void pool(int D, int nslots, const float *kv, const float *score, int64_t stride, const int *col0,
                 double *out)
{
    for (int d = 0; d < D; d++) {
        double m = -INFINITY, den = 0, num = 0;
        for (int s = 0; s < nslots; s++)
            m = fmax(m, score[s * stride + col0[s] + d]);
        for (int s = 0; s < nslots; s++) {
            double e = exp(score[s * stride + col0[s] + d] - m);
            den += e;
            num += e * kv[s * stride + col0[s] + d];
        }
        out[d] = num / den;
    }
}

/* -------------------------------------------------------------- prefill */

void ref_compressor_prefill(RefCompressor *c, int64_t s, const float *kv, const float *g)
{
    int r = c->ratio, D = c->D, h = ref_compress_halves(r), cw = h * D, ns = h * r;
    bool overlap = h == 2;
    int64_t nb = s / r, cutoff = nb * r;
    /* scores: g + ape[t mod r], an f32 sum as in the spec */
    float *score = malloc((size_t)(s * cw) * 4);
    for (int64_t t = 0; t < s; t++)
        for (int j = 0; j < cw; j++)
            score[t * cw + j] = g[t * cw + j] + c->ape[(t % r) * cw + j];
    /* bulk: block n's slots gathered into [ns, cw] (previous block, then this one) */
    float *skv = malloc((size_t)ns * cw * 4), *ssc = malloc((size_t)ns * cw * 4);
    double *pooled = malloc((size_t)D * 8);
    int col0[256];
    for (int i = 0; i < ns; i++)
        col0[i] = overlap && i >= r ? D : 0;
    for (int64_t n = 0; n < nb; n++) {
        for (int i = 0; i < ns; i++) {
            int64_t t = overlap ? (n - 1) * r + i : n * r + i; /* overlap: slot i is token (n−1)r + i */
            for (int j = 0; j < cw; j++) {
                bool valid = t >= 0;
                skv[i * cw + j] = valid ? kv[t * cw + j] : 0.0f;
                ssc[i * cw + j] = valid ? score[t * cw + j] : -INFINITY;
            }
        }
        pool(D, ns, skv, ssc, cw, col0, pooled);
        emit(c, n, pooled);
    }
    /* the state: the last complete block as the previous one (overlap), the rest after it */
    int off = overlap ? r : 0;
    if (overlap && cutoff >= r) {
        memcpy(c->kv_state, kv + (cutoff - r) * cw, (size_t)r * cw * 4);
        memcpy(c->score_state, score + (cutoff - r) * cw, (size_t)r * cw * 4);
    }
    memcpy(c->kv_state + off * cw, kv + cutoff * cw, (size_t)(s - cutoff) * cw * 4);
    memcpy(c->score_state + off * cw, score + cutoff * cw, (size_t)(s - cutoff) * cw * 4);
    free(score); free(skv); free(ssc); free(pooled);
}

/* --------------------------------------------------------------- decode */

void ref_compressor_decode(RefCompressor *c, int64_t pos, const float *kv, const float *g)
{
    int r = c->ratio, D = c->D, h = ref_compress_halves(r), cw = h * D, ns = h * r;
    bool overlap = h == 2;
    int a = (int)(pos % r), slot = overlap ? r + a : a;
    for (int j = 0; j < cw; j++) {
        c->kv_state[slot * cw + j] = kv[j];
        c->score_state[slot * cw + j] = g[j] + c->ape[a * cw + j];
    }
    if ((pos + 1) % r)
        return;
    int col0[256];
    for (int i = 0; i < ns; i++)
        col0[i] = overlap && i >= r ? D : 0; /* cat(state[:r, :D], state[r:, D:]) */
    double *pooled = malloc((size_t)D * 8);
    pool(D, ns, c->kv_state, c->score_state, cw, col0, pooled);
    emit(c, pos / r, pooled); /* RoPE at (pos // r)·r = pos + 1 − r */
    free(pooled);
    if (overlap) {
        memmove(c->kv_state, c->kv_state + r * cw, (size_t)r * cw * 4);
        memmove(c->score_state, c->score_state + r * cw, (size_t)r * cw * 4);
    }
}
