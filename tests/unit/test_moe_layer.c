/* test_moe_layer.c — the whole single-rank MoE layer (v4-spec §3.5) as a
 * chain of tilec kernels on the host JIT, against an end-to-end reference
 * written from the spec with tests/ref (no kernel is called by it):
 *   gate → act_quant(x) → count → offsets → place → gather
 *        → moe_gemm_swiglu (FP4 w1/w3, clamp, routing weight, act_quant of h)
 *        → moe_expert_gemm (FP4 w2)
 *   shared: fp8_gemm(w1), fp8_gemm(w3) → swiglu_quant(weight 1) → fp8_gemm(w2)
 *   → moe_combine (unweighted, shared added, bf16 out).
 * Two-level tolerance (§9): tight against a reference that quantises at the
 * same points and is fed the kernels' own routing (so near-ties cannot move
 * it), loose (calc_diff) against float math on the same (dequantised)
 * weights without activation quantisation.  The routing itself is checked
 * as index sets, allowing swaps only where biased scores tie.
 * MOE_VERBOSE=1 prints each case's statistics. */
#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "ref/moe_gemm_ref.h"
#include "ref/moe_ref.h"
#include "ref/ref.h"
#include "test.h"
#include "tests/harness/run.h"

#include <string.h>

/* ---------------------------------------------------------- chain runner */

/* Every spec here has a single dyn dim: one param. */
static bool stage_run(const ThKernel *s, void *const *args, int64_t dyn)
{
    int64_t params[1] = {dyn};
    return th_kernel_run(s, args, params, 2);
}

/* ------------------------------------------------------------- the layer */

typedef struct Cfg {
    const char *name;
    int D, I, IS, E, K; /* model dim, routed inter, shared inter, experts, top-k */
} Cfg;

typedef struct Weights {
    uint16_t *wg;                   /* gate [E, D] bf16 */
    float *wgf, *bias;              /* its values; bias [E] */
    uint8_t *w13, *sw13, *w2, *sw2; /* routed FP4: [E, 2I, D/2], [E, 2I, D/32], [E, D, I/2], [E, D, I/32] */
    uint8_t *s8[3], *ss8[3];        /* shared w1, w3 [IS, D], w2 [D, IS]: e4m3 and 128×128 scales */
    float *sq[3], *ss[3];           /* the same as values, for the references */
} Weights;

/* Bell-free uniform rows whose magnitude changes every 32 along K, so the
 * FP4 and FP8 block scales differ from block to block. */
static void weight_row(unsigned seed, int n, int K, float mag, float *row)
{
    unsigned s = (seed * 2654435761u) ^ (unsigned)(n * 104729 + 12345);
    static const float step[5] = {0.25f, 0.5f, 1, 2, 4};
    s |= 1;
    for (int k = 0; k < K; k++)
        row[k] = test_rand(&s) * mag * step[(n + k / 32) % 5];
}

/* fp8 128×128 block quantisation (v4-spec §2.1) of W [N, K]. */
static void fp8_weight(int N, int K, unsigned seed, float mag, uint8_t **b8, uint8_t **sb8, float **q, float **s)
{
    int nnb = (N + 127) / 128, nkb = K / 128;
    float *w = malloc((size_t)N * K * 4);
    for (int n = 0; n < N; n++)
        weight_row(seed, n, K, mag, w + (int64_t)n * K);
    *b8 = malloc((size_t)N * K);
    *q = malloc((size_t)N * K * 4);
    *sb8 = malloc((size_t)nnb * nkb);
    *s = malloc((size_t)nnb * nkb * 4);
    for (int nb = 0; nb < nnb; nb++)
        for (int kb = 0; kb < nkb; kb++) {
            float amax = 1e-4f;
            for (int n = nb * 128; n < N && n < nb * 128 + 128; n++)
                for (int k = kb * 128; k < kb * 128 + 128; k++)
                    amax = fmaxf(amax, fabsf(w[(int64_t)n * K + k]));
            float sc = ldexpf(1.0f, (int)ceil(log2(amax / 448.0)));
            (*s)[nb * nkb + kb] = sc;
            (*sb8)[nb * nkb + kb] = dt_f32_to_e8m0(sc);
            for (int n = nb * 128; n < N && n < nb * 128 + 128; n++)
                for (int k = kb * 128; k < kb * 128 + 128; k++) {
                    int64_t i = (int64_t)n * K + k;
                    (*q)[i] = ref_round_e4m3(w[i] / sc);
                    (*b8)[i] = dt_f32_to_e4m3((*q)[i]);
                }
        }
    free(w);
}

/* Magnitudes keep activations O(1): gate logits of a few units, expert
 * gate/up projections with a spread of about 2 so some pass the clamp. */
static Weights weights_new(const Cfg *c, unsigned seed)
{
    Weights w = {0};
    int D = c->D, I = c->I, E = c->E;
    w.wg = malloc((size_t)E * D * 2);
    w.wgf = malloc((size_t)E * D * 4);
    w.bias = malloc(E * 4);
    for (int64_t i = 0; i < (int64_t)E * D; i++) {
        w.wg[i] = dt_f32_to_bf16(test_rand(&seed) * 4.5f / sqrtf((float)D));
        w.wgf[i] = dt_bf16_to_f32(w.wg[i]);
    }
    for (int e = 0; e < E; e++)
        w.bias[e] = 0.1f * test_rand(&seed);
    w.w13 = malloc((size_t)E * 2 * I * (D / 2));
    w.sw13 = malloc((size_t)E * 2 * I * (D / 32));
    w.w2 = malloc((size_t)E * D * (I / 2));
    w.sw2 = malloc((size_t)E * D * (I / 32));
    float *row = malloc((size_t)(D > I ? D : I) * 4);
    for (int e = 0; e < E; e++) {
        for (int n = 0; n < 2 * I; n++) {
            int64_t at = (int64_t)e * 2 * I + n;
            weight_row(seed + 1000 + e, n, D, 4.5f / sqrtf((float)D), row);
            ref_fp4_quant_row(D, row, w.w13 + at * (D / 2), w.sw13 + at * (D / 32));
        }
        for (int n = 0; n < D; n++) {
            int64_t at = (int64_t)e * D + n;
            weight_row(seed + 2000 + e, n, I, 1.0f / sqrtf((float)I), row);
            ref_fp4_quant_row(I, row, w.w2 + at * (I / 2), w.sw2 + at * (I / 32));
        }
    }
    free(row);
    fp8_weight(c->IS, D, seed + 3, 4.5f / sqrtf((float)D), &w.s8[0], &w.ss8[0], &w.sq[0], &w.ss[0]);
    fp8_weight(c->IS, D, seed + 4, 4.5f / sqrtf((float)D), &w.s8[1], &w.ss8[1], &w.sq[1], &w.ss[1]);
    fp8_weight(D, c->IS, seed + 5, 1.0f / sqrtf((float)c->IS), &w.s8[2], &w.ss8[2], &w.sq[2], &w.ss[2]);
    return w;
}

static void weights_free(Weights *w)
{
    free(w->wg); free(w->wgf); free(w->bias); free(w->w13); free(w->sw13); free(w->w2); free(w->sw2);
    for (int i = 0; i < 3; i++) {
        free(w->s8[i]); free(w->ss8[i]); free(w->sq[i]); free(w->ss[i]);
    }
}

enum { GATE, AQ, COUNT, OFFSETS, PLACE, GATHER, GEMM1, GEMM2, SH13, SWIGLU, SH2, COMBINE, NSTAGES };

typedef struct Chain {
    ThKernel st[NSTAGES];
} Chain;

static bool chain_build(Chain *ch, const Cfg *c)
{
    char D[16], I[16], IS[16], E[16], K[16];
    snprintf(D, 16, "%d", c->D);
    snprintf(I, 16, "%d", c->I);
    snprintf(IS, 16, "%d", c->IS);
    snprintf(E, 16, "%d", c->E);
    snprintf(K, 16, "%d", c->K);
    FeSet gate[] = {{"D", D}, {"E", E}, {"TOPK", K}, {"route_scale", "1.5"}, {"routing", "topk"}};
    FeSet aq[] = {{"K", D}};
    FeSet layout[] = {{"E", E}, {"TOPK", K}};
    FeSet gather[] = {{"D", D}, {"TOPK", K}};
    FeSet g1[] = {{"E", E}, {"I", I}, {"K", D}};
    FeSet g2[] = {{"E", E}, {"N", D}, {"K", I}};
    FeSet s13[] = {{"N", IS}, {"K", D}, {"BM", "16"}};
    FeSet sw[] = {{"I", IS}};
    FeSet s2[] = {{"N", D}, {"K", IS}, {"BM", "16"}};
    FeSet comb[] = {{"D", D}, {"TOPK", K}, {"shared", "add"}, {"out_dtype", "bf16"}};
    memset(ch, 0, sizeof *ch);
    return th_kernel_build(&ch->st[GATE], "kernels_src/moe_gate.lua", gate, 5) &&
           th_kernel_build(&ch->st[AQ], "kernels_src/act_quant.lua", aq, 1) &&
           th_kernel_build(&ch->st[COUNT], "kernels_src/moe_count.lua", layout, 2) &&
           th_kernel_build(&ch->st[OFFSETS], "kernels_src/moe_offsets.lua", layout, 2) &&
           th_kernel_build(&ch->st[PLACE], "kernels_src/moe_place.lua", layout, 2) &&
           th_kernel_build(&ch->st[GATHER], "kernels_src/moe_gather.lua", gather, 2) &&
           th_kernel_build(&ch->st[GEMM1], "kernels_src/moe_gemm_swiglu.lua", g1, 3) &&
           th_kernel_build(&ch->st[GEMM2], "kernels_src/moe_expert_gemm.lua", g2, 3) &&
           th_kernel_build(&ch->st[SH13], "kernels_src/fp8_gemm.lua", s13, 3) &&
           th_kernel_build(&ch->st[SWIGLU], "kernels_src/swiglu_quant.lua", sw, 1) &&
           th_kernel_build(&ch->st[SH2], "kernels_src/fp8_gemm.lua", s2, 3) &&
           th_kernel_build(&ch->st[COMBINE], "kernels_src/moe_combine.lua", comb, 4);
}

static void chain_free(Chain *ch)
{
    for (int i = 0; i < NSTAGES; i++)
        th_kernel_free(&ch->st[i]);
}

/* Everything the chain writes for T tokens (R = T·K dispatched rows). */
typedef struct Bufs {
    int32_t *idx, *cnt, *counts, *offsets, *base, *row, *src;
    float *w, *wr, *ones;
    uint8_t *x8, *xs, *xe, *se, *hq, *hs, *shq, *shs;
    uint16_t *y, *g, *u, *sh, *out;
} Bufs;

static Bufs bufs_new(const Cfg *c, int T)
{
    int64_t R = (int64_t)T * c->K, NB = (T + 7) / 8; /* moe_dispatch.lua: BT = 8 tokens per block */
    Bufs b;
    b.idx = calloc(R, 4); b.row = calloc(R, 4); b.src = calloc(R, 4);
    b.cnt = calloc(NB * c->E, 4); b.base = calloc(NB * c->E, 4);
    b.counts = calloc(c->E, 4); b.offsets = calloc(c->E + 1, 4);
    b.w = calloc(R, 4); b.wr = calloc(R, 4); b.ones = calloc(T, 4);
    for (int t = 0; t < T; t++)
        b.ones[t] = 1.0f; /* the shared expert has no routing weight */
    b.x8 = calloc((size_t)T * c->D, 1); b.xs = calloc((size_t)T * c->D / 128, 1);
    b.xe = calloc(R * c->D, 1); b.se = calloc(R * c->D / 128, 1);
    b.hq = calloc(R * c->I, 1); b.hs = calloc(R * c->I / 128, 1);
    b.shq = calloc((size_t)T * c->IS, 1); b.shs = calloc((size_t)T * c->IS / 128, 1);
    b.y = calloc(R * c->D, 2); b.g = calloc((size_t)T * c->IS, 2); b.u = calloc((size_t)T * c->IS, 2);
    b.sh = calloc((size_t)T * c->D, 2); b.out = calloc((size_t)T * c->D, 2);
    return b;
}

static void bufs_free(Bufs *b)
{
    free(b->idx); free(b->row); free(b->src); free(b->cnt); free(b->base); free(b->counts); free(b->offsets);
    free(b->w); free(b->wr); free(b->ones); free(b->x8); free(b->xs); free(b->xe); free(b->se); free(b->hq);
    free(b->hs); free(b->shq); free(b->shs); free(b->y); free(b->g); free(b->u); free(b->sh); free(b->out);
}

/* The layer on the chain: x [T, D] bf16 → b->out [T, D] bf16. */
static bool chain_run(const Chain *ch, const Cfg *c, const Weights *W, int T, uint16_t *x, Bufs *b)
{
    int64_t R = (int64_t)T * c->K;
    const ThKernel *s = ch->st;
    void *gate[] = {x, W->wg, W->bias, b->idx, b->w};
    void *aq[] = {x, b->x8, b->xs};
    void *count[] = {b->idx, b->cnt};
    void *offsets[] = {b->cnt, b->counts, b->offsets, b->base, b->src, b->wr};
    void *place[] = {b->idx, b->w, b->base, b->row, b->src, b->wr};
    void *gather[] = {b->src, b->x8, b->xs, b->xe, b->se};
    /* off is [E]: the first E of moe_offsets' E + 1 offsets */
    void *g1[] = {b->xe, b->se, b->counts, b->offsets, W->w13, W->sw13, b->wr, b->hq, b->hs};
    void *g2[] = {b->hq, b->hs, b->counts, b->offsets, W->w2, W->sw2, b->y};
    void *s1[] = {b->x8, b->xs, W->s8[0], W->ss8[0], b->g};
    void *s3[] = {b->x8, b->xs, W->s8[1], W->ss8[1], b->u};
    void *sw[] = {b->g, b->u, b->ones, b->shq, b->shs};
    void *s2[] = {b->shq, b->shs, W->s8[2], W->ss8[2], b->sh};
    void *comb[] = {b->row, b->w, b->y, b->sh, b->out};
    return stage_run(&s[GATE], gate, T) && stage_run(&s[AQ], aq, T) && stage_run(&s[COUNT], count, T) &&
           stage_run(&s[OFFSETS], offsets, T) && stage_run(&s[PLACE], place, T) &&
           stage_run(&s[GATHER], gather, T) && stage_run(&s[GEMM1], g1, R) && stage_run(&s[GEMM2], g2, R) &&
           stage_run(&s[SH13], s1, T) && stage_run(&s[SH13], s3, T) && stage_run(&s[SWIGLU], sw, T) &&
           stage_run(&s[SH2], s2, T) && stage_run(&s[COMBINE], comb, T);
}

/* ------------------------------------------------------------ references */

/* (a) The layer quantised at the chain's points, from the spec (§3.5), on
 * the given routing: act_quant(x); per slot fp4_gemm w1/w3 → bf16 →
 * SwiGLU with clamp and weight → bf16 → act_quant → fp4_gemm w2 → bf16;
 * shared fp8_gemm w1/w3 → swiglu_quant(1) → fp8_gemm w2; the f32 expert-
 * by-expert sum plus shared, then bf16.  Also returns act_quant(x) and
 * each slot's quantised h (codes [T·K, I], scales [T·K, I/128]). */
static void ref_layer_quant(const Cfg *c, const Weights *W, int T, const float *xf, const int32_t *idx,
                            const float *w, float *out, uint8_t *a8, uint8_t *sa8, uint8_t *hq_all,
                            uint8_t *hs_all)
{
    int D = c->D, I = c->I, IS = c->IS, K = c->K;
    int64_t R = (int64_t)T * K;
    float *q = malloc(D * 4), *s = malloc(D / 128 * 4), *y = malloc(R * D * 4), *sh = malloc((size_t)T * D * 4);
    float *hq = malloc(I * 4), *hs = malloc(I / 128 * 4), *g = malloc(IS * 4), *u = malloc(IS * 4);
    float *shq = malloc(IS * 4), *shs = malloc(IS / 128 * 4);
    uint8_t *h8 = malloc(I), *hs8 = malloc(I / 128);
    int32_t *rows = malloc(R * 4);
    for (int t = 0; t < T; t++) {
        ref_act_quant(D, xf + (int64_t)t * D, q, s);
        for (int k = 0; k < D; k++)
            a8[(int64_t)t * D + k] = dt_f32_to_e4m3(q[k]);
        for (int b = 0; b < D / 128; b++)
            sa8[t * (D / 128) + b] = ref_encode_e8m0(s[b]);
        const uint8_t *a = a8 + (int64_t)t * D, *sa = sa8 + t * (D / 128);
        for (int k = 0; k < K; k++) {
            int e = idx[t * K + k];
            rows[t * K + k] = t * K + k; /* the reference's own layout: one row per (token, slot) */
            ref_moe_swiglu_row(I, D, a, sa, W->w13 + (int64_t)e * 2 * I * (D / 2),
                               W->sw13 + (int64_t)e * 2 * I * (D / 32), w[t * K + k], 10, hq, hs);
            for (int i = 0; i < I; i++)
                h8[i] = dt_f32_to_e4m3(hq[i]);
            for (int b = 0; b < I / 128; b++)
                hs8[b] = ref_encode_e8m0(hs[b]);
            memcpy(hq_all + (int64_t)(t * K + k) * I, h8, I);
            memcpy(hs_all + (int64_t)(t * K + k) * (I / 128), hs8, I / 128);
            ref_fp4_gemm_row(D, I, h8, hs8, W->w2 + (int64_t)e * D * (I / 2), W->sw2 + (int64_t)e * D * (I / 32),
                             y + (int64_t)(t * K + k) * D);
        }
        ref_fp8_gemm(1, IS, D, q, s, W->sq[0], W->ss[0], g);
        ref_fp8_gemm(1, IS, D, q, s, W->sq[1], W->ss[1], u);
        ref_swiglu_quant(IS, g, u, 1.0f, 10, shq, shs);
        ref_fp8_gemm(1, D, IS, shq, shs, W->sq[2], W->ss[2], sh + (int64_t)t * D);
    }
    ref_moe_combine(T, K, c->E, D, idx, rows, NULL, y, sh, out);
    for (int64_t i = 0; i < (int64_t)T * D; i++)
        out[i] = ref_round_bf16(out[i]);
    free(q); free(s); free(y); free(sh); free(hq); free(hs); free(g); free(u); free(shq); free(shs);
    free(h8); free(hs8); free(rows);
}

/* FP4 row → values (v4-spec §2.4: element 2j in the low nibble). */
static void fp4_row(int K, const uint8_t *p, const uint8_t *sc, float *out)
{
    for (int k = 0; k < K; k++)
        out[k] = ref_e2m1_nibble(k & 1 ? p[k / 2] >> 4 : p[k / 2] & 15) * ref_decode_e8m0(sc[k / 32]);
}

static long clamped; /* gate/up values the clamp changed, to show it is exercised */

static double swiglu(double g, double u, double w)
{
    clamped += g > 10 || fabs(u) > 10;
    g = fmin(g, 10);
    u = fmax(-10, fmin(u, 10));
    return g / (1 + exp(-g)) * u * w;
}

/* (b) Float math in double with the same (dequantised) weights: the
 * reference gate's own routing, no act_quant, no bf16 intermediates. */
static void ref_layer_float(const Cfg *c, const Weights *W, int T, const float *xf, double *out)
{
    int D = c->D, I = c->I, IS = c->IS, K = c->K;
    float *wrow = malloc((size_t)(D > IS ? D : IS) * 4);
    double *h = malloc((size_t)(I > IS ? I : IS) * 8);
    for (int t = 0; t < T; t++) {
        const float *x = xf + (int64_t)t * D;
        double *o = out + (int64_t)t * D;
        int32_t idx[16];
        double w[16], sel[1024];
        ref_moe_gate(D, c->E, K, x, W->wgf, W->bias, 1.5, NULL, idx, w, sel);
        memset(o, 0, D * 8);
        for (int k = 0; k < K; k++) {
            int e = idx[k];
            for (int i = 0; i < I; i++) {
                double g = 0, u = 0;
                int64_t at = (int64_t)e * 2 * I + i;
                fp4_row(D, W->w13 + at * (D / 2), W->sw13 + at * (D / 32), wrow);
                for (int d = 0; d < D; d++)
                    g += (double)x[d] * wrow[d];
                at += I;
                fp4_row(D, W->w13 + at * (D / 2), W->sw13 + at * (D / 32), wrow);
                for (int d = 0; d < D; d++)
                    u += (double)x[d] * wrow[d];
                h[i] = swiglu(g, u, w[k]);
            }
            for (int d = 0; d < D; d++) {
                int64_t at = (int64_t)e * D + d;
                fp4_row(I, W->w2 + at * (I / 2), W->sw2 + at * (I / 32), wrow);
                double acc = 0;
                for (int i = 0; i < I; i++)
                    acc += h[i] * wrow[i];
                o[d] += acc;
            }
        }
        for (int i = 0; i < IS; i++) {
            double g = 0, u = 0;
            for (int d = 0; d < D; d++) {
                int64_t at = (int64_t)i * D + d, sb = (i / 128) * (D / 128) + d / 128;
                g += (double)x[d] * W->sq[0][at] * W->ss[0][sb];
                u += (double)x[d] * W->sq[1][at] * W->ss[1][sb];
            }
            h[i] = swiglu(g, u, 1);
        }
        for (int d = 0; d < D; d++) {
            double acc = 0;
            for (int i = 0; i < IS; i++)
                acc += h[i] * W->sq[2][(int64_t)d * IS + i] * W->ss[2][(d / 128) * (IS / 128) + i / 128];
            o[d] += acc;
        }
    }
    free(wrow); free(h);
}

/* --------------------------------------------------------------- checks */

static float bf16_ulp(float v) { return ldexpf(1.0f, ilogbf(fmaxf(fabsf(v), 1e-30f)) - 7); }

/* The layer at T tokens: routing as index sets, act_quant(x) bit for bit,
 * the dispatch rows against ref_moe_layout, then the output tight and
 * loose.  Thresholds were set from measured values with margin (see the
 * report at the end of each case under MOE_VERBOSE). */
static void check_layer(const Chain *ch, const Cfg *c, const Weights *W, int T, unsigned seed)
{
    int D = c->D, K = c->K;
    int64_t TD = (int64_t)T * D, R = (int64_t)T * K;
    uint16_t *x = malloc(TD * 2);
    float *xf = malloc(TD * 4), *tight = malloc(TD * 4), *got = malloc(TD * 4), *loose = malloc(TD * 4);
    double *loosed = malloc(TD * 8);
    uint8_t *a8 = malloc(TD), *sa8 = malloc(TD / 128);
    for (int64_t i = 0; i < TD; i++) { /* after ffn_norm: O(1), with a few larger channels */
        float v = test_rand(&seed) * (i % 97 == 0 ? 4.0f : 1.0f);
        x[i] = dt_f32_to_bf16(v);
        xf[i] = dt_bf16_to_f32(x[i]);
    }
    Bufs b = bufs_new(c, T);
    bool ran = chain_run(ch, c, W, T, x, &b);
    CHECKF(ran, "%s T=%d: the chain failed", c->name, T);
    if (!ran)
        goto done;

    /* routing: every chosen expert is in the reference's top-k unless its
     * biased score ties the k-th within f32 rounding; weights to 1e-5 */
    int wrong = 0;
    double worst_w = 0;
    for (int t = 0; t < T; t++) {
        int32_t ridx[16];
        double rw[16], sel[1024], kth = INFINITY;
        ref_moe_gate(D, c->E, K, xf + (int64_t)t * D, W->wgf, W->bias, 1.5, NULL, ridx, rw, sel);
        for (int k = 0; k < K; k++)
            kth = fmin(kth, sel[ridx[k]]);
        for (int k = 0; k < K; k++) {
            int32_t e = b.idx[t * K + k];
            int found = -1;
            for (int j = 0; j < K; j++)
                found = ridx[j] == e ? j : found;
            if (found < 0 && !(e >= 0 && e < c->E && fabs(sel[e] - kth) < 1e-5) && wrong++ < 3)
                printf("  %s T=%d token %d: expert %d is not in the reference's top-%d\n", c->name, T, t, e, K);
            if (found >= 0)
                worst_w = fmax(worst_w, fabs(b.w[t * K + k] - rw[found]) / rw[found]);
        }
    }
    CHECKF(wrong == 0 && worst_w < 1e-5, "%s T=%d: %d wrong experts, weight rel err %.2e", c->name, T, wrong, worst_w);

    /* tight: the same quantisation points on the chain's routing */
    uint8_t *hq = malloc(R * c->I), *hs = malloc(R * c->I / 128);
    ref_layer_quant(c, W, T, xf, b.idx, b.w, tight, a8, sa8, hq, hs);
    /* GEMM 1's quantised h, slot by slot at the chain's row: the f32 and
     * double sums may round a gate/up value to different bf16 values, and
     * that shows here first (a code or a block scale one step away) */
    int64_t hdiff = 0, sdiff = 0;
    for (int64_t p = 0; p < R; p++) {
        int64_t r = b.row[p];
        for (int i = 0; i < c->I; i++)
            hdiff += hq[p * c->I + i] != b.hq[r * c->I + i];
        for (int i = 0; i < c->I / 128; i++)
            sdiff += hs[p * (c->I / 128) + i] != b.hs[r * (c->I / 128) + i];
    }
    free(hq); free(hs);
    CHECKF(hdiff <= R * c->I / 100, "%s T=%d: %lld of %lld h codes differ", c->name, T, (long long)hdiff,
           (long long)(R * c->I));
    CHECKF(memcmp(a8, b.x8, TD) == 0 && memcmp(sa8, b.xs, TD / 128) == 0, "%s T=%d: act_quant(x) differs", c->name, T);
    int32_t *counts = malloc(c->E * 4), *offsets = malloc((c->E + 1) * 4), *row = malloc(R * 4), *src = malloc(R * 4);
    float *wr = malloc(R * 4);
    ref_moe_layout(T, K, c->E, b.idx, b.w, counts, offsets, row, src, wr);
    CHECKF(memcmp(row, b.row, R * 4) == 0 && memcmp(counts, b.counts, c->E * 4) == 0 &&
               memcmp(offsets, b.offsets, (c->E + 1) * 4) == 0,
           "%s T=%d: the dispatch layout differs", c->name, T);
    free(counts); free(offsets); free(row); free(src); free(wr);

    int exact = 0, within2 = 0;
    double worst = 0, rms = 0;
    for (int64_t i = 0; i < TD; i++) {
        got[i] = dt_bf16_to_f32(b.out[i]);
        float dlt = fabsf(got[i] - tight[i]);
        exact += dlt == 0;
        within2 += dlt <= 2 * bf16_ulp(tight[i]);
        worst = fmax(worst, dlt);
        rms += (double)tight[i] * tight[i];
    }
    rms = sqrt(rms / TD);
    double dt = ref_calc_diff(got, tight, TD);

    /* loose: float math */
    clamped = 0;
    ref_layer_float(c, W, T, xf, loosed);
    for (int64_t i = 0; i < TD; i++)
        loose[i] = (float)loosed[i];
    double dl = ref_calc_diff(got, loose, TD), dq = ref_calc_diff(tight, loose, TD);

    if (getenv("MOE_VERBOSE"))
        printf("  %s T=%d: tight %d/%lld exact, %d within 2 bf16 ulps, worst %.3g (rms %.3g), calc_diff %.2e;"
               " loose calc_diff %.2e (reference (a) vs float: %.2e); %ld clamped; h codes differing %lld, h scales %lld\n",
               c->name, T, exact, (long long)TD, within2, worst, rms, dt, dl, dq, clamped, (long long)hdiff,
               (long long)sdiff);
    CHECKF(within2 >= TD * 98 / 100 && worst <= 0.05 * rms && dt < 1e-5,
           "%s T=%d: tight: %d of %lld within 2 bf16 ulps, worst %.3g (rms %.3g), calc_diff %.2e", c->name, T,
           within2, (long long)TD, worst, rms, dt);
    /* Two FP8 activation quantisations in a row (x, then h) cost about
     * 1e-3 by themselves (the quantised reference (a) measures the same),
     * so the bound is 2.5e-3, not §9's 1e-3 for one FP8 GEMM; and the
     * chain may add nothing beyond what the spec's quantisation costs. */
    CHECKF(dl < 2.5e-3 && dl <= 1.1 * dq + 1e-6, "%s T=%d: loose calc_diff %.2e (quantised reference: %.2e)", c->name,
           T, dl, dq);
done:
    bufs_free(&b);
    free(x); free(xf); free(tight); free(got); free(loose); free(loosed); free(a8); free(sa8);
}

static void check_config(const Cfg *c, const int *Ts, int nT, unsigned seed)
{
    Chain ch;
    bool built = chain_build(&ch, c);
    CHECKF(built, "%s: the chain did not build", c->name);
    if (built) {
        Weights W = weights_new(c, seed);
        for (int i = 0; i < nT; i++)
            check_layer(&ch, c, &W, Ts[i], seed + 17u * Ts[i]);
        weights_free(&W);
    }
    chain_free(&ch);
}

TEST(v4_mini_layer)
{
    /* v4-mini (spec §11): d 512, 16 experts of inter 256, top-4, one shared expert of inter 256 */
    Cfg c = {"v4-mini", 512, 256, 256, 16, 4};
    int Ts[] = {1, 5, 64};
    check_config(&c, Ts, 3, 101);
    /* top-6 at the same width: the Flash top-k through the small layer */
    Cfg c6 = {"v4-mini top-6", 512, 256, 256, 16, 6};
    int T6[] = {5};
    check_config(&c6, T6, 1, 202);
}

TEST(flash_width_decode)
{
    /* v4-flash-slice: d 4096, 16 experts of inter 2048, top-6, shared inter 2048, a 4-token decode */
    Cfg c = {"flash", 4096, 2048, 2048, 16, 6};
    int Ts[] = {4};
    check_config(&c, Ts, 1, 303);
}

int main(void)
{
    RUN(v4_mini_layer);
    RUN(flash_width_decode);
    return test_summary();
}
