/* cuda.h — running PTX on an NVIDIA GPU through the CUDA driver API: open the
 * device, load a module, launch, move memory, time launches with events.
 *
 * The driver is optional at run time: tilec never links libcuda but dlopens
 * it (libcuda.so.1, then libcuda.so; $TILEC_CUDA_LIB names another library)
 * in cu_open, so the same binary runs on machines without a GPU and only
 * cu_open fails there.  The entry points' types come from the toolkit's
 * cuda.h at build time (tools/gen_cuda_api); a build without cuda.h still has
 * this API, and every call fails with "tilec was built without CUDA support".
 *
 * Every error is one line in the Diag naming the driver call and CUDA's error
 * name and text.  The calls bind the device's primary context to the calling
 * thread, so any thread may use a CuDevice (one at a time). */
#ifndef TILEC_RUNTIME_CUDA_H
#define TILEC_RUNTIME_CUDA_H

#include "ir/ir.h"
#include "ir/tensormap.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct CuDevice CuDevice;
typedef struct CuKernel CuKernel;
typedef uint64_t CuPtr; /* a device address (CUdeviceptr) */

/* dlopen libcuda.so.1 (then libcuda.so), cuInit, device 0, retain+set its primary context.
 * Fails with "no CUDA driver: libcuda.so.1 not found" or "no CUDA device" etc. */
CuDevice *cu_open(Diag *d);
void cu_close(CuDevice *dev);
const char *cu_device_name(const CuDevice *dev);
int cu_sm_version(const CuDevice *dev);          /* 90 for sm_90 */
int cu_sm_count(const CuDevice *dev);
size_t cu_max_shared_optin(const CuDevice *dev); /* per-block opt-in shared memory bytes */

/* Load PTX text (cuModuleLoadDataEx with the JIT error-log options; the log goes into the Diag
 * message on failure), get `entry`, and if dyn_smem > 48 KiB set
 * CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES. */
CuKernel *cu_kernel_load(CuDevice *dev, const char *ptx, const char *entry, size_t dyn_smem, Diag *d);
void cu_kernel_free(CuKernel *k);
int cu_kernel_regs(const CuKernel *k);           /* CU_FUNC_ATTRIBUTE_NUM_REGS */
bool cu_launch(CuKernel *k, const unsigned grid[3], unsigned block_threads, size_t dyn_smem,
               void **params, Diag *d);          /* async on the default stream */
bool cu_sync(CuDevice *dev, Diag *d);

CuPtr cu_alloc(CuDevice *dev, size_t bytes, Diag *d);   /* 0 on failure; bytes 0 allocates 1 */
void cu_free(CuDevice *dev, CuPtr p);
bool cu_htod(CuDevice *dev, CuPtr dst, const void *src, size_t bytes, Diag *d);
bool cu_dtoh(CuDevice *dev, void *dst, CuPtr src, size_t bytes, Diag *d);
bool cu_dtod(CuDevice *dev, CuPtr dst, CuPtr src, size_t bytes, Diag *d);
bool cu_memset(CuDevice *dev, CuPtr dst, uint8_t v, size_t bytes, Diag *d);

/* cuTensorMapEncodeTiled(map, a, base): map is TMAP_BYTES, TMAP_ALIGN-aligned
 * host memory (passed by value as the kernel's .param), base the tensor's
 * device address (16-byte aligned, checked). */
bool cu_tensor_map_encode(CuDevice *dev, const TmapArgs *a, CuPtr base, void *map, Diag *d);

/* One operation to time (a launch, a copy, a library call), enqueued on
 * the default stream; false with *d set when it fails. */
typedef bool (*CuTimedOp)(void *ctx, Diag *d);
/* Time reps runs of op with an event pair around each, after one untimed
 * run (module loading, first touch); median ms into *ms. */
bool cu_time_op(CuDevice *dev, CuTimedOp op, void *ctx, int reps, double *ms, Diag *d);
/* Time `reps` launches with events (one event pair per launch); median ms into *ms. */
bool cu_time_launches(CuKernel *k, const unsigned grid[3], unsigned block_threads, size_t dyn_smem,
                      void **params, int reps, double *ms, Diag *d);
/* Time reps device-to-device copies of `bytes`; median ms. (Bandwidth peer for benchmarks.) */
bool cu_time_dtod(CuDevice *dev, CuPtr dst, CuPtr src, size_t bytes, int reps, double *ms, Diag *d);

#endif
