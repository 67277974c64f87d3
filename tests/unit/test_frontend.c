/* test_frontend.c — the frontend: every example builds the Tile IR its
 * interface promises (arguments, dtypes, shapes, grid, parameters) with
 * default parameters and with --set values; every DSL construct becomes the
 * IR node it names, at the user's line; the printed IR parses back; and
 * mistakes give one line at the user's file and line (golden files in
 * tests/specs/fe/bad: NAME.lua beside NAME.err).  A golden line that ends
 * in "*" fixes only what comes before it (the location and the op that
 * reports): it is for mistakes the frontend does not report well yet, where
 * the wording is the fixer's choice.
 *
 * Specs that may crash the frontend are loaded in a child process, so a
 * crash is one failed check, not a dead test binary. */
#include "frontend/frontend.h"
#include "test.h"

#include <dirent.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ------------------------------------------------------------ helpers */

static void diag_text(const Diag *d, char *out, size_t n)
{
    FILE *f = fmemopen(out, n, "w");
    diag_print(d, f);
    fclose(f);
}

static Kernel *load(const char *path, const FeSet *sets, int nsets)
{
    Diag d = {0};
    Kernel *k = fe_load(path, sets, nsets, &d);
    if (!k) {
        char msg[1024];
        diag_text(&d, msg, sizeof msg);
        printf("  fe_load(%s) failed: %s", path, msg);
    }
    return k;
}

static const KParam *kparam(const Kernel *k, const char *name) { return ir_kparam_find(k, name); }

static bool const_is(const Expr *e, int64_t want)
{
    int64_t v;
    return e && ir_expr_is_const(e, &v) && v == want;
}

/* Argument i is NAME: DTYPE[dims] with direction DIR; a dim < 0 means "a
 * dyn parameter" (an Expr that is not constant). */
static void check_arg(const Kernel *k, int i, const char *name, DType dt, ArgDir dir, int rank,
                      const int64_t *dims)
{
    CHECKF(i < k->nargs, "%s: no argument %d", k->name, i);
    if (i >= k->nargs)
        return;
    const Buffer *b = k->bufs[i];
    CHECKF(!strcmp(b->name, name), "%s arg %d is %s, want %s", k->name, i, b->name, name);
    CHECKF(b->scope == SCOPE_GLOBAL, "%s.%s not global", k->name, name);
    CHECKF(b->dtype == dt, "%s.%s is %s, want %s", k->name, name, dt_name(b->dtype), dt_name(dt));
    CHECKF(b->dir == dir, "%s.%s dir %d, want %d", k->name, name, b->dir, dir);
    CHECKF(b->rank == rank, "%s.%s rank %d, want %d", k->name, name, b->rank, rank);
    for (int d = 0; d < rank && d < b->rank; d++) {
        int64_t v;
        if (dims[d] < 0)
            CHECKF(!ir_expr_is_const(b->shape[d], &v), "%s.%s dim %d is constant", k->name, name, d);
        else
            CHECKF(const_is(b->shape[d], dims[d]), "%s.%s dim %d is not %lld", k->name, name, d,
                   (long long)dims[d]);
    }
}

static const Buffer *scratch(const Kernel *k, const char *name)
{
    const Buffer *b = ir_buf_find(k, name);
    CHECKF(b && b->scope != SCOPE_GLOBAL, "%s: no scratch buffer %s", k->name, name);
    return b && b->scope != SCOPE_GLOBAL ? b : NULL;
}

static void check_scratch(const Kernel *k, const char *name, Scope sc, DType dt, int rank,
                          const int64_t *dims)
{
    const Buffer *b = scratch(k, name);
    if (!b)
        return;
    CHECKF(b->scope == sc, "%s scope %s", name, scope_name(b->scope));
    CHECKF(b->dtype == dt, "%s dtype %s", name, dt_name(b->dtype));
    CHECKF(b->rank == rank, "%s rank %d", name, b->rank);
    for (int d = 0; d < rank && d < b->rank; d++)
        CHECKF(const_is(b->shape[d], dims[d]), "%s dim %d is not %lld", name, d, (long long)dims[d]);
}

/* Statements in program order (pre-order walk). */
enum { MAXSTMTS = 256 };
typedef struct Walk {
    const Stmt *s[MAXSTMTS];
    int n;
} Walk;

static void walk(const Stmt *s, Walk *w)
{
    if (!s)
        return;
    if (w->n < MAXSTMTS)
        w->s[w->n++] = s;
    switch (s->op) {
    case ST_SEQ:
        for (int i = 0; i < s->u.seq.n; i++)
            walk(s->u.seq.items[i], w);
        break;
    case ST_FOR:
        walk(s->u.loop.body, w);
        break;
    case ST_IF:
        walk(s->u.if_.then_, w);
        walk(s->u.if_.else_, w);
        break;
    default:
        break;
    }
}

static int count_op(const Kernel *k, StmtOp op)
{
    Walk w = {0};
    walk(k->body, &w);
    int n = 0;
    for (int i = 0; i < w.n; i++)
        n += w.s[i]->op == op;
    return n;
}

/* The nth (0-based) statement of kind op in program order. */
static const Stmt *nth_op(const Kernel *k, StmtOp op, int nth)
{
    Walk w = {0};
    walk(k->body, &w);
    for (int i = 0; i < w.n; i++)
        if (w.s[i]->op == op && nth-- == 0)
            return w.s[i];
    return NULL;
}

static bool contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

/* The printed IR parses back and prints identically, and verifies. */
static void check_roundtrip(const Kernel *k)
{
    Diag d = {0};
    CHECKF(ir_verify(k, &d), "%s does not verify: %s", k->name, d.msg);
    char *text = ir_print_string(k);
    Diag pd = {0};
    Kernel *back = ir_parse(text, "printed.tir", &pd);
    CHECKF(back != NULL, "%s: printed IR does not parse: line %d: %s", k->name, pd.loc.line, pd.msg);
    if (back) {
        char *again = ir_print_string(back);
        CHECKF(!strcmp(text, again), "%s: print(parse(print(k))) differs", k->name);
        free(again);
        ir_kernel_free(back);
    }
    free(text);
}

static bool read_text(const char *path, char *out, size_t n)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t got = fread(out, 1, n - 1, f);
    out[got] = 0;
    fclose(f);
    return true;
}

/* fe_load in a child process: the diagnostic text (or "LOADED\n" when it
 * built a kernel, or "CRASH signal N\n").  Returns false on a crash. */
static bool load_isolated(const char *path, const FeSet *sets, int nsets, char *out, size_t n)
{
    int fd[2];
    if (pipe(fd))
        return snprintf(out, n, "pipe failed\n"), false;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        Diag d = {0};
        Kernel *k = fe_load(path, sets, nsets, &d);
        char msg[1024];
        if (k)
            snprintf(msg, sizeof msg, "LOADED\n");
        else
            diag_text(&d, msg, sizeof msg);
        ir_kernel_free(k);
        ssize_t w = write(fd[1], msg, strlen(msg));
        (void)w;
        _exit(0);
    }
    close(fd[1]);
    size_t got = 0;
    for (ssize_t r; got < n - 1 && (r = read(fd[0], out + got, n - 1 - got)) > 0;)
        got += (size_t)r;
    out[got] = 0;
    close(fd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    if (WIFSIGNALED(st)) {
        snprintf(out, n, "CRASH signal %d\n", WTERMSIG(st));
        return false;
    }
    return true;
}

static void expect_error(const char *path, const FeSet *sets, int nsets, const char *want)
{
    char got[1024];
    load_isolated(path, sets, nsets, got, sizeof got);
    CHECKF(!strcmp(got, want), "%s\n    got:  %s    want: %s", path, got, want);
}

/* ------------------------------------------------------------ examples */

TEST(gemm_defaults)
{
    Kernel *k = load("examples/gemm.lua", NULL, 0);
    CHECK(k != NULL);
    if (!k)
        return;
    CHECK(!strcmp(k->name, "gemm") && k->level == LEVEL_TILE);
    CHECK(k->loc.line == 7);
    CHECK(k->nargs == 3 && k->nparams == 0);
    check_arg(k, 0, "A", DT_F32, ARG_IN, 2, (int64_t[]){256, 256});
    check_arg(k, 1, "B", DT_F32, ARG_IN, 2, (int64_t[]){256, 256});
    check_arg(k, 2, "C", DT_F32, ARG_OUT, 2, (int64_t[]){256, 256});
    /* Parameters are recorded in name order. */
    const char *order[] = {"BK", "BM", "BN", "K", "M", "N", "dtype", "stages"};
    CHECK(k->nkparams == 8);
    for (int i = 0; i < 8 && i < k->nkparams; i++)
        CHECKF(!strcmp(k->kparams[i].name, order[i]), "kparam %d is %s", i, k->kparams[i].name);
    const KParam *p = kparam(k, "dtype");
    CHECK(p && p->kind == KP_TUNE && p->variant && !strcmp(p->value, "f32") && p->ncands == 3 &&
          !strcmp(p->cands[0], "f32") && !strcmp(p->cands[1], "bf16"));
    p = kparam(k, "M");
    CHECK(p && p->kind == KP_TUNE && p->ncands == 0 && !strcmp(p->value, "256"));
    p = kparam(k, "BM");
    CHECK(p && p->kind == KP_TUNE && !p->variant && p->ncands >= 2 && !strcmp(p->value, p->cands[0]));
    int64_t bm = p ? atoll(p->value) : 1, bn = atoll(kparam(k, "BN")->value),
            bk = atoll(kparam(k, "BK")->value);
    /* The fragment stays in what a CPU target allows. */
    CHECK(bm * bn * 4 <= 128 * 1024);
    CHECK(k->ngrid == 2);
    CHECK(const_is(k->grid[0], (256 + bm - 1) / bm) && const_is(k->grid[1], (256 + bn - 1) / bn));
    check_scratch(k, "As", SCOPE_SHARED, DT_F32, 2, (int64_t[]){bm, bk});
    check_scratch(k, "Bs", SCOPE_SHARED, DT_F32, 2, (int64_t[]){bn, bk});
    check_scratch(k, "acc", SCOPE_FRAGMENT, DT_F32, 2, (int64_t[]){bm, bn});
    CHECK(count_op(k, ST_GEMM) == 1 && count_op(k, ST_COPY) == 3 && count_op(k, ST_FILL) == 1);
    const Stmt *g = nth_op(k, ST_GEMM, 0);
    CHECK(g && g->u.gemm.trans_b && !g->u.gemm.trans_a && !g->u.gemm.clear);
    CHECK(g && g->loc.line == 27 && g->loc.file && !strcmp(g->loc.file, "examples/gemm.lua"));
    const Stmt *loop = nth_op(k, ST_FOR, 0);
    CHECK(loop && loop->u.loop.kind == LOOP_PIPELINED && loop->u.loop.arg == 2 &&
          const_is(loop->u.loop.extent, (256 + bk - 1) / bk));
    check_roundtrip(k);
    ir_kernel_free(k);
}

TEST(gemm_with_sets)
{
    FeSet sets[] = {{"M", "300"}, {"N", "70"}, {"K", "33"}, {"dtype", "bf16"},
                    {"BM", "48"}, {"BN", "32"},  {"BK", "64"}};
    Kernel *k = load("examples/gemm.lua", sets, 7);
    CHECK(k != NULL);
    if (!k)
        return;
    check_arg(k, 0, "A", DT_BF16, ARG_IN, 2, (int64_t[]){300, 33});
    check_arg(k, 1, "B", DT_BF16, ARG_IN, 2, (int64_t[]){70, 33});
    check_arg(k, 2, "C", DT_F32, ARG_OUT, 2, (int64_t[]){300, 70});
    CHECK(const_is(k->grid[0], 7) && const_is(k->grid[1], 3));
    check_scratch(k, "As", SCOPE_SHARED, DT_BF16, 2, (int64_t[]){48, 64});
    check_scratch(k, "Bs", SCOPE_SHARED, DT_BF16, 2, (int64_t[]){32, 64});
    check_scratch(k, "acc", SCOPE_FRAGMENT, DT_F32, 2, (int64_t[]){48, 32});
    const KParam *p = kparam(k, "dtype");
    CHECK(p && !strcmp(p->value, "bf16") && p->ncands == 3);
    p = kparam(k, "M");
    CHECK(p && p->kind == KP_TUNE && !strcmp(p->value, "300"));
    p = kparam(k, "BM");
    CHECK(p && !strcmp(p->value, "48"));
    const Stmt *loop = nth_op(k, ST_FOR, 0);
    CHECK(loop && const_is(loop->u.loop.extent, 1));
    check_roundtrip(k);
    ir_kernel_free(k);
}

TEST(softmax_rmsnorm_silu_mul)
{
    Kernel *k = load("examples/softmax.lua", NULL, 0);
    CHECK(k != NULL);
    if (k) {
        CHECK(k->nargs == 2 && k->ngrid == 1);
        check_arg(k, 0, "x", DT_F32, ARG_IN, 2, (int64_t[]){256, 1000});
        check_arg(k, 1, "y", DT_F32, ARG_OUT, 2, (int64_t[]){256, 1000});
        CHECK(count_op(k, ST_REDUCE) >= 2);
        check_roundtrip(k);
        ir_kernel_free(k);
    }
    FeSet sm[] = {{"M", "3"}, {"N", "7"}};
    k = load("examples/softmax.lua", sm, 2);
    CHECK(k != NULL);
    if (k) {
        check_arg(k, 0, "x", DT_F32, ARG_IN, 2, (int64_t[]){3, 7});
        CHECK(const_is(k->grid[0], 1));
        ir_kernel_free(k);
    }
    k = load("examples/rmsnorm.lua", NULL, 0);
    CHECK(k != NULL);
    if (k) {
        CHECK(k->nargs == 3 && k->ngrid == 1);
        check_arg(k, 0, "x", DT_F32, ARG_IN, 2, (int64_t[]){256, 1000});
        check_arg(k, 1, "w", DT_F32, ARG_IN, 1, (int64_t[]){1000});
        check_arg(k, 2, "y", DT_F32, ARG_OUT, 2, (int64_t[]){256, 1000});
        check_roundtrip(k);
        ir_kernel_free(k);
    }
    k = load("examples/silu_mul.lua", NULL, 0);
    CHECK(k != NULL);
    if (k) {
        CHECK(k->nargs == 3);
        DType dt = dt_parse(kparam(k, "dtype")->value);
        check_arg(k, 0, "gate", dt, ARG_IN, 2, (int64_t[]){128, 1000});
        check_arg(k, 1, "up", dt, ARG_IN, 2, (int64_t[]){128, 1000});
        check_arg(k, 2, "y", dt, ARG_OUT, 2, (int64_t[]){128, 1000});
        check_roundtrip(k);
        ir_kernel_free(k);
    }
    FeSet su[] = {{"dtype", "f32"}, {"M", "5"}};
    k = load("examples/silu_mul.lua", su, 2);
    CHECK(k != NULL);
    if (k) {
        check_arg(k, 0, "gate", DT_F32, ARG_IN, 2, (int64_t[]){5, 1000});
        check_arg(k, 2, "y", DT_F32, ARG_OUT, 2, (int64_t[]){5, 1000});
        ir_kernel_free(k);
    }
}

TEST(dyn_dimension_and_its_specialisation)
{
    Kernel *k = load("examples/dyn_scale.lua", NULL, 0);
    CHECK(k != NULL);
    if (!k)
        return;
    const KParam *p = kparam(k, "M");
    CHECK(p && p->kind == KP_DYN && p->value == NULL && p->dyn && p->dyn->dtype == DT_I64);
    CHECK(k->nparams == 1 && ir_param_find(k, "M") == k->params[0]);
    check_arg(k, 0, "x", DT_F32, ARG_IN, 2, (int64_t[]){-1, 100});
    check_arg(k, 1, "y", DT_F32, ARG_OUT, 2, (int64_t[]){-1, 100});
    CHECK(k->bufs[0]->shape[0]->op == EX_PARAM);
    CHECK(k->ngrid == 1 && !ir_expr_is_const(k->grid[0], &(int64_t){0}));
    int64_t m = 37, g = 0;
    CHECK(ir_eval_int(k->grid[0], &m, &g) && g == (37 + 15) / 16);
    CHECK(count_op(k, ST_IF) == 1);
    check_roundtrip(k);

    /* Run it: rows past M are masked by the T.if_. */
    enum { M = 37, N = 100 };
    static float x[M * N], y[M * N];
    unsigned seed = 7;
    for (int i = 0; i < M * N; i++) {
        x[i] = test_rand(&seed);
        y[i] = 12345.0f;
    }
    void *args[] = {x, y};
    int64_t params[] = {M};
    Diag d = {0};
    CHECK(ir_interp(k, args, params, &d));
    double worst = 0;
    for (int i = 0; i < M * N; i++)
        worst = fmax(worst, fabs((double)y[i] - (2.0 * x[i] + 1.0)));
    CHECK(worst < 1e-6);
    ir_kernel_free(k);

    /* --set of a dyn parameter makes it a fixed constant. */
    FeSet set = {"M", "37"};
    k = load("examples/dyn_scale.lua", &set, 1);
    CHECK(k != NULL);
    if (!k)
        return;
    p = kparam(k, "M");
    CHECK(p && p->kind == KP_FIXED && p->value && !strcmp(p->value, "37") && !p->dyn);
    CHECK(k->nparams == 0);
    check_arg(k, 0, "x", DT_F32, ARG_IN, 2, (int64_t[]){37, 100});
    CHECK(const_is(k->grid[0], 3));
    ir_kernel_free(k);
}

TEST(set_errors)
{
    expect_error("examples/dyn_scale.lua", &(FeSet){"M", "-1"}, 1,
                 "examples/dyn_scale.lua:7: --set M=-1: expected a non-negative integer\n");
    expect_error("examples/dyn_scale.lua", &(FeSet){"M", "abc"}, 1,
                 "examples/dyn_scale.lua:7: --set M=abc: expected a non-negative integer\n");
    expect_error("examples/softmax.lua", &(FeSet){"x", "3"}, 1,
                 "examples/softmax.lua:11: --set x: kernel softmax has no parameter x "
                 "(hint: its parameters: BM, BN, M, N)\n");
    expect_error("examples/silu_mul.lua", &(FeSet){"dtype", "f16"}, 1,
                 "examples/silu_mul.lua:6: --set dtype=f16: not one of its variant{} values {bf16, f32}\n");
    expect_error("examples/gemm.lua", &(FeSet){"K", "2.5"}, 1,
                 "examples/gemm.lua:7: --set K=2.5: expected a positive integer\n");
    FeSet two[] = {{"M", "8"}, {"nope", "1"}};
    char got[512];
    load_isolated("examples/gemm.lua", two, 2, got, sizeof got);
    CHECKF(contains(got, "has no parameter nope"), "%s", got);
    /* A fixed string parameter, too. */
    expect_error("tests/specs/fe/features.lua", &(FeSet){"mode", "slow"}, 1,
                 "tests/specs/fe/features.lua:3: --set mode: parameter mode is fixed (fast) "
                 "(hint: make it T.tune{...}, T.variant{...}, T.size(n) or T.dyn to set it)\n");
}

/* ------------------------------------------------------- DSL constructs */

/* A body whose parameters start with absent (T.none) arguments still gets
 * the present ones in their places. */
TEST(absent_arguments_leave_no_hole)
{
    Kernel *k = load("tests/specs/fe/absent_args.lua", NULL, 0);
    CHECK(k != NULL);
    if (!k)
        return;
    CHECK(k->nargs == 2);
    check_arg(k, 0, "b", DT_F32, ARG_IN, 1, (int64_t[]){8});
    check_arg(k, 1, "out", DT_F32, ARG_OUT, 1, (int64_t[]){8});
    ir_kernel_free(k);
}

TEST(features_parameters_and_arguments)
{
    Kernel *k = load("tests/specs/fe/features.lua", NULL, 0);
    CHECK(k != NULL);
    if (!k)
        return;
    const char *order[] = {"M", "N", "R", "dt", "mode"};
    CHECK(k->nkparams == 5);
    for (int i = 0; i < 5 && i < k->nkparams; i++)
        CHECKF(!strcmp(k->kparams[i].name, order[i]), "kparam %d is %s", i, k->kparams[i].name);
    CHECK(kparam(k, "M")->kind == KP_DYN);
    CHECK(kparam(k, "R")->kind == KP_FIXED && !strcmp(kparam(k, "R")->value, "4"));
    CHECK(kparam(k, "mode")->kind == KP_FIXED && !strcmp(kparam(k, "mode")->value, "fast"));
    CHECK(kparam(k, "dt")->kind == KP_TUNE && !strcmp(kparam(k, "dt")->value, "bf16"));
    /* Arguments in the order their T.tensor calls ran, not table order. */
    CHECK(k->nargs == 5);
    check_arg(k, 0, "x", DT_F32, ARG_IN, 2, (int64_t[]){-1, 16});
    check_arg(k, 1, "w", DT_BF16, ARG_IN, 1, (int64_t[]){16});
    check_arg(k, 2, "q", DT_I32, ARG_INOUT, 2, (int64_t[]){-1, 16});
    check_arg(k, 3, "y", DT_F32, ARG_OUT, 2, (int64_t[]){-1, 16});
    check_arg(k, 4, "s", DT_F32, ARG_OUT, 1, (int64_t[]){16});
    if (k->nargs == 5) {
        CHECK(const_is(k->bufs[3]->stride[0], 32) && const_is(k->bufs[3]->stride[1], 1));
        CHECK(const_is(k->bufs[2]->stride[0], 16) && const_is(k->bufs[2]->stride[1], 1));
        /* Buffer.loc is the line of the T.tensor / T.shared call. */
        CHECK(k->bufs[0]->loc.line == 6 && k->bufs[3]->loc.line == 9);
        CHECK(k->bufs[0]->loc.file && !strcmp(k->bufs[0]->loc.file, "tests/specs/fe/features.lua"));
    }
    FeSet set = {"dt", "f32"};
    Kernel *k2 = load("tests/specs/fe/features.lua", &set, 1);
    CHECK(k2 && k2->bufs[1]->dtype == DT_F32);
    ir_kernel_free(k2);
    ir_kernel_free(k);
}

TEST(features_scratch_buffers)
{
    Kernel *k = load("tests/specs/fe/features.lua", NULL, 0);
    CHECK(k != NULL);
    if (!k)
        return;
    CHECK(k->nbufs == 9);
    check_scratch(k, "xs", SCOPE_SHARED, DT_F32, 2, (int64_t[]){4, 16});      /* local name */
    check_scratch(k, "accum", SCOPE_FRAGMENT, DT_F32, 2, (int64_t[]){4, 16}); /* name = */
    check_scratch(k, "frag1", SCOPE_FRAGMENT, DT_F32, 2, (int64_t[]){2, 2});  /* default */
    check_scratch(k, "rs", SCOPE_LOCAL, DT_F32, 1, (int64_t[]){4});
    const Buffer *xs = ir_buf_find(k, "xs");
    CHECK(xs && xs->loc.line == 14);
    ir_kernel_free(k);
}

/* A scratch buffer first used inside a closure, where it is an upvalue:
 * it keeps a real name (its local's, or the default), never a Lua internal
 * slot name like "(temporary)", which the IR parser refuses. */
TEST(scratch_used_first_in_a_closure)
{
    Kernel *k = load("tests/specs/fe/upvalue_name.lua", NULL, 0);
    CHECK(k != NULL);
    if (!k)
        return;
    CHECK(k->nbufs == 2);
    if (k->nbufs == 2) {
        const char *name = k->bufs[1]->name;
        CHECKF(!strcmp(name, "rs") || !strcmp(name, "local0"),
               "the T.local_ buffer is named \"%s\", want rs (or local0)", name);
    }
    check_roundtrip(k);
    ir_kernel_free(k);
}

TEST(features_statements)
{
    Kernel *k = load("tests/specs/fe/features.lua", NULL, 0);
    CHECK(k != NULL);
    if (!k)
        return;
    CHECK(k->ngrid == 1 && k->body && k->body->op == ST_SEQ);
    CHECK(k->grid_var[0] && !strcmp(k->grid_var[0]->name, "bx"));
    /* Loops, in order: parallel i, parallel j (nested), serial (break),
     * unroll, pipelined. */
    const Stmt *l0 = nth_op(k, ST_FOR, 0), *l1 = nth_op(k, ST_FOR, 1), *l2 = nth_op(k, ST_FOR, 2),
               *l3 = nth_op(k, ST_FOR, 3), *l4 = nth_op(k, ST_FOR, 4);
    CHECK(count_op(k, ST_FOR) == 5);
    if (l0 && l1 && l2 && l3 && l4) {
        CHECK(l0->u.loop.kind == LOOP_PARALLEL && const_is(l0->u.loop.extent, 4));
        CHECK(l1->u.loop.kind == LOOP_PARALLEL && const_is(l1->u.loop.extent, 16));
        CHECK(l0->u.loop.body->op == ST_SEQ && l0->u.loop.body->u.seq.n == 1 &&
              l0->u.loop.body->u.seq.items[0] == l1);
        CHECK(l1->u.loop.body->u.seq.n == 2);
        CHECK(l2->u.loop.kind == LOOP_SERIAL && const_is(l2->u.loop.extent, 3) &&
              l2->u.loop.body->u.seq.n == 0);
        CHECK(l3->u.loop.kind == LOOP_UNROLL && const_is(l3->u.loop.extent, 2));
        CHECK(l4->u.loop.kind == LOOP_PIPELINED && l4->u.loop.arg == 3 &&
              const_is(l4->u.loop.extent, 2));
        CHECK(l0->loc.line == 20 && l2->loc.line == 25 && l3->loc.line == 28 && l4->loc.line == 31);
        CHECK(l0->u.loop.var != l1->u.loop.var);
    }
    const Stmt *iff = nth_op(k, ST_IF, 0);
    CHECK(iff && iff->u.if_.then_ && iff->u.if_.else_ && iff->loc.line == 29);
    if (iff)
        CHECK(iff->u.if_.cond->op == EX_EQ && iff->u.if_.cond->dtype == DT_BOOL);
    /* Stores: acc[{i, j}] = ..., q[...] = ... (integer math), rs[u] twice. */
    CHECK(count_op(k, ST_STORE) == 4);
    const Stmt *s0 = nth_op(k, ST_STORE, 0), *s1 = nth_op(k, ST_STORE, 1);
    if (s0 && s1) {
        CHECK(!strcmp(s0->u.store.buf->name, "accum") && s0->loc.line == 22);
        CHECK(s0->u.store.value->op == EX_MUL && s0->u.store.value->dtype == DT_F32);
        CHECK(s0->u.store.value->args[0]->op == EX_SELECT);
        CHECK(!strcmp(s1->u.store.buf->name, "q") && s1->loc.line == 23);
        CHECK(s1->u.store.value->op == EX_ADD && !dt_is_float(s1->u.store.value->dtype));
        CHECK(s1->u.store.value->args[1]->op == EX_CAST &&
              s1->u.store.value->args[1]->dtype == DT_I32);
    }
    /* T.gt(a, b) is b < a. */
    char *text = ir_print_string(k);
    CHECKF(contains(text, "select(0.0 < xs[i, j]"), "%s", text);
    CHECK(contains(text, "q[bx * 4 + i, j] / 2 % 3"));
    free(text);
    /* Tile ops. */
    const Stmt *fill0 = nth_op(k, ST_FILL, 0), *fill1 = nth_op(k, ST_FILL, 1);
    CHECK(count_op(k, ST_FILL) == 2);
    CHECK(fill0 && fill0->loc.line == 18 && fill0->u.fill.value->dtype == DT_F32);
    if (fill1) {
        CHECK(!strcmp(fill1->u.fill.dst.buf->name, "xs"));
        CHECK(fill1->u.fill.dst.ext[0] == 4 && fill1->u.fill.dst.ext[1] == 8);
        CHECK(fill1->u.fill.value->op == EX_SQRT);
    }
    const Stmt *c0 = nth_op(k, ST_COPY, 0), *c1 = nth_op(k, ST_COPY, 1);
    CHECK(count_op(k, ST_COPY) == 2);
    if (c0 && c1) {
        CHECK(!strcmp(c0->u.copy.src.buf->name, "x") && !strcmp(c0->u.copy.dst.buf->name, "xs"));
        CHECK(c0->u.copy.src.ext[0] == 4 && c0->u.copy.src.ext[1] == 16);
        CHECK(c0->u.copy.src.off[0]->op == EX_MUL && const_is(c0->u.copy.src.off[1], 0));
        CHECK(!strcmp(c1->u.copy.dst.buf->name, "y") && c1->loc.line == 39);
    }
    CHECK(count_op(k, ST_REDUCE) == 4);
    const Stmt *r[4];
    for (int i = 0; i < 4; i++)
        r[i] = nth_op(k, ST_REDUCE, i);
    if (r[0] && r[1] && r[2] && r[3]) {
        CHECK(r[0]->u.reduce.rop == RED_MAX && r[0]->u.reduce.clear && r[0]->u.reduce.axis == 1);
        CHECK(r[1]->u.reduce.rop == RED_SUM && !r[1]->u.reduce.clear);
        CHECK(r[2]->u.reduce.rop == RED_ABSMAX && r[2]->u.reduce.clear);
        CHECK(r[3]->u.reduce.rop == RED_MIN && r[3]->u.reduce.axis == 0 &&
              !strcmp(r[3]->u.reduce.dst.buf->name, "s") && r[3]->u.reduce.dst.ext[0] == 16);
        CHECK(r[0]->loc.line == 34 && r[3]->loc.line == 37);
    }
    const Stmt *at = nth_op(k, ST_ATOMIC_ADD, 0);
    CHECK(count_op(k, ST_ATOMIC_ADD) == 1);
    if (at) {
        CHECK(!strcmp(at->u.copy.dst.buf->name, "s") && at->u.copy.dst.ext[0] == 4);
        CHECK(at->u.copy.src.ext[0] == 4 && at->loc.line == 38);
    }
    ir_kernel_free(k);
}

TEST(features_roundtrip)
{
    Kernel *k = load("tests/specs/fe/features.lua", NULL, 0);
    CHECK(k != NULL);
    if (k)
        check_roundtrip(k);
    ir_kernel_free(k);
}

/* A small kernel run by the interpreter: if/else, nested parallel loops,
 * integer // and %, select, a reduction and a copy back, all as built. */
TEST(semantics_through_the_interpreter)
{
    Kernel *k = load("tests/specs/fe/semantics.lua", NULL, 0);
    CHECK(k != NULL);
    if (!k)
        return;
    enum { M = 5, N = 7 };
    float x[M * N], y[M * N], rmax[M];
    int32_t q[M * N];
    unsigned seed = 3;
    for (int i = 0; i < M * N; i++)
        x[i] = test_rand(&seed) * 4.0f;
    void *args[] = {x, y, rmax, q};
    int64_t params[] = {M};
    Diag d = {0};
    CHECKF(ir_interp(k, args, params, &d), "%s", d.msg);
    for (int i = 0; i < M; i++) {
        float mx = -INFINITY;
        for (int j = 0; j < N; j++) {
            float v = x[i * N + j];
            float want = (i + j) % 2 == 0 ? v * 2.0f : (v > 0.0f ? v : -v);
            CHECK_NEAR(y[i * N + j], want, 1e-6);
            long long fl = (long long)floor((double)(i * N + j - 17) / 3.0);
            long long md = (i * N + j - 17) - fl * 3;
            CHECKF(q[i * N + j] == (int32_t)(fl * 10 + md), "q[%d][%d] = %d", i, j, q[i * N + j]);
            mx = fmaxf(mx, v);
        }
        CHECK_NEAR(rmax[i], mx, 0);
    }
    ir_kernel_free(k);
}

/* -------------------------------------------------------------- errors */

TEST(bad_specs_give_their_golden_diagnostic)
{
    const char *dir = "tests/specs/fe/bad";
    DIR *dp = opendir(dir);
    CHECK(dp != NULL);
    if (!dp)
        return;
    int count = 0;
    for (struct dirent *e; (e = readdir(dp));) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 4, ".lua"))
            continue;
        char spec[512], errpath[512], want[1024], got[1024];
        snprintf(spec, sizeof spec, "%s/%s", dir, e->d_name);
        snprintf(errpath, sizeof errpath, "%s/%.*s.err", dir, (int)(n - 4), e->d_name);
        CHECKF(read_text(errpath, want, sizeof want), "%s is missing", errpath);
        load_isolated(spec, NULL, 0, got, sizeof got);
        size_t wn = strlen(want);
        bool prefix = wn >= 2 && !strcmp(want + wn - 2, "*\n");
        bool ok = prefix ? !strncmp(got, want, wn - 2) && strchr(got, '\n') &&
                                !strchr(got, '\n')[1] && !contains(got, " tile:")
                         : !strcmp(got, want);
        CHECKF(ok, "%s\n    got:  %s    want: %s", spec, got, want);
        count++;
    }
    closedir(dp);
    CHECKF(count >= 20, "only %d bad specs found", count);
}

/* Errors raised in a module the spec requires are reported at the spec's
 * line that called into it. */
TEST(errors_in_required_modules_name_the_calling_line)
{
    Diag d = {0};
    Kernel *k = fe_load("tests/specs/fe/helper_tile_error.lua", NULL, 0, &d);
    CHECK(k == NULL);
    ir_kernel_free(k);
    CHECKF(d.loc.line == 7, "line %d: %s", d.loc.line, d.msg);
    CHECKF(contains(d.msg, "x:tile needs 1 offsets"), "%s", d.msg);

    Diag d2 = {0};
    k = fe_load("tests/specs/fe/helper_lua_error.lua", NULL, 0, &d2);
    CHECK(k == NULL);
    ir_kernel_free(k);
    CHECKF(d2.loc.file && !strcmp(d2.loc.file, "tests/specs/fe/helper_lua_error.lua"), "%s",
           d2.loc.file ? d2.loc.file : "(null)");
    CHECKF(d2.loc.line == 7, "a Lua error in a required module: line %d: %s", d2.loc.line, d2.msg);
    CHECKF(contains(d2.msg, "attempt to index a nil value"), "%s", d2.msg);
}

/* Lua shortens chunk names longer than LUA_IDSIZE ("...tail/of/path.lua:3:")
 * in its messages; the diagnostic must still carry the user's line. */
TEST(long_paths_keep_their_line)
{
    char dir[] = "/tmp/tilec_fe_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char sub[512], syn[600], rt[600];
    snprintf(sub, sizeof sub, "%s/a_directory_name_long_enough_to_pass_lua_idsize_of_sixty", dir);
    CHECK(mkdir(sub, 0700) == 0);
    snprintf(syn, sizeof syn, "%s/syntax.lua", sub);
    snprintf(rt, sizeof rt, "%s/runtime.lua", sub);
    FILE *f = fopen(syn, "w");
    fputs("local T = require \"tile\"\nreturn T.kernel \"k\" {\n  params = { N = 4 ,,\n}\n", f);
    fclose(f);
    f = fopen(rt, "w");
    fputs("local T = require \"tile\"\n"
          "return T.kernel \"k\" {\n"
          "  args = function(p) return { x = T.tensor{4, T.f32, out = true} } end,\n"
          "  body = function(p, x)\n"
          "    local z = nil + 1\n"
          "  end,\n"
          "}\n",
          f);
    fclose(f);

    Diag d = {0};
    CHECK(fe_load(syn, NULL, 0, &d) == NULL);
    CHECKF(d.loc.line == 3, "syntax error at line %d: %s", d.loc.line, d.msg);
    CHECKF(!contains(d.msg, "..."), "message repeats a shortened path: %s", d.msg);
    Diag d2 = {0};
    CHECK(fe_load(rt, NULL, 0, &d2) == NULL);
    CHECKF(d2.loc.line == 5, "runtime error at line %d: %s", d2.loc.line, d2.msg);
    CHECKF(!contains(d2.msg, "..."), "message repeats a shortened path: %s", d2.msg);
    CHECK(d2.loc.file && !strcmp(d2.loc.file, rt));
    remove(syn);
    remove(rt);
    rmdir(sub);
    rmdir(dir);
}

TEST(missing_and_unreadable_spec)
{
    Diag d = {0};
    CHECK(fe_load("tests/specs/fe/none.lua", NULL, 0, &d) == NULL);
    char got[512];
    diag_text(&d, got, sizeof got);
    CHECKF(!strcmp(got, "cannot open tests/specs/fe/none.lua: No such file or directory\n"), "%s", got);
    /* A directory is not a spec: an error, no crash. */
    Diag d2 = {0};
    CHECK(fe_load("tests/specs/fe", NULL, 0, &d2) == NULL);
    CHECK(d2.set);
}

/* The frontend holds no state between loads: the same spec twice gives the
 * same IR, and scratch counters restart. */
TEST(loads_are_independent)
{
    Kernel *a = load("tests/specs/fe/features.lua", NULL, 0);
    Kernel *b = load("tests/specs/fe/features.lua", NULL, 0);
    CHECK(a && b);
    if (a && b) {
        char *ta = ir_print_string(a), *tb = ir_print_string(b);
        CHECK(!strcmp(ta, tb));
        free(ta);
        free(tb);
    }
    ir_kernel_free(a);
    ir_kernel_free(b);
}

int main(void)
{
    RUN(gemm_defaults);
    RUN(gemm_with_sets);
    RUN(softmax_rmsnorm_silu_mul);
    RUN(dyn_dimension_and_its_specialisation);
    RUN(set_errors);
    RUN(features_parameters_and_arguments);
    RUN(absent_arguments_leave_no_hole);
    RUN(features_scratch_buffers);
    RUN(scratch_used_first_in_a_closure);
    RUN(features_statements);
    RUN(features_roundtrip);
    RUN(semantics_through_the_interpreter);
    RUN(bad_specs_give_their_golden_diagnostic);
    RUN(errors_in_required_modules_name_the_calling_line);
    RUN(long_paths_keep_their_line);
    RUN(missing_and_unreadable_spec);
    RUN(loads_are_independent);
    return test_summary();
}
