/* test_frontend_errors.c — every mistake in a spec is one line at the
 * user's file and line.  Golden files: tests/specs/bad/NAME.lua is loaded
 * and its diagnostic must equal tests/specs/bad/NAME.err exactly. */
#include "frontend/frontend.h"
#include "test.h"

#include <dirent.h>
#include <string.h>

static void diag_text(const Diag *d, char *out, size_t n)
{
    FILE *f = fmemopen(out, n, "w");
    diag_print(d, f);
    fclose(f);
}

static bool read_file(const char *path, char *out, size_t n)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t got = fread(out, 1, n - 1, f);
    out[got] = 0;
    fclose(f);
    return true;
}

TEST(bad_specs_give_their_golden_diagnostic)
{
    const char *dir = "tests/specs/bad";
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
        Diag d = {0};
        Kernel *k = fe_load(spec, NULL, 0, &d);
        CHECKF(k == NULL, "%s loaded without an error", spec);
        ir_kernel_free(k);
        diag_text(&d, got, sizeof got);
        CHECKF(read_file(errpath, want, sizeof want), "%s is missing", errpath);
        CHECKF(!strcmp(got, want), "%s\n    got:  %s    want: %s", spec, got, want);
        count++;
    }
    closedir(dp);
    CHECKF(count >= 15, "only %d bad specs found", count);
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
                     "(hint: its parameters: BK, BM, BN, K, M, N, dtype)\n");
    expect_set_error("dtype", "f64", "examples/gemm.lua:7: --set dtype=f64: not one of its tune{} values {f32, bf16}\n");
    expect_set_error("M", "-3", "examples/gemm.lua:7: --set M=-3: expected a positive integer\n");
    expect_set_error("BM", "7", "examples/gemm.lua:7: --set BM=7: not one of its tune{} values {192, 96, 48, 24}\n");
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
    RUN(bad_specs_give_their_golden_diagnostic);
    RUN(set_rejects_unknown_fixed_and_out_of_set_values);
    RUN(set_values_reach_the_kernel);
    RUN(missing_spec_file);
    return test_summary();
}
