/* test_cuda.c — the CUDA driver loader (runtime/cuda.h).
 *
 *   no_driver:   with TILEC_CUDA_LIB=/nonexistent, cu_open fails with one
 *                line that names libcuda (no GPU needed);
 *   tensor_map:  cuda_api.h's CUtensorMap layout (libclang's numbers) is the
 *                host compiler's, 128 bytes aligned to at least 64;
 *   tensor_map_args: the cuTensorMapEncodeTiled arguments tmap_args builds
 *                for gemm operand tiles (dims and boxes innermost first,
 *                byte strides, the enum values of cuda.h) and each limit
 *                that keeps a copy on cp.async;
 *   ptx_assembles: the hand-written PTX below assembles with ptxas for sm_90a
 *                when ptxas is installed, so a typo shows without a GPU;
 *   gpu:         on a machine with a GPU, memory round trips, a bad PTX load,
 *                and an f32 vector add over 1M elements checked against a C
 *                loop and timed; elsewhere "skipped: no CUDA device". */
#include "test.h"
#include "runtime/cuda.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>

#if TILEC_HAVE_CUDA
#include "cuda_api.h"
#endif

/* c[i] = a[i] + b[i] for i < n, one element per thread. */
static const char *VADD_PTX =
    ".version %s\n"
    ".target sm_%d%s\n"
    ".address_size 64\n"
    "\n"
    ".visible .entry vadd(.param .u64 vadd_a, .param .u64 vadd_b, .param .u64 vadd_c,\n"
    "                     .param .u32 vadd_n)\n"
    "{\n"
    "    .reg .pred %%p<2>;\n"
    "    .reg .b32 %%r<6>;\n"
    "    .reg .f32 %%f<4>;\n"
    "    .reg .b64 %%rd<11>;\n"
    "\n"
    "    ld.param.u64 %%rd1, [vadd_a];\n"
    "    ld.param.u64 %%rd2, [vadd_b];\n"
    "    ld.param.u64 %%rd3, [vadd_c];\n"
    "    ld.param.u32 %%r1, [vadd_n];\n"
    "    mov.u32 %%r2, %%ctaid.x;\n"
    "    mov.u32 %%r3, %%ntid.x;\n"
    "    mov.u32 %%r4, %%tid.x;\n"
    "    mad.lo.s32 %%r5, %%r2, %%r3, %%r4;\n"
    "    setp.ge.u32 %%p1, %%r5, %%r1;\n"
    "    @%%p1 bra DONE;\n"
    "    mul.wide.u32 %%rd4, %%r5, 4;\n"
    "    cvta.to.global.u64 %%rd5, %%rd1;\n"
    "    cvta.to.global.u64 %%rd6, %%rd2;\n"
    "    cvta.to.global.u64 %%rd7, %%rd3;\n"
    "    add.s64 %%rd8, %%rd5, %%rd4;\n"
    "    add.s64 %%rd9, %%rd6, %%rd4;\n"
    "    add.s64 %%rd10, %%rd7, %%rd4;\n"
    "    ld.global.f32 %%f1, [%%rd8];\n"
    "    ld.global.f32 %%f2, [%%rd9];\n"
    "    add.f32 %%f3, %%f1, %%f2;\n"
    "    st.global.f32 [%%rd10], %%f3;\n"
    "DONE:\n"
    "    ret;\n"
    "}\n";

/* The PTX ISA version that first knows sm: newer GPUs need newer PTX. */
static const char *ptx_version(int sm)
{
    return sm >= 120 ? "8.7" : sm >= 100 ? "8.6" : "8.0";
}

static void vadd_ptx(char *buf, size_t cap, int sm, const char *suffix)
{
    snprintf(buf, cap, VADD_PTX, ptx_version(sm), sm, suffix);
}

static bool one_line(const char *s) { return !strchr(s, '\n'); }

TEST(no_driver)
{
    const char *old = getenv("TILEC_CUDA_LIB");
    char *saved = old ? strdup(old) : NULL;
    setenv("TILEC_CUDA_LIB", "/nonexistent", 1);
    Diag d = {0};
    CuDevice *dev = cu_open(&d);
    CHECK(dev == NULL);
    CHECK(d.set);
    CHECK(one_line(d.msg));
#if TILEC_HAVE_CUDA
    CHECKF(strstr(d.msg, "libcuda") != NULL, "%s", d.msg);
    CHECKF(strstr(d.msg, "/nonexistent") != NULL, "%s", d.msg);
#else
    CHECKF(strstr(d.msg, "built without CUDA support") != NULL, "%s", d.msg);
#endif
    printf("  message: %s\n", d.msg);
    if (saved) {
        setenv("TILEC_CUDA_LIB", saved, 1);
        free(saved);
    } else {
        unsetenv("TILEC_CUDA_LIB");
    }
    cu_close(dev);
}

TEST(tensor_map)
{
#if TILEC_HAVE_CUDA
    CHECK(sizeof(CUtensorMap) == 128);
    CHECK(CU_API_TENSORMAP_SIZE == 128);
    CHECK(_Alignof(CUtensorMap) >= 64);
    CHECK(CU_API_TENSORMAP_ALIGN == _Alignof(CUtensorMap));
    CHECK(CU_API_COUNT == 30);
    /* The versioned names cuda.h #defines are what the loader looks up. */
    bool v2 = false;
    for (int i = 0; i < CU_API_COUNT; i++)
        v2 |= !strcmp(cu_api_symbol[i], "cuMemAlloc_v2");
    CHECK(v2);
    printf("  CUtensorMap: %zu bytes, aligned to %zu\n", sizeof(CUtensorMap), _Alignof(CUtensorMap));
#else
    printf("  skipped: built without cuda.h\n");
#endif
}

/* The arguments for examples/gemm.lua's A tile (bf16 [300, 4096], boxes
 * 128 x 64: 128-byte rows, the 128-byte swizzle wgmma reads) and an e4m3
 * [256, 96] tile of 64 x 32 with the 32-byte swizzle, and every reason TMA
 * refuses a copy. */
TEST(tensor_map_args)
{
    TmapArgs a;
    Diag d = {0};
    int64_t shape[2] = {300, 4096}, stride[2] = {4096, 1}, box[2] = {128, 64};
    CHECKF(tmap_args(DT_BF16, 2, shape, stride, box, 128, &a, &d), "%s", d.msg);
    CHECK(a.data_type == 9 && a.rank == 2);
    CHECK(a.dim[0] == 4096 && a.dim[1] == 300 && a.stride[0] == 8192);
    CHECK(a.box[0] == 64 && a.box[1] == 128 && a.elem_stride[0] == 1 && a.elem_stride[1] == 1);
    CHECK(a.swizzle == 3 && a.interleave == 0 && a.oob_fill == 0);
    int64_t s8[2] = {256, 96}, st8[2] = {96, 1}, b8[2] = {64, 32};
    CHECKF(tmap_args(DT_F8E4M3, 2, s8, st8, b8, 32, &a, &d), "%s", d.msg);
    CHECK(a.data_type == 0 && a.dim[0] == 96 && a.stride[0] == 96 && a.box[0] == 32 && a.swizzle == 1);
    struct { DType dt; int64_t shape[2], stride[2], box[2]; int swz; const char *why; } bad[] = {
        {DT_BF16, {300, 100}, {100, 1}, {128, 64}, 128, "multiple of 16 bytes below"}, /* 200-byte rows */
        {DT_BF16, {300, 4096}, {1, 300}, {128, 64}, 128, "not contiguous"},
        {DT_BF16, {300, 4096}, {4096, 1}, {512, 64}, 128, "outside 1..256"},
        {DT_F32, {300, 4096}, {4096, 1}, {128, 2}, 0, "inner extent is no multiple of 16"},
        {DT_BF16, {300, 4096}, {4096, 1}, {128, 128}, 128, "exceeds the swizzle span"},
        {DT_BF16, {300, 4096}, {4096, 1}, {128, 64}, 64, "exceeds the swizzle span"},
        {DT_F4E2M1, {300, 4096}, {4096, 1}, {128, 64}, 0, "no whole-byte"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        d = (Diag){0};
        bool ok = tmap_args(bad[i].dt, 2, bad[i].shape, bad[i].stride, bad[i].box, bad[i].swz, &a, &d);
        CHECKF(!ok && strstr(d.msg, bad[i].why), "case %zu: %s", i, ok ? "accepted" : d.msg);
    }
#if TILEC_HAVE_CUDA
    CHECK((int)TMAP_DT_UINT8 == (int)CU_TENSOR_MAP_DATA_TYPE_UINT8 && (int)TMAP_DT_BFLOAT16 == (int)CU_TENSOR_MAP_DATA_TYPE_BFLOAT16);
    CHECK((int)TMAP_DT_FLOAT16 == (int)CU_TENSOR_MAP_DATA_TYPE_FLOAT16 && (int)TMAP_DT_FLOAT32 == (int)CU_TENSOR_MAP_DATA_TYPE_FLOAT32);
    CHECK((int)TMAP_DT_INT32 == (int)CU_TENSOR_MAP_DATA_TYPE_INT32 && (int)TMAP_DT_INT64 == (int)CU_TENSOR_MAP_DATA_TYPE_INT64);
    CHECK((int)TMAP_SWIZZLE_32B == (int)CU_TENSOR_MAP_SWIZZLE_32B && (int)TMAP_SWIZZLE_64B == (int)CU_TENSOR_MAP_SWIZZLE_64B &&
          (int)TMAP_SWIZZLE_128B == (int)CU_TENSOR_MAP_SWIZZLE_128B && (int)TMAP_SWIZZLE_NONE == (int)CU_TENSOR_MAP_SWIZZLE_NONE);
    CHECK((int)TMAP_INTERLEAVE_NONE == (int)CU_TENSOR_MAP_INTERLEAVE_NONE && (int)TMAP_L2_256B == (int)CU_TENSOR_MAP_L2_PROMOTION_L2_256B);
    CHECK((int)TMAP_OOB_FILL_ZERO == (int)CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    CHECK(TMAP_BYTES == sizeof(CUtensorMap));
#endif
}

static bool find_ptxas(char *buf, size_t cap)
{
    const char *path = getenv("PATH");
    while (path && *path) {
        size_t n = strcspn(path, ":");
        snprintf(buf, cap, "%.*s/ptxas", (int)n, path);
        if (n && access(buf, X_OK) == 0)
            return true;
        path += n + (path[n] == ':');
    }
    snprintf(buf, cap, "/usr/local/cuda/bin/ptxas");
    return access(buf, X_OK) == 0;
}

TEST(ptx_assembles)
{
    char ptxas[1024];
    if (!find_ptxas(ptxas, sizeof ptxas)) {
        printf("  skipped: ptxas not found\n");
        return;
    }
    char ptx[4096], path[] = "/tmp/tilec_test_cuda_XXXXXX", cmd[2048];
    vadd_ptx(ptx, sizeof ptx, 90, "a");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK(write(fd, ptx, strlen(ptx)) == (ssize_t)strlen(ptx));
    close(fd);
    snprintf(cmd, sizeof cmd, "'%s' -arch=sm_90a -o /dev/null '%s' 2>&1", ptxas, path);
    int rc = system(cmd);
    CHECKF(rc == 0, "%s exited %d", cmd, rc);
    unlink(path);
}

/* ---------------------------------------------------------- on a GPU */

enum { N = 1 << 20 };

static void check_memory(CuDevice *dev)
{
    Diag d = {0};
    size_t bytes = 1 << 20;
    uint8_t *host = malloc(bytes), *back = malloc(bytes);
    for (size_t i = 0; i < bytes; i++)
        host[i] = (uint8_t)(i * 131 + 7);
    CuPtr a = cu_alloc(dev, bytes, &d), b = cu_alloc(dev, bytes, &d), z = cu_alloc(dev, 0, &d);
    CHECK(a && b && z);
    CHECK(cu_htod(dev, a, host, bytes, &d));
    CHECK(cu_dtoh(dev, back, a, bytes, &d));
    CHECK(memcmp(host, back, bytes) == 0);
    CHECK(cu_memset(dev, b, 0xa5, bytes, &d));
    CHECK(cu_dtoh(dev, back, b, bytes, &d));
    bool all = true;
    for (size_t i = 0; i < bytes; i++)
        all &= back[i] == 0xa5;
    CHECK(all);
    CHECK(cu_dtod(dev, b, a, bytes / 2, &d)); /* first half copied, second still 0xa5 */
    CHECK(cu_dtoh(dev, back, b, bytes, &d));
    CHECK(memcmp(back, host, bytes / 2) == 0 && back[bytes / 2] == 0xa5 && back[bytes - 1] == 0xa5);
    double ms = 0;
    CHECK(cu_time_dtod(dev, b, a, bytes, 5, &ms, &d));
    CHECK(ms > 0);
    CHECKF(!d.set, "%s", d.msg);
    cu_free(dev, a);
    cu_free(dev, b);
    cu_free(dev, z);
    free(host);
    free(back);
}

static void check_bad_ptx(CuDevice *dev)
{
    Diag d = {0};
    char ptx[4096];
    vadd_ptx(ptx, sizeof ptx, cu_sm_version(dev), "");
    char *typo = strstr(ptx, "add.f32");
    memcpy(typo, "abb", 3); /* an unknown instruction: the JIT log must say where */
    CHECK(cu_kernel_load(dev, ptx, "vadd", 0, &d) == NULL);
    CHECKF(strstr(d.msg, "cuModuleLoadDataEx") && strstr(d.msg, "CUDA_ERROR_"), "%s", d.msg);
    CHECK(one_line(d.msg));
    printf("  bad PTX: %s\n", d.msg);

    Diag d2 = {0};
    vadd_ptx(ptx, sizeof ptx, cu_sm_version(dev), "");
    CHECK(cu_kernel_load(dev, ptx, "no_such_kernel", 0, &d2) == NULL);
    CHECKF(strstr(d2.msg, "cuModuleGetFunction") && strstr(d2.msg, "CUDA_ERROR_NOT_FOUND"), "%s", d2.msg);
}

static void check_vadd(CuDevice *dev)
{
    Diag d = {0};
    char ptx[4096];
    vadd_ptx(ptx, sizeof ptx, cu_sm_version(dev), "");
    CuKernel *k = cu_kernel_load(dev, ptx, "vadd", 0, &d);
    CHECKF(k != NULL, "%s", d.msg);
    if (!k)
        return;
    CHECK(cu_kernel_regs(k) > 0);
    size_t bytes = N * sizeof(float);
    float *a = malloc(bytes), *b = malloc(bytes), *c = malloc(bytes);
    unsigned seed = 12345;
    for (int i = 0; i < N; i++) {
        a[i] = test_rand(&seed);
        b[i] = test_rand(&seed);
    }
    CuPtr da = cu_alloc(dev, bytes, &d), db = cu_alloc(dev, bytes, &d), dc = cu_alloc(dev, bytes, &d);
    CHECK(cu_htod(dev, da, a, bytes, &d) && cu_htod(dev, db, b, bytes, &d));
    CHECK(cu_memset(dev, dc, 0xff, bytes, &d)); /* NaNs: a thread that never ran shows */
    uint32_t n = N;
    void *params[] = {&da, &db, &dc, &n};
    unsigned grid[3] = {(N + 255) / 256, 1, 1};
    CHECK(cu_launch(k, grid, 256, 0, params, &d));
    CHECK(cu_sync(dev, &d));
    CHECK(cu_dtoh(dev, c, dc, bytes, &d));
    int bad = 0;
    for (int i = 0; i < N; i++)
        bad += !(c[i] == a[i] + b[i]);
    CHECKF(bad == 0, "%d of %d elements differ", bad, N);
    /* Past 48 KiB the function opts in; past the device's limit, a clear error. */
    CHECK(cu_launch(k, grid, 256, 100 * 1024, params, &d) && cu_sync(dev, &d));
    Diag big = {0};
    CHECK(!cu_launch(k, grid, 256, cu_max_shared_optin(dev) + 1, params, &big));
    CHECKF(strstr(big.msg, "dynamic shared memory"), "%s", big.msg);
    double ms = 0;
    CHECK(cu_time_launches(k, grid, 256, 0, params, 20, &ms, &d));
    CHECK(ms > 0);
    CHECKF(!d.set, "%s", d.msg);
    printf("  vadd %d f32: %.4f ms, %.0f GB/s (%d regs)\n", N, ms, 3.0 * bytes / (ms * 1e6),
           cu_kernel_regs(k));
    cu_free(dev, da);
    cu_free(dev, db);
    cu_free(dev, dc);
    cu_kernel_free(k);
    free(a);
    free(b);
    free(c);
}

TEST(gpu)
{
    Diag d = {0};
    CuDevice *dev = cu_open(&d);
    if (!dev) {
        /* No driver or no GPU is a machine without CUDA; any other failure
         * (a driver that cannot start) is a real one. */
        bool no_gpu = !strncmp(d.msg, "no CUDA", 7) || strstr(d.msg, "without CUDA support");
        CHECKF(no_gpu, "cu_open: %s%s%s)", d.msg, d.hint[0] ? " (hint: " : " (", d.hint);
        if (no_gpu) {
            printf("  (%s)\n", d.msg);
            printf("skipped: no CUDA device\n");
        }
        return;
    }
    CHECK(one_line(d.msg));
    printf("  %s: sm_%d, %d SMs, %zu B shared opt-in\n", cu_device_name(dev), cu_sm_version(dev),
           cu_sm_count(dev), cu_max_shared_optin(dev));
    CHECK(cu_sm_version(dev) >= 30 && cu_sm_count(dev) > 0 && cu_max_shared_optin(dev) >= 48 * 1024);
    check_memory(dev);
    check_bad_ptx(dev);
    check_vadd(dev);
    cu_close(dev);
}

int main(void)
{
    RUN(no_driver);
    RUN(tensor_map);
    RUN(tensor_map_args);
    RUN(ptx_assembles);
    RUN(gpu);
    return test_summary();
}
