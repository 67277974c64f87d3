/* test_compose.c — T.compose (ir/compose.c): a producer and a consumer
 * kernel joined into one.
 *   - kernels_src/rmsnorm_fp8.lua (rmsnorm then act_quant) gives the bits
 *     of the pair and of the hand-fused rmsnorm_quant.lua, on the
 *     interpreter, the JIT and the sm_90a lowering in SIMT mode, at row
 *     counts with and without a tail block and at two row tiles;
 *   - tail rows: a consumer that reduces over the block's rows reads the
 *     rows past M as 0, as it does from the pair's tensor (addone+colsum);
 *   - the composed Tile IR against a golden (no argument for y: a shared
 *     bf16 buffer of the block's rows), which parses back;
 *   - shared parameters are one, a derived one follows and refuses --set;
 *   - every illegal composition is one line at the T.compose call.
 * Mutant checks (done by hand when the pass was written): with
 * reads_inside() accepting any window, illegal_compositions_are_one_line_errors
 * fails on bad_region.lua and bad_rows.lua; with landed() storing the value
 * unselected (no zero past y's edge), tail_rows_read_as_zero fails at M 1,
 * 13 and 20. */
#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "test.h"
#include "tests/harness/run.h"

#include <string.h>

static const char *const targets[] = {NULL, "x86-avx512", "x86-avx2", "sm_90a"};
enum { NTARGETS = sizeof targets / sizeof targets[0] };

/* rmsnorm then act_quant, rmsnorm_fp8 and rmsnorm_quant on one input. */
static void check_rmsnorm_fp8(const char *target, int M, const char *bm)
{
    const int D = 4096;
    size_t n = (size_t)M * D;
    uint16_t *x = calloc(n, 2), *y = calloc(n, 2);
    uint8_t *q[3], *s[3];
    for (int i = 0; i < 3; i++) {
        q[i] = calloc(n, 1);
        s[i] = calloc(n / 128, 1);
    }
    float *w = calloc(D, 4);
    unsigned seed = 41;
    for (size_t i = 0; i < n; i++) /* magnitudes over 8 decades, by row */
        x[i] = dt_f32_to_bf16(test_rand(&seed) * powf(10.0f, (float)(i / D % 9) - 4.0f));
    for (int j = 0; j < D; j++)
        w[j] = 0.5f + test_rand(&seed);
    FeSet one[] = {{"BM", bm}}, aq[] = {{"BM", bm}, {"K", "4096"}};
    int64_t params[1] = {M};
    void *norm[] = {x, w, y}, *quant[] = {y, q[0], s[0]}, *composed[] = {x, w, q[1], s[1]},
         *fused[] = {x, w, q[2], s[2]};
    const char *name = th_name(target);
    CHECK(th_run("kernels_src/rmsnorm.lua", one, 1, target, norm, params, 2));
    CHECK(th_run("kernels_src/act_quant.lua", aq, 2, target, quant, params, 2));
    CHECK(th_run("kernels_src/rmsnorm_fp8.lua", one, 1, target, composed, params, 2));
    CHECK(th_run("kernels_src/rmsnorm_quant.lua", one, 1, target, fused, params, 2));
    for (int i = 1; i < 3; i++)
        CHECKF(!memcmp(q[0], q[i], n) && !memcmp(s[0], s[i], n / 128),
               "%s, M %d, BM %s: %s differs from rmsnorm then act_quant", name, M, bm,
               i == 1 ? "rmsnorm_fp8" : "rmsnorm_quant");
    free(x); free(y); free(w);
    for (int i = 0; i < 3; i++) {
        free(q[i]);
        free(s[i]);
    }
}

TEST(rmsnorm_fp8_is_the_pair_bit_for_bit)
{
    static const int rows[] = {1, 5, 8, 13, 37};
    for (int t = 0; t < NTARGETS; t++) {
        if (!th_runs_here(targets[t]))
            continue;
        bool simt = targets[t] && !strncmp(targets[t], "sm_", 3);
        for (int r = 0; r < 5; r++) {
            if (simt && rows[r] > 13) /* the SIMT interpreter is slow; 1, 5, 8, 13 cover its tails */
                continue;
            check_rmsnorm_fp8(targets[t], rows[r], "8");
            if (!simt)
                check_rmsnorm_fp8(targets[t], rows[r], "16");
        }
    }
}

/* addone then colsum: colsum sums each block's rows, so the composed
 * kernel's y rows past M (addone wrote 1 there) must read 0 as the pair's
 * dropped writes do.  copyin then colsum: y written by a copy from a
 * global tensor (staged in the block, then zeroed past M). */
TEST(tail_rows_read_as_zero)
{
    static const int rows[] = {1, 8, 13, 20};
    static const char *const producers[][2] = {{"addone", "good"}, {"copyin", "copyin_colsum"}};
    const int D = 256;
    for (int t = 0; t < NTARGETS; t++) {
        if (!th_runs_here(targets[t]))
            continue;
        for (int r = 0; r < 8; r++) {
            const char *producer = producers[r / 4][0], *composed = producers[r / 4][1];
            char ppath[128], cpath[128];
            snprintf(ppath, sizeof ppath, "tests/specs/compose/%s.lua", producer);
            snprintf(cpath, sizeof cpath, "tests/specs/compose/%s.lua", composed);
            int M = rows[r % 4], nb = (M + 7) / 8;
            float *x = calloc((size_t)M * D, 4), *s1 = calloc((size_t)nb * D, 4), *s2 = calloc((size_t)nb * D, 4);
            uint16_t *y = calloc((size_t)M * D, 2);
            unsigned seed = 7;
            for (int i = 0; i < M * D; i++)
                x[i] = test_rand(&seed);
            FeSet cs[] = {{"K", "256"}};
            int64_t params[1] = {M};
            void *a1[] = {x, y}, *a2[] = {y, s1}, *a3[] = {x, s2};
            CHECK(th_run(ppath, NULL, 0, targets[t], a1, params, 2));
            CHECK(th_run("tests/specs/compose/colsum.lua", cs, 1, targets[t], a2, params, 2));
            CHECK(th_run(cpath, NULL, 0, targets[t], a3, params, 2));
            CHECKF(!memcmp(s1, s2, (size_t)nb * D * 4), "%s, M %d: %s's column sums differ from the pair's",
                   th_name(targets[t]), M, composed);
            free(x); free(y); free(s1); free(s2);
        }
    }
}

TEST(composed_tile_ir_golden)
{
    const char *golden = "tests/passes/compose_rmsnorm_fp8.tir";
    Diag d = {0};
    Kernel *k = fe_load("kernels_src/rmsnorm_fp8.lua", NULL, 0, &d);
    CHECK(k != NULL);
    if (!k) {
        diag_print(&d, stdout);
        return;
    }
    /* x, w in; q, s out: no argument for the intermediate */
    CHECK(k->nargs == 4);
    for (int i = 0; i < k->nargs; i++)
        CHECKF(strcmp(k->bufs[i]->name, "y"), "y is still an argument");
    const Buffer *y = ir_buf_find(k, "y");
    int64_t r, c;
    CHECK(y && y->scope == SCOPE_SHARED && y->dtype == DT_BF16 && ir_expr_is_const(y->shape[0], &r) && r == 8 &&
          ir_expr_is_const(y->shape[1], &c) && c == 4096);
    CHECK(k->ngrid == 1 && k->loc.line > 0 && !strcmp(k->loc.file, "kernels_src/rmsnorm_fp8.lua"));
    char *got = ir_print_string(k);
    if (getenv("TILEC_BLESS")) {
        FILE *f = fopen(golden, "w");
        fputs(got, f);
        fclose(f);
    }
    char *want = th_read_file(golden);
    CHECKF(want && !strcmp(got, want), "the composed IR differs from %s; got:\n%s", golden, got);
    Kernel *back = want ? ir_parse(want, golden, &d) : NULL;
    char *again = back ? ir_print_string(back) : NULL;
    CHECKF(again && !strcmp(again, want), "%s does not parse and print back identically", golden);
    /* and the composed kernel goes down the whole pipeline for both kinds of target */
    CHECKF(pass_pipeline(k, ir_target("x86-avx2"), NULL, &d), "%s", d.msg);
    Kernel *g = fe_load("kernels_src/rmsnorm_fp8.lua", NULL, 0, &d);
    CHECKF(g && pass_pipeline(g, ir_target("sm_90a"), NULL, &d), "%s", d.msg);
    ir_kernel_free(g);
    free(again);
    ir_kernel_free(back);
    free(want);
    free(got);
    ir_kernel_free(k);
}

static int64_t dim(const Kernel *k, const char *buf, int d)
{
    int64_t v = -1;
    const Buffer *b = ir_buf_find(k, buf);
    if (b)
        ir_expr_is_const(b->shape[d], &v);
    return v;
}

TEST(shared_parameters_are_one)
{
    FeSet sets[] = {{"BM", "16"}, {"D", "1024"}, {"M", "3"}};
    Diag d = {0};
    Kernel *k = fe_load("kernels_src/rmsnorm_fp8.lua", sets, 3, &d);
    CHECK(k != NULL);
    if (k) { /* BM reaches both parts, K follows D, M is fixed in both */
        CHECK(dim(k, "y", 0) == 16 && dim(k, "y", 1) == 1024 && dim(k, "q", 1) == 1024 && dim(k, "s", 1) == 8);
        CHECK(dim(k, "x", 0) == 3 && k->nparams == 0);
        int64_t g;
        CHECK(ir_expr_is_const(k->grid[0], &g) && g == 1);
    }
    ir_kernel_free(k);
    char msg[600];
    FeSet bad[] = {{"K", "256"}};
    CHECK(th_load_fails("kernels_src/rmsnorm_fp8.lua", bad, 1, msg, sizeof msg));
    CHECKF(!strcmp(msg, "kernels_src/rmsnorm_fp8.lua:10: --set K: parameter K is derived from the others "
                        "(T.compose params)\n"), "%s", msg);
}

TEST(illegal_compositions_are_one_line_errors)
{
    static const struct {
        const char *spec, *want;
    } cases[] = {
        {"bad_grid", "compose addone_colsum: addone's grid [(M + 8 - 1) / 8] is not a prefix of colsum's grid "
                     "[(M + 16 - 1) / 16, 2] (hint: the consumer's first grid dimensions must be the producer's: "
                     "the same tiles over the same extents)"},
        {"bad_region", "compose addone_colsum: colsum's block reads x dim 0 [bx*8 + 1, bx*8 + 9) but addone's block "
                       "writes y dim 0 [bx*8, bx*8 + 8) (hint: the consumer's block must read only what the "
                       "producer's block writes: match their tiles)"},
        {"bad_rows", "compose addone_colsum: colsum's block reads x dim 0 [bx*16, bx*16 + 16) but addone's block "
                     "writes y dim 0 [bx*8, bx*8 + 8) (hint: the consumer's block must read only what the "
                     "producer's block writes: match their tiles)"},
        {"bad_dtype", "compose addone_colsum: addone's y is bf16 but colsum's x is f32 (hint: the tensor they share "
                      "has one dtype (the consumer's dtype parameter, if it has one, can be set in params = {...}))"},
        {"bad_shape", "compose addone_colsum: addone's y is [M, 256] but colsum's x is [M, 128] (hint: unify the "
                      "parameters that size them in params = {...}, e.g. K = function(p) return p.D end)"},
        {"bad_via", "compose addone_colsum: via: addone has no output argument yy (hint: its outputs: y)"},
        {"bad_part", "compose addone_colsum: tests/specs/compose/addone.lua:12: addone: D = 200 is not a multiple "
                     "of 128"},
        {"bad_missing", "compose addone_colsum: no spec colsum2.lua next to this one"},
        {"bad_guard", "compose addone_colsum: addone writes y under a T.if_ (only unconditional writes can be "
                      "followed) (tests/specs/compose/addone.lua:25)"},
        {"bad_gaps", "compose addone_colsum: addone writes y in steps that leave gaps (or with several loops in one "
                     "dimension) (tests/specs/compose/addone.lua:27)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[128], msg[800], want[800];
        snprintf(path, sizeof path, "tests/specs/compose/%s.lua", cases[i].spec);
        snprintf(want, sizeof want, "%s:2: T.%s\n", path, cases[i].want);
        CHECKF(th_load_fails(path, NULL, 0, msg, sizeof msg), "%s loaded", path);
        CHECKF(!strcmp(msg, want), "%s\n    got:  %s    want: %s", path, msg, want);
    }
}

int main(void)
{
    RUN(rmsnorm_fp8_is_the_pair_bit_for_bit);
    RUN(tail_rows_read_as_zero);
    RUN(composed_tile_ir_golden);
    RUN(shared_parameters_are_one);
    RUN(illegal_compositions_are_one_line_errors);
    return test_summary();
}
