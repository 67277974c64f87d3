/* test_ir_roundtrip.c — the printed form is an exact interface: every
 * example prints, parses back and prints identically, at Tile level and at
 * Loop level; malformed text is a one-line error at its line. */
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "test.h"

#include <string.h>

static const char *const specs[] = {
    "examples/gemm.lua", "examples/softmax.lua", "examples/rmsnorm.lua",
    "examples/silu_mul.lua", "examples/dyn_scale.lua",
};

static bool round_trips(const Kernel *k, const char *what)
{
    char *a = ir_print_string(k);
    Diag d = {0};
    Kernel *p = ir_parse(a, what, &d);
    if (!p) {
        printf("  %s: ", what);
        diag_print(&d, stdout);
        free(a);
        return false;
    }
    char *b = ir_print_string(p);
    bool same = !strcmp(a, b);
    if (!same)
        printf("  %s: printed forms differ:\n--- first\n%s--- second\n%s", what, a, b);
    bool verified = ir_verify(p, &d);
    if (!verified)
        diag_print(&d, stdout);
    free(a);
    free(b);
    ir_kernel_free(p);
    return same && verified;
}

TEST(examples_round_trip_at_tile_and_loop_level)
{
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        Diag d = {0};
        Kernel *k = fe_load(specs[i], NULL, 0, &d);
        CHECKF(k != NULL, "%s does not load", specs[i]);
        if (!k)
            continue;
        CHECKF(round_trips(k, specs[i]), "%s (tile)", specs[i]);
        CHECK(pass_pipeline(k, ir_target("x86-avx512"), NULL, &d));
        CHECKF(round_trips(k, specs[i]), "%s (loop)", specs[i]);
        ir_kernel_free(k);
    }
}

TEST(every_expression_form_round_trips)
{
    const char *src =
        "kernel exprs level tile\n"
        "param M dyn\n"
        "param BN tune 8 {8, 16}\n"
        "param S size 3\n"
        "param mode fixed fast\n"
        "scalar M: i64\n"
        "arg x: bf16[M, 8] in\n"
        "arg y: f32[M, 8] out strides [16, 2]\n"
        "arg z: i32[8] inout\n"
        "buf t: local f32[8]\n"
        "grid (b) < [(M + 7) / 8]\n"
        "{\n"
        "  for i: parallel < 8 {\n"
        "    if b * 8 + i < M and not (i == 3) {\n"
        "      y[b * 8 + i, i % 8] = select(x[b * 8 + i, 0] <= -1.5, exp(x[b * 8 + i, 1]), -inf) + "
        "sigmoid(2.5e-07) * silu(1.0) - softplus(-x[0, i]) / rsqrt(sqrt(abs(log(exp2(3.0)))))\n"
        "    }\n"
        "    else {\n"
        "      t[i] = cast<bf16>(min(max(1.0, 2.0), cast<f32>(z[i]))) - -(3.0 - 1.0)\n"
        "      z[i] = z[i] - (i - 1) * -2\n"
        "      z[i] = bitcast<i32>(1.5) >> 3 & 255 | z[i] << 2 ^ 7\n"
        "      t[i] = bitcast<f32>((z[i] | 1) << 23)\n"
        "    }\n"
        "  }\n"
        "}\n";
    Diag d = {0};
    Kernel *k = ir_parse(src, "exprs.tir", &d);
    if (!k)
        diag_print(&d, stdout);
    CHECK(k != NULL);
    if (k) {
        CHECK(round_trips(k, "exprs.tir"));
        char *text = ir_print_string(k);
        CHECKF(!strcmp(text, src), "printed form differs from the source:\n%s", text);
        free(text);
        ir_kernel_free(k);
    }
}

static void expect_parse_error(const char *src, const char *want)
{
    Diag d = {0};
    Kernel *k = ir_parse(src, "bad.tir", &d);
    CHECKF(k == NULL, "parsed: %s", src);
    ir_kernel_free(k);
    char line[700] = "";
    FILE *f = fmemopen(line, sizeof line, "w");
    diag_print(&d, f);
    fclose(f);
    CHECKF(!strcmp(line, want), "got  %swant %s", line, want);
}

TEST(parse_errors_name_the_line)
{
    const char *head = "kernel k level tile\narg y: f32[4] out\ngrid (b) < [1]\n";
    char src[512];
    snprintf(src, sizeof src, "%s{\n  q[0] = 1.0\n}\n", head);
    expect_parse_error(src, "bad.tir:5: unknown buffer 'q'\n");
    snprintf(src, sizeof src, "%s{\n  y[0, 1] = 1.0\n}\n", head);
    expect_parse_error(src, "bad.tir:5: expected ']' near ', 1] = 1.0'\n");
    snprintf(src, sizeof src, "%s{\n  for i: serial < 4 {\n    y[i] = cast<f64>(1.0)\n", head);
    expect_parse_error(src, "bad.tir:6: unknown dtype 'f64'\n");
    snprintf(src, sizeof src, "%s{\n  for i: serial < 4 {\n    y[i] = 1.0\n", head);
    expect_parse_error(src, "bad.tir:7: unexpected end of input: a '{' is not closed\n");
    snprintf(src, sizeof src, "%s{\n  for b: serial < 4 {\n  }\n}\n", head);
    expect_parse_error(src, "bad.tir:5: variable 'b' is defined twice\n");
    expect_parse_error("kernel\n", "bad.tir:2: expected a name near 'end of input'\n");
    expect_parse_error("hello", "bad.tir:1: expected 'kernel NAME level tile|loop' at the start\n");
}

TEST(verifier_rejects_tile_ops_in_loop_ir)
{
    const char *src =
        "kernel k level loop\n"
        "arg y: f32[4] out\n"
        "grid (b) < [1]\n"
        "{\n"
        "  fill y[0 +: 4] = 0.0\n"
        "}\n";
    Diag d = {0};
    Kernel *k = ir_parse(src, "lvl.tir", &d);
    CHECK(k && !ir_verify(k, &d));
    CHECKF(strstr(d.msg, "fill is not allowed in loop IR") != NULL, "%s", d.msg);
    CHECK(d.loc.line == 5);
    ir_kernel_free(k);
}

TEST(verifier_rejects_writes_to_inputs_and_bad_gemm_shapes)
{
    const char *src =
        "kernel k level tile\n"
        "arg x: f32[4, 4] in\n"
        "buf a: shared f32[4, 8]\n"
        "buf c: fragment f32[4, 4]\n"
        "grid (b) < [1]\n"
        "{\n"
        "  gemm a, a -> c\n"
        "}\n";
    Diag d = {0};
    Kernel *k = ir_parse(src, "g.tir", &d);
    CHECK(k && !ir_verify(k, &d));
    CHECKF(strstr(d.msg, "gemm shapes disagree") != NULL, "%s", d.msg);
    ir_kernel_free(k);
    const char *src2 =
        "kernel k level tile\n"
        "arg x: f32[4] in\n"
        "grid (b) < [1]\n"
        "{\n"
        "  x[0] = 1.0\n"
        "}\n";
    Diag d2 = {0};
    k = ir_parse(src2, "w.tir", &d2);
    CHECK(k && !ir_verify(k, &d2));
    CHECKF(strstr(d2.msg, "write to input argument x") != NULL, "%s", d2.msg);
    ir_kernel_free(k);
}

int main(void)
{
    RUN(examples_round_trip_at_tile_and_loop_level);
    RUN(every_expression_form_round_trips);
    RUN(parse_errors_name_the_line);
    RUN(verifier_rejects_tile_ops_in_loop_ir);
    RUN(verifier_rejects_writes_to_inputs_and_bad_gemm_shapes);
    return test_summary();
}
