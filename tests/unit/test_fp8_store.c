/* test_fp8_store.c — the compiled f32 → e4m3/e5m2 narrowing (codegen/llvm.c)
 * byte for byte against dt_f32_to_e4m3/e5m2, through the JIT on this CPU:
 * every value of both formats, every rounding midpoint and the floats one
 * ulp either side of each, every power of two, ±0, ±inf, quiet and
 * signalling NaNs of both signs, the saturation thresholds, and 2^24
 * pseudo-random bit patterns over the whole 32-bit space — once in the
 * vector body (W = 64) and once in scalar code (W = 7; tests/specs/fp8_store.lua). */
#include "ir/ir.h"
#include "test.h"
#include "tests/harness/run.h"

#include <float.h>
#include <string.h>

#define SPEC "tests/specs/fp8_store.lua"
#define BM 16 /* the spec's rows per block */

typedef struct Vals {
    float *v;
    int64_t n, cap;
} Vals;

static void push(Vals *s, float x)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 4096;
        s->v = realloc(s->v, (size_t)s->cap * sizeof *s->v);
    }
    s->v[s->n++] = x;
}

/* x, -x and the floats one ulp either side of each. */
static void push_around(Vals *s, float x)
{
    for (int sign = 0; sign < 2; sign++, x = -x) {
        push(s, x);
        push(s, nextafterf(x, INFINITY));
        push(s, nextafterf(x, -INFINITY));
    }
}

/* A format's finite values and the midpoints between neighbours, from
 * decoding its codes 0..0x7f in order (they increase). */
static void push_format(Vals *s, float (*decode)(uint8_t))
{
    float prev = -1;
    for (int b = 0; b < 0x80; b++) {
        float v = decode((uint8_t)b);
        if (isnan(v) || isinf(v))
            break;
        push_around(s, v);
        if (prev >= 0)
            push_around(s, (float)(((double)prev + v) / 2));
        prev = v;
    }
}

static Vals special_values(void)
{
    Vals s = {0};
    push_format(&s, dt_e4m3_to_f32);
    push_format(&s, dt_e5m2_to_f32);
    /* past the largest: the midpoint to the next step (the saturation
     * threshold, which rounds to the even largest), the step, and more */
    const float past[] = {464, 480, 496, 512, 61440, 65536, 98304, 131072, FLT_MAX};
    for (size_t i = 0; i < sizeof past / sizeof past[0]; i++)
        push_around(&s, past[i]);
    for (int e = -149; e <= 127; e++)
        push_around(&s, ldexpf(1, e));
    const uint32_t raw[] = {0x00000000, 0x80000000, 0x7f800000, 0xff800000, /* ±0, ±inf */
                            0x7fc00000, 0xffc00000, 0x7fffffff, 0xffffffff, /* quiet NaNs */
                            0x7fc00001, 0xffe12345, 0x7f800001, 0xff800001, /* payloads, signalling */
                            0x7fbfffff, 0xffa00000, 0x7f812345, 0x00000001, /* denormals */
                            0x807fffff, 0x00400000};
    for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++)
        push(&s, bits_f32(raw[i]));
    return s;
}

/* Run the spec at row width w over vals; false on a compile or launch
 * error.  q, r: the plain stores; qc, rc: of the value clamped first. */
static bool run_spec(int w, const Vals *vals, uint8_t *q, uint8_t *r, uint8_t *qc, uint8_t *rc)
{
    int64_t per = (int64_t)w * BM, rows = (vals->n + per - 1) / per * BM, n = rows * w;
    float *x = calloc((size_t)n, 4), *e = calloc((size_t)n, 4);
    memcpy(x, vals->v, (size_t)vals->n * 4);
    char ws[8];
    snprintf(ws, sizeof ws, "%d", w);
    FeSet sets[] = {{"W", ws}};
    void *args[6] = {x, q, r, e, qc, rc};
    int64_t params[1] = {rows};
    bool ok = th_run(SPEC, sets, 1, ir_host_target()->name, args, params, 2);
    free(x);
    free(e);
    return ok;
}

/* T.clamp(x, -m, m) as the interpreter defines it: NaN stays NaN. */
static float clamp(float x, float m) { return isnan(x) ? x : x < -m ? -m : x > m ? m : x; }

static void check_width(int w, const Vals *vals)
{
    int64_t cap = vals->n + (int64_t)w * BM;
    uint8_t *q = calloc((size_t)cap, 1), *r = calloc((size_t)cap, 1);
    uint8_t *qc = calloc((size_t)cap, 1), *rc = calloc((size_t)cap, 1);
    CHECK(run_spec(w, vals, q, r, qc, rc));
    int bad = 0;
    for (int64_t i = 0; i < vals->n; i++) {
        float x = vals->v[i];
        uint8_t q0 = dt_f32_to_e4m3(x), r0 = dt_f32_to_e5m2(x);
        uint8_t qc0 = dt_f32_to_e4m3(clamp(x, 448)), rc0 = dt_f32_to_e5m2(clamp(x, 57344));
        if ((q[i] != q0 || r[i] != r0 || qc[i] != qc0 || rc[i] != rc0) && bad++ < 8)
            printf("  W=%d: %08x (%.9g): e4m3 %02x want %02x, e5m2 %02x want %02x, clamped %02x/%02x want "
                   "%02x/%02x\n",
                   w, f32_bits(x), x, q[i], q0, r[i], r0, qc[i], rc[i], qc0, rc0);
    }
    CHECKF(bad == 0, "W=%d: %d of %lld values narrowed wrong", w, bad, (long long)vals->n);
    free(q);
    free(r);
    free(qc);
    free(rc);
}

TEST(values_midpoints_powers_and_specials)
{
    Vals s = special_values();
    CHECK(s.n > 3000);
    check_width(64, &s);
    check_width(7, &s);
    free(s.v);
}

TEST(random_bit_patterns)
{
    Vals s = {0};
    uint32_t u = 0x9e3779b9;
    for (int i = 0; i < 1 << 24; i++) { /* xorshift32: every sign, exponent and NaN */
        u ^= u << 13;
        u ^= u >> 17;
        u ^= u << 5;
        push(&s, bits_f32(u));
    }
    check_width(64, &s);
    check_width(7, &s);
    free(s.v);
}

int main(void)
{
    if (!th_runs_here(ir_host_target()->name))
        return 0;
    RUN(values_midpoints_powers_and_specials);
    RUN(random_bit_patterns);
    return test_summary();
}
