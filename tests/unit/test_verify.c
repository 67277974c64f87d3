/* test_verify.c — the verifier catches what a buggy pass produces.  Each test
 * starts from a kernel that verifies, plants one violation (usually by
 * mutating one node, as a pass would) and checks the exact message and the
 * line it names. */
#include "test.h"

#include "ir/ir.h"

#include <string.h>

/* A tile kernel that uses every tile op; line numbers matter below. */
static const char tile_src[] =
    "kernel base level tile\n"                        /* 1 */
    "param M dyn\n"                                   /* 2 */
    "scalar M: i64\n"                                 /* 3 */
    "arg x: f32[M, 64] in\n"                          /* 4 */
    "arg w: bf16[64, 32] in\n"                        /* 5 */
    "arg y: f32[M, 32] out\n"                         /* 6 */
    "buf xs: shared f32[16, 64]\n"                    /* 7 */
    "buf ws: shared bf16[64, 32]\n"                   /* 8 */
    "buf acc: fragment f32[16, 32]\n"                 /* 9 */
    "buf r: fragment f32[16]\n"                       /* 10 */
    "grid (b) < [(M + 15) / 16]\n"                    /* 11 */
    "{\n"                                             /* 12 */
    "  copy x[b * 16 +: 16, 0 +: 64] -> xs\n"         /* 13: item 0 */
    "  copy w[0 +: 64, 0 +: 32] -> ws\n"              /* 14: item 1 */
    "  fill acc = 0.0\n"                              /* 15: item 2 */
    "  gemm xs, ws -> acc\n"                          /* 16: item 3 */
    "  reduce max axis 1 acc -> r clear\n"            /* 17: item 4 */
    "  for i: parallel < 16 {\n"                      /* 18: item 5 */
    "    if b * 16 + i < M {\n"                       /* 19 */
    "      for j: serial < 32 {\n"                    /* 20 */
    "        y[b * 16 + i, j] = acc[i, j] - r[i]\n"   /* 21 */
    "      }\n"
    "    }\n"
    "  }\n"
    "  for u: unroll < 4 {\n"                         /* 25: item 6 */
    "    r[u] = x[u, 0]\n"                            /* 26 */
    "  }\n"
    "}\n";

/* A Loop IR kernel: vector loops, micro_gemm on packed b, atomic stores. */
static const char loop_src[] =
    "kernel lbase level loop\n"                                           /* 1 */
    "arg a: bf16[16, 32] in\n"                                            /* 2 */
    "arg bp: bf16[16, 32] in\n"                                           /* 3 */
    "arg c: f32[16, 16] inout\n"                                          /* 4 */
    "buf acc: local f32[16, 16]\n"                                        /* 5 */
    "grid (g) < [1]\n"                                                    /* 6 */
    "{\n"                                                                 /* 7 */
    "  for i: parallel < 16 {\n"                                          /* 8: item 0 */
    "    for j: vector(16) < 16 {\n"                                      /* 9 */
    "      acc[i, j] = 0.0\n"                                             /* 10 */
    "    }\n"
    "  }\n"
    "  micro_gemm a[0 +: 16, 0 +: 32], bp[0 +: 16, 0 +: 32] -> acc b_pairs\n" /* 13: item 1 */
    "  for i_1: pipelined(2) < 16 {\n"                                    /* 14: item 2 */
    "    for j_1: vector(8) < 16 {\n"                                     /* 15 */
    "      atomic c[i_1, j_1] += acc[i_1, j_1]\n"                         /* 16 */
    "    }\n"
    "  }\n"
    "}\n";

static Kernel *load(const char *src)
{
    Diag d = {0};
    Kernel *k = ir_parse(src, "v.tir", &d);
    if (!k)
        printf("  parse: %s:%d: %s\n", d.loc.file, d.loc.line, d.msg);
    return k;
}

static Stmt *item(const Kernel *k, int i) { return k->body->u.seq.items[i]; }
static Stmt *first(const Stmt *block) { return block->u.seq.items[0]; }

/* The innermost store of tile_src (line 21). */
static Stmt *tile_store(const Kernel *k)
{
    Stmt *loop_i = item(k, 5);
    Stmt *if_ = first(loop_i->u.loop.body);
    return first(first(if_->u.if_.then_)->u.loop.body);
}

/* ir_verify fails with exactly `want`, at `line`; frees k. */
static void expect_fail(Kernel *k, int line, const char *want);

/* A block-scaled packed fp4 B (1x32 scales), its window with a leading
 * unit dim, and the CPU dot tile it lowers to. */
static const char *scaled_src =
    "kernel s level tile\n"
    "arg x: bf16[4, 64] in\n"
    "arg w: f4e2m1[2, 16, 64] in\n"
    "arg sw: e8m0[2, 16, 2] in\n"
    "arg q: i32[2, 16, 2] in\n"
    "arg r: e8m0[16, 2] in\n"
    "buf acc: fragment f32[4, 16]\n"
    "grid (b) < [2]\n"
    "{\n"
    "  gemm x[0 +: 4, 0 +: 64], w[b +: 1, 0 +: 16, 0 +: 64] -> acc trans_b clear b_scale sw[b +: 1, 0 +: 16, 0 +: 2]\n" /* 10 */
    "}\n";

static const char *scaled_loop_src =
    "kernel s level loop\n"
    "arg x: bf16[4, 64] in\n"
    "arg w: f4e2m1[16, 64] in\n"
    "arg sw: e8m0[16, 2] in\n"
    "arg sx: e8m0[4, 2] in\n"
    "buf acc: fragment f32[4, 16]\n"
    "grid (b) < [1]\n"
    "{\n"
    "  micro_gemm x[0 +: 4, 0 +: 64], w[0 +: 16, 0 +: 64] -> acc trans_b clear b_scale sw[0 +: 16, 0 +: 2]\n" /* 9 */
    "}\n";

/* A micro_gemm reading a group's weight tile in place (pass_lower's
 * forwarded copy): B of rank 3 with a leading extent of 1. */
static const char *group_loop_src =
    "kernel s level loop\n"
    "arg x: bf16[4, 64] in\n"
    "arg w: bf16[2, 16, 64] in\n"
    "buf acc: fragment f32[4, 16]\n"
    "grid (b) < [1]\n"
    "{\n"
    "  micro_gemm x[0 +: 4, 0 +: 64], w[1 +: 1, 0 +: 16, 0 +: 64] -> acc trans_b clear\n" /* 7 */
    "}\n";

static void expect_fail(Kernel *k, int line, const char *want)
{
    CHECK(k != NULL);
    if (!k)
        return;
    Diag d = {0};
    bool ok = ir_verify(k, &d);
    CHECKF(!ok, "verified, wanted: %s", want);
    if (!ok) {
        CHECKF(!strcmp(d.msg, want), "\n    got  %s\n    want %s", d.msg, want);
        CHECKF(d.loc.line == line, "line %d, want %d (%s)", d.loc.line, line, d.msg);
    }
    ir_kernel_free(k);
}

/* One warpgroup's wgmma product (m64n8k16: one instruction, 4 words). */
static const char *wgmma_src =
    "kernel wg level loop\n"
    "arg a: bf16[64, 16] in\n"
    "arg b: bf16[8, 16] in\n"
    "buf as: shared bf16[64, 16] align 1024\n"
    "buf bs: shared bf16[8, 16] align 1024\n"
    "buf acc: local f32[4]\n"
    "grid (blk) < [1]\n"
    "threads tid < 128\n"
    "{\n"
    "  micro_gemm as, bs -> acc trans_b clear wgmma [65536 + tid / 128, 1073741888, 65600, 1073741888]\n" /* 10 */
    "}\n";

TEST(wgmma_descriptors)
{
    Kernel *k = load(wgmma_src);
    Diag d = {0};
    CHECKF(k && ir_verify(k, &d), "%d: %s", d.loc.line, d.msg);
    ir_kernel_free(k);
    k = load(wgmma_src);
    if (k)
        item(k, 0)->u.gemm.ndesc = 3;
    expect_fail(k, 10, "verify: micro_gemm wgmma needs 4 descriptor words, has 3");
    k = load(wgmma_src);
    if (k)
        item(k, 0)->u.gemm.desc[1] = ir_const_f(k, 1.0);
    expect_fail(k, 10, "verify: a wgmma descriptor must be an integer, not f32");
}

TEST(base_kernels_verify)
{
    const char *srcs[] = {tile_src, loop_src};
    for (int i = 0; i < 2; i++) {
        Kernel *k = load(srcs[i]);
        Diag d = {0};
        CHECK(k != NULL);
        CHECKF(k && ir_verify(k, &d), "%d:%d: %s", i, d.loc.line, d.msg);
        ir_kernel_free(k);
    }
}

/* --------------------------------------------------------------- levels */

TEST(tile_ops_are_errors_in_loop_ir)
{
    Kernel *k = load(tile_src);
    k->level = LEVEL_LOOP;
    expect_fail(k, 13, "verify: copy is not allowed in loop IR");
    const int lines[] = {15, 16, 17};
    const char *msgs[] = {"verify: fill is not allowed in loop IR",
                          "verify: gemm is not allowed in loop IR",
                          "verify: reduce is not allowed in loop IR"};
    for (int i = 0; i < 3; i++) {
        k = load(tile_src);
        k->level = LEVEL_LOOP;
        k->body->u.seq.items += 2 + i; /* start the body at the op under test */
        k->body->u.seq.n -= 2 + i;
        expect_fail(k, lines[i], msgs[i]);
    }
    k = load(tile_src);
    k->level = LEVEL_LOOP;
    item(k, 0)->op = ST_ATOMIC_ADD;
    item(k, 0)->u.copy.dst.buf = k->bufs[2]; /* y is writable */
    expect_fail(k, 13, "verify: atomic_add is not allowed in loop IR");
}

TEST(micro_gemm_and_vector_loops_are_errors_in_tile_ir)
{
    Kernel *k = load(loop_src);
    k->level = LEVEL_TILE;
    expect_fail(k, 9, "verify: for (vector) is not allowed in tile IR");
    k = load(loop_src);
    k->level = LEVEL_TILE;
    first(item(k, 0)->u.loop.body)->u.loop.kind = LOOP_SERIAL;
    expect_fail(k, 13, "verify: micro_gemm is not allowed in tile IR");
}

/* ---------------------------------------------------------- expressions */

TEST(load_index_count_type_and_dtype)
{
    Kernel *k = load(tile_src);
    Expr *ld = tile_store(k)->u.store.value->args[0]; /* acc[i, j] */
    ld->nargs = 1;
    expect_fail(k, 21, "verify: load from acc has 1 indices, but acc has rank 2");
    k = load(tile_src);
    ld = tile_store(k)->u.store.value->args[0];
    ld->args[1] = ir_const_f(k, 1.0);
    expect_fail(k, 21, "verify: index 1 of a load from acc is f32, not an integer");
    k = load(tile_src);
    ld = tile_store(k)->u.store.value->args[1]; /* r[i] */
    ld->dtype = DT_BF16;
    expect_fail(k, 21, "verify: load from r is typed bf16, but r holds f32");
    k = load(tile_src);
    tile_store(k)->u.store.idx[0] = ir_const_bool(k, true);
    expect_fail(k, 21, "verify: index 0 of a store to y is bool, not an integer");
}

TEST(operand_counts_and_operator_types)
{
    Kernel *k = load(tile_src);
    tile_store(k)->u.store.value->nargs = 3;
    expect_fail(k, 21, "verify: - takes 2 operands, not 3");
    k = load(tile_src);
    Stmt *if_ = first(item(k, 5)->u.loop.body);
    Expr *cond = if_->u.if_.cond;
    if_->u.if_.cond = ir_binary(k, EX_AND, cond, ir_var(k, ir_var_find(k, "i")));
    expect_fail(k, 19, "verify: operand of 'and' is i64, not bool");
    k = load(tile_src);
    tile_store(k)->u.store.value =
        ir_binary(k, EX_BAND, ir_var(k, ir_var_find(k, "j")), ir_const_f(k, 2.0));
    expect_fail(k, 21, "verify: bit operation & needs integer operands, not i64 and f32");
    k = load(tile_src);
    tile_store(k)->u.store.value = ir_bitcast(k, DT_I32, ir_var(k, ir_var_find(k, "j")));
    expect_fail(k, 21, "verify: bitcast<i32> of a i64 value: only f32 <-> i32");
    k = load(tile_src);
    tile_store(k)->u.store.value =
        ir_select(k, ir_var(k, ir_var_find(k, "j")), ir_const_f(k, 1), ir_const_f(k, 2));
    expect_fail(k, 21, "verify: select condition is i64, not bool");
    k = load(tile_src);
    first(item(k, 5)->u.loop.body)->u.if_.cond->dtype = DT_I64; /* a mistyped comparison */
    expect_fail(k, 19, "verify: comparison < is typed i64, not bool");
    k = load(tile_src);
    tile_store(k)->u.store.value = NULL;
    expect_fail(k, 21, "verify: an expression is missing");
}

/* ------------------------------------------------------------ variables */

TEST(variables_are_used_only_where_defined_and_defined_once)
{
    /* a pass that hoists a statement out of its loop */
    Kernel *k = load(tile_src);
    ir_seq_push(k, k->body, tile_store(k));
    expect_fail(k, 21, "verify: variable i is used outside the loop that defines it");
    /* a pass that reuses a loop's variable for a second loop */
    k = load(tile_src);
    item(k, 6)->u.loop.var = item(k, 5)->u.loop.var;
    expect_fail(k, 25, "verify: loop variable i is defined twice");
    /* the grid's variable as a loop variable */
    k = load(tile_src);
    item(k, 6)->u.loop.var = k->grid_var[0];
    expect_fail(k, 25, "verify: loop variable b is defined twice");
    /* a variable made by another kernel */
    Kernel *other = load(tile_src);
    k = load(tile_src);
    tile_store(k)->u.store.idx[1] = ir_var(k, ir_var_find(other, "j"));
    expect_fail(k, 21, "verify: variable j is not a variable of this kernel");
    ir_kernel_free(other);
    /* a grid extent that uses a variable: extents are known before blocks run */
    k = load(tile_src);
    k->grid[0] = ir_var(k, k->grid_var[0]);
    expect_fail(k, 1, "verify: variable b is used outside the loop that defines it");
    /* two variables with one name would print ambiguously */
    k = load(tile_src);
    ir_var_find(k, "u")->name = "j";
    expect_fail(k, 1, "verify: two variables are named j");
}

TEST(buffers_and_scalars_belong_to_the_kernel)
{
    Kernel *other = load(tile_src);
    Kernel *k = load(tile_src);
    tile_store(k)->u.store.buf = ir_buf_find(other, "y");
    expect_fail(k, 21, "verify: store to y, which is not a buffer of this kernel");
    k = load(tile_src);
    tile_store(k)->u.store.value->args[1]->buf = ir_buf_find(other, "r");
    expect_fail(k, 21, "verify: load from r, which is not a buffer of this kernel");
    k = load(tile_src);
    item(k, 0)->u.copy.dst.buf = ir_buf_find(other, "xs");
    expect_fail(k, 13, "verify: copy uses xs, which is not a buffer of this kernel");
    k = load(tile_src);
    Stmt *if_ = first(item(k, 5)->u.loop.body);
    if_->u.if_.cond->args[1] = ir_param(k, ir_param_find(other, "M"));
    expect_fail(k, 19, "verify: M is not a scalar of this kernel");
    ir_kernel_free(other);
}

TEST(buffer_declarations)
{
    Kernel *k = load(tile_src);
    ir_buf_find(k, "ws")->shape[0] = ir_param(k, k->params[0]);
    expect_fail(k, 8, "verify: scratch buffer ws needs a constant positive shape (dimension 0)");
    k = load(tile_src);
    ir_buf_find(k, "acc")->shape[1] = ir_const_i(k, 0);
    expect_fail(k, 9, "verify: scratch buffer acc needs a constant positive shape (dimension 1)");
    k = load(tile_src);
    k->bufs[0]->shape[0] = ir_const_f(k, 4.0);
    expect_fail(k, 4, "verify: a shape must be an integer, not f32");
    k = load(tile_src);
    k->bufs[1]->dir = ARG_NONE;
    expect_fail(k, 5, "verify: argument w has no direction (in, out, inout)");
    k = load(tile_src);
    ir_buf_find(k, "r")->name = "xs";
    expect_fail(k, 10, "verify: two buffers are named xs");
    k = load(tile_src);
    Buffer *t = k->bufs[0];
    k->bufs[0] = k->bufs[3];
    k->bufs[3] = t;
    expect_fail(k, 7, "verify: xs: arguments must come first in the buffer list");
}

/* ---------------------------------------------------------- statements */

TEST(loops_ifs_and_the_grid)
{
    Kernel *k = load(tile_src);
    item(k, 5)->u.loop.extent = ir_const_f(k, 16.0);
    expect_fail(k, 18, "verify: a loop extent must be an integer, not f32");
    k = load(tile_src);
    item(k, 6)->u.loop.extent = ir_param(k, k->params[0]);
    expect_fail(k, 25, "verify: unrolled loop over u needs a constant extent");
    k = load(loop_src);
    first(item(k, 0)->u.loop.body)->u.loop.arg = 0;
    expect_fail(k, 9, "verify: vector loop over j needs a positive width, not 0");
    k = load(loop_src);
    item(k, 2)->u.loop.arg = -1;
    expect_fail(k, 14, "verify: pipelined loop over i_1 needs a positive stage count, not -1");
    k = load(tile_src);
    Stmt *if_ = first(item(k, 5)->u.loop.body);
    if_->u.if_.cond = ir_binary(k, EX_SUB, ir_param(k, k->params[0]), ir_var(k, ir_var_find(k, "i")));
    expect_fail(k, 19, "verify: if condition is i64, not bool");
    k = load(tile_src);
    item(k, 5)->u.loop.body = NULL;
    expect_fail(k, 1, "verify: a statement (loop or if body) is missing");
    k = load(tile_src);
    k->ngrid = 0;
    expect_fail(k, 1, "verify: kernel base has a grid of 0 dimensions, not 1 to 3");
    k = load(tile_src);
    k->grid[0] = ir_const_f(k, 2.0);
    expect_fail(k, 1, "verify: a grid extent must be an integer, not f32");
}

TEST(nothing_writes_an_input)
{
    Kernel *k = load(tile_src);
    tile_store(k)->u.store.buf = k->bufs[0]; /* x, same rank */
    expect_fail(k, 21, "verify: write to input argument x");
    k = load(tile_src);
    Region x = item(k, 0)->u.copy.src;
    item(k, 0)->u.copy.src = item(k, 0)->u.copy.dst;
    item(k, 0)->u.copy.dst = x;
    expect_fail(k, 13, "verify: write to input argument x");
    k = load(loop_src);
    k->bufs[2]->dir = ARG_IN; /* c, the target of the atomic store */
    expect_fail(k, 16, "verify: write to input argument c");
}

TEST(regions)
{
    Kernel *k = load(tile_src);
    item(k, 0)->u.copy.src.ext[1] = 0;
    expect_fail(k, 13, "verify: copy: the window of x has extent 0 in dimension 1");
    k = load(tile_src);
    item(k, 0)->u.copy.src.off[0] = ir_const_f(k, 0.5);
    expect_fail(k, 13, "verify: a region offset must be an integer, not f32");
    k = load(tile_src);
    item(k, 2)->u.fill.dst.off[1] = NULL;
    expect_fail(k, 15, "verify: fill: the window of acc lacks an offset in dimension 1");
}

/* Async copies move a global buffer's elements into scratch of the same
 * dtype, unchanged (what cp.async does); an async store stores a load;
 * async_wait keeps a non-negative number of groups in flight. */
TEST(async_copies_and_waits)
{
    const char *head = "kernel a level tile\n"
                       "arg x: f32[64] in\n"
                       "arg h: bf16[64] in\n"
                       "buf s: shared f32[64]\n"
                       "buf t: shared f32[64]\n"
                       "grid (g) < [1]\n"
                       "{\n";
    const char *bodies[] = {
        "  copy async x[0 +: 64] -> s\n  async_commit\n  async_wait 0\n}\n",
        "  copy async s -> t\n}\n",
        "  copy async h[0 +: 64] -> s\n}\n",
        "  async_wait 2\n}\n",
    };
    const char *want[] = {
        NULL,
        "verify: async s -> t must copy a global buffer into scratch of the same dtype (shared f32 -> shared f32)",
        "verify: async h -> s must copy a global buffer into scratch of the same dtype (global bf16 -> shared f32)",
        NULL,
    };
    for (int i = 0; i < 4; i++) {
        char src[512];
        snprintf(src, sizeof src, "%s%s", head, bodies[i]);
        Kernel *k = load(src);
        if (want[i]) {
            expect_fail(k, 8, want[i]);
            continue;
        }
        Diag d = {0};
        CHECKF(k && ir_verify(k, &d), "body %d: %s", i, d.msg);
        ir_kernel_free(k);
    }
    Kernel *k = load("kernel a level loop\n"
                     "arg x: f32[64] in\n"
                     "buf s: shared f32[64]\n"
                     "grid (g) < [1]\n"
                     "{\n"
                     "  for i: serial < 64 {\n"
                     "    async s[i] = x[i] + 1.0\n"
                     "  }\n"
                     "}\n");
    expect_fail(k, 7, "verify: async store to s must store a load");
    k = load(tile_src);
    Stmt *w = ir_async_wait(k, -1, item(k, 0)->loc);
    k->body->u.seq.items[0] = w;
    expect_fail(k, 13, "verify: async_wait -1: the groups left in flight cannot be negative");
    k = load(tile_src);
    k->body->u.seq.items[0] = ir_wgmma_wait(k, -1, item(k, 0)->loc);
    expect_fail(k, 13, "verify: wgmma_wait -1: the groups left in flight cannot be negative");
}

/* A stream store (pass_stream's mark) is a plain store to a global buffer:
 * not to scratch; the mark round-trips through the text. */
TEST(stream_stores_go_to_global_buffers)
{
    Kernel *k = load("kernel a level loop\n"
                     "arg x: f32[64] in\n"
                     "arg y: f32[64] out\n"
                     "grid (g) < [1]\n"
                     "{\n"
                     "  for i: vector(8) < 64 {\n"
                     "    stream y[i] = x[i] + 1.0\n"
                     "  }\n"
                     "}\n");
    Diag d = {0};
    CHECKF(k && ir_verify(k, &d), "a stream store to an output: %s", d.msg);
    if (k) {
        char *text = ir_print_string(k);
        CHECKF(strstr(text, "    stream y[i] = x[i] + 1.0\n") != NULL, "printed:\n%s", text);
        free(text);
        ir_kernel_free(k);
    }
    k = load("kernel a level loop\n"
             "arg x: f32[64] in\n"
             "buf s: shared f32[64]\n"
             "grid (g) < [1]\n"
             "{\n"
             "  for i: vector(8) < 64 {\n"
             "    stream s[i] = x[i]\n"
             "  }\n"
             "}\n");
    expect_fail(k, 7, "verify: stream store to s must be a plain store to a global buffer");
}

/* A prefetch is Loop IR (lower places it) and indexes its buffer like a
 * load; out-of-bounds indices are allowed (it is only a hint). */
TEST(prefetch_is_loop_ir_with_integer_indices)
{
    const char *fmt = "kernel p level %s\n"
                      "arg x: f32[64] in\n"
                      "grid (g) < [1]\n"
                      "{\n"
                      "  prefetch x[%s]\n"
                      "}\n";
    char src[256];
    snprintf(src, sizeof src, fmt, "loop", "g * 64 + 100");
    Kernel *k = load(src);
    Diag d = {0};
    CHECKF(k && ir_verify(k, &d), "%s", d.msg);
    ir_kernel_free(k);
    snprintf(src, sizeof src, fmt, "tile", "0");
    expect_fail(load(src), 5, "verify: prefetch is not allowed in tile IR");
    snprintf(src, sizeof src, fmt, "loop", "1.5");
    expect_fail(load(src), 5, "verify: index 0 of a prefetch of x is f32, not an integer");
}

TEST(copy_shapes_agree_after_dropping_unit_extents)
{
    /* [1, 64] -> [64] and [16, 1, 4] -> [16, 4] are fine */
    const char *ok_src =
        "kernel c level tile\n"
        "arg x: f32[8, 64] in\n"
        "arg z: f32[16, 2, 4] in\n"
        "buf row: local f32[64]\n"
        "buf t: local f32[16, 4]\n"
        "grid (b) < [8]\n"
        "{\n"
        "  copy x[b +: 1, 0 +: 64] -> row\n"
        "  copy z[0 +: 16, 1 +: 1, 0 +: 4] -> t\n"
        "}\n";
    Kernel *k = load(ok_src);
    Diag d = {0};
    CHECKF(k && ir_verify(k, &d), "%s", d.msg);
    ir_kernel_free(k);
    k = load(ok_src);
    item(k, 0)->u.copy.src.ext[0] = 2; /* [2, 64] -> [64] */
    expect_fail(k, 8, "verify: copy x -> row: windows [2, 64] and [64] differ in shape");
    k = load(ok_src);
    item(k, 1)->u.copy.src.ext[1] = 2; /* [16, 2, 4] -> [16, 4] */
    expect_fail(k, 9, "verify: copy z -> t: windows [16, 2, 4] and [16, 4] differ in shape");
    k = load(tile_src);
    item(k, 1)->u.copy.src.ext[0] = 32; /* [32, 32] -> ws [64, 32] */
    expect_fail(k, 14, "verify: copy w -> ws: windows [32, 32] and [64, 32] differ in shape");
}

TEST(gemm_shapes_and_types)
{
    Kernel *k = load(tile_src);
    item(k, 3)->u.gemm.trans_a = true; /* xs [16, 64] as [K, M]: M=64, K=16 */
    expect_fail(k, 16, "verify: gemm shapes disagree: a gives M=64 K=16, b gives K=64 N=32, c is [16, 32]");
    k = load(tile_src);
    item(k, 3)->u.gemm.trans_b = true;
    expect_fail(k, 16, "verify: gemm shapes disagree: a gives M=16 K=64, b gives K=32 N=64, c is [16, 32]");
    k = load(tile_src);
    ir_buf_find(k, "acc")->dtype = DT_BF16; /* its load on line 21 comes later */
    expect_fail(k, 16, "verify: gemm accumulator acc is bf16, not f32");
    k = load(tile_src);
    item(k, 3)->u.gemm.c = item(k, 3)->u.gemm.a; /* [16, 64] */
    expect_fail(k, 16, "verify: gemm shapes disagree: a gives M=16 K=64, b gives K=64 N=32, c is [16, 64]");
    k = load(tile_src);
    item(k, 3)->u.gemm.c.buf = ir_buf_find(k, "r"); /* rank 1 */
    expect_fail(k, 16, "verify: gemm operands must be 2-D (ranks 2, 2, 1)");
    k = load(tile_src);
    item(k, 3)->u.gemm.b_pairs = true;
    expect_fail(k, 16, "verify: gemm: b_pairs needs a micro_gemm with an untransposed [K/2, 2N] b");
    k = load(loop_src);
    item(k, 1)->u.gemm.b_pairs = false; /* bp [16, 32] read as [K, N] = K 16 */
    expect_fail(k, 13, "verify: micro_gemm shapes disagree: a gives M=16 K=32, b gives K=16 N=32, c is [16, 16]");
    k = load(tile_src);
    item(k, 3)->u.gemm.rows = ir_const_f(k, 3.0);
    expect_fail(k, 16, "verify: gemm rows must be an integer, not f32");
    k = load(loop_src);
    item(k, 1)->u.gemm.rows = ir_const_i(k, 3); /* lowering has used it */
    expect_fail(k, 13, "verify: micro_gemm has rows or cols (only a gemm has)");
    k = load(tile_src);
    item(k, 3)->u.gemm.cols = ir_const_f(k, 3.0);
    expect_fail(k, 16, "verify: gemm cols must be an integer, not f32");
    k = load(loop_src);
    item(k, 1)->u.gemm.cols = ir_const_i(k, 3);
    expect_fail(k, 13, "verify: micro_gemm has rows or cols (only a gemm has)");
    const char *int_src =
        "kernel g level tile\n"
        "buf a: local i8[4, 4]\n"
        "buf c: local f32[4, 4]\n"
        "grid (b) < [1]\n"
        "{\n"
        "  gemm a, a -> c\n"
        "}\n";
    expect_fail(load(int_src), 6, "verify: gemm inputs must be float, not i8 and i8");
}

/* Block scales: e8m0 or f32, the operand's rank, extents that divide the
 * operand's, leading unit dims only on a scaled operand or a micro_gemm's
 * B; a micro_gemm's
 * with trans_b, in 32-element K blocks, one operand's a multiple of the other's. */
TEST(gemm_block_scales)
{
    Kernel *k = load(scaled_src);
    Diag d = {0};
    CHECKF(k && ir_verify(k, &d), "%s", d.msg);
    ir_kernel_free(k);
    k = load(scaled_loop_src);
    CHECKF(k && ir_verify(k, &d), "%s", d.msg);
    ir_kernel_free(k);
    k = load(scaled_src);
    item(k, 0)->u.gemm.b_scale.buf = ir_buf_find(k, "q"); /* as sw, but i32 */
    expect_fail(k, 10, "verify: gemm: b_scale q is i32, not e8m0 or f32");
    k = load(scaled_src);
    item(k, 0)->u.gemm.b_scale.ext[2] = 3; /* 64 / 3 */
    expect_fail(k, 10, "verify: gemm: b_scale sw has extent 3 in dimension 2, which does not divide w's 64 into blocks");
    k = load(scaled_src);
    item(k, 0)->u.gemm.b_scale.buf = ir_buf_find(k, "r"); /* rank 2 for a rank-3 b */
    expect_fail(k, 10, "verify: gemm: b_scale r has rank 2 but b w has rank 3 (a scale has its operand's rank, >= 2)");
    k = load(scaled_src);
    item(k, 0)->u.gemm.b.ext[0] = 2; /* a leading dim of 2 */
    item(k, 0)->u.gemm.b_scale.ext[0] = 2;
    expect_fail(k, 10, "verify: gemm: scaled b w has extent 2 in dimension 0; only its last two may exceed 1");
    k = load(scaled_src);
    item(k, 0)->u.gemm.b_scale.buf = NULL; /* rank 3 without a scale */
    expect_fail(k, 10, "verify: gemm operand b w must be 2-D, not rank 3");
    k = load(group_loop_src); /* a micro_gemm's unscaled B: leading unit dims too */
    CHECKF(k && ir_verify(k, &d), "%s", d.msg);
    ir_kernel_free(k);
    k = load(group_loop_src);
    item(k, 0)->u.gemm.b.ext[0] = 2;
    expect_fail(k, 7, "verify: micro_gemm: b w has extent 2 in dimension 0; only its last two may exceed 1");
    k = load(group_loop_src); /* ... but not A */
    item(k, 0)->u.gemm.a = item(k, 0)->u.gemm.b;
    expect_fail(k, 7, "verify: micro_gemm operand a w must be 2-D, not rank 3");
    k = load(scaled_loop_src);
    item(k, 0)->u.gemm.b_scale.ext[1] = 4; /* 16-element K blocks */
    item(k, 0)->u.gemm.b_scale.buf->shape[1] = ir_const_i(k, 4);
    expect_fail(k, 9, "verify: micro_gemm: b_scale sw's blocks are 16 elements along K, not a multiple of 32");
    k = load(scaled_loop_src); /* both scaled, in the same 32-element K blocks */
    item(k, 0)->u.gemm.a_scale = ir_region_whole(k, ir_buf_find(k, "sx"));
    CHECKF(k && ir_verify(k, &d), "%s", d.msg);
    ir_kernel_free(k);
    k = load(scaled_loop_src);
    item(k, 0)->u.gemm.a_scale = ir_region_whole(k, ir_buf_find(k, "sx"));
    item(k, 0)->u.gemm.a_scale.ext[1] = 1; /* 64-element K blocks over b's 32: nested */
    CHECKF(k && ir_verify(k, &d), "%s", d.msg);
    ir_kernel_free(k);
    k = load("kernel s level loop\n"
             "arg x: f8e4m3[4, 192] in\n"
             "arg w: f8e4m3[16, 192] in\n"
             "arg sw: e8m0[16, 2] in\n"
             "arg sx: e8m0[4, 3] in\n"
             "buf acc: fragment f32[4, 16]\n"
             "grid (b) < [1]\n"
             "{\n"
             "  micro_gemm x[0 +: 4, 0 +: 192], w[0 +: 16, 0 +: 192] -> acc trans_b clear a_scale sx[0 +: 4, 0 +: 3] "
             "b_scale sw[0 +: 16, 0 +: 2]\n" /* 9: blocks of 64 and 96 */
             "}\n");
    expect_fail(k, 9, "verify: micro_gemm: a_scale's K blocks (64) and b_scale's (96): neither is a multiple of the other");
    k = load(scaled_loop_src);
    item(k, 0)->u.gemm.trans_b = false;
    expect_fail(k, 9, "verify: micro_gemm: block scales need trans_b, without b_pairs, and a_scale no trans_a");
    /* a broadcast tile's A, [K, M] (trans_a), comes unscaled: lowering
     * stages it times its scale */
    k = load("kernel s level loop\n"
             "arg x: f32[64, 4] in\n"
             "arg w: f4e2m1[16, 64] in\n"
             "arg sw: e8m0[16, 2] in\n"
             "arg sx: e8m0[2, 4] in\n"
             "buf acc: fragment f32[4, 16]\n"
             "grid (b) < [1]\n"
             "{\n"
             "  micro_gemm x[0 +: 64, 0 +: 4], w[0 +: 16, 0 +: 64] -> acc trans_a trans_b clear b_scale sw[0 +: 16, 0 +: 2]\n"
             "}\n");
    CHECKF(k && ir_verify(k, &d), "%s", d.msg);
    item(k, 0)->u.gemm.a_scale = ir_region_whole(k, ir_buf_find(k, "sx"));
    expect_fail(k, 9, "verify: micro_gemm: block scales need trans_b, without b_pairs, and a_scale no trans_a");
    /* ... in chunks of IR_BCAST_CHUNK along K: 96 is none */
    k = load("kernel s level loop\n"
             "arg x: f32[96, 4] in\n"
             "arg w: f4e2m1[16, 96] in\n"
             "arg sw: e8m0[16, 3] in\n"
             "buf acc: fragment f32[4, 16]\n"
             "grid (b) < [1]\n"
             "{\n"
             "  micro_gemm x[0 +: 96, 0 +: 4], w[0 +: 16, 0 +: 96] -> acc trans_a trans_b clear b_scale sw[0 +: 16, 0 +: 3]\n"
             "}\n");
    expect_fail(k, 8, "verify: micro_gemm: a scaled broadcast tile (trans_a) needs K a multiple of 64 (K = 96), "
                      "b_scale's K blocks 32 or a multiple of 64 (32), at most 32 rows (4) and 16 columns (16)");
    /* ... of an f32 A (lowering stages it so) */
    k = load("kernel s level loop\n"
             "arg x: bf16[64, 4] in\n"
             "arg w: f4e2m1[16, 64] in\n"
             "arg sw: e8m0[16, 2] in\n"
             "buf acc: fragment f32[4, 16]\n"
             "grid (b) < [1]\n"
             "{\n"
             "  micro_gemm x[0 +: 64, 0 +: 4], w[0 +: 16, 0 +: 64] -> acc trans_a trans_b clear b_scale sw[0 +: 16, 0 +: 2]\n"
             "}\n");
    expect_fail(k, 8, "verify: micro_gemm: a scaled broadcast tile (trans_a) needs an f32 a, not bf16");
}

/* a_lifted: a micro_gemm of a staged f32 A (lifted e4m3) by a transposed
 * e4m3 B, and nothing else. */
TEST(a_lifted_needs_f32_by_transposed_e4m3)
{
    static const char *src = "kernel l level loop\n"
                             "arg w: f8e4m3[16, 64] in\n"
                             "arg x: bf16[4, 64] in\n"
                             "buf xs: shared f32[4, 64]\n"
                             "buf acc: fragment f32[4, 16]\n"
                             "grid (b) < [1]\n"
                             "{\n"
                             "  micro_gemm xs, w[0 +: 16, 0 +: 64] -> acc trans_b clear a_lifted\n" /* 8 */
                             "}\n";
    const char *want = "verify: micro_gemm: a_lifted needs a micro_gemm of an f32 a by a transposed f8e4m3 b (no wgmma)";
    Diag d = {0};
    Kernel *k = load(src);
    CHECKF(k && ir_verify(k, &d), "%s", d.msg);
    ir_kernel_free(k);
    k = load(src);
    item(k, 0)->u.gemm.trans_b = false;
    item(k, 0)->u.gemm.b.ext[0] = 64; /* [K, N] = [64, 16]: the shapes still agree */
    item(k, 0)->u.gemm.b.ext[1] = 16;
    expect_fail(k, 8, want);
    k = load(src);
    item(k, 0)->u.gemm.a = ir_region_whole(k, ir_buf_find(k, "x")); /* bf16 A */
    expect_fail(k, 8, want);
    k = load("kernel l level tile\n" /* a gemm, not a micro_gemm */
             "arg w: f8e4m3[16, 64] in\n"
             "arg x: f32[4, 64] in\n"
             "buf acc: fragment f32[4, 16]\n"
             "grid (b) < [1]\n"
             "{\n"
             "  gemm x[0 +: 4, 0 +: 64], w[0 +: 16, 0 +: 64] -> acc trans_b clear a_lifted\n" /* 7 */
             "}\n");
    expect_fail(k, 7, "verify: gemm: a_lifted needs a micro_gemm of an f32 a by a transposed f8e4m3 b (no wgmma)");
}

/* a_prescaled: a micro_gemm of a staged bf16 A with an e8m0 a_scale by a
 * transposed B; parsed and printed back as it was. */
TEST(a_prescaled_needs_bf16_with_e8m0_scale)
{
    static const char *src = "kernel p level loop\n"
                             "arg w: f8e4m3[16, 256] in\n"
                             "arg sx: e8m0[4, 2] in\n"
                             "arg fx: f32[4, 2] in\n"
                             "buf xs: shared bf16[4, 256]\n"
                             "buf xf: shared f32[4, 256]\n"
                             "buf acc: fragment f32[4, 16]\n"
                             "grid (b) < [1]\n"
                             "{\n"
                             "  micro_gemm xs, w[0 +: 16, 0 +: 256] -> acc trans_b clear a_scale sx[0 +: 4, 0 +: 2] a_prescaled\n" /* 10 */
                             "}\n";
    const char *want = "verify: micro_gemm: a_prescaled needs a micro_gemm of a bf16 a with an e8m0 a_scale by a transposed b";
    Diag d = {0};
    Kernel *k = load(src);
    CHECKF(k && ir_verify(k, &d), "%s", d.msg);
    char *text = k ? ir_print_string(k) : NULL;
    CHECKF(text && strstr(text, "a_scale sx[0 +: 4, 0 +: 2] a_prescaled\n"), "printed: %s", text ? text : "(none)");
    free(text);
    ir_kernel_free(k);
    k = load(src);
    item(k, 0)->u.gemm.a = ir_region_whole(k, ir_buf_find(k, "xf")); /* f32 A */
    expect_fail(k, 10, want);
    k = load(src);
    item(k, 0)->u.gemm.a_scale = ir_region_whole(k, ir_buf_find(k, "fx")); /* an f32 scale */
    expect_fail(k, 10, want);
    k = load(src);
    item(k, 0)->u.gemm.a_scale = (Region){0}; /* no scale */
    expect_fail(k, 10, want);
}

/* a_decode_order: a micro_gemm by a transposed B whose dtypes have a decode
 * order (ir_decode_order): an f32 A (at most IR_E2M1_TABLE_ROWS rows, K a
 * multiple of 64) or a bf16 A (IR_E2M1_PAIR_ROWS, K a multiple of 128) by
 * block-scaled e2m1; a bf16 A by e4m3 (K, and its scale blocks along K,
 * multiples of 64).  Each refusal names what is wrong. */
TEST(a_decode_order_needs_a_tile_that_decodes_in_order)
{
    static const char *src = "kernel e level loop\n"
                             "arg w: f4e2m1[16, 128] in\n"
                             "arg s: e8m0[16, 4] in\n"
                             "arg x: bf16[4, 128] in\n"
                             "arg q: f8e4m3[16, 128] in\n"
                             "arg qs: e8m0[1, 4] in\n"
                             "buf xs: shared f32[4, 128]\n"
                             "buf acc: fragment f32[4, 16]\n"
                             "grid (b) < [1]\n"
                             "{\n"
                             "  micro_gemm xs[0 +: 2, 0 +: 128], w[0 +: 16, 0 +: 128] -> acc[0 +: 2, 0 +: 16] trans_b clear "
                             "b_scale s[0 +: 16, 0 +: 4] a_decode_order\n" /* 11 */
                             "}\n";
    Diag d = {0};
    Kernel *k = load(src);
    CHECKF(k && ir_verify(k, &d), "%s", d.msg);
    ir_kernel_free(k);
    k = load(src);
    item(k, 0)->u.gemm.a.ext[0] = item(k, 0)->u.gemm.c.ext[0] = 3; /* three rows */
    expect_fail(k, 11, "verify: micro_gemm: a_decode_order takes at most 2 rows of a f32 a by f4e2m1, not 3");
    k = load(src);
    item(k, 0)->u.gemm.a.ext[1] = item(k, 0)->u.gemm.b.ext[1] = 96; /* K 96 */
    item(k, 0)->u.gemm.b_scale.ext[1] = 3;
    expect_fail(k, 11, "verify: micro_gemm: a_decode_order needs K a multiple of 64, not 96");
    k = load(src);
    item(k, 0)->u.gemm.b_scale = (Region){0}; /* unscaled */
    expect_fail(k, 11, "verify: micro_gemm: a_decode_order needs a block-scaled f4e2m1 b");
    k = load(src);
    item(k, 0)->u.gemm.a = ir_region_whole(k, ir_buf_find(k, "x"));
    item(k, 0)->u.gemm.a.ext[0] = 2;
    item(k, 0)->u.gemm.b = ir_region_whole(k, ir_buf_find(k, "q"));
    item(k, 0)->u.gemm.b_scale = (Region){0};
    item(k, 0)->u.gemm.trans_b = false; /* bf16 by e4m3, not transposed */
    expect_fail(k, 11, "verify: micro_gemm: a_decode_order needs a micro_gemm by a transposed b (no wgmma)");
    k = load(src);
    item(k, 0)->u.gemm.a = ir_region_whole(k, ir_buf_find(k, "x")); /* bf16 A: its blocks of 128 */
    item(k, 0)->u.gemm.a.ext[0] = 2;
    CHECKF(ir_verify(k, &d), "%s", d.msg);
    ir_kernel_free(k);
    k = load(src);
    item(k, 0)->u.gemm.a = ir_region_whole(k, ir_buf_find(k, "x")); /* ... of 4 rows (up to 8) */
    item(k, 0)->u.gemm.c.ext[0] = 4;
    CHECKF(ir_verify(k, &d), "%s", d.msg);
    ir_kernel_free(k);
    k = load(src);
    item(k, 0)->u.gemm.a = ir_region_whole(k, ir_buf_find(k, "x"));
    item(k, 0)->u.gemm.a.ext[0] = 2;
    item(k, 0)->u.gemm.a.ext[1] = item(k, 0)->u.gemm.b.ext[1] = 64; /* bf16 A, K 64 */
    item(k, 0)->u.gemm.b_scale.ext[1] = 2;
    expect_fail(k, 11, "verify: micro_gemm: a_decode_order needs K a multiple of 128, not 64");
    k = load(src);
    item(k, 0)->u.gemm.a = ir_region_whole(k, ir_buf_find(k, "w")); /* an e2m1 A */
    item(k, 0)->u.gemm.a.ext[0] = 2;
    expect_fail(k, 11, "verify: micro_gemm: a_decode_order has no order for a f4e2m1 a by a f4e2m1 b (an f32 or "
                       "bf16 a by f4e2m1, a bf16 a by f8e4m3)");
    /* bf16 A by e4m3 B: any rows, scaled or not, scale blocks along K of 64 and more */
    k = load(src);
    item(k, 0)->u.gemm.a = ir_region_whole(k, ir_buf_find(k, "x"));
    item(k, 0)->u.gemm.c.ext[0] = 4;
    item(k, 0)->u.gemm.b = ir_region_whole(k, ir_buf_find(k, "q"));
    item(k, 0)->u.gemm.b_scale = (Region){0};
    CHECKF(ir_verify(k, &d), "%s", d.msg);
    ir_kernel_free(k);
    k = load(src);
    item(k, 0)->u.gemm.a = ir_region_whole(k, ir_buf_find(k, "x"));
    item(k, 0)->u.gemm.c.ext[0] = 4;
    item(k, 0)->u.gemm.b = ir_region_whole(k, ir_buf_find(k, "q"));
    item(k, 0)->u.gemm.b_scale = ir_region_whole(k, ir_buf_find(k, "qs")); /* blocks of 16 x 32 */
    expect_fail(k, 11, "verify: micro_gemm: a_decode_order needs b's scale blocks along K a multiple of 64 elements");
    k = load(src);
    item(k, 0)->u.gemm.a = ir_region_whole(k, ir_buf_find(k, "x"));
    item(k, 0)->u.gemm.c.ext[0] = 4;
    item(k, 0)->u.gemm.b = ir_region_whole(k, ir_buf_find(k, "q"));
    item(k, 0)->u.gemm.b_scale = ir_region_whole(k, ir_buf_find(k, "qs"));
    item(k, 0)->u.gemm.b_scale.ext[1] = 2; /* 16 x 64 */
    CHECKF(ir_verify(k, &d), "%s", d.msg);
    ir_kernel_free(k);
}

/* Every decode order permutes each of its blocks: ir_order_position sends
 * a block's columns onto its positions one to one, ir_order_column undoes
 * it, and the e4m3 words order puts a block's even columns first. */
TEST(decode_orders_permute_their_blocks)
{
    const DType pairs[3][2] = {{DT_F32, DT_F4E2M1}, {DT_BF16, DT_F4E2M1}, {DT_BF16, DT_F8E4M3}};
    for (int i = 0; i < 3; i++) {
        IrOrder o = ir_decode_order(pairs[i][0], pairs[i][1]);
        CHECKF(o.block > 0 && o.block % o.parts == 0, "order %d", i);
        bool seen[128] = {0};
        for (int64_t k = o.block; k < 2 * o.block; k++) { /* the second block */
            int64_t p = ir_order_position(o, k);
            CHECKF(p >= o.block && p < 2 * o.block && !seen[p - o.block], "order %d: column %lld", i, (long long)k);
            if (p >= o.block && p < 2 * o.block)
                seen[p - o.block] = true;
            CHECKF(ir_order_column(o, p) == k, "order %d: column %lld back", i, (long long)k);
        }
    }
    IrOrder w = ir_decode_order(DT_BF16, DT_F8E4M3);
    CHECK(ir_order_position(w, 64 + 6) == 64 + 3 && ir_order_position(w, 64 + 7) == 64 + 32 + 3);
    CHECK(ir_decode_order(DT_F32, DT_F8E4M3).block == 0 && ir_decode_order(DT_BF16, DT_BF16).block == 0);
}

/* once: an integer key, in a CPU's Loop IR (no threads) */
TEST(once_is_cpu_loop_ir_with_an_integer_key)
{
    static const char *src = "kernel o level loop\n"
                             "arg x: f32[4, 8] in\n"
                             "buf t: shared f32[8]\n"
                             "grid (b, c) < [4, 2]\n"
                             "{\n"
                             "  once b {\n" /* 6 */
                             "    for i: parallel < 8 {\n"
                             "      t[i] = x[b, i]\n"
                             "    }\n"
                             "  }\n"
                             "}\n";
    Diag d = {0};
    Kernel *k = load(src);
    CHECKF(k && ir_verify(k, &d), "%s", d.msg);
    ir_kernel_free(k);
    k = load(src);
    item(k, 0)->u.once.key = ir_const_f(k, 1.0);
    expect_fail(k, 6, "verify: a once key must be an integer, not f32");
    k = load(src);
    k->level = LEVEL_TILE;
    expect_fail(k, 6, "verify: once belongs to loop IR without threads (a CPU's blocks)");
}

TEST(reduce_ranks_axes_and_types)
{
    Kernel *k = load(tile_src);
    item(k, 4)->u.reduce.axis = 2;
    expect_fail(k, 17, "verify: reduce axis 2 is out of range for rank-2 acc");
    k = load(tile_src);
    item(k, 4)->u.reduce.axis = 0; /* gives [32], r is [16] */
    expect_fail(k, 17, "verify: reduce of acc over axis 0 gives [32], but the window of r is [16]");
    k = load(tile_src);
    item(k, 4)->u.reduce.dst = ir_region_whole(k, ir_buf_find(k, "acc")); /* no keepdims */
    expect_fail(k, 17, "verify: reduce of acc over axis 1 gives [16], but the window of acc is [16, 32]");
    /* a rank-1 source reduces into a [1] window, nothing else */
    const char *src1 =
        "kernel r level tile\n"
        "buf v: local f32[8]\n"
        "buf one: local f32[1]\n"
        "buf two: local f32[2]\n"
        "buf n: local i32[1]\n"
        "grid (b) < [1]\n"
        "{\n"
        "  reduce sum axis 0 v -> one\n"
        "}\n";
    k = load(src1);
    Diag d = {0};
    CHECKF(k && ir_verify(k, &d), "%s", d.msg);
    ir_kernel_free(k);
    k = load(src1);
    item(k, 0)->u.reduce.dst = ir_region_whole(k, ir_buf_find(k, "two"));
    expect_fail(k, 8, "verify: reduce of v over axis 0 gives [1], but the window of two is [2]");
    k = load(src1);
    item(k, 0)->u.reduce.dst = ir_region_whole(k, ir_buf_find(k, "n"));
    expect_fail(k, 8, "verify: reduce destination n is i32, not a float");
}

int main(void)
{
    RUN(base_kernels_verify);
    RUN(tile_ops_are_errors_in_loop_ir);
    RUN(micro_gemm_and_vector_loops_are_errors_in_tile_ir);
    RUN(a_lifted_needs_f32_by_transposed_e4m3);
    RUN(a_prescaled_needs_bf16_with_e8m0_scale);
    RUN(a_decode_order_needs_a_tile_that_decodes_in_order);
    RUN(decode_orders_permute_their_blocks);
    RUN(wgmma_descriptors);
    RUN(load_index_count_type_and_dtype);
    RUN(operand_counts_and_operator_types);
    RUN(variables_are_used_only_where_defined_and_defined_once);
    RUN(buffers_and_scalars_belong_to_the_kernel);
    RUN(buffer_declarations);
    RUN(loops_ifs_and_the_grid);
    RUN(nothing_writes_an_input);
    RUN(regions);
    RUN(copy_shapes_agree_after_dropping_unit_extents);
    RUN(async_copies_and_waits);
    RUN(stream_stores_go_to_global_buffers);
    RUN(prefetch_is_loop_ir_with_integer_indices);
    RUN(gemm_shapes_and_types);
    RUN(gemm_block_scales);
    RUN(reduce_ranks_axes_and_types);
    RUN(once_is_cpu_loop_ir_with_an_integer_key);
    return test_summary();
}
