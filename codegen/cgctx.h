/* cgctx.h — the state of one kernel's LLVM IR emission (private to codegen/). */
#ifndef TILEC_CODEGEN_CGCTX_H
#define TILEC_CODEGEN_CGCTX_H

#include "codegen/cg.h"

/* A dot tile's key and how many times the kernel has it (micro.c). */
typedef struct CgTile {
    char *key;
    int n;
} CgTile;

typedef struct Cg {
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMBuilderRef b;
    const Kernel *k;
    const TargetInfo *t;
    LLVMValueRef fn;
    LLVMTypeRef i1, i8, i16, i32, i64, f32, ptr;
    LLVMValueRef *var;                  /* by Var.id (+1 slot: the block index) */
    LLVMValueRef *param;                /* by Param.index */
    LLVMValueRef *base;                 /* by Buffer.id */
    LLVMValueRef (*stride)[IR_MAX_RANK]; /* by Buffer.id */
    /* CPU streaming stores (stream.c): by Buffer.id, whether its marked
     * stores stream in this run (NULL: it has none) and the base they go
     * through (swapped with base[] in a streamed loop); the version of a loop
     * being emitted (1 streamed, -1 plain, 0 not a versioned loop) */
    LLVMValueRef *stream_ok, *stream_base;
    int stream_mode, stream_width; /* stream_width: lanes the loop is emitted at */
    bool in_vector_loop;           /* emitting a LOOP_VECTOR's body (store: its sums' lanes fold as a tree) */
    bool any_stream;
    /* GPU: the kernel issues wgmma, which reads shared memory through the
     * async proxy: every barrier is preceded by a proxy fence */
    bool async_proxy;
    /* GPU: the tensor maps of its TMA loads (codegen.h) and the byval
     * parameters that hold them */
    CgTmaMap tmaps[CG_MAX_TMAPS];
    LLVMValueRef tmap_param[CG_MAX_TMAPS];
    int ntmaps;
    /* CPU: the kernel's dot tiles by key; those it has more than once
     * become functions */
    CgTile *tiles;
    int ntiles;
} Cg;

LLVMValueRef cg_i64(Cg *c, int64_t v);
/* A CPU function's target attributes (cpu, features, vector widths). */
void cg_target_attrs(Cg *c, LLVMValueRef fn);
/* The enum attribute `name` (with a value for align and the like). */
LLVMAttributeRef cg_enum_attr(Cg *c, const char *name, uint64_t value);
LLVMValueRef cg_intrinsic(Cg *c, const char *name, LLVMTypeRef *tys, int ntys, LLVMValueRef *args,
                          int nargs);
/* A prefetch hint for the line at p (locality 3: prefetcht0, 2: t1). */
void cg_prefetch(Cg *c, LLVMValueRef p, int locality);
LLVMTypeRef cg_storage_type(Cg *c, DType t);
LLVMValueRef cg_bf16_to_f32(Cg *c, LLVMValueRef h);
LLVMValueRef cg_f32_to_bf16(Cg *c, LLVMValueRef f);
LLVMValueRef cg_widen(Cg *c, DType t, LLVMValueRef raw);
LLVMValueRef cg_convert(Cg *c, LLVMValueRef v, DType from, DType to);
LLVMValueRef cg_narrow(Cg *c, DType t, LLVMValueRef v);
LLVMValueRef cg_elem_ptr(Cg *c, const Buffer *b, LLVMValueRef const *idx);
LLVMValueRef cg_expr(Cg *c, const Expr *e);
void cg_stmt(Cg *c, const Stmt *s);
/* for var in [0, n): body.  kind/arg pick the loop metadata (vector width,
 * full unroll; a serial loop with arg > 0 unrolls arg times at most);
 * masked asks for a predicated vector tail. */
void cg_loop(Cg *c, Var *var, LLVMValueRef n, LoopKind kind, int arg, bool masked,
             void (*body)(Cg *, void *), void *ctx);
/* A serial loop LLVM keeps rolled (llvm.loop.unroll.disable). */
void cg_loop_rolled(Cg *c, Var *var, LLVMValueRef n, void (*body)(Cg *, void *), void *ctx);
/* vmath.c: e^x (2^x with base2) and ln x of an f32 in inline arithmetic (CPU). */
LLVMValueRef cg_exp(Cg *c, LLVMValueRef x, bool base2);
LLVMValueRef cg_log(Cg *c, LLVMValueRef x);
/* micro.c */
void cg_micro_gemm(Cg *c, const Stmt *s);
/* n stored elements of dtype t (f32, f16, bf16, or an fp8 format) as n
 * f32 lanes, exactly (NaN codes NaN). */
LLVMValueRef cg_widen_lanes(Cg *c, DType t, LLVMValueRef raw, int n);
/* Count the dot tiles under s (after the buffers' strides are set up). */
void cg_count_tiles(Cg *c, const Stmt *s);
/* A transposing copy nest as 8x8 register blocks (transpose.c); false:
 * not such a nest, nothing emitted. */
bool cg_transposed_copy(Cg *c, const Stmt *s);
/* stream.c: the run-time tests at entry, a vector loop with marked stores
 * in its streamed and plain versions (false: none, nothing emitted), the
 * tag of a marked store just built, the closing sfence, and the rewrite of
 * tagged vector stores into non-temporal ones after the LLVM passes. */
void cg_stream_setup(Cg *c);
bool cg_stream_loop(Cg *c, const Stmt *loop, int width);
void cg_stream_tag(Cg *c, const Stmt *s);
void cg_stream_fence(Cg *c);
void cg_stream_rewrite(LLVMContextRef ctx, LLVMModuleRef mod, LLVMTargetDataRef dl);
/* minmax.c: after the optimisation pipeline, float maximum and minimum
 * against a signed zero as maxps / minps, and (vrange: targets with
 * AVX-512DQ) the others, pairs and vector reductions, through vrangeps. */
void cg_minmax_rewrite(LLVMContextRef ctx, LLVMModuleRef mod, bool vrange);
/* ptx.c: the GPU kernel function, barriers, math without libm */
void cg_gpu_build_function(Cg *c);
void cg_gpu_barrier(Cg *c);
/* An unrolled loop of async stores of one 4-, 8- or 16-byte chunk as one
 * cp.async (false: not such a loop, compile it as usual). */
bool cg_gpu_async_chunk(Cg *c, const Stmt *s);
void cg_gpu_async(Cg *c, const Stmt *s); /* ASYNC_COMMIT, ASYNC_WAIT, WGMMA_WAIT */
void cg_gpu_mma(Cg *c, const Stmt *s); /* a threaded MICRO_GEMM */
void cg_gpu_tma(Cg *c, const Stmt *s); /* MBAR_INIT, MBAR_EXPECT, MBAR_WAIT, TMA_LOAD */
LLVMValueRef cg_gpu_math(Cg *c, const char *intrinsic, LLVMValueRef x); /* NULL: not special */
bool cg_gpu_check(const Kernel *k, Diag *d);

#endif
