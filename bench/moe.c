/* bench/moe.c — the single-rank MoE layer of DeepSeek-V4 (v4-spec §3.5) as a
 * chain of tilec kernels on the host JIT, fused against unfused, the shared
 * expert overlapped against sequential, and both against the weight-bytes
 * bound (the bytes of the weights the step touches / the memcpy bandwidth
 * measured in the same run).
 *
 *   build/bench/bench_moe [--threads N] [--quick]      (run from the repository root)
 *
 * fused:   gate → act_quant → count → offsets → place → gather
 *          → moe_gemm_swiglu (GEMM 1 + SwiGLU + act_quant epilogue) → moe_expert_gemm (GEMM 2)
 *          shared: fp8_gemm w1, fp8_gemm w3 → swiglu_quant (weight 1) → fp8_gemm w2
 *          → moe_combine (shared = add, bf16 out)
 * unfused: the same dispatch and shared expert; GEMM 1 as two plain
 *          moe_expert_gemm launches (w1 and w3, N = inter each, bf16 out:
 *          swiglu_quant takes g and u as two contiguous [R, inter] tensors,
 *          which one N = 2·inter GEMM over the stacked w13 cannot give)
 *          → swiglu_quant (the dispatched routing weight) → moe_expert_gemm
 *          → moe_combine (no shared, f32 out) → bench/add_cast.lua (bf16(a + b)).
 * overlapped (--threads ≥ 2): dispatch, then the routed GEMMs and the shared
 *          expert on two pthreads with one pool thread each, then the combine.
 * Every case is checked before it is timed: fused against unfused (within
 * one bf16 rounding) and both against a double-precision reference of the
 * spec's quantisation points (tests/ref) for one token. */
#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "ref/moe_gemm_ref.h"
#include "ref/ref.h"
#include "bench/peers.h"
#include "runtime/timing.h"
#include "tests/harness/run.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------- stages (test_moe_layer.c) */

typedef ThKernel Stage;

/* sets: {name, value} pairs up to a {NULL} */
static bool stage_build(Stage *s, const char *spec, const char *sets[][2])
{
    FeSet fs[8];
    int n = 0;
    for (; n < 8 && sets[n][0]; n++)
        fs[n] = (FeSet){sets[n][0], sets[n][1]};
    return th_kernel_build(s, spec, fs, n);
}

/* Every spec here has a single dyn dim: one param. */
static bool stage_run(const Stage *s, void *const *args, int64_t dyn, int threads)
{
    int64_t params[1] = {dyn};
    return th_kernel_run(s, args, params, threads);
}

/* ------------------------------------------------------------- the layer */

typedef struct Cfg {
    const char *name;
    int D, I, IS, E, K, T; /* model dim, routed inter, shared inter, experts, top-k, tokens */
} Cfg;

typedef struct Weights {
    uint16_t *wg;                   /* gate [E, D] bf16 */
    float *bias;                    /* [E] */
    uint8_t *w13, *sw13, *w2, *sw2; /* routed FP4 [E, 2I, D/2] + [E, 2I, D/32], [E, D, I/2] + [E, D, I/32] */
    uint8_t *w1, *sw1, *w3, *sw3;   /* w13's halves as their own tensors, for the unfused chain */
    uint8_t *s8[3], *ss8[3];        /* shared w1, w3 [IS, D], w2 [D, IS]: e4m3, 128×128 scales */
    float *sq[3], *ss[3];           /* the same as values, for the reference */
} Weights;

static float rnd(unsigned *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return (float)((*s >> 8) * (1.0 / 8388608.0)) - 1.0f;
}

/* test_moe_layer.c's weights: magnitudes change every 32 along K. */
static void weight_row(unsigned seed, int n, int K, float mag, float *row)
{
    unsigned s = ((seed * 2654435761u) ^ (unsigned)(n * 104729 + 12345)) | 1;
    static const float step[5] = {0.25f, 0.5f, 1, 2, 4};
    for (int k = 0; k < K; k++)
        row[k] = rnd(&s) * mag * step[(n + k / 32) % 5];
}

static void fp8_weight(int N, int K, unsigned seed, float mag, int i, Weights *w)
{
    int nnb = (N + 127) / 128, nkb = K / 128;
    float *f = malloc((size_t)N * K * 4);
    for (int n = 0; n < N; n++)
        weight_row(seed, n, K, mag, f + (int64_t)n * K);
    w->s8[i] = malloc((size_t)N * K);
    w->sq[i] = malloc((size_t)N * K * 4);
    w->ss8[i] = malloc((size_t)nnb * nkb);
    w->ss[i] = malloc((size_t)nnb * nkb * 4);
    for (int nb = 0; nb < nnb; nb++)
        for (int kb = 0; kb < nkb; kb++) {
            float amax = 1e-4f;
            for (int n = nb * 128; n < N && n < nb * 128 + 128; n++)
                for (int k = kb * 128; k < kb * 128 + 128; k++)
                    amax = fmaxf(amax, fabsf(f[(int64_t)n * K + k]));
            float sc = ldexpf(1.0f, (int)ceil(log2(amax / 448.0)));
            w->ss[i][nb * nkb + kb] = sc;
            w->ss8[i][nb * nkb + kb] = dt_f32_to_e8m0(sc);
            for (int n = nb * 128; n < N && n < nb * 128 + 128; n++)
                for (int k = kb * 128; k < kb * 128 + 128; k++) {
                    int64_t at = (int64_t)n * K + k;
                    w->sq[i][at] = ref_round_e4m3(f[at] / sc);
                    w->s8[i][at] = dt_f32_to_e4m3(w->sq[i][at]);
                }
        }
    free(f);
}

static Weights weights_new(const Cfg *c, unsigned seed)
{
    Weights w = {0};
    int D = c->D, I = c->I, E = c->E;
    w.wg = malloc((size_t)E * D * 2);
    w.bias = malloc(E * 4);
    for (int64_t i = 0; i < (int64_t)E * D; i++)
        w.wg[i] = dt_f32_to_bf16(rnd(&seed) * 4.5f / sqrtf((float)D));
    for (int e = 0; e < E; e++)
        w.bias[e] = 0.1f * rnd(&seed);
    size_t h = (size_t)I * (D / 2), hs = (size_t)I * (D / 32); /* one half of an expert's w13 */
    w.w13 = malloc(E * 2 * h); w.sw13 = malloc(E * 2 * hs);
    w.w1 = malloc(E * h); w.sw1 = malloc(E * hs); w.w3 = malloc(E * h); w.sw3 = malloc(E * hs);
    w.w2 = malloc((size_t)E * D * (I / 2)); w.sw2 = malloc((size_t)E * D * (I / 32));
    float *row = malloc((size_t)(D > I ? D : I) * 4);
    for (int e = 0; e < E; e++) {
        for (int n = 0; n < 2 * I; n++) {
            int64_t at = (int64_t)e * 2 * I + n;
            weight_row(seed + 1000 + e, n, D, 4.5f / sqrtf((float)D), row);
            ref_fp4_quant_row(D, row, w.w13 + at * (D / 2), w.sw13 + at * (D / 32));
        }
        memcpy(w.w1 + e * h, w.w13 + 2 * e * h, h);
        memcpy(w.w3 + e * h, w.w13 + (2 * e + 1) * h, h);
        memcpy(w.sw1 + e * hs, w.sw13 + 2 * e * hs, hs);
        memcpy(w.sw3 + e * hs, w.sw13 + (2 * e + 1) * hs, hs);
        for (int n = 0; n < D; n++) {
            int64_t at = (int64_t)e * D + n;
            weight_row(seed + 2000 + e, n, I, 1.0f / sqrtf((float)I), row);
            ref_fp4_quant_row(I, row, w.w2 + at * (I / 2), w.sw2 + at * (I / 32));
        }
    }
    free(row);
    fp8_weight(c->IS, D, seed + 3, 4.5f / sqrtf((float)D), 0, &w);
    fp8_weight(c->IS, D, seed + 4, 4.5f / sqrtf((float)D), 1, &w);
    fp8_weight(D, c->IS, seed + 5, 1.0f / sqrtf((float)c->IS), 2, &w);
    return w;
}

static void weights_free(Weights *w)
{
    void *p[] = {w->wg, w->bias, w->w13, w->sw13, w->w2, w->sw2, w->w1, w->sw1, w->w3, w->sw3};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
        free(p[i]);
    for (int i = 0; i < 3; i++) {
        free(w->s8[i]); free(w->ss8[i]); free(w->sq[i]); free(w->ss[i]);
    }
}

enum { GATE, AQ, COUNT, OFFSETS, PLACE, GATHER, GEMM1, GEMM2, SH13, SWIGLU, SH2, COMBINE,
       U_GEMM1, U_SWIGLU, U_COMBINE, U_ADD, NSTAGES };

static bool chain_build(Stage *st, const Cfg *c)
{
    char D[16], I[16], IS[16], E[16], K[16], BMe[8], BMs[8];
    snprintf(D, 16, "%d", c->D); snprintf(I, 16, "%d", c->I); snprintf(IS, 16, "%d", c->IS);
    snprintf(E, 16, "%d", c->E); snprintf(K, 16, "%d", c->K);
    int R = c->T * c->K, per = R / (c->E < R ? c->E : R); /* rows per touched expert */
    /* the expert GEMMs' row tile: 4 for a decode's one or two rows per
     * expert, 16 (dot tiles, one for an expert's rows, its weights decoded
     * once per band) up to 16 rows, then register tiles over dequantised
     * weights: moe_expert_gemm, one thread, `tilec sweep --over BM=...`:
     * E 16, 6 rows each: 47.7 ms at 4, 35.2-40.7 at 16; 1 row each: 6.9 at
     * 4, 13.2 at 16; v4-mini's 64 rows each: 8.2 at 16, 5.3 at 32, 4.2 at
     * 64; Flash's 128 rows, E 8: 381 at 16, 363 at 32, 306-398 at 64, 256-303
     * at 128 (moe_gemm_swiglu 629 at 64, 539 at 128) */
    snprintf(BMe, 8, "%d", per <= 4 ? 4 : per <= 16 ? 16 : per <= 48 ? 32 : per <= 96 ? 64 : 128);
    snprintf(BMs, 8, "%d", c->T <= 16 ? 16 : 64);           /* the shared fp8_gemm's */
    /* The expert GEMMs' K step and weight rows per step: their specs'
     * choose (moe_fp4.cpu_bk) */
    const char *gate[][2] = {{"D", D}, {"E", E}, {"TOPK", K}, {"route_scale", "1.5"}, {"routing", "topk"}, {0}};
    const char *aq[][2] = {{"K", D}, {0}};
    const char *layout[][2] = {{"E", E}, {"TOPK", K}, {0}};
    const char *gather[][2] = {{"D", D}, {"TOPK", K}, {0}};
    const char *g1[][2] = {{"E", E}, {"I", I}, {"K", D}, {"BM", BMe}, {0}};
    const char *g2[][2] = {{"E", E}, {"N", D}, {"K", I}, {"BM", BMe}, {0}};
    const char *s13[][2] = {{"N", IS}, {"K", D}, {"BM", BMs}, {0}};
    const char *sw[][2] = {{"I", IS}, {0}};
    const char *s2[][2] = {{"N", D}, {"K", IS}, {"BM", BMs}, {0}};
    const char *comb[][2] = {{"D", D}, {"TOPK", K}, {"shared", "add"}, {"out_dtype", "bf16"}, {0}};
    const char *ug1[][2] = {{"E", E}, {"N", I}, {"K", D}, {"BM", BMe}, {0}};
    const char *usw[][2] = {{"I", I}, {0}};
    const char *ucomb[][2] = {{"D", D}, {"TOPK", K}, {"shared", "none"}, {"out_dtype", "f32"}, {0}};
    const char *add[][2] = {{"D", D}, {0}};
    memset(st, 0, NSTAGES * sizeof *st);
    return stage_build(&st[GATE], "kernels_src/moe_gate.lua", gate) &&
           stage_build(&st[AQ], "kernels_src/act_quant.lua", aq) &&
           stage_build(&st[COUNT], "kernels_src/moe_count.lua", layout) &&
           stage_build(&st[OFFSETS], "kernels_src/moe_offsets.lua", layout) &&
           stage_build(&st[PLACE], "kernels_src/moe_place.lua", layout) &&
           stage_build(&st[GATHER], "kernels_src/moe_gather.lua", gather) &&
           stage_build(&st[GEMM1], "kernels_src/moe_gemm_swiglu.lua", g1) &&
           stage_build(&st[GEMM2], "kernels_src/moe_expert_gemm.lua", g2) &&
           stage_build(&st[SH13], "kernels_src/fp8_gemm.lua", s13) &&
           stage_build(&st[SWIGLU], "kernels_src/swiglu_quant.lua", sw) &&
           stage_build(&st[SH2], "kernels_src/fp8_gemm.lua", s2) &&
           stage_build(&st[COMBINE], "kernels_src/moe_combine.lua", comb) &&
           stage_build(&st[U_GEMM1], "kernels_src/moe_expert_gemm.lua", ug1) &&
           stage_build(&st[U_SWIGLU], "kernels_src/swiglu_quant.lua", usw) &&
           stage_build(&st[U_COMBINE], "kernels_src/moe_combine.lua", ucomb) &&
           stage_build(&st[U_ADD], "bench/add_cast.lua", add);
}

static void chain_free(Stage *st)
{
    for (int i = 0; i < NSTAGES; i++)
        th_kernel_free(&st[i]);
}

/* Everything the chains write (R = T·K dispatched rows); u* are the unfused chain's own. */
typedef struct Bufs {
    int32_t *idx, *cnt, *counts, *offsets, *base, *row, *src;
    float *w, *wr, *ones, *ucomb;
    uint8_t *x8, *xs, *xe, *se, *hq, *hs, *shq, *shs, *uhq, *uhs;
    uint16_t *y, *g, *u, *sh, *out, *ug, *uu, *uy, *uout;
} Bufs;

static Bufs bufs_new(const Cfg *c)
{
    int64_t T = c->T, R = T * c->K, NB = (T + 7) / 8, D = c->D, I = c->I, IS = c->IS;
    Bufs b;
    b.idx = calloc(R, 4); b.row = calloc(R, 4); b.src = calloc(R, 4);
    b.cnt = calloc(NB * c->E, 4); b.base = calloc(NB * c->E, 4);
    b.counts = calloc(c->E, 4); b.offsets = calloc(c->E + 1, 4);
    b.w = calloc(R, 4); b.wr = calloc(R, 4); b.ones = calloc(T, 4); b.ucomb = calloc(T * D, 4);
    for (int t = 0; t < T; t++)
        b.ones[t] = 1.0f;
    b.x8 = calloc(T * D, 1); b.xs = calloc(T * D / 128, 1); b.xe = calloc(R * D, 1); b.se = calloc(R * D / 128, 1);
    b.hq = calloc(R * I, 1); b.hs = calloc(R * I / 128, 1); b.uhq = calloc(R * I, 1); b.uhs = calloc(R * I / 128, 1);
    b.shq = calloc(T * IS, 1); b.shs = calloc(T * IS / 128, 1);
    b.y = calloc(R * D, 2); b.uy = calloc(R * D, 2); b.g = calloc(T * IS, 2); b.u = calloc(T * IS, 2);
    b.ug = calloc(R * I, 2); b.uu = calloc(R * I, 2);
    b.sh = calloc(T * D, 2); b.out = calloc(T * D, 2); b.uout = calloc(T * D, 2);
    return b;
}

static void bufs_free(Bufs *b)
{
    void *p[] = {b->idx, b->cnt, b->counts, b->offsets, b->base, b->row, b->src, b->w, b->wr, b->ones,
                 b->ucomb, b->x8, b->xs, b->xe, b->se, b->hq, b->hs, b->shq, b->shs, b->uhq, b->uhs,
                 b->y, b->g, b->u, b->sh, b->out, b->ug, b->uu, b->uy, b->uout};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
        free(p[i]);
}

typedef struct Run {
    const Stage *s;
    const Cfg *c;
    const Weights *W;
    uint16_t *x;
    Bufs *b;
} Run;

static bool run_dispatch(const Run *r, int th)
{
    const Stage *s = r->s;
    Bufs *b = r->b;
    int T = r->c->T;
    void *gate[] = {r->x, r->W->wg, r->W->bias, b->idx, b->w};
    void *aq[] = {r->x, b->x8, b->xs};
    void *count[] = {b->idx, b->cnt};
    void *offsets[] = {b->cnt, b->counts, b->offsets, b->base, b->src, b->wr};
    void *place[] = {b->idx, b->w, b->base, b->row, b->src, b->wr};
    void *gather[] = {b->src, b->x8, b->xs, b->xe, b->se};
    return stage_run(&s[GATE], gate, T, th) && stage_run(&s[AQ], aq, T, th) && stage_run(&s[COUNT], count, T, th) &&
           stage_run(&s[OFFSETS], offsets, T, th) && stage_run(&s[PLACE], place, T, th) &&
           stage_run(&s[GATHER], gather, T, th);
}

static bool run_shared(const Run *r, int th)
{
    const Stage *s = r->s;
    Bufs *b = r->b;
    const Weights *W = r->W;
    int T = r->c->T;
    void *s1[] = {b->x8, b->xs, W->s8[0], W->ss8[0], b->g};
    void *s3[] = {b->x8, b->xs, W->s8[1], W->ss8[1], b->u};
    void *sw[] = {b->g, b->u, b->ones, b->shq, b->shs};
    void *s2[] = {b->shq, b->shs, W->s8[2], W->ss8[2], b->sh};
    return stage_run(&s[SH13], s1, T, th) && stage_run(&s[SH13], s3, T, th) && stage_run(&s[SWIGLU], sw, T, th) &&
           stage_run(&s[SH2], s2, T, th);
}

static bool run_routed_fused(const Run *r, int th)
{
    Bufs *b = r->b;
    int64_t R = (int64_t)r->c->T * r->c->K;
    void *g1[] = {b->xe, b->se, b->counts, b->offsets, r->W->w13, r->W->sw13, b->wr, b->hq, b->hs};
    void *g2[] = {b->hq, b->hs, b->counts, b->offsets, r->W->w2, r->W->sw2, b->y};
    return stage_run(&r->s[GEMM1], g1, R, th) && stage_run(&r->s[GEMM2], g2, R, th);
}

static bool run_combine_fused(const Run *r, int th)
{
    void *comb[] = {r->b->row, r->b->w, r->b->y, r->b->sh, r->b->out};
    return stage_run(&r->s[COMBINE], comb, r->c->T, th);
}

static bool run_fused(const Run *r, int th)
{
    return run_dispatch(r, th) && run_routed_fused(r, th) && run_shared(r, th) && run_combine_fused(r, th);
}

static bool run_routed_unfused(const Run *r, int th)
{
    const Stage *s = r->s;
    Bufs *b = r->b;
    const Weights *W = r->W;
    int64_t R = (int64_t)r->c->T * r->c->K;
    void *g1[] = {b->xe, b->se, b->counts, b->offsets, W->w1, W->sw1, b->ug};
    void *g3[] = {b->xe, b->se, b->counts, b->offsets, W->w3, W->sw3, b->uu};
    void *sw[] = {b->ug, b->uu, b->wr, b->uhq, b->uhs};
    void *g2[] = {b->uhq, b->uhs, b->counts, b->offsets, W->w2, W->sw2, b->uy};
    return stage_run(&s[U_GEMM1], g1, R, th) && stage_run(&s[U_GEMM1], g3, R, th) &&
           stage_run(&s[U_SWIGLU], sw, R, th) && stage_run(&s[GEMM2], g2, R, th);
}

static bool run_combine_unfused(const Run *r, int th)
{
    Bufs *b = r->b;
    void *comb[] = {b->row, b->w, b->uy, b->ucomb};
    void *add[] = {b->ucomb, b->sh, b->uout};
    return stage_run(&r->s[U_COMBINE], comb, r->c->T, th) && stage_run(&r->s[U_ADD], add, r->c->T, th);
}

static bool run_unfused(const Run *r, int th)
{
    return run_dispatch(r, th) && run_routed_unfused(r, th) && run_shared(r, th) && run_combine_unfused(r, th);
}

typedef struct SharedJob {
    const Run *r;
    bool ok;
} SharedJob;

static void *shared_thread(void *p)
{
    SharedJob *j = p;
    j->ok = run_shared(j->r, 1);
    return NULL;
}

/* The fused chain with the shared expert on its own pthread while this one
 * runs the routed GEMMs: each side launches with one pool thread (the
 * pool runs a one-thread launch inline, so the two never share it). */
static bool run_overlapped(const Run *r, int th)
{
    if (!run_dispatch(r, th))
        return false;
    SharedJob j = {r, false};
    pthread_t tid;
    if (pthread_create(&tid, NULL, shared_thread, &j))
        return false;
    bool ok = run_routed_fused(r, 1);
    pthread_join(tid, NULL);
    return ok && j.ok && run_combine_fused(r, th);
}

/* ------------------------------------------------------------ the checks */

static float bf16_ulp(float v) { return ldexpf(1.0f, ilogbf(fmaxf(fabsf(v), 1e-30f)) - 7); }

/* Token t from the spec's quantisation points in double (tests/ref) on the
 * chain's own routing: act_quant(x); per slot, in ascending expert order
 * (the combine's order), fp4 GEMM 1 + SwiGLU + act_quant, fp4 GEMM 2 →
 * bf16, summed in f32; the shared expert in fp8; plus shared, then bf16. */
static void ref_token(const Cfg *c, const Weights *W, const Bufs *b, const float *xt, int t, float *out)
{
    int D = c->D, I = c->I, IS = c->IS, K = c->K;
    float *q = malloc(D * 4), *s = malloc(D / 128 * 4), *y = malloc(D * 4), *acc = calloc(D, 4);
    float *hq = malloc(I * 4), *hs = malloc(I / 128 * 4), *g = malloc(IS * 4), *u = malloc(IS * 4);
    float *shq = malloc(IS * 4), *shs = malloc(IS / 128 * 4), *sh = malloc(D * 4);
    uint8_t *a8 = malloc(D), *sa8 = malloc(D / 128), *h8 = malloc(I), *hs8 = malloc(I / 128);
    ref_act_quant(D, xt, q, s);
    for (int k = 0; k < D; k++)
        a8[k] = dt_f32_to_e4m3(q[k]);
    for (int j = 0; j < D / 128; j++)
        sa8[j] = ref_encode_e8m0(s[j]);
    for (int e = 0; e < c->E; e++)
        for (int k = 0; k < K; k++) {
            if (b->idx[t * K + k] != e)
                continue;
            ref_moe_swiglu_row(I, D, a8, sa8, W->w13 + (int64_t)e * 2 * I * (D / 2),
                               W->sw13 + (int64_t)e * 2 * I * (D / 32), b->w[t * K + k], 10, hq, hs);
            for (int i = 0; i < I; i++)
                h8[i] = dt_f32_to_e4m3(hq[i]);
            for (int j = 0; j < I / 128; j++)
                hs8[j] = ref_encode_e8m0(hs[j]);
            ref_fp4_gemm_row(D, I, h8, hs8, W->w2 + (int64_t)e * D * (I / 2), W->sw2 + (int64_t)e * D * (I / 32), y);
            for (int d = 0; d < D; d++)
                acc[d] += y[d];
        }
    ref_fp8_gemm(1, IS, D, q, s, W->sq[0], W->ss[0], g);
    ref_fp8_gemm(1, IS, D, q, s, W->sq[1], W->ss[1], u);
    ref_swiglu_quant(IS, g, u, 1.0f, 10, shq, shs);
    ref_fp8_gemm(1, D, IS, shq, shs, W->sq[2], W->ss[2], sh);
    for (int d = 0; d < D; d++)
        out[d] = ref_round_bf16(acc[d] + sh[d]);
    free(q); free(s); free(y); free(acc); free(hq); free(hs); free(g); free(u); free(shq); free(shs); free(sh);
    free(a8); free(sa8); free(h8); free(hs8);
}

/* Fused vs unfused (within one bf16 rounding) and the fused output of the
 * last token vs the reference (test_moe_layer.c's tight thresholds). */
static bool verify(const Run *r, int th, const float *xf)
{
    const Cfg *c = r->c;
    Bufs *b = r->b;
    int64_t TD = (int64_t)c->T * c->D, R = (int64_t)c->T * c->K;
    if (!run_unfused(r, th) || !run_fused(r, th)) {
        printf("  %s T=%d: a chain failed\n", c->name, c->T);
        return false;
    }
    int64_t exact = 0, one = 0, hsame = 0;
    for (int64_t i = 0; i < TD; i++) {
        float f = dt_bf16_to_f32(b->out[i]), u = dt_bf16_to_f32(b->uout[i]);
        exact += b->out[i] == b->uout[i];
        one += fabsf(f - u) <= bf16_ulp(f);
    }
    for (int64_t i = 0; i < R * c->I; i++)
        hsame += b->hq[i] == b->uhq[i];
    hsame += memcmp(b->hs, b->uhs, R * c->I / 128) == 0 ? 0 : -1;
    int t = c->T - 1, within2 = 0;
    float *ref = malloc(c->D * 4);
    ref_token(c, r->W, b, xf + (int64_t)t * c->D, t, ref);
    double worst = 0, rms = 0;
    for (int d = 0; d < c->D; d++) {
        float got = dt_bf16_to_f32(b->out[(int64_t)t * c->D + d]), dl = fabsf(got - ref[d]);
        within2 += dl <= 2 * bf16_ulp(ref[d]);
        worst = fmax(worst, dl);
        rms += (double)ref[d] * ref[d];
    }
    free(ref);
    rms = sqrt(rms / c->D);
    bool ok = one == TD && within2 >= c->D * 98 / 100 && worst <= 0.05 * rms;
    printf("  check %s T=%d: fused vs unfused %lld/%lld bit-exact, %lld within 1 bf16 ulp, h codes %s;"
           " token %d vs reference: %d/%d within 2 ulps, worst %.3g (rms %.3g) %s\n",
           c->name, c->T, (long long)exact, (long long)TD, (long long)one,
           hsame == R * c->I ? "identical" : "differ", t, within2, c->D, worst, rms, ok ? "ok" : "FAILED");
    return ok;
}

/* --------------------------------------------------------------- timing */


static double time_it(bool (*fn)(const Run *, int), const Run *r, int th, int reps, bool *ok)
{
    double t[16];
    *ok = *ok && fn(r, th); /* warm up */
    for (int i = 0; i < reps; i++) {
        double t0 = rt_now();
        *ok = *ok && fn(r, th);
        t[i] = rt_now() - t0;
    }
    return rt_median(t, reps);
}

/* The bytes of the weights the layer reads: the gate, every routed expert
 * that got a row (w13, w2 and their scales), the shared expert. */
static double weight_bytes(const Cfg *c, const Bufs *b, int *touched)
{
    double D = c->D, I = c->I, IS = c->IS, per = 2 * I * D / 2 + 2 * I * D / 32 + D * I / 2 + D * I / 32;
    *touched = 0;
    for (int e = 0; e < c->E; e++)
        *touched += b->counts[e] > 0;
    double shared = 3 * IS * D + 3 * ceil(IS / 128) * (D / 128);
    return c->E * D * 2 + c->E * 4 + *touched * per + shared;
}

static bool bench_case(const Cfg *c, int threads, int reps, double bw)
{
    Stage st[NSTAGES];
    if (!chain_build(st, c)) {
        printf("  %s T=%d: the chain did not build\n", c->name, c->T);
        chain_free(st);
        return false;
    }
    Weights W = weights_new(c, 303);
    int64_t TD = (int64_t)c->T * c->D;
    uint16_t *x = malloc(TD * 2);
    float *xf = malloc(TD * 4);
    unsigned seed = 17u * c->T + 5;
    for (int64_t i = 0; i < TD; i++) { /* after ffn_norm: O(1), a few larger channels */
        x[i] = dt_f32_to_bf16(rnd(&seed) * (i % 97 == 0 ? 4.0f : 1.0f));
        xf[i] = dt_bf16_to_f32(x[i]);
    }
    Bufs b = bufs_new(c);
    Run r = {st, c, &W, x, &b};
    bool ok = verify(&r, threads, xf);
    if (ok) {
        uint16_t *want = malloc(TD * 2); /* the verified fused output */
        memcpy(want, b.out, TD * 2);
        double tf = time_it(run_fused, &r, threads, reps, &ok);
        double tu = time_it(run_unfused, &r, threads, reps, &ok);
        double to = threads >= 2 ? time_it(run_overlapped, &r, threads, reps, &ok) : 0;
        if (ok && memcmp(b.out, want, TD * 2)) { /* the overlapped chain must give the same answer */
            printf("  %s T=%d: the overlapped chain's output differs from the fused one\n", c->name, c->T);
            ok = false;
        }
        free(want);
        /* where the time goes: each part of the chains alone (same buffers) */
        double pd = time_it(run_dispatch, &r, threads, reps, &ok), pr = time_it(run_routed_fused, &r, threads, reps, &ok);
        double pu = time_it(run_routed_unfused, &r, threads, reps, &ok), ps = time_it(run_shared, &r, threads, reps, &ok);
        double pc = time_it(run_combine_fused, &r, threads, reps, &ok);
        double pcu = time_it(run_combine_unfused, &r, threads, reps, &ok);
        printf("  parts %s T=%d (us): dispatch %.0f, routed GEMMs fused %.0f / unfused %.0f, shared expert %.0f,"
               " combine fused %.0f / unfused (+add_cast) %.0f\n",
               c->name, c->T, pd * 1e6, pr * 1e6, pu * 1e6, ps * 1e6, pc * 1e6, pcu * 1e6);
        int touched;
        double bytes = weight_bytes(c, &b, &touched), bound = bytes / (bw * 1e9);
        char ovl[48] = "      -      -";
        if (to > 0)
            snprintf(ovl, sizeof ovl, "%9.0f %6.2f", to * 1e6, tf / to);
        printf("%-14s %5d %3d %4d/%-3d %8.1f %9.0f %9.0f %6.2f %s %9.0f %8.2f\n", c->name, c->T, c->E, touched,
               c->E, bytes / 1e6, tf * 1e6, tu * 1e6, tu / tf, ovl, bound * 1e6, bound / tf);
    }
    bufs_free(&b);
    free(x);
    free(xf);
    weights_free(&W);
    chain_free(st);
    return ok;
}

int main(int argc, char **argv)
{
    int threads = 1;
    bool quick = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick"))
            quick = true;
        else {
            fprintf(stderr, "usage: bench_moe [--threads N] [--quick]\n");
            return 2;
        }
    }
    if (threads < 1)
        threads = 1;
    /* Flash (v4-spec §1): d 4096, moe_inter 2048, top-6, one shared expert
     * of inter 2048, experts cut from 256 to 16; v4-mini (§11) for prefill. */
    static const Cfg cases[] = {
        {"flash-E16", 4096, 2048, 2048, 16, 6, 1},
        {"flash-E16", 4096, 2048, 2048, 16, 6, 4},
        {"flash-E16", 4096, 2048, 2048, 16, 6, 16},
        {"v4-mini", 512, 256, 256, 16, 4, 256},
    };
    int reps = quick ? 3 : 7;
    const TargetInfo *t = ir_host_target();
    double bw = bench_copy_bandwidth(threads);
    printf("bench_moe: target %s, %d thread(s), median of %d; memcpy copy bandwidth %.1f GB/s (read+write)\n",
           t ? t->name : "none", threads, reps, bw);
    printf("overlap: routed GEMMs and shared expert on two pthreads, 1 pool thread each, vs fused at %d thread(s)\n",
           threads);
    printf("bound: weight bytes touched / copy bandwidth; of_bound = bound / fused\n");
    printf("%-14s %5s %3s %8s %8s %9s %9s %6s %9s %6s %9s %8s\n", "layer", "T", "E", "touched", "wMB",
           "fused_us", "unfus_us", "unf/f", "ovl_us", "seq/o", "bound_us", "of_bound");
    int failures = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        failures += !bench_case(&cases[i], threads, reps, bw);
    return failures ? 1 : 0;
}
