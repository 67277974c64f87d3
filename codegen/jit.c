/* jit.c — running generated code: ORC LLJIT in-process, objects and text
 * to files, and the launch of a kernel's grid on the runtime's pool. */
#include "codegen/cg.h"
#include "runtime/pool.h"
#include "runtime/timing.h"

#include <llvm-c/ExecutionEngine.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/OrcEE.h>
#include <stdlib.h>
#include <string.h>

struct CgJit {
    LLVMOrcLLJITRef jit;
    CgKernelFn fn;
    CgTimes times;
};

static bool llvm_error(Diag *d, const Kernel *k, const char *what, LLVMErrorRef e)
{
    char *msg = LLVMGetErrorMessage(e);
    diag_error(d, k->loc, "%s for kernel %s: %s", what, k->name, msg);
    LLVMDisposeErrorMessage(msg);
    return false;
}

/* With TILEC_PERF set, kernels are linked by RuntimeDyld with LLVM's perf
 * listener, which writes a jitdump (jit-PID.dump, under $JITDUMPDIR or
 * ~/.debug/jit): `perf record -k 1 ...`, then `perf inject --jit`, and
 * perf report / annotate show the kernels by name, instruction by
 * instruction.  Off by default: the default linker is JITLink. */
static LLVMOrcObjectLayerRef perf_linking_layer(void *ctx, LLVMOrcExecutionSessionRef es, const char *triple)
{
    (void)ctx;
    (void)triple;
    LLVMOrcObjectLayerRef layer = LLVMOrcCreateRTDyldObjectLinkingLayerWithSectionMemoryManager(es);
    LLVMJITEventListenerRef perf = LLVMCreatePerfJITEventListener();
    if (perf)
        LLVMOrcRTDyldObjectLinkingLayerRegisterJITEventListener(layer, perf);
    return layer;
}

CgJit *cg_jit_compile(const Kernel *k, const TargetInfo *t, Diag *d)
{
    if (!ir_target_runs_here(t)) {
        diag_error(d, k->loc, "this CPU cannot run code for target %s", t->name);
        return NULL;
    }
    LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
    LLVMTargetMachineRef tm = NULL;
    CgTimes times = {0};
    LLVMModuleRef mod = cg_build_module(LLVMOrcThreadSafeContextGetContext(tsc), k, t, &tm, &times, d);
    if (!mod) {
        LLVMOrcDisposeThreadSafeContext(tsc);
        return NULL;
    }
    double t0 = rt_now();
    CgJit *j = calloc(1, sizeof *j);
    LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
    /* The JIT owns the target machine from here on. */
    LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(
        builder, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(tm));
    const char *perf = getenv("TILEC_PERF");
    if (perf && *perf && strcmp(perf, "0"))
        LLVMOrcLLJITBuilderSetObjectLinkingLayerCreator(builder, perf_linking_layer, NULL);
    LLVMErrorRef e = LLVMOrcCreateLLJIT(&j->jit, builder);
    if (e) {
        llvm_error(d, k, "cannot create the JIT", e);
        LLVMDisposeModule(mod);
        LLVMOrcDisposeThreadSafeContext(tsc);
        free(j);
        return NULL;
    }
    LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(j->jit);
    /* dt_* conversion helpers and libm resolve from this process. */
    LLVMOrcDefinitionGeneratorRef gen;
    e = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(j->jit),
                                                             NULL, NULL);
    if (!e) {
        LLVMOrcJITDylibAddGenerator(jd, gen);
        e = LLVMOrcLLJITAddLLVMIRModule(j->jit, jd, LLVMOrcCreateNewThreadSafeModule(mod, tsc));
    }
    LLVMOrcDisposeThreadSafeContext(tsc);
    LLVMOrcExecutorAddress addr = 0;
    char claimed[300];
    snprintf(claimed, sizeof claimed, "%s.claimed", k->name);
    if (!e)
        e = LLVMOrcLLJITLookup(j->jit, &addr, claimed);
    if (e) {
        llvm_error(d, k, "JIT compilation failed", e);
        cg_jit_free(j);
        return NULL;
    }
    j->fn = (CgKernelFn)(uintptr_t)addr;
    times.machine = rt_now() - t0; /* the JIT makes the machine code at the lookup */
    j->times = times;
    return j;
}

CgKernelFn cg_jit_fn(const CgJit *j) { return j->fn; }

CgTimes cg_jit_times(const CgJit *j) { return j->times; }

void cg_jit_free(CgJit *j)
{
    if (!j)
        return;
    if (j->jit)
        LLVMOrcDisposeLLJIT(j->jit);
    free(j);
}

bool cg_emit_file(const Kernel *k, const TargetInfo *t, CgEmit what, const char *path, CgTimes *times, Diag *d)
{
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMTargetMachineRef tm = NULL;
    LLVMModuleRef mod = cg_build_module(ctx, k, t, &tm, times, d);
    bool ok = mod != NULL;
    char *err = NULL;
    double t0 = rt_now();
    if (ok && what == CG_EMIT_LLVM)
        ok = !LLVMPrintModuleToFile(mod, path, &err);
    else if (ok)
        ok = !LLVMTargetMachineEmitToFile(tm, mod, (char *)path,
                                          what == CG_EMIT_ASM ? LLVMAssemblyFile : LLVMObjectFile, &err);
    if (times)
        times->machine = what == CG_EMIT_LLVM ? 0 : rt_now() - t0;
    if (mod && !ok) {
        SrcLoc loc = {path, 0};
        diag_error(d, loc, "cannot write: %s", err ? err : "?");
    }
    LLVMDisposeMessage(err);
    if (mod)
        LLVMDisposeModule(mod);
    if (tm)
        LLVMDisposeTargetMachine(tm);
    LLVMContextDispose(ctx);
    return ok;
}

char *cg_emit_ptx(const Kernel *k, const TargetInfo *t, Diag *d)
{
    if (!t->gpu_sm) {
        diag_error(d, k->loc, "target %s is not a GPU: no PTX for it", t->name);
        return NULL;
    }
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMTargetMachineRef tm = NULL;
    LLVMModuleRef mod = cg_build_module(ctx, k, t, &tm, NULL, d);
    char *text = NULL, *err = NULL;
    LLVMMemoryBufferRef mb = NULL;
    if (mod && LLVMTargetMachineEmitToMemoryBuffer(tm, mod, LLVMAssemblyFile, &err, &mb))
        diag_error(d, k->loc, "internal error: LLVM could not emit PTX for %s: %s", k->name,
                   err ? err : "?");
    if (mb) {
        size_t n = LLVMGetBufferSize(mb);
        text = malloc(n + 1);
        memcpy(text, LLVMGetBufferStart(mb), n);
        text[n] = 0;
        LLVMDisposeMemoryBuffer(mb);
    }
    LLVMDisposeMessage(err);
    if (mod)
        LLVMDisposeModule(mod);
    if (tm)
        LLVMDisposeTargetMachine(tm);
    LLVMContextDispose(ctx);
    return text;
}

typedef struct Launch {
    CgKernelFn fn;
    void *const *args;
    const int64_t *params;
    int64_t nblocks;
    CgClaim claim;
} Launch;

/* One pool task per thread: the kernel claims its chunks itself. */
static void run_claiming(void *ctx, int64_t begin, int64_t end)
{
    (void)begin, (void)end;
    Launch *l = ctx;
    l->fn(l->args, l->params, 0, l->nblocks, &l->claim);
}

bool cg_launch(const Kernel *k, CgKernelFn fn, void *const *args, const int64_t *params,
               int nthreads, Diag *d)
{
    int64_t nblocks = 1;
    for (int g = 0; g < k->ngrid; g++) {
        int64_t n;
        if (!ir_eval_int(k->grid[g], params, &n))
            return diag_error(d, k->loc, "cannot evaluate the grid of kernel %s", k->name);
        if (n < 0)
            return diag_error(d, k->loc, "kernel %s: grid dimension %d is negative (%lld)", k->name, g,
                              (long long)n);
        nblocks *= n;
    }
    RtPool *pool = rt_pool_default();
    if (!pool)
        return diag_error(d, k->loc, "cannot start the thread pool");
    int use = rt_pool_use(pool, nthreads, nblocks);
    if (use == 1) {
        fn(args, params, 0, nblocks, NULL);
        return true;
    }
    /* the pool's chunks, claimed by the kernel: a slow thread's share
     * goes to the others */
    Launch l = {.fn = fn, .args = args, .params = params, .nblocks = nblocks};
    l.claim.grain = rt_pool_grain(use, nblocks);
    rt_pool_run(pool, use, use, run_claiming, &l);
    return true;
}
