/* test_conversions.c — the dtype conversions of ir/dtype.c against the
 * formats' definitions (tests/ref): every encoding decodes right; rounding
 * from f32 is checked at every representable value, every midpoint between
 * neighbours and the floats on either side of it, and over a strided sweep
 * of all 2^32 f32 bit patterns. */
#include "ref/ref.h"
#include "test.h"
#include "ir/ir.h"

#include <float.h>
#include <string.h>

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static bool same(float a, float b) { return (isnan(a) && isnan(b)) || a == b; }

TEST(every_encoding_decodes)
{
    for (uint32_t b = 0; b < 65536; b++) {
        CHECKF(same(dt_bf16_to_f32((uint16_t)b), ref_decode_bf16((uint16_t)b)), "bf16 %04x", b);
        CHECKF(same(dt_f16_to_f32((uint16_t)b), ref_decode_f16((uint16_t)b)), "f16 %04x", b);
        if (test_cur_failed)
            return;
    }
    for (uint32_t b = 0; b < 256; b++) {
        CHECKF(same(dt_e4m3_to_f32((uint8_t)b), ref_decode_e4m3((uint8_t)b)), "e4m3 %02x", b);
        CHECKF(same(dt_e5m2_to_f32((uint8_t)b), ref_decode_e5m2((uint8_t)b)), "e5m2 %02x", b);
        CHECKF(same(dt_e8m0_to_f32((uint8_t)b), b == 255 ? NAN : ldexpf(1, (int)b - 127)), "e8m0 %02x", b);
    }
    static const float e2m1[16] = {0, .5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -.5f, -1, -1.5f, -2, -3, -4, -6};
    for (uint8_t n = 0; n < 16; n++)
        CHECKF(dt_e2m1_to_f32(n) == e2m1[n] && signbit(dt_e2m1_to_f32(n)) == signbit(e2m1[n]), "e2m1 %x", n);
    CHECK(dt_e4m3_to_f32(0x7e) == 448 && dt_e5m2_to_f32(0x7b) == 57344);
}

typedef struct Format {
    const char *name;
    float (*round)(float);      /* tilec: f32 → format → f32 */
    float (*ref)(float);        /* the definition */
} Format;

static float via_bf16(float x) { return dt_bf16_to_f32(dt_f32_to_bf16(x)); }
static float via_f16(float x) { return dt_f16_to_f32(dt_f32_to_f16(x)); }
static float via_e4m3(float x) { return dt_e4m3_to_f32(dt_f32_to_e4m3(x)); }
static float via_e5m2(float x) { return dt_e5m2_to_f32(dt_f32_to_e5m2(x)); }
static float via_e2m1(float x) { return dt_e2m1_to_f32(dt_f32_to_e2m1(x)); }

static const Format formats[] = {
    {"bf16", via_bf16, ref_round_bf16}, {"f16", via_f16, ref_round_f16},
    {"e4m3", via_e4m3, ref_round_e4m3}, {"e5m2", via_e5m2, ref_round_e5m2},
    {"e2m1", via_e2m1, ref_round_e2m1},
};

static int failures;

static void check_one(const Format *f, float x)
{
    float got = f->round(x), want = f->ref(x);
    bool ok = same(got, want) && (got != 0 || signbit(got) == signbit(want));
    if (!ok && failures++ < 8)
        printf("  %s(%a = %.9g): got %.9g, want %.9g\n", f->name, x, x, got, want);
    if (!ok)
        test_cur_failed = 1;
}

/* x and the floats one ulp either side of it. */
static void check_around(const Format *f, float x)
{
    check_one(f, x);
    check_one(f, nextafterf(x, INFINITY));
    check_one(f, nextafterf(x, -INFINITY));
}

TEST(rounding_at_values_midpoints_and_neighbours)
{
    failures = 0;
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
        const Format *f = &formats[i];
        /* The format's values, sorted, from decoding every encoding. */
        static float vals[65536];
        int n = 0;
        for (uint32_t b = 0; b < 65536; b++) {
            float v = i == 0 ? ref_decode_bf16((uint16_t)b) : i == 1 ? ref_decode_f16((uint16_t)b)
                    : i == 2 ? (b < 256 ? ref_decode_e4m3((uint8_t)b) : NAN)
                    : i == 3 ? (b < 256 ? ref_decode_e5m2((uint8_t)b) : NAN)
                             : (b < 16 ? dt_e2m1_to_f32((uint8_t)b) : NAN);
            if (!isnan(v) && !isinf(v) && v >= 0)
                vals[n++] = v;
        }
        qsort(vals, (size_t)n, sizeof vals[0], cmp_float);
        for (int j = 0; j < n; j++) {
            check_around(f, vals[j]);
            check_around(f, -vals[j]);
            if (j + 1 < n) {
                float mid = (float)(((double)vals[j] + vals[j + 1]) / 2);
                check_around(f, mid);
                check_around(f, -mid);
            }
        }
        check_around(f, vals[n - 1] * 1.5f);
        check_one(f, INFINITY);
        check_one(f, -INFINITY);
        check_one(f, FLT_MAX);
        check_one(f, FLT_MIN / 4);
        if (i != 4)
            CHECKF(isnan(f->round(NAN)), "%s(NaN) is not NaN", f->name);

    }
}

TEST(rounding_over_a_sweep_of_all_f32)
{
    failures = 0;
    /* 2^32 / 127 ≈ 34M patterns per format, every exponent and sign. */
    for (uint64_t u = 0; u < (1ull << 32); u += 127) {
        float x = bits_f32((uint32_t)u);
        for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
            if (isnan(x) && i == 4)
                continue; /* e2m1 has no NaN: saturates, checked below */
            check_one(&formats[i], x);
        }
        if (failures > 8)
            return;
    }
    CHECK(fabsf(via_e2m1(NAN)) == 6);
}

TEST(load_store_round_trips_every_dtype)
{
    unsigned char buf[64];
    const DType all[] = {DT_BOOL, DT_I8, DT_U8, DT_I32, DT_I64, DT_F16, DT_BF16, DT_F32,
                         DT_F8E4M3, DT_F8E5M2, DT_F4E2M1, DT_E8M0};
    const double vals[] = {0, 1, 2, 4, 0.5, 6};
    for (size_t t = 0; t < sizeof all / sizeof all[0]; t++) {
        memset(buf, 0, sizeof buf);
        for (int i = 0; i < 6; i++)
            dt_store(all[t], buf, i, vals[i]);
        for (int i = 0; i < 6; i++) {
            double want = all[t] == DT_BOOL ? vals[i] != 0
                        : dt_is_int(all[t]) ? trunc(vals[i])
                        : (all[t] == DT_E8M0 && vals[i] == 0) ? 0 /* e8m0 has no 0: 2^-127 */
                        : (all[t] == DT_E8M0 && vals[i] == 6) ? 8 /* scales round up */ : vals[i];
            if (all[t] == DT_E8M0 && vals[i] == 0)
                want = ldexp(1, -127);
            CHECKF(dt_load(all[t], buf, i) == want, "%s element %d: %g != %g", dt_name(all[t]), i,
                   dt_load(all[t], buf, i), want);
        }
    }
    /* fp4 packs two per byte, element 2j in the low nibble */
    memset(buf, 0, 4);
    dt_store(DT_F4E2M1, buf, 0, 1.0);  /* nibble 2 */
    dt_store(DT_F4E2M1, buf, 1, -6.0); /* nibble 15 */
    CHECK(buf[0] == 0xf2);
    /* integers clamp to their range and truncate toward zero */
    dt_store(DT_I8, buf, 0, 300.7);
    dt_store(DT_U8, buf, 1, -5);
    dt_store(DT_I32, buf, 1, -2.9);
    CHECK((int8_t)buf[0] == 127 && buf[1] == 0 && ((int32_t *)buf)[1] == -2);
}

int main(void)
{
    RUN(every_encoding_decodes);
    RUN(rounding_at_values_midpoints_and_neighbours);
    RUN(rounding_over_a_sweep_of_all_f32);
    RUN(load_store_round_trips_every_dtype);
    return test_summary();
}
