/* test_frontend_errors.c — --set validation, a spec's choose (its picks,
 * and each way it can go wrong) and a missing spec file: one line each,
 * naming the file and line.  (The golden bad specs are run by
 * test_frontend.c from tests/specs/fe/bad/.) */
#include "frontend/frontend.h"
#include "test.h"

#include <string.h>

static void diag_text(const Diag *d, char *out, size_t n)
{
    FILE *f = fmemopen(out, n, "w");
    diag_print(d, f);
    fclose(f);
}

static void expect_set_error(const char *name, const char *value, const char *want)
{
    FeSet set = {name, value};
    Diag d = {0};
    Kernel *k = fe_load("examples/gemm.lua", &set, 1, &d);
    CHECKF(k == NULL, "--set %s=%s accepted", name, value);
    ir_kernel_free(k);
    char got[1024];
    diag_text(&d, got, sizeof got);
    CHECKF(!strcmp(got, want), "--set %s=%s\n    got:  %s    want: %s", name, value, got, want);
}

TEST(set_rejects_unknown_fixed_and_out_of_set_values)
{
    expect_set_error("QQ", "1",
                     "examples/gemm.lua:7: --set QQ: kernel gemm has no parameter QQ "
                     "(hint: its parameters: BK, BM, BN, K, M, N, dtype, stages)\n");
    expect_set_error("dtype", "f64", "examples/gemm.lua:7: --set dtype=f64: not one of its variant{} values {f32, bf16, f8e4m3}\n");
    expect_set_error("M", "-3", "examples/gemm.lua:7: --set M=-3: expected a positive integer\n");
    expect_set_error("BM", "7", "examples/gemm.lua:7: --set BM=7: not one of its tune{} values {192, 96, 48, 24, 128, 64, 16, 4, 1, 256, 512}\n");
    FeSet set = {"N", "64"};
    Diag d = {0};
    Kernel *k = fe_load("tests/specs/fixed_param.lua", &set, 1, &d);
    CHECK(k == NULL);
    char got[1024];
    diag_text(&d, got, sizeof got);
    CHECKF(!strcmp(got, "tests/specs/fixed_param.lua:2: --set N: parameter N is fixed (32) "
                        "(hint: make it T.tune{...}, T.variant{...}, T.size(n) or T.dyn to set it)\n"), "%s", got);
    ir_kernel_free(k);
}

TEST(set_values_reach_the_kernel)
{
    FeSet sets[] = {{"M", "10"}, {"dtype", "bf16"}, {"BN", "32"}};
    Diag d = {0};
    Kernel *k = fe_load("examples/gemm.lua", sets, 3, &d);
    CHECK(k != NULL);
    if (!k)
        return;
    int64_t m;
    CHECK(ir_expr_is_const(k->bufs[0]->shape[0], &m) && m == 10);
    CHECK(k->bufs[0]->dtype == DT_BF16 && k->bufs[2]->dtype == DT_F32);
    CHECK(k->nargs == 3 && !strcmp(k->bufs[0]->name, "A") && !strcmp(k->bufs[2]->name, "C"));
    CHECK(ir_verify(k, &d));
    ir_kernel_free(k);
}

/* The value kernel k records for parameter name ("" when it has none). */
static const char *kparam(const Kernel *k, const char *name)
{
    const KParam *p = k ? ir_kparam_find(k, name) : NULL;
    return p ? p->value : "";
}

/* fp8_gemm's choose: decode tiles for a known M on a CPU target (K steps
 * whose A rows per tile fit half of x86-avx2's 32 KiB L1), a --set value
 * kept; 128-row blocks for a CPU's prefill beyond 64 rows, 256 beyond 128;
 * 16-row tiles of 32 weight rows on a GPU up to 16 rows; the first
 * candidates without a target, for a dyn M and a GPU's prefill. */
TEST(choose_picks_the_unset_tile_sizes)
{
    const char *spec = "kernels_src/fp8_gemm.lua";
    const TargetInfo *cpu = ir_target("x86-avx2"), *gpu = ir_target("sm_90a");
    struct {
        FeSet sets[3];
        int nsets;
        const TargetInfo *t;
        const char *bm, *bn, *bk;
    } cases[] = {
        {{{"M", "1"}, {"K", "4096"}}, 2, cpu, "1", "4", "4096"},
        {{{"M", "1"}, {"K", "2048"}}, 2, cpu, "1", "4", "2048"},
        {{{"M", "4"}, {"K", "4096"}}, 2, cpu, "4", "32", "1024"},
        {{{"M", "16"}, {"K", "4096"}}, 2, cpu, "16", "32", "512"},
        {{{"M", "16"}, {"BN", "64"}}, 2, cpu, "16", "64", "512"}, /* a --set value stays */
        {{{"M", "16"}, {"K", "4224"}}, 2, cpu, "16", "32", "128"}, /* no longer step divides K */
        {{{"M", "128"}}, 1, cpu, "128", "128", "128"},              /* prefill: 128-row blocks */
        {{{"M", "129"}}, 1, cpu, "256", "128", "128"},              /* ... 256 beyond 128 rows */
        {{{"M", "64"}}, 1, cpu, "64", "128", "128"},                /* the first candidates */
        {{{"K", "4096"}}, 1, cpu, "64", "128", "128"},              /* a dyn M */
        {{{"BM", "16"}, {"K", "2048"}}, 2, cpu, "16", "16", "2048"}, /* a dyn M in 16-row blocks */
        {{{"BM", "64"}, {"K", "2048"}}, 2, cpu, "64", "128", "128"}, /* ... of 64 */
        {{{"M", "1"}, {"K", "4096"}}, 2, gpu, "16", "32", "128"},
        {{{"M", "512"}, {"K", "4096"}}, 2, gpu, "64", "128", "128"},
        {{{"M", "1"}, {"K", "4096"}}, 2, NULL, "64", "128", "128"}, /* fe_load: no target */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Diag d = {0};
        Kernel *k = fe_load_for(spec, cases[i].sets, cases[i].nsets, cases[i].t, &d);
        CHECKF(k, "case %zu: %s", i, d.msg);
        CHECKF(!strcmp(kparam(k, "BM"), cases[i].bm) && !strcmp(kparam(k, "BN"), cases[i].bn) &&
                   !strcmp(kparam(k, "BK"), cases[i].bk),
               "case %zu: BM %s BN %s BK %s, want %s %s %s", i, kparam(k, "BM"), kparam(k, "BN"), kparam(k, "BK"),
               cases[i].bm, cases[i].bn, cases[i].bk);
        ir_kernel_free(k);
    }
    FeSet ok = {"how", "ok"};
    Diag d = {0};
    Kernel *k = fe_load_for("tests/specs/choose_bad.lua", &ok, 1, cpu, &d);
    CHECKF(k && !strcmp(kparam(k, "BN"), "32"), "%s", d.msg); /* it sees the target's figures */
    ir_kernel_free(k);
}

/* examples/gemm.lua's choose on a CPU: blocks of 4 weight rows at one row,
 * 32 at a few; 512-row blocks where such a band of A fits two L2s
 * (x86-avx2 plans for 512 KiB), else 256. */
TEST(gemm_choose_blocks)
{
    const TargetInfo *cpu = ir_target("x86-avx2");
    struct {
        FeSet sets[3];
        const char *bm, *bn;
    } cases[] = {
        {{{"M", "1"}, {"K", "4096"}, {"dtype", "bf16"}}, "1", "4"},
        {{{"M", "4"}, {"K", "4096"}, {"dtype", "bf16"}}, "4", "32"},
        {{{"M", "1024"}, {"K", "1024"}, {"dtype", "bf16"}}, "512", "64"},
        {{{"M", "1024"}, {"K", "2048"}, {"dtype", "bf16"}}, "256", "64"},
        {{{"M", "1024"}, {"K", "1024"}, {"dtype", "f32"}}, "256", "64"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Diag d = {0};
        Kernel *k = fe_load_for("examples/gemm.lua", cases[i].sets, 3, cpu, &d);
        CHECKF(k, "case %zu: %s", i, d.msg);
        CHECKF(!strcmp(kparam(k, "BM"), cases[i].bm) && !strcmp(kparam(k, "BN"), cases[i].bn),
               "case %zu: BM %s BN %s, want %s %s", i, kparam(k, "BM"), kparam(k, "BN"), cases[i].bm, cases[i].bn);
        ir_kernel_free(k);
    }
}

/* sparse_attn's choose: all heads per block from 4 known queries on a CPU,
 * the smallest head blocks below; the first candidate on a GPU and for a
 * dyn M. */
TEST(sparse_attn_choose_heads_per_block)
{
    const TargetInfo *cpu = ir_target("x86-avx2"), *gpu = ir_target("sm_90a");
    struct {
        const char *m;
        const TargetInfo *t;
        const char *bh;
    } cases[] = {{"16", cpu, "64"}, {"4", cpu, "64"}, {"1", cpu, "8"}, {"16", gpu, "16"}, {NULL, cpu, "16"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        FeSet sets[] = {{"H", "64"}, {"M", cases[i].m}};
        Diag d = {0};
        Kernel *k = fe_load_for("kernels_src/sparse_attn.lua", sets, cases[i].m ? 2 : 1, cases[i].t, &d);
        CHECKF(k && !strcmp(kparam(k, "BH"), cases[i].bh), "case %zu: BH %s, want %s %s", i, kparam(k, "BH"),
               cases[i].bh, d.msg);
        ir_kernel_free(k);
    }
}

static void expect_choose_error(const char *spec, const char *how, const char *want)
{
    FeSet set = {"how", how};
    Diag d = {0};
    Kernel *k = fe_load_for(spec, &set, how ? 1 : 0, ir_target("x86-avx2"), &d);
    CHECKF(k == NULL, "%s how=%s accepted", spec, how ? how : "-");
    ir_kernel_free(k);
    char got[1024];
    diag_text(&d, got, sizeof got);
    CHECKF(!strcmp(got, want), "how=%s\n    got:  %s    want: %s", how ? how : "-", got, want);
}

TEST(a_wrong_choose_is_one_line_at_the_spec)
{
    const char *bad = "tests/specs/choose_bad.lua";
    expect_choose_error(bad, "value",
                        "tests/specs/choose_bad.lua:3: kernel choose_bad: choose picked BN = 7, not one of its "
                        "tune{} values {16, 32}\n");
    expect_choose_error(bad, "name",
                        "tests/specs/choose_bad.lua:3: kernel choose_bad: choose picked N, which is not a tune{} "
                        "parameter\n");
    expect_choose_error(bad, "type",
                        "tests/specs/choose_bad.lua:3: kernel choose_bad: choose returned number, not a table of "
                        "tune{} values\n");
    expect_choose_error(bad, "lua",
                        "tests/specs/choose_bad.lua:9: attempt to perform arithmetic on a nil value (field "
                        "'missing')\n");
    expect_choose_error("tests/specs/choose_not_function.lua", NULL,
                        "tests/specs/choose_not_function.lua:2: kernel choose_not_function: choose must be a "
                        "function(p, target) returning tune{} values\n");
}

TEST(missing_spec_file)
{
    Diag d = {0};
    CHECK(fe_load("examples/none.lua", NULL, 0, &d) == NULL);
    char got[512];
    diag_text(&d, got, sizeof got);
    CHECKF(!strcmp(got, "cannot open examples/none.lua: No such file or directory\n"), "%s", got);
}

int main(void)
{
    RUN(set_rejects_unknown_fixed_and_out_of_set_values);
    RUN(set_values_reach_the_kernel);
    RUN(choose_picks_the_unset_tile_sizes);
    RUN(gemm_choose_blocks);
    RUN(sparse_attn_choose_heads_per_block);
    RUN(a_wrong_choose_is_one_line_at_the_spec);
    RUN(missing_spec_file);
    return test_summary();
}
