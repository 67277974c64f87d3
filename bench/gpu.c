/* bench/gpu.c — tilec kernels on the CUDA device against peers measured in
 * the same run: bf16 GEMM against cuBLAS (cublasGemmEx, f32 accumulation)
 * and e4m3 GEMM against cuBLASLt (cublasLtMatmul, f32 accumulation, f32
 * out like tilec's where it takes it) at 4096³ and 8192³, and memory-bound
 * kernels against the device-to-device copy bandwidth (bytes read + written
 * per second).  Medians of timed launches (CUDA events around each, after
 * one untimed run); inputs are random in [-1, 1).
 *
 * Kernels run through cg_gpu_run, the launch `tilec run --target sm_90a`
 * uses (tensor maps for TMA included), and every output is checked before
 * its time is printed: the streaming kernels against tests/ref in full, the
 * GEMMs at sampled entries against double sums of the operands and in full
 * against the peer's output.  A wrong answer prints WRONG and makes the exit
 * status 1.
 *
 *   build/bench/bench_gpu [--quick]   the GEMMs and the streaming examples
 *   build/bench/bench_gpu --ops       the V4 operators of kernels_src/ at Flash
 *                                     decode shapes (bench/v4ops.c), each
 *                                     against the copy bandwidth and checked
 *                                     against the same operator on the CPU
 *
 * Prints "skipped: no CUDA device" and exits 0 where there is none. */
#include "bench/v4ops.h"
#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "runtime/cuda.h"
#include "tests/ref/ref.h"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_ARGS = 8 };

/* A kernel lowered for sm_90a with host copies of its arguments: inputs
 * random in [-1, 1), outputs zero. */
typedef struct Case {
    Kernel *k;
    void *host[MAX_ARGS];
    size_t bytes[MAX_ARGS];
    size_t total; /* every argument's bytes: what one launch moves at least */
} Case;

static bool failed_any;

static const TargetInfo *gpu_target(void) { return ir_target("sm_90a"); }

static void fill_random(DType t, void *h, int64_t n, unsigned seed)
{
    for (int64_t j = 0; j < n; j++) {
        seed = seed * 1103515245u + 12345u;
        dt_store(t, h, j, (double)(seed >> 8) / (double)(1u << 23) - 1.0);
    }
}

static void case_free(Case *c)
{
    for (int i = 0; i < MAX_ARGS; i++)
        free(c->host[i]);
    ir_kernel_free(c->k);
    memset(c, 0, sizeof *c);
}

static bool case_build(Case *c, const char *spec, const FeSet *sets, int nsets, Diag *d)
{
    memset(c, 0, sizeof *c);
    c->k = fe_load_for(spec, sets, nsets, gpu_target(), d); /* tiles not set: the spec's choose */
    if (!c->k || !pass_pipeline(c->k, gpu_target(), NULL, d))
        return false;
    if (c->k->nargs > MAX_ARGS || c->k->nparams > 0)
        return diag_error(d, c->k->loc, "bench_gpu: kernel %s needs every size set and at most %d arguments",
                          c->k->name, MAX_ARGS);
    for (int i = 0; i < c->k->nargs; i++) {
        const Buffer *b = c->k->bufs[i];
        c->bytes[i] = dt_storage_bytes(b->dtype, ir_buf_elems(b, NULL));
        c->total += c->bytes[i];
        if (!(c->host[i] = calloc(c->bytes[i] + 16, 1)))
            return diag_error(d, c->k->loc, "bench_gpu: out of host memory for %s", b->name);
        if (b->dir != ARG_OUT)
            fill_random(b->dtype, c->host[i], ir_buf_elems(b, NULL), 7u + (unsigned)i);
    }
    return true;
}

/* The value tune parameter `name` took ("?" when the spec has none). */
static const char *param_value(const Kernel *k, const char *name)
{
    const KParam *p = ir_kparam_find(k, name);
    return p && p->value ? p->value : "?";
}

static bool case_run(Case *c, int reps, double *ms, Diag *d)
{
    CgGpuArgs a = {c->host, c->bytes, NULL};
    return cg_gpu_run(c->k, gpu_target(), &a, reps, ms, d);
}

/* Argument i as f32 (a new array). */
static float *as_f32(const Case *c, int i)
{
    int64_t n = ir_buf_elems(c->k->bufs[i], NULL);
    float *f = malloc((size_t)n * sizeof *f);
    for (int64_t j = 0; f && j < n; j++)
        f[j] = (float)dt_load(c->k->bufs[i]->dtype, c->host[i], j);
    return f;
}

static const char *verdict(double err, double tol)
{
    if (err <= tol)
        return "ok";
    failed_any = true;
    return "WRONG";
}

/* ------------------------------------------------------------- streaming */

typedef enum Ref { REF_SILU_MUL, REF_RMSNORM, REF_SOFTMAX } Ref;

/* Largest |tilec - reference| over the whole output. */
static double stream_error(const Case *c, Ref ref)
{
    int64_t M, N;
    ir_eval_int(c->k->bufs[0]->shape[0], NULL, &M);
    ir_eval_int(c->k->bufs[0]->shape[1], NULL, &N);
    int out = c->k->nargs - 1;
    float *x = as_f32(c, 0), *y = as_f32(c, out), *want = malloc((size_t)(M * N) * sizeof *want);
    float *w = ref == REF_SOFTMAX ? NULL : as_f32(c, 1);
    double err = INFINITY;
    if (x && y && want && (w || ref == REF_SOFTMAX)) {
        if (ref == REF_SILU_MUL)
            ref_silu_mul(M * N, x, w, want);
        else if (ref == REF_RMSNORM)
            ref_rmsnorm((int)M, (int)N, x, w, 1e-6f, want);
        else
            ref_softmax((int)M, (int)N, x, want);
        err = ref_max_abs_diff(y, want, M * N);
    }
    free(x);
    free(y);
    free(w);
    free(want);
    return err;
}

static void bench_stream(CuDevice *dev, const char *what, const char *spec, const FeSet *sets, int nsets, Ref ref,
                         double tol, int reps)
{
    Diag d = {0};
    Case c;
    double ms = -1, peer = -1;
    if (case_build(&c, spec, sets, nsets, &d) && case_run(&c, reps, &ms, &d)) {
        /* a copy that reads and writes as many bytes in all */
        CuPtr x = cu_alloc(dev, c.total / 2, &d), y = cu_alloc(dev, c.total / 2, &d);
        if (!x || !y || !cu_time_dtod(dev, y, x, c.total / 2, reps, &peer, &d))
            peer = -1;
        cu_free(dev, x);
        cu_free(dev, y);
    }
    if (ms < 0 || peer < 0) {
        printf("%s: failed: ", what);
        diag_print(&d, stdout);
        failed_any = true;
    } else {
        double err = stream_error(&c, ref);
        printf("%-28s %7.1f MB: tilec %7.3f ms %6.0f GB/s | copy %7.3f ms %6.0f GB/s | ratio %.3f | "
               "max err %.1e %s\n",
               what, c.total / 1e6, ms, c.total / ms * 1e-6, peer, c.total / peer * 1e-6, peer / ms, err,
               verdict(err, tol));
    }
    fflush(stdout);
    case_free(&c);
}

/* ----------------------------------------------------------------- GEMM */

typedef struct PeerGemm {
    int64_t M, N, K;
    CuPtr a, b, c, ws;
    size_t ws_bytes;
    cublasHandle_t blas;
    cublasLtHandle_t lt;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
} PeerGemm;

/* C[M,N] = A[M,K] B[N,K]^T row-major is C^T = B A^T column-major: cuBLAS
 * multiplies B^T (op T on the [K,N] column-major B) by A. */
static bool cublas_bf16(void *ctx, Diag *d)
{
    PeerGemm *p = ctx;
    float one = 1, zero = 0;
    if (cublasGemmEx(p->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)p->N, (int)p->M, (int)p->K, &one,
                     (void *)(uintptr_t)p->b, CUDA_R_16BF, (int)p->K, (void *)(uintptr_t)p->a, CUDA_R_16BF,
                     (int)p->K, &zero, (void *)(uintptr_t)p->c, CUDA_R_32F, (int)p->N, CUBLAS_COMPUTE_32F,
                     CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS)
        return diag_error(d, (SrcLoc){0}, "cublasGemmEx failed");
    return true;
}

/* fp8 needs the "TN" form in cuBLASLt's column-major terms, which this is. */
static bool cublaslt_fp8(void *ctx, Diag *d)
{
    PeerGemm *p = ctx;
    float one = 1, zero = 0;
    if (cublasLtMatmul(p->lt, p->op, &one, (void *)(uintptr_t)p->b, p->la, (void *)(uintptr_t)p->a, p->lb, &zero,
                       (void *)(uintptr_t)p->c, p->lc, (void *)(uintptr_t)p->c, p->lc, NULL,
                       (void *)(uintptr_t)p->ws, p->ws_bytes, 0) != CUBLAS_STATUS_SUCCESS)
        return diag_error(d, (SrcLoc){0}, "cublasLtMatmul refused the e4m3 GEMM");
    return true;
}

static void lt_layouts(PeerGemm *p, cudaDataType_t out)
{
    cublasOperation_t tr = CUBLAS_OP_T, nt = CUBLAS_OP_N;
    cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &tr, sizeof tr);
    cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &nt, sizeof nt);
    cublasLtMatrixLayoutCreate(&p->la, CUDA_R_8F_E4M3, (uint64_t)p->K, (uint64_t)p->N, p->K); /* B[N,K] */
    cublasLtMatrixLayoutCreate(&p->lb, CUDA_R_8F_E4M3, (uint64_t)p->K, (uint64_t)p->M, p->K); /* A[M,K] */
    cublasLtMatrixLayoutCreate(&p->lc, out, (uint64_t)p->N, (uint64_t)p->M, p->N);            /* C[M,N] */
}

static void lt_layouts_free(PeerGemm *p)
{
    cublasLtMatrixLayoutDestroy(p->la);
    cublasLtMatrixLayoutDestroy(p->lb);
    cublasLtMatrixLayoutDestroy(p->lc);
    cublasLtMatmulDescDestroy(p->op);
}

/* The peer on the same operands: median ms, its output as f32 into c_out,
 * *out_dtype the output type it took (cuBLASLt's fp8 may refuse f32). */
static double peer_gemm(CuDevice *dev, const Case *g, bool fp8, int reps, float *c_out, const char **out_dtype,
                        Diag *d)
{
    PeerGemm p = {0};
    ir_eval_int(g->k->bufs[0]->shape[0], NULL, &p.M);
    ir_eval_int(g->k->bufs[1]->shape[0], NULL, &p.N);
    ir_eval_int(g->k->bufs[0]->shape[1], NULL, &p.K);
    p.ws_bytes = 32u << 20;
    double ms = -1;
    size_t cbytes = (size_t)(p.M * p.N) * 4;
    p.a = cu_alloc(dev, g->bytes[0], d);
    p.b = cu_alloc(dev, g->bytes[1], d);
    p.c = cu_alloc(dev, cbytes, d);
    p.ws = cu_alloc(dev, p.ws_bytes, d);
    if (!p.a || !p.b || !p.c || !p.ws || !cu_htod(dev, p.a, g->host[0], g->bytes[0], d) ||
        !cu_htod(dev, p.b, g->host[1], g->bytes[1], d))
        goto out;
    *out_dtype = "f32";
    if (!fp8) {
        if (cublasCreate(&p.blas) != CUBLAS_STATUS_SUCCESS) {
            diag_error(d, (SrcLoc){0}, "cublasCreate failed");
            goto out;
        }
        if (!cu_time_op(dev, cublas_bf16, &p, reps, &ms, d))
            ms = -1;
        cublasDestroy(p.blas);
    } else {
        if (cublasLtCreate(&p.lt) != CUBLAS_STATUS_SUCCESS) {
            diag_error(d, (SrcLoc){0}, "cublasLtCreate failed");
            goto out;
        }
        cudaDataType_t outs[2] = {CUDA_R_32F, CUDA_R_16BF};
        for (int o = 0; o < 2 && ms < 0; o++) {
            lt_layouts(&p, outs[o]);
            Diag why = {0};
            if (cu_time_op(dev, cublaslt_fp8, &p, reps, &ms, &why))
                *out_dtype = o ? "bf16" : "f32";
            else
                ms = -1;
            lt_layouts_free(&p);
        }
        if (ms < 0)
            diag_error(d, (SrcLoc){0}, "cublasLtMatmul refused the e4m3 GEMM with f32 and bf16 out");
        cublasLtDestroy(p.lt);
    }
    if (ms > 0) {
        bool bf16 = !strcmp(*out_dtype, "bf16");
        void *h = malloc(cbytes);
        if (!h || !cu_dtoh(dev, h, p.c, bf16 ? cbytes / 2 : cbytes, d))
            ms = -1;
        for (int64_t j = 0; ms > 0 && j < p.M * p.N; j++)
            c_out[j] = bf16 ? (float)dt_load(DT_BF16, h, j) : ((float *)h)[j];
        free(h);
    }
out:
    cu_free(dev, p.a);
    cu_free(dev, p.b);
    cu_free(dev, p.c);
    cu_free(dev, p.ws);
    return ms;
}

/* Largest |C - A B^T| over 4096 sampled entries, the sums in double from
 * the operands' decoded values. */
static double gemm_sample_error(const Case *g)
{
    int64_t M, N, K;
    ir_eval_int(g->k->bufs[0]->shape[0], NULL, &M);
    ir_eval_int(g->k->bufs[1]->shape[0], NULL, &N);
    ir_eval_int(g->k->bufs[0]->shape[1], NULL, &K);
    DType t = g->k->bufs[0]->dtype;
    const float *c = g->host[2];
    double err = 0;
    unsigned s = 99;
    for (int n = 0; n < 4096; n++) {
        s = s * 1103515245u + 12345u;
        int64_t i = (int64_t)(s >> 4) % M;
        s = s * 1103515245u + 12345u;
        int64_t j = (int64_t)(s >> 4) % N;
        double sum = 0;
        for (int64_t k = 0; k < K; k++)
            sum += dt_load(t, g->host[0], i * K + k) * dt_load(t, g->host[1], j * K + k);
        err = fmax(err, fabs(c[i * N + j] - sum));
    }
    return err;
}

/* C = A B^T at n^3: examples/gemm.lua in the tiles its choose picks for
 * sm_90a (fp8 promoted to f32 per step), or with fast = true the fp8
 * product that keeps the tensor cores' own sums (bench/gemm_fp8_fast.lua). */
static void bench_gemm(CuDevice *dev, const char *dtype, bool fast, int64_t n, int reps)
{
    char ns[32];
    snprintf(ns, sizeof ns, "%lld", (long long)n);
    FeSet sets[] = {{"M", ns}, {"N", ns}, {"K", ns}, {"dtype", dtype}};
    bool fp8 = !strcmp(dtype, "f8e4m3");
    const char *spec = fast ? "bench/gemm_fp8_fast.lua" : "examples/gemm.lua";
    const char *peer_name = fp8 ? "cuBLASLt" : "cuBLAS", *peer_out = "f32";
    Diag d = {0};
    Case g;
    double ms = -1, peer = -1;
    float *c_peer = malloc((size_t)(n * n) * sizeof *c_peer);
    if (c_peer && case_build(&g, spec, sets, fast ? 3 : 4, &d) && case_run(&g, reps, &ms, &d))
        peer = peer_gemm(dev, &g, fp8, reps, c_peer, &peer_out, &d);
    if (ms < 0 || peer < 0) {
        printf("gemm %s %lld^3: failed: ", dtype, (long long)n);
        diag_print(&d, stdout);
        failed_any = true;
    } else {
        double flop = 2.0 * (double)n * (double)n * (double)n;
        double err = gemm_sample_error(&g), vs_peer = ref_max_abs_diff(g.host[2], c_peer, n * n);
        /* f32 accumulation: ~1e-4 at these sizes.  Hopper's fp8 tensor
         * cores keep ~13 fraction bits within a step (H200: 0.009 at 4096,
         * promoted per step, bit-equal to cuBLASLt's default) and drift
         * without promotion (0.24 at 4096 against the sums, 0.49 against
         * cuBLASLt).  A bf16 peer output rounds values near sqrt(K)/3 to
         * 2^-8 of them. */
        double tol = (fp8 ? (fast ? 2e-4 : 1e-5) : 1e-6) * (double)n;
        printf("gemm %-6s%s %5lld^3 (BM %s BN %s BK %s, %s stages): tilec %8.3f ms %6.1f TFLOP/s | %s (%s out) "
               "%8.3f ms %6.1f TFLOP/s | ratio %.3f | max err %.1e %s, vs %s %.1e %s\n",
               dtype, fast ? " fast_accum" : "", (long long)n, param_value(g.k, "BM"), param_value(g.k, "BN"), param_value(g.k, "BK"),
               param_value(g.k, "stages"), ms, flop / ms * 1e-9, peer_name, peer_out, peer,
               flop / peer * 1e-9, peer / ms, err, verdict(err, tol), peer_name, vs_peer,
               verdict(vs_peer, strcmp(peer_out, "f32") ? 0.5 : tol));
    }
    fflush(stdout);
    free(c_peer);
    case_free(&g);
}

/* ------------------------------------------------------ V4 operators */

/* How far the device's outputs lie from the CPU's: per output, elements
 * off by more than 1e-2 of the output's largest finite |value| (integers:
 * any difference; equal infinities agree).  The two back ends round exp,
 * rsqrt and contractions differently, and a quantised output then moves by
 * a code step where a value sat on a rounding boundary, so up to one
 * element in a thousand may differ; a layout or indexing bug moves whole
 * rows.  why gets the figures of the output with the most elements off;
 * false when any output has more than that share. */
static bool outputs_agree(const Kernel *k, void *const *got, void *const *want, const int64_t *params, char *why,
                          size_t n_why)
{
    bool ok = true;
    double worst_share = -1;
    snprintf(why, n_why, "no outputs");
    for (int i = 0; i < k->nargs; i++) {
        const Buffer *b = k->bufs[i];
        if (b->dir == ARG_IN)
            continue;
        int64_t n = ir_buf_elems(b, params);
        double amax = 0;
        for (int64_t j = 0; j < n; j++) {
            double w = fabs(dt_load(b->dtype, want[i], j));
            if (isfinite(w))
                amax = fmax(amax, w);
        }
        double tol = dt_is_float(b->dtype) ? 1e-2 * amax : 0, worst = 0;
        int64_t off = 0;
        for (int64_t j = 0; j < n; j++) {
            double g = dt_load(b->dtype, got[i], j), w = dt_load(b->dtype, want[i], j);
            double diff = g == w || (isnan(g) && isnan(w)) ? 0 : isfinite(g) && isfinite(w) ? fabs(g - w) : INFINITY;
            worst = fmax(worst, diff);
            off += diff > tol;
        }
        ok = ok && off * 1000 <= n;
        double share = n ? (double)off / (double)n : 0;
        if (share > worst_share) {
            worst_share = share;
            snprintf(why, n_why, "%s: %lld of %lld off, max |diff| %.2g of max |value| %.2g", b->name,
                     (long long)off, (long long)n, worst, amax);
        }
    }
    return ok;
}

/* The outputs of op on this host's CPU, from the inputs in args (copied:
 * inout arguments change).  NULL entries where it failed (printed). */
static bool cpu_outputs(const V4Op *op, const Kernel *gk, void *const *args, const size_t *bytes,
                        const int64_t *params, void **out)
{
    const TargetInfo *t = ir_host_target();
    FeSet sets[2 * V4OP_MAX_SETS];
    Diag d = {0};
    Kernel *k = t ? fe_load(op->spec, sets, v4_op_sets(op, true, sets), &d) : NULL;
    CgJit *j = NULL;
    bool ok = k && pass_pipeline(k, t, NULL, &d) && (j = cg_jit_compile(k, t, &d));
    for (int i = 0; i < gk->nargs; i++)
        out[i] = memcpy(malloc(bytes[i] + 16), args[i], bytes[i]);
    ok = ok && k->nargs == gk->nargs && cg_launch(k, cg_jit_fn(j), out, params, 0, &d);
    if (!ok) {
        printf("%-34s CPU reference failed: ", v4_op_name(op));
        if (t)
            diag_print(&d, stdout);
        else
            printf("no CPU target on this host\n");
    }
    cg_jit_free(j);
    ir_kernel_free(k);
    return ok;
}

/* One operator on the device: its tiles from the spec's choose for
 * sm_90a, the median of reps launches, checked against the CPU. */
static void bench_v4_op(const V4Op *op, int reps, double copy_gbs)
{
    const char *name = v4_op_name(op);
    FeSet sets[2 * V4OP_MAX_SETS];
    Diag d = {0};
    Kernel *k = fe_load_for(op->spec, sets, v4_op_sets(op, false, sets), gpu_target(), &d);
    if (!k || !pass_pipeline(k, gpu_target(), NULL, &d)) {
        printf("%-34s failed: ", name);
        diag_print(&d, stdout);
        failed_any = true;
        ir_kernel_free(k);
        return;
    }
    int64_t params[1] = {op->m};
    void *args[V4OP_MAX_ARGS] = {0}, *want[V4OP_MAX_ARGS] = {0};
    size_t bytes[V4OP_MAX_ARGS];
    size_t total = v4_make_args(op, k, params, args, bytes);
    double ms = -1;
    char why[256];
    if (!cpu_outputs(op, k, args, bytes, params, want)) {
        failed_any = true;
    } else if (!cg_gpu_run(k, gpu_target(), &(CgGpuArgs){args, bytes, params}, reps, &ms, &d)) {
        printf("%-34s failed: ", name);
        diag_print(&d, stdout);
        failed_any = true;
    } else {
        bool ok = outputs_agree(k, args, want, params, why, sizeof why);
        double gbs = (double)total / ms * 1e-6;
        printf("%-34s %8lld %10.1f %9.1f %9.2f  %s %s\n", name, (long long)v4_op_tokens(op), ms * 1e3, gbs,
               gbs / copy_gbs, ok ? "ok" : "WRONG", why);
        failed_any |= !ok;
    }
    fflush(stdout);
    for (int i = 0; i < k->nargs; i++) {
        free(args[i]);
        free(want[i]);
    }
    ir_kernel_free(k);
}

static void bench_v4_ops(CuDevice *dev, int reps)
{
    Diag d = {0};
    size_t half = (size_t)256 << 20;
    double ms = -1;
    CuPtr x = cu_alloc(dev, half, &d), y = cu_alloc(dev, half, &d);
    if (!x || !y || !cu_time_dtod(dev, y, x, half, reps, &ms, &d)) {
        printf("copy bandwidth: failed: ");
        diag_print(&d, stdout);
        failed_any = true;
    }
    cu_free(dev, x);
    cu_free(dev, y);
    if (ms < 0)
        return;
    double copy_gbs = 2.0 * (double)half / ms * 1e-6;
    printf("V4 operators at Flash decode shapes, tiles from each spec's choose for sm_90a; device copy %.0f GB/s "
           "(read + write); of_copy = bytes of the arguments per second / that; each output checked against "
           "the CPU's\n", copy_gbs);
    printf("%-34s %8s %10s %9s %9s  %s\n", "operator", "tokens", "median_us", "GB/s", "of_copy", "check");
    for (size_t i = 0; i < v4_nops; i++)
        bench_v4_op(&v4_ops[i], reps, copy_gbs);
}

int main(int argc, char **argv)
{
    bool quick = argc > 1 && !strcmp(argv[1], "--quick"), ops = argc > 1 && !strcmp(argv[1], "--ops");
    if (argc > 2 || (argc > 1 && !quick && !ops)) {
        fprintf(stderr, "usage: bench_gpu [--quick | --ops]\n");
        return 2;
    }
    Diag d = {0};
    CuDevice *dev = cu_open(&d);
    if (!dev) {
        printf("skipped: no CUDA device (%s)\n", d.msg);
        return 0;
    }
    printf("device: %s (sm_%d, %d SMs)\n", cu_device_name(dev), cu_sm_version(dev), cu_sm_count(dev));
    int reps = quick ? 5 : 20;
    if (ops) {
        bench_v4_ops(dev, reps);
        cu_close(dev);
        return failed_any ? 1 : 0;
    }
    FeSet silu[] = {{"M", "16384"}, {"N", "8192"}, {"dtype", "bf16"}, {"BM", "4"}, {"BN", "256"}}; /* best of 9 on an H200 */
    bench_stream(dev, "silu_mul bf16 16384x8192", "examples/silu_mul.lua", silu, 5, REF_SILU_MUL, 8e-3, reps);
    FeSet silu32[] = {{"M", "16384"}, {"N", "8192"}, {"dtype", "f32"}, {"BM", "4"}, {"BN", "512"}};
    bench_stream(dev, "silu_mul f32 16384x8192", "examples/silu_mul.lua", silu32, 5, REF_SILU_MUL, 2e-6, reps);
    /* 16384 x 4096: the spec's choose (one 4096-wide tile per row, read
     * once: pass_reuse), and 512-wide tiles, each read in both passes */
    FeSet rms[] = {{"M", "16384"}, {"N", "4096"}, {"BM", "4"}, {"BN", "512"}};
    bench_stream(dev, "rmsnorm f32 (1 read)", "examples/rmsnorm.lua", rms, 2, REF_RMSNORM, 1e-5, reps);
    bench_stream(dev, "rmsnorm f32 BN 512 (2 reads)", "examples/rmsnorm.lua", rms, 4, REF_RMSNORM, 1e-5, reps);
    FeSet sm[] = {{"M", "16384"}, {"N", "4096"}, {"BM", "4"}, {"BN", "512"}};
    bench_stream(dev, "softmax f32 (1 read)", "examples/softmax.lua", sm, 2, REF_SOFTMAX, 1e-6, reps);
    bench_stream(dev, "softmax f32 BN 512 (2 reads)", "examples/softmax.lua", sm, 4, REF_SOFTMAX, 1e-6, reps);
    static const struct { const char *dtype; bool fast; } gemms[] = {{"bf16", false}, {"f8e4m3", false},
                                                                      {"f8e4m3", true}};
    for (int i = 0; i < 3; i++) {
        bench_gemm(dev, gemms[i].dtype, gemms[i].fast, 4096, reps);
        if (!quick)
            bench_gemm(dev, gemms[i].dtype, gemms[i].fast, 8192, reps);
    }
    cu_close(dev);
    return failed_any ? 1 : 0;
}
