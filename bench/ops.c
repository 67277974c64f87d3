/* bench/ops.c — every V4 operator in kernels_src/ at Flash decode shapes:
 * its median time and the memory bandwidth it reaches (bytes of its
 * arguments / time) as a fraction of this machine's copy bandwidth,
 * measured in the same run with memcpy over 512 MiB.
 *
 *   build/bench/bench_ops [--threads N] [--norm-only]
 * (--norm-only: just the last table, RMSNorm → FP8 fused against the pair;
 * before it, prefill ops whose large outputs are streamed, against the
 * same ops compiled to store them plainly)
 *
 * Small operators' arguments fit in the caches, so their fraction can pass
 * 1: read it as "not memory-bound"; the large ones (weights, KV) are the
 * honest bandwidth figures. */
#include "bench/peers.h"
#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "runtime/timing.h"

#include <stdlib.h>
#include <string.h>

typedef struct Op {
    const char *spec;
    const char *sets[8][2];
    int64_t m; /* the dyn token count (0: none) */
} Op;

/* Flash (v4-spec §1) decode: 16 tokens. */
static const Op ops[] = {
    {"kernels_src/act_quant.lua", {{"K", "4096"}}, 16},
    {"kernels_src/rmsnorm_quant.lua", {{"D", "4096"}}, 16},
    {"kernels_src/hc_pre.lua", {{"D", "4096"}}, 16},
    {"kernels_src/hc_post.lua", {{"D", "4096"}}, 16},
    {"kernels_src/hc_post_pre.lua", {{"D", "4096"}}, 16},
    {"kernels_src/hc_head.lua", {{"D", "4096"}}, 16},
    {"kernels_src/q_norm.lua", {{"H", "64"}, {"HD", "512"}}, 16},
    {"kernels_src/rope.lua", {{"H", "64"}, {"D", "512"}, {"P", "4096"}}, 16},
    {"kernels_src/kv_fp8_sim.lua", {{"D", "512"}}, 16},
    {"kernels_src/hadamard.lua", {{"N", "128"}}, 16 * 64},
    {"kernels_src/fp4_act_quant.lua", {{"K", "128"}}, 16 * 64},
    {"kernels_src/indexer_logits.lua", {{"N", "4096"}}, 16},
    {"kernels_src/topk.lua", {{"N", "4096"}, {"K", "512"}}, 16},
    {"kernels_src/sparse_attn.lua", {{"H", "64"}, {"D", "512"}, {"L", "640"}, {"NKV", "65664"}}, 16},
    {"kernels_src/grouped_oproj.lua", {{"G", "8"}, {"R", "1024"}, {"GD", "4096"}}, 16},
    /* the tiles fp8_gemm's choose picks at 16 rows (M is a run-time
     * scalar here, which choose cannot see): 32 weight rows per block, K
     * steps of 512 (tall dot tiles; 128 rows per block ran 30.9 against
     * 21.7 ms at 16) */
    {"kernels_src/fp8_gemm.lua", {{"N", "4096"}, {"K", "4096"}, {"BM", "16"}, {"BN", "32"}, {"BK", "512"}}, 16},
    {"kernels_src/moe_gate.lua", {{"D", "4096"}, {"E", "256"}}, 16},
    {"kernels_src/swiglu_quant.lua", {{"I", "2048"}}, 16 * 6},
    {"kernels_src/compress.lua", {{"T", "128"}, {"ratio", "4"}, {"D", "512"}}, 0},
    {"kernels_src/topk_long.lua", {{"N", "262144"}, {"K", "1024"}}, 16},
    /* a GEMV: 32 head rows per block, each read start to end (BK = D), as
     * bench_decode's bf16 rows (V 32768, one thread: 16.6 ms against 29 at
     * BV 256, BK 256) */
    {"kernels_src/lm_head.lua", {{"V", "129280"}, {"D", "4096"}, {"BM", "1"}, {"BV", "32"}, {"BK", "4096"}}, 1},
    {"kernels_src/moe_count.lua", {{"E", "256"}}, 16},
    {"kernels_src/moe_offsets.lua", {{"E", "256"}}, 16},
    {"kernels_src/moe_place.lua", {{"E", "256"}}, 16},
    {"kernels_src/moe_gather.lua", {{"D", "4096"}}, 16},
    /* the expert GEMMs: 16 tokens x top-6 rows over 8 experts (12 each), in
     * one 16-row tile per expert whose GEMMs compute its 12 rows (rows):
     * moe_gemm_swiglu 96 against 181 ms in 4-row tiles, moe_expert_gemm 46
     * against 67 */
    {"kernels_src/moe_gemm_swiglu.lua", {{"E", "8"}, {"I", "2048"}, {"K", "4096"}, {"BM", "16"}}, 16 * 6},
    {"kernels_src/moe_expert_gemm.lua", {{"E", "8"}, {"N", "4096"}, {"K", "2048"}, {"BM", "16"}}, 16 * 6},
    {"kernels_src/moe_combine.lua", {{"D", "4096"}, {"shared", "add"}, {"out_dtype", "bf16"}}, 16},
};


/* The compressors (v4-spec §3.4.1), one spec in several configurations, so
 * each row is labelled: the projections of 16 tokens (attention CSA reads
 * 2 x [1024, 4096] bf16 weights, HCA 2 x [512, 4096], the indexer's
 * 2 x [256, 4096]); one decode token at a block's last position (m is the
 * position: the step that pools the block and emits an entry); the fused
 * prefill of the 128 tokens compress.lua pools above.  The decode rows'
 * bytes count the whole cache [1024, 512] and cos/sin table they index. */
typedef struct Labelled {
    Op op;
    const char *label;
    int64_t tokens;
} Labelled;

static const Labelled compressors[] = {
    {{"kernels_src/compress_proj.lua", {{"d", "4096"}, {"D", "512"}, {"ratio", "4"}}, 16},
      "compress_proj attn CSA", 16},
    {{"kernels_src/compress_proj.lua", {{"d", "4096"}, {"D", "512"}, {"ratio", "128"}}, 16},
      "compress_proj attn HCA", 16},
    {{"kernels_src/compress_proj.lua", {{"d", "4096"}, {"D", "128"}, {"kind", "index"}}, 16},
      "compress_proj indexer", 16},
    {{"kernels_src/compress_decode.lua", {{"D", "512"}, {"ratio", "4"}}, 15}, "compress_decode attn CSA, emit", 1},
    {{"kernels_src/compress_decode.lua", {{"D", "512"}, {"ratio", "128"}}, 127}, "compress_decode attn HCA, emit", 1},
    {{"kernels_src/compress_decode.lua", {{"D", "128"}, {"kind", "index"}}, 15}, "compress_decode indexer, emit", 1},
    {{"kernels_src/compress_decode.lua", {{"D", "512"}, {"ratio", "4"}}, 14}, "compress_decode attn CSA, no emit", 1},
    {{"kernels_src/compress_prefill.lua", {{"D", "512"}, {"ratio", "4"}}, 128}, "compress_prefill attn CSA", 128},
};

/* The expert GEMMs take per-expert row counts and offsets (int32 [E], named
 * cnt and off): the m rows spread evenly, so every expert has work. */
static void spread_rows(const Kernel *k, int64_t m, void **args)
{
    int32_t *cnt = NULL, *off = NULL;
    int64_t E = 0;
    for (int i = 0; i < k->nargs; i++) {
        const Buffer *b = k->bufs[i];
        if (b->dtype != DT_I32 || b->rank != 1 || !ir_expr_is_const(b->shape[0], &E))
            continue;
        if (!strcmp(b->name, "cnt"))
            cnt = args[i];
        else if (!strcmp(b->name, "off"))
            off = args[i];
    }
    for (int64_t e = 0, at = 0; cnt && off && e < E; e++) {
        cnt[e] = (int32_t)(m / E + (e < m % E));
        off[e] = (int32_t)at;
        at += cnt[e];
    }
}

/* Arguments filled so every kernel runs meaningfully: small floats, scales
 * of 1 (e8m0 127), and index arguments of 0 (always in range). */
static size_t make_args(const Kernel *k, const int64_t *params, void **args)
{
    size_t total = 0;
    for (int i = 0; i < k->nargs; i++) {
        const Buffer *b = k->bufs[i];
        int64_t n = 1, dim;
        for (int d = 0; d < b->rank; d++) {
            ir_eval_int(b->shape[d], params, &dim);
            n *= dim;
        }
        size_t bytes = dt_storage_bytes(b->dtype, n);
        args[i] = aligned_alloc(64, (bytes + 127) / 64 * 64);
        memset(args[i], 0, bytes);
        if (dt_is_float(b->dtype))
            for (int64_t j = 0; j < n; j++)
                dt_store(b->dtype, args[i], j, b->dtype == DT_E8M0 ? 1.0 : (double)((j * 7) % 13) / 13 - 0.5);
        total += bytes;
    }
    return total;
}

/* One row: compile op for t, time 9 launches after a warm-up, print the
 * median under label (NULL: the spec's name) with `tokens` in that column. */
static bool bench_op(const Op *op, const char *label, int64_t tokens, const TargetInfo *t, int threads, double bw)
{
    const char *name = label ? label : op->spec + strlen("kernels_src/");
    FeSet sets[8];
    int nsets = 0;
    for (; nsets < 8 && op->sets[nsets][0]; nsets++)
        sets[nsets] = (FeSet){op->sets[nsets][0], op->sets[nsets][1]};
    Diag d = {0};
    Kernel *k = fe_load(op->spec, sets, nsets, &d);
    CgJit *j = NULL;
    if (!k || !pass_pipeline(k, t, NULL, &d) || !(j = cg_jit_compile(k, t, &d))) {
        printf("%-34s failed: ", name);
        diag_print(&d, stdout);
        ir_kernel_free(k);
        return false;
    }
    int64_t params[1] = {op->m};
    void *args[16];
    size_t bytes = make_args(k, params, args);
    spread_rows(k, op->m, args);
    double times[9];
    cg_launch(k, cg_jit_fn(j), args, params, threads, &d); /* warm up */
    for (int r = 0; r < 9; r++) {
        double t0 = rt_now();
        cg_launch(k, cg_jit_fn(j), args, params, threads, &d);
        times[r] = rt_now() - t0;
    }
    double med = rt_median(times, 9), gbs = (double)bytes / med * 1e-9;
    printf("%-34s %8lld %10.1f %9.1f %9.2f\n", name, (long long)tokens, med * 1e6, gbs, gbs / bw);
    for (int a = 0; a < k->nargs; a++)
        free(args[a]);
    cg_jit_free(j);
    ir_kernel_free(k);
    return true;
}

/* ------------------------------------------- fused against the pair */

typedef struct Built {
    Kernel *k;
    CgJit *j;
} Built;

static bool build(const char *spec, const FeSet *sets, int nsets, const TargetInfo *t, Built *b)
{
    Diag d = {0};
    b->j = NULL;
    b->k = fe_load(spec, sets, nsets, &d);
    if (b->k && pass_pipeline(b->k, t, NULL, &d) && (b->j = cg_jit_compile(b->k, t, &d)))
        return true;
    printf("%s failed: ", spec);
    diag_print(&d, stdout);
    return false;
}

static void unbuild(Built *b)
{
    cg_jit_free(b->j);
    ir_kernel_free(b->k);
}

/* Median of 9 runs of `n` launches in sequence (a kernel chain). */
static double time_chain(Built *const *ks, void **const *args, int n, const int64_t *params, int threads)
{
    Diag d = {0};
    double times[9];
    for (int r = -1; r < 9; r++) {
        double t0 = rt_now();
        for (int i = 0; i < n; i++)
            cg_launch(ks[i]->k, cg_jit_fn(ks[i]->j), args[i], params, threads, &d);
        if (r >= 0)
            times[r] = rt_now() - t0;
    }
    return rt_median(times, 9);
}

/* RMSNorm → FP8 quantisation (issue 3's fusion goal): rmsnorm_quant.lua,
 * fused by hand, and rmsnorm_fp8.lua, the two specs composed by T.compose
 * (neither stores the bf16 norm), each against rmsnorm.lua then
 * act_quant.lua, after checking that all three give the same bits; and
 * against the bandwidth bound of the traffic: x, w, q and s once each (the
 * kernels' two passes read x twice; at decode sizes the second read hits
 * the cache). */
static bool bench_fused_norm(const TargetInfo *t, int threads, double bw)
{
    static const int64_t rows[] = {16, 4096};
    const int64_t D = 4096;
    FeSet aq[] = {{"K", "4096"}};
    Built fused, composed, norm, quant;
    if (!build("kernels_src/rmsnorm_quant.lua", NULL, 0, t, &fused) ||
        !build("kernels_src/rmsnorm_fp8.lua", NULL, 0, t, &composed) ||
        !build("kernels_src/rmsnorm.lua", NULL, 0, t, &norm) || !build("kernels_src/act_quant.lua", aq, 1, t, &quant))
        return false;
    printf("\n%-34s %8s %10s %10s %7s %10s %8s\n", "RMSNorm -> FP8 (D 4096)", "tokens", "kernel_us", "pair_us",
           "pair/k", "bound_us", "of_bound");
    bool ok = true;
    for (int r = 0; r < 2 && ok; r++) {
        int64_t M = rows[r];
        size_t n = (size_t)(M * D);
        uint16_t *x = malloc(n * 2), *y = malloc(n * 2);
        uint8_t *q[3], *s[3];
        for (int i = 0; i < 3; i++) {
            q[i] = malloc(n);
            s[i] = malloc(n / 128);
        }
        float *w = malloc((size_t)D * 4);
        for (size_t i = 0; i < n; i++)
            x[i] = dt_f32_to_bf16((float)((i * 7919) % 1999) / 999.0f - 1.0f);
        for (int64_t i = 0; i < D; i++)
            w[i] = 0.5f + (float)(i % 17) / 17.0f;
        void *af[] = {x, w, q[0], s[0]}, *ac[] = {x, w, q[1], s[1]}, *an[] = {x, w, y}, *aq2[] = {y, q[2], s[2]};
        Built *one[] = {&fused}, *comp[] = {&composed}, *pair[] = {&norm, &quant};
        void **fa[] = {af}, **ca[] = {ac}, **pa[] = {an, aq2};
        int64_t params[1] = {M};
        double tf = time_chain(one, fa, 1, params, threads), tc = time_chain(comp, ca, 1, params, threads);
        double tp = time_chain(pair, pa, 2, params, threads);
        for (int i = 0; i < 2; i++)
            if (memcmp(q[i], q[2], n) || memcmp(s[i], s[2], n / 128)) {
                printf("%s and rmsnorm + act_quant differ at %lld tokens\n", i ? "rmsnorm_fp8" : "rmsnorm_quant",
                       (long long)M);
                ok = false;
            }
        double bytes = (double)n * 2 + (double)D * 4 + (double)n + (double)n / 128; /* x, w, q, s */
        double bound = bytes / (bw * 1e9);
        printf("%-34s %8lld %10.1f %10.1f %7.2f %10.1f %8.2f\n", "rmsnorm_quant (hand-fused) vs pair",
               (long long)M, tf * 1e6, tp * 1e6, tp / tf, bound * 1e6, bound / tf);
        printf("%-34s %8lld %10.1f %10.1f %7.2f %10.1f %8.2f\n", "rmsnorm_fp8 (T.compose) vs pair",
               (long long)M, tc * 1e6, tp * 1e6, tp / tc, bound * 1e6, bound / tc);
        free(x); free(y); free(w);
        for (int i = 0; i < 3; i++) {
            free(q[i]);
            free(s[i]);
        }
    }
    unbuild(&fused);
    unbuild(&composed);
    unbuild(&norm);
    unbuild(&quant);
    return ok;
}

/* ------------------------------------------- streamed write-once outputs */

/* Prefill-sized ops whose outputs (16 MiB and more) pass_stream marks:
 * each compiled twice, for the host target (streamed: non-temporal
 * stores) and for a copy whose stream_bytes no output reaches (plain),
 * timed in turns, their outputs compared byte for byte. */
static const Op streamed_ops[] = {
    {"kernels_src/rmsnorm.lua", {{"D", "4096"}}, 4096},
    {"kernels_src/act_quant.lua", {{"K", "4096"}}, 4096},
    {"kernels_src/rmsnorm_quant.lua", {{"D", "4096"}}, 4096},
    {"kernels_src/hc_post.lua", {{"D", "4096"}}, 4096},
};

static bool build_op(const Op *op, const TargetInfo *t, Built *b)
{
    FeSet sets[8];
    int nsets = 0;
    for (; nsets < 8 && op->sets[nsets][0]; nsets++)
        sets[nsets] = (FeSet){op->sets[nsets][0], op->sets[nsets][1]};
    return build(op->spec, sets, nsets, t, b);
}

static bool bench_streamed(const Op *op, const TargetInfo *t, int threads, double bw)
{
    TargetInfo plain_t = *t;
    plain_t.stream_bytes = INT64_MAX;
    Built streamed, plain;
    if (!build_op(op, t, &streamed) || !build_op(op, &plain_t, &plain))
        return false;
    int64_t params[1] = {op->m};
    void *args[2][16];
    size_t bytes = make_args(streamed.k, params, args[0]);
    make_args(plain.k, params, args[1]);
    Diag d = {0};
    double times[2][9];
    for (int r = -1; r < 9; r++) /* in turns: a slow spell slows both */
        for (int v = 0; v < 2; v++) {
            Built *b = v ? &plain : &streamed;
            double t0 = rt_now();
            cg_launch(b->k, cg_jit_fn(b->j), args[v], params, threads, &d);
            if (r >= 0)
                times[v][r] = rt_now() - t0;
        }
    bool same = true;
    for (int a = 0; a < streamed.k->nargs; a++) {
        const Buffer *b = streamed.k->bufs[a];
        int64_t n = 1, dim;
        for (int i = 0; i < b->rank; i++) {
            ir_eval_int(b->shape[i], params, &dim);
            n *= dim;
        }
        same = same && (b->dir == ARG_IN || !memcmp(args[0][a], args[1][a], dt_storage_bytes(b->dtype, n)));
    }
    double ts = rt_median(times[0], 9), tp = rt_median(times[1], 9), gbs = (double)bytes / ts * 1e-9;
    const char *name = op->spec + strlen("kernels_src/");
    if (same)
        printf("%-34s %8lld %10.1f %10.1f %7.2f %9.1f %9.2f\n", name, (long long)op->m, ts * 1e6, tp * 1e6, tp / ts,
               gbs, gbs / bw);
    else
        printf("%-34s streamed and plain outputs differ\n", name);
    for (int v = 0; v < 2; v++)
        for (int a = 0; a < streamed.k->nargs; a++)
            free(args[v][a]);
    unbuild(&streamed);
    unbuild(&plain);
    return same;
}

int main(int argc, char **argv)
{
    int threads = 1;
    bool norm_only = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--norm-only"))
            norm_only = true;
        else {
            fprintf(stderr, "usage: bench_ops [--threads N] [--norm-only]\n");
            return 2;
        }
    }
    const TargetInfo *t = ir_host_target();
    double bw = bench_copy_bandwidth(threads);
    printf("bench_ops: target %s, %d thread(s); memcpy copy bandwidth %.1f GB/s (read+write)\n",
           t ? t->name : "none", threads, bw);
    int failures = 0;
    if (!norm_only) {
        printf("%-34s %8s %10s %9s %9s\n", "operator (Flash decode)", "tokens", "median_us", "GB/s", "of_copy");
        for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
            failures += !bench_op(&ops[i], NULL, ops[i].m, t, threads, bw);
        for (size_t i = 0; i < sizeof compressors / sizeof compressors[0]; i++)
            failures += !bench_op(&compressors[i].op, compressors[i].label, compressors[i].tokens, t, threads, bw);
    }
    if (!norm_only) {
        printf("\n%-34s %8s %10s %10s %7s %9s %9s\n", "write-once outputs (prefill)", "tokens", "stream_us",
               "plain_us", "plain/s", "GB/s", "of_copy");
        for (size_t i = 0; i < sizeof streamed_ops / sizeof streamed_ops[0]; i++)
            failures += !bench_streamed(&streamed_ops[i], t, threads, bw);
    }
    failures += !bench_fused_norm(t, threads, bw);
    return failures ? 1 : 0;
}
