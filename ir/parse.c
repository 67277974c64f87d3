/* parse.c — the printed form of a kernel back into IR (see print.c for the
 * grammar).  Expressions are rebuilt through the builders, so a parsed tree
 * has the same types and folded constants as the one that was printed, and
 * print(parse(print(k))) == print(k).
 *
 * Errors are one line, "file.tir:LINE: message", never a crash: every error
 * longjmps out and the half-built kernel is freed.  A comment "# FILE:LINE"
 * at the end of a statement's line (what the printer writes with source
 * locations) becomes that statement's loc; any other comment is ignored. */
#include "ir/ir.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

typedef struct Parser {
    const char *diag_file; /* the caller's name: errors outlive the freed kernel */
    const char *p, *file;
    int line;
    Kernel *k;
    Diag *d;
    jmp_buf fail;
    int depth;     /* nesting of expressions and blocks, bounded */
    const char *trail; /* the last comment that followed code on its line */
    int trail_line;
    const char *last_file; /* arena copy of the last FILE of a loc comment */
    char tok[128]; /* the current token's text */
    char near[32]; /* the rest of the current line, for messages */
} Parser;

/* Deeper nesting than this is an error rather than a stack overflow. */
#define MAX_DEPTH 200

/* The input at the cursor, cut at the end of its line, for "near '...'". */
static const char *near(Parser *ps)
{
    if (!*ps->p)
        return "end of input";
    size_t n = strcspn(ps->p, "\r\n");
    if (n > 20)
        n = 20;
    memcpy(ps->near, ps->p, n);
    ps->near[n] = 0;
    return ps->near;
}

static _Noreturn void error(Parser *ps, const char *fmt, const char *arg)
{
    SrcLoc loc = {ps->diag_file, ps->line};
    diag_error(ps->d, loc, fmt, arg);
    longjmp(ps->fail, 1);
}

/* Skip blanks and comments.  A comment that follows code on its line is
 * remembered (trail, trail_line): it may carry a source location. */
static void skip_space(Parser *ps)
{
    int line0 = ps->line;
    for (;;) {
        while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\r' || *ps->p == '\n') {
            if (*ps->p == '\n')
                ps->line++;
            ps->p++;
        }
        if (*ps->p != '#')
            return;
        if (ps->line == line0) {
            ps->trail = ps->p;
            ps->trail_line = ps->line;
        }
        while (*ps->p && *ps->p != '\n') /* comments run to the end of the line */
            ps->p++;
    }
}

/* If the trailing comment of `line` came after `start` and reads
 * "# FILE:LINE", set *out to that location (FILE may contain ':'). */
static void trailing_loc(Parser *ps, const char *start, int line, SrcLoc *out)
{
    if (!ps->trail || ps->trail_line != line || ps->trail < start || !ps->k)
        return;
    const char *s = ps->trail + 1;
    s += strspn(s, " \t");
    size_t n = strcspn(s, "\r\n");
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    size_t colon = n;
    while (colon && s[colon - 1] != ':')
        colon--;
    if (colon < 2 || colon == n || strspn(s + colon, "0123456789") != n - colon || n - colon > 9)
        return;
    char file[256];
    if (colon - 1 >= sizeof file)
        return;
    memcpy(file, s, colon - 1);
    file[colon - 1] = 0;
    if (!ps->last_file || strcmp(ps->last_file, file))
        ps->last_file = arena_strdup(ps->k->arena, file);
    out->file = ps->last_file;
    out->line = atoi(s + colon);
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
        skip_space(ps);
        SrcLoc loc = {ps->diag_file, ps->line};
        diag_error(ps->d, loc, "expected '%s' near '%s'", s, near(ps));
        longjmp(ps->fail, 1);
    }
}

static const char *ident(Parser *ps)
{
    skip_space(ps);
    const char *s = ps->p;
    if (!isalpha((unsigned char)*s) && *s != '_')
        error(ps, "expected a name near '%s'", near(ps));
    size_t n = 0;
    while (isalnum((unsigned char)s[n]) || s[n] == '_')
        n++;
    if (n >= sizeof ps->tok)
        error(ps, "name too long: '%s...'", near(ps));
    memcpy(ps->tok, s, n);
    ps->tok[n] = 0;
    ps->p += n;
    return ps->tok;
}

/* A decimal integer, optionally negative; out of i64 range is an error. */
static int64_t integer(Parser *ps)
{
    skip_space(ps);
    const char *s = ps->p + (*ps->p == '-');
    if (!isdigit((unsigned char)*s))
        error(ps, "expected an integer near '%s'", near(ps));
    char *end;
    errno = 0;
    long long v = strtoll(ps->p, &end, 10);
    if (errno == ERANGE)
        error(ps, "integer out of range near '%s'", near(ps));
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
        error(ps, "expected a value near '%s'", near(ps));
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

/* "[i, j]": exactly b->rank indices (too many fails at the ',' as
 * "expected ']'"). */
static void index_list(Parser *ps, Buffer *b, Expr **idx)
{
    expect(ps, "[");
    for (int d = 0; d < b->rank; d++) {
        if (d && (skip_space(ps), *ps->p == ']')) {
            char msg[160];
            snprintf(msg, sizeof msg, "'%s' takes %d indices, got %d", b->name, b->rank, d);
            error(ps, "%s", msg);
        }
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

/* A literal, possibly with a leading '-' (so "-2" and "-1.5" read back as
 * the negative constants the printer wrote, and INT64_MIN parses).  A '.'
 * or an exponent makes it f32, otherwise it is i64. */
static Expr *number(Parser *ps)
{
    const char *s = ps->p + (*ps->p == '-');
    size_t n = strspn(s, "0123456789");
    bool is_float = s[n] == '.' || s[n] == 'e' || s[n] == 'E';
    if (!is_float)
        return ir_const_i(ps->k, integer(ps));
    char *end;
    double v = strtod(ps->p, &end);
    if (isalnum((unsigned char)*end) || *end == '_' || *end == '.')
        error(ps, "malformed number near '%s'", near(ps));
    ps->p = end;
    return ir_const_f(ps->k, v);
}

/* Is the next non-space character c?  (Nothing is consumed.) */
static bool next_is(Parser *ps, char c)
{
    skip_space(ps);
    return *ps->p == c;
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
    /* Operator names are words only before '(' (or '<' for casts), so a
     * variable may still be called "max" or "exp". */
    if ((!strcmp(name, "cast") || !strcmp(name, "bitcast")) && next_is(ps, '<')) {
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
        if (strcmp(name, calls[i].name) || !next_is(ps, '('))
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
    if (next_is(ps, '[')) {
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
    skip_space(ps);
    if (ps->p[0] == '-' && isdigit((unsigned char)ps->p[1]))
        return number(ps);
    if (ps->p[0] == '-' && !strncmp(ps->p + 1, "inf", 3) && !isalnum((unsigned char)ps->p[4]) &&
        ps->p[4] != '_' && ps->p[4] != '[') {
        ps->p += 4;
        return ir_const_f(ps->k, -INFINITY);
    }
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
        /* (p[1] is read only when p[0] matched, so never past the end) */
        if (!strcmp(binops[i].text, "+") && ps->p[0] == '+' && ps->p[1] == ':')
            continue;
        if (!strcmp(binops[i].text, "-") && ps->p[0] == '-' && ps->p[1] == '>')
            continue;
        if (!strcmp(binops[i].text, "<") && ps->p[0] == '<' && ps->p[1] == '<') /* "<<" is a shift */
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

static Expr *expr(Parser *ps)
{
    if (++ps->depth > MAX_DEPTH)
        error(ps, "nesting deeper than %s levels", "200");
    Expr *e = binary_level(ps, 1);
    ps->depth--;
    return e;
}

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

static Stmt *block(Parser *ps, SrcLoc *header);

/* "serial", "unroll(4)", "pipelined(2)", "vector(16)": the argument is
 * printed when the kind needs it (pipelined, vector) or when it is not 0. */
static LoopKind loop_kind(Parser *ps, int *arg)
{
    static const char *const kinds[] = {"serial", "parallel", "unroll", "pipelined", "vector"};
    const char *name = ident(ps);
    for (int i = 0; i < 5; i++) {
        if (strcmp(name, kinds[i]))
            continue;
        *arg = 0;
        bool needs = i == LOOP_PIPELINED || i == LOOP_VECTOR;
        if (needs || next_is(ps, '(')) {
            expect(ps, "(");
            int64_t n = integer(ps);
            if (n < INT32_MIN || n > INT32_MAX)
                error(ps, "loop argument out of range near '%s'", near(ps));
            *arg = (int)n;
            expect(ps, ")");
        }
        return (LoopKind)i;
    }
    error(ps, "unknown loop kind '%s' (serial, parallel, unroll, pipelined, vector)", name);
}

static Var *new_var(Parser *ps, const char *name)
{
    if (ir_var_find(ps->k, name))
        error(ps, "variable '%s' is defined twice", name);
    return ir_var_new(ps->k, name);
}

/* A statement keyword; followed by '[' the word is a buffer being stored to
 * (a buffer may be called "fill"), so it is not consumed. */
static bool keyword(Parser *ps, const char *kw)
{
    const char *save = ps->p;
    int line = ps->line;
    if (!accept(ps, kw))
        return false;
    if (!next_is(ps, '['))
        return true;
    ps->p = save;
    ps->line = line;
    return false;
}

static Stmt *stmt_for(Parser *ps, SrcLoc loc)
{
    Var *v = new_var(ps, ident(ps));
    expect(ps, ":");
    int arg;
    LoopKind kind = loop_kind(ps, &arg);
    expect(ps, "<");
    Expr *n = expr(ps);
    Stmt *s = ir_for(ps->k, v, n, kind, arg, NULL, loc);
    s->u.loop.body = block(ps, &s->loc);
    return s;
}

static Stmt *stmt_if(Parser *ps, SrcLoc loc)
{
    Expr *c = expr(ps);
    Stmt *s = ir_if(ps->k, c, NULL, NULL, loc);
    s->u.if_.then_ = block(ps, &s->loc);
    if (keyword(ps, "else"))
        s->u.if_.else_ = block(ps, NULL);
    return s;
}

static Stmt *stmt_gemm(Parser *ps, bool micro, SrcLoc loc)
{
    Region a = region(ps);
    expect(ps, ",");
    Region b = region(ps);
    expect(ps, "->");
    Region c = region(ps);
    /* flags in the printer's order */
    bool ta = keyword(ps, "trans_a"), tb = keyword(ps, "trans_b"), clear = keyword(ps, "clear");
    Region as = {0}, bs = {0};
    if (keyword(ps, "a_scale"))
        as = region(ps);
    if (keyword(ps, "b_scale"))
        bs = region(ps);
    Expr *rows = !micro && keyword(ps, "rows") ? expr(ps) : NULL;
    Expr *cols = !micro && keyword(ps, "cols") ? expr(ps) : NULL;
    bool fast = !micro && keyword(ps, "fast_accum");
    bool pairs = keyword(ps, "b_pairs"), lifted = keyword(ps, "a_lifted");
    bool prescaled = keyword(ps, "a_prescaled"), decode_order = keyword(ps, "a_decode_order");
    skip_space(ps);
    int old_line = ps->line;
    if (!decode_order && keyword(ps, "a_e2m1_order")) {
        ps->line = old_line; /* (keyword looked past the line's end) */
        error(ps, "%s is now a_decode_order (IR printed before 2026-12-03): rename it", "a_e2m1_order");
    }
    Stmt *g = micro ? ir_micro_gemm(ps->k, a, b, c, ta, tb, clear, loc)
                    : ir_gemm(ps->k, a, b, c, ta, tb, clear, loc);
    g->u.gemm.a_scale = as;
    g->u.gemm.b_scale = bs;
    g->u.gemm.b_pairs = pairs;
    g->u.gemm.a_lifted = lifted;
    g->u.gemm.a_prescaled = prescaled;
    g->u.gemm.a_decode_order = decode_order;
    g->u.gemm.rows = rows;
    g->u.gemm.cols = cols;
    g->u.gemm.fast_accum = fast;
    if (micro && accept(ps, "wgmma")) { /* (followed by "[": not a keyword()) */
        Expr *d[1024];
        int n = 0;
        expect(ps, "[");
        do {
            if (n == (int)(sizeof d / sizeof d[0]))
                error(ps, "too many wgmma descriptor words%s", "");
            d[n++] = expr(ps);
        } while (accept(ps, ","));
        expect(ps, "]");
        g->u.gemm.desc = arena_alloc(ps->k->arena, (size_t)n * sizeof *d);
        memcpy(g->u.gemm.desc, d, (size_t)n * sizeof *d);
        g->u.gemm.ndesc = n;
    }
    return g;
}

static Stmt *stmt_reduce(Parser *ps, SrcLoc loc)
{
    static const char *const ops[] = {"sum", "max", "min", "absmax"};
    const char *name = ident(ps);
    int op = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, ops[i]))
            op = i;
    if (op < 0)
        error(ps, "unknown reduction '%s' (sum, max, min, absmax)", name);
    expect(ps, "axis");
    int64_t axis = integer(ps);
    if (axis < 0 || axis >= IR_MAX_RANK)
        error(ps, "reduce axis out of range near '%s'", near(ps));
    Region src = region(ps);
    expect(ps, "->");
    Region dst = region(ps);
    return ir_reduce(ps->k, src, dst, (int)axis, (ReduceOp)op, keyword(ps, "clear"), loc);
}

static Stmt *stmt_store(Parser *ps, SrcLoc loc)
{
    bool atomic = keyword(ps, "atomic"), async = !atomic && keyword(ps, "async");
    bool stream = !atomic && !async && keyword(ps, "stream");
    Buffer *b = buffer(ps, ident(ps));
    Expr *idx[IR_MAX_RANK];
    index_list(ps, b, idx);
    expect(ps, atomic ? "+=" : "=");
    Stmt *s = ir_store(ps->k, b, idx, expr(ps), loc);
    s->u.store.atomic = atomic;
    s->u.store.async = async;
    s->u.store.stream = stream;
    return s;
}

/* "BAR[SLOT]": an mbarrier (an element of a 1-D buffer). */
static Buffer *mbar_ref(Parser *ps, Expr **slot)
{
    Buffer *b = buffer(ps, ident(ps));
    if (b->rank != 1)
        error(ps, "mbarrier buffer '%s' is not 1-D", b->name);
    index_list(ps, b, slot);
    return b;
}

static Stmt *stmt_mbar(Parser *ps, StmtOp op, SrcLoc loc)
{
    Expr *slot;
    Buffer *bar = mbar_ref(ps, &slot);
    expect(ps, ",");
    if (op == ST_MBAR_WAIT)
        return ir_mbar_wait(ps->k, bar, slot, expr(ps), loc);
    int64_t n = integer(ps);
    return op == ST_MBAR_INIT ? ir_mbar_init(ps->k, bar, slot, n, loc) : ir_mbar_expect(ps->k, bar, slot, n, loc);
}

static Stmt *stmt_tma(Parser *ps, SrcLoc loc)
{
    Region src = region(ps);
    expect(ps, "->");
    Region dst = region(ps);
    expect(ps, ",");
    Expr *slot;
    Buffer *bar = mbar_ref(ps, &slot);
    int64_t W = keyword(ps, "swizzle") ? integer(ps) : 0;
    if (W != 0 && W != 32 && W != 64 && W != 128)
        error(ps, "tma_load swizzle must be 32, 64 or 128 bytes near '%s'", near(ps));
    return ir_tma_load(ps->k, src, dst, bar, slot, (int)W, loc);
}

/* One statement; loops and ifs take their loc comment from the line of
 * their '{' (block), the others from their own line. */
static Stmt *stmt(Parser *ps)
{
    skip_space(ps);
    const char *start = ps->p;
    SrcLoc loc = {ps->file, ps->line};
    Kernel *k = ps->k;
    if (keyword(ps, "for"))
        return stmt_for(ps, loc);
    if (keyword(ps, "if"))
        return stmt_if(ps, loc);
    if (keyword(ps, "once")) {
        Stmt *s = ir_once(k, expr(ps), NULL, loc);
        s->u.once.body = block(ps, &s->loc);
        return s;
    }
    Stmt *s;
    bool is_copy = keyword(ps, "copy"), micro = false;
    if (is_copy || keyword(ps, "atomic_add")) {
        bool async = is_copy && keyword(ps, "async");
        Region src = region(ps);
        expect(ps, "->");
        Region dst = region(ps);
        s = is_copy ? ir_copy(k, src, dst, loc) : ir_atomic_add(k, src, dst, loc);
        s->u.copy.async = async;
    } else if (keyword(ps, "prefetch")) {
        Buffer *b = buffer(ps, ident(ps));
        Expr *idx[IR_MAX_RANK];
        index_list(ps, b, idx);
        s = ir_prefetch(k, b, idx, loc);
    } else if (keyword(ps, "fill")) {
        Region dst = region(ps);
        expect(ps, "=");
        s = ir_fill(k, dst, expr(ps), loc);
    } else if ((micro = keyword(ps, "micro_gemm")) || keyword(ps, "gemm")) {
        s = stmt_gemm(ps, micro, loc);
    } else if (keyword(ps, "reduce")) {
        s = stmt_reduce(ps, loc);
    } else if (keyword(ps, "barrier")) {
        s = ir_barrier(k, loc);
    } else if (keyword(ps, "async_commit")) {
        s = ir_async_commit(k, loc);
    } else if (keyword(ps, "async_wait")) {
        s = ir_async_wait(k, (int)integer(ps), loc);
    } else if (keyword(ps, "wgmma_wait")) {
        s = ir_wgmma_wait(k, (int)integer(ps), loc);
    } else if (keyword(ps, "mbar_init")) {
        s = stmt_mbar(ps, ST_MBAR_INIT, loc);
    } else if (keyword(ps, "mbar_expect_tx")) {
        s = stmt_mbar(ps, ST_MBAR_EXPECT, loc);
    } else if (keyword(ps, "mbar_wait")) {
        s = stmt_mbar(ps, ST_MBAR_WAIT, loc);
    } else if (keyword(ps, "tma_load")) {
        s = stmt_tma(ps, loc);
    } else {
        s = stmt_store(ps, loc);
    }
    skip_space(ps); /* reaches the trailing comment, if any */
    trailing_loc(ps, start, loc.line, &s->loc);
    return s;
}

/* "{ STATEMENTS }" as a SEQ.  header: where a loc comment on the line of
 * the '{' goes (the loop or if that owns the block), or NULL. */
static Stmt *block(Parser *ps, SrcLoc *header)
{
    SrcLoc loc = {ps->file, ps->line};
    if (++ps->depth > MAX_DEPTH)
        error(ps, "nesting deeper than %s levels", "200");
    expect(ps, "{");
    const char *open = ps->p;
    skip_space(ps);
    if (header)
        trailing_loc(ps, open - 1, loc.line, header);
    Stmt *seq = ir_seq(ps->k, loc);
    while (!accept(ps, "}")) {
        if (!*ps->p)
            error(ps, "unexpected end of input: a '{' is not closed%s", "");
        ir_seq_push(ps->k, seq, stmt(ps));
        skip_space(ps);
    }
    ps->depth--;
    return seq;
}

/* --------------------------------------------------------------- header */

/* "[E0, E1, ...]", possibly "[]" (rank 0). */
static void dims(Parser *ps, Expr **out, int *rank)
{
    expect(ps, "[");
    *rank = 0;
    if (accept(ps, "]"))
        return;
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
    if (ir_kparam_find(ps->k, name))
        error(ps, "parameter '%s' is defined twice", name);
    const char *kind = ident(ps);
    if (!strcmp(kind, "dyn")) {
        ir_kparam_add(ps->k, name, KP_DYN, NULL);
        return;
    }
    KParamKind kk = !strcmp(kind, "fixed") ? KP_FIXED : KP_TUNE;
    bool variant = !strcmp(kind, "variant"), tune = variant || !strcmp(kind, "tune");
    if (strcmp(kind, "fixed") && !tune && strcmp(kind, "size"))
        error(ps, "unknown parameter kind '%s' (fixed, tune, variant, size, dyn)", kind);
    KParam *p = ir_kparam_add(ps->k, name, kk, word(ps));
    p->variant = variant;
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
    if (ir_param_find(ps->k, name))
        error(ps, "scalar '%s' is defined twice", name);
    expect(ps, ":");
    Param *p = ir_param_add(ps->k, name, dtype(ps));
    for (int i = 0; i < ps->k->nkparams; i++)
        if (ps->k->kparams[i].kind == KP_DYN && !strcmp(ps->k->kparams[i].name, name))
            ps->k->kparams[i].dyn = p;
}

static Buffer *header_buffer(Parser *ps, bool arg)
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
        Buffer *b = ir_buf_add(ps->k, name, scope, t, rank, n, loc);
        if (accept(ps, "strides")) {
            int srank;
            dims(ps, b->stride, &srank);
            if (srank != rank)
                error(ps, "buffer '%s' needs one stride per dimension", name);
            for (int d = 0; d < rank; d++)
                if (!ir_expr_is_const(b->stride[d], NULL))
                    error(ps, "scratch buffer '%s' needs constant strides", name);
        }
        if (accept(ps, "align")) {
            b->align = (int)integer(ps);
            if (b->align < 16 || b->align & (b->align - 1))
                error(ps, "buffer '%s': align must be a power of two of at least 16", name);
        }
        return b;
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
            error(ps, "argument '%s' needs one stride per dimension", name);
    }
    return b;
}

static void header_grid(Parser *ps)
{
    Var *vars[IR_MAX_GRID];
    Expr *ext[IR_MAX_GRID];
    int n = 0;
    if (ps->k->ngrid)
        error(ps, "the grid is defined twice%s", "");
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

static void header_threads(Parser *ps)
{
    if (ps->k->nthreads)
        error(ps, "threads are defined twice%s", "");
    Var *v = new_var(ps, ident(ps));
    expect(ps, "<");
    int64_t n = integer(ps);
    if (n < 1 || n > 1024)
        error(ps, "a block has 1 to %s threads", "1024");
    ir_set_threads(ps->k, (int)n, v);
}

static void header_block_threads(Parser *ps)
{
    int64_t n = integer(ps);
    if (n < 1 || n > 1024)
        error(ps, "a block has 1 to %s threads", "1024");
    ps->k->block_threads = (int)n;
}

/* The header lines before the body, each with an optional loc comment. */
static void header(Parser *ps)
{
    for (;;) {
        skip_space(ps);
        const char *start = ps->p;
        int line = ps->line;
        Buffer *b = NULL;
        if (accept(ps, "param"))
            header_param(ps);
        else if (accept(ps, "scalar"))
            header_scalar(ps);
        else if (accept(ps, "arg"))
            b = header_buffer(ps, true);
        else if (accept(ps, "buf"))
            b = header_buffer(ps, false);
        else if (accept(ps, "grid"))
            header_grid(ps);
        else if (accept(ps, "block_threads"))
            header_block_threads(ps);
        else if (accept(ps, "threads"))
            header_threads(ps);
        else
            return;
        skip_space(ps);
        if (b)
            trailing_loc(ps, start, line, &b->loc);
    }
}

Kernel *ir_parse(const char *text, const char *filename, Diag *d)
{
    Parser ps = {.p = text, .file = filename, .diag_file = filename, .line = 1, .d = d};
    if (setjmp(ps.fail)) {
        ir_kernel_free(ps.k);
        return NULL;
    }
    if (!accept(&ps, "kernel")) {
        SrcLoc loc = {filename, ps.line};
        diag_error(d, loc, "expected 'kernel NAME level tile|loop' at the start");
        return NULL;
    }
    SrcLoc loc = {filename, ps.line};
    char name[128];
    snprintf(name, sizeof name, "%s", ident(&ps));
    ps.k = ir_kernel_new(name, loc);
    ps.file = ps.k->loc.file; /* the kernel's own copy outlives the caller's */
    expect(&ps, "level");
    const char *level = ident(&ps);
    if (strcmp(level, "tile") && strcmp(level, "loop"))
        error(&ps, "unknown level '%s' (tile or loop)", level);
    ps.k->level = !strcmp(level, "loop") ? LEVEL_LOOP : LEVEL_TILE;
    skip_space(&ps);
    trailing_loc(&ps, text, loc.line, &ps.k->loc);
    header(&ps);
    ps.k->body = block(&ps, NULL);
    skip_space(&ps);
    if (*ps.p)
        error(&ps, "unexpected text after the kernel body near '%s'", near(&ps));
    return ps.k;
}

Kernel *ir_parse_file(const char *path, Diag *d)
{
    SrcLoc none = {0};
    FILE *f = fopen(path, "rb");
    if (!f)
        return diag_error(d, none, "cannot open %s: %s", path, strerror(errno)), NULL;
    size_t cap = 1 << 16, n = 0;
    char *text = malloc(cap);
    for (size_t got; text && (got = fread(text + n, 1, cap - 1 - n, f)) > 0;) {
        n += got;
        if (n + 1 == cap) {
            char *bigger = realloc(text, cap *= 2);
            if (!bigger)
                free(text);
            text = bigger;
        }
    }
    bool bad = ferror(f) || !text;
    fclose(f);
    if (bad) {
        free(text);
        return diag_error(d, none, "cannot read %s", path), NULL;
    }
    text[n] = 0;
    if (strlen(text) != n) {
        free(text);
        return diag_error(d, none, "%s: not a printed kernel (it holds a NUL byte)", path), NULL;
    }
    Kernel *k = ir_parse(text, path, d);
    free(text);
    if (k && !ir_verify(k, d)) {
        ir_kernel_free(k);
        return NULL;
    }
    return k;
}
