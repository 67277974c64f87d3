/* bench/gpu.c — tilec kernels on the CUDA device against peers measured in
 * the same run: bf16 GEMM against cuBLAS (cublasGemmEx, f32 accumulation)
 * and e4m3 GEMM against cuBLASLt (cublasLtMatmul, f32 accumulation, f32
 * out like tilec's) at 4096³ and 8192³, and memory-bound kernels against the device-to-device
 * copy bandwidth (bytes read + written per second).  Medians of timed
 * launches (CUDA events); inputs are random.
 *
 *   build/bench/bench_gpu [--quick]
 *
 * Prints "skipped: no CUDA device" and exits 0 where there is none. */
#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "runtime/cuda.h"
#include "runtime/timing.h"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdlib.h>
#include <string.h>

typedef struct Built {
    Kernel *k;
    CuKernel *fn;
    size_t smem;
    unsigned grid[3];
} Built;

static bool build(CuDevice *dev, const char *spec, const FeSet *sets, int nsets, Built *b, Diag *d)
{
    const TargetInfo *t = ir_target("sm_90a");
    memset(b, 0, sizeof *b);
    b->k = fe_load(spec, sets, nsets, d);
    if (!b->k || !pass_pipeline(b->k, t, NULL, d))
        return false;
    char *ptx = cg_emit_ptx(b->k, t, d);
    if (!ptx)
        return false;
    b->smem = (size_t)pass_shared_bytes(b->k);
    b->fn = cu_kernel_load(dev, ptx, b->k->name, b->smem, d);
    free(ptx);
    int64_t blocks = 1, n;
    for (int g = 0; g < b->k->ngrid; g++) {
        ir_eval_int(b->k->grid[g], NULL, &n);
        blocks *= n;
    }
    b->grid[0] = (unsigned)blocks;
    b->grid[1] = b->grid[2] = 1;
    return b->fn != NULL;
}

static size_t arg_bytes(const Kernel *k, int i)
{
    int64_t n = 1, dim;
    for (int r = 0; r < k->bufs[i]->rank; r++) {
        ir_eval_int(k->bufs[i]->shape[r], NULL, &dim);
        n *= dim;
    }
    return dt_storage_bytes(k->bufs[i]->dtype, n);
}

/* Random values in [-1, 1) in each argument's dtype. */
static bool alloc_args(CuDevice *dev, const Kernel *k, CuPtr *p, void **params, size_t *total, Diag *d)
{
    *total = 0;
    for (int i = 0; i < k->nargs; i++) {
        size_t n = arg_bytes(k, i);
        int64_t elems = 1, dim;
        for (int r = 0; r < k->bufs[i]->rank; r++) {
            ir_eval_int(k->bufs[i]->shape[r], NULL, &dim);
            elems *= dim;
        }
        *total += n;
        void *h = calloc(n + 16, 1);
        unsigned s = 7u + (unsigned)i;
        for (int64_t j = 0; j < elems; j++) {
            s = s * 1103515245u + 12345u;
            dt_store(k->bufs[i]->dtype, h, j, (double)(s >> 8) / (double)(1u << 23) - 1.0);
        }
        p[i] = cu_alloc(dev, n, d);
        bool ok = p[i] && cu_htod(dev, p[i], h, n, d);
        free(h);
        if (!ok)
            return false;
        params[i] = &p[i];
    }
    return true;
}

static double time_kernel(CuDevice *dev, Built *b, int reps, size_t *bytes, Diag *d)
{
    CuPtr p[16] = {0};
    void *params[16];
    double ms = -1;
    if (alloc_args(dev, b->k, p, params, bytes, d) &&
        !cu_time_launches(b->fn, b->grid, (unsigned)b->k->nthreads, b->smem, params, reps, &ms, d))
        ms = -1;
    for (int i = 0; i < b->k->nargs; i++)
        if (p[i])
            cu_free(dev, p[i]);
    return ms;
}

/* cuBLAS bf16 GEMM with f32 accumulation: C[M,N] = A[M,K] B[N,K]^T, as the
 * gemm example computes (row-major; cuBLAS is column-major, so it computes
 * C^T = B A^T). */
static double time_cublas(CuDevice *dev, int64_t M, int64_t N, int64_t K, int reps, Diag *d)
{
    CuPtr a = cu_alloc(dev, (size_t)(M * K * 2), d), b = cu_alloc(dev, (size_t)(N * K * 2), d);
    CuPtr c = cu_alloc(dev, (size_t)(M * N * 4), d);
    cublasHandle_t h;
    if (!a || !b || !c || cublasCreate(&h) != CUBLAS_STATUS_SUCCESS)
        return -1;
    /* the same kind of random values as the tilec kernel gets */
    size_t na = (size_t)(M * K), nb = (size_t)(N * K);
    uint16_t *hb = malloc(2 * (na > nb ? na : nb));
    unsigned s = 11;
    for (size_t j = 0; j < (na > nb ? na : nb); j++) {
        s = s * 1103515245u + 12345u;
        hb[j] = dt_f32_to_bf16((float)((double)(s >> 8) / (double)(1u << 23) - 1.0));
    }
    cu_htod(dev, a, hb, 2 * na, d);
    cu_htod(dev, b, hb, 2 * nb, d);
    free(hb);
    float one = 1, zero = 0;
    double *t = calloc((size_t)reps, sizeof *t);
    for (int r = -2; r < reps; r++) {
        cu_sync(dev, d);
        double t0 = rt_now();
        cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)M, (int)K, &one, (void *)(uintptr_t)b,
                     CUDA_R_16BF, (int)K, (void *)(uintptr_t)a, CUDA_R_16BF, (int)K, &zero,
                     (void *)(uintptr_t)c, CUDA_R_32F, (int)N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        cu_sync(dev, d);
        if (r >= 0)
            t[r] = (rt_now() - t0) * 1e3;
    }
    double ms = rt_median(t, reps);
    free(t);
    cublasDestroy(h);
    cu_free(dev, a);
    cu_free(dev, b);
    cu_free(dev, c);
    return ms;
}

/* cuBLASLt e4m3 GEMM, f32 accumulation: the same C = A B^T (fp8 needs A
 * transposed in cuBLAS's column-major terms: "TN", which this is).  Output
 * f32 where this cuBLASLt takes it, else bf16 (*out says which). */
static double time_cublaslt_fp8(CuDevice *dev, int64_t M, int64_t N, int64_t K, int reps, const char **out,
                                Diag *d)
{
    CuPtr a = cu_alloc(dev, (size_t)(M * K), d), b = cu_alloc(dev, (size_t)(N * K), d);
    CuPtr c = cu_alloc(dev, (size_t)(M * N * 4), d);
    size_t wsize = 32u << 20;
    CuPtr ws = cu_alloc(dev, wsize, d);
    cublasLtHandle_t h;
    if (!a || !b || !c || !ws || cublasLtCreate(&h) != CUBLAS_STATUS_SUCCESS)
        return -1;
    size_t na = (size_t)(M * K), nb = (size_t)(N * K), nmax = na > nb ? na : nb;
    uint8_t *hb = malloc(nmax);
    unsigned s = 11;
    for (size_t j = 0; j < nmax; j++) {
        s = s * 1103515245u + 12345u;
        dt_store(DT_F8E4M3, hb, (int64_t)j, (double)(s >> 8) / (double)(1u << 23) - 1.0);
    }
    cu_htod(dev, a, hb, na, d);
    cu_htod(dev, b, hb, nb, d);
    free(hb);
    double ms = -1;
    cudaDataType_t outs[2] = {CUDA_R_32F, CUDA_R_16BF};
    for (int o = 0; o < 2 && ms < 0; o++) {
        cublasLtMatmulDesc_t op;
        cublasLtMatrixLayout_t la, lb, lc;
        cublasOperation_t tr = CUBLAS_OP_T, nt = CUBLAS_OP_N;
        cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &tr, sizeof tr);
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &nt, sizeof nt);
        cublasLtMatrixLayoutCreate(&la, CUDA_R_8F_E4M3, (uint64_t)K, (uint64_t)N, K); /* B[N,K] */
        cublasLtMatrixLayoutCreate(&lb, CUDA_R_8F_E4M3, (uint64_t)K, (uint64_t)M, K); /* A[M,K] */
        cublasLtMatrixLayoutCreate(&lc, outs[o], (uint64_t)N, (uint64_t)M, N);        /* C[M,N] */
        float one = 1, zero = 0;
        double *t = calloc((size_t)reps, sizeof *t);
        bool ok = true;
        for (int r = -2; r < reps && ok; r++) {
            cu_sync(dev, d);
            double t0 = rt_now();
            ok = cublasLtMatmul(h, op, &one, (void *)(uintptr_t)b, la, (void *)(uintptr_t)a, lb, &zero,
                                (void *)(uintptr_t)c, lc, (void *)(uintptr_t)c, lc, NULL,
                                (void *)(uintptr_t)ws, wsize, 0) == CUBLAS_STATUS_SUCCESS;
            cu_sync(dev, d);
            if (r >= 0)
                t[r] = (rt_now() - t0) * 1e3;
        }
        if (ok) {
            ms = rt_median(t, reps);
            *out = o ? "bf16" : "f32";
        }
        free(t);
        cublasLtMatrixLayoutDestroy(la);
        cublasLtMatrixLayoutDestroy(lb);
        cublasLtMatrixLayoutDestroy(lc);
        cublasLtMatmulDescDestroy(op);
    }
    if (ms < 0)
        diag_error(d, (SrcLoc){0}, "cublasLtMatmul refused the e4m3 GEMM");
    cublasLtDestroy(h);
    cu_free(dev, a);
    cu_free(dev, b);
    cu_free(dev, c);
    cu_free(dev, ws);
    return ms;
}

static void bench_gemm(CuDevice *dev, const char *dtype, int64_t n, const char *bm, const char *bn,
                       const char *bk, int reps)
{
    char ns[32];
    snprintf(ns, sizeof ns, "%lld", (long long)n);
    FeSet sets[] = {{"M", ns}, {"N", ns}, {"K", ns}, {"dtype", dtype}, {"BM", bm}, {"BN", bn}, {"BK", bk}};
    bool fp8 = !strcmp(dtype, "f8e4m3");
    const char *peer_name = fp8 ? "cuBLASLt" : "cuBLAS", *peer_out = "f32";
    Diag d = {0};
    Built b;
    size_t bytes;
    double ms = -1, peer = -1;
    if (build(dev, "examples/gemm.lua", sets, 7, &b, &d))
        ms = time_kernel(dev, &b, reps, &bytes, &d);
    if (ms > 0)
        peer = fp8 ? time_cublaslt_fp8(dev, n, n, n, reps, &peer_out, &d) : time_cublas(dev, n, n, n, reps, &d);
    if (ms < 0 || peer < 0) {
        printf("gemm %s %lld^3: failed: ", dtype, (long long)n);
        diag_print(&d, stdout);
    } else {
        double flop = 2.0 * (double)n * (double)n * (double)n;
        printf("gemm %-6s %5lld^3 (BM %s BN %s BK %s, %d regs): tilec %8.3f ms %7.1f TFLOP/s | %s (%s out) "
               "%8.3f ms %7.1f TFLOP/s | ratio %.3f\n",
               dtype, (long long)n, bm, bn, bk, cu_kernel_regs(b.fn), ms, flop / ms * 1e-9, peer_name, peer_out,
               peer, flop / peer * 1e-9, peer / ms);
    }
    cu_kernel_free(b.fn);
    ir_kernel_free(b.k);
}

static void bench_stream(CuDevice *dev, const char *what, const char *spec, const FeSet *sets, int nsets,
                         int reps)
{
    Diag d = {0};
    Built b;
    size_t bytes = 0;
    double ms = -1, peer = -1;
    if (build(dev, spec, sets, nsets, &b, &d))
        ms = time_kernel(dev, &b, reps, &bytes, &d);
    if (ms > 0) { /* a copy that reads and writes as many bytes in all */
        CuPtr x = cu_alloc(dev, bytes / 2, &d), y = cu_alloc(dev, bytes / 2, &d);
        if (x && y && !cu_time_dtod(dev, y, x, bytes / 2, reps, &peer, &d))
            peer = -1;
        cu_free(dev, x);
        cu_free(dev, y);
    }
    if (ms < 0 || peer < 0) {
        printf("%s: failed: ", what);
        diag_print(&d, stdout);
    } else {
        printf("%-28s %7.1f MB: tilec %7.3f ms %6.0f GB/s | copy %7.3f ms %6.0f GB/s | ratio %.3f (%d regs)\n", what,
               bytes / 1e6, ms, bytes / ms * 1e-6, peer, bytes / peer * 1e-6, peer / ms, cu_kernel_regs(b.fn));
    }
    cu_kernel_free(b.fn);
    ir_kernel_free(b.k);
}

int main(int argc, char **argv)
{
    bool quick = argc > 1 && !strcmp(argv[1], "--quick");
    Diag d = {0};
    CuDevice *dev = cu_open(&d);
    if (!dev) {
        printf("skipped: no CUDA device (%s)\n", d.msg);
        return 0;
    }
    printf("device: %s (sm_%d, %d SMs)\n", cu_device_name(dev), cu_sm_version(dev), cu_sm_count(dev));
    int reps = quick ? 5 : 20;
    FeSet silu[] = {{"M", "16384"}, {"N", "8192"}, {"dtype", "bf16"}, {"BM", "4"}, {"BN", "1024"}};
    bench_stream(dev, "silu_mul bf16 16384x8192", "examples/silu_mul.lua", silu, 5, reps);
    FeSet silu32[] = {{"M", "16384"}, {"N", "8192"}, {"dtype", "f32"}, {"BM", "4"}, {"BN", "512"}};
    bench_stream(dev, "silu_mul f32 16384x8192", "examples/silu_mul.lua", silu32, 5, reps);
    FeSet rms[] = {{"M", "16384"}, {"N", "4096"}, {"BM", "4"}, {"BN", "512"}};
    bench_stream(dev, "rmsnorm f32 16384x4096", "examples/rmsnorm.lua", rms, 4, reps);
    FeSet sm[] = {{"M", "16384"}, {"N", "4096"}, {"BM", "4"}, {"BN", "512"}};
    bench_stream(dev, "softmax f32 16384x4096", "examples/softmax.lua", sm, 4, reps);
    static const char *dtypes[] = {"bf16", "f8e4m3"};
    for (int i = 0; i < 2; i++) {
        bench_gemm(dev, dtypes[i], 4096, "128", "128", "64", reps);
        if (!quick)
            bench_gemm(dev, dtypes[i], 8192, "128", "128", "64", reps);
    }
    cu_close(dev);
    return 0;
}
