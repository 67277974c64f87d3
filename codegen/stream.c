/* stream.c — non-temporal stores for the stores pass_stream marked (CPU).
 *
 * LLVM's loop vectoriser will not vectorise a store that carries
 * !nontemporal unless the scalar store's alignment is the vector's, which
 * a scalar store does not have.  So a marked store is emitted as a plain
 * store with a tag — an alias scope of its own, which no access lists as
 * `noalias` (it claims nothing) and which the vectoriser carries onto the
 * vector stores it makes — and after the optimisation pipeline every
 * whole-vector store still carrying the tag becomes non-temporal, aligned
 * to its size or, if less, to the alignment the tag records: the loop's
 * emitted width of elements, where pass_stream proved each vector starts
 * (the base is checked here).
 *
 * Each vector loop holding marked stores runs in two versions: streamed
 * when, at run time, every buffer they write is at least the target's
 * stream_bytes and its base is vector-aligned, plain otherwise (a small
 * output stays in the cache for the kernel that reads it next).  The
 * streamed version addresses the buffer through a copy of its base that
 * LLVM cannot see through (an empty inline asm): otherwise, where the two
 * versions unroll into the same straight-line code, it merges their
 * stores and with them drops the tag.  The kernel ends with an sfence:
 * non-temporal stores are weakly ordered, and whoever reads the output
 * next must see them. */
#include "codegen/cg.h"
#include "codegen/cgctx.h"

static bool is_stream_store(const Stmt *s) { return s->op == ST_STORE && s->u.store.stream; }

void cg_stream_setup(Cg *c)
{
    const Kernel *k = c->k;
    int64_t vbytes = c->t->vector_bits / 8;
    for (int i = 0; i < k->nbufs; i++) {
        const Buffer *b = k->bufs[i];
        IrUse u = {0};
        ir_buffer_use(k->body, b, &u);
        if (b->scope != SCOPE_GLOBAL || !u.streamed)
            continue;
        LLVMValueRef bytes = cg_i64(c, dt_bits(b->dtype) / 8);
        for (int d = 0; d < b->rank; d++)
            bytes = LLVMBuildMul(c->b, bytes, cg_expr(c, b->shape[d]), "");
        LLVMValueRef addr = LLVMBuildPtrToInt(c->b, c->base[b->id], c->i64, "");
        LLVMValueRef misaligned = LLVMBuildAnd(c->b, addr, cg_i64(c, vbytes - 1), "");
        LLVMValueRef aligned = LLVMBuildICmp(c->b, LLVMIntEQ, misaligned, cg_i64(c, 0), "");
        LLVMValueRef large = LLVMBuildICmp(c->b, LLVMIntSGE, bytes, cg_i64(c, c->t->stream_bytes), "");
        c->stream_ok[b->id] = LLVMBuildAnd(c->b, aligned, large, b->name);
        LLVMTypeRef fty = LLVMFunctionType(c->ptr, &c->ptr, 1, 0);
        LLVMValueRef opaque = LLVMGetInlineAsm(fty, "", 0, "=r,0", 4, false, false, LLVMInlineAsmDialectATT, false);
        c->stream_base[b->id] = LLVMBuildCall2(c->b, fty, opaque, &c->base[b->id], 1, "");
        c->any_stream = true;
    }
}

/* The run-time test for a vector loop: every buffer its marked stores
 * write may stream (NULL: it has none). */
static LLVMValueRef loop_may_stream(Cg *c, const Stmt *loop)
{
    const Stmt *body = loop->u.loop.body;
    int n = body->op == ST_SEQ ? body->u.seq.n : 1;
    LLVMValueRef ok = NULL;
    for (int i = 0; i < n; i++) {
        const Stmt *s = body->op == ST_SEQ ? body->u.seq.items[i] : body;
        if (!is_stream_store(s))
            continue;
        LLVMValueRef b = c->stream_ok[s->u.store.buf->id];
        ok = ok ? LLVMBuildAnd(c->b, ok, b, "") : b;
    }
    return ok;
}

/* The base a buffer's streamed stores go through, for its plain one
 * (buffers without any: nothing). */
static void swap(LLVMValueRef *base, LLVMValueRef *stream_base)
{
    if (!*stream_base)
        return;
    LLVMValueRef t = *base;
    *base = *stream_base;
    *stream_base = t;
}

bool cg_stream_loop(Cg *c, const Stmt *loop, int width)
{
    if (c->stream_mode || loop->u.loop.kind != LOOP_VECTOR)
        return false;
    LLVMValueRef ok = loop_may_stream(c, loop);
    if (!ok)
        return false;
    LLVMBasicBlockRef yes = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "stream");
    LLVMBasicBlockRef no = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "cached");
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "join");
    LLVMBuildCondBr(c->b, ok, yes, no);
    const Kernel *k = c->k;
    for (int mode = 1; mode >= -1; mode -= 2) {
        LLVMPositionBuilderAtEnd(c->b, mode > 0 ? yes : no);
        c->stream_mode = mode;
        c->stream_width = width;
        for (int i = 0; mode > 0 && i < k->nbufs; i++) /* swap, and back after */
            swap(&c->base[k->bufs[i]->id], &c->stream_base[k->bufs[i]->id]);
        cg_stmt(c, loop);
        for (int i = 0; mode > 0 && i < k->nbufs; i++)
            swap(&c->base[k->bufs[i]->id], &c->stream_base[k->bufs[i]->id]);
        LLVMBuildBr(c->b, join);
    }
    c->stream_mode = 0;
    LLVMPositionBuilderAtEnd(c->b, join);
    return true;
}

/* The tags: a scope per alignment (bytes, a power of two, 16 to 64) in a
 * domain of their own, named so that the module's uniqued nodes give the
 * same ones back after the optimisation passes.  A store's tag is the
 * alignment pass_stream proved for it: its vectors start at multiples of
 * the emitted width of elements from an aligned base. */
enum { MIN_ALIGN = 16, MAX_ALIGN = 64 };

static LLVMValueRef tag(LLVMContextRef ctx, int align)
{
    char name[32];
    int len = snprintf(name, sizeof name, "tilec.stream.%d", align);
    LLVMMetadataRef dom_name = LLVMMDStringInContext2(ctx, "tilec.stream", 12);
    LLVMMetadataRef dom = LLVMMDNodeInContext2(ctx, &dom_name, 1);
    LLVMMetadataRef scope_ops[2] = {LLVMMDStringInContext2(ctx, name, (size_t)len), dom};
    LLVMMetadataRef scope = LLVMMDNodeInContext2(ctx, scope_ops, 2);
    return LLVMMetadataAsValue(ctx, scope);
}

static unsigned alias_scope_kind(LLVMContextRef ctx) { return LLVMGetMDKindIDInContext(ctx, "alias.scope", 11); }

void cg_stream_tag(Cg *c, const Stmt *s)
{
    if (c->stream_mode <= 0 || !is_stream_store(s))
        return;
    LLVMValueRef st = LLVMGetLastInstruction(LLVMGetInsertBlock(c->b));
    int align = c->stream_width * dt_bits(s->u.store.buf->dtype) / 8, most = c->t->vector_bits / 8;
    align = align < most ? align : most;
    if (!st || !LLVMIsAStoreInst(st) || align < MIN_ALIGN || align > MAX_ALIGN)
        return;
    LLVMValueRef scope = tag(c->ctx, align);
    LLVMMetadataRef list = LLVMMDNodeInContext2(c->ctx, (LLVMMetadataRef[]){LLVMValueAsMetadata(scope)}, 1);
    LLVMSetMetadata(st, alias_scope_kind(c->ctx), LLVMMetadataAsValue(c->ctx, list));
}

void cg_stream_fence(Cg *c)
{
    if (c->any_stream)
        cg_intrinsic(c, "llvm.x86.sse.sfence", NULL, 0, NULL, 0);
}

enum { NTAGS = 3 }; /* 16, 32, 64 */

/* The alignment of the tag the store carries among its scopes (0: none);
 * tags[t] is the tag of MIN_ALIGN << t. */
static int tagged(LLVMContextRef ctx, LLVMValueRef st, const LLVMValueRef *tags)
{
    LLVMValueRef list = LLVMGetMetadata(st, alias_scope_kind(ctx));
    if (!list)
        return 0;
    unsigned n = LLVMGetMDNodeNumOperands(list);
    LLVMValueRef ops[16];
    if (n > 16)
        return 0;
    LLVMGetMDNodeOperands(list, ops);
    for (unsigned i = 0; i < n; i++)
        for (int t = 0; t < NTAGS; t++)
            if (ops[i] == tags[t])
                return MIN_ALIGN << t;
    return 0;
}

void cg_stream_rewrite(LLVMContextRef ctx, LLVMModuleRef mod, LLVMTargetDataRef dl)
{
    unsigned nt = LLVMGetMDKindIDInContext(ctx, "nontemporal", 11);
    LLVMMetadataRef one = LLVMValueAsMetadata(LLVMConstInt(LLVMInt32TypeInContext(ctx), 1, 0));
    LLVMValueRef flag = LLVMMetadataAsValue(ctx, LLVMMDNodeInContext2(ctx, &one, 1));
    LLVMValueRef tags[NTAGS];
    for (int t = 0; t < NTAGS; t++)
        tags[t] = tag(ctx, MIN_ALIGN << t);
    for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f))
        for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(f); bb; bb = LLVMGetNextBasicBlock(bb))
            for (LLVMValueRef in = LLVMGetFirstInstruction(bb); in; in = LLVMGetNextInstruction(in)) {
                int align = LLVMIsAStoreInst(in) ? tagged(ctx, in, tags) : 0;
                if (!align)
                    continue;
                LLVMTypeRef ty = LLVMTypeOf(LLVMGetOperand(in, 0));
                unsigned long long size = LLVMStoreSizeOfType(dl, ty);
                /* whole vectors of 16 bytes or more (a scalar, the odd
                 * store LLVM left unvectorised, stays as it is), aligned
                 * to their size or to the proven alignment if less (the
                 * back end then splits them) */
                if (LLVMGetTypeKind(ty) != LLVMVectorTypeKind || size < MIN_ALIGN || (size & (size - 1)))
                    continue;
                LLVMSetMetadata(in, nt, flag);
                LLVMSetAlignment(in, (unsigned)(size < (unsigned long long)align ? size : (unsigned long long)align));
            }
}
