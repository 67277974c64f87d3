/* print.c — the printed form of a kernel: tilec's text interface to IR.
 *
 *   kernel NAME level tile|loop
 *   param NAME fixed VALUE | tune VALUE {C1, C2} | size VALUE | dyn
 *   scalar NAME: DTYPE
 *   arg NAME: DTYPE[SHAPE] in|out|inout [strides [S0, S1]]
 *   buf NAME: SCOPE DTYPE[SHAPE] [strides [S0, S1]] [align BYTES]
 *   grid (V0, V1) < [E0, E1]
 *   block_threads N                   (what the spec asks of a GPU)
 *   threads V < N                     (GPU Loop IR only)
 *   {
 *     for V: KIND < EXTENT {          KIND: serial parallel unroll
 *       ...                                 pipelined(STAGES) vector(WIDTH)
 *     }
 *     if COND {
 *     }
 *     else {
 *     }
 *     once KEY {                      (CPU Loop IR: skipped when this thread's
 *     }                                previous block ran it with KEY)
 *     B[I, J] = VALUE                 atomic B[I, J] += VALUE   async B[I, J] = VALUE
 *     stream B[I, J] = VALUE
 *     copy SRC -> DST                 atomic_add SRC -> DST     copy async SRC -> DST
 *     fill DST = VALUE
 *     gemm A, B -> C [trans_a] [trans_b] [clear] [a_scale S] [b_scale S] [rows E] [fast_accum]
 *     micro_gemm A, B -> C [trans_a] [trans_b] [clear] [a_scale S] [b_scale S] [b_pairs] [a_lifted] [a_prescaled] [a_decode_order]
 *                [wgmma [D0, D1, ...]]
 *     reduce sum|max|min|absmax axis N SRC -> DST [clear]
 *     barrier                         async_commit              async_wait N
 *     prefetch B[I, J]
 *     wgmma_wait N
 *     mbar_init BAR[I], COUNT         mbar_expect_tx BAR[I], BYTES
 *     tma_load SRC -> DST, BAR[I] [swizzle W]
 *     mbar_wait BAR[I], PARITY
 *   }
 *
 * A region is B[OFF +: EXT, ...]; a whole scratch buffer is just B.
 * Expressions are infix with the fewest parentheses precedence allows
 * (loosest first: or, and, comparisons, |, ^, &, shifts, + -, * / %, unary
 * - and not); math ops are calls (exp(x), min(a, b), select(c, a, b),
 * cast<bf16>(x)).  Dtypes are implied: a load has its buffer's, 1 is i64,
 * 1.0 / 1e-05 / inf / nan are f32, true/false are bool.  A float prints with
 * the fewest digits (up to 9) that read back as the same f32.
 *
 * ir_print_locs adds "  # file:line" after each line that has a location;
 * the parser reads them back, and ir_print leaves them out so the text of a
 * kernel does not depend on where it came from (it keys the compile cache). */
#include "ir/ir.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Binding strength of an expression's top operator (higher binds tighter). */
static int prec(const Expr *e)
{
    switch (e->op) {
    case EX_OR: return 1;
    case EX_AND: return 2;
    case EX_LT: case EX_LE: case EX_EQ: case EX_NE: return 3;
    case EX_BOR: return 4;
    case EX_BXOR: return 5;
    case EX_BAND: return 6;
    case EX_SHL: case EX_SHR: return 7;
    case EX_ADD: case EX_SUB: return 8;
    case EX_MUL: case EX_DIV: case EX_MOD: return 9;
    case EX_NEG: case EX_NOT: return 10;
    case EX_CONST:
        if (dt_is_float(e->dtype) ? signbit(e->imm.f) && !isnan(e->imm.f) : e->imm.i < 0)
            return 10; /* a negative literal prints like a negation */
        return 11;
    default: return 11;
    }
}

static void print_const(const Expr *e, FILE *f)
{
    if (e->dtype == DT_BOOL) {
        fputs(e->imm.i ? "true" : "false", f);
    } else if (dt_is_int(e->dtype)) {
        fprintf(f, "%lld", (long long)e->imm.i);
    } else if (isnan(e->imm.f)) {
        fputs("nan", f);
    } else if (isinf(e->imm.f)) {
        fputs(e->imm.f < 0 ? "-inf" : "inf", f);
    } else {
        /* the shortest decimal that reads back as the same f32 */
        char buf[64];
        for (int digits = 6; digits <= 9; digits++) {
            snprintf(buf, sizeof buf, "%.*g", digits, e->imm.f);
            if (strtof(buf, NULL) == (float)e->imm.f)
                break;
        }
        fputs(buf, f);
        if (!strpbrk(buf, ".e"))
            fputs(".0", f);
    }
}

static void print_sub(const Expr *e, int min_prec, FILE *f)
{
    bool paren = prec(e) < min_prec;
    if (paren)
        fputc('(', f);
    ir_print_expr(e, f);
    if (paren)
        fputc(')', f);
}

static void print_args(const Expr *e, FILE *f)
{
    fputc('(', f);
    for (int i = 0; i < e->nargs; i++) {
        if (i)
            fputs(", ", f);
        ir_print_expr(e->args[i], f);
    }
    fputc(')', f);
}

void ir_print_expr(const Expr *e, FILE *f)
{
    switch (e->op) {
    case EX_CONST: print_const(e, f); return;
    case EX_VAR: fputs(e->var->name, f); return;
    case EX_PARAM: fputs(e->param->name, f); return;
    case EX_LOAD:
        fprintf(f, "%s[", e->buf->name);
        for (int i = 0; i < e->nargs; i++) {
            if (i)
                fputs(", ", f);
            ir_print_expr(e->args[i], f);
        }
        fputc(']', f);
        return;
    case EX_NEG:
        fputc('-', f);
        print_sub(e->args[0], 11, f);
        return;
    case EX_NOT:
        fputs("not ", f);
        print_sub(e->args[0], 11, f);
        return;
    case EX_CAST:
    case EX_BITCAST:
        fprintf(f, "%s<%s>", ex_name(e->op), dt_name(e->dtype));
        print_args(e, f);
        return;
    default:
        break;
    }
    if (ex_nargs(e->op) == 2 && e->op != EX_MIN && e->op != EX_MAX) {
        int p = prec(e);
        print_sub(e->args[0], p, f);
        fprintf(f, " %s ", ex_name(e->op));
        print_sub(e->args[1], p + 1, f); /* left-associative */
        return;
    }
    fputs(ex_name(e->op), f);
    print_args(e, f);
}

/* -------------------------------------------------------------- regions */

static bool region_is_whole(const Region *r)
{
    if (r->buf->scope == SCOPE_GLOBAL)
        return false;
    for (int d = 0; d < r->buf->rank; d++) {
        int64_t off, n;
        if (!ir_expr_is_const(r->off[d], &off) || off != 0 ||
            !ir_expr_is_const(r->buf->shape[d], &n) || n != r->ext[d])
            return false;
    }
    return true;
}

static void print_region(const Region *r, FILE *f)
{
    fputs(r->buf->name, f);
    if (region_is_whole(r))
        return;
    fputc('[', f);
    for (int d = 0; d < r->buf->rank; d++) {
        if (d)
            fputs(", ", f);
        ir_print_expr(r->off[d], f);
        fprintf(f, " +: %lld", (long long)r->ext[d]);
    }
    fputc(']', f);
}

/* ----------------------------------------------------------- statements */

/* Where statements go, and whether they carry "# file:line" comments. */
typedef struct Printer {
    FILE *f;
    bool locs;
} Printer;

static void indent(int depth, FILE *f)
{
    for (int i = 0; i < depth; i++)
        fputs("  ", f);
}

/* Ends a line: "  # file:line" first when locations are wanted and known. */
static void end_line(const Printer *p, SrcLoc loc)
{
    if (p->locs && loc.file && loc.line > 0)
        fprintf(p->f, "  # %s:%d", loc.file, loc.line);
    fputc('\n', p->f);
}

static void print_block(const Printer *p, const Stmt *s, int depth, SrcLoc header);

static void print_loop(const Printer *p, const Stmt *s, int depth)
{
    FILE *f = p->f;
    fprintf(f, "for %s: %s", s->u.loop.var->name, loop_kind_name(s->u.loop.kind));
    if (s->u.loop.kind == LOOP_PIPELINED || s->u.loop.kind == LOOP_VECTOR || s->u.loop.arg)
        fprintf(f, "(%d)", s->u.loop.arg);
    fputs(" < ", f);
    ir_print_expr(s->u.loop.extent, f);
    fputc(' ', f);
    print_block(p, s->u.loop.body, depth, s->loc);
}

static void print_index(Expr *const *idx, int n, FILE *f)
{
    fputc('[', f);
    for (int i = 0; i < n; i++) {
        if (i)
            fputs(", ", f);
        ir_print_expr(idx[i], f);
    }
    fputc(']', f);
}

static void print_gemm(const Stmt *s, FILE *f)
{
    fprintf(f, "%s ", st_name(s->op));
    print_region(&s->u.gemm.a, f);
    fputs(", ", f);
    print_region(&s->u.gemm.b, f);
    fputs(" -> ", f);
    print_region(&s->u.gemm.c, f);
    if (s->u.gemm.trans_a)
        fputs(" trans_a", f);
    if (s->u.gemm.trans_b)
        fputs(" trans_b", f);
    if (s->u.gemm.clear)
        fputs(" clear", f);
    const Region *scales[2] = {&s->u.gemm.a_scale, &s->u.gemm.b_scale};
    for (int i = 0; i < 2; i++)
        if (scales[i]->buf) {
            fputs(i ? " b_scale " : " a_scale ", f);
            print_region(scales[i], f);
        }
    if (s->u.gemm.rows) {
        fputs(" rows ", f);
        ir_print_expr(s->u.gemm.rows, f);
    }
    if (s->u.gemm.cols) {
        fputs(" cols ", f);
        ir_print_expr(s->u.gemm.cols, f);
    }
    if (s->u.gemm.fast_accum)
        fputs(" fast_accum", f);
    if (s->u.gemm.b_pairs)
        fputs(" b_pairs", f);
    if (s->u.gemm.a_lifted)
        fputs(" a_lifted", f);
    if (s->u.gemm.a_prescaled)
        fputs(" a_prescaled", f);
    if (s->u.gemm.a_decode_order)
        fputs(" a_decode_order", f);
    if (s->u.gemm.desc) {
        fputs(" wgmma [", f);
        for (int i = 0; i < s->u.gemm.ndesc; i++) {
            fputs(i ? ", " : "", f);
            ir_print_expr(s->u.gemm.desc[i], f);
        }
        fputc(']', f);
    }
}

/* A statement that fits on one line, without its line end. */
static void print_simple(const Stmt *s, FILE *f)
{
    switch (s->op) {
    case ST_STORE:
        fprintf(f, "%s%s",
                s->u.store.atomic  ? "atomic "
                : s->u.store.async ? "async "
                : s->u.store.stream ? "stream "
                                    : "",
                s->u.store.buf->name);
        print_index(s->u.store.idx, s->u.store.buf->rank, f);
        fputs(s->u.store.atomic ? " += " : " = ", f);
        ir_print_expr(s->u.store.value, f);
        break;
    case ST_PREFETCH:
        fprintf(f, "prefetch %s", s->u.store.buf->name);
        print_index(s->u.store.idx, s->u.store.buf->rank, f);
        break;
    case ST_COPY:
    case ST_ATOMIC_ADD:
        fprintf(f, "%s %s", st_name(s->op), s->u.copy.async ? "async " : "");
        print_region(&s->u.copy.src, f);
        fputs(" -> ", f);
        print_region(&s->u.copy.dst, f);
        break;
    case ST_FILL:
        fputs("fill ", f);
        print_region(&s->u.fill.dst, f);
        fputs(" = ", f);
        ir_print_expr(s->u.fill.value, f);
        break;
    case ST_GEMM:
    case ST_MICRO_GEMM:
        print_gemm(s, f);
        break;
    case ST_BARRIER:
    case ST_ASYNC_COMMIT:
        fputs(st_name(s->op), f);
        break;
    case ST_ASYNC_WAIT:
    case ST_WGMMA_WAIT:
        fprintf(f, "%s %d", st_name(s->op), s->u.wait.pending);
        break;
    case ST_MBAR_INIT:
    case ST_MBAR_EXPECT:
    case ST_MBAR_WAIT:
        fprintf(f, "%s %s[", st_name(s->op), s->u.mbar.bar->name);
        ir_print_expr(s->u.mbar.slot, f);
        fputs("], ", f);
        ir_print_expr(s->u.mbar.arg, f);
        break;
    case ST_TMA_LOAD:
        fputs("tma_load ", f);
        print_region(&s->u.mbar.src, f);
        fputs(" -> ", f);
        print_region(&s->u.mbar.dst, f);
        fprintf(f, ", %s[", s->u.mbar.bar->name);
        ir_print_expr(s->u.mbar.slot, f);
        fputc(']', f);
        if (s->u.mbar.swizzle)
            fprintf(f, " swizzle %d", s->u.mbar.swizzle);
        break;
    case ST_REDUCE:
        fprintf(f, "reduce %s axis %d ", reduce_op_name(s->u.reduce.rop), s->u.reduce.axis);
        print_region(&s->u.reduce.src, f);
        fputs(" -> ", f);
        print_region(&s->u.reduce.dst, f);
        if (s->u.reduce.clear)
            fputs(" clear", f);
        break;
    default: /* not parseable on purpose: the verifier rejects it too */
        fprintf(f, "?%s", st_name(s->op));
        break;
    }
}

static void print_stmt(const Printer *p, const Stmt *s, int depth)
{
    if (s->op == ST_SEQ) { /* a nested sequence prints flat */
        for (int i = 0; i < s->u.seq.n; i++)
            print_stmt(p, s->u.seq.items[i], depth);
        return;
    }
    indent(depth, p->f);
    if (s->op == ST_FOR) {
        print_loop(p, s, depth);
    } else if (s->op == ST_IF) {
        fputs("if ", p->f);
        ir_print_expr(s->u.if_.cond, p->f);
        fputc(' ', p->f);
        print_block(p, s->u.if_.then_, depth, s->loc);
        if (s->u.if_.else_) {
            indent(depth, p->f);
            fputs("else ", p->f);
            print_block(p, s->u.if_.else_, depth, (SrcLoc){0});
        }
    } else if (s->op == ST_ONCE) {
        fputs("once ", p->f);
        ir_print_expr(s->u.once.key, p->f);
        fputc(' ', p->f);
        print_block(p, s->u.once.body, depth, s->loc);
    } else {
        print_simple(s, p->f);
        end_line(p, s->loc);
    }
}

/* "{", the statements one level deeper, "}".  header: the loc of the loop or
 * if owning the block, printed after its '{'. */
static void print_block(const Printer *p, const Stmt *s, int depth, SrcLoc header)
{
    fputc('{', p->f);
    end_line(p, header);
    if (s)
        print_stmt(p, s, depth + 1);
    indent(depth, p->f);
    fputs("}\n", p->f);
}

/* --------------------------------------------------------------- header */

static void print_dims(Expr *const *dims, int rank, FILE *f)
{
    fputc('[', f);
    for (int d = 0; d < rank; d++) {
        if (d)
            fputs(", ", f);
        ir_print_expr(dims[d], f);
    }
    fputc(']', f);
}

/* Are b's strides exactly what ir_arg_add builds (row-major over shape)? */
static bool is_row_major(const Buffer *b)
{
    int64_t one;
    if (b->rank == 0)
        return true;
    if (!ir_expr_is_const(b->stride[b->rank - 1], &one) || one != 1)
        return false;
    for (int d = b->rank - 2; d >= 0; d--) {
        const Expr *inner = b->stride[d + 1], *n = b->shape[d + 1], *s = b->stride[d];
        int64_t x, y, v;
        if (ir_expr_is_const(inner, &x) && ir_expr_is_const(n, &y)) {
            if (!ir_expr_is_const(s, &v) || v != x * y)
                return false;
        } else if (ir_expr_is_const(inner, &x) && x == 1) {
            if (!ir_expr_equal(s, n))
                return false;
        } else if (!(s->op == EX_MUL && ir_expr_equal(s->args[0], inner) &&
                     ir_expr_equal(s->args[1], n))) {
            return false;
        }
    }
    return true;
}

static void print_kparam(const KParam *p, FILE *f)
{
    fprintf(f, "param %s ", p->name);
    if (p->kind == KP_DYN) {
        fputs("dyn\n", f);
        return;
    }
    const char *kind = p->kind == KP_FIXED ? "fixed" : p->variant ? "variant" : p->ncands ? "tune" : "size";
    fprintf(f, "%s %s", kind, p->value ? p->value : "?");
    if (p->ncands) {
        fputs(" {", f);
        for (int i = 0; i < p->ncands; i++)
            fprintf(f, "%s%s", i ? ", " : "", p->cands[i]);
        fputc('}', f);
    }
    fputc('\n', f);
}

static void print_buffer(const Printer *p, const Buffer *b)
{
    static const char *const dirs[] = {"none", "in", "out", "inout"};
    FILE *f = p->f;
    if (b->scope == SCOPE_GLOBAL) {
        fprintf(f, "arg %s: %s", b->name, dt_name(b->dtype));
        print_dims(b->shape, b->rank, f);
        fprintf(f, " %s", b->dir <= ARG_INOUT ? dirs[b->dir] : "?");
        if (!is_row_major(b)) {
            fputs(" strides ", f);
            print_dims(b->stride, b->rank, f);
        }
    } else {
        fprintf(f, "buf %s: %s %s", b->name, scope_name(b->scope), dt_name(b->dtype));
        print_dims(b->shape, b->rank, f);
        if (!is_row_major(b)) { /* padded rows (GPU shared memory) */
            fputs(" strides ", f);
            print_dims(b->stride, b->rank, f);
        }
        if (b->align)
            fprintf(f, " align %d", b->align);
    }
    end_line(p, b->loc);
}

static void print_kernel(const Printer *p, const Kernel *k)
{
    FILE *f = p->f;
    fprintf(f, "kernel %s level %s", k->name, k->level == LEVEL_TILE ? "tile" : "loop");
    end_line(p, k->loc);
    for (int i = 0; i < k->nkparams; i++)
        print_kparam(&k->kparams[i], f);
    for (int i = 0; i < k->nparams; i++)
        fprintf(f, "scalar %s: %s\n", k->params[i]->name, dt_name(k->params[i]->dtype));
    for (int i = 0; i < k->nbufs; i++)
        print_buffer(p, k->bufs[i]);
    if (k->ngrid) {
        fputs("grid (", f);
        for (int i = 0; i < k->ngrid; i++)
            fprintf(f, "%s%s", i ? ", " : "", k->grid_var[i]->name);
        fputs(") < ", f);
        print_dims(k->grid, k->ngrid, f);
        fputc('\n', f);
    }
    if (k->block_threads)
        fprintf(f, "block_threads %d\n", k->block_threads);
    if (k->nthreads)
        fprintf(f, "threads %s < %d\n", k->thread_var ? k->thread_var->name : "?", k->nthreads);
    print_block(p, k->body, 0, (SrcLoc){0});
}

void ir_print(const Kernel *k, FILE *f)
{
    Printer p = {.f = f};
    print_kernel(&p, k);
}

/* The printed form with "  # file:line" after each statement, buffer and the
 * kernel line (for --dump-after and golden frontend tests).  ir_parse reads
 * the comments back into the locs, so this form round-trips too. */
void ir_print_locs(const Kernel *k, FILE *f)
{
    Printer p = {.f = f, .locs = true};
    print_kernel(&p, k);
}

char *ir_print_string(const Kernel *k)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f)
        return NULL;
    ir_print(k, f);
    fclose(f);
    return buf;
}
