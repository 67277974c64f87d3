/* test_attn_index.c — v4-spec §3.4 steps 9–11 (the [window | compressed]
 * index lists of SWA, CSA and HCA layers, prefill and decode) and §3.4.2
 * step 5 at Flash lengths (top-k of up to 262144 scores), bit for bit
 * against the plain-C references of ref/attn_index_ref.c; and the one-line
 * errors for lists the spec does not define. */
#include "frontend/frontend.h"
#include "ref/attn_index_ref.h"
#include "ref/ref.h"
#include "test.h"
#include "tests/harness/run.h"

#include <string.h>

/* ------------------------------------------------------------ executors */

/* One compiled kernel (tests/harness: ThKernel, on any executor) run with
 * the value of each dyn parameter given by name. */
static bool exec_run(const ThKernel *e, void *const *args, const char *const *names, const int64_t *values, int n)
{
    int64_t params[8] = {0};
    for (int i = 0; i < n; i++) {
        Param *p = ir_param_find(e->k, names[i]);
        if (p)
            params[p->index] = values[i];
    }
    return th_kernel_run(e, args, params, 2);
}

/* --------------------------------------------------------- index lists */

typedef struct Config {
    const char *name;
    int W, csa_ratio, hca_ratio, index_topk;
    int64_t max_seq;
} Config;

static const Config MINI = {"v4-mini", 32, 4, 16, 16, 4096};
static const Config FLASH = {"Flash", 128, 4, 128, 512, 1048576};

static const char *const KINDS[] = {"swa", "csa", "hca"};

/* The top-k rows a CSA list concatenates: offset block numbers, some −1. */
static void fake_topk(int64_t M, int kt, int offset, int32_t *topk)
{
    unsigned seed = 41;
    for (int64_t i = 0; i < M * kt; i++) {
        float r = test_rand(&seed);
        topk[i] = r < -0.8f ? -1 : offset + (int32_t)((r + 1.0f) * 5000.0f);
    }
}

/* One call: M queries from start_pos (prefill: 0) on a compiled kernel. */
static int check_call(ThKernel *e, const Config *c, int kind, bool decode, int kt, int64_t start_pos, int64_t M)
{
    RefAttnIndex a = {.kind = kind, .decode = decode, .W = c->W, .kt = kt, .s = M, .last = start_pos + M - 1};
    a.ratio = kind == REF_CSA ? c->csa_ratio : c->hca_ratio;
    int64_t L = ref_attn_index_width(&a);
    int32_t *topk = calloc((size_t)(M * kt + 1), 4), *got = malloc((size_t)(M * L) * 4), *want = malloc((size_t)L * 4);
    fake_topk(M, kt, decode ? c->W : (int)M, topk);
    memset(got, 0x5a, (size_t)(M * L) * 4);
    void *args_csa[2] = {topk, got}, *args[1] = {got};
    static const char *const names[] = {"M", "start_pos"};
    int64_t values[2] = {M, decode ? start_pos : 0};
    int bad = 0;
    if (!exec_run(e, kind == REF_CSA ? args_csa : args, names, values, 2))
        bad = 1;
    for (int64_t t = 0; !bad && t < M; t++) {
        int64_t p = decode ? start_pos + t : t;
        ref_attn_index(&a, p, topk + t * kt, want);
        for (int64_t i = 0; i < L; i++)
            if (got[t * L + i] != want[i] && bad++ < 3)
                printf("  %s %s %s on %s, start %lld M %lld: query %lld entry %lld = %d, want %d\n", c->name,
                       KINDS[kind], decode ? "decode" : "prefill", th_name(e->target), (long long)start_pos,
                       (long long)M, (long long)t, (long long)i, got[t * L + i], want[i]);
    }
    free(topk); free(got); free(want);
    return bad;
}

static bool open_index(ThKernel *e, const Config *c, int kind, bool decode, int kt, const char *target)
{
    char ws[16], rs[16], ks[16], ss[16];
    snprintf(ws, sizeof ws, "%d", c->W);
    snprintf(rs, sizeof rs, "%d", kind == REF_CSA ? c->csa_ratio : c->hca_ratio);
    snprintf(ks, sizeof ks, "%d", kt);
    snprintf(ss, sizeof ss, "%lld", (long long)c->max_seq);
    FeSet sets[] = {{"kind", KINDS[kind]}, {"mode", decode ? "decode" : "prefill"}, {"W", ws},
                    {"ratio", rs}, {"KT", ks}, {"S", ss}};
    return th_kernel_build_on(e, "kernels_src/attn_index.lua", sets, 6, target);
}

/* Prefill lengths around the window and block edges, decode positions near
 * 0, at block boundaries ((p+1) % ratio == 0), through ring wrap-arounds and
 * up to the cache's end.  `big`: also the long ones (JIT only). */
static void check_index_lists(const Config *c, const char *target, bool big)
{
    int W = c->W, r = c->hca_ratio;
    int64_t S = c->max_seq;
    const int64_t prefill[] = {1, 3, W - 1, W, W + 1, r - 1, r, r + 1, 2 * r, 5 * r + 3, 300};
    const int64_t prefill_big[] = {4 * W + 7, 4096};
    const int64_t decode[] = {0, 1, 2, W - 2, W - 1, W, W + 1, r - 1, r, 2 * r - 1, 2 * W + 5, 3 * W - 1, 1000};
    const int64_t decode_big[] = {S / 2 + 3, S - 2, S - 1};
    for (int kind = 0; kind < 3; kind++)
        for (int dec = 0; dec < 2; dec++) {
            int kt = kind == REF_CSA ? c->index_topk : 1;
            ThKernel e;
            if (!open_index(&e, c, kind, dec, kt, target)) {
                CHECK(false);
                th_kernel_free(&e);
                continue;
            }
            int bad = 0;
            if (!dec) {
                for (size_t i = 0; i < sizeof prefill / sizeof *prefill; i++)
                    bad += check_call(&e, c, kind, false, kt, 0, prefill[i]);
                for (size_t i = 0; big && i < sizeof prefill_big / sizeof *prefill_big; i++)
                    bad += check_call(&e, c, kind, false, kt, 0, prefill_big[i]);
            } else {
                for (size_t i = 0; i < sizeof decode / sizeof *decode; i++)
                    for (int64_t M = 1; M <= 3; M += 2)
                        bad += check_call(&e, c, kind, true, kt, decode[i], M);
                for (size_t i = 0; big && i < sizeof decode_big / sizeof *decode_big; i++)
                    bad += check_call(&e, c, kind, true, kt, decode_big[i], 1);
            }
            CHECKF(bad == 0, "%s %s %s on %s: %d wrong entries", c->name, KINDS[kind], dec ? "decode" : "prefill",
                   th_name(target), bad);
            th_kernel_free(&e);
        }
}

TEST(index_lists_v4_mini)
{
    const char *targets[] = {NULL, "sm_90a", "x86-avx512", "x86-avx2"};
    for (int t = 0; t < 4; t++)
        if (th_runs_here(targets[t]))
            check_index_lists(&MINI, targets[t], targets[t] && !ir_target(targets[t])->gpu_sm);
}

TEST(index_lists_flash)
{
    const char *targets[] = {NULL, "sm_90a", "x86-avx512", "x86-avx2"};
    for (int t = 0; t < 4; t++)
        if (th_runs_here(targets[t]))
            check_index_lists(&FLASH, targets[t], targets[t] && !ir_target(targets[t])->gpu_sm);
}

/* ---------------------------------------------------------------- top-k */

enum { ROW_UNIFORM, ROW_FEW_LEVELS, ROW_SIGNED_ZEROS, ROW_NEGATIVE, ROW_FEW_VISIBLE, ROW_NONE_VISIBLE,
       ROW_K_VISIBLE, ROW_INFINITE, NROWS };

/* One row per kind of input: uniform scores; 8 levels (ties everywhere,
 * the k-th inside a long run of equal values); k/2 positive scores, then
 * a run of −0 and +0 where the k-th falls; negative scores only, down to
 * denormals; the indexer's −inf mask (n ≥ (p+1)//4) leaving fewer than k,
 * none, or exactly k visible; +inf and −FLT_MAX scores. */
static void make_scores(int64_t N, int K, float *s)
{
    unsigned seed = 17;
    for (int row = 0; row < NROWS; row++) {
        float *x = s + (int64_t)row * N;
        for (int64_t n = 0; n < N; n++) {
            float u = test_rand(&seed);
            switch (row) {
            case ROW_FEW_LEVELS: x[n] = floorf(u * 4.0f) * 0.25f; break;
            case ROW_SIGNED_ZEROS:
                x[n] = n % (2 * N / K) == 0 ? 1.0f + fabsf(u) : n % 3 == 0 ? -0.0f : n % 3 == 1 ? 0.0f : -fabsf(u);
                break;
            case ROW_NEGATIVE: x[n] = n % 7 ? -fabsf(u) * (float)(1 + n % 5) : -1e-40f * (2.0f + u); break;
            case ROW_FEW_VISIBLE: x[n] = n < K / 3 ? u : -INFINITY; break;
            case ROW_NONE_VISIBLE: x[n] = -INFINITY; break;
            case ROW_K_VISIBLE: x[n] = n >= N - K ? u : -INFINITY; break;
            case ROW_INFINITE: x[n] = n % 97 == 0 ? INFINITY : n % 89 == 0 ? -3.4028235e38f : u; break;
            default: x[n] = u; break;
            }
        }
    }
}

/* Runs a top-k spec on the NROWS rows of make_scores: *scores gets them,
 * the result (NROWS x K) is returned; NULL where the build failed. */
static int32_t *run_topk(const char *spec, const char *target, const FeSet *sets, int nsets, int64_t N, int K,
                         float **scores)
{
    ThKernel e;
    if (!th_kernel_build_on(&e, spec, sets, nsets, target)) {
        CHECK(false);
        th_kernel_free(&e);
        return NULL;
    }
    float *s = malloc((size_t)(NROWS * N) * 4);
    int32_t *got = malloc((size_t)NROWS * K * 4);
    make_scores(N, K, s);
    memset(got, 0x5a, (size_t)NROWS * K * 4);
    void *args[2] = {s, got};
    static const char *const names[] = {"M"};
    int64_t M = NROWS;
    CHECK(exec_run(&e, args, names, &M, 1));
    th_kernel_free(&e);
    *scores = s;
    return got;
}

/* topk_long.lua against the sort: the same set, in position order. */
static void check_topk(const char *target, int64_t N, int K)
{
    char ns[16], ks[16];
    snprintf(ns, sizeof ns, "%lld", (long long)N);
    snprintf(ks, sizeof ks, "%d", K);
    FeSet sets[] = {{"N", ns}, {"K", ks}, {"offset", "128"}};
    float *s;
    int32_t *got = run_topk("kernels_src/topk_long.lua", target, sets, 3, N, K, &s), *want = malloc((size_t)K * 4);
    int bad = 0;
    for (int row = 0; got && row < NROWS; row++) {
        ref_topk_sorted(N, K, s + (int64_t)row * N, 128, want);
        for (int k = 0; k < K; k++)
            if (got[row * K + k] != want[k] && bad++ < 3)
                printf("  top-%d of %lld on %s, row %d: entry %d = %d, want %d\n", K, (long long)N, th_name(target),
                       row, k, got[row * K + k], want[k]);
    }
    CHECKF(bad == 0, "top-%d of %lld on %s: %d wrong", K, (long long)N, th_name(target), bad);
    if (got)
        free(s);
    free(got); free(want);
}

/* topk.lua (rows that fit one fragment, score order) against ref_topk:
 * the same entries in the same order, ties to the lower position, −1 past
 * the visible ones; blocks of blk scores, a last one partly past N. */
static void check_topk_sorted(const char *target, int64_t N, int K, const char *blk)
{
    char ns[16], ks[16];
    snprintf(ns, sizeof ns, "%lld", (long long)N);
    snprintf(ks, sizeof ks, "%d", K);
    FeSet sets[] = {{"N", ns}, {"K", ks}, {"offset", "128"}, {"BLK", blk}};
    float *s;
    int32_t *got = run_topk("kernels_src/topk.lua", target, sets, 4, N, K, &s), *want = malloc((size_t)K * 4);
    double *x = malloc((size_t)N * 8);
    int bad = 0;
    for (int row = 0; got && row < NROWS; row++) {
        for (int64_t n = 0; n < N; n++)
            x[n] = s[row * N + n];
        ref_topk((int)N, K, x, 128, want);
        for (int k = 0; k < K; k++)
            if (got[row * K + k] != want[k] && bad++ < 3)
                printf("  sorted top-%d of %lld (BLK %s) on %s, row %d: entry %d = %d, want %d\n", K, (long long)N,
                       blk, th_name(target), row, k, got[row * K + k], want[k]);
    }
    CHECKF(bad == 0, "sorted top-%d of %lld (BLK %s) on %s: %d wrong", K, (long long)N, blk, th_name(target), bad);
    if (got)
        free(s);
    free(got); free(want); free(x);
}

TEST(topk_sorted_on_every_executor)
{
    const char *targets[] = {NULL, "sm_90a", "x86-avx512", "x86-avx2"};
    for (int t = 0; t < 4; t++)
        if (th_runs_here(targets[t])) {
            check_topk_sorted(targets[t], 1000, 64, "32");
            check_topk_sorted(targets[t], 256, 256, "64");
            check_topk_sorted(targets[t], 100, 30, "16");
        }
    if (th_runs_here("x86-avx2"))
        check_topk_sorted("x86-avx2", 4096, 512, "32");
}

TEST(topk_small_on_every_executor)
{
    /* a row that is not whole tiles, and k = N */
    const char *targets[] = {NULL, "sm_90a", "x86-avx512", "x86-avx2"};
    for (int t = 0; t < 4; t++)
        if (th_runs_here(targets[t])) {
            check_topk(targets[t], 1000, 64);
            check_topk(targets[t], 256, 256);
        }
}

TEST(topk_flash_lengths)
{
    /* the indexer over 16K, 256K and 1M tokens' blocks, top-512 (Flash) and
     * top-1024 (Pro), on the JIT targets this CPU runs */
    const char *targets[] = {"x86-avx512", "x86-avx2"};
    for (int t = 0; t < 2; t++) {
        if (!th_runs_here(targets[t]))
            continue;
        check_topk(targets[t], 4096, 512);
        check_topk(targets[t], 4096, 1024);
        check_topk(targets[t], 5000, 1024);
        check_topk(targets[t], 65536, 512);
        check_topk(targets[t], 65536, 1024);
        check_topk(targets[t], 262144, 512);
        check_topk(targets[t], 262144, 1024);
    }
}

/* ------------------------------------------------------------ bad input */

static void expect_error(const char *spec, const FeSet *sets, int nsets, const char *want)
{
    char got[1024];
    CHECKF(th_load_fails(spec, sets, nsets, got, sizeof got), "%s loaded", spec);
    CHECKF(!strcmp(got, want), "\n    got:  %s    want: %s", got, want);
}

TEST(bad_input_is_one_line)
{
    FeSet topk[] = {{"N", "256"}, {"K", "512"}};
    expect_error("kernels_src/topk_long.lua", topk, 2,
                 "kernels_src/topk_long.lua:42: topk_long: k = 512 is larger than the 256 entries\n");
    FeSet hca[] = {{"kind", "hca"}, {"ratio", "8"}};
    expect_error("kernels_src/attn_index.lua", hca, 2,
                 "kernels_src/attn_index.lua:30: attn_index: HCA compresses by 128 (16 in v4-mini), not 8\n");
    FeSet csa[] = {{"kind", "csa"}, {"ratio", "16"}};
    expect_error("kernels_src/attn_index.lua", csa, 2, "kernels_src/attn_index.lua:33: attn_index: CSA compresses by 4, not 16\n");
    FeSet cache[] = {{"KT", "2048"}, {"S", "4096"}};
    expect_error("kernels_src/attn_index.lua", cache, 2,
                 "kernels_src/attn_index.lua:34: attn_index: a top-2048 is more than the 1024 compressed blocks "
                 "of a 4096-token cache\n");
    FeSet prefill[] = {{"mode", "prefill"}, {"start_pos", "7"}};
    expect_error("kernels_src/attn_index.lua", prefill, 2,
                 "kernels_src/attn_index.lua:39: attn_index: prefill starts at position 0 (its window indexes this "
                 "call's rows), not 7 (hint: continue a sequence with mode=decode)\n");
    FeSet longp[] = {{"mode", "prefill"}, {"kind", "swa"}, {"S", "4096"}, {"M", "5000"}};
    expect_error("kernels_src/attn_index.lua", longp, 4,
                 "kernels_src/attn_index.lua:45: attn_index: positions 0..4999 are beyond the 4096-token cache\n");
    FeSet beyond[] = {{"mode", "decode"}, {"kind", "swa"}, {"S", "4096"}, {"M", "2"}, {"start_pos", "4095"}};
    expect_error("kernels_src/attn_index.lua", beyond, 5,
                 "kernels_src/attn_index.lua:45: attn_index: positions 4095..4096 are beyond the 4096-token cache\n");
    FeSet early[] = {{"mode", "decode"}, {"KT", "512"}, {"M", "1"}, {"start_pos", "1000"}};
    expect_error("kernels_src/attn_index.lua", early, 4,
                 "kernels_src/attn_index.lua:47: attn_index: a top-512 is more than the 250 blocks visible at "
                 "position 1000 (hint: the indexer picks min(index_topk, visible blocks); before the first block, kind=swa)\n");
}

int main(void)
{
    RUN(index_lists_v4_mini);
    RUN(index_lists_flash);
    RUN(topk_sorted_on_every_executor);
    RUN(topk_small_on_every_executor);
    RUN(topk_flash_lengths);
    RUN(bad_input_is_one_line);
    return test_summary();
}
