/* test_moe_gemm.c — the routed experts' grouped FP8 × FP4 GEMMs (v4-spec
 * §2.4, §3.5 steps 5–9): kernels_src/moe_expert_gemm.lua and
 * kernels_src/moe_gemm_swiglu.lua against tests/ref/moe_gemm_ref.c.
 * The FP4 unpacking and the FP8 re-quantisation are checked bit for bit on
 * inputs whose GEMMs are exact; the GEMMs with two-level tolerances (§9):
 * tight against the spec's math on the same quantised inputs, loose
 * against the unquantised product.  Interpreter and SIMT at small shapes;
 * v4-mini and Flash per-expert shapes (d 4096, inter 2048) on the JIT.
 * MOE_VERBOSE=1 prints the statistics and each JIT launch's time. */
#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "ref/moe_gemm_ref.h"
#include "ref/ref.h"
#include "test.h"
#include "tests/harness/run.h"

#include <string.h>
#include <time.h>

#define PLAIN "kernels_src/moe_expert_gemm.lua"
#define FUSED "kernels_src/moe_gemm_swiglu.lua"

static float ulp_of(float v, int mbits) { return ldexpf(1.0f, ilogbf(fmaxf(fabsf(v), 1e-30f)) - mbits); }

static const char *name_of(const char *target) { return target ? target : "interp"; }

/* The expert GEMMs' one dyn value is the row count R. */
static bool run(const char *spec, const FeSet *sets, int nsets, const char *target, void *const *args, int64_t R)
{
    int64_t params[1] = {R};
    return th_run(spec, sets, nsets, target, args, params, 2);
}

/* The CPU targets this machine runs, best first. */
static int jit_targets(const char **out)
{
    int n = 0;
    const char *all[] = {"x86-avx512", "x86-avx2"};
    for (int i = 0; i < 2; i++)
        if (ir_target_runs_here(ir_target(all[i])))
            out[n++] = all[i];
    return n;
}

/* ------------------------------------------------------------- problems */

/* R routed rows in expert order: expert e owns rows [off[e], off[e] + cnt[e]). */
typedef struct Moe {
    int R, E, N, K;
    int32_t *cnt, *off;
    float *x;         /* [R, K] activations before act_quant */
    uint8_t *a, *sa;  /* their e4m3 codes and 1×128 scales */
    uint8_t *w, *sw;  /* [E, N, K/2] packed e2m1 and [E, N, K/32] scales (experts with rows only) */
    float *rw;        /* [R] routing weights */
    int *rows, nrows; /* the rows compared (pick_rows) */
    double *exact;    /* [nrows, N]: those rows times the unquantised weights */
    unsigned wseed;
} Moe;

/* The weights before FP4, regenerated on demand (Flash-sized experts are
 * too many to keep as floats): bell-shaped like trained weights (a sum of
 * three uniforms), with magnitudes that change from one 32-block to the
 * next, so neighbouring scales differ. */
static void weight_row(const Moe *m, int e, int n, float *row)
{
    unsigned s = m->wseed ^ (unsigned)(e * 7919 + n * 104729 + 1);
    float mag = 0.45f / sqrtf((float)m->K), step[5] = {0.25f, 0.5f, 1, 2, 4};
    for (int k = 0; k < m->K; k++) {
        float bell = test_rand(&s) + test_rand(&s) + test_rand(&s);
        row[k] = bell * mag * step[(n + k / 32) % 5];
    }
}

static int expert_of(const Moe *m, int r)
{
    for (int e = 0; e < m->E; e++)
        if (r >= m->off[e] && r < m->off[e] + m->cnt[e])
            return e;
    return -1;
}

/* The experts' rows to compare: all of them, or past 64 rows the first
 * and last of every expert and every 257th. */
static int pick_rows(const Moe *m, int *rows)
{
    int n = 0;
    for (int r = 0; r < m->R; r++) {
        int e = expert_of(m, r);
        if (e >= 0 && (m->R <= 64 || r == m->off[e] || r == m->off[e] + m->cnt[e] - 1 || r % 257 == 0))
            rows[n++] = r;
    }
    return n;
}

/* Row n of expert e's weights: quantised into m, and its products with the
 * unquantised activations of the compared rows of e, in double. */
static void make_weight_row(Moe *m, int e, int n, float *row)
{
    int64_t at = (int64_t)e * m->N + n;
    weight_row(m, e, n, row);
    ref_fp4_quant_row(m->K, row, m->w + at * (m->K / 2), m->sw + at * (m->K / 32));
    for (int i = 0; i < m->nrows; i++) {
        if (expert_of(m, m->rows[i]) != e)
            continue;
        const float *x = m->x + (int64_t)m->rows[i] * m->K;
        double acc = 0;
        for (int k = 0; k < m->K; k++)
            acc += (double)x[k] * row[k];
        m->exact[(int64_t)i * m->N + n] = acc;
    }
}

/* Expert e's rows start at a multiple of align (1: packed back to back;
 * more leaves rows of no expert between them, which stay untouched). */
static Moe moe_new_aligned(int E, int N, int K, const int *counts, int align, unsigned seed)
{
    Moe m = {.E = E, .N = N, .K = K, .wseed = seed * 31 + 7};
    m.cnt = calloc(E, 4);
    m.off = calloc(E, 4);
    for (int e = 0; e < E; e++) {
        m.cnt[e] = counts[e];
        m.off[e] = (m.R + align - 1) / align * align;
        m.R = m.off[e] + counts[e];
    }
    m.x = calloc((size_t)m.R * K, 4);
    m.a = calloc((size_t)m.R * K, 1);
    m.sa = calloc((size_t)m.R * K / 128, 1);
    m.rw = calloc(m.R, 4);
    float *q = calloc(K, 4), *s = calloc(K / 128, 4);
    for (int r = 0; r < m.R; r++) {
        float *x = m.x + (int64_t)r * K;
        float mag = ldexpf(1.0f, r * 3 % 7 - 2); /* 1/4 .. 16: some gates and ups pass the clamp */
        for (int k = 0; k < K; k++)
            x[k] = test_rand(&seed) * mag * (1 + (k / 128) % 3);
        ref_act_quant(K, x, q, s);
        for (int k = 0; k < K; k++)
            m.a[(int64_t)r * K + k] = dt_f32_to_e4m3(q[k]);
        for (int b = 0; b < K / 128; b++)
            m.sa[(int64_t)r * (K / 128) + b] = dt_f32_to_e8m0(s[b]);
        m.rw[r] = 0.1f + 0.4f * (test_rand(&seed) + 1);
    }
    m.rows = calloc(m.R, sizeof *m.rows);
    m.nrows = pick_rows(&m, m.rows);
    m.exact = calloc((size_t)m.nrows * N, sizeof *m.exact);
    /* calloc: the pages of experts without rows are never touched */
    m.w = calloc((size_t)E * N * (K / 2), 1);
    m.sw = calloc((size_t)E * N * (K / 32), 1);
    for (int e = 0; e < E; e++)
        for (int n = 0; counts[e] && n < N; n++)
            make_weight_row(&m, e, n, q);
    free(q); free(s);
    return m;
}

static Moe moe_new(int E, int N, int K, const int *counts, unsigned seed)
{
    return moe_new_aligned(E, N, K, counts, 1, seed);
}

static void moe_free(Moe *m)
{
    free(m->cnt); free(m->off); free(m->x); free(m->a); free(m->sa); free(m->w); free(m->sw); free(m->rw);
    free(m->rows); free(m->exact);
}

/* E, the output width (N, or I for the fused kernel), K and BM as --set
 * values, and one more where `more` names it (BN, BS). */
typedef struct Sets { char v[3][16]; FeSet s[5]; } Sets;
static FeSet more;

static int nsets(void) { return more.name ? 5 : 4; }

static const FeSet *sets_of(Sets *t, int E, const char *wname, int width, int K, const char *bm)
{
    t->s[4] = more;
    snprintf(t->v[0], 16, "%d", E);
    snprintf(t->v[1], 16, "%d", width);
    snprintf(t->v[2], 16, "%d", K);
    t->s[0] = (FeSet){"E", t->v[0]};
    t->s[1] = (FeSet){wname, t->v[1]};
    t->s[2] = (FeSet){"K", t->v[2]};
    t->s[3] = (FeSet){"BM", bm};
    return t->s;
}

/* ------------------------------------------------------ the plain GEMM */

/* moe_expert_gemm on target: within one bf16 rounding of the spec's math
 * on the same inputs (>= 90% equal) and calc_diff < 0.02 (§9's FP4 bound)
 * against the unquantised product, on the picked rows; every row of an
 * expert written and no other.  Returns the output (bf16 bits). */
static uint16_t *check_plain(const char *target, const Moe *m, const char *bm)
{
    int N = m->N;
    uint16_t *c = malloc((size_t)m->R * N * 2);
    memset(c, 0xff, (size_t)m->R * N * 2); /* NaN: a row left unwritten shows */
    Sets st;
    void *args[7] = {m->a, m->sa, m->cnt, m->off, m->w, m->sw, c};
    CHECK(run(PLAIN, sets_of(&st, m->E, "N", N, m->K, bm), nsets(), target, args, m->R));
    const int *rows = m->rows, nrows = m->nrows;
    float *want = calloc((size_t)nrows * N, 4), *got = calloc((size_t)nrows * N, 4);
    float *exact = calloc((size_t)nrows * N, 4);
    int far = 0, same = 0;
    for (int i = 0; i < nrows; i++) {
        int r = rows[i], e = expert_of(m, r);
        ref_fp4_gemm_row(N, m->K, m->a + (int64_t)r * m->K, m->sa + (int64_t)r * (m->K / 128),
                         m->w + (int64_t)e * N * (m->K / 2), m->sw + (int64_t)e * N * (m->K / 32),
                         want + (int64_t)i * N);
        for (int n = 0; n < N; n++) {
            int64_t j = (int64_t)i * N + n;
            got[j] = dt_bf16_to_f32(c[(int64_t)r * N + n]);
            exact[j] = (float)m->exact[j];
            far += !(fabsf(got[j] - want[j]) <= ulp_of(want[j], 7));
            same += got[j] == want[j];
        }
    }
    int64_t misplaced = 0; /* the experts' rows all written, the rows between them untouched */
    for (int r = 0; r < m->R; r++)
        for (int n = 0, owned = expert_of(m, r) >= 0; n < N; n++)
            misplaced += isnan(dt_bf16_to_f32(c[(int64_t)r * N + n])) == owned;
    double diff = ref_calc_diff(got, exact, (int64_t)nrows * N);
    if (getenv("MOE_VERBOSE"))
        printf("  plain %s: far %d same %d/%d diff %.2e\n", name_of(target), far, same, nrows * N, diff);
    CHECKF(far == 0 && same >= nrows * N * 9 / 10 && diff < 0.02 && misplaced == 0,
           "moe_expert_gemm R=%d E=%d N=%d K=%d BM=%s on %s: %d beyond one bf16 rounding, %d of %d equal, "
           "calc_diff %.2e, %lld values written where they should not be or not written",
           m->R, m->E, N, m->K, bm, name_of(target), far, same, nrows * N, diff, (long long)misplaced);
    free(want); free(got); free(exact);
    return c;
}

static void check_plain_only(const char *target, const Moe *m, const char *bm) { free(check_plain(target, m, bm)); }

/* ---------------------------------------------------- GEMM 1 + SwiGLU */

static double silu_clamped(double g, double u, double rw)
{
    g = fmin(g, 10);
    u = fmax(fmin(u, 10), -10);
    return g / (1 + exp(-g)) * u * rw;
}

/* The re-quantisation bit for bit on every row: the reference's SwiGLU and
 * act_quant applied to the gate and up values that moe_expert_gemm computed
 * on the same w13 (bf16 [R, 2I]), which are the fused kernel's own: both
 * run the same K loop.  Only silu's f32 rounding may move h across a bf16
 * midpoint, so a code may differ by one step in rare places; the scales
 * may not differ. */
static void check_requant_of(const Moe *m, const uint16_t *gu_plain, const uint8_t *q, const uint8_t *s,
                             const char *target)
{
    int I = m->N / 2, nb = I / 128, codes = 0, scales = 0, far = 0, total = 0;
    float *g = calloc(2 * I, 4), *qr = calloc(I, 4), *sr = calloc(nb, 4);
    for (int r = 0; r < m->R; r++) {
        if (expert_of(m, r) < 0)
            continue;
        for (int n = 0; n < 2 * I; n++)
            g[n] = dt_bf16_to_f32(gu_plain[(int64_t)r * 2 * I + n]);
        ref_swiglu_quant(I, g, g + I, m->rw[r], 10, qr, sr);
        for (int n = 0; n < I; n++) {
            float got = dt_e4m3_to_f32(q[(int64_t)r * I + n]);
            codes += got == qr[n];
            far += !(fabsf(got - qr[n]) <= ulp_of(qr[n], 3));
        }
        for (int b = 0; b < nb; b++)
            scales += dt_e8m0_to_f32(s[(int64_t)r * nb + b]) == sr[b];
        total += I;
    }
    if (getenv("MOE_VERBOSE"))
        printf("  requant of moe_expert_gemm's g, u on %s: %d of %d codes, %d of %d scales\n", name_of(target), codes,
               total, scales, total / 128);
    CHECKF(far == 0 && codes >= total - total / 10000 && scales == total / 128,
           "moe_gemm_swiglu on %s against act_quant of moe_expert_gemm's gate and up: %d of %d codes (%d beyond "
           "one step), %d of %d scales equal", name_of(target), codes, total, far, scales, total / 128);
    free(g); free(qr); free(sr);
}

/* moe_gemm_swiglu on target (m->N = 2·inter): codes and scales against the
 * spec's steps on the same inputs — none beyond one e4m3 step, >= 98% of
 * codes and >= 95% of scales equal (a gate or up one bf16 rounding away
 * moves a code) — and calc_diff < 0.05 of q·s against the SwiGLU of the
 * unquantised products: the gate's FP4 error passes through silu, whose
 * relative slope 1/g + sigmoid(-g) is above 1 at typical |g|, so h carries
 * about twice the relative error of one FP4 GEMM (calc_diff ~5x that
 * GEMM's 0.005; a wrong scale layout gives ~1).  Both sides of the clamp
 * must be reached. */
static void check_fused(const char *target, const Moe *m, const char *bm, const uint16_t *gu_plain)
{
    int I = m->N / 2, K = m->K, nb = I / 128;
    uint8_t *q = malloc((size_t)m->R * I), *s = malloc((size_t)m->R * nb);
    memset(q, 0xff, (size_t)m->R * I); /* NaN codes */
    memset(s, 0xff, (size_t)m->R * nb);
    Sets st;
    void *args[9] = {m->a, m->sa, m->cnt, m->off, m->w, m->sw, m->rw, q, s};
    CHECK(run(FUSED, sets_of(&st, m->E, "I", I, K, bm), nsets(), target, args, m->R));
    const int *rows = m->rows, nrows = m->nrows;
    const double *gu = m->exact;
    float *qr = calloc(I, 4), *sr = calloc(nb, 4);
    float *got = calloc((size_t)nrows * I, 4), *exact = calloc((size_t)nrows * I, 4);
    int same = 0, far = 0, ssame = 0, gclamp = 0, uclamp = 0;
    for (int i = 0; i < nrows; i++) {
        int r = rows[i], e = expert_of(m, r);
        ref_moe_swiglu_row(I, K, m->a + (int64_t)r * K, m->sa + (int64_t)r * (K / 128),
                           m->w + (int64_t)e * 2 * I * (K / 2), m->sw + (int64_t)e * 2 * I * (K / 32), m->rw[r], 10,
                           qr, sr);
        for (int n = 0; n < I; n++) {
            uint8_t code = q[(int64_t)r * I + n];
            float sc = dt_e8m0_to_f32(s[(int64_t)r * nb + n / 128]);
            float g = dt_e4m3_to_f32(code) * sc, want = qr[n] * sr[n / 128];
            same += dt_e4m3_to_f32(code) == qr[n];
            far += !(fabsf(g - want) <= ulp_of(want, 3));
            double gx = gu[(int64_t)i * 2 * I + n], ux = gu[(int64_t)i * 2 * I + I + n];
            gclamp += gx > 10;
            uclamp += fabs(ux) > 10;
            got[(int64_t)i * I + n] = g;
            exact[(int64_t)i * I + n] = (float)silu_clamped(gx, ux, m->rw[r]);
        }
        for (int b = 0; b < nb; b++)
            ssame += dt_e8m0_to_f32(s[(int64_t)r * nb + b]) == sr[b];
    }
    int64_t misplaced = 0;
    for (int r = 0; r < m->R; r++) {
        int owned = expert_of(m, r) >= 0;
        for (int n = 0; n < I; n++)
            misplaced += isnan(dt_e4m3_to_f32(q[(int64_t)r * I + n])) == owned;
        for (int b = 0; b < nb; b++)
            misplaced += isnan(dt_e8m0_to_f32(s[(int64_t)r * nb + b])) == owned;
    }
    CHECKF(misplaced == 0, "moe_gemm_swiglu on %s: %lld codes or scales written outside the experts' rows or not "
           "written", name_of(target), (long long)misplaced);
    if (gu_plain)
        check_requant_of(m, gu_plain, q, s, target);
    double diff = ref_calc_diff(got, exact, (int64_t)nrows * I);
    if (getenv("MOE_VERBOSE"))
        printf("  fused %s: far %d same %d/%d ssame %d/%d diff %.2e clamps %d %d\n", name_of(target), far, same,
               nrows * I, ssame, nrows * nb, diff, gclamp, uclamp);
    CHECKF(far == 0 && same >= nrows * I * 98 / 100 && ssame >= nrows * nb * 95 / 100 && diff < 0.05,
           "moe_gemm_swiglu R=%d E=%d I=%d K=%d BM=%s on %s: %d beyond one e4m3 step, %d of %d codes and "
           "%d of %d scales equal, calc_diff %.2e",
           m->R, m->E, I, K, bm, name_of(target), far, same, nrows * I, ssame, nrows * nb, diff);
    CHECKF(gclamp > 0 && uclamp > 0, "the clamp is not exercised: %d gates > 10, %d |up| > 10", gclamp, uclamp);
    free(q); free(s); free(qr); free(sr); free(got); free(exact);
}

/* ---------------------------------------------------------------- tests */

#define TIMED(stmt)                                                                          \
    do {                                                                                     \
        struct timespec t0_, t1_;                                                            \
        clock_gettime(CLOCK_MONOTONIC, &t0_);                                                \
        stmt;                                                                                \
        clock_gettime(CLOCK_MONOTONIC, &t1_);                                                \
        if (getenv("MOE_VERBOSE"))                                                           \
            printf("  %.2fs: %s\n", (t1_.tv_sec - t0_.tv_sec) + 1e-9 * (t1_.tv_nsec - t0_.tv_nsec), #stmt); \
    } while (0)

/* ------------------------------------------------- bit-exact formats */

static uint8_t hash8(unsigned x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    return (uint8_t)(x >> 16);
}

/* FP4 unpacking (§2.4), bit for bit: one-hot activations (a = 1, scale 1)
 * make row k of expert e's output the dequantised column k of its
 * weights, e2m1(nibble) · 2^(scale - 127), which bf16 holds exactly.  Every
 * nibble meets every scale exponent from 2^-30 to 2^30, in the low and the
 * high half of a byte.  (-0, nibble 8, sums to +0 with the zero products.) */
TEST(fp4_unpack_bit_exact)
{
    enum { E = 3, N = 128, K = 128, LO = 97, HI = 157 };
    static const int counts[E] = {K, 0, K};
    static uint8_t a[2 * K * K], sa[2 * K], w[E * N * K / 2], sw[E * N * K / 32];
    static uint16_t c[2 * K * N];
    static unsigned char seen[2][16][256];
    int32_t cnt[E], off[E];
    for (int e = 0, r = 0; e < E; r += counts[e], e++)
        cnt[e] = counts[e], off[e] = r;
    for (int r = 0; r < 2 * K; r++) {
        for (int k = 0; k < K; k++)
            a[r * K + k] = k == r % K ? dt_f32_to_e4m3(1.0f) : 0;
        sa[r] = 127;
    }
    for (int i = 0; i < E * N * K / 2; i++)
        w[i] = hash8((unsigned)i);
    for (int i = 0; i < E * N * K / 32; i++)
        sw[i] = (uint8_t)(LO + hash8((unsigned)i * 3 + 1) % (HI - LO + 1));
    for (int e = 0; e < E; e += 2) /* the coverage this gives */
        for (int n = 0; n < N; n++)
            for (int k = 0; k < K; k++) {
                int64_t at = ((int64_t)e * N + n) * K + k;
                seen[k % 2][w[at / 2] >> (k % 2 * 4) & 15][sw[at / 32]] = 1;
            }
    int missing = 0;
    for (int h = 0; h < 2; h++)
        for (int nib = 0; nib < 16; nib++)
            for (int b = LO; b <= HI; b++)
                missing += !seen[h][nib][b];
    CHECKF(missing == 0, "%d (half, nibble, exponent) combinations not covered", missing);
    const char *targets[4] = {NULL, "sm_90a"};
    int nt = 2 + jit_targets(targets + 2);
    for (int t = 0; t < nt; t++) {
        memset(c, 0xff, sizeof c);
        Sets st;
        void *args[7] = {a, sa, cnt, off, w, sw, c};
        CHECK(run(PLAIN, sets_of(&st, E, "N", N, K, "16"), 4, targets[t], args, 2 * K));
        int bad = 0;
        for (int e = 0; e < E; e++)
            for (int k = 0; k < cnt[e]; k++)
                for (int n = 0; n < N; n++) {
                    int64_t at = ((int64_t)e * N + n) * K + k;
                    float want = ref_e2m1_nibble(w[at / 2] >> (k % 2 * 4)) * ldexpf(1, sw[at / 32] - 127);
                    float got = dt_bf16_to_f32(c[(off[e] + k) * N + n]);
                    if (got != want && bad++ < 4)
                        printf("  %s: expert %d, n %d, k %d: %g, want %g\n", name_of(targets[t]), e, n, k, got, want);
                }
        CHECKF(bad == 0, "%s: %d of %d weights unpacked wrongly", name_of(targets[t]), bad, 2 * K * N);
    }
}

/* The SwiGLU epilogue's FP8 re-quantisation (§3.5 step 9, §2.2), bit for
 * bit against the reference on the same values: activations and weights
 * from short grids keep every GEMM sum exact in f32, so the kernel's gate
 * and up are the reference's.  Only silu(g)·u·w is computed differently
 * (f32 against double); where the reference's h lies within 2^-17 of a
 * bf16 rounding midpoint the two may round apart, and only there a code
 * may differ, by one step.  Every scale and every other code is equal. */
TEST(swiglu_requant_bit_exact)
{
    enum { E = 4, I = 256, K = 256, R = 6 };
    static const int counts[E] = {3, 0, 2, 1};
    static const float agrid[8] = {0, 0.5f, 1, 1.5f, 2, -1, -2, -0.5f};
    static uint8_t a[R * K], sa[R * K / 128], w[E * 2 * I * K / 2], sw[E * 2 * I * K / 32];
    static uint8_t q[R * I], s[R * I / 128];
    float rw[R], qr[I], sr[I / 128];
    int32_t cnt[E], off[E];
    for (int e = 0, r = 0; e < E; r += counts[e], e++)
        cnt[e] = counts[e], off[e] = r;
    for (int i = 0; i < R * K; i++)
        a[i] = dt_f32_to_e4m3(agrid[hash8((unsigned)i + 7) % 8] * (float)(1 + i % 3));
    for (int i = 0; i < R * K / 128; i++)
        sa[i] = (uint8_t)(126 + i % 3);
    for (int i = 0; i < E * 2 * I * K / 2; i++)
        w[i] = hash8((unsigned)i * 5 + 3);
    for (int i = 0; i < E * 2 * I * K / 32; i++)
        sw[i] = (uint8_t)(124 + hash8((unsigned)i) % 3);
    for (int r = 0; r < R; r++)
        rw[r] = 0.2f + 0.17f * (float)r;
    const char *targets[4] = {NULL, "sm_90a"};
    int nt = 2 + jit_targets(targets + 2);
    for (int t = 0; t < nt; t++) {
        memset(q, 0xff, sizeof q);
        memset(s, 0xff, sizeof s);
        Sets st;
        void *args[9] = {a, sa, cnt, off, w, sw, rw, q, s};
        CHECK(run(FUSED, sets_of(&st, E, "I", I, K, "4"), 4, targets[t], args, R));
        int codes = 0, near = 0, ambiguous = 0, scales = 0, clamped = 0;
        for (int e = 0; e < E; e++)
            for (int r = off[e]; r < off[e] + cnt[e]; r++) {
                const uint8_t *we = w + (int64_t)e * 2 * I * K / 2, *se = sw + (int64_t)e * 2 * I * K / 32;
                float gu[2 * I];
                ref_fp4_gemm_row(2 * I, K, a + r * K, sa + r * K / 128, we, se, gu);
                ref_moe_swiglu_row(I, K, a + r * K, sa + r * K / 128, we, se, rw[r], 10, qr, sr);
                for (int n = 0; n < I; n++) {
                    double h = silu_clamped(gu[n], gu[I + n], rw[r]);
                    double mid = ref_round_bf16((float)h) + copysign(ulp_of((float)h, 7) / 2, h - ref_round_bf16((float)h));
                    bool amb = fabs(h - mid) <= fabs(h) * 0x1p-17;
                    float got = dt_e4m3_to_f32(q[r * I + n]);
                    clamped += gu[n] > 10 || fabsf(gu[I + n]) > 10;
                    ambiguous += amb;
                    codes += got == qr[n];
                    near += amb && fabsf(got - qr[n]) <= ulp_of(qr[n], 3);
                }
                for (int b = 0; b < I / 128; b++)
                    scales += dt_e8m0_to_f32(s[r * (I / 128) + b]) == sr[b];
            }
        int total = R * I;
        CHECKF(scales == R * (I / 128) && codes + near >= total && codes >= total - ambiguous,
               "%s: %d of %d scales and %d of %d codes equal (%d within one step where h is ambiguous, %d such)",
               name_of(targets[t]), scales, R * (I / 128), codes, total, near, ambiguous);
        CHECKF(clamped > total / 20, "only %d of %d gates or ups pass the clamp", clamped, total);
        if (getenv("MOE_VERBOSE"))
            printf("  %s: %d/%d codes, %d ambiguous, %d clamped\n", name_of(targets[t]), codes, total, ambiguous, clamped);
    }
}

/* ---------------------------------------------------------- GEMMs */

/* Small shapes on the interpreter and the sm_90a lowering in SIMT mode
 * (which also watches for races): 3 rows over 2 of 4 experts, row tiles of
 * 4 (the GPU's plain path) and 16 (mma.sync tensor cores); the fused kernel's
 * re-quantisation is also checked on the plain kernel's gate and up; and
 * tiles of 64 rows, which sm_90a runs as wgmma. */
TEST(small_shapes_interp_and_simt)
{
    static const int counts[4] = {2, 0, 1, 0};
    Moe m = moe_new(4, 256, 256, counts, 3);
    const char *bms[3] = {"4", "16", "64"}, *targets[2] = {NULL, "sm_90a"}; /* 64: wgmma on sm_90a */
    for (int b = 0; b < 3; b++)
        for (int t = 0; t < 2; t++) {
            uint16_t *gu;
            TIMED(gu = check_plain(targets[t], &m, bms[b]));
            TIMED(check_fused(targets[t], &m, bms[b], gu));
            free(gu);
        }
    /* one scaled T.gemm over K, in the interpreter (on sm_90a its
     * dequantised f32 tiles would not fit shared memory) */
    more = (FeSet){"BK", "256"};
    check_plain_only(NULL, &m, "4");
    check_fused(NULL, &m, "16", NULL);
    more = (FeSet){0};
    moe_free(&m);
}

/* v4-mini (16 experts, d 512, inter 256) at decode on the JIT: 7 rows over
 * 4 experts. */
TEST(v4_mini_decode_jit)
{
    static const int counts[16] = {0, 0, 3, 0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 1};
    const char *targets[2];
    int n = jit_targets(targets);
    Moe down = moe_new(16, 512, 256, counts, 3);   /* GEMM 2: inter → d */
    Moe up = moe_new(16, 512, 512, counts, 5);     /* GEMM 1: d → 2·inter */
    for (int t = 0; t < n; t++) {
        check_plain_only(targets[t], &down, "4");
        check_plain_only(targets[t], &down, "16");
        check_fused(targets[t], &up, "8", NULL);
    }
    moe_free(&down);
    moe_free(&up);
}

/* The grid is sized by the bound on row tiles; these reach it exactly:
 * one row per expert (decode's worst case), and 17 rows each (two tiles
 * per expert, the second with one row). */
TEST(tile_schedule_at_its_bound)
{
    static int single[16], seventeen[16];
    for (int e = 0; e < 16; e++)
        single[e] = 1, seventeen[e] = 17;
    const char *targets[2];
    int n = jit_targets(targets);
    Moe one = moe_new(16, 256, 256, single, 19), two = moe_new(16, 256, 256, seventeen, 23);
    for (int t = 0; t < n; t++) {
        check_plain_only(targets[t], &one, "16");
        uint16_t *gu = check_plain(targets[t], &two, "16");
        check_fused(targets[t], &two, "16", gu);
        free(gu);
    }
    check_plain_only(NULL, &one, "4");
    moe_free(&one);
    moe_free(&two);
}

/* Experts' rows need not be back to back: with each expert starting at a
 * multiple of 32 (a padded, aligned layout), the rows between them are
 * neither read into any result nor written. */
TEST(aligned_expert_offsets)
{
    static const int counts[6] = {5, 0, 33, 1, 0, 2};
    const char *targets[3] = {NULL};
    int n = 1 + jit_targets(targets + 1);
    Moe plain = moe_new_aligned(6, 256, 256, counts, 32, 29), fused = moe_new_aligned(6, 256, 256, counts, 32, 31);
    for (int t = 0; t < n; t++) {
        check_plain_only(targets[t], &plain, "16");
        check_fused(targets[t], &fused, "8", NULL);
        more = (FeSet){"BK", "256"}; /* one scaled T.gemm over K */
        check_plain_only(targets[t], &plain, "16");
        check_fused(targets[t], &fused, "8", NULL);
        more = (FeSet){0};
    }
    moe_free(&plain);
    moe_free(&fused);
}

/* Flash (d 4096, inter 2048, 256 experts) at decode on the JIT: 16 rows
 * over 5 experts, 18 over 3 for GEMM 1 (with 16-row tiles, 6-row bands
 * and every count of rows left after them, 1 to 5), and one row. */
TEST(flash_decode_jit)
{
    static int counts[256], three[256], one[256];
    counts[3] = 6, counts[17] = 1, counts[100] = 4, counts[101] = 2, counts[255] = 3;
    three[0] = 11, three[128] = 1, three[255] = 6;
    one[200] = 1;
    const char *targets[2];
    int n = jit_targets(targets);
    Moe down = moe_new(256, 4096, 2048, counts, 7), up = moe_new(256, 4096, 4096, three, 9);
    Moe down1 = moe_new(256, 4096, 2048, one, 11);
    for (int t = 0; t < n; t++) {
        TIMED(check_plain_only(targets[t], &down, "16"));
        TIMED(check_fused(targets[t], &up, "16", NULL));
        TIMED(check_plain_only(targets[t], &down1, "4"));
        /* decode's tiles: 4 rows (variants of 1 to 3), 32 weight rows per K step */
        more = (FeSet){"BN", "32"};
        TIMED(check_plain_only(targets[t], &down, "4"));
        more = (FeSet){"BS", "32"};
        TIMED(check_fused(targets[t], &up, "4", NULL));
        /* all of K in one scaled T.gemm per step (promoted in the dot
         * tiles): 16 rows, 4, and one */
        more = (FeSet){"BK", "2048"};
        TIMED(check_plain_only(targets[t], &down, "16"));
        TIMED(check_plain_only(targets[t], &down, "4"));
        TIMED(check_plain_only(targets[t], &down1, "4"));
        more = (FeSet){"BK", "4096"};
        TIMED(check_fused(targets[t], &up, "16", NULL));
        more = (FeSet){0};
    }
    moe_free(&down); moe_free(&up); moe_free(&down1);
}

/* A prefill of 2048 routed rows with Flash's GEMM 1 shapes (K = d 4096,
 * w13 of 2 x inter 2048 rows), 8 experts (four empty, one with a single
 * row), on the best JIT target: moe_expert_gemm gives the gate and up
 * values, moe_gemm_swiglu their SwiGLU re-quantised, checked against the
 * reference on those same values. */
TEST(flash_prefill_jit)
{
    static const int counts[8] = {1200, 0, 1, 0, 718, 0, 129, 0};
    const char *targets[2];
    if (!jit_targets(targets))
        return;
    Moe m;
    TIMED(m = moe_new(8, 4096, 4096, counts, 17));
    uint16_t *gu;
    TIMED(gu = check_plain(targets[0], &m, "64"));
    TIMED(check_fused(targets[0], &m, "64", gu));
    free(gu);
    moe_free(&m);
}

/* ----------------------------------------------------------- bad input */

static void expect_error(const char *spec, const char *name, const char *value, const char *want)
{
    FeSet set = {name, value};
    Diag d = {0};
    Kernel *k = fe_load(spec, &set, 1, &d);
    CHECKF(k == NULL, "%s with %s=%s accepted", spec, name, value);
    ir_kernel_free(k);
    char got[1024] = "";
    FILE *f = fmemopen(got, sizeof got, "w");
    diag_print(&d, f);
    fclose(f);
    CHECKF(!strcmp(got, want), "%s=%s\n    got:  %s    want: %s", name, value, got, want);
}

TEST(bad_shapes_are_one_line_errors)
{
    expect_error(PLAIN, "K", "127",
                 PLAIN ":29: moe_expert_gemm: K = 127 is odd, but packed fp4 weights hold two elements per byte\n");
    expect_error(FUSED, "K", "4094",
                 FUSED ":26: moe_gemm_swiglu: K = 4094 is not a multiple of the fp4 weight scale block (32)\n");
    expect_error(PLAIN, "K", "96",
                 PLAIN ":29: moe_expert_gemm: K = 96 is not a multiple of the activation scale block (128)\n");
    expect_error(FUSED, "I", "200",
                 FUSED ":27: moe_gemm_swiglu: inter = 200 is not a multiple of the output scale block (128) "
                 "(hint: the scales s[R, inter/128] must cover whole blocks)\n");
    expect_error(PLAIN, "N", "200", PLAIN ":30: moe_expert_gemm: N = 200 is not a multiple of the tile BN = 128\n");
}

int main(void)
{
    TIMED(RUN(fp4_unpack_bit_exact));
    TIMED(RUN(swiglu_requant_bit_exact));
    TIMED(RUN(small_shapes_interp_and_simt));
    TIMED(RUN(v4_mini_decode_jit));
    TIMED(RUN(tile_schedule_at_its_bound));
    TIMED(RUN(aligned_expert_offsets));
    TIMED(RUN(flash_decode_jit));
    TIMED(RUN(flash_prefill_jit));
    TIMED(RUN(bad_shapes_are_one_line_errors));
    return test_summary();
}
