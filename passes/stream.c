/* stream.c — write-once outputs bypass the cache (CPU).
 *
 * An ordinary store to a line not in the cache first reads the line in
 * (write-allocate), then writes it back when it is evicted: a kernel
 * writing a large output it never reads moves each byte of it twice.  A
 * non-temporal store writes whole lines straight to memory.  This pass
 * marks the stores that may be made non-temporal (`stream`); codegen
 * streams them when, at run time, the buffer is at least the target's
 * stream_bytes (a smaller output stays in the cache for the kernel that
 * reads it next) and its base is vector-aligned, and plain-stores them
 * otherwise.
 *
 * A store qualifies when
 *   - its buffer is a global output (not inout) that the kernel never
 *     loads nor adds to atomically: nothing of the kernel misses the line
 *     later;
 *   - it is not in the else arm of a branch whose then arm streams the
 *     same buffer (a window test's slow path: the last block only);
 *   - it sits in the body of a vector loop of extent a multiple of the
 *     loop's width W, unit-stride along the loop (buf[.., v + x]): LLVM
 *     emits it as whole-vector stores with no scalar tail;
 *   - the element offset where v = 0 is a multiple of W whatever the other
 *     variables are (from the index expressions and the buffer's static
 *     strides): with the base aligned, every vector store starts on its
 *     own size, which a non-temporal vector store needs (a misaligned one
 *     faults). */
#include "passes/passes.h"

/* A large multiple: 0 is a multiple of everything. */
enum { ANY_MULTIPLE = 1 << 30 };

static int64_t gcd(int64_t a, int64_t b)
{
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* A d such that e is a multiple of d for every value of its variables;
 * the variable v counts as a multiple of w (a vector's first lane). */
static int64_t known_divisor(const Expr *e, const Var *v, int64_t w)
{
    int64_t c;
    if (ir_expr_is_const(e, &c))
        return c == 0 ? ANY_MULTIPLE : c < 0 ? -c : c;
    switch (e->op) {
    case EX_VAR: return e->var == v ? w : 1;
    case EX_ADD:
    case EX_SUB: return gcd(known_divisor(e->args[0], v, w), known_divisor(e->args[1], v, w));
    case EX_MUL: {
        int64_t d = known_divisor(e->args[0], v, w) * known_divisor(e->args[1], v, w);
        return d > ANY_MULTIPLE || d <= 0 ? ANY_MULTIPLE : d;
    }
    default: return 1;
    }
}

/* Only a global output of whole bytes that the kernel never reads nor
 * adds to atomically (a read of the line, from any thread, that another's
 * streamed store may not have reached yet). */
static bool write_once(const Kernel *k, const Buffer *b)
{
    if (b->scope != SCOPE_GLOBAL || b->dir != ARG_OUT || dt_bits(b->dtype) < 8)
        return false;
    IrUse u = {0};
    ir_buffer_use(k->body, b, &u);
    return u.reads == 0 && u.atomics == 0;
}

/* Every vector of the loop's store s begins on a multiple of the width. */
static bool starts_aligned(const Stmt *loop, const Stmt *s)
{
    const Buffer *b = s->u.store.buf;
    const Var *v = loop->u.loop.var;
    int64_t w = loop->u.loop.arg, last = b->rank - 1;
    if (known_divisor(loop->u.loop.extent, NULL, 1) % w || !ir_var_plus(s->u.store.idx[last], v))
        return false;
    int64_t d = known_divisor(s->u.store.idx[last], v, w);
    for (int i = 0; i < last; i++) {
        if (ir_mentions_var(s->u.store.idx[i], v))
            return false;
        int64_t di = known_divisor(s->u.store.idx[i], v, w) * known_divisor(b->stride[i], v, w);
        d = gcd(d, di > ANY_MULTIPLE || di <= 0 ? ANY_MULTIPLE : di);
    }
    return d % w == 0;
}

/* hot: the then arm of the innermost if whose else arm holds s, or NULL.
 * A buffer that arm streams is not streamed here: the else arm of such a
 * branch is a window test's slow path, which runs for the grid's last
 * block only, and streamed it doubled its code for nothing (rmsnorm
 * compiled in 1.05 s against 0.77 s before streaming). */
static void mark(const Kernel *k, const Stmt *loop, Stmt *s, const Stmt *hot)
{
    if (s->op != ST_STORE || s->u.store.atomic || s->u.store.async || !write_once(k, s->u.store.buf) ||
        !starts_aligned(loop, s))
        return;
    IrUse u = {0};
    if (hot)
        ir_buffer_use(hot, s->u.store.buf, &u);
    s->u.store.stream = u.streamed == 0;
}

static void walk(const Kernel *k, Stmt *s, const Stmt *hot)
{
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            walk(k, s->u.seq.items[i], hot);
        break;
    case ST_IF:
        walk(k, s->u.if_.then_, hot);
        if (s->u.if_.else_)
            walk(k, s->u.if_.else_, s->u.if_.then_);
        break;
    case ST_ONCE:
        walk(k, s->u.once.body, hot);
        break;
    case ST_FOR: {
        Stmt *body = s->u.loop.body;
        if (s->u.loop.kind != LOOP_VECTOR)
            walk(k, body, hot);
        else if (body->op != ST_SEQ) /* a vector loop is innermost: its own stores only */
            mark(k, s, body, hot);
        else
            for (int i = 0; i < body->u.seq.n; i++)
                mark(k, s, body->u.seq.items[i], hot);
        break;
    }
    default: break;
    }
}

bool pass_stream(Kernel *k, const TargetInfo *t, Diag *d)
{
    (void)t;
    (void)d;
    walk(k, k->body, NULL);
    return true;
}
