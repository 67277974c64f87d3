/* test_frontend_errors.c — --set validation and a missing spec file: one
 * line each, naming the file and line.  (The golden bad specs are run by
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
    expect_set_error("dtype", "f64", "examples/gemm.lua:7: --set dtype=f64: not one of its tune{} values {f32, bf16, f8e4m3}\n");
    expect_set_error("M", "-3", "examples/gemm.lua:7: --set M=-3: expected a positive integer\n");
    expect_set_error("BM", "7", "examples/gemm.lua:7: --set BM=7: not one of its tune{} values {192, 96, 48, 24, 128, 64, 16, 4, 1, 256, 512}\n");
    FeSet set = {"N", "64"};
    Diag d = {0};
    Kernel *k = fe_load("tests/specs/fixed_param.lua", &set, 1, &d);
    CHECK(k == NULL);
    char got[1024];
    diag_text(&d, got, sizeof got);
    CHECKF(!strcmp(got, "tests/specs/fixed_param.lua:2: --set N: parameter N is fixed (32) "
                        "(hint: make it T.tune{...}, T.size(n) or T.dyn to set it)\n"), "%s", got);
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
    RUN(missing_spec_file);
    return test_summary();
}
