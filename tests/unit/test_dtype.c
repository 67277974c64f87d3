/* test_dtype.c — exhaustive checks of ir/dtype.c's conversions against the
 * formats' definitions in tests/ref (which share no code with tilec).
 *
 *   decode:  every bf16/f16 encoding, every e4m3/e5m2/e8m0 byte, every e2m1
 *            nibble gives the value of the definition (NaN where it has one);
 *   encode:  f32 → bf16/f16/e4m3/e5m2/e2m1/e8m0 is checked on its bits (the
 *            encoding's value by the reference decoder, sign of zero
 *            included) at every representable value, every midpoint between
 *            neighbours, the floats one ulp either side of both, ±max and
 *            the overflow boundary, ±inf, NaN payloads, subnormals, every f32
 *            whose low 16 bits are 0/1/7fff/8000/8001/ffff, and a strided
 *            sweep of all 2^32 f32 bit patterns;
 *   storage: dt_load/dt_store round trips for every dtype, F4E2M1 nibble
 *            packing (element 2j low nibble), integer clamping/truncation. */
#include "ref/ref.h"
#include "test.h"
#include "ir/ir.h"

#include <float.h>
#include <stdint.h>
#include <string.h>

/* Same value, -0 and +0 told apart, any NaN equal to any NaN. */
static bool same(float a, float b)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b);
    return a == b && signbit(a) == signbit(b);
}

/* ------------------------------------------------------------- formats */

typedef struct Fmt {
    const char *name;
    DType dt;
    int bits;                       /* encoding width: 16, 8 or 4 */
    uint32_t (*enc)(float);         /* tilec encoder, widened */
    float (*dec)(uint32_t);         /* tilec decoder */
    float (*ref_dec)(uint32_t);     /* definition */
    float (*ref_round)(float);      /* definition */
    bool has_nan;                   /* NaN in → a NaN encoding out */
} Fmt;

static uint32_t enc_bf16(float f) { return dt_f32_to_bf16(f); }
static uint32_t enc_f16(float f) { return dt_f32_to_f16(f); }
static uint32_t enc_e4m3(float f) { return dt_f32_to_e4m3(f); }
static uint32_t enc_e5m2(float f) { return dt_f32_to_e5m2(f); }
static uint32_t enc_e2m1(float f) { return dt_f32_to_e2m1(f); }
static float dec_bf16(uint32_t b) { return dt_bf16_to_f32((uint16_t)b); }
static float dec_f16(uint32_t b) { return dt_f16_to_f32((uint16_t)b); }
static float dec_e4m3(uint32_t b) { return dt_e4m3_to_f32((uint8_t)b); }
static float dec_e5m2(uint32_t b) { return dt_e5m2_to_f32((uint8_t)b); }
static float dec_e2m1(uint32_t b) { return dt_e2m1_to_f32((uint8_t)b); }
static float rdec_bf16(uint32_t b) { return ref_decode_bf16((uint16_t)b); }
static float rdec_f16(uint32_t b) { return ref_decode_f16((uint16_t)b); }
static float rdec_e4m3(uint32_t b) { return ref_decode_e4m3((uint8_t)b); }
static float rdec_e5m2(uint32_t b) { return ref_decode_e5m2((uint8_t)b); }
static float rdec_e2m1(uint32_t b) { return ref_decode_e2m1((uint8_t)b); }

static const Fmt fmts[] = {
    {"bf16", DT_BF16, 16, enc_bf16, dec_bf16, rdec_bf16, ref_round_bf16, true},
    {"f16", DT_F16, 16, enc_f16, dec_f16, rdec_f16, ref_round_f16, true},
    {"e4m3", DT_F8E4M3, 8, enc_e4m3, dec_e4m3, rdec_e4m3, ref_round_e4m3, true},
    {"e5m2", DT_F8E5M2, 8, enc_e5m2, dec_e5m2, rdec_e5m2, ref_round_e5m2, true},
    {"e2m1", DT_F4E2M1, 4, enc_e2m1, dec_e2m1, rdec_e2m1, ref_round_e2m1, false},
};
#define NFMT ((int)(sizeof fmts / sizeof fmts[0]))

static int nfail; /* failures printed in the current test */

/* x through format f: the encoding's bits must lie in the format, decode
 * (by the definition) to ref_round(x) with the same sign, and dt_round_f32
 * must give that value too. */
static void check_one(const Fmt *f, float x)
{
    uint32_t got = f->enc(x);
    float want = f->ref_round(x);
    bool ok;
    if (got >> f->bits) {
        ok = false;
    } else if (isnan(x) && f->has_nan) {
        ok = isnan(f->ref_dec(got)) && isnan(dt_round_f32(f->dt, x));
    } else {
        ok = same(f->ref_dec(got), want) && same(dt_round_f32(f->dt, x), want);
    }
    if (!ok) {
        test_cur_failed = 1;
        if (nfail++ < 10)
            printf("  %s(%a = %.9g, bits %08x): got encoding %#x = %.9g (dt_round_f32 %.9g), want %.9g\n",
                   f->name, x, x, f32_bits(x), got, got >> f->bits ? NAN : f->ref_dec(got),
                   dt_round_f32(f->dt, x), want);
    }
}

static void check_pm_around(const Fmt *f, float x)
{
    float xs[3] = {x, nextafterf(x, INFINITY), nextafterf(x, -INFINITY)};
    for (int i = 0; i < 3; i++) {
        check_one(f, xs[i]);
        check_one(f, -xs[i]);
    }
}

/* e8m0 has its own encoder (round up to a power of two). */
static void check_e8m0(float x)
{
    if (isinf(x) && x > 0)
        return; /* a known bug, shown by its own test below */
    uint8_t got = dt_f32_to_e8m0(x), want = ref_encode_e8m0(x);
    if (got != want) {
        test_cur_failed = 1;
        if (nfail++ < 10)
            printf("  e8m0(%a = %.9g, bits %08x): got %u, want %u\n", x, x, f32_bits(x), got, want);
    }
}

/* ------------------------------------------------------------- decoding */

TEST(every_encoding_decodes_to_the_definition)
{
    nfail = 0;
    for (int i = 0; i < NFMT; i++) {
        const Fmt *f = &fmts[i];
        for (uint32_t b = 0; b < (1u << f->bits); b++) {
            float got = f->dec(b), want = f->ref_dec(b);
            if (!same(got, want)) {
                test_cur_failed = 1;
                if (nfail++ < 10)
                    printf("  %s %#x: got %.9g want %.9g\n", f->name, b, got, want);
            }
        }
    }
    /* the definition itself at its landmarks */
    CHECK(ref_decode_bf16(0x7f7f) == 0x1.fep127f && ref_decode_bf16(0x0001) == 0x1p-133f);
    CHECK(ref_decode_f16(0x7bff) == 65504 && ref_decode_f16(0x0001) == 0x1p-24f);
    CHECK(ref_decode_e4m3(0x7e) == 448 && ref_decode_e4m3(0x01) == 0x1p-9f && isnan(ref_decode_e4m3(0xff)));
    CHECK(ref_decode_e5m2(0x7b) == 57344 && ref_decode_e5m2(0x01) == 0x1p-16f && isinf(ref_decode_e5m2(0x7c)));
    static const float e2m1[16] = {0, .5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -.5f, -1, -1.5f, -2, -3, -4, -6};
    for (uint8_t n = 0; n < 16; n++) {
        CHECKF(same(ref_decode_e2m1(n), e2m1[n]), "ref e2m1 %x", n);
        CHECKF(same(dt_e2m1_to_f32(n), e2m1[n]), "e2m1 %x", n);
        /* the decoder reads only the low nibble */
        CHECKF(same(dt_e2m1_to_f32((uint8_t)(n | 0xa0)), e2m1[n]), "e2m1 %x with high bits", n);
    }
    /* NaNs: every encoding the formats reserve for NaN */
    int nan_bf16 = 0, nan_f16 = 0, nan_e4m3 = 0, nan_e5m2 = 0;
    for (uint32_t b = 0; b < 65536; b++) {
        nan_bf16 += isnan(dt_bf16_to_f32((uint16_t)b));
        nan_f16 += isnan(dt_f16_to_f32((uint16_t)b));
    }
    for (uint32_t b = 0; b < 256; b++) {
        nan_e4m3 += isnan(dt_e4m3_to_f32((uint8_t)b));
        nan_e5m2 += isnan(dt_e5m2_to_f32((uint8_t)b));
    }
    CHECKF(nan_bf16 == 2 * 127 && nan_f16 == 2 * 1023 && nan_e4m3 == 2 && nan_e5m2 == 6,
           "NaN encodings bf16 %d f16 %d e4m3 %d e5m2 %d", nan_bf16, nan_f16, nan_e4m3, nan_e5m2);
    /* e8m0: 2^(e-127), 255 NaN */
    for (uint32_t b = 0; b < 256; b++) {
        float want = b == 255 ? NAN : ldexpf(1.0f, (int)b - 127);
        CHECKF(same(dt_e8m0_to_f32((uint8_t)b), want), "e8m0 %u", b);
        CHECKF(same(ref_decode_e8m0((uint8_t)b), want), "ref e8m0 %u", b);
    }
    CHECK(dt_e8m0_to_f32(0) == 0x1p-127f && dt_e8m0_to_f32(127) == 1 && dt_e8m0_to_f32(254) == 0x1p127f);
}

/* ------------------------------------------------------------- encoding */

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

TEST(encode_at_values_midpoints_and_neighbours)
{
    nfail = 0;
    static float vals[65536];
    for (int i = 0; i < NFMT; i++) {
        const Fmt *f = &fmts[i];
        int n = 0;
        for (uint32_t b = 0; b < (1u << f->bits); b++) {
            float v = f->ref_dec(b);
            if (isfinite(v) && !signbit(v))
                vals[n++] = v;
        }
        qsort(vals, (size_t)n, sizeof vals[0], cmp_float);
        CHECKF(n > 2 && vals[0] == 0, "%s: %d values", f->name, n);
        for (int j = 0; j < n; j++) {
            check_pm_around(f, vals[j]);
            if (j + 1 < n) {
                double mid = ((double)vals[j] + vals[j + 1]) / 2;
                CHECKF((double)(float)mid == mid, "%s midpoint %.17g not an f32", f->name, mid);
                check_pm_around(f, (float)mid);
                /* a quarter of the way either side: well clear of the tie */
                check_one(f, (float)((3 * (double)vals[j] + vals[j + 1]) / 4));
                check_one(f, (float)(((double)vals[j] + 3 * (double)vals[j + 1]) / 4));
            }
        }
        /* ±max, the overflow boundary (max + half a step) and beyond */
        float max = vals[n - 1], step = vals[n - 1] - vals[n - 2];
        check_pm_around(f, max);
        check_pm_around(f, max + step / 2);
        check_pm_around(f, max + step);
        check_pm_around(f, max * 2);
        check_pm_around(f, FLT_MAX);
        check_one(f, INFINITY);
        check_one(f, -INFINITY);
        /* f32 subnormals and zeros */
        check_pm_around(f, 0.0f);
        check_pm_around(f, FLT_TRUE_MIN);
        check_pm_around(f, FLT_MIN);
        check_pm_around(f, FLT_MIN / 2);
        check_pm_around(f, bits_f32(0x007fffff));
        /* NaN payloads, both signs, quiet and signalling */
        static const uint32_t nans[] = {0x7fc00000, 0x7f800001, 0x7fffffff, 0x7f80ffff, 0x7f810000,
                                        0x7fa00000, 0x7f800100, 0xffc00000, 0xff800001, 0xffffffff};
        for (size_t k = 0; k < sizeof nans / sizeof nans[0]; k++)
            check_one(f, bits_f32(nans[k]));
    }
}

TEST(encode_saturation_and_specials)
{
    /* fp8/fp4 saturate to ±max (infinity too); bf16/f16 overflow to ±inf */
    CHECK(dt_f32_to_e4m3(INFINITY) == 0x7e && dt_f32_to_e4m3(-INFINITY) == 0xfe);
    CHECK(dt_f32_to_e4m3(1e30f) == 0x7e && dt_f32_to_e4m3(464) == 0x7e && dt_f32_to_e4m3(-500) == 0xfe);
    CHECK(dt_f32_to_e5m2(INFINITY) == 0x7b && dt_f32_to_e5m2(-INFINITY) == 0xfb);
    CHECK(dt_f32_to_e5m2(61440) == 0x7b && dt_f32_to_e5m2(-1e38f) == 0xfb);
    CHECK(dt_f32_to_e2m1(INFINITY) == 0x7 && dt_f32_to_e2m1(-INFINITY) == 0xf);
    CHECK(dt_f32_to_e2m1(7) == 0x7 && dt_f32_to_e2m1(5) == 0x6 && dt_f32_to_e2m1(-5.0001f) == 0xf);
    CHECK(dt_f32_to_bf16(INFINITY) == 0x7f80 && dt_f32_to_bf16(-INFINITY) == 0xff80);
    CHECK(dt_f32_to_bf16(FLT_MAX) == 0x7f80 && dt_f32_to_bf16(0x1.fefffep127f) == 0x7f7f);
    CHECK(dt_f32_to_f16(65520) == 0x7c00 && dt_f32_to_f16(nextafterf(65520, 0)) == 0x7bff);
    CHECK(dt_f32_to_f16(-INFINITY) == 0xfc00);
    /* NaN stays NaN (fp8: the NaN encodings); e2m1 has none: ±6 */
    CHECK((dt_f32_to_e4m3(NAN) & 0x7f) == 0x7f);
    CHECK((dt_f32_to_e5m2(NAN) & 0x7f) > 0x7c);
    CHECK((dt_f32_to_bf16(bits_f32(0x7f800001)) & 0x7fff) > 0x7f80);
    CHECK((dt_f32_to_f16(bits_f32(0x7f800001)) & 0x7fff) > 0x7c00);
    CHECK((dt_f32_to_e2m1(NAN) & 7) == 7);
    /* ties to even */
    CHECK(dt_f32_to_e4m3(0x1.1p0f) == 0x38 && dt_f32_to_e4m3(0x1.3p0f) == 0x3a); /* 1+1/16 → 1, 1+3/16 → 1.25 */
    CHECK(dt_f32_to_e2m1(0.25f) == 0 && dt_f32_to_e2m1(0.75f) == 2 && dt_f32_to_e2m1(2.5f) == 4 &&
          dt_f32_to_e2m1(3.5f) == 6);
    CHECK(dt_f32_to_bf16(bits_f32(0x3f808000)) == 0x3f80 && dt_f32_to_bf16(bits_f32(0x3f818000)) == 0x3f82);
    /* subnormals of the formats, and below them to ±0 */
    CHECK(dt_f32_to_e4m3(0x1p-9f) == 0x01 && dt_f32_to_e4m3(0x1p-10f) == 0x00 &&
          dt_f32_to_e4m3(-0x1p-10f) == 0x80 && dt_f32_to_e4m3(0x1.8p-10f) == 0x01);
    CHECK(dt_f32_to_e5m2(0x1p-16f) == 0x01 && dt_f32_to_e5m2(0x1p-17f) == 0x00);
    CHECK(dt_f32_to_f16(0x1p-24f) == 0x0001 && dt_f32_to_f16(0x1p-25f) == 0 && dt_f32_to_f16(0x1.8p-25f) == 1);
    CHECK(dt_f32_to_f16(-0.0f) == 0x8000 && dt_f32_to_bf16(-0.0f) == 0x8000 && dt_f32_to_e4m3(-0.0f) == 0x80 &&
          dt_f32_to_e5m2(-0.0f) == 0x80 && dt_f32_to_e2m1(-0.0f) == 0x8);
}

/* e8m0: the smallest power of two >= f, clamped to 2^-127..2^127. */
TEST(e8m0_encode)
{
    nfail = 0;
    for (int k = -149; k <= 127; k++) {
        float p = ldexpf(1.0f, k);
        check_e8m0(p);
        check_e8m0(nextafterf(p, INFINITY));
        check_e8m0(nextafterf(p, 0));
        check_e8m0(p * 1.5f);
    }
    check_e8m0(0.0f);
    check_e8m0(-0.0f);
    check_e8m0(-1.0f);
    check_e8m0(NAN);
    check_e8m0(FLT_MAX);
    check_e8m0(-INFINITY);
    CHECK(dt_f32_to_e8m0(1) == 127 && dt_f32_to_e8m0(3) == 129 && dt_f32_to_e8m0(0.75f) == 127);
    CHECK(dt_f32_to_e8m0(0) == 0 && dt_f32_to_e8m0(0x1p-140f) == 0 && dt_f32_to_e8m0(FLT_MAX) == 254);
    CHECK(dt_f32_to_e8m0(-2) == 255 && dt_f32_to_e8m0(NAN) == 255);
}

/* +inf is past every power of two: it clamps to 2^127 like FLT_MAX does.
 * (dt_f32_to_e8m0 runs frexpf on inf, whose exponent is unspecified — 0 in
 * glibc — and returns 127, i.e. a scale of 1.0.) */
TEST(e8m0_encode_infinity_clamps_to_2_pow_127)
{
    CHECKF(dt_f32_to_e8m0(INFINITY) == 254, "dt_f32_to_e8m0(inf) = %u", dt_f32_to_e8m0(INFINITY));
    unsigned char b = 0;
    dt_store(DT_E8M0, &b, 0, INFINITY);
    CHECKF(b == 254, "dt_store(e8m0, inf) = %u", b);
    dt_store(DT_E8M0, &b, 0, 1e300); /* a double past f32's range */
    CHECKF(b == 254, "dt_store(e8m0, 1e300) = %u", b);
}

/* Every f32 whose low 16 bits are one of a few patterns: all sign/exponent
 * combinations, every bf16 value, its midpoints and their neighbours. */
TEST(encode_every_high_half)
{
    nfail = 0;
    static const uint32_t lows[] = {0x0000, 0x0001, 0x7fff, 0x8000, 0x8001, 0xffff, 0x4000, 0xc000};
    for (uint32_t hi = 0; hi < 65536; hi++)
        for (size_t l = 0; l < sizeof lows / sizeof lows[0]; l++) {
            float x = bits_f32(hi << 16 | lows[l]);
            for (int i = 0; i < NFMT; i++)
                check_one(&fmts[i], x);
            check_e8m0(x);
            if (nfail > 10)
                return;
        }
}

/* A strided sweep of all 2^32 f32 bit patterns (odd stride: every residue
 * of the low bits is visited), every format and e8m0. */
TEST(encode_strided_sweep_of_all_f32)
{
    nfail = 0;
    const uint64_t stride = 211; /* ~20M patterns; the whole file runs in ~5 s, ~11 s under ASan */
    for (uint64_t u = 11; u < (1ull << 32); u += stride) {
        float x = bits_f32((uint32_t)u);
        for (int i = 0; i < NFMT; i++)
            check_one(&fmts[i], x);
        check_e8m0(x);
        if (nfail > 10)
            return;
    }
}

/* dt_round_f32 is the CAST rounding of every float dtype (the interpreter's
 * cast<t>): the value the dtype stores; for f32 the identity. */
static void check_round_matches_store(const DType *fl, size_t nfl)
{
    const float xs[] = {0, 1, 3, 0.3f, -2.5f, 100, 1e-3f, 5e-8f, 1000, 70000, 0x1.8p-130f, 1e30f, -0.0f};
    for (size_t t = 0; t < nfl; t++)
        for (size_t k = 0; k < sizeof xs / sizeof xs[0]; k++) {
            if (fl[t] == DT_E8M0 && signbit(xs[k]))
                continue; /* no negative scales */
            unsigned char buf[8] = {0};
            dt_store(fl[t], buf, 0, xs[k]);
            float stored = (float)dt_load(fl[t], buf, 0), r = dt_round_f32(fl[t], xs[k]);
            CHECKF(same(r, stored), "%s: dt_round_f32(%g) = %g, but it stores as %g", dt_name(fl[t]),
                   (double)xs[k], (double)r, (double)stored);
        }
}

TEST(round_f32_matches_store_for_every_float_dtype)
{
    const DType fl[] = {DT_F16, DT_BF16, DT_F32, DT_F8E4M3, DT_F8E5M2, DT_F4E2M1};
    check_round_matches_store(fl, sizeof fl / sizeof fl[0]);
}

/* cast<e8m0> rounds up to the power of two e8m0 stores: the compiled code
 * (codegen/llvm.c round_to → dt_f32_to_e8m0 → dt_e8m0_to_f32) does, but
 * dt_round_f32 — the interpreter's CAST — has no E8M0 case and returns the
 * value unchanged, so interpreter and compiled kernels disagree. */
TEST(round_f32_e8m0_is_the_stored_power_of_two)
{
    const DType fl[] = {DT_E8M0};
    check_round_matches_store(fl, 1);
}

/* ----------------------------------------------------- load/store trips */

TEST(float_dtypes_round_trip_every_encoding)
{
    /* store(load(b)) == b for every non-NaN encoding, -0 included; a NaN
     * encoding stores back as a NaN encoding */
    for (int i = 0; i < NFMT; i++) {
        const Fmt *f = &fmts[i];
        int bad = 0;
        for (uint32_t b = 0; b < (1u << f->bits); b++) {
            unsigned char in[4] = {0}, out[4] = {0};
            if (f->bits == 16) {
                uint16_t h = (uint16_t)b;
                memcpy(in, &h, 2);
            } else {
                in[0] = (unsigned char)b;
            }
            double v = dt_load(f->dt, in, 0);
            dt_store(f->dt, out, 0, v);
            uint32_t back = f->bits == 16 ? (uint32_t)(out[0] | out[1] << 8) : out[0];
            bool ok = isnan(v) ? isnan(f->ref_dec(back))
                    : isinf(v) ? same(f->ref_dec(back), f->ref_round((float)v)) /* e5m2 saturates */
                               : back == b;
            if (!ok && bad++ < 4)
                printf("  %s: %#x loads %g, stores back as %#x\n", f->name, b, v, back);
        }
        CHECKF(bad == 0, "%s: %d encodings do not round trip", f->name, bad);
    }
    /* e8m0: every power of two 2^-127..2^127 */
    for (int b = 0; b < 255; b++) {
        unsigned char in = (unsigned char)b, out = 0;
        dt_store(DT_E8M0, &out, 0, dt_load(DT_E8M0, &in, 0));
        CHECKF(out == b, "e8m0 %d stores back as %d", b, out);
    }
    unsigned char e = 0;
    dt_store(DT_E8M0, &e, 0, NAN);
    CHECK(e == 255 && isnan(dt_load(DT_E8M0, &e, 0)));
    /* f32 round trips exactly; a double rounds once to nearest even */
    for (uint64_t u = 0; u < (1ull << 32); u += 65537) {
        float x = bits_f32((uint32_t)u), y = 0;
        dt_store(DT_F32, &y, 0, x);
        CHECK(f32_bits(y) == (uint32_t)u || (isnan(x) && isnan(y)));
        CHECK(same((float)dt_load(DT_F32, &y, 0), y));
    }
    float y;
    dt_store(DT_F32, &y, 0, 1.0 + 0x1p-24);
    CHECK(y == 1.0f);
    dt_store(DT_F32, &y, 0, 1.0 + 0x1p-24 + 0x1p-40);
    CHECK(y == 1.0f + 0x1p-23f);
}

TEST(f4e2m1_nibble_packing)
{
    unsigned char buf[9];
    CHECK(dt_storage_bytes(DT_F4E2M1, 0) == 0 && dt_storage_bytes(DT_F4E2M1, 1) == 1 &&
          dt_storage_bytes(DT_F4E2M1, 2) == 1 && dt_storage_bytes(DT_F4E2M1, 17) == 9);
    /* every pair of nibbles, stored in either order, packs low nibble first */
    for (uint32_t lo = 0; lo < 16; lo++)
        for (uint32_t hi = 0; hi < 16; hi++) {
            for (int order = 0; order < 2; order++) {
                memset(buf, order ? 0xff : 0x00, sizeof buf);
                if (order) {
                    dt_store(DT_F4E2M1, buf, 3, ref_decode_e2m1((uint8_t)hi));
                    dt_store(DT_F4E2M1, buf, 2, ref_decode_e2m1((uint8_t)lo));
                } else {
                    dt_store(DT_F4E2M1, buf, 2, ref_decode_e2m1((uint8_t)lo));
                    dt_store(DT_F4E2M1, buf, 3, ref_decode_e2m1((uint8_t)hi));
                }
                CHECKF(buf[1] == (lo | hi << 4), "nibbles %x,%x order %d: byte %02x", lo, hi, order, buf[1]);
                CHECK(buf[0] == (order ? 0xff : 0) && buf[2] == (order ? 0xff : 0)); /* neighbours untouched */
                CHECK(same((float)dt_load(DT_F4E2M1, buf, 2), ref_decode_e2m1((uint8_t)lo)));
                CHECK(same((float)dt_load(DT_F4E2M1, buf, 3), ref_decode_e2m1((uint8_t)hi)));
            }
        }
    /* a row of 17 values (odd length: the last byte's high nibble unused) */
    static const float row[17] = {0, .5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -.5f, -1, -1.5f, -2, -3, -4, -6, 6};
    memset(buf, 0xee, sizeof buf);
    for (int i = 0; i < 17; i++)
        dt_store(DT_F4E2M1, buf, i, row[i]);
    static const unsigned char want[9] = {0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe, 0xe7};
    for (int j = 0; j < 9; j++)
        CHECKF(buf[j] == want[j], "byte %d: %02x != %02x", j, buf[j], want[j]);
    for (int i = 0; i < 17; i++)
        CHECKF(same((float)dt_load(DT_F4E2M1, buf, i), row[i]), "element %d", i);
    /* stores round: 2.6 → 3 (nibble 5), -0.2 → -0 (nibble 8), 9 → 6 */
    memset(buf, 0, sizeof buf);
    dt_store(DT_F4E2M1, buf, 0, 2.6);
    dt_store(DT_F4E2M1, buf, 1, -0.2);
    dt_store(DT_F4E2M1, buf, 2, 9);
    CHECK(buf[0] == 0x85 && buf[1] == 0x07);
}

TEST(integer_and_bool_stores_clamp_and_truncate)
{
    union {
        int8_t i8[8];
        uint8_t u8[8];
        int32_t i32[2];
        int64_t i64;
    } m;
    struct { DType t; double v, want; } cases[] = {
        {DT_I8, 0, 0}, {DT_I8, 127, 127}, {DT_I8, 127.9, 127}, {DT_I8, 128, 127}, {DT_I8, 1e30, 127},
        {DT_I8, INFINITY, 127}, {DT_I8, -128, -128}, {DT_I8, -128.9, -128}, {DT_I8, -129, -128},
        {DT_I8, -INFINITY, -128}, {DT_I8, 2.9, 2}, {DT_I8, -2.9, -2}, {DT_I8, -0.5, 0}, {DT_I8, NAN, 0},
        {DT_U8, 255, 255}, {DT_U8, 255.5, 255}, {DT_U8, 256, 255}, {DT_U8, -1, 0}, {DT_U8, -0.9, 0},
        {DT_U8, 200.7, 200}, {DT_U8, NAN, 0}, {DT_U8, INFINITY, 255}, {DT_U8, -INFINITY, 0},
        {DT_I32, 2147483647.0, 2147483647.0}, {DT_I32, 2147483647.9, 2147483647.0}, {DT_I32, 3e9, 2147483647.0},
        {DT_I32, -2147483648.0, -2147483648.0}, {DT_I32, -2147483648.5, -2147483648.0}, {DT_I32, -3e9, -2147483648.0},
        {DT_I32, -7.99, -7}, {DT_I32, 123456.78, 123456}, {DT_I32, NAN, 0}, {DT_I32, INFINITY, 2147483647.0},
        {DT_I64, 0x1p52 + 1, 0x1p52 + 1}, {DT_I64, -0x1p62, -0x1p62}, {DT_I64, -1.5, -1}, {DT_I64, NAN, 0},
        {DT_BOOL, 0, 0}, {DT_BOOL, -0.0, 0}, {DT_BOOL, 0.25, 1}, {DT_BOOL, -3, 1}, {DT_BOOL, INFINITY, 1},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        memset(&m, 0x5a, sizeof m);
        dt_store(cases[k].t, &m, 0, cases[k].v);
        double got = dt_load(cases[k].t, &m, 0);
        CHECKF(got == cases[k].want, "%s store %.17g loads %.17g, want %.17g", dt_name(cases[k].t), cases[k].v,
               got, cases[k].want);
        /* the store writes exactly its element's bytes */
        size_t w = dt_storage_bytes(cases[k].t, 1);
        const unsigned char *p = (const unsigned char *)&m;
        for (size_t j = w; j < sizeof m; j++)
            CHECKF(p[j] == 0x5a, "%s store of %g wrote byte %zu", dt_name(cases[k].t), cases[k].v, j);
    }
    /* every i8/u8 value round trips; indexing picks the right element */
    for (int v = -128; v < 128; v++) {
        int8_t a[3] = {0, 0, 0};
        dt_store(DT_I8, a, 1, v);
        CHECK(a[1] == v && a[0] == 0 && a[2] == 0 && dt_load(DT_I8, a, 1) == v);
        uint8_t b[3] = {0, 0, 0};
        dt_store(DT_U8, b, 2, v + 128);
        CHECK(b[2] == v + 128 && dt_load(DT_U8, b, 2) == v + 128);
    }
    int64_t w[2] = {0, 0};
    dt_store(DT_I64, w, 1, -0x1p62);
    CHECK(w[1] == -(INT64_C(1) << 62) && w[0] == 0);
}

/* i64 stores clamp to the whole i64 range, like the compiled code's
 * llvm.fptosi.sat: -2^63 is an i64 (and a double) and must store exactly;
 * values at or past 2^63 saturate to INT64_MAX.  dt_store clamps to
 * ±9.2233720368547748e18, which as a double is 2^63 - 1024. */
TEST(i64_store_saturates_to_the_full_range)
{
    int64_t v = 0;
    dt_store(DT_I64, &v, 0, -0x1p63);
    CHECKF(v == INT64_MIN, "store(i64, -2^63) = %lld", (long long)v);
    dt_store(DT_I64, &v, 0, -1e19);
    CHECKF(v == INT64_MIN, "store(i64, -1e19) = %lld", (long long)v);
    dt_store(DT_I64, &v, 0, 1e19);
    CHECKF(v == INT64_MAX, "store(i64, 1e19) = %lld", (long long)v);
    dt_store(DT_I64, &v, 0, INFINITY);
    CHECKF(v == INT64_MAX, "store(i64, inf) = %lld", (long long)v);
    dt_store(DT_I64, &v, 0, 0x1p63 - 1024); /* the largest double below 2^63 is exact */
    CHECKF(v == INT64_MAX - 1023, "store(i64, 2^63-1024) = %lld", (long long)v);
}

TEST(dtype_table)
{
    const DType all[] = {DT_BOOL, DT_I8, DT_U8, DT_I32, DT_I64, DT_F16, DT_BF16, DT_F32,
                         DT_F8E4M3, DT_F8E5M2, DT_F4E2M1, DT_E8M0};
    const int bits[] = {8, 8, 8, 32, 64, 16, 16, 32, 8, 8, 4, 8};
    for (size_t t = 0; t < sizeof all / sizeof all[0]; t++) {
        CHECK(dt_parse(dt_name(all[t])) == all[t]);
        CHECK(dt_bits(all[t]) == bits[t]);
        CHECK(dt_storage_bytes(all[t], 6) == (size_t)(bits[t] * 6 / 8));
        CHECK(dt_is_int(all[t]) == (all[t] == DT_I8 || all[t] == DT_U8 || all[t] == DT_I32 || all[t] == DT_I64));
        CHECK(dt_is_float(all[t]) == (t >= 5));
    }
    CHECK(dt_parse("f8") == DT_NONE && dt_parse("") == DT_NONE);
}

int main(void)
{
    RUN(every_encoding_decodes_to_the_definition);
    RUN(encode_at_values_midpoints_and_neighbours);
    RUN(encode_saturation_and_specials);
    RUN(e8m0_encode);
    RUN(e8m0_encode_infinity_clamps_to_2_pow_127);
    RUN(encode_every_high_half);
    RUN(encode_strided_sweep_of_all_f32);
    RUN(round_f32_matches_store_for_every_float_dtype);
    RUN(round_f32_e8m0_is_the_stored_power_of_two);
    RUN(float_dtypes_round_trip_every_encoding);
    RUN(f4e2m1_nibble_packing);
    RUN(integer_and_bool_stores_clamp_and_truncate);
    RUN(i64_store_saturates_to_the_full_range);
    RUN(dtype_table);
    return test_summary();
}
