/* test_moe.c — MoE dispatch and combine on one rank (v4-spec §3.5, issue 6)
 * against tests/ref/moe_ref.c: the layout (counts, offsets, rows, sources,
 * weights) and the FP8 gather bit for bit, the combine bit for bit against
 * the spec's expert-by-expert f32 sum (within a few ulps where a weight
 * multiplies).  Every kernel runs on the interpreter, the x86 JITs this CPU
 * runs and the sm_90a lowering in SIMT mode; Flash decode and a 2048-token
 * prefill on the JIT. */
#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "ref/moe_ref.h"
#include "ref/ref.h"
#include "test.h"
#include "tests/harness/run.h"

#include <float.h>
#include <string.h>

static const char *TARGETS[] = {NULL, "x86-avx512", "x86-avx2", "sm_90a"};
#define NTARGETS 4

static const char *name_of(const char *target) { return target ? target : "interp"; }



/* ------------------------------------------------------------ routings */

enum Routing {
    SPREAD,      /* k distinct experts per token, uniform: what the gate gives */
    ONE_HOT,     /* every token has expert E/2 (in a varying slot) */
    FEW,         /* only k + 1 experts, including 0 and E-1: the rest get no token */
    DUPLICATES,  /* a token may name an expert twice (a hash table could) */
    ALL_ONE,     /* every slot of every token names expert 1 */
    OUT_OF_RANGE /* some ids are -1, E or far outside: not routed */
};

static int rand_int(unsigned *seed, int n) { return (int)((test_rand(seed) + 1.0f) * 0.5f * (float)n) % n; }

static bool taken(const int32_t *row, int s, int32_t e)
{
    for (int i = 0; i < s; i++)
        if (row[i] == e)
            return true;
    return false;
}

static void make_routing(int T, int K, int E, enum Routing kind, unsigned seed, int32_t *idx, float *w)
{
    int32_t pool[16];
    for (int i = 0; i <= K; i++)
        pool[i] = i == K ? E - 1 : (int32_t)((int64_t)i * E / (K + 1));
    for (int t = 0; t < T; t++) {
        int32_t *r = idx + (int64_t)t * K;
        for (int s = 0; s < K; s++) {
            int32_t e;
            do {
                e = kind == FEW ? pool[rand_int(&seed, K + 1)] : kind == ALL_ONE ? 1 : rand_int(&seed, E);
            } while (kind != DUPLICATES && kind != ALL_ONE && taken(r, s, e));
            r[s] = e;
        }
        if (kind == ONE_HOT && !taken(r, K, E / 2))
            r[t % K] = E / 2;
        if (kind == OUT_OF_RANGE && t % 3 == 1)
            r[(t / 3) % K] = (t / 3) % 3 == 0 ? -1 : (t / 3) % 3 == 1 ? E : 1 << 30;
        for (int s = 0; s < K; s++)
            w[(int64_t)t * K + s] = 0.25f + 0.5f * (test_rand(&seed) + 1.0f);
    }
}

/* ------------------------------------------------------------ dispatch */

typedef struct Dispatch {
    int32_t *cnt, *base, *counts, *offsets, *row, *src;
    float *wr;
    uint8_t *xe, *se;
} Dispatch;

static Dispatch dispatch_new(int T, int K, int E, int D)
{
    int64_t nb = (T + 7) / 8, R = (int64_t)T * K; /* token blocks of 8 (moe_dispatch.lua's BT) */
    Dispatch o = {
        .cnt = malloc(nb * E * 4), .base = malloc(nb * E * 4), .counts = malloc(E * 4),
        .offsets = malloc((E + 1) * 4), .row = malloc(R * 4), .src = malloc(R * 4), .wr = malloc(R * 4),
        .xe = malloc(R * D), .se = malloc(R * D / 128),
    };
    return o;
}

static void dispatch_free(Dispatch *o)
{
    free(o->cnt); free(o->base); free(o->counts); free(o->offsets); free(o->row); free(o->src); free(o->wr);
    free(o->xe); free(o->se);
}

/* The four dispatch launches on target, every output poisoned first so an
 * element no kernel writes shows. */
static bool dispatch_run(const char *target, int T, int K, int E, int D, int32_t *idx, float *w, uint8_t *x,
                         uint8_t *xs, Dispatch *o)
{
    int64_t nb = (T + 7) / 8, R = (int64_t)T * K;
    memset(o->cnt, 0xab, nb * E * 4);
    memset(o->base, 0xab, nb * E * 4);
    memset(o->counts, 0xab, E * 4);
    memset(o->offsets, 0xab, (E + 1) * 4);
    memset(o->row, 0xab, R * 4);
    memset(o->src, 0xab, R * 4);
    memset(o->wr, 0xab, R * 4);
    memset(o->xe, 0xab, R * D);
    memset(o->se, 0xab, R * D / 128);
    char es[16], ks[16], ds[16];
    snprintf(es, sizeof es, "%d", E);
    snprintf(ks, sizeof ks, "%d", K);
    snprintf(ds, sizeof ds, "%d", D);
    FeSet layout[] = {{"E", es}, {"TOPK", ks}}, gather[] = {{"D", ds}, {"TOPK", ks}};
    int64_t params[1] = {T};
    void *count_args[] = {idx, o->cnt};
    void *offsets_args[] = {o->cnt, o->counts, o->offsets, o->base, o->src, o->wr};
    void *place_args[] = {idx, w, o->base, o->row, o->src, o->wr};
    void *gather_args[] = {o->src, x, xs, o->xe, o->se};
    return th_run("kernels_src/moe_count.lua", layout, 2, target, count_args, params, 2) &&
           th_run("kernels_src/moe_offsets.lua", layout, 2, target, offsets_args, params, 2) &&
           th_run("kernels_src/moe_place.lua", layout, 2, target, place_args, params, 2) &&
           th_run("kernels_src/moe_gather.lua", gather, 2, target, gather_args, params, 2);
}

static int diff_i32(const char *what, const int32_t *got, const int32_t *want, int64_t n)
{
    int bad = 0;
    for (int64_t i = 0; i < n; i++)
        if (got[i] != want[i] && bad++ < 3)
            printf("  %s[%lld] = %d, want %d\n", what, (long long)i, got[i], want[i]);
    return bad;
}

static int diff_bytes(const char *what, const uint8_t *got, const uint8_t *want, int64_t n)
{
    int bad = 0;
    for (int64_t i = 0; i < n; i++)
        if (got[i] != want[i] && bad++ < 3)
            printf("  %s[%lld] = 0x%02x, want 0x%02x\n", what, (long long)i, got[i], want[i]);
    return bad;
}

/* Random bytes: every e4m3 code but 0xff, every UE8M0 byte.  The copies
 * widen to f32 and round back (ir.h's value semantics), which keeps every
 * code except the sign of e4m3's NaN: 0xff arrives as 0x7f. */
static void make_activations(int T, int D, unsigned seed, uint8_t *x, uint8_t *xs)
{
    for (int64_t i = 0; i < (int64_t)T * D; i++) {
        uint8_t b = (uint8_t)rand_int(&seed, 256);
        x[i] = b == 0xff ? 0x7f : b;
    }
    for (int64_t i = 0; i < (int64_t)T * D / 128; i++)
        xs[i] = (uint8_t)rand_int(&seed, 256);
}

/* Dispatch T tokens (routing `kind`) on target; everything bit for bit
 * against the reference.  Returns the number of mismatches. */
static int check_dispatch(const char *target, int T, int K, int E, int D, enum Routing kind)
{
    int64_t R = (int64_t)T * K;
    int32_t *idx = malloc(R * 4), *counts = malloc(E * 4), *offsets = malloc((E + 1) * 4);
    int32_t *row = malloc(R * 4), *src = malloc(R * 4);
    float *w = malloc(R * 4), *wr = malloc(R * 4);
    uint8_t *x = malloc((size_t)T * D), *xs = malloc((size_t)T * D / 128);
    uint8_t *xe = malloc(R * D), *se = malloc(R * D / 128);
    make_routing(T, K, E, kind, 11u + (unsigned)T, idx, w);
    make_activations(T, D, 13u + (unsigned)T, x, xs);
    ref_moe_layout(T, K, E, idx, w, counts, offsets, row, src, wr);
    ref_moe_gather((int)R, (size_t)D, src, x, xe);
    ref_moe_gather((int)R, (size_t)D / 128, src, xs, se);
    Dispatch o = dispatch_new(T, K, E, D);
    int bad = 0;
    if (!dispatch_run(target, T, K, E, D, idx, w, x, xs, &o)) {
        bad = 1;
    } else {
        bad += diff_i32("counts", o.counts, counts, E);
        bad += diff_i32("offsets", o.offsets, offsets, E + 1);
        bad += diff_i32("row", o.row, row, R);
        bad += diff_i32("src", o.src, src, R);
        bad += diff_bytes("wr", (uint8_t *)o.wr, (uint8_t *)wr, R * 4);
        bad += diff_bytes("xe", o.xe, xe, R * D);
        bad += diff_bytes("se", o.se, se, R * D / 128);
    }
    if (bad)
        printf("  dispatch T=%d k=%d E=%d D=%d routing %d on %s: %d mismatches\n", T, K, E, D, kind,
               name_of(target), bad);
    dispatch_free(&o);
    free(idx); free(counts); free(offsets); free(row); free(src); free(w); free(wr);
    free(x); free(xs); free(xe); free(se);
    return bad;
}

TEST(dispatch_layout_and_gather_bit_exact)
{
    /* v4-mini (16 experts, top-4, d 512) and Flash's 256 experts, top-6
     * (d 256 here; d 4096 below) */
    for (int t = 0; t < NTARGETS; t++) {
        if (!th_runs_here(TARGETS[t]))
            continue;
        CHECK(check_dispatch(TARGETS[t], 5, 4, 16, 512, SPREAD) == 0);
        CHECK(check_dispatch(TARGETS[t], 1, 4, 16, 512, SPREAD) == 0);
        CHECK(check_dispatch(TARGETS[t], 11, 6, 256, 256, FEW) == 0);
    }
}

TEST(dispatch_edge_routings)
{
    for (int t = 0; t < NTARGETS; t++) {
        if (!th_runs_here(TARGETS[t]))
            continue;
        CHECK(check_dispatch(TARGETS[t], 9, 4, 16, 128, ONE_HOT) == 0);
        CHECK(check_dispatch(TARGETS[t], 17, 4, 16, 128, FEW) == 0);
        CHECK(check_dispatch(TARGETS[t], 9, 4, 16, 128, DUPLICATES) == 0);
        CHECK(check_dispatch(TARGETS[t], 13, 4, 16, 128, ALL_ONE) == 0);
        CHECK(check_dispatch(TARGETS[t], 10, 4, 16, 128, OUT_OF_RANGE) == 0);
        CHECK(check_dispatch(TARGETS[t], 6, 4, 4, 128, SPREAD) == 0);   /* k = E: every expert, every token */
        CHECK(check_dispatch(TARGETS[t], 150, 4, 16, 128, FEW) == 0);   /* 19 token blocks: moe_offsets' tiles of 16 and a tail */
    }
}

TEST(dispatch_flash_decode_and_prefill)
{
    const char *jit = ir_host_target()->name;
    for (int T = 1; T <= 16; T += 5)
        CHECK(check_dispatch(jit, T, 6, 256, 4096, SPREAD) == 0);
    CHECK(check_dispatch(jit, 16, 6, 256, 4096, ONE_HOT) == 0);
    CHECK(check_dispatch(jit, 2048, 6, 256, 4096, SPREAD) == 0);
    CHECK(check_dispatch(jit, 2048, 6, 256, 4096, FEW) == 0);
    CHECK(check_dispatch(jit, 2048, 6, 256, 128, ALL_ONE) == 0);
    CHECK(check_dispatch("sm_90a", 3, 6, 256, 4096, SPREAD) == 0);
}

/* An id outside [0, E) cannot stop a kernel: the pair is not routed (row
 * -1), and offsets[E] < T·k is how the caller finds out. */
TEST(out_of_range_ids_are_not_routed)
{
    const int T = 12, K = 4, E = 16, D = 128, R = T * K;
    int32_t idx[12 * 4];
    float w[12 * 4];
    uint8_t x[12 * 128], xs[12];
    make_routing(T, K, E, OUT_OF_RANGE, 3, idx, w);
    make_activations(T, D, 5, x, xs);
    int nbad = 0;
    for (int i = 0; i < R; i++)
        nbad += idx[i] < 0 || idx[i] >= E;
    CHECK(nbad == 4);
    const char *targets[] = {NULL, ir_host_target()->name, "sm_90a"};
    for (int t = 0; t < 3; t++) {
        Dispatch o = dispatch_new(T, K, E, D);
        CHECK(dispatch_run(targets[t], T, K, E, D, idx, w, x, xs, &o));
        CHECKF(o.offsets[E] == R - nbad, "%s: offsets[E] = %d", name_of(targets[t]), o.offsets[E]);
        for (int i = 0; i < R; i++)
            if (idx[i] < 0 || idx[i] >= E)
                CHECKF(o.row[i] == -1, "%s: id %d got row %d", name_of(targets[t]), idx[i], o.row[i]);
        for (int r = R - nbad; r < R; r++)
            CHECK(o.src[r] == -1 && o.wr[r] == 0 && o.xe[(int64_t)r * D] == 0);
        dispatch_free(&o);
    }
}

/* ------------------------------------------------------------- combine */

typedef struct Combine {
    bool weighted, shared, bf16_out;
} Combine;

/* Combine T tokens' expert rows (routing `kind`, laid out by the
 * reference) on target against the spec's expert-by-expert f32 sum: bit
 * for bit when unweighted, within a few f32 roundings of Σ|terms| when a
 * weight multiplies (a target may fuse the multiply-add); a bf16 output
 * within one bf16 rounding of that.  Returns the number of mismatches. */
static int check_combine(const char *target, int T, int K, int E, int D, enum Routing kind, Combine c)
{
    int64_t R = (int64_t)T * K, TD = (int64_t)T * D;
    int32_t *idx = malloc(R * 4), *counts = malloc(E * 4), *offsets = malloc((E + 1) * 4);
    int32_t *row = malloc(R * 4), *src = malloc(R * 4);
    float *w = malloc(R * 4), *wr = malloc(R * 4), *yf = malloc(R * D * 4), *shf = malloc(TD * 4);
    float *want = malloc(TD * 4), *mag = malloc(TD * 4), *got = malloc(TD * 4);
    uint16_t *y = malloc(R * D * 2), *sh = malloc(TD * 2);
    void *out = malloc(TD * 4);
    unsigned seed = 17u + (unsigned)T;
    make_routing(T, K, E, kind, seed, idx, w);
    ref_moe_layout(T, K, E, idx, w, counts, offsets, row, src, wr);
    for (int64_t i = 0; i < R * D; i++) { /* magnitudes 2^-12..2^12: the f32 sum rounds, so order shows */
        y[i] = dt_f32_to_bf16(ldexpf(test_rand(&seed), rand_int(&seed, 25) - 12));
        yf[i] = dt_bf16_to_f32(y[i]);
    }
    for (int64_t i = 0; i < TD; i++) {
        sh[i] = dt_f32_to_bf16(test_rand(&seed));
        shf[i] = dt_bf16_to_f32(sh[i]);
    }
    ref_moe_combine(T, K, E, D, idx, row, c.weighted ? w : NULL, yf, c.shared ? shf : NULL, want);
    if (c.weighted) { /* the size of the terms, for the tolerance */
        for (int64_t i = 0; i < R * D; i++)
            yf[i] = fabsf(yf[i]);
        for (int64_t i = 0; i < TD; i++)
            shf[i] = fabsf(shf[i]);
        ref_moe_combine(T, K, E, D, idx, row, w, yf, c.shared ? shf : NULL, mag);
    }
    char ds[16], ks[16];
    snprintf(ds, sizeof ds, "%d", D);
    snprintf(ks, sizeof ks, "%d", K);
    FeSet sets[] = {{"D", ds}, {"TOPK", ks}, {"weighted", c.weighted ? "yes" : "no"},
                    {"shared", c.shared ? "add" : "none"}, {"out_dtype", c.bf16_out ? "bf16" : "f32"}};
    void *args[5];
    int n = 0;
    args[n++] = row;
    args[n++] = w;
    args[n++] = y;
    if (c.shared)
        args[n++] = sh;
    args[n++] = out;
    memset(out, 0xab, TD * 4);
    int64_t params[1] = {T};
    bool ran = th_run("kernels_src/moe_combine.lua", sets, 5, target, args, params, 2);
    int bad = !ran;
    for (int64_t i = 0; ran && i < TD; i++)
        got[i] = c.bf16_out ? dt_bf16_to_f32(((uint16_t *)out)[i]) : ((float *)out)[i];
    for (int64_t i = 0; ran && i < TD; i++) {
        float tol = c.weighted ? 8 * FLT_EPSILON * mag[i] : 0;
        float lo = want[i] - tol, hi = want[i] + tol;
        if (c.bf16_out) {
            lo = ref_round_bf16(lo);
            hi = ref_round_bf16(hi);
        }
        if (!(got[i] >= lo && got[i] <= hi) && bad++ < 3)
            printf("  out[%lld] = %.9g, want %.9g (tolerance %g)\n", (long long)i, got[i], want[i], tol);
    }
    if (bad)
        printf("  combine T=%d k=%d D=%d routing %d weighted %d shared %d bf16 %d on %s: %d mismatches\n", T, K,
               D, kind, c.weighted, c.shared, c.bf16_out, name_of(target), bad);
    free(idx); free(counts); free(offsets); free(row); free(src); free(w); free(wr); free(yf); free(shf);
    free(want); free(mag); free(got); free(y); free(sh); free(out);
    return bad;
}

static const Combine V4 = {false, false, false};       /* the routed sum, f32 */
static const Combine V4_OUT = {false, true, true};     /* + shared expert, bf16: the layer's output */
static const Combine WEIGHTED = {true, false, false};

TEST(combine_against_the_spec_sum)
{
    for (int t = 0; t < NTARGETS; t++) {
        if (!th_runs_here(TARGETS[t]))
            continue;
        CHECK(check_combine(TARGETS[t], 5, 4, 16, 512, SPREAD, V4) == 0);     /* v4-mini */
        CHECK(check_combine(TARGETS[t], 1, 4, 16, 512, SPREAD, V4_OUT) == 0);
        CHECK(check_combine(TARGETS[t], 7, 4, 16, 512, OUT_OF_RANGE, WEIGHTED) == 0);
        CHECK(check_combine(TARGETS[t], 6, 4, 16, 512, DUPLICATES, (Combine){true, true, false}) == 0);
        CHECK(check_combine(TARGETS[t], 9, 4, 16, 512, ONE_HOT, (Combine){false, false, true}) == 0);
    }
}

TEST(combine_flash_decode_and_prefill)
{
    const char *jit = ir_host_target()->name;
    for (int T = 1; T <= 16; T += 5) {
        CHECK(check_combine(jit, T, 6, 256, 4096, SPREAD, V4) == 0);
        CHECK(check_combine(jit, T, 6, 256, 4096, SPREAD, V4_OUT) == 0);
    }
    CHECK(check_combine(jit, 16, 6, 256, 4096, FEW, WEIGHTED) == 0);
    CHECK(check_combine(jit, 2048, 6, 256, 4096, SPREAD, V4) == 0);
    CHECK(check_combine("sm_90a", 2, 6, 256, 4096, SPREAD, V4_OUT) == 0);
}

/* ----------------------------------------------------------- bad input */

/* spec with sets must not load; its diagnostic is exactly `want`. */
static void expect_error(const char *spec, const FeSet *sets, int nsets, const char *want)
{
    char got[1024];
    CHECKF(th_load_fails(spec, sets, nsets, got, sizeof got), "%s loaded", spec);
    CHECKF(!strcmp(got, want), "\n    got:  %s    want: %s", got, want);
}

TEST(bad_shapes_are_one_line_errors)
{
    FeSet few[] = {{"E", "4"}};
    expect_error("kernels_src/moe_count.lua", few, 1,
                 "kernels_src/moe_count.lua:12: moe_count: top-k 6 is larger than the 4 experts\n");
    expect_error("kernels_src/moe_place.lua", few, 1,
                 "kernels_src/moe_place.lua:14: moe_place: top-k 6 is larger than the 4 experts\n");
    FeSet d200[] = {{"D", "200"}};
    expect_error("kernels_src/moe_gather.lua", d200, 1,
                 "kernels_src/moe_gather.lua:15: moe_gather: D = 200 is not a multiple of the scale block (128)\n");
    FeSet tile[] = {{"D", "512"}, {"BD", "1024"}};
    expect_error("kernels_src/moe_combine.lua", tile, 2,
                 "kernels_src/moe_combine.lua:25: moe_combine: D = 512 is not a multiple of the tile BD = 1024\n");
    FeSet huge[] = {{"M", "3000000"}};
    expect_error("kernels_src/moe_offsets.lua", huge, 1,
                 "kernels_src/moe_offsets.lua:23: moe_offsets: 3000000 tokens x top-6 = 18000000 rows; rows are "
                 "counted in f32, exact up to 16777216 (hint: dispatch the tokens in parts)\n");
}

int main(void)
{
    RUN(dispatch_layout_and_gather_bit_exact);
    RUN(dispatch_edge_routings);
    RUN(dispatch_flash_decode_and_prefill);
    RUN(out_of_range_ids_are_not_routed);
    RUN(combine_against_the_spec_sum);
    RUN(combine_flash_decode_and_prefill);
    RUN(bad_shapes_are_one_line_errors);
    return test_summary();
}
