/* test_ir_text.c — the printed form is tilec's text interface to IR: kernels
 * built with the builders print, parse back and print identically (Tile and
 * Loop level), every tests/ir/NAME.tir is its own printed form, expressions get
 * the fewest parentheses, every f32 constant survives text, "# file:line"
 * comments carry locations, and malformed text is one exact error line. */
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "test.h"
#include "tests/harness/run.h"

#include <dirent.h>
#include <stdint.h>
#include <string.h>

/* ir/print.c: the printed form with "  # file:line" comments (to be declared
 * in ir/ir.h). */
void ir_print_locs(const Kernel *k, FILE *f);

static SrcLoc at(int line) { return (SrcLoc){"spec.lua", line}; }

static Expr *ci(Kernel *k, int64_t v) { return ir_const_i(k, v); }

static Region win2(Kernel *k, Buffer *b, Expr *o0, int64_t e0, Expr *o1, int64_t e1)
{
    (void)k;
    Region r = {.buf = b};
    r.off[0] = o0;
    r.off[1] = o1;
    r.ext[0] = e0;
    r.ext[1] = e1;
    return r;
}

static char *print_locs_string(const Kernel *k)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    ir_print_locs(k, f);
    fclose(f);
    return buf;
}

/* print -> parse -> print is byte-identical, and the parsed kernel verifies. */
static bool round_trips(const Kernel *k, const char *what)
{
    Diag d = {0};
    if (!ir_verify(k, &d)) {
        printf("  %s: built kernel does not verify: ", what);
        diag_print(&d, stdout);
        return false;
    }
    char *a = ir_print_string(k);
    Kernel *p = ir_parse(a, what, &d);
    if (!p) {
        printf("  %s: ", what);
        diag_print(&d, stdout);
        printf("%s", a);
        free(a);
        return false;
    }
    char *b = ir_print_string(p);
    bool same = !strcmp(a, b);
    if (!same)
        printf("  %s: printed forms differ:\n--- first\n%s--- second\n%s", what, a, b);
    bool verified = ir_verify(p, &d);
    if (!verified) {
        printf("  %s: parsed kernel does not verify: ", what);
        diag_print(&d, stdout);
    }
    free(a);
    free(b);
    ir_kernel_free(p);
    return same && verified;
}

/* ------------------------------------------------------------ kernels */

/* A tiled GEMM: C[128, N] = A[128, 256] . B[256, N], 64x64 blocks. */
static Kernel *gemm_kernel(void)
{
    Kernel *k = ir_kernel_new("gemm", at(1));
    ir_kparam_add(k, "BM", KP_FIXED, "64");
    KParam *bk = ir_kparam_add(k, "BK", KP_TUNE, "32");
    ir_kparam_cand(k, bk, "32");
    ir_kparam_cand(k, bk, "64");
    ir_kparam_add(k, "K", KP_TUNE, "256");
    KParam *dt = ir_kparam_add(k, "dtype", KP_TUNE, "bf16");
    dt->variant = true;
    ir_kparam_cand(k, dt, "bf16");
    ir_kparam_cand(k, dt, "f32");
    KParam *kn = ir_kparam_add(k, "N", KP_DYN, NULL);
    Param *n = kn->dyn = ir_param_add(k, "N", DT_I64);
    Expr *sa[2] = {ci(k, 128), ci(k, 256)}, *sb[2] = {ci(k, 256), ir_param(k, n)};
    Expr *sc[2] = {ci(k, 128), ir_param(k, n)};
    Buffer *a = ir_arg_add(k, "A", DT_BF16, ARG_IN, 2, sa, at(2));
    Buffer *b = ir_arg_add(k, "B", DT_BF16, ARG_IN, 2, sb, at(3));
    Buffer *c = ir_arg_add(k, "C", DT_F32, ARG_OUT, 2, sc, at(4));
    Buffer *as = ir_buf_add(k, "As", SCOPE_SHARED, DT_BF16, 2, (int64_t[]){64, 32}, at(6));
    Buffer *bs = ir_buf_add(k, "Bs", SCOPE_SHARED, DT_BF16, 2, (int64_t[]){32, 64}, at(7));
    Buffer *acc = ir_buf_add(k, "acc", SCOPE_FRAGMENT, DT_F32, 2, (int64_t[]){64, 64}, at(8));
    Var *g[2] = {ir_var_new(k, "by"), ir_var_new(k, "bx")};
    Expr *ge[2] = {ci(k, 2), ir_binary(k, EX_DIV, ir_binary(k, EX_ADD, ir_param(k, n), ci(k, 63)),
                                       ci(k, 64))};
    ir_set_grid(k, 2, g, ge);
    Expr *by64 = ir_binary(k, EX_MUL, ir_var(k, g[0]), ci(k, 64));
    Expr *bx64 = ir_binary(k, EX_MUL, ir_var(k, g[1]), ci(k, 64));
    ir_seq_push(k, k->body, ir_fill(k, ir_region_whole(k, acc), ir_const_f(k, 0), at(9)));
    Var *kv = ir_var_new(k, "k");
    Expr *k32 = ir_binary(k, EX_MUL, ir_var(k, kv), ci(k, 32));
    Stmt *body = ir_seq(k, at(10));
    ir_seq_push(k, body, ir_copy(k, win2(k, a, by64, 64, k32, 32), ir_region_whole(k, as), at(11)));
    ir_seq_push(k, body, ir_copy(k, win2(k, b, k32, 32, bx64, 64), ir_region_whole(k, bs), at(12)));
    ir_seq_push(k, body, ir_gemm(k, ir_region_whole(k, as), ir_region_whole(k, bs),
                                 ir_region_whole(k, acc), false, false, false, at(13)));
    ir_seq_push(k, k->body, ir_for(k, kv, ci(k, 8), LOOP_PIPELINED, 3, body, at(10)));
    ir_seq_push(k, k->body, ir_copy(k, ir_region_whole(k, acc), win2(k, c, by64, 64, bx64, 64), at(15)));
    return k;
}

static const char gemm_text[] =
    "kernel gemm level tile\n"
    "param BM fixed 64\n"
    "param BK tune 32 {32, 64}\n"
    "param K size 256\n"
    "param dtype variant bf16 {bf16, f32}\n"
    "param N dyn\n"
    "scalar N: i64\n"
    "arg A: bf16[128, 256] in\n"
    "arg B: bf16[256, N] in\n"
    "arg C: f32[128, N] out\n"
    "buf As: shared bf16[64, 32]\n"
    "buf Bs: shared bf16[32, 64]\n"
    "buf acc: fragment f32[64, 64]\n"
    "grid (by, bx) < [2, (N + 63) / 64]\n"
    "{\n"
    "  fill acc = 0.0\n"
    "  for k: pipelined(3) < 8 {\n"
    "    copy A[by * 64 +: 64, k * 32 +: 32] -> As\n"
    "    copy B[k * 32 +: 32, bx * 64 +: 64] -> Bs\n"
    "    gemm As, Bs -> acc\n"
    "  }\n"
    "  copy acc -> C[by * 64 +: 64, bx * 64 +: 64]\n"
    "}\n";

/* Elementwise over a dyn length, with if/else, select, casts, every math op
 * and bit op, and a column-major argument. */
static Kernel *elementwise_kernel(void)
{
    Kernel *k = ir_kernel_new("elementwise", at(1));
    KParam *km = ir_kparam_add(k, "M", KP_DYN, NULL);
    Param *m = km->dyn = ir_param_add(k, "M", DT_I64);
    Expr *s1[1] = {ir_param(k, m)}, *s2[2] = {ir_param(k, m), ci(k, 4)};
    Buffer *x = ir_arg_add(k, "x", DT_F32, ARG_IN, 1, s1, at(2));
    Buffer *y = ir_arg_add(k, "y", DT_BF16, ARG_OUT, 1, s1, at(3));
    Buffer *z = ir_arg_add(k, "z", DT_I32, ARG_INOUT, 1, s1, at(4));
    Buffer *w = ir_arg_add(k, "w", DT_F16, ARG_IN, 2, s2, at(5));
    w->stride[0] = ci(k, 1); /* column-major */
    w->stride[1] = ir_param(k, m);
    Var *b = ir_var_new(k, "b");
    Expr *ext = ir_binary(k, EX_DIV, ir_binary(k, EX_ADD, ir_param(k, m), ci(k, 255)), ci(k, 256));
    ir_set_grid(k, 1, &b, &ext);
    Var *i = ir_var_new(k, "i");
    Expr *n = ir_binary(k, EX_ADD, ir_binary(k, EX_MUL, ir_var(k, b), ci(k, 256)), ir_var(k, i));
    Expr *xn = ir_load(k, x, &n);
    Expr *wn = ir_load(k, w, (Expr *[]){n, ci(k, 3)});
    static const ExprOp unary_ops[] = {EX_EXP, EX_EXP2, EX_LOG, EX_SQRT, EX_RSQRT,
                                       EX_SIGMOID, EX_SILU, EX_SOFTPLUS, EX_ABS, EX_NEG};
    Expr *v = xn;
    for (size_t j = 0; j < sizeof unary_ops / sizeof unary_ops[0]; j++)
        v = ir_binary(k, EX_ADD, v, ir_unary(k, unary_ops[j], ir_binary(k, EX_MUL, wn, xn)));
    v = ir_binary(k, EX_MIN, ir_binary(k, EX_MAX, v, ir_const_f(k, -1.5)), ir_const_f(k, 1e30));
    v = ir_binary(k, EX_SUB, v, ir_binary(k, EX_DIV, xn, ir_binary(k, EX_SUB, xn, ir_const_f(k, 0.1))));
    Expr *pos = ir_binary(k, EX_AND, ir_binary(k, EX_LT, ir_const_f(k, 0), xn),
                          ir_unary(k, EX_NOT, ir_binary(k, EX_EQ, xn, ir_const_f(k, INFINITY))));
    Expr *sel = ir_select(k, ir_binary(k, EX_OR, pos, ir_binary(k, EX_NE, ir_var(k, i), ci(k, 7))),
                          ir_cast(k, DT_F8E4M3, v), ir_const_f(k, -INFINITY));
    Stmt *then_ = ir_seq(k, at(8));
    ir_seq_push(k, then_, ir_store(k, y, &n, ir_cast(k, DT_BF16, sel), at(9)));
    Expr *zn = ir_load(k, z, &n);
    Expr *bits = ir_binary(k, EX_BOR,
                           ir_binary(k, EX_BAND, ir_binary(k, EX_SHR, zn, ci(k, 3)), ci(k, 255)),
                           ir_binary(k, EX_BXOR, ir_binary(k, EX_SHL, zn, ci(k, 2)),
                                     ir_bitcast(k, DT_I32, xn)));
    ir_seq_push(k, then_, ir_store(k, z, &n, ir_binary(k, EX_MOD, bits, ci(k, -7)), at(10)));
    Stmt *else_ = ir_seq(k, at(11));
    ir_seq_push(k, else_, ir_store(k, z, &n, ir_cast(k, DT_I32, ir_bitcast(k, DT_F32, zn)), at(12)));
    Stmt *loop = ir_seq(k, at(7));
    Expr *inside = ir_binary(k, EX_LT, n, ir_param(k, m));
    ir_seq_push(k, loop, ir_if(k, inside, then_, else_, at(8)));
    ir_seq_push(k, k->body, ir_for(k, i, ci(k, 256), LOOP_PARALLEL, 0, loop, at(7)));
    return k;
}

/* Row max and column sum of a tile, a rank-1 reduction, and atomic_add. */
static Kernel *reduce_kernel(void)
{
    Kernel *k = ir_kernel_new("reduce", at(1));
    Expr *sx[2] = {ci(k, 64), ci(k, 32)}, *sr[1] = {ci(k, 64)}, *ss[1] = {ci(k, 1)};
    Buffer *x = ir_arg_add(k, "x", DT_BF16, ARG_IN, 2, sx, at(2));
    Buffer *r = ir_arg_add(k, "rowmax", DT_F32, ARG_OUT, 1, sr, at(3));
    Buffer *s = ir_arg_add(k, "total", DT_F32, ARG_INOUT, 1, ss, at(4));
    Buffer *t = ir_buf_add(k, "t", SCOPE_FRAGMENT, DT_F32, 2, (int64_t[]){64, 32}, at(5));
    Buffer *col = ir_buf_add(k, "col", SCOPE_FRAGMENT, DT_F32, 1, (int64_t[]){32}, at(6));
    Buffer *one = ir_buf_add(k, "one", SCOPE_LOCAL, DT_F32, 1, (int64_t[]){1}, at(7));
    Var *b = ir_var_new(k, "b");
    Expr *e1 = ci(k, 1);
    ir_set_grid(k, 1, &b, &e1);
    ir_seq_push(k, k->body, ir_copy(k, win2(k, x, ci(k, 0), 64, ci(k, 0), 32), ir_region_whole(k, t), at(8)));
    Region rr = {.buf = r, .off = {ci(k, 0)}, .ext = {64}};
    ir_seq_push(k, k->body, ir_reduce(k, ir_region_whole(k, t), rr, 1, RED_MAX, true, at(9)));
    ir_seq_push(k, k->body, ir_reduce(k, ir_region_whole(k, t), ir_region_whole(k, col), 0, RED_SUM, false, at(10)));
    ir_seq_push(k, k->body, ir_reduce(k, ir_region_whole(k, col), ir_region_whole(k, one), 0, RED_ABSMAX, true, at(11)));
    Region sr1 = {.buf = s, .off = {ci(k, 0)}, .ext = {1}};
    ir_seq_push(k, k->body, ir_atomic_add(k, ir_region_whole(k, one), sr1, at(12)));
    return k;
}

/* Loop IR: vector and unroll loops, micro_gemm with packed b, atomics. */
static Kernel *loop_kernel(void)
{
    Kernel *k = ir_kernel_new("loopy", at(1));
    k->level = LEVEL_LOOP;
    Expr *sa[2] = {ci(k, 16), ci(k, 64)}, *sb[2] = {ci(k, 32), ci(k, 32)}, *sc[2] = {ci(k, 16), ci(k, 16)};
    Buffer *a = ir_arg_add(k, "a", DT_BF16, ARG_IN, 2, sa, at(2));
    Buffer *b = ir_arg_add(k, "b", DT_BF16, ARG_IN, 2, sb, at(3));
    Buffer *c = ir_arg_add(k, "c", DT_F32, ARG_INOUT, 2, sc, at(4));
    Buffer *acc = ir_buf_add(k, "acc", SCOPE_LOCAL, DT_F32, 2, (int64_t[]){16, 16}, at(5));
    Var *g = ir_var_new(k, "g");
    Expr *ge = ci(k, 1);
    ir_set_grid(k, 1, &g, &ge);
    Var *i = ir_var_new(k, "i"), *j = ir_var_new(k, "j");
    Stmt *inner = ir_seq(k, at(6));
    ir_seq_push(k, inner, ir_store(k, acc, (Expr *[]){ir_var(k, i), ir_var(k, j)}, ir_const_f(k, 0), at(6)));
    Stmt *vec = ir_for(k, j, ci(k, 16), LOOP_VECTOR, 16, inner, at(6));
    Stmt *outer = ir_seq(k, at(6));
    ir_seq_push(k, outer, vec);
    ir_seq_push(k, k->body, ir_for(k, i, ci(k, 16), LOOP_UNROLL, 4, outer, at(6)));
    Var *kk = ir_var_new(k, "kk");
    Stmt *kb = ir_seq(k, at(7));
    Expr *k32 = ir_binary(k, EX_MUL, ir_var(k, kk), ci(k, 32));
    Expr *k16 = ir_binary(k, EX_MUL, ir_var(k, kk), ci(k, 16));
    Stmt *mg = ir_micro_gemm(k, win2(k, a, ci(k, 0), 16, k32, 32), win2(k, b, k16, 16, ci(k, 0), 32),
                             ir_region_whole(k, acc), false, false, false, at(8));
    mg->u.gemm.b_pairs = true;
    ir_seq_push(k, kb, mg);
    ir_seq_push(k, k->body, ir_for(k, kk, ci(k, 2), LOOP_SERIAL, 0, kb, at(7)));
    Var *i2 = ir_var_new(k, "i"), *j2 = ir_var_new(k, "j"); /* i_1, j_1 */
    Expr *ij[2] = {ir_var(k, i2), ir_var(k, j2)};
    Stmt *st = ir_store(k, c, ij, ir_load(k, acc, ij), at(9));
    st->u.store.atomic = true;
    Stmt *in2 = ir_seq(k, at(9));
    ir_seq_push(k, in2, st);
    Stmt *out2 = ir_seq(k, at(9));
    ir_seq_push(k, out2, ir_for(k, j2, ci(k, 16), LOOP_VECTOR, 8, in2, at(9)));
    ir_seq_push(k, k->body, ir_for(k, i2, ci(k, 16), LOOP_PARALLEL, 0, out2, at(9)));
    return k;
}

TEST(gemm_tile_kernel_prints_as_documented_and_round_trips)
{
    Kernel *k = gemm_kernel();
    char *text = ir_print_string(k);
    CHECKF(!strcmp(text, gemm_text), "printed:\n%s", text);
    CHECK(round_trips(k, "gemm.tir"));
    free(text);
    ir_kernel_free(k);
}

TEST(elementwise_kernel_round_trips)
{
    Kernel *k = elementwise_kernel();
    char *text = ir_print_string(k);
    CHECKF(strstr(text, "arg w: f16[M, 4] in strides [1, M]\n") != NULL, "%s", text);
    CHECKF(strstr(text, "exp2(") && strstr(text, "softplus(") && strstr(text, "cast<f8e4m3>(") &&
               strstr(text, "bitcast<i32>(x[b * 256 + i])") && strstr(text, "-inf") &&
               strstr(text, "else {\n"),
           "%s", text);
    CHECK(round_trips(k, "elementwise.tir"));
    free(text);
    ir_kernel_free(k);
}

TEST(reduce_kernel_round_trips)
{
    Kernel *k = reduce_kernel();
    char *text = ir_print_string(k);
    CHECKF(strstr(text, "  reduce max axis 1 t -> rowmax[0 +: 64] clear\n") &&
               strstr(text, "  reduce sum axis 0 t -> col\n") &&
               strstr(text, "  atomic_add one -> total[0 +: 1]\n"),
           "%s", text);
    CHECK(round_trips(k, "reduce.tir"));
    free(text);
    ir_kernel_free(k);
}

TEST(loop_kernel_round_trips)
{
    Kernel *k = loop_kernel();
    char *text = ir_print_string(k);
    CHECKF(strstr(text, "kernel loopy level loop\n") && strstr(text, "  for i: unroll(4) < 16 {\n") &&
               strstr(text, "    for j: vector(16) < 16 {\n") &&
               strstr(text, "    micro_gemm a[0 +: 16, kk * 32 +: 32], b[kk * 16 +: 16, 0 +: 32] -> acc b_pairs\n") &&
               strstr(text, "      atomic c[i_1, j_1] += acc[i_1, j_1]\n"),
           "%s", text);
    CHECK(round_trips(k, "loop.tir"));
    /* the parsed loop keeps its unroll argument */
    Diag d = {0};
    Kernel *p = ir_parse(text, "loop.tir", &d);
    CHECK(p && p->body->u.seq.items[0]->u.loop.arg == 4 && p->level == LEVEL_LOOP);
    ir_kernel_free(p);
    free(text);
    ir_kernel_free(k);
}

/* ------------------------------------------------- every .tir in tests/ir */


TEST(every_sample_tir_is_its_own_printed_form)
{
    DIR *dir = opendir("tests/ir");
    CHECKF(dir != NULL, "tests/ir is missing (run from the repo root)");
    if (!dir)
        return;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".tir"))
            continue;
        char path[512];
        snprintf(path, sizeof path, "tests/ir/%s", e->d_name);
        char *text = th_read_file(path);
        CHECKF(text != NULL, "cannot read %s", path);
        if (!text)
            continue;
        Diag d = {0};
        Kernel *k = ir_parse(text, path, &d);
        CHECKF(k != NULL, "%s: %s", path, d.msg);
        if (!k) {
            free(text);
            continue;
        }
        CHECKF(ir_verify(k, &d), "%s: %s:%d: %s", path, d.loc.file, d.loc.line, d.msg);
        /* samples with location comments compare against that form */
        char *printed = strstr(text, "  # ") ? print_locs_string(k) : ir_print_string(k);
        CHECKF(!strcmp(printed, text), "%s prints differently:\n%s", path, printed);
        free(printed);
        free(text);
        ir_kernel_free(k);
        n++;
    }
    closedir(dir);
    CHECKF(n >= 6, "only %d .tir samples", n);
}

/* ----------------------------------------------- specs at both levels */

/* Every spec that returns a kernel (modules like quant.lua do not say
 * T.kernel): its Tile IR, and its Loop IR after the pipeline. */
static int round_trip_specs_in(const char *dirname)
{
    DIR *dir = opendir(dirname);
    CHECKF(dir != NULL, "%s is missing (run from the repo root)", dirname);
    int n = 0;
    struct dirent *e;
    while (dir && (e = readdir(dir))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".lua"))
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dirname, e->d_name);
        char *src = th_read_file(path);
        bool is_kernel = src && (strstr(src, "T.kernel") || strstr(src, "T.compose"));
        free(src);
        if (!is_kernel)
            continue;
        Diag d = {0};
        Kernel *k = fe_load(path, NULL, 0, &d);
        CHECKF(k != NULL, "%s does not load: %s", path, d.msg);
        if (!k)
            continue;
        CHECKF(round_trips(k, path), "%s (tile)", path);
        CHECKF(pass_pipeline(k, ir_target("x86-avx512"), NULL, &d), "%s: %s", path, d.msg);
        CHECKF(round_trips(k, path), "%s (loop)", path);
        ir_kernel_free(k);
        n++;
    }
    if (dir)
        closedir(dir);
    return n;
}

TEST(specs_round_trip_at_tile_and_loop_level)
{
    int n = round_trip_specs_in("examples") + round_trip_specs_in("kernels_src") + round_trip_specs_in("bench");
    CHECKF(n >= 22, "only %d specs", n);
}

/* A spec's `threads =` is the kernel's block_threads, printed and parsed. */
TEST(block_threads_round_trip)
{
    Diag d = {0};
    FeSet nt = {"NT", "64"};
    Kernel *k = fe_load("tests/specs/gemm_threads.lua", &nt, 1, &d);
    CHECKF(k != NULL, "%s", d.msg);
    if (!k)
        return;
    CHECK(k->block_threads == 64);
    char *text = ir_print_string(k);
    CHECKF(strstr(text, "\nblock_threads 64\n") != NULL, "%s", text);
    free(text);
    CHECK(round_trips(k, "gemm_threads (tile)"));
    CHECKF(pass_pipeline(k, ir_target("sm_90a"), NULL, &d), "%s", d.msg);
    CHECK(k->nthreads == 64);
    CHECK(round_trips(k, "gemm_threads (loop)"));
    ir_kernel_free(k);
}

/* -------------------------------------------------------- expressions */

static char *expr_string(const Expr *e)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    ir_print_expr(e, f);
    fclose(f);
    return buf;
}

TEST(expressions_print_with_the_fewest_parentheses)
{
    Kernel *k = ir_kernel_new("e", at(1));
    Param *pa = ir_param_add(k, "a", DT_I64), *pb = ir_param_add(k, "b", DT_I64);
    Param *pc = ir_param_add(k, "c", DT_I64), *pf = ir_param_add(k, "f", DT_F32);
    Expr *a = ir_param(k, pa), *b = ir_param(k, pb), *c = ir_param(k, pc), *f = ir_param(k, pf);
    struct { Expr *e; const char *want; } cases[] = {
        {ir_binary(k, EX_SUB, a, ir_binary(k, EX_SUB, b, c)), "a - (b - c)"},
        {ir_binary(k, EX_SUB, ir_binary(k, EX_SUB, a, b), c), "a - b - c"},
        {ir_binary(k, EX_MUL, ir_binary(k, EX_ADD, a, b), c), "(a + b) * c"},
        {ir_binary(k, EX_ADD, a, ir_binary(k, EX_MUL, b, c)), "a + b * c"},
        {ir_binary(k, EX_DIV, a, ir_binary(k, EX_MUL, b, c)), "a / (b * c)"},
        {ir_binary(k, EX_MOD, ir_binary(k, EX_DIV, a, b), c), "a / b % c"},
        {ir_binary(k, EX_SHL, ir_binary(k, EX_ADD, a, b), ir_const_i(k, 2)), "a + b << 2"},
        {ir_binary(k, EX_ADD, a, ir_binary(k, EX_SHL, b, ir_const_i(k, 2))), "a + (b << 2)"},
        {ir_binary(k, EX_BAND, ir_binary(k, EX_BOR, a, b), c), "(a | b) & c"},
        {ir_binary(k, EX_BXOR, a, ir_binary(k, EX_BAND, b, c)), "a ^ b & c"},
        {ir_binary(k, EX_AND, ir_binary(k, EX_OR, ir_binary(k, EX_LT, a, b), ir_binary(k, EX_LE, b, c)),
                   ir_unary(k, EX_NOT, ir_binary(k, EX_EQ, a, c))),
         "(a < b or b <= c) and not (a == c)"},
        {ir_unary(k, EX_NEG, ir_binary(k, EX_ADD, a, b)), "-(a + b)"},
        {ir_unary(k, EX_NEG, ir_unary(k, EX_NEG, f)), "-(-f)"},
        {ir_binary(k, EX_MUL, ir_const_i(k, -2), a), "-2 * a"},
        {ir_binary(k, EX_SUB, a, ir_const_i(k, -2)), "a - -2"},
        {ir_binary(k, EX_ADD, ir_binary(k, EX_MUL, a, b), ir_binary(k, EX_MUL, b, c)), "a * b + b * c"},
        {ir_binary(k, EX_MAX, ir_binary(k, EX_ADD, a, b), ir_const_i(k, 0)), "max(a + b, 0)"},
        {ir_select(k, ir_binary(k, EX_NE, a, b), f, ir_const_f(k, 2)), "select(a != b, f, 2.0)"},
        {ir_cast(k, DT_BF16, ir_binary(k, EX_MUL, f, ir_const_f(k, 0.5))), "cast<bf16>(f * 0.5)"},
        {ir_unary(k, EX_EXP, ir_unary(k, EX_NEG, f)), "exp(-f)"},
        {ir_binary(k, EX_ADD, a, ir_const_i(k, INT64_MIN)), "a + -9223372036854775808"},
        {ir_binary(k, EX_SUB, f, ir_const_f(k, -0.0)), "f - -0.0"},
        {ir_binary(k, EX_MUL, f, ir_const_f(k, 1e-45)), "f * 1.4013e-45"},
        {ir_binary(k, EX_MUL, f, ir_const_f(k, 3.4028234663852886e38)), "f * 3.4028235e+38"},
        {ir_binary(k, EX_ADD, ir_const_f(k, NAN), ir_const_f(k, -INFINITY)), "nan + -inf"},
        {ir_binary(k, EX_AND, ir_const_bool(k, true), ir_binary(k, EX_LT, f, f)), "f < f"}, /* folded */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *s = expr_string(cases[i].e);
        CHECKF(!strcmp(s, cases[i].want), "case %zu: got '%s', want '%s'", i, s, cases[i].want);
        free(s);
    }
    ir_kernel_free(k);
}

/* The parser rebuilds trees through the builders: precedence, association
 * and folding come out as built. */
TEST(parsed_expressions_have_the_built_shape_and_types)
{
    const char *src =
        "kernel p level tile\n"
        "scalar a: i64\n"
        "arg y: f32[4] out\n"
        "arg q: i32[4] out\n"
        "grid (g) < [1]\n"
        "{\n"
        "  y[0] = a - (2 - 1) - 3 * -a\n"
        "  y[1] = -1.5 * 2.0\n"
        "  q[2 + 1] = bitcast<i32>(y[0]) >> 1\n"
        "  y[2] = select(true and a < 3, 1, 2.0)\n"
        "}\n";
    Diag d = {0};
    Kernel *k = ir_parse(src, "p.tir", &d);
    CHECKF(k != NULL, "%s", d.msg);
    if (!k)
        return;
    Stmt **s = k->body->u.seq.items;
    Expr *e = s[0]->u.store.value; /* (a - 1) - (3 * -a) */
    CHECK(e->op == EX_SUB && e->dtype == DT_I64 && e->args[0]->op == EX_SUB);
    CHECK(e->args[0]->args[1]->op == EX_CONST && e->args[0]->args[1]->imm.i == 1);
    CHECK(e->args[1]->op == EX_MUL && e->args[1]->args[1]->op == EX_NEG);
    e = s[1]->u.store.value;
    CHECK(e->op == EX_MUL && e->dtype == DT_F32 && e->args[0]->op == EX_CONST &&
          e->args[0]->imm.f == -1.5);
    CHECK(s[2]->u.store.idx[0]->op == EX_CONST && s[2]->u.store.idx[0]->imm.i == 3);
    e = s[2]->u.store.value;
    CHECK(e->op == EX_SHR && e->args[0]->op == EX_BITCAST && e->args[0]->dtype == DT_I32);
    e = s[3]->u.store.value;
    CHECK(e->op == EX_SELECT && e->dtype == DT_F32 && e->args[0]->op == EX_LT); /* true and x == x */
    CHECK(s[0]->loc.line == 7 && !strcmp(s[0]->loc.file, "p.tir"));
    ir_kernel_free(k);
}

/* Every f32 survives the text exactly: random bit patterns plus the edges. */
TEST(every_f32_constant_survives_the_text)
{
    enum { N = 3000 };
    float vals[N];
    unsigned seed = 12345;
    for (int i = 0; i < N; i++) {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        uint32_t bits = seed;
        memcpy(&vals[i], &bits, 4);
    }
    const float edges[] = {0.0f, -0.0f, 1e-45f, -1e-45f, 1.17549435e-38f, 3.40282347e38f,
                           -3.40282347e38f, 0.1f, 16777217.0f, 1.0f / 3, INFINITY, -INFINITY};
    memcpy(vals, edges, sizeof edges);
    Kernel *k = ir_kernel_new("consts", at(1));
    Expr *shape = ir_const_i(k, N);
    Buffer *y = ir_arg_add(k, "y", DT_F32, ARG_OUT, 1, &shape, at(2));
    Var *g = ir_var_new(k, "g");
    Expr *one = ir_const_i(k, 1);
    ir_set_grid(k, 1, &g, &one);
    for (int i = 0; i < N; i++) {
        Expr *idx = ir_const_i(k, i);
        ir_seq_push(k, k->body, ir_store(k, y, &idx, ir_const_f(k, vals[i]), at(3)));
    }
    char *text = ir_print_string(k);
    Diag d = {0};
    Kernel *p = ir_parse(text, "consts.tir", &d);
    CHECKF(p != NULL, "%s", d.msg);
    int bad = 0;
    for (int i = 0; p && i < N; i++) {
        const Expr *e = p->body->u.seq.items[i]->u.store.value;
        float got = (float)e->imm.f;
        bool same = e->op == EX_CONST && e->dtype == DT_F32 &&
                    (isnan(vals[i]) ? isnan(got) : memcmp(&got, &vals[i], 4) == 0);
        uint32_t bits;
        memcpy(&bits, &vals[i], 4);
        if (!same && bad++ < 5)
            printf("  constant %d: %.9g (0x%08x) came back as %.9g\n", i, vals[i], bits, got);
    }
    CHECK(bad == 0);
    if (p) {
        char *again = ir_print_string(p);
        CHECK(!strcmp(text, again));
        free(again);
    }
    free(text);
    ir_kernel_free(p);
    ir_kernel_free(k);
}

/* ---------------------------------------------------- names and locations */

TEST(names_that_look_like_keywords_round_trip)
{
    const char *src =
        "kernel names level tile\n"
        "arg fill: f32[8] out\n"
        "arg copy: f32[8] in\n"
        "buf atomic: local f32[8]\n"
        "grid (max) < [1]\n"
        "{\n"
        "  for exp: serial < 8 {\n"
        "    atomic[exp] = max(copy[exp], cast<f32>(max))\n"
        "    fill[exp] = exp(atomic[exp])\n"
        "  }\n"
        "  fill fill[0 +: 8] = 0.0\n"
        "  copy copy[0 +: 8] -> atomic\n"
        "}\n";
    Diag d = {0};
    Kernel *k = ir_parse(src, "names.tir", &d);
    CHECKF(k != NULL, "%s", d.msg);
    if (!k)
        return;
    char *text = ir_print_string(k);
    CHECKF(!strcmp(text, src), "%s", text);
    CHECK(round_trips(k, "names.tir"));
    free(text);
    ir_kernel_free(k);
}

TEST(duplicate_variable_names_are_made_unique_and_kept)
{
    Kernel *k = loop_kernel(); /* makes "i" and "j" twice */
    CHECK(ir_var_find(k, "i_1") && ir_var_find(k, "j_1"));
    char *text = ir_print_string(k);
    Diag d = {0};
    Kernel *p = ir_parse(text, "loop.tir", &d);
    CHECK(p && ir_var_find(p, "i_1") && ir_var_find(p, "j_1") && p->nvars == k->nvars);
    ir_kernel_free(p);
    free(text);
    ir_kernel_free(k);
}

TEST(location_comments_round_trip_into_locs)
{
    Kernel *k = gemm_kernel();
    char *text = print_locs_string(k);
    CHECKF(strstr(text, "kernel gemm level tile  # spec.lua:1\n") &&
               strstr(text, "arg A: bf16[128, 256] in  # spec.lua:2\n") &&
               strstr(text, "  for k: pipelined(3) < 8 {  # spec.lua:10\n") &&
               strstr(text, "    gemm As, Bs -> acc  # spec.lua:13\n") &&
               strstr(text, "grid (by, bx) < [2, (N + 63) / 64]\n{\n"),
           "%s", text);
    Diag d = {0};
    Kernel *p = ir_parse(text, "gemm.tir", &d);
    CHECKF(p != NULL, "%s", d.msg);
    if (p) {
        char *again = print_locs_string(p);
        CHECKF(!strcmp(text, again), "second print:\n%s", again);
        free(again);
        Stmt *loop = p->body->u.seq.items[1];
        Stmt *gemm = loop->u.loop.body->u.seq.items[2];
        CHECK(loop->loc.line == 10 && !strcmp(loop->loc.file, "spec.lua"));
        CHECK(gemm->loc.line == 13 && !strcmp(gemm->loc.file, "spec.lua"));
        CHECK(p->loc.line == 1 && !strcmp(p->loc.file, "spec.lua"));
        CHECK(p->bufs[5]->loc.line == 8);
        char *plain = ir_print_string(p); /* no comments without asking */
        CHECK(!strcmp(plain, gemm_text));
        free(plain);
        ir_kernel_free(p);
    }
    /* a comment that is not a location is just a comment */
    const char *src = "kernel c level tile  # hello\narg y: f32[1] out # a: b\n"
                      "grid (g) < [1]\n{\n  # whole line: 3\n  y[0] = 1.0  # dir/x.lua:42\n"
                      "  y[0] = 2.0\n}\n";
    p = ir_parse(src, "c.tir", &d);
    CHECKF(p != NULL, "%s", d.msg);
    if (p) {
        Stmt **s = p->body->u.seq.items;
        CHECK(!strcmp(s[0]->loc.file, "dir/x.lua") && s[0]->loc.line == 42);
        CHECK(!strcmp(s[1]->loc.file, "c.tir") && s[1]->loc.line == 7);
        CHECK(!strcmp(p->loc.file, "c.tir") && p->bufs[0]->loc.line == 2);
        ir_kernel_free(p);
    }
    free(text);
    ir_kernel_free(k);
}

/* ----------------------------------------------------------- parse errors */

static void expect_error(const char *src, const char *want)
{
    Diag d = {0};
    Kernel *k = ir_parse(src, "bad.tir", &d);
    CHECKF(k == NULL, "parsed: %s", src);
    ir_kernel_free(k);
    char line[800] = "";
    FILE *f = fmemopen(line, sizeof line, "w");
    diag_print(&d, f);
    fclose(f);
    CHECKF(!strcmp(line, want), "\n    got  %s    want %s", line, want);
}

/* Header lines 1-4, then the body from line 5: "{" is line 4. */
static void body_error(const char *body, const char *want)
{
    char src[2048];
    snprintf(src, sizeof src,
             "kernel k level tile\narg y: f32[4, 4] out\ngrid (b) < [1]\n{\n%s", body);
    expect_error(src, want);
}

TEST(malformed_text_is_one_exact_error_line)
{
    expect_error("", "bad.tir:1: expected 'kernel NAME level tile|loop' at the start\n");
    expect_error("\n\nkernel 7", "bad.tir:3: expected a name near '7'\n");
    expect_error("kernel k level wide\n{\n}\n", "bad.tir:1: unknown level 'wide' (tile or loop)\n");
    expect_error("kernel k level tile\narg y: f32[4\n", "bad.tir:3: expected ']' near 'end of input'\n");
    expect_error("kernel k level tile\narg y: f64[4] out\n", "bad.tir:2: unknown dtype 'f64'\n");
    expect_error("kernel k level tile\narg y: f32[4] both\n",
                 "bad.tir:2: unknown argument direction 'both' (in, out, inout)\n");
    expect_error("kernel k level tile\nbuf t: global f32[4]\n",
                 "bad.tir:2: unknown scope 'global' (shared, fragment, local)\n");
    expect_error("kernel k level tile\nscalar M: i64\nbuf t: local f32[M]\n",
                 "bad.tir:3: scratch buffer 't' needs constant positive dimensions\n");
    expect_error("kernel k level tile\narg y: f32[4] out\nbuf y: local f32[4]\n",
                 "bad.tir:3: buffer 'y' is defined twice\n");
    expect_error("kernel k level tile\nparam M dyn\nparam M fixed 3\n",
                 "bad.tir:3: parameter 'M' is defined twice\n");
    expect_error("kernel k level tile\nscalar M: i64\nscalar M: i64\n",
                 "bad.tir:3: scalar 'M' is defined twice\n");
    expect_error("kernel k level tile\nparam M shape 3\n",
                 "bad.tir:2: unknown parameter kind 'shape' (fixed, tune, variant, size, dyn)\n");
    expect_error("kernel k level tile\narg y: f32[4, 4] out strides [1]\n",
                 "bad.tir:2: argument 'y' needs one stride per dimension\n");
    expect_error("kernel k level tile\ngrid (a, b) < [1]\n",
                 "bad.tir:2: the grid needs one extent per variable\n");
    expect_error("kernel k level tile\ngrid (a) < [1]\ngrid (b) < [1]\n",
                 "bad.tir:3: the grid is defined twice\n");
    expect_error("kernel k level tile\nblock_threads 2048\n", "bad.tir:2: a block has 1 to 1024 threads\n");
    expect_error("kernel k level tile\narg y: f32[99999999999999999999] out\n",
                 "bad.tir:2: integer out of range near '99999999999999999999'\n");
    body_error("  q[0, 0] = 1.0\n}\n", "bad.tir:5: unknown buffer 'q'\n");
    body_error("  y[0, i] = 1.0\n}\n", "bad.tir:5: unknown name 'i'\n");
    body_error("  y[0] = 1.0\n}\n", "bad.tir:5: 'y' takes 2 indices, got 1\n");
    body_error("  y[0, 1, 2] = 1.0\n}\n", "bad.tir:5: expected ']' near ', 2] = 1.0'\n");
    body_error("  y[0, 1] = 1.0 $\n}\n", "bad.tir:5: expected a name near '$'\n");
    body_error("  y[0, 1] = 1.5x\n}\n", "bad.tir:5: malformed number near '1.5x'\n");
    body_error("  y[0, 1] = foo(1.0)\n}\n", "bad.tir:5: unknown name 'foo'\n");
    body_error("  y[0, 1] = cast<f64>(1.0)\n}\n", "bad.tir:5: unknown dtype 'f64'\n");
    body_error("  y[0, 1] = min(1.0)\n}\n", "bad.tir:5: expected ',' near ')'\n");
    body_error("  for i: sideways < 4 {\n  }\n}\n",
               "bad.tir:5: unknown loop kind 'sideways' (serial, parallel, unroll, pipelined, vector)\n");
    body_error("  for i: vector < 4 {\n  }\n}\n", "bad.tir:5: expected '(' near '< 4 {'\n");
    body_error("  for b: serial < 4 {\n  }\n}\n", "bad.tir:5: variable 'b' is defined twice\n");
    body_error("  for i: serial < 4 {\n    y[i, i] = 1.0\n",
               "bad.tir:7: unexpected end of input: a '{' is not closed\n");
    body_error("  copy y -> y\n}\n",
               "bad.tir:5: argument y needs a window: name[offset +: extent, ...]\n");
    body_error("  copy y[0 +: 4, 0 : 4] -> y\n}\n", "bad.tir:5: expected '+:' near ': 4] -> y'\n");
    body_error("  reduce mean axis 0 y[0 +: 4, 0 +: 4] -> y[0 +: 4, 0 +: 1]\n}\n",
               "bad.tir:5: unknown reduction 'mean' (sum, max, min, absmax)\n");
    body_error("  gemm y[0 +: 4, 0 +: 4] y[0 +: 4, 0 +: 4] -> y[0 +: 4, 0 +: 4]\n}\n",
               "bad.tir:5: expected ',' near 'y[0 +: 4, 0 +: 4] ->'\n");
    body_error("}\n}\n", "bad.tir:6: unexpected text after the kernel body near '}'\n");
    /* deep nesting is an error, not a stack overflow */
    char deep[4096] = "  y[0, 0] = ";
    for (int i = 0; i < 1000; i++)
        strcat(deep, "(");
    strcat(deep, "1.0\n}\n");
    body_error(deep, "bad.tir:5: nesting deeper than 200 levels\n");
}

int main(void)
{
    RUN(gemm_tile_kernel_prints_as_documented_and_round_trips);
    RUN(elementwise_kernel_round_trips);
    RUN(reduce_kernel_round_trips);
    RUN(loop_kernel_round_trips);
    RUN(every_sample_tir_is_its_own_printed_form);
    RUN(block_threads_round_trip);
    RUN(specs_round_trip_at_tile_and_loop_level);
    RUN(expressions_print_with_the_fewest_parentheses);
    RUN(parsed_expressions_have_the_built_shape_and_types);
    RUN(every_f32_constant_survives_the_text);
    RUN(names_that_look_like_keywords_round_trip);
    RUN(duplicate_variable_names_are_made_unique_and_kept);
    RUN(location_comments_round_trip_into_locs);
    RUN(malformed_text_is_one_exact_error_line);
    return test_summary();
}
