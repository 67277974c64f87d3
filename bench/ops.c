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
#include "bench/v4ops.h"
#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "runtime/timing.h"

#include <stdlib.h>
#include <string.h>

/* One row: compile op for t (with its CPU tiles; the tiles those leave
 * unset are the spec's choose for t, as `tilec run` picks them), time 9
 * launches after a warm-up, print the median. */
static bool bench_op(const V4Op *op, const TargetInfo *t, int threads, double bw)
{
    const char *name = v4_op_name(op);
    FeSet sets[2 * V4OP_MAX_SETS];
    int nsets = v4_op_sets(op, true, sets);
    Diag d = {0};
    Kernel *k = fe_load_for(op->spec, sets, nsets, t, &d);
    CgJit *j = NULL;
    if (!k || !pass_pipeline(k, t, NULL, &d) || !(j = cg_jit_compile(k, t, &d))) {
        printf("%-34s failed: ", name);
        diag_print(&d, stdout);
        ir_kernel_free(k);
        return false;
    }
    int64_t params[1] = {op->m};
    void *args[V4OP_MAX_ARGS];
    size_t each[V4OP_MAX_ARGS];
    size_t bytes = v4_make_args(op, k, params, args, each);
    double times[9];
    cg_launch(k, cg_jit_fn(j), args, params, threads, &d); /* warm up */
    for (int r = 0; r < 9; r++) {
        double t0 = rt_now();
        cg_launch(k, cg_jit_fn(j), args, params, threads, &d);
        times[r] = rt_now() - t0;
    }
    double med = rt_median(times, 9), gbs = (double)bytes / med * 1e-9;
    printf("%-34s %8lld %10.1f %9.1f %9.2f\n", name, (long long)v4_op_tokens(op), med * 1e6, gbs, gbs / bw);
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
    b->k = fe_load_for(spec, sets, nsets, t, &d);
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
static const V4Op streamed_ops[] = {
    {"kernels_src/rmsnorm.lua", {{"D", "4096"}}, {{0}}, {{0}}, 4096, NULL, 0},
    {"kernels_src/act_quant.lua", {{"K", "4096"}}, {{0}}, {{0}}, 4096, NULL, 0},
    {"kernels_src/rmsnorm_quant.lua", {{"D", "4096"}}, {{0}}, {{0}}, 4096, NULL, 0},
    {"kernels_src/hc_post.lua", {{"D", "4096"}}, {{0}}, {{0}}, 4096, NULL, 0},
};

static bool build_op(const V4Op *op, const TargetInfo *t, Built *b)
{
    FeSet sets[2 * V4OP_MAX_SETS];
    return build(op->spec, sets, v4_op_sets(op, true, sets), t, b);
}

static bool bench_streamed(const V4Op *op, const TargetInfo *t, int threads, double bw)
{
    TargetInfo plain_t = *t;
    plain_t.stream_bytes = INT64_MAX;
    Built streamed, plain;
    if (!build_op(op, t, &streamed) || !build_op(op, &plain_t, &plain))
        return false;
    int64_t params[1] = {op->m};
    void *args[2][V4OP_MAX_ARGS];
    size_t each[V4OP_MAX_ARGS];
    size_t bytes = v4_make_args(op, streamed.k, params, args[0], each);
    v4_make_args(op, plain.k, params, args[1], each);
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
        int64_t n = ir_buf_elems(b, params);
        same = same && (b->dir == ARG_IN || !memcmp(args[0][a], args[1][a], dt_storage_bytes(b->dtype, n)));
    }
    double ts = rt_median(times[0], 9), tp = rt_median(times[1], 9), gbs = (double)bytes / ts * 1e-9;
    const char *name = v4_op_name(op);
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
        for (size_t i = 0; i < v4_nops; i++)
            failures += !bench_op(&v4_ops[i], t, threads, bw);
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
