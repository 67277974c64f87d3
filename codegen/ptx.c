/* ptx.c — GPU Loop IR (threads, see ir.h) → an NVPTX kernel → PTX text.
 *
 * Kernel ABI (what runtime launches pass to cuLaunchKernel):
 *   NAME(ptr addrspace(1) arg0, ..., [128 x i8] tmap0 (byval), ..., i64 param0, ...)
 * with every argument pointer 16-byte aligned (the base of an allocation);
 * one pointer per argument buffer, then one 128-byte tensor map per
 * cg_tma_maps entry (grid-constant: `.param .align 64 .b8 NAME[128]`,
 * whose generic address, cvta.param, is the TMA's tensor-map operand),
 * then one i64 per runtime scalar, launched
 * as a 1-D grid of every block of the kernel's grid (linearised row-major,
 * like the CPU ABI) with k->nthreads threads and pass_shared_bytes(k) bytes
 * of dynamic shared memory.  Shared buffers are laid out in that dynamic
 * array in buffer order, 16-byte aligned; LOCAL buffers are per-thread
 * arrays that LLVM keeps in registers when their indices are constant.
 *
 * Math: the NVPTX back end has no libm, so exp and log are built here from
 * the hardware's ex2/lg2 approximations with range reduction (relative error
 * a few ulp, within --check's f32 tolerance); division and sqrt are the
 * correctly rounded PTX instructions. */
#include "codegen/cg.h"
#include "codegen/cgctx.h"
#include "passes/passes.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static LLVMValueRef sreg(Cg *c, const char *name)
{
    LLVMValueRef v = cg_intrinsic(c, name, NULL, 0, NULL, 0);
    return LLVMBuildZExt(c->b, v, c->i64, "");
}

static LLVMValueRef nvvm1(Cg *c, const char *name, LLVMValueRef x)
{
    return cg_intrinsic(c, name, NULL, 0, &x, 1);
}

static LLVMValueRef fconst(Cg *c, double v) { return LLVMConstReal(c->f32, v); }

/* v * 2^n for an integral n (as f32), exact: the power is built in two
 * halves so that neither overflows nor flushes before the product does. */
static LLVMValueRef scale_pow2(Cg *c, LLVMValueRef v, LLVMValueRef n)
{
    LLVMBuilderRef B = c->b;
    LLVMTypeRef ty = c->f32;
    n = cg_intrinsic(c, "llvm.maxnum", &ty, 1, (LLVMValueRef[]){n, fconst(c, -300)}, 2);
    n = cg_intrinsic(c, "llvm.minnum", &ty, 1, (LLVMValueRef[]){n, fconst(c, 300)}, 2);
    LLVMValueRef h = cg_intrinsic(c, "llvm.floor", &ty, 1,
                                  (LLVMValueRef[]){LLVMBuildFMul(B, n, fconst(c, 0.5), "")}, 1);
    LLVMValueRef s1 = nvvm1(c, "llvm.nvvm.ex2.approx.f", h); /* exact for integers */
    LLVMValueRef s2 = nvvm1(c, "llvm.nvvm.ex2.approx.f", LLVMBuildFSub(B, n, h, ""));
    return LLVMBuildFMul(B, LLVMBuildFMul(B, v, s1, ""), s2, "");
}

static LLVMValueRef keep_nan(Cg *c, LLVMValueRef x, LLVMValueRef r)
{
    return LLVMBuildSelect(c->b, LLVMBuildFCmp(c->b, LLVMRealUNO, x, x, ""), x, r, "");
}

/* 2^x = 2^n * 2^f, n = rint(x), |f| <= 1/2 exact. */
static LLVMValueRef gpu_exp2(Cg *c, LLVMValueRef x)
{
    LLVMTypeRef ty = c->f32;
    LLVMValueRef n = cg_intrinsic(c, "llvm.rint", &ty, 1, &x, 1);
    LLVMValueRef f = LLVMBuildFSub(c->b, x, n, "");
    LLVMValueRef inf = LLVMBuildFCmp(c->b, LLVMRealOEQ, x, fconst(c, INFINITY), "");
    LLVMValueRef r = scale_pow2(c, nvvm1(c, "llvm.nvvm.ex2.approx.f", f), n);
    r = LLVMBuildSelect(c->b, inf, fconst(c, INFINITY), r, "");
    return keep_nan(c, x, r);
}

/* e^x = 2^n * e^r with x = n ln2 + r, |r| <= ln2/2 (ln2 split in two parts
 * so that r is exact to f32 precision). */
static LLVMValueRef gpu_exp(Cg *c, LLVMValueRef x)
{
    LLVMBuilderRef B = c->b;
    LLVMTypeRef ty = c->f32;
    LLVMValueRef t = LLVMBuildFMul(B, x, fconst(c, M_LOG2E), "");
    LLVMValueRef n = cg_intrinsic(c, "llvm.rint", &ty, 1, &t, 1);
    LLVMValueRef r = cg_intrinsic(c, "llvm.fma", &ty, 1,
                                  (LLVMValueRef[]){n, fconst(c, -0.693145751953125), x}, 3);
    r = cg_intrinsic(c, "llvm.fma", &ty, 1, (LLVMValueRef[]){n, fconst(c, -1.428606765330187045e-06), r}, 3);
    LLVMValueRef e = scale_pow2(c, nvvm1(c, "llvm.nvvm.ex2.approx.f", LLVMBuildFMul(B, r, fconst(c, M_LOG2E), "")), n);
    e = LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOGT, x, fconst(c, 88.8), ""), fconst(c, INFINITY), e, "");
    e = LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOLT, x, fconst(c, -104.0), ""), fconst(c, 0.0), e, "");
    return keep_nan(c, x, e);
}

/* ln x = ln(m) + e ln2 with m in [0.75, 1.5): lg2.approx is accurate in
 * absolute terms, so the exponent is taken out exactly first. */
static LLVMValueRef gpu_log(Cg *c, LLVMValueRef x)
{
    LLVMBuilderRef B = c->b;
    LLVMValueRef bits = LLVMBuildBitCast(B, x, c->i32, "");
    /* exponent relative to 0.75 so the mantissa lands in [0.75, 1.5) */
    LLVMValueRef adj = LLVMBuildSub(B, bits, LLVMConstInt(c->i32, 0x3f400000, 0), "");
    LLVMValueRef e = LLVMBuildAShr(B, adj, LLVMConstInt(c->i32, 23, 0), "");
    LLVMValueRef mbits = LLVMBuildSub(B, bits, LLVMBuildShl(B, e, LLVMConstInt(c->i32, 23, 0), ""), "");
    LLVMValueRef m = LLVMBuildBitCast(B, mbits, c->f32, "");
    LLVMValueRef lm = LLVMBuildFMul(B, nvvm1(c, "llvm.nvvm.lg2.approx.f", m), fconst(c, M_LN2), "");
    LLVMValueRef ef = LLVMBuildSIToFP(B, e, c->f32, "");
    LLVMValueRef r = LLVMBuildFAdd(B, LLVMBuildFMul(B, ef, fconst(c, M_LN2), ""), lm, "");
    /* zero, subnormal, negative, inf and NaN inputs: the approximation's own
     * answer is right there (it handles the specials) */
    LLVMValueRef normal = LLVMBuildAnd(
        B, LLVMBuildFCmp(B, LLVMRealOGE, x, fconst(c, 1.17549435e-38), ""),
        LLVMBuildFCmp(B, LLVMRealOLT, x, fconst(c, INFINITY), ""), "");
    LLVMValueRef plain = LLVMBuildFMul(B, nvvm1(c, "llvm.nvvm.lg2.approx.f", x), fconst(c, M_LN2), "");
    return LLVMBuildSelect(B, normal, r, plain, "");
}

LLVMValueRef cg_gpu_math(Cg *c, const char *name, LLVMValueRef x)
{
    if (!strcmp(name, "llvm.exp"))
        return gpu_exp(c, x);
    if (!strcmp(name, "llvm.exp2"))
        return gpu_exp2(c, x);
    if (!strcmp(name, "llvm.log"))
        return gpu_log(c, x);
    return NULL;
}

/* ------------------------------------------------------------ function */

static void add_annotation(Cg *c, const char *key, int value)
{
    LLVMValueRef ops[3] = {c->fn, LLVMMDStringInContext(c->ctx, key, (unsigned)strlen(key)),
                           LLVMConstInt(c->i32, (unsigned)value, 0)};
    LLVMAddNamedMetadataOperand(c->mod, "nvvm.annotations", LLVMMDNodeInContext(c->ctx, ops, 3));
}

static int64_t scratch_elems(const Buffer *b)
{
    int64_t n = 1, d;
    for (int i = 0; i < b->rank; i++) {
        ir_expr_is_const(b->shape[i], &d);
        n *= d;
    }
    return n;
}

/* The largest alignment a shared buffer asks for (wgmma operands: 1024,
 * which their swizzle and descriptors assume of the array itself). */
static unsigned smem_align(const Kernel *k)
{
    unsigned al = 16;
    for (int i = k->nargs; i < k->nbufs; i++)
        if (k->bufs[i]->scope == SCOPE_SHARED && (unsigned)k->bufs[i]->align > al)
            al = (unsigned)k->bufs[i]->align;
    return al;
}

static void setup_gpu_buffers(Cg *c)
{
    const Kernel *k = c->k;
    LLVMTypeRef i8arr = LLVMArrayType2(c->i8, 0);
    LLVMValueRef smem = NULL;
    for (int i = 0; i < k->nbufs; i++) {
        const Buffer *b = k->bufs[i];
        for (int d = 0; d < b->rank; d++)
            c->stride[b->id][d] = cg_expr(c, b->stride[d]);
        if (b->scope == SCOPE_GLOBAL) {
            c->base[b->id] = LLVMGetParam(c->fn, (unsigned)i);
        } else if (b->scope == SCOPE_SHARED) {
            if (!smem) {
                smem = LLVMAddGlobalInAddressSpace(c->mod, i8arr, "tilec_smem", 3);
                LLVMSetLinkage(smem, LLVMExternalLinkage);
                LLVMSetAlignment(smem, smem_align(k));
            }
            LLVMValueRef off = cg_i64(c, ir_shared_offset(k, b));
            c->base[b->id] = LLVMBuildGEP2(c->b, c->i8, smem, &off, 1, b->name);
        } else {
            LLVMTypeRef arr = LLVMArrayType2(cg_storage_type(c, b->dtype), (uint64_t)scratch_elems(b));
            c->base[b->id] = LLVMBuildAlloca(c->b, arr, b->name);
        }
    }
}

static bool uses_wgmma(const Stmt *s)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            if (uses_wgmma(s->u.seq.items[i]))
                return true;
        return false;
    case ST_FOR: return uses_wgmma(s->u.loop.body);
    case ST_IF: return uses_wgmma(s->u.if_.then_) || (s->u.if_.else_ && uses_wgmma(s->u.if_.else_));
    case ST_MICRO_GEMM: return s->u.gemm.desc != NULL;
    default: return false;
    }
}

/* The tensor-map parameters: byval [128 x i8], 64-aligned, and marked
 * grid_constant, so the TMA reads them where they are (param space, by
 * generic address) instead of a local copy. */
static void tmap_params(Cg *c)
{
    const Kernel *k = c->k;
    if (!c->ntmaps)
        return;
    LLVMTypeRef map = LLVMArrayType2(c->i8, TMAP_BYTES);
    unsigned byval = LLVMGetEnumAttributeKindForName("byval", 5);
    LLVMValueRef idx[CG_MAX_TMAPS];
    for (int j = 0; j < c->ntmaps; j++) {
        unsigned slot = (unsigned)cg_gpu_param_slot(k, c->ntmaps, CG_PARAM_TMAP, j);
        LLVMAddAttributeAtIndex(c->fn, slot + 1, LLVMCreateTypeAttribute(c->ctx, byval, map));
        LLVMAddAttributeAtIndex(c->fn, slot + 1, cg_enum_attr(c, "align", TMAP_ALIGN));
        c->tmap_param[j] = LLVMGetParam(c->fn, slot);
        idx[j] = LLVMConstInt(c->i32, slot + 1, 0); /* (1-based) */
    }
    const char *key = "grid_constant";
    LLVMValueRef ops[3] = {c->fn, LLVMMDStringInContext(c->ctx, key, (unsigned)strlen(key)),
                           LLVMMDNodeInContext(c->ctx, idx, (unsigned)c->ntmaps)};
    LLVMAddNamedMetadataOperand(c->mod, "nvvm.annotations", LLVMMDNodeInContext(c->ctx, ops, 3));
}

void cg_gpu_build_function(Cg *c)
{
    const Kernel *k = c->k;
    c->ntmaps = cg_tma_maps(k, c->tmaps);
    int n = k->nargs + c->ntmaps + k->nparams;
    LLVMTypeRef *ps = calloc((size_t)n + 1, sizeof *ps);
    LLVMTypeRef gptr = LLVMPointerTypeInContext(c->ctx, 1);
    for (int i = 0; i < k->nargs; i++)
        ps[cg_gpu_param_slot(k, c->ntmaps, CG_PARAM_ARG, i)] = gptr;
    for (int j = 0; j < c->ntmaps; j++)
        ps[cg_gpu_param_slot(k, c->ntmaps, CG_PARAM_TMAP, j)] = LLVMPointerTypeInContext(c->ctx, 0);
    for (int i = 0; i < k->nparams; i++)
        ps[cg_gpu_param_slot(k, c->ntmaps, CG_PARAM_SCALAR, i)] = c->i64;
    LLVMTypeRef fty = LLVMFunctionType(LLVMVoidTypeInContext(c->ctx), ps, (unsigned)n, 0);
    free(ps);
    c->fn = LLVMAddFunction(c->mod, k->name, fty);
    LLVMSetFunctionCallConv(c->fn, LLVMPTXKernelCallConv);
    add_annotation(c, "kernel", 1);
    add_annotation(c, "maxntidx", k->nthreads);
    tmap_params(c);
    /* Arguments are distinct tensors (the runtime allocates each one), so
     * loads of inputs may take the read-only path. */
    for (int i = 0; i < k->nargs; i++) {
        LLVMAddAttributeAtIndex(c->fn, (unsigned)i + 1, cg_enum_attr(c, "noalias", 0));
        /* whole allocations (cuMemAlloc: 256-byte aligned): lets 16-byte
         * vector accesses be proven aligned */
        LLVMAddAttributeAtIndex(c->fn, (unsigned)i + 1, cg_enum_attr(c, "align", 16));
        if (k->bufs[i]->dir == ARG_IN)
            LLVMAddAttributeAtIndex(c->fn, (unsigned)i + 1, cg_enum_attr(c, "readonly", 0));
    }
    LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "entry");
    LLVMPositionBuilderAtEnd(c->b, entry);
    for (int i = 0; i < k->nparams; i++)
        c->param[i] = LLVMGetParam(c->fn, (unsigned)cg_gpu_param_slot(k, c->ntmaps, CG_PARAM_SCALAR, i));
    c->async_proxy = uses_wgmma(k->body);
    setup_gpu_buffers(c);
    c->var[k->thread_var->id] = sreg(c, "llvm.nvvm.read.ptx.sreg.tid.x");
    LLVMValueRef rest = sreg(c, "llvm.nvvm.read.ptx.sreg.ctaid.x");
    for (int g = k->ngrid - 1; g >= 0; g--) {
        LLVMValueRef ext = cg_expr(c, k->grid[g]);
        c->var[k->grid_var[g]->id] = LLVMBuildSRem(c->b, rest, ext, k->grid_var[g]->name);
        rest = LLVMBuildSDiv(c->b, rest, ext, "");
    }
    cg_stmt(c, k->body);
    LLVMBuildRetVoid(c->b);
}

/* Every PTX instruction tilec writes as inline asm (mma, ldmatrix, wgmma,
 * barriers, TMA) goes through here.  The call is convergent, as clang marks
 * inline asm in CUDA: warp- and warpgroup-wide `.aligned` instructions must
 * be executed by all their threads together, and without the attribute
 * LLVM may sink one into a branch some lanes skip (it moved the mma.sync
 * of a column tile into the store of its only column inside N: wrong values
 * on the device, invisible to the SIMT interpreter). */
static LLVMValueRef asm_call(Cg *c, LLVMTypeRef fty, const char *text, const char *cons, bool side_effects,
                             LLVMValueRef *args, int nargs)
{
    LLVMValueRef fn = LLVMGetInlineAsm(fty, (char *)text, strlen(text), (char *)cons, strlen(cons), side_effects,
                                       0, LLVMInlineAsmDialectATT, 0);
    LLVMValueRef call = LLVMBuildCall2(c->b, fty, fn, args, (unsigned)nargs, "");
    LLVMAddCallSiteAttribute(call, LLVMAttributeFunctionIndex, cg_enum_attr(c, "convergent", 0));
    return call;
}

static void asm_void(Cg *c, const char *text, const char *cons, LLVMValueRef *args, int nargs);

/* In a kernel with wgmma, shared memory written by threads (stores, and
 * cp.async once waited for) is read by wgmma through the async proxy: each
 * writer fences its writes for that proxy before the barrier that orders
 * them before the wgmma (PTX ISA, memory consistency model: proxies). */
void cg_gpu_barrier(Cg *c)
{
    if (c->async_proxy)
        asm_void(c, "fence.proxy.async.shared::cta;", "~{memory}", NULL, 0);
    cg_intrinsic(c, "llvm.nvvm.barrier0", NULL, 0, NULL, 0);
}

/* ------------------------------------------------------ async copies */

enum { ASM_MAX_ARGS = IR_MAX_RANK + 3 }; /* a TMA load: address, map, coordinates, mbarrier */

static void asm_void(Cg *c, const char *text, const char *cons, LLVMValueRef *args, int nargs)
{
    LLVMTypeRef tys[ASM_MAX_ARGS];
    for (int i = 0; i < nargs; i++)
        tys[i] = LLVMTypeOf(args[i]);
    LLVMTypeRef fty = LLVMFunctionType(LLVMVoidTypeInContext(c->ctx), tys, (unsigned)nargs, 0);
    asm_call(c, fty, text, cons, true, args, nargs);
}

static void cg_gpu_wgmma_wait(Cg *c, const Stmt *s);

void cg_gpu_async(Cg *c, const Stmt *s)
{
    if (s->op == ST_WGMMA_WAIT) {
        cg_gpu_wgmma_wait(c, s);
        return;
    }
    if (s->op == ST_ASYNC_COMMIT) {
        asm_void(c, "cp.async.commit_group;", "~{memory}", NULL, 0);
        return;
    }
    char text[64];
    snprintf(text, sizeof text, "cp.async.wait_group %d;", s->u.wait.pending);
    asm_void(c, text, "~{memory}", NULL, 0);
    cg_gpu_barrier(c);
}

static void chunk_body(Cg *c, void *s) { cg_stmt(c, s); }

/* for e: unroll < V { async dst[.., x + e] = src[.., y + e] }: one
 * cp.async of the V elements when both ends are aligned to the chunk
 * (checked at run time: a row stride need not be), else V plain stores. */
bool cg_gpu_async_chunk(Cg *c, const Stmt *s)
{
    const Stmt *st = s->u.loop.body;
    while (st->op == ST_SEQ && st->u.seq.n == 1)
        st = st->u.seq.items[0];
    int64_t V;
    if (s->u.loop.kind != LOOP_UNROLL || !ir_expr_is_const(s->u.loop.extent, &V) || st->op != ST_STORE ||
        !st->u.store.async)
        return false;
    const Buffer *dst = st->u.store.buf, *src = st->u.store.value->buf;
    int64_t bytes = V * dt_bits(dst->dtype) / 8;
    /* cp.async fills shared memory only: a tile that became registers (or
     * global) takes plain stores, which land at once */
    if (dst->scope != SCOPE_SHARED || dt_bits(dst->dtype) < 8 || (bytes != 4 && bytes != 8 && bytes != 16))
        return false;
    c->var[s->u.loop.var->id] = cg_i64(c, 0);
    LLVMValueRef di[IR_MAX_RANK], si[IR_MAX_RANK];
    for (int d = 0; d < dst->rank; d++)
        di[d] = cg_expr(c, st->u.store.idx[d]);
    for (int d = 0; d < src->rank; d++)
        si[d] = cg_expr(c, st->u.store.value->args[d]);
    LLVMValueRef dp = LLVMBuildPtrToInt(c->b, cg_elem_ptr(c, dst, di), c->i64, "");
    LLVMValueRef sp = LLVMBuildPtrToInt(c->b, cg_elem_ptr(c, src, si), c->i64, "");
    LLVMValueRef mis = LLVMBuildAnd(c->b, LLVMBuildOr(c->b, dp, sp, ""), cg_i64(c, bytes - 1), "");
    LLVMBasicBlockRef fast = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "cp_async");
    LLVMBasicBlockRef slow = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "cp_plain");
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "cp_join");
    LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntEQ, mis, cg_i64(c, 0), ""), fast, slow);
    LLVMPositionBuilderAtEnd(c->b, fast);
    char text[96];
    snprintf(text, sizeof text, "cp.async.%s.shared.global [$0], [$1], %lld;", bytes == 16 ? "cg" : "ca",
             (long long)bytes);
    LLVMValueRef args[2] = {dp, sp};
    asm_void(c, text, "l,l,~{memory}", args, 2);
    LLVMBuildBr(c->b, join);
    LLVMPositionBuilderAtEnd(c->b, slow);
    cg_loop(c, s->u.loop.var, cg_expr(c, s->u.loop.extent), LOOP_UNROLL, 0, false, chunk_body,
            (void *)s->u.loop.body);
    LLVMBuildBr(c->b, join);
    LLVMPositionBuilderAtEnd(c->b, join);
    return true;
}

/* ------------------------------------------------- TMA and mbarriers */

/* The shared address of mbarrier bar[slot], as cp.async takes addresses. */
static LLVMValueRef mbar_addr(Cg *c, const Stmt *s)
{
    LLVMValueRef slot = cg_expr(c, s->u.mbar.slot);
    return LLVMBuildPtrToInt(c->b, cg_elem_ptr(c, s->u.mbar.bar, &slot), c->i64, "");
}

static LLVMValueRef i32_of(Cg *c, const Expr *e) { return LLVMBuildTrunc(c->b, cg_expr(c, e), c->i32, ""); }

/* One cp.async.bulk.tensor per box: coordinates innermost first, the box's
 * column of the destination at c * (box bytes) (ir.h, "TMA"). */
static void tma_load(Cg *c, const Stmt *s)
{
    const Region *src = &s->u.mbar.src;
    const Buffer *x = s->u.mbar.dst.buf;
    int rank = x->rank, map = cg_tma_map_of(c->k, c->tmaps, c->ntmaps, s);
    int64_t box[IR_MAX_RANK], nbox = ir_tma_box(s, box), bytes = dt_bits(x->dtype) / 8;
    for (int d = 0; d < rank; d++)
        bytes *= box[d];
    LLVMValueRef zero = cg_i64(c, 0), idx[IR_MAX_RANK];
    for (int d = 0; d < rank; d++)
        idx[d] = zero;
    LLVMValueRef dst = LLVMBuildPtrToInt(c->b, cg_elem_ptr(c, x, idx), c->i64, "");
    LLVMValueRef tmap = LLVMBuildPtrToInt(c->b, c->tmap_param[map], c->i64, "");
    LLVMValueRef bar = mbar_addr(c, s);
    char text[256], cons[64];
    int len = snprintf(text, sizeof text,
                       "cp.async.bulk.tensor.%dd.shared::cluster.global.mbarrier::complete_tx::bytes [$0], [$1, {",
                       rank);
    for (int i = 0; i < rank; i++)
        len += snprintf(text + len, sizeof text - (size_t)len, "%s$%d", i ? ", " : "", 2 + i);
    snprintf(text + len, sizeof text - (size_t)len, "}], [$%d];", 2 + rank);
    len = snprintf(cons, sizeof cons, "l,l");
    for (int i = 0; i < rank; i++)
        len += snprintf(cons + len, sizeof cons - (size_t)len, ",r");
    snprintf(cons + len, sizeof cons - (size_t)len, ",l,~{memory}");
    for (int64_t b = 0; b < nbox; b++) {
        LLVMValueRef args[IR_MAX_RANK + 3];
        args[0] = LLVMBuildAdd(c->b, dst, cg_i64(c, b * bytes), "");
        args[1] = tmap;
        for (int i = 0; i < rank; i++) { /* innermost first */
            int d = rank - 1 - i;
            args[2 + i] = i32_of(c, src->off[d]);
            if (i == 0 && b)
                args[2] = LLVMBuildAdd(c->b, args[2], LLVMConstInt(c->i32, (uint64_t)(b * box[d]), 0), "");
        }
        args[2 + rank] = bar;
        asm_void(c, text, cons, args, rank + 3);
    }
}

void cg_gpu_tma(Cg *c, const Stmt *s)
{
    LLVMValueRef args[2];
    switch (s->op) {
    case ST_MBAR_INIT:
        /* then make the initialised mbarrier visible to the TMA unit (the
         * async proxy) before the barrier that publishes it */
        args[0] = mbar_addr(c, s);
        args[1] = i32_of(c, s->u.mbar.arg);
        asm_void(c, "mbarrier.init.shared::cta.b64 [$0], $1;", "l,r,~{memory}", args, 2);
        asm_void(c, "fence.mbarrier_init.release.cluster;", "~{memory}", NULL, 0);
        asm_void(c, "fence.proxy.async.shared::cta;", "~{memory}", NULL, 0);
        break;
    case ST_MBAR_EXPECT:
        args[0] = mbar_addr(c, s);
        args[1] = i32_of(c, s->u.mbar.arg);
        asm_void(c, "mbarrier.arrive.expect_tx.shared::cta.b64 _, [$0], $1;", "l,r,~{memory}", args, 2);
        break;
    case ST_MBAR_WAIT:
        args[0] = mbar_addr(c, s);
        args[1] = i32_of(c, s->u.mbar.arg);
        asm_void(c,
                 "{\n.reg .pred p;\nTILEC_MBAR_WAIT_${:uid}:\n"
                 "mbarrier.try_wait.parity.shared::cta.b64 p, [$0], $1;\n"
                 "@!p bra TILEC_MBAR_WAIT_${:uid};\n}",
                 "l,r,~{memory}", args, 2);
        break;
    default: tma_load(c, s); break;
    }
}

/* What the GPU back end cannot compile yet, found before building. */
bool cg_gpu_check(const Kernel *k, Diag *d)
{
    if (!k->nthreads)
        return diag_error(d, k->loc, "kernel %s reached the GPU back end without threads "
                          "(internal: pass_threads did not run)", k->name);
    return true;
}

/* --------------------------------------------------------- tensor cores */

typedef struct Mma {
    const Stmt *s;
    MmaLayout L;
    LLVMValueRef g, q, row0, col0; /* lane/4, lane%4, the warp tile's corner */
    LLVMValueRef lrow, lcol;       /* this lane's ldmatrix row for A: (l%8 + 8(l/8%2), 8e(l/16)) */
    LLVMValueRef brow, bcol;       /* and for B's tiles: (l%8 + 8(l/16), 8e(l/8%2)) */
    LLVMValueRef kk;               /* the current k step */
    int kstep;                     /* k of one mma: 16 (bf16, f16) or 32 (fp8) */
    int e;                         /* elements per 16-bit unit: 1, or 2 for fp8 */
} Mma;

static LLVMValueRef add(Cg *c, LLVMValueRef a, int64_t b) { return LLVMBuildAdd(c->b, a, cg_i64(c, b), ""); }

/* Two consecutive 16-bit elements of a row, as the 32-bit register mma
 * takes (lower k in the low half). */
static LLVMValueRef load_pair(Cg *c, const Buffer *b, LLVMValueRef row, LLVMValueRef col)
{
    LLVMValueRef idx[2] = {row, col};
    LLVMValueRef p = cg_elem_ptr(c, b, idx);
    LLVMValueRef v = LLVMBuildLoad2(c->b, c->i32, p, "");
    LLVMSetAlignment(v, 4);
    return v;
}

/* B stored [K, N]: elements (k, n) and (k+1, n) packed into one register. */
static LLVMValueRef load_kpair(Cg *c, const Buffer *b, LLVMValueRef k, LLVMValueRef n)
{
    LLVMValueRef i0[2] = {k, n}, i1[2] = {add(c, k, 1), n};
    LLVMValueRef lo = LLVMBuildLoad2(c->b, c->i16, cg_elem_ptr(c, b, i0), "");
    LLVMValueRef hi = LLVMBuildLoad2(c->b, c->i16, cg_elem_ptr(c, b, i1), "");
    hi = LLVMBuildShl(c->b, LLVMBuildZExt(c->b, hi, c->i32, ""), LLVMConstInt(c->i32, 16, 0), "");
    return LLVMBuildOr(c->b, LLVMBuildZExt(c->b, lo, c->i32, ""), hi, "");
}

/* ldmatrix.x4: four 8x8 tiles of 16-bit elements from shared memory; lane
 * l gives the address of row l % 8 of tile l / 8 and receives, in register
 * i, elements (l / 4, 2 (l % 4) .. +1) of tile i — the mma fragment layout. */
static void ldmatrix4(Cg *c, LLVMValueRef row_ptr, LLVMValueRef out[4])
{
    LLVMTypeRef i4[4] = {c->i32, c->i32, c->i32, c->i32};
    LLVMTypeRef ret = LLVMStructTypeInContext(c->ctx, i4, 4, 0);
    LLVMTypeRef p = c->i64;
    LLVMTypeRef fty = LLVMFunctionType(ret, &p, 1, 0);
    const char *text = "ldmatrix.sync.aligned.m8n8.x4.shared.b16 {$0,$1,$2,$3}, [$4];";
    const char *cons = "=r,=r,=r,=r,l,~{memory}";
    LLVMValueRef addr = LLVMBuildPtrToInt(c->b, row_ptr, c->i64, "");
    LLVMValueRef r = asm_call(c, fty, text, cons, true, &addr, 1);
    for (int i = 0; i < 4; i++)
        out[i] = LLVMBuildExtractValue(c->b, r, (unsigned)i, "");
}

/* The mma for operands of dtype dt (ir_mma_k says which the target takes). */
static const char *mma_text(DType dt)
{
    switch (dt) {
    case DT_BF16: return "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 ";
    case DT_F16: return "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 ";
    case DT_F8E4M3: return "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 ";
    default: return "mma.sync.aligned.m16n8k32.row.col.f32.e5m2.e5m2.f32 ";
    }
}

static LLVMValueRef mma_asm(Cg *c, DType dt, LLVMValueRef *a, LLVMValueRef *b, LLVMValueRef *acc)
{
    LLVMTypeRef f4[4] = {c->f32, c->f32, c->f32, c->f32};
    LLVMTypeRef ret = LLVMStructTypeInContext(c->ctx, f4, 4, 0);
    LLVMTypeRef ps[10] = {c->i32, c->i32, c->i32, c->i32, c->i32, c->i32, c->f32, c->f32, c->f32, c->f32};
    LLVMTypeRef fty = LLVMFunctionType(ret, ps, 10, 0);
    char text[160];
    snprintf(text, sizeof text, "%s{$0,$1,$2,$3}, {$4,$5,$6,$7}, {$8,$9}, {$10,$11,$12,$13};",
             mma_text(dt));
    const char *cons = "=f,=f,=f,=f,r,r,r,r,r,r,0,1,2,3";
    LLVMValueRef args[10] = {a[0], a[1], a[2], a[3], b[0], b[1], acc[0], acc[1], acc[2], acc[3]};
    return asm_call(c, fty, text, cons, false, args, 10);
}

/* One step of k: every warp loads its A and B fragments from shared memory
 * and issues mt x nt mma.  The fragment layouts of m16n8k16 (16-bit) and
 * m16n8k32 (8-bit) are the same in 16-bit units: a register holds 2 (or 4)
 * consecutive k of one row, so the 8-bit case is the 16-bit one with every
 * k offset doubled (m->e). */
static void mma_step(Cg *c, void *ctx)
{
    Mma *m = ctx;
    const Stmt *s = m->s;
    const Buffer *A = s->u.gemm.a.buf, *B = s->u.gemm.b.buf, *C = s->u.gemm.c.buf;
    DType dt = A->dtype;
    LLVMValueRef kbase = LLVMBuildMul(c->b, m->kk, cg_i64(c, m->kstep), "");
    LLVMValueRef k0 = LLVMBuildAdd(c->b, kbase, LLVMBuildMul(c->b, m->q, cg_i64(c, 2 * m->e), ""), "");
    LLVMValueRef a[8][4], b[32][2];
    /* A: one ldmatrix.x4 per 16 x kstep piece (tiles: rows +0/+8 x k +0/+kstep/2) */
    for (int mt = 0; mt < m->L.mt; mt++) {
        LLVMValueRef row = LLVMBuildAdd(c->b, m->row0, LLVMBuildAdd(c->b, m->lrow, cg_i64(c, 16 * mt), ""), "");
        LLVMValueRef idx[2] = {row, LLVMBuildAdd(c->b, kbase, m->lcol, "")};
        ldmatrix4(c, cg_elem_ptr(c, A, idx), a[mt]);
    }
    for (int nt = 0; nt < m->L.nt; nt++) {
        LLVMValueRef n = LLVMBuildAdd(c->b, m->col0, LLVMBuildAdd(c->b, m->g, cg_i64(c, 8 * nt), ""), "");
        if (s->u.gemm.trans_b && nt % 2 == 0 && nt + 1 < m->L.nt) {
            /* B rows are n: tiles (nt, k +0), (nt, k +8), (nt+1, k +0), (nt+1, k +8) */
            LLVMValueRef r[4];
            LLVMValueRef brow = LLVMBuildAdd(c->b, m->col0, LLVMBuildAdd(c->b, m->brow, cg_i64(c, 8 * nt), ""), "");
            LLVMValueRef idx[2] = {brow, LLVMBuildAdd(c->b, kbase, m->bcol, "")};
            ldmatrix4(c, cg_elem_ptr(c, B, idx), r);
            b[nt][0] = r[0];
            b[nt][1] = r[1];
            b[nt + 1][0] = r[2];
            b[nt + 1][1] = r[3];
            nt++;
        } else if (s->u.gemm.trans_b) {
            b[nt][0] = load_pair(c, B, n, k0);
            b[nt][1] = load_pair(c, B, n, add(c, k0, 8 * m->e));
        } else {
            b[nt][0] = load_kpair(c, B, k0, n);
            b[nt][1] = load_kpair(c, B, add(c, k0, 8), n);
        }
    }
    for (int mt = 0; mt < m->L.mt; mt++)
        for (int nt = 0; nt < m->L.nt; nt++) {
            LLVMValueRef ptr[4], acc[4];
            for (int i = 0; i < 4; i++) {
                LLVMValueRef slot = cg_i64(c, 4 * ((int64_t)mt * m->L.nt + nt) + i);
                ptr[i] = cg_elem_ptr(c, C, &slot);
                acc[i] = LLVMBuildLoad2(c->b, c->f32, ptr[i], "");
            }
            LLVMValueRef d = mma_asm(c, dt, a[mt], b[nt], acc);
            for (int i = 0; i < 4; i++)
                LLVMBuildStore(c->b, LLVMBuildExtractValue(c->b, d, (unsigned)i, ""), ptr[i]);
        }
}

static void mma_loop_body(Cg *c, void *ctx)
{
    Mma *m = ctx;
    m->kk = c->var[c->k->next_id + 7];
    mma_step(c, m);
}

/* ---------------------------------------------------------------- wgmma */

/* The dtype part of a wgmma's name, and whether it takes the transpose
 * immediates (16-bit types only; 8-bit operands are K-major always). */
static const char *wgmma_types(DType dt, bool *trans_imm)
{
    *trans_imm = dt_bits(dt) == 16;
    switch (dt) {
    case DT_BF16: return "bf16.bf16";
    case DT_F16: return "f16.f16";
    case DT_F8E4M3: return "e4m3.e4m3";
    default: return "e5m2.e5m2";
    }
}

/* v = asm volatile "" (v) for every slot of the accumulator: the values
 * stay in place around the asynchronous wgmma (nothing reads them before
 * the wait, nothing writes them after the fence). */
static void fence_slots(Cg *c, const Buffer *C, int64_t slots)
{
    LLVMTypeRef fty = LLVMFunctionType(c->f32, &c->f32, 1, 0);
    for (int64_t i = 0; i < slots; i++) {
        LLVMValueRef slot = cg_i64(c, i), p = cg_elem_ptr(c, C, &slot);
        LLVMValueRef v = LLVMBuildLoad2(c->b, c->f32, p, "");
        LLVMBuildStore(c->b, asm_call(c, fty, "", "=f,0,~{memory}", true, &v, 1), p);
    }
}

/* One descriptor: the IR's (low, high) words, its start address moved by
 * the shared array's own address (the IR counts from the array). */
static LLVMValueRef wgmma_desc(Cg *c, const Stmt *s, int i)
{
    LLVMValueRef lo = LLVMBuildAnd(c->b, cg_expr(c, s->u.gemm.desc[i]), cg_i64(c, 0xffffffff), "");
    LLVMValueRef hi = LLVMBuildShl(c->b, cg_expr(c, s->u.gemm.desc[i + 1]), cg_i64(c, 32), "");
    LLVMValueRef smem = LLVMBuildPtrToInt(c->b, LLVMGetNamedGlobal(c->mod, "tilec_smem"), c->i64, "");
    LLVMValueRef d = LLVMBuildOr(c->b, hi, lo, "");
    return LLVMBuildAdd(c->b, d, LLVMBuildLShr(c->b, smem, cg_i64(c, 4), ""), "");
}

/* wgmma i of the warpgroup: accumulator slots first.. (n/2 of them). */
static void wgmma_one(Cg *c, const Stmt *s, int n, int i, int64_t first, bool zero)
{
    const Buffer *C = s->u.gemm.c.buf;
    DType dt = s->u.gemm.a.buf->dtype;
    bool trans_imm;
    const char *types = wgmma_types(dt, &trans_imm);
    int r = n / 2;
    char *text = malloc((size_t)r * 8 + 512), *cons = malloc((size_t)r * 10 + 64);
    int len = sprintf(text, "{\n.reg .pred p;\nsetp.ne.b32 p, $%d, 0;\nwgmma.mma_async.sync.aligned.m64n%dk%d.f32.%s {",
                      r + 2, n, dt_bits(dt) == 8 ? 32 : 16, types);
    int cl = 0;
    for (int j = 0; j < r; j++) {
        len += sprintf(text + len, "%s$%d", j ? "," : "", j);
        cl += sprintf(cons + cl, "=f,");
    }
    /* imm-trans-b 1: B is MN-major ([K, N], N contiguous), as its
     * descriptors describe it (16-bit types only: the verifier checked) */
    sprintf(text + len, "}, $%d, $%d, p, 1, 1%s;\n}", r, r + 1,
            !trans_imm ? "" : s->u.gemm.trans_b ? ", 0, 0" : ", 0, 1");
    cl += sprintf(cons + cl, "l,l,r");
    for (int j = 0; j < r; j++)
        cl += sprintf(cons + cl, ",%d", j);
    LLVMTypeRef *tys = malloc(sizeof *tys * (size_t)(r + 3));
    LLVMValueRef *args = malloc(sizeof *args * (size_t)(r + 3)), *ptrs = malloc(sizeof *ptrs * (size_t)r);
    LLVMTypeRef *outs = malloc(sizeof *outs * (size_t)r);
    args[0] = wgmma_desc(c, s, 4 * i);
    args[1] = wgmma_desc(c, s, 4 * i + 2);
    args[2] = LLVMConstInt(c->i32, zero ? 0 : 1, 0);
    tys[0] = tys[1] = c->i64;
    tys[2] = c->i32;
    for (int j = 0; j < r; j++) {
        LLVMValueRef slot = cg_i64(c, first + j);
        ptrs[j] = cg_elem_ptr(c, C, &slot);
        args[3 + j] = LLVMBuildLoad2(c->b, c->f32, ptrs[j], "");
        tys[3 + j] = outs[j] = c->f32;
    }
    LLVMTypeRef ret = LLVMStructTypeInContext(c->ctx, outs, (unsigned)r, 0);
    LLVMTypeRef fty = LLVMFunctionType(ret, tys, (unsigned)(r + 3), 0);
    LLVMValueRef d = asm_call(c, fty, text, cons, true, args, r + 3);
    for (int j = 0; j < r; j++)
        LLVMBuildStore(c->b, LLVMBuildExtractValue(c->b, d, (unsigned)j, ""), ptrs[j]);
    free(text);
    free(cons);
    free(tys);
    free(args);
    free(ptrs);
    free(outs);
}

/* A MICRO_GEMM with descriptors (ir.h): fence, the warpgroup's wgmma in
 * issue order, commit — one group, left in flight: the WGMMA_WAIT that
 * pass_wgwait placed before the accumulator is read or the operand tiles
 * are overwritten completes it. */
static void cg_gpu_wgmma(Cg *c, const Stmt *s)
{
    const Region *a = &s->u.gemm.a, *b = &s->u.gemm.b;
    MmaLayout l;
    int64_t N = s->u.gemm.trans_b ? b->ext[0] : b->ext[1];
    ir_wgmma_layout(a->ext[0], N, c->k->nthreads, &l); /* checked by the verifier */
    int64_t kstep = dt_bits(a->buf->dtype) == 8 ? 32 : 16, K = a->ext[1];
    fence_slots(c, s->u.gemm.c.buf, l.slots);
    asm_void(c, "wgmma.fence.sync.aligned;", "~{memory}", NULL, 0);
    int i = 0;
    for (int64_t ks = 0; ks < K / kstep; ks++)
        for (int p = 0; p < l.mt; p++)
            for (int q = 0; q < l.nq; q++, i++)
                wgmma_one(c, s, l.wg_n, i, 4 * ((int64_t)p * l.nt + (int64_t)q * (l.wg_n / 8)),
                          s->u.gemm.clear && ks == 0);
    asm_void(c, "wgmma.commit_group.sync.aligned;", "~{memory}", NULL, 0);
}

/* Every wgmma accumulator of s (once each, up to n), with its slots. */
static int wgmma_accs(const Stmt *s, const Buffer **acc, int64_t *slots, int n, int cap)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            n = wgmma_accs(s->u.seq.items[i], acc, slots, n, cap);
        return n;
    case ST_FOR: return wgmma_accs(s->u.loop.body, acc, slots, n, cap);
    case ST_IF:
        n = wgmma_accs(s->u.if_.then_, acc, slots, n, cap);
        return s->u.if_.else_ ? wgmma_accs(s->u.if_.else_, acc, slots, n, cap) : n;
    case ST_MICRO_GEMM:
        for (int i = 0; i < n; i++)
            if (acc[i] == s->u.gemm.c.buf)
                return n;
        if (!s->u.gemm.desc || n == cap)
            return n;
        acc[n] = s->u.gemm.c.buf;
        ir_expr_is_const(s->u.gemm.c.buf->shape[0], &slots[n]);
        return n + 1;
    default: return n;
    }
}

/* wgmma.wait_group n, then every wgmma accumulator passes through an
 * empty asm: LLVM keeps the in-flight groups' registers as SSA values, and
 * without this it could read (or move) them before the wait. */
static void cg_gpu_wgmma_wait(Cg *c, const Stmt *s)
{
    char text[64];
    snprintf(text, sizeof text, "wgmma.wait_group.sync.aligned %d;", s->u.wait.pending);
    asm_void(c, text, "~{memory}", NULL, 0);
    const Buffer *acc[16];
    int64_t slots[16];
    int n = wgmma_accs(c->k->body, acc, slots, 0, 16);
    for (int i = 0; i < n; i++)
        fence_slots(c, acc[i], slots[i]);
}

void cg_gpu_mma(Cg *c, const Stmt *s)
{
    if (s->u.gemm.desc) {
        cg_gpu_wgmma(c, s);
        return;
    }
    const Kernel *k = c->k;
    const Region *a = &s->u.gemm.a, *b = &s->u.gemm.b;
    Mma m = {.s = s, .kstep = ir_mma_k(c->t, a->buf->dtype)};
    m.e = m.kstep / 16;
    int64_t M = a->ext[0], K = a->ext[1], N = s->u.gemm.trans_b ? b->ext[0] : b->ext[1];
    ir_mma_layout(M, N, k->nthreads, &m.L); /* checked by the verifier */
    LLVMValueRef tid = c->var[k->thread_var->id];
    LLVMValueRef warp = LLVMBuildSDiv(c->b, tid, cg_i64(c, 32), "");
    LLVMValueRef lane = LLVMBuildSRem(c->b, tid, cg_i64(c, 32), "");
    m.g = LLVMBuildSDiv(c->b, lane, cg_i64(c, 4), "");
    m.q = LLVMBuildSRem(c->b, lane, cg_i64(c, 4), "");
    LLVMValueRef l8 = LLVMBuildSRem(c->b, lane, cg_i64(c, 8), "");
    LLVMValueRef t = LLVMBuildSDiv(c->b, lane, cg_i64(c, 8), ""); /* which tile */
    LLVMValueRef t_lo = LLVMBuildMul(c->b, LLVMBuildSRem(c->b, t, cg_i64(c, 2), ""), cg_i64(c, 8), "");
    LLVMValueRef t_hi = LLVMBuildMul(c->b, LLVMBuildSDiv(c->b, t, cg_i64(c, 2), ""), cg_i64(c, 8), "");
    m.lrow = LLVMBuildAdd(c->b, l8, t_lo, "");
    m.lcol = LLVMBuildMul(c->b, t_hi, cg_i64(c, m.e), "");
    m.brow = LLVMBuildAdd(c->b, l8, t_hi, "");
    m.bcol = LLVMBuildMul(c->b, t_lo, cg_i64(c, m.e), "");
    m.row0 = LLVMBuildMul(c->b, LLVMBuildSDiv(c->b, warp, cg_i64(c, m.L.wn), ""), cg_i64(c, M / m.L.wm), "");
    m.col0 = LLVMBuildMul(c->b, LLVMBuildSRem(c->b, warp, cg_i64(c, m.L.wn), ""), cg_i64(c, N / m.L.wn), "");
    if (s->u.gemm.clear)
        for (int64_t i = 0; i < m.L.slots; i++) {
            LLVMValueRef slot = cg_i64(c, i);
            LLVMBuildStore(c->b, LLVMConstReal(c->f32, 0), cg_elem_ptr(c, s->u.gemm.c.buf, &slot));
        }
    Var kv = {.name = "kk", .id = k->next_id + 7};
    cg_loop(c, &kv, cg_i64(c, K / m.kstep), LOOP_SERIAL, 0, false, mma_loop_body, &m);
}
