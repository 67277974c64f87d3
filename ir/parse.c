/* parse.c — the printed form of a kernel back into IR (see print.c for the
 * grammar).  Expressions are rebuilt through the builders, so a parsed tree
 * has the same types and folded constants as the one that was printed, and
 * print(parse(print(k))) == print(k). */
#include "ir/ir.h"

#include <ctype.h>
#include <math.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

typedef struct Parser {
    const char *p, *file;
    int line;
    Kernel *k;
    Diag *d;
    jmp_buf fail;
    char tok[128]; /* the current token's text */
} Parser;

static _Noreturn void error(Parser *ps, const char *fmt, const char *arg)
{
    SrcLoc loc = {ps->file, ps->line};
    diag_error(ps->d, loc, fmt, arg);
    longjmp(ps->fail, 1);
}

static void skip_space(Parser *ps)
{
    for (;;) {
        while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\r' || *ps->p == '\n') {
            if (*ps->p == '\n')
                ps->line++;
            ps->p++;
        }
        if (*ps->p != '#')
            return;
        while (*ps->p && *ps->p != '\n') /* comments run to the end of the line */
            ps->p++;
    }
}

/* Does the input continue with s (after spaces)?  Consume it if so. */
static bool accept(Parser *ps, const char *s)
{
    skip_space(ps);
    size_t n = strlen(s);
    if (strncmp(ps->p, s, n))
        return false;
    /* a word must not run into more word characters */
    if (isalpha((unsigned char)s[n - 1]) && (isalnum((unsigned char)ps->p[n]) || ps->p[n] == '_'))
        return false;
    ps->p += n;
    return true;
}

static void expect(Parser *ps, const char *s)
{
    if (!accept(ps, s)) {
        char near[24];
        skip_space(ps);
        snprintf(near, sizeof near, "%.20s", *ps->p ? ps->p : "end of input");
        char *nl = strchr(near, '\n');
        if (nl)
            *nl = 0;
        SrcLoc loc = {ps->file, ps->line};
        diag_error(ps->d, loc, "expected '%s' near '%s'", s, near);
        longjmp(ps->fail, 1);
    }
}

static const char *ident(Parser *ps)
{
    skip_space(ps);
    const char *s = ps->p;
    if (!isalpha((unsigned char)*s) && *s != '_')
        error(ps, "expected a name near '%.12s'", *s ? s : "end of input");
    size_t n = 0;
    while (isalnum((unsigned char)s[n]) || s[n] == '_')
        n++;
    if (n >= sizeof ps->tok)
        error(ps, "name too long: %.20s...", s);
    memcpy(ps->tok, s, n);
    ps->tok[n] = 0;
    ps->p += n;
    return ps->tok;
}

static int64_t integer(Parser *ps)
{
    skip_space(ps);
    char *end;
    long long v = strtoll(ps->p, &end, 10);
    if (end == ps->p)
        error(ps, "expected an integer near '%.10s'", ps->p);
    ps->p = end;
    return v;
}

/* A parameter value or candidate: a word or a number, as text. */
static const char *word(Parser *ps)
{
    skip_space(ps);
    size_t n = 0;
    while (ps->p[n] && !isspace((unsigned char)ps->p[n]) && ps->p[n] != ',' && ps->p[n] != '}' &&
           ps->p[n] != '{' && n + 1 < sizeof ps->tok)
        n++;
    if (!n)
        error(ps, "expected a value near '%.10s'", ps->p);
    memcpy(ps->tok, ps->p, n);
    ps->tok[n] = 0;
    ps->p += n;
    return ps->tok;
}

static DType dtype(Parser *ps)
{
    const char *name = ident(ps);
    DType t = dt_parse(name);
    if (t == DT_NONE)
        error(ps, "unknown dtype '%s'", name);
    return t;
}

/* ---------------------------------------------------------- expressions */

static Expr *expr(Parser *ps);

static Buffer *buffer(Parser *ps, const char *name)
{
    Buffer *b = ir_buf_find(ps->k, name);
    if (!b)
        error(ps, "unknown buffer '%s'", name);
    return b;
}

static void index_list(Parser *ps, Buffer *b, Expr **idx)
{
    expect(ps, "[");
    for (int d = 0; d < b->rank; d++) {
        if (d)
            expect(ps, ",");
        idx[d] = expr(ps);
    }
    expect(ps, "]");
}

static const struct { const char *name; ExprOp op; } calls[] = {
    {"min", EX_MIN},     {"max", EX_MAX},     {"exp2", EX_EXP2},       {"exp", EX_EXP},
    {"log", EX_LOG},     {"sqrt", EX_SQRT},   {"rsqrt", EX_RSQRT},     {"sigmoid", EX_SIGMOID},
    {"silu", EX_SILU},   {"softplus", EX_SOFTPLUS}, {"abs", EX_ABS},   {"select", EX_SELECT},
};

static Expr *number(Parser *ps)
{
    const char *s = ps->p;
    size_t n = strspn(s, "0123456789");
    bool is_float = s[n] == '.' || s[n] == 'e' || s[n] == 'E';
    if (!is_float)
        return ir_const_i(ps->k, integer(ps));
    char *end;
    double v = strtod(s, &end);
    ps->p = end;
    return ir_const_f(ps->k, v);
}

static Expr *atom(Parser *ps)
{
    skip_space(ps);
    if (isdigit((unsigned char)*ps->p))
        return number(ps);
    if (accept(ps, "(")) {
        Expr *e = expr(ps);
        expect(ps, ")");
        return e;
    }
    char name[128];
    snprintf(name, sizeof name, "%s", ident(ps));
    if (!strcmp(name, "true") || !strcmp(name, "false"))
        return ir_const_bool(ps->k, name[0] == 't');
    if (!strcmp(name, "inf"))
        return ir_const_f(ps->k, INFINITY);
    if (!strcmp(name, "nan"))
        return ir_const_f(ps->k, NAN);
    if (!strcmp(name, "cast") || !strcmp(name, "bitcast")) {
        bool bits = name[0] == 'b';
        expect(ps, "<");
        DType t = dtype(ps);
        expect(ps, ">");
        expect(ps, "(");
        Expr *x = expr(ps);
        Expr *e = bits ? ir_bitcast(ps->k, t, x) : ir_cast(ps->k, t, x);
        expect(ps, ")");
        return e;
    }
    for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
        if (strcmp(name, calls[i].name))
            continue;
        expect(ps, "(");
        Expr *a = expr(ps), *e;
        int n = ex_nargs(calls[i].op);
        if (n == 1) {
            e = ir_unary(ps->k, calls[i].op, a);
        } else {
            expect(ps, ",");
            Expr *b = expr(ps);
            if (n == 3) {
                expect(ps, ",");
                e = ir_select(ps->k, a, b, expr(ps));
            } else {
                e = ir_binary(ps->k, calls[i].op, a, b);
            }
        }
        expect(ps, ")");
        return e;
    }
    skip_space(ps);
    if (*ps->p == '[') {
        Buffer *b = buffer(ps, name);
        Expr *idx[IR_MAX_RANK];
        index_list(ps, b, idx);
        return ir_load(ps->k, b, idx);
    }
    Var *v = ir_var_find(ps->k, name);
    if (v)
        return ir_var(ps->k, v);
    Param *p = ir_param_find(ps->k, name);
    if (p)
        return ir_param(ps->k, p);
    error(ps, "unknown name '%s'", name);
}

static Expr *unary(Parser *ps)
{
    if (accept(ps, "-"))
        return ir_unary(ps->k, EX_NEG, unary(ps));
    if (accept(ps, "not"))
        return ir_unary(ps->k, EX_NOT, unary(ps));
    return atom(ps);
}

/* Binary operators by level, loosest first; all left-associative. */
static const struct { const char *text; ExprOp op; int level; } binops[] = {
    {"or", EX_OR, 1},   {"and", EX_AND, 2}, {"<=", EX_LE, 3},  {"<", EX_LT, 3},  {"==", EX_EQ, 3},
    {"!=", EX_NE, 3},   {"|", EX_BOR, 4},   {"^", EX_BXOR, 5}, {"&", EX_BAND, 6}, {"<<", EX_SHL, 7},
    {">>", EX_SHR, 7},  {"+", EX_ADD, 8},   {"-", EX_SUB, 8},  {"*", EX_MUL, 9},  {"/", EX_DIV, 9},
    {"%", EX_MOD, 9},
};

static bool binop_at(Parser *ps, int level, ExprOp *op)
{
    skip_space(ps);
    for (size_t i = 0; i < sizeof binops / sizeof binops[0]; i++) {
        if (binops[i].level != level)
            continue;
        /* "+:" closes a region extent, "->" separates operands */
        if (!strcmp(binops[i].text, "+") && ps->p[1] == ':')
            continue;
        if (!strcmp(binops[i].text, "-") && ps->p[1] == '>')
            continue;
        if (!strcmp(binops[i].text, "<") && ps->p[1] == '<') /* "<<" is a shift */
            continue;
        if (accept(ps, binops[i].text)) {
            *op = binops[i].op;
            return true;
        }
    }
    return false;
}

static Expr *binary_level(Parser *ps, int level)
{
    if (level > 9)
        return unary(ps);
    Expr *e = binary_level(ps, level + 1);
    ExprOp op;
    while (binop_at(ps, level, &op))
        e = ir_binary(ps->k, op, e, binary_level(ps, level + 1));
    return e;
}

static Expr *expr(Parser *ps) { return binary_level(ps, 1); }

/* ----------------------------------------------------------- statements */

static Region region(Parser *ps)
{
    Region r = {.buf = buffer(ps, ident(ps))};
    if (!accept(ps, "[")) {
        if (r.buf->scope == SCOPE_GLOBAL)
            error(ps, "argument %s needs a window: name[offset +: extent, ...]", r.buf->name);
        return ir_region_whole(ps->k, r.buf);
    }
    for (int d = 0; d < r.buf->rank; d++) {
        if (d)
            expect(ps, ",");
        r.off[d] = expr(ps);
        expect(ps, "+:");
        r.ext[d] = integer(ps);
    }
    expect(ps, "]");
    return r;
}

static Stmt *block(Parser *ps);

static LoopKind loop_kind(Parser *ps, int *arg)
{
    static const char *const kinds[] = {"serial", "parallel", "unroll", "pipelined", "vector"};
    const char *name = ident(ps);
    for (int i = 0; i < 5; i++)
        if (!strcmp(name, kinds[i])) {
            *arg = 0;
            if (i == LOOP_PIPELINED || i == LOOP_VECTOR) {
                expect(ps, "(");
                *arg = (int)integer(ps);
                expect(ps, ")");
            }
            return (LoopKind)i;
        }
    error(ps, "unknown loop kind '%s'", name);
}

static Var *new_var(Parser *ps, const char *name)
{
    if (ir_var_find(ps->k, name))
        error(ps, "variable '%s' is defined twice", name);
    return ir_var_new(ps->k, name);
}

static Stmt *stmt(Parser *ps)
{
    SrcLoc loc = {ps->file, ps->line};
    Kernel *k = ps->k;
    if (accept(ps, "for")) {
        Var *v = new_var(ps, ident(ps));
        expect(ps, ":");
        int arg;
        LoopKind kind = loop_kind(ps, &arg);
        expect(ps, "<");
        Expr *n = expr(ps);
        return ir_for(k, v, n, kind, arg, block(ps), loc);
    }
    if (accept(ps, "if")) {
        Expr *c = expr(ps);
        Stmt *then_ = block(ps);
        return ir_if(k, c, then_, accept(ps, "else") ? block(ps) : NULL, loc);
    }
    bool is_copy = accept(ps, "copy");
    if (is_copy || accept(ps, "atomic_add")) {
        bool atomic = !is_copy;
        Region src = region(ps);
        expect(ps, "->");
        Region dst = region(ps);
        return atomic ? ir_atomic_add(k, src, dst, loc) : ir_copy(k, src, dst, loc);
    }
    if (accept(ps, "fill")) {
        Region dst = region(ps);
        expect(ps, "=");
        return ir_fill(k, dst, expr(ps), loc);
    }
    bool micro = accept(ps, "micro_gemm");
    if (micro || accept(ps, "gemm")) {
        Region a = region(ps);
        expect(ps, ",");
        Region b = region(ps);
        expect(ps, "->");
        Region c = region(ps);
        bool ta = accept(ps, "trans_a"), tb = accept(ps, "trans_b"), clear = accept(ps, "clear");
        bool pairs = accept(ps, "b_pairs");
        Stmt *g = micro ? ir_micro_gemm(k, a, b, c, ta, tb, clear, loc) : ir_gemm(k, a, b, c, ta, tb, clear, loc);
        g->u.gemm.b_pairs = pairs;
        return g;
    }
    if (accept(ps, "reduce")) {
        static const char *const ops[] = {"sum", "max", "min", "absmax"};
        const char *name = ident(ps);
        int op = -1;
        for (int i = 0; i < 4; i++)
            if (!strcmp(name, ops[i]))
                op = i;
        if (op < 0)
            error(ps, "unknown reduction '%s'", name);
        expect(ps, "axis");
        int axis = (int)integer(ps);
        Region src = region(ps);
        expect(ps, "->");
        Region dst = region(ps);
        return ir_reduce(k, src, dst, axis, (ReduceOp)op, accept(ps, "clear"), loc);
    }
    bool atomic = accept(ps, "atomic");
    Buffer *b = buffer(ps, ident(ps));
    Expr *idx[IR_MAX_RANK];
    index_list(ps, b, idx);
    expect(ps, atomic ? "+=" : "=");
    Stmt *s = ir_store(k, b, idx, expr(ps), loc);
    s->u.store.atomic = atomic;
    return s;
}

static Stmt *block(Parser *ps)
{
    SrcLoc loc = {ps->file, ps->line};
    expect(ps, "{");
    Stmt *seq = ir_seq(ps->k, loc);
    while (!accept(ps, "}")) {
        skip_space(ps);
        if (!*ps->p)
            error(ps, "unexpected end of input: a '{' is not closed%s", "");
        ir_seq_push(ps->k, seq, stmt(ps));
    }
    return seq;
}

/* --------------------------------------------------------------- header */

static void dims(Parser *ps, Expr **out, int *rank)
{
    expect(ps, "[");
    *rank = 0;
    do {
        if (*rank == IR_MAX_RANK)
            error(ps, "more than %s dimensions", "6");
        out[(*rank)++] = expr(ps);
    } while (accept(ps, ","));
    expect(ps, "]");
}

static void header_param(Parser *ps)
{
    char name[128];
    snprintf(name, sizeof name, "%s", ident(ps));
    const char *kind = ident(ps);
    if (!strcmp(kind, "dyn")) {
        ir_kparam_add(ps->k, name, KP_DYN, NULL);
        return;
    }
    KParamKind kk = !strcmp(kind, "fixed") ? KP_FIXED : KP_TUNE;
    if (strcmp(kind, "fixed") && strcmp(kind, "tune") && strcmp(kind, "size"))
        error(ps, "unknown parameter kind '%s' (fixed, tune, size, dyn)", kind);
    bool tune = !strcmp(kind, "tune");
    KParam *p = ir_kparam_add(ps->k, name, kk, word(ps));
    if (tune) {
        expect(ps, "{");
        do
            ir_kparam_cand(ps->k, p, word(ps));
        while (accept(ps, ","));
        expect(ps, "}");
    }
}

static void header_scalar(Parser *ps)
{
    char name[128];
    snprintf(name, sizeof name, "%s", ident(ps));
    expect(ps, ":");
    Param *p = ir_param_add(ps->k, name, dtype(ps));
    for (int i = 0; i < ps->k->nkparams; i++)
        if (ps->k->kparams[i].kind == KP_DYN && !strcmp(ps->k->kparams[i].name, name))
            ps->k->kparams[i].dyn = p;
}

static void header_buffer(Parser *ps, bool arg)
{
    SrcLoc loc = {ps->file, ps->line};
    char name[128];
    snprintf(name, sizeof name, "%s", ident(ps));
    if (ir_buf_find(ps->k, name))
        error(ps, "buffer '%s' is defined twice", name);
    expect(ps, ":");
    Scope scope = SCOPE_GLOBAL;
    if (!arg) {
        const char *s = ident(ps);
        scope = !strcmp(s, "shared") ? SCOPE_SHARED : !strcmp(s, "fragment") ? SCOPE_FRAGMENT
              : !strcmp(s, "local")  ? SCOPE_LOCAL : SCOPE_GLOBAL;
        if (scope == SCOPE_GLOBAL)
            error(ps, "unknown scope '%s' (shared, fragment, local)", s);
    }
    DType t = dtype(ps);
    Expr *shape[IR_MAX_RANK];
    int rank;
    dims(ps, shape, &rank);
    if (!arg) {
        int64_t n[IR_MAX_RANK];
        for (int d = 0; d < rank; d++)
            if (!ir_expr_is_const(shape[d], &n[d]) || n[d] < 1)
                error(ps, "scratch buffer '%s' needs constant positive dimensions", name);
        ir_buf_add(ps->k, name, scope, t, rank, n, loc);
        return;
    }
    const char *dir = ident(ps);
    ArgDir ad = !strcmp(dir, "in") ? ARG_IN : !strcmp(dir, "out") ? ARG_OUT : !strcmp(dir, "inout") ? ARG_INOUT : ARG_NONE;
    if (ad == ARG_NONE)
        error(ps, "unknown argument direction '%s' (in, out, inout)", dir);
    Buffer *b = ir_arg_add(ps->k, name, t, ad, rank, shape, loc);
    if (accept(ps, "strides")) {
        int srank;
        dims(ps, b->stride, &srank);
        if (srank != rank)
            error(ps, "argument '%s' has a stride per dimension", name);
    }
}

static void header_grid(Parser *ps)
{
    Var *vars[IR_MAX_GRID];
    Expr *ext[IR_MAX_GRID];
    int n = 0;
    expect(ps, "(");
    do {
        if (n == IR_MAX_GRID)
            error(ps, "a grid has at most %s dimensions", "3");
        vars[n++] = new_var(ps, ident(ps));
    } while (accept(ps, ","));
    expect(ps, ")");
    expect(ps, "<");
    int m;
    dims(ps, ext, &m);
    if (m != n)
        error(ps, "the grid needs one extent per variable%s", "");
    ir_set_grid(ps->k, n, vars, ext);
}

Kernel *ir_parse(const char *text, const char *filename, Diag *d)
{
    Parser ps = {.p = text, .file = filename, .line = 1, .d = d};
    if (setjmp(ps.fail)) {
        ir_kernel_free(ps.k);
        return NULL;
    }
    SrcLoc loc = {filename, 1};
    if (!accept(&ps, "kernel")) {
        diag_error(d, loc, "expected 'kernel NAME level tile|loop' at the start");
        return NULL;
    }
    char name[128];
    snprintf(name, sizeof name, "%s", ident(&ps));
    ps.k = ir_kernel_new(name, loc);
    expect(&ps, "level");
    const char *level = ident(&ps);
    if (strcmp(level, "tile") && strcmp(level, "loop"))
        error(&ps, "unknown level '%s' (tile or loop)", level);
    ps.k->level = !strcmp(level, "loop") ? LEVEL_LOOP : LEVEL_TILE;
    for (;;) {
        if (accept(&ps, "param"))
            header_param(&ps);
        else if (accept(&ps, "scalar"))
            header_scalar(&ps);
        else if (accept(&ps, "arg"))
            header_buffer(&ps, true);
        else if (accept(&ps, "buf"))
            header_buffer(&ps, false);
        else if (accept(&ps, "grid"))
            header_grid(&ps);
        else
            break;
    }
    ps.k->body = block(&ps);
    skip_space(&ps);
    if (*ps.p)
        error(&ps, "unexpected text after the kernel body near '%.10s'", ps.p);
    return ps.k;
}
