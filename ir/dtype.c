/* dtype.c — dtype properties and exact conversions to and from f32.
 *
 * These functions are the definition of every dtype's rounding: the
 * interpreter calls them, the runtime converts files with them, and JIT'd
 * code calls the fp8/fp4 ones directly (they are exported symbols). */
#include "ir/ir.h"

#include <math.h>
#include <string.h>

static const struct { const char *name; int bits; char kind; } info[] = {
    {"none", 0, 0},
#define X(e, t, b, k) {t, b, k},
    IR_DTYPES(X)
#undef X
};

const char *dt_name(DType t) { return t < DT_COUNT ? info[t].name : "?"; }
int dt_bits(DType t) { return t < DT_COUNT ? info[t].bits : 0; }
bool dt_is_float(DType t) { return t < DT_COUNT && info[t].kind == 'f'; }
bool dt_is_int(DType t) { return t < DT_COUNT && (info[t].kind == 'i' || info[t].kind == 'u'); }

bool dt_widens_exactly(DType from, DType to)
{
    if (from == to)
        return true;
    bool fp8 = from == DT_F8E4M3 || from == DT_F8E5M2 || from == DT_F4E2M1;
    switch (to) {
    case DT_F32: return fp8 || from == DT_BF16 || from == DT_F16;
    case DT_BF16: case DT_F16: return fp8;
    default: return false;
    }
}

DType dt_parse(const char *name)
{
    for (int t = 1; t < DT_COUNT; t++)
        if (!strcmp(info[t].name, name))
            return (DType)t;
    return DT_NONE;
}

size_t dt_storage_bytes(DType t, int64_t n)
{
    if (t == DT_F4E2M1)
        return (size_t)(n + 1) / 2;
    return (size_t)n * (size_t)(dt_bits(t) / 8);
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ------------------------------------------------------------ bf16, f16 */

float dt_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t dt_f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffff) > 0x7f800000)
        return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fff + ((u >> 16) & 1);           /* round to nearest even */
    return (uint16_t)(u >> 16);
}

float dt_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023;
    float v;
    if (e == 0)
        v = ldexpf((float)m, -24);
    else if (e == 31)
        v = m ? NAN : INFINITY;
    else
        v = ldexpf((float)(m | 1024), (int)e - 25);
    return sign ? -v : v;
}

/* 2^e for e within f32's normal range [-126, 127], from its bits. */
static float pow2f(int e)
{
    uint32_t u = (uint32_t)(e + 127) << 23;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Round |f| to a float format with `mbits` mantissa bits, minimum normal
 * exponent `emin`, and largest finite value `maxv`; returns the rounded
 * magnitude as a float (exact) or INFINITY past maxv's rounding boundary.
 * Subnormals are handled by rounding to a fixed quantum below 2^emin.
 * The exponent comes from the bits and the quantum is a power of two
 * made from bits, not frexpf/ldexpf: this runs per element when `tilec
 * run` makes an fp8 or f16 input, and their library calls were most of
 * the 9.2 s it took to make moe_gemm_swiglu's inputs at Flash sizes. */
static float round_format(float a, int mbits, int emin, float maxv, bool saturate)
{
    if (a == 0 || isnan(a))
        return a;
    if (isinf(a))
        return saturate ? maxv : INFINITY;
    int e = (int)(f32_bits(a) >> 23) - 127; /* a >= 0; f32 subnormals fall below every emin */
    int exp = e < emin ? emin : e;
    float q = a * pow2f(mbits - exp); /* exact: power-of-two scaling to the quantum's units */
    float v = rintf(q) * pow2f(exp - mbits); /* nearest even under the default rounding mode */
    if (v > maxv)
        return saturate ? maxv : INFINITY;
    return v;
}

uint16_t dt_f32_to_f16(float f)
{
    uint32_t sign = (f32_bits(f) >> 16) & 0x8000;
    if (isnan(f))
        return (uint16_t)(sign | 0x7e00);
    float a = round_format(fabsf(f), 10, -14, 65504.0f, false);
    if (isinf(a))
        return (uint16_t)(sign | 0x7c00);
    if (a < 0x1p-14f)
        return (uint16_t)(sign | (uint32_t)(a * 16777216.0f)); /* subnormal: a / 2^-24 */
    uint32_t u = f32_bits(a); /* a normal f16 value: its exponent and top 10 mantissa bits */
    return (uint16_t)(sign | ((u >> 23) - 127 + 15) << 10 | (u >> 13 & 0x3ff));
}

/* ------------------------------------------------------------------ fp8 */

/* Decode an 8-bit float with `mbits` mantissa bits and exponent bias. */
static float decode8(uint8_t b, int mbits, int bias)
{
    int ebits = 7 - mbits;
    uint32_t e = (b >> mbits) & ((1u << ebits) - 1), m = b & ((1u << mbits) - 1);
    float v = e ? (float)(m | 1u << mbits) * pow2f((int)e - bias - mbits) : (float)m * pow2f(1 - bias - mbits);
    return (b & 0x80) ? -v : v;
}

/* Encode a magnitude already rounded to the format (exact) to its bits:
 * the exponent and top mbits mantissa bits of its f32 bits. */
static uint8_t encode8(float a, int mbits, int bias)
{
    if (a == 0)
        return 0;
    uint32_t u = f32_bits(a);
    int exp = (int)(u >> 23) - 127 + bias;
    if (exp <= 0) /* subnormal: a = m * 2^(1-bias-mbits) */
        return (uint8_t)(a * pow2f(bias + mbits - 1));
    return (uint8_t)(exp << mbits | (int)(u >> (23 - mbits) & ((1u << mbits) - 1)));
}

float dt_e4m3_to_f32(uint8_t b)
{
    if ((b & 0x7f) == 0x7f)
        return NAN;
    return decode8(b, 3, 7);
}

uint8_t dt_f32_to_e4m3(float f)
{
    uint8_t sign = (f32_bits(f) >> 24) & 0x80;
    if (isnan(f))
        return sign | 0x7f;
    float a = round_format(fabsf(f), 3, -6, 448.0f, true);
    return sign | encode8(a, 3, 7);
}

float dt_e5m2_to_f32(uint8_t b)
{
    if ((b & 0x7f) > 0x7c)
        return NAN;
    if ((b & 0x7f) == 0x7c)
        return (b & 0x80) ? -INFINITY : INFINITY;
    return decode8(b, 2, 15);
}

uint8_t dt_f32_to_e5m2(float f)
{
    uint8_t sign = (f32_bits(f) >> 24) & 0x80;
    if (isnan(f))
        return sign | 0x7e;
    float a = round_format(fabsf(f), 2, -14, 57344.0f, true);
    return sign | encode8(a, 2, 15);
}

/* ------------------------------------------------------------ fp4, e8m0 */

static const float e2m1_values[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};

float dt_e2m1_to_f32(uint8_t nibble)
{
    float v = e2m1_values[nibble & 7];
    return (nibble & 8) ? -v : v;
}

/* Round to nearest, ties to the even code (a tie lies between an even and
 * an odd code: 0.25 between 0 and 0.5 goes down, 0.75 between 0.5 and 1
 * up), saturating: a count of the midpoints |f| passes, strictly where
 * the code below is even.  Without branches: `tilec run` makes fp4 inputs
 * with this, one call per element, and random values mispredicted the
 * general rounding's branches (moe_gemm_swiglu's 268M weights: the run
 * took 6.7 s with that rounding from bits, 4.2 with this). */
uint8_t dt_f32_to_e2m1(float f)
{
    uint8_t sign = (f32_bits(f) >> 28) & 0x8;
    if (isnan(f))
        return sign | 7; /* e2m1 has no NaN: saturate, like the hardware */
    float a = fabsf(f);
    int code = (a > 0.25f) + (a >= 0.75f) + (a > 1.25f) + (a >= 1.75f) + (a > 2.5f) + (a >= 3.5f) + (a > 5.0f);
    return sign | (uint8_t)code;
}

float dt_e8m0_to_f32(uint8_t b) { return b == 255 ? NAN : ldexpf(1.0f, (int)b - 127); }

uint8_t dt_f32_to_e8m0(float f)
{
    if (f == 0)
        return 0;
    if (!(f > 0)) /* negative or NaN: no such scale */
        return 255;
    if (isinf(f))
        return 254;
    int e;
    float m = frexpf(f, &e); /* f = m * 2^e, m in [0.5, 1) */
    int x = e - 1 + (m > 0.5f) + 127;
    return (uint8_t)(x < 0 ? 0 : x > 254 ? 254 : x);
}

/* ------------------------------------------------------------- generic */

float dt_round_f32(DType t, float f)
{
    switch (t) {
    case DT_BF16: return dt_bf16_to_f32(dt_f32_to_bf16(f));
    case DT_F16: return dt_f16_to_f32(dt_f32_to_f16(f));
    case DT_F8E4M3: return dt_e4m3_to_f32(dt_f32_to_e4m3(f));
    case DT_F8E5M2: return dt_e5m2_to_f32(dt_f32_to_e5m2(f));
    case DT_F4E2M1: return dt_e2m1_to_f32(dt_f32_to_e2m1(f));
    case DT_E8M0: return dt_e8m0_to_f32(dt_f32_to_e8m0(f));
    default: return f;
    }
}

double dt_load(DType t, const void *base, int64_t i)
{
    switch (t) {
    case DT_BOOL: return ((const uint8_t *)base)[i] != 0;
    case DT_I8: return ((const int8_t *)base)[i];
    case DT_U8: return ((const uint8_t *)base)[i];
    case DT_I32: return ((const int32_t *)base)[i];
    case DT_I64: return (double)((const int64_t *)base)[i];
    case DT_F16: return dt_f16_to_f32(((const uint16_t *)base)[i]);
    case DT_BF16: return dt_bf16_to_f32(((const uint16_t *)base)[i]);
    case DT_F32: return ((const float *)base)[i];
    case DT_F8E4M3: return dt_e4m3_to_f32(((const uint8_t *)base)[i]);
    case DT_F8E5M2: return dt_e5m2_to_f32(((const uint8_t *)base)[i]);
    case DT_F4E2M1: return dt_e2m1_to_f32((uint8_t)(((const uint8_t *)base)[i >> 1] >> (4 * (i & 1))));
    case DT_E8M0: return dt_e8m0_to_f32(((const uint8_t *)base)[i]);
    default: return 0;
    }
}

/* Integers: clamp to the range, then truncate toward zero (NaN gives 0). */
static int64_t to_int(double v, double lo, double hi)
{
    if (isnan(v))
        return 0;
    v = v < lo ? lo : v > hi ? hi : v;
    return v >= 9223372036854775808.0 ? INT64_MAX : (int64_t)v; /* 2^63 itself overflows */
}

void dt_store(DType t, void *base, int64_t i, double v)
{
    switch (t) {
    case DT_BOOL: ((uint8_t *)base)[i] = v != 0; break;
    case DT_I8: ((int8_t *)base)[i] = (int8_t)to_int(v, -128, 127); break;
    case DT_U8: ((uint8_t *)base)[i] = (uint8_t)to_int(v, 0, 255); break;
    case DT_I32: ((int32_t *)base)[i] = (int32_t)to_int(v, -2147483648.0, 2147483647.0); break;
    case DT_I64: ((int64_t *)base)[i] = to_int(v, -9223372036854775808.0, 9223372036854775808.0); break;
    case DT_F16: ((uint16_t *)base)[i] = dt_f32_to_f16((float)v); break;
    case DT_BF16: ((uint16_t *)base)[i] = dt_f32_to_bf16((float)v); break;
    case DT_F32: ((float *)base)[i] = (float)v; break;
    case DT_F8E4M3: ((uint8_t *)base)[i] = dt_f32_to_e4m3((float)v); break;
    case DT_F8E5M2: ((uint8_t *)base)[i] = dt_f32_to_e5m2((float)v); break;
    case DT_F4E2M1: {
        uint8_t *p = (uint8_t *)base + (i >> 1);
        int sh = 4 * (int)(i & 1);
        *p = (uint8_t)((*p & ~(0xf << sh)) | dt_f32_to_e2m1((float)v) << sh);
        break;
    }
    case DT_E8M0: ((uint8_t *)base)[i] = dt_f32_to_e8m0((float)v); break;
    default: break;
    }
}
