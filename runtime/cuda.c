/* cuda.c — the CUDA driver, loaded with dlopen at run time (see cuda.h).
 * Function types and symbol names come from the generated cuda_api.h. */
#include "runtime/cuda.h"

#include "runtime/timing.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#if TILEC_HAVE_CUDA

#include "cuda_api.h"

/* Above this much dynamic shared memory a kernel must opt in per function. */
#define CU_DEFAULT_DYN_SMEM (48u * 1024u)

struct CuDevice {
    void *lib;
    struct CuApi api;
    CUdevice dev;
    CUcontext ctx; /* the primary context, retained */
    char name[256];
    int sm, sms;
    size_t smem_optin;
};

struct CuKernel {
    CuDevice *dev;
    CUmodule mod;
    CUfunction fn;
    size_t smem_allowed; /* dynamic shared memory the function may use */
    int regs;
    char entry[128];
};

/* "CALL failed: CUDA_ERROR_X (text)".  The name and text come from the driver
 * itself, so they stay right for error codes newer than our headers. */
static bool cu_fail(const CuDevice *dev, Diag *d, const char *call, CUresult r)
{
    const char *name = NULL, *text = NULL;
    if (dev->api.cuGetErrorName(r, &name) != CUDA_SUCCESS || !name)
        name = "unknown CUresult";
    if (dev->api.cuGetErrorString(r, &text) != CUDA_SUCCESS || !text)
        text = "no description";
    if (r == CUDA_ERROR_NO_DEVICE)
        return diag_error(d, (SrcLoc){0}, "no CUDA device (%s: %s: %s)", call, name, text);
    return diag_error(d, (SrcLoc){0}, "%s failed: %s (%d: %s)", call, name, (int)r, text);
}

static bool cu_ok(const CuDevice *dev, Diag *d, const char *call, CUresult r)
{
    return r == CUDA_SUCCESS || cu_fail(dev, d, call, r);
}

/* Driver calls act on the calling thread's current context; binding on
 * every entry lets any thread use the device. */
static bool cu_bind(CuDevice *dev, Diag *d)
{
    return cu_ok(dev, d, "cuCtxSetCurrent", dev->api.cuCtxSetCurrent(dev->ctx));
}

/* ----------------------------------------------------------- the device */

static void *cu_dlopen(Diag *d)
{
    const char *env = getenv("TILEC_CUDA_LIB");
    if (env && *env) {
        void *lib = dlopen(env, RTLD_NOW | RTLD_LOCAL);
        if (!lib)
            diag_error(d, (SrcLoc){0},
                       "no CUDA driver: %s not found (TILEC_CUDA_LIB names it instead of "
                       "libcuda.so.1): %s", env, dlerror());
        return lib;
    }
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (lib)
        return lib;
    char why[256]; /* libcuda.so.1's reason: the fallback's is less telling */
    snprintf(why, sizeof why, "%s", dlerror());
    lib = dlopen("libcuda.so", RTLD_NOW | RTLD_LOCAL);
    if (!lib)
        diag_error(d, (SrcLoc){0}, "no CUDA driver: libcuda.so.1 not found (%s)", why);
    return lib;
}

static bool cu_query(CuDevice *dev, Diag *d)
{
    struct CuApi *a = &dev->api;
    int major = 0, minor = 0, sms = 0, optin = 0;
    if (!cu_ok(dev, d, "cuDeviceGetName", a->cuDeviceGetName(dev->name, sizeof dev->name, dev->dev)) ||
        !cu_ok(dev, d, "cuDeviceGetAttribute(COMPUTE_CAPABILITY_MAJOR)",
               a->cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev->dev)) ||
        !cu_ok(dev, d, "cuDeviceGetAttribute(COMPUTE_CAPABILITY_MINOR)",
               a->cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev->dev)) ||
        !cu_ok(dev, d, "cuDeviceGetAttribute(MULTIPROCESSOR_COUNT)",
               a->cuDeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev->dev)) ||
        !cu_ok(dev, d, "cuDeviceGetAttribute(MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)",
               a->cuDeviceGetAttribute(&optin, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
                                       dev->dev)))
        return false;
    dev->sm = major * 10 + minor;
    dev->sms = sms;
    dev->smem_optin = (size_t)optin;
    return true;
}

static bool cu_start(CuDevice *dev, Diag *d)
{
    struct CuApi *a = &dev->api;
    int count = 0;
    CUresult r = a->cuInit(0);
    if (r != CUDA_SUCCESS) {
        cu_fail(dev, d, "cuInit", r);
        /* The driver maps memory where ASan's shadow gap is by default. */
        if (r == CUDA_ERROR_OUT_OF_MEMORY)
            diag_hint(d, "under AddressSanitizer, run with ASAN_OPTIONS=protect_shadow_gap=0");
        return false;
    }
    if (!cu_ok(dev, d, "cuDeviceGetCount", a->cuDeviceGetCount(&count)))
        return false;
    if (count < 1)
        return diag_error(d, (SrcLoc){0}, "no CUDA device (cuDeviceGetCount found 0)");
    if (!cu_ok(dev, d, "cuDeviceGet(0)", a->cuDeviceGet(&dev->dev, 0)) || !cu_query(dev, d) ||
        !cu_ok(dev, d, "cuDevicePrimaryCtxRetain", a->cuDevicePrimaryCtxRetain(&dev->ctx, dev->dev)))
        return false;
    return cu_bind(dev, d);
}

CuDevice *cu_open(Diag *d)
{
    void *lib = cu_dlopen(d);
    if (!lib)
        return NULL;
    CuDevice *dev = calloc(1, sizeof *dev);
    if (!dev) {
        dlclose(lib);
        diag_error(d, (SrcLoc){0}, "cu_open: out of memory");
        return NULL;
    }
    dev->lib = lib;
    char missing[128];
    if (!cu_api_load(lib, &dev->api, missing, sizeof missing)) {
        diag_error(d, (SrcLoc){0},
                   "CUDA driver lacks %s: it is older than the CUDA %d.%d headers tilec was "
                   "built with (update the NVIDIA driver)",
                   missing, CUDA_VERSION / 1000, CUDA_VERSION % 1000 / 10);
        cu_close(dev);
        return NULL;
    }
    if (!cu_start(dev, d)) {
        cu_close(dev);
        return NULL;
    }
    return dev;
}

void cu_close(CuDevice *dev)
{
    if (!dev)
        return;
    if (dev->ctx)
        dev->api.cuDevicePrimaryCtxRelease(dev->dev);
    dlclose(dev->lib);
    free(dev);
}

const char *cu_device_name(const CuDevice *dev) { return dev->name; }
int cu_sm_version(const CuDevice *dev) { return dev->sm; }
int cu_sm_count(const CuDevice *dev) { return dev->sms; }
size_t cu_max_shared_optin(const CuDevice *dev) { return dev->smem_optin; }

/* ------------------------------------------------------------- kernels */

/* The JIT log is several lines; the Diag is one.  Fold it into "a; b". */
static void fold_log(const char *log, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = log; *p && n + 3 < cap; p++) {
        if (*p != '\n')
            out[n++] = *p;
        else if (p[1]) {
            out[n++] = ';';
            out[n++] = ' ';
        }
    }
    out[n] = 0;
}

/* dst += a + b, cut at cap (the Diag's message is a fixed buffer). */
static void append(char *dst, size_t cap, const char *a, const char *b)
{
    size_t n = strlen(dst);
    for (const char *p = a; *p && n + 1 < cap; p++)
        dst[n++] = *p;
    for (const char *p = b; *p && n + 1 < cap; p++)
        dst[n++] = *p;
    dst[n] = 0;
}

static bool cu_load_module(CuKernel *k, const char *ptx, Diag *d)
{
    CuDevice *dev = k->dev;
    char log[4096] = {0};
    CUjit_option opt[] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
    void *val[] = {log, (void *)(uintptr_t)sizeof log};
    CUresult r = dev->api.cuModuleLoadDataEx(&k->mod, ptx, 2, opt, val);
    if (r == CUDA_SUCCESS)
        return true;
    char folded[sizeof log];
    fold_log(log, folded, sizeof folded);
    bool fresh = d && !d->set; /* append the JIT's reason only to our own message */
    cu_fail(dev, d, "cuModuleLoadDataEx", r);
    if (fresh && folded[0])
        append(d->msg, sizeof d->msg, ": ", folded);
    k->mod = NULL;
    return false;
}

/* Past 48 KiB of dynamic shared memory a function has to opt in. */
static bool cu_allow_smem(CuKernel *k, size_t dyn_smem, Diag *d)
{
    if (dyn_smem <= CU_DEFAULT_DYN_SMEM || dyn_smem <= k->smem_allowed)
        return true;
    CuDevice *dev = k->dev;
    if (dyn_smem > dev->smem_optin || dyn_smem > INT_MAX)
        return diag_error(d, (SrcLoc){0},
                          "kernel %s wants %zu bytes of dynamic shared memory; %s allows %zu per block",
                          k->entry, dyn_smem, dev->name, dev->smem_optin);
    char call[192];
    snprintf(call, sizeof call, "cuFuncSetAttribute(%s, MAX_DYNAMIC_SHARED_SIZE_BYTES, %zu)",
             k->entry, dyn_smem);
    if (!cu_ok(dev, d, call,
               dev->api.cuFuncSetAttribute(k->fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                           (int)dyn_smem)))
        return false;
    k->smem_allowed = dyn_smem;
    return true;
}

static bool cu_find_entry(CuKernel *k, Diag *d)
{
    CuDevice *dev = k->dev;
    char call[192];
    snprintf(call, sizeof call, "cuModuleGetFunction(\"%s\")", k->entry);
    if (!cu_ok(dev, d, call, dev->api.cuModuleGetFunction(&k->fn, k->mod, k->entry)))
        return false;
    snprintf(call, sizeof call, "cuFuncGetAttribute(%s, NUM_REGS)", k->entry);
    return cu_ok(dev, d, call, dev->api.cuFuncGetAttribute(&k->regs, CU_FUNC_ATTRIBUTE_NUM_REGS, k->fn));
}

CuKernel *cu_kernel_load(CuDevice *dev, const char *ptx, const char *entry, size_t dyn_smem, Diag *d)
{
    if (strlen(entry) >= sizeof ((CuKernel *)0)->entry) {
        diag_error(d, (SrcLoc){0}, "cu_kernel_load: entry name too long: %.60s...", entry);
        return NULL;
    }
    CuKernel *k = calloc(1, sizeof *k);
    if (!k) {
        diag_error(d, (SrcLoc){0}, "cu_kernel_load: out of memory");
        return NULL;
    }
    k->dev = dev;
    strcpy(k->entry, entry);
    if (!cu_bind(dev, d) || !cu_load_module(k, ptx, d) || !cu_find_entry(k, d) ||
        !cu_allow_smem(k, dyn_smem, d)) {
        cu_kernel_free(k);
        return NULL;
    }
    return k;
}

void cu_kernel_free(CuKernel *k)
{
    if (!k)
        return;
    if (k->mod && cu_bind(k->dev, NULL))
        k->dev->api.cuModuleUnload(k->mod);
    free(k);
}

int cu_kernel_regs(const CuKernel *k) { return k->regs; }

/* Enqueue only: the caller has bound the context. */
static bool cu_enqueue(CuKernel *k, const unsigned grid[3], unsigned block_threads, size_t dyn_smem,
                       void **params, Diag *d)
{
    CuDevice *dev = k->dev;
    if (!cu_allow_smem(k, dyn_smem, d))
        return false;
    CUresult r = dev->api.cuLaunchKernel(k->fn, grid[0], grid[1], grid[2], block_threads, 1, 1,
                                         (unsigned)dyn_smem, NULL, params, NULL);
    if (r == CUDA_SUCCESS)
        return true;
    char call[256];
    snprintf(call, sizeof call, "cuLaunchKernel(%s, grid %ux%ux%u, %u threads, %zu B shared)",
             k->entry, grid[0], grid[1], grid[2], block_threads, dyn_smem);
    return cu_fail(dev, d, call, r);
}

bool cu_launch(CuKernel *k, const unsigned grid[3], unsigned block_threads, size_t dyn_smem,
               void **params, Diag *d)
{
    return cu_bind(k->dev, d) && cu_enqueue(k, grid, block_threads, dyn_smem, params, d);
}

bool cu_sync(CuDevice *dev, Diag *d)
{
    return cu_bind(dev, d) && cu_ok(dev, d, "cuCtxSynchronize", dev->api.cuCtxSynchronize());
}

/* -------------------------------------------------------------- memory */

CuPtr cu_alloc(CuDevice *dev, size_t bytes, Diag *d)
{
    CUdeviceptr p = 0;
    char call[64];
    snprintf(call, sizeof call, "cuMemAlloc(%zu bytes)", bytes);
    if (!cu_bind(dev, d) || !cu_ok(dev, d, call, dev->api.cuMemAlloc(&p, bytes ? bytes : 1)))
        return 0;
    return (CuPtr)p;
}

void cu_free(CuDevice *dev, CuPtr p)
{
    if (p && cu_bind(dev, NULL))
        dev->api.cuMemFree((CUdeviceptr)p);
}

bool cu_htod(CuDevice *dev, CuPtr dst, const void *src, size_t bytes, Diag *d)
{
    return !bytes || (cu_bind(dev, d) &&
                      cu_ok(dev, d, "cuMemcpyHtoD", dev->api.cuMemcpyHtoD((CUdeviceptr)dst, src, bytes)));
}

bool cu_dtoh(CuDevice *dev, void *dst, CuPtr src, size_t bytes, Diag *d)
{
    return !bytes || (cu_bind(dev, d) &&
                      cu_ok(dev, d, "cuMemcpyDtoH", dev->api.cuMemcpyDtoH(dst, (CUdeviceptr)src, bytes)));
}

bool cu_dtod(CuDevice *dev, CuPtr dst, CuPtr src, size_t bytes, Diag *d)
{
    return !bytes || (cu_bind(dev, d) &&
                      cu_ok(dev, d, "cuMemcpyDtoD",
                            dev->api.cuMemcpyDtoD((CUdeviceptr)dst, (CUdeviceptr)src, bytes)));
}

bool cu_memset(CuDevice *dev, CuPtr dst, uint8_t v, size_t bytes, Diag *d)
{
    return !bytes || (cu_bind(dev, d) &&
                      cu_ok(dev, d, "cuMemsetD8", dev->api.cuMemsetD8((CUdeviceptr)dst, v, bytes)));
}

/* -------------------------------------------------------------- timing */

static void destroy_events(CuDevice *dev, CUevent *ev, int n)
{
    for (int i = 0; i < n; i++)
        if (ev[i])
            dev->api.cuEventDestroy(ev[i]);
    free(ev);
}

/* Event pair i brackets run i; one untimed run first, so module loading
 * and first-touch costs stay out of the samples. */
bool cu_time_op(CuDevice *dev, CuTimedOp op, void *ctx, int reps, double *ms, Diag *d)
{
    if (reps < 1)
        return diag_error(d, (SrcLoc){0}, "CUDA timing needs reps >= 1 (got %d)", reps);
    CUevent *ev = calloc((size_t)reps * 2, sizeof *ev);
    double *samples = calloc((size_t)reps, sizeof *samples);
    bool ok = ev && samples && cu_bind(dev, d) && op(ctx, d);
    if (!ev || !samples)
        diag_error(d, (SrcLoc){0}, "CUDA timing: out of memory for %d samples", reps);
    for (int i = 0; ok && i < 2 * reps; i++)
        ok = cu_ok(dev, d, "cuEventCreate", dev->api.cuEventCreate(&ev[i], CU_EVENT_DEFAULT));
    for (int i = 0; ok && i < reps; i++)
        ok = cu_ok(dev, d, "cuEventRecord", dev->api.cuEventRecord(ev[2 * i], NULL)) && op(ctx, d) &&
             cu_ok(dev, d, "cuEventRecord", dev->api.cuEventRecord(ev[2 * i + 1], NULL));
    ok = ok && cu_ok(dev, d, "cuEventSynchronize", dev->api.cuEventSynchronize(ev[2 * reps - 1]));
    for (int i = 0; ok && i < reps; i++) {
        float t = 0;
        ok = cu_ok(dev, d, "cuEventElapsedTime", dev->api.cuEventElapsedTime(&t, ev[2 * i], ev[2 * i + 1]));
        samples[i] = t;
    }
    if (ok)
        *ms = rt_median(samples, reps);
    if (ev)
        destroy_events(dev, ev, 2 * reps);
    free(samples);
    return ok;
}

bool cu_tensor_map_encode(CuDevice *dev, const TmapArgs *a, CuPtr base, void *map, Diag *d)
{
    if (base % 16 || (uintptr_t)map % TMAP_ALIGN)
        return diag_error(d, (SrcLoc){0}, "cuTensorMapEncodeTiled: tensor address 0x%llx or map %p misaligned "
                          "(16 and %d bytes needed)", (unsigned long long)base, map, TMAP_ALIGN);
    CUresult r = dev->api.cuTensorMapEncodeTiled(
        (CUtensorMap *)map, (CUtensorMapDataType)a->data_type, a->rank, (void *)(uintptr_t)base, a->dim,
        a->stride, a->box, a->elem_stride, (CUtensorMapInterleave)a->interleave,
        (CUtensorMapSwizzle)a->swizzle, (CUtensorMapL2promotion)a->l2_promotion,
        (CUtensorMapFloatOOBfill)a->oob_fill);
    return cu_ok(dev, d, "cuTensorMapEncodeTiled", r);
}

typedef struct LaunchOp {
    CuKernel *k;
    const unsigned *grid;
    unsigned block_threads;
    size_t dyn_smem;
    void **params;
} LaunchOp;

static bool launch_op(void *ctx, Diag *d)
{
    LaunchOp *l = ctx;
    return cu_enqueue(l->k, l->grid, l->block_threads, l->dyn_smem, l->params, d);
}

bool cu_time_launches(CuKernel *k, const unsigned grid[3], unsigned block_threads, size_t dyn_smem,
                      void **params, int reps, double *ms, Diag *d)
{
    LaunchOp l = {k, grid, block_threads, dyn_smem, params};
    return cu_time_op(k->dev, launch_op, &l, reps, ms, d);
}

typedef struct CopyOp {
    CuDevice *dev;
    CuPtr dst, src;
    size_t bytes;
} CopyOp;

static bool copy_op(void *ctx, Diag *d)
{
    CopyOp *c = ctx;
    return cu_ok(c->dev, d, "cuMemcpyDtoD",
                 c->dev->api.cuMemcpyDtoD((CUdeviceptr)c->dst, (CUdeviceptr)c->src, c->bytes));
}

bool cu_time_dtod(CuDevice *dev, CuPtr dst, CuPtr src, size_t bytes, int reps, double *ms, Diag *d)
{
    CopyOp c = {dev, dst, src, bytes};
    return cu_time_op(dev, copy_op, &c, reps, ms, d);
}

#else /* !TILEC_HAVE_CUDA: the API exists, every call says why it cannot work */

#define CU_NO_CUDA "tilec was built without CUDA support (cuda.h not found at build time)"

struct CuDevice {
    int unused;
};
struct CuKernel {
    int unused;
};

static bool no_cuda(Diag *d) { return diag_error(d, (SrcLoc){0}, CU_NO_CUDA); }

CuDevice *cu_open(Diag *d)
{
    no_cuda(d);
    return NULL;
}
void cu_close(CuDevice *dev) {}
const char *cu_device_name(const CuDevice *dev) { return "(no CUDA)"; }
int cu_sm_version(const CuDevice *dev) { return 0; }
int cu_sm_count(const CuDevice *dev) { return 0; }
size_t cu_max_shared_optin(const CuDevice *dev) { return 0; }
CuKernel *cu_kernel_load(CuDevice *dev, const char *ptx, const char *entry, size_t dyn_smem, Diag *d)
{
    no_cuda(d);
    return NULL;
}
void cu_kernel_free(CuKernel *k) {}
int cu_kernel_regs(const CuKernel *k) { return 0; }
bool cu_launch(CuKernel *k, const unsigned grid[3], unsigned block_threads, size_t dyn_smem,
               void **params, Diag *d)
{
    return no_cuda(d);
}
bool cu_sync(CuDevice *dev, Diag *d) { return no_cuda(d); }
CuPtr cu_alloc(CuDevice *dev, size_t bytes, Diag *d)
{
    no_cuda(d);
    return 0;
}
void cu_free(CuDevice *dev, CuPtr p) {}
bool cu_htod(CuDevice *dev, CuPtr dst, const void *src, size_t bytes, Diag *d) { return no_cuda(d); }
bool cu_dtoh(CuDevice *dev, void *dst, CuPtr src, size_t bytes, Diag *d) { return no_cuda(d); }
bool cu_dtod(CuDevice *dev, CuPtr dst, CuPtr src, size_t bytes, Diag *d) { return no_cuda(d); }
bool cu_memset(CuDevice *dev, CuPtr dst, uint8_t v, size_t bytes, Diag *d) { return no_cuda(d); }
bool cu_time_launches(CuKernel *k, const unsigned grid[3], unsigned block_threads, size_t dyn_smem,
                      void **params, int reps, double *ms, Diag *d)
{
    return no_cuda(d);
}
bool cu_time_dtod(CuDevice *dev, CuPtr dst, CuPtr src, size_t bytes, int reps, double *ms, Diag *d)
{
    return no_cuda(d);
}
bool cu_time_op(CuDevice *dev, CuTimedOp op, void *ctx, int reps, double *ms, Diag *d) { return no_cuda(d); }
bool cu_tensor_map_encode(CuDevice *dev, const TmapArgs *a, CuPtr base, void *map, Diag *d)
{
    return no_cuda(d);
}

#endif
