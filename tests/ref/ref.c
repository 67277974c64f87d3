/* ref.c — references from the math (see ref.h). */
#include "ref.h"

#include <math.h>
#include <string.h>

void ref_gemm(int M, int N, int K, const float *A, const float *B, float *C)
{
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++)
                s += (double)A[(int64_t)i * K + k] * B[(int64_t)j * K + k];
            C[(int64_t)i * N + j] = (float)s;
        }
}

void ref_softmax(int M, int N, const float *x, float *y)
{
    for (int i = 0; i < M; i++) {
        const float *r = x + (int64_t)i * N;
        double m = -INFINITY, s = 0;
        for (int j = 0; j < N; j++)
            m = fmax(m, r[j]);
        for (int j = 0; j < N; j++)
            s += exp(r[j] - m);
        for (int j = 0; j < N; j++)
            y[(int64_t)i * N + j] = (float)(exp(r[j] - m) / s);
    }
}

void ref_rmsnorm(int M, int N, const float *x, const float *w, float eps, float *y)
{
    for (int i = 0; i < M; i++) {
        const float *r = x + (int64_t)i * N;
        double ss = 0;
        for (int j = 0; j < N; j++)
            ss += (double)r[j] * r[j];
        double scale = 1.0 / sqrt(ss / N + eps);
        for (int j = 0; j < N; j++)
            y[(int64_t)i * N + j] = (float)(w[j] * r[j] * scale);
    }
}

void ref_silu_mul(int64_t n, const float *gate, const float *up, float *y)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = (float)(gate[i] / (1.0 + exp(-(double)gate[i])) * up[i]);
}

/* The representable magnitudes of a format are m * 2^e with a `mbits`-bit
 * fraction; below 2^emin the spacing stays 2^(emin - mbits).  Round |x| to
 * the nearest of them by comparing the two neighbours in double. */
static double round_mag(double a, int mbits, int emin, double maxv, int saturate)
{
    if (a == 0 || isnan(a))
        return a;
    if (isinf(a))
        return saturate ? maxv : INFINITY;
    int e = (int)floor(log2(a));
    if (ldexp(1, e) > a) /* guard log2's rounding */
        e--;
    if (ldexp(1, e + 1) <= a)
        e++;
    if (e < emin)
        e = emin;
    double step = ldexp(1, e - mbits);
    double lo = floor(a / step) * step, hi = lo + step;
    double r;
    if (a - lo < hi - a)
        r = lo;
    else if (a - lo > hi - a)
        r = hi;
    else /* tie: the one with an even last fraction bit */
        r = fmod(lo / step, 2) == 0 ? lo : hi;
    if (r > maxv) {
        if (saturate)
            return maxv;
        /* IEEE overflow: past max + half a step rounds to infinity */
        return a < maxv + step / 2 ? maxv : INFINITY;
    }
    return r;
}

static float signed_round(float x, int mbits, int emin, double maxv, int saturate)
{
    double r = round_mag(fabs((double)x), mbits, emin, maxv, saturate);
    return (float)(signbit(x) ? -r : r);
}

float ref_round_bf16(float x) { return signed_round(x, 7, -126, 3.3895313892515355e38, 0); }
float ref_round_f16(float x) { return signed_round(x, 10, -14, 65504, 0); }
float ref_round_e4m3(float x) { return signed_round(x, 3, -6, 448, 1); }
float ref_round_e5m2(float x) { return signed_round(x, 2, -14, 57344, 1); }
float ref_round_e2m1(float x) { return isnan(x) ? (signbit(x) ? -6.0f : 6.0f) : signed_round(x, 1, 0, 6, 1); }

/* sign | exponent (ebits, bias) | fraction (mbits) */
static double decode(unsigned bits, int ebits, int mbits, int bias)
{
    unsigned s = bits >> (ebits + mbits) & 1, e = bits >> mbits & ((1u << ebits) - 1);
    unsigned m = bits & ((1u << mbits) - 1);
    double v = e == 0 ? ldexp((double)m, 1 - bias - mbits) : ldexp(1.0 + ldexp((double)m, -mbits), (int)e - bias);
    return s ? -v : v;
}

float ref_decode_e4m3(uint8_t b) { return (b & 0x7f) == 0x7f ? NAN : (float)decode(b, 4, 3, 7); }

float ref_decode_e5m2(uint8_t b)
{
    if ((b & 0x7c) == 0x7c)
        return (b & 3) ? NAN : (b & 0x80 ? -INFINITY : INFINITY);
    return (float)decode(b, 5, 2, 15);
}

float ref_decode_bf16(uint16_t b)
{
    if ((b & 0x7f80) == 0x7f80)
        return (b & 0x7f) ? NAN : (b & 0x8000 ? -INFINITY : INFINITY);
    return (float)decode(b, 8, 7, 127);
}

float ref_decode_f16(uint16_t b)
{
    if ((b & 0x7c00) == 0x7c00)
        return (b & 0x3ff) ? NAN : (b & 0x8000 ? -INFINITY : INFINITY);
    return (float)decode(b, 5, 10, 15);
}

double ref_max_abs_diff(const float *a, const float *b, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (isnan(a[i]) != isnan(b[i]))
            d = INFINITY;
        if (d > m)
            m = d;
    }
    return m;
}

void ref_act_quant(int K, const float *x, float *q, float *s)
{
    for (int b = 0; b < K / 128; b++) {
        float amax = 0;
        for (int k = 0; k < 128; k++)
            amax = fmaxf(amax, fabsf(x[b * 128 + k]));
        amax = fmaxf(amax, 1e-4f);
        float ratio = amax / 448.0f; /* an f32 division, as the reference does */
        int e;
        double m = frexp(ratio, &e); /* ratio = m * 2^e, m in [0.5, 1) */
        double scale = m == 0.5 ? ldexp(1, e - 1) : ldexp(1, e);
        s[b] = (float)scale;
        for (int k = 0; k < 128; k++) {
            double v = x[b * 128 + k] / scale;
            v = v > 448 ? 448 : v < -448 ? -448 : v;
            q[b * 128 + k] = ref_round_e4m3((float)v);
        }
    }
}

/* 2^ceil(log2(v)) for v > 0, from frexp: v = m·2^e with m in [0.5, 1). */
static double pow2_ceil(float v)
{
    int e;
    double m = frexp(v, &e);
    return m == 0.5 ? ldexp(1, e - 1) : ldexp(1, e);
}

void ref_fp4_act_quant(int K, const float *x, float *y, float *s)
{
    for (int b = 0; b < K / 32; b++) {
        float amax = 0;
        for (int k = 0; k < 32; k++)
            amax = fmaxf(amax, fabsf(x[b * 32 + k]));
        amax = fmaxf(amax, 6.0f * ldexpf(1, -126));
        double scale = pow2_ceil(amax / 6.0f);
        s[b] = (float)scale;
        for (int k = 0; k < 32; k++) {
            double v = x[b * 32 + k] / scale;
            v = v > 6 ? 6 : v < -6 ? -6 : v;
            y[b * 32 + k] = ref_round_bf16((float)(ref_round_e2m1((float)v) * scale));
        }
    }
}

void ref_kv_fp8_sim(int D, int nope, const float *x, float *y)
{
    for (int b = 0; b < nope / 64; b++) {
        float amax = 0;
        for (int k = 0; k < 64; k++)
            amax = fmaxf(amax, fabsf(x[b * 64 + k]));
        double scale = pow2_ceil(fmaxf(amax, 1e-4f) / 448.0f);
        for (int k = 0; k < 64; k++) {
            double v = x[b * 64 + k] / scale;
            v = v > 448 ? 448 : v < -448 ? -448 : v;
            y[b * 64 + k] = ref_round_bf16((float)(ref_round_e4m3((float)v) * scale));
        }
    }
    for (int k = nope; k < D; k++)
        y[k] = x[k];
}

void ref_hadamard(int N, const float *x, float *y)
{
    for (int j = 0; j < N; j++) {
        double s = 0;
        for (int i = 0; i < N; i++)
            s += (__builtin_popcount((unsigned)(i & j)) & 1) ? -(double)x[i] : (double)x[i];
        y[j] = ref_round_bf16((float)(s / sqrt((double)N)));
    }
}

void ref_rope_table(double theta, int yarn, int P, float *cs)
{
    double freq[32];
    for (int i = 0; i < 32; i++)
        freq[i] = pow(theta, -2.0 * i / 64);
    if (yarn) {
        const double pi = 3.14159265358979323846;
        double low = floor(64 * log(65536 / (32 * 2 * pi)) / (2 * log(theta)));
        double high = ceil(64 * log(65536 / (1 * 2 * pi)) / (2 * log(theta)));
        low = fmax(low, 0);
        high = fmin(high, 63);
        for (int i = 0; i < 32; i++) {
            double ramp = (i - low) / (high - low);
            ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
            double smooth = 1 - ramp;
            freq[i] = freq[i] / 16 * (1 - smooth) + freq[i] * smooth;
        }
    }
    for (int p = 0; p < P; p++)
        for (int i = 0; i < 32; i++) {
            cs[((int64_t)p * 32 + i) * 2 + 0] = (float)cos(p * freq[i]);
            cs[((int64_t)p * 32 + i) * 2 + 1] = (float)sin(p * freq[i]);
        }
}

void ref_rope(int M, int H, int D, const float *x, const int32_t *pos, const float *cs, int inverse,
              float *y)
{
    for (int t = 0; t < M; t++)
        for (int h = 0; h < H; h++) {
            const float *xr = x + ((int64_t)t * H + h) * D;
            float *yr = y + ((int64_t)t * H + h) * D;
            for (int j = 0; j < D - 64; j++)
                yr[j] = xr[j];
            for (int i = 0; i < 32; i++) {
                double c = cs[((int64_t)pos[t] * 32 + i) * 2], s = cs[((int64_t)pos[t] * 32 + i) * 2 + 1];
                if (inverse)
                    s = -s;
                double a = xr[D - 64 + 2 * i], b = xr[D - 64 + 2 * i + 1];
                yr[D - 64 + 2 * i] = ref_round_bf16((float)(a * c - b * s));
                yr[D - 64 + 2 * i + 1] = ref_round_bf16((float)(a * s + b * c));
            }
        }
}

void ref_fp8_gemm(int M, int N, int K, const float *a, const float *sa, const float *b, const float *sb,
                  float *c)
{
    int nkb = K / 128;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double acc = 0;
            for (int kb = 0; kb < nkb; kb++) {
                double part = 0;
                for (int k = kb * 128; k < kb * 128 + 128; k++)
                    part += (double)a[(int64_t)i * K + k] * b[(int64_t)j * K + k];
                acc += part * sa[i * nkb + kb] * sb[(j / 128) * nkb + kb];
            }
            c[(int64_t)i * N + j] = ref_round_bf16((float)acc);
        }
}

double ref_calc_diff(const float *x, const float *y, int64_t n)
{
    double xy = 0, sq = 0;
    for (int64_t i = 0; i < n; i++) {
        xy += (double)x[i] * y[i];
        sq += (double)x[i] * x[i] + (double)y[i] * y[i];
    }
    return sq == 0 ? 0 : 1 - 2 * xy / sq;
}

void ref_hc_pre(int D, const float *x, const float *fn, const float *scale, const float *base, float *y,
                float *post, float *comb)
{
    const double eps = 1e-6;
    int n = 4 * D;
    double ss = 0, mix[24], pre[4], c[4][4];
    for (int k = 0; k < n; k++)
        ss += (double)x[k] * x[k];
    double r = 1 / sqrt(ss / n + 1e-6);
    for (int m = 0; m < 24; m++) {
        double s = 0;
        for (int k = 0; k < n; k++)
            s += (double)x[k] * fn[(int64_t)m * n + k];
        mix[m] = s * r;
    }
    for (int i = 0; i < 4; i++) {
        pre[i] = 1 / (1 + exp(-(mix[i] * scale[0] + base[i]))) + eps;
        post[i] = (float)(2 / (1 + exp(-(mix[4 + i] * scale[1] + base[4 + i]))));
    }
    for (int i = 0; i < 4; i++) { /* softmax over j, + eps */
        double row[4], mx = -INFINITY, sum = 0;
        for (int j = 0; j < 4; j++) {
            row[j] = mix[8 + 4 * i + j] * scale[2] + base[8 + 4 * i + j];
            mx = fmax(mx, row[j]);
        }
        for (int j = 0; j < 4; j++)
            sum += exp(row[j] - mx);
        for (int j = 0; j < 4; j++)
            c[i][j] = exp(row[j] - mx) / sum + eps;
    }
    for (int it = 0; it < 20; it++) {
        if (it > 0) /* rows, then columns; the first pass has columns only */
            for (int i = 0; i < 4; i++) {
                double s = c[i][0] + c[i][1] + c[i][2] + c[i][3];
                for (int j = 0; j < 4; j++)
                    c[i][j] /= s + eps;
            }
        for (int j = 0; j < 4; j++) {
            double s = c[0][j] + c[1][j] + c[2][j] + c[3][j];
            for (int i = 0; i < 4; i++)
                c[i][j] /= s + eps;
        }
    }
    for (int i = 0; i < 16; i++)
        comb[i] = (float)c[i / 4][i % 4];
    for (int d = 0; d < D; d++) {
        double s = 0;
        for (int i = 0; i < 4; i++)
            s += pre[i] * x[i * D + d];
        y[d] = ref_round_bf16((float)s);
    }
}

void ref_hc_post(int D, const float *f, const float *r, const float *post, const float *comb, float *x)
{
    for (int j = 0; j < 4; j++)
        for (int d = 0; d < D; d++) {
            double s = (double)post[j] * f[d];
            for (int i = 0; i < 4; i++)
                s += (double)comb[4 * i + j] * r[i * D + d];
            x[j * D + d] = ref_round_bf16((float)s);
        }
}

void ref_moe_gate(int D, int E, int K, const float *x, const float *wg, const float *bias, double route_scale,
                  const int32_t *hash_row, int32_t *idx, double *w, double *sel)
{
    double score[1024];
    for (int e = 0; e < E; e++) {
        double l = 0;
        for (int d = 0; d < D; d++)
            l += (double)x[d] * wg[(int64_t)e * D + d];
        double sp = l > 20 ? l : log1p(exp(l));
        score[e] = sqrt(sp);
        sel[e] = score[e] + bias[e];
    }
    double masked[1024];
    memcpy(masked, sel, sizeof(double) * (size_t)E);
    double total = 0;
    for (int k = 0; k < K; k++) {
        int best = 0;
        if (hash_row) {
            best = hash_row[k];
        } else {
            for (int e = 1; e < E; e++)
                if (masked[e] > masked[best])
                    best = e;
            masked[best] = -INFINITY;
        }
        idx[k] = best;
        total += score[best];
    }
    for (int k = 0; k < K; k++)
        w[k] = score[idx[k]] / total * route_scale;
}

void ref_swiglu_quant(int I, const float *g, const float *u, float w, float limit, float *q, float *s)
{
    float h[16384];
    for (int i = 0; i < I; i++) {
        double gg = fmin(g[i], limit), uu = fmax(fmin(u[i], limit), -limit);
        h[i] = ref_round_bf16((float)(gg / (1 + exp(-gg)) * uu * w));
    }
    ref_act_quant(I, h, q, s);
}

void ref_hc_head(int D, const float *x, const float *fn, const float *scale, const float *base, float *y)
{
    int n = 4 * D;
    double ss = 0, pre[4];
    for (int k = 0; k < n; k++)
        ss += (double)x[k] * x[k];
    double r = 1 / sqrt(ss / n + 1e-6);
    for (int i = 0; i < 4; i++) {
        double s = 0;
        for (int k = 0; k < n; k++)
            s += (double)x[k] * fn[(int64_t)i * n + k];
        pre[i] = 1 / (1 + exp(-(s * r * scale[0] + base[i]))) + 1e-6;
    }
    for (int d = 0; d < D; d++) {
        double s = 0;
        for (int i = 0; i < 4; i++)
            s += pre[i] * x[i * D + d];
        y[d] = ref_round_bf16((float)s);
    }
}

void ref_q_norm(int HD, const float *q, float *y)
{
    double sum = 0;
    for (int i = 0; i < HD; i++)
        sum += ref_round_bf16(q[i] * q[i]);
    float mean = ref_round_bf16((float)(sum / HD));
    float r = ref_round_bf16((float)(1 / sqrt((double)ref_round_bf16(mean + 1e-6f))));
    for (int i = 0; i < HD; i++)
        y[i] = ref_round_bf16(q[i] * r);
}

void ref_grouped_oproj(int M, int G, int R, int GD, const float *o, const float *w, float *u)
{
    for (int t = 0; t < M; t++)
        for (int g = 0; g < G; g++)
            for (int r = 0; r < R; r++) {
                double s = 0;
                for (int k = 0; k < GD; k++)
                    s += (double)w[((int64_t)g * R + r) * GD + k] * o[(int64_t)t * G * GD + (int64_t)g * GD + k];
                u[((int64_t)t * G + g) * R + r] = ref_round_bf16((float)s);
            }
}

void ref_sparse_attn(int H, int D, const float *q, const float *kv, const int32_t *idx, int L,
                     const float *sink, float *o)
{
    double z[4096];
    for (int h = 0; h < H; h++) {
        double m = -INFINITY;
        for (int j = 0; j < L; j++) {
            if (idx[j] < 0)
                continue;
            double s = 0;
            for (int d = 0; d < D; d++)
                s += (double)q[h * D + d] * kv[(int64_t)idx[j] * D + d];
            z[j] = s / sqrt((double)D);
            m = fmax(m, z[j]);
        }
        double den = 0;
        for (int j = 0; j < L; j++)
            if (idx[j] >= 0)
                den += exp(z[j] - m);
        den += m == -INFINITY ? INFINITY : exp(sink[h] - m);
        for (int d = 0; d < D; d++) {
            double num = 0;
            for (int j = 0; j < L; j++)
                if (idx[j] >= 0)
                    num += exp(z[j] - m) * kv[(int64_t)idx[j] * D + d];
            o[h * D + d] = (float)(num / den);
        }
    }
}

void ref_indexer_logits(int IH, int ID, const float *q, const float *k, int N, const float *w, int pos,
                        int ratio, double *score)
{
    int visible = (pos + 1) / ratio;
    for (int n = 0; n < N; n++) {
        double s = 0;
        for (int h = 0; h < IH; h++) {
            double dot = 0;
            for (int d = 0; d < ID; d++)
                dot += (double)q[h * ID + d] * k[(int64_t)n * ID + d];
            s += (dot > 0 ? dot : 0) * w[h];
        }
        score[n] = n < visible ? s : -INFINITY;
    }
}

void ref_topk(int N, int K, const double *score, int offset, int32_t *idx)
{
    static unsigned char taken[1 << 20];
    memset(taken, 0, (size_t)N);
    for (int k = 0; k < K; k++) {
        int best = -1;
        for (int n = 0; n < N; n++)
            if (!taken[n] && score[n] > -INFINITY && (best < 0 || score[n] > score[best]))
                best = n;
        if (best >= 0)
            taken[best] = 1;
        idx[k] = best < 0 ? -1 : best + offset;
    }
}

void ref_compress(int Tn, int r, int D, const float *kv, const float *g, const float *ape, float *out)
{
    int overlap = r == 4, c = overlap ? 2 : 1, w = c * D, nslots = overlap ? 2 * r : r;
    for (int n = 0; n < Tn / r; n++)
        for (int d = 0; d < D; d++) {
            double score[256], value[256], mx = -INFINITY;
            for (int s = 0; s < nslots; s++) {
                if (!overlap) {
                    int row = n * r + s;
                    score[s] = (double)g[(int64_t)row * w + d] + ape[s * w + d];
                    value[s] = kv[(int64_t)row * w + d];
                } else if (s < r) { /* the previous block, first half */
                    int row = (n - 1) * r + s;
                    score[s] = n == 0 ? -INFINITY : (double)g[(int64_t)row * w + d] + ape[s * w + d];
                    value[s] = n == 0 ? 0 : kv[(int64_t)row * w + d];
                } else { /* this block, second half */
                    int row = n * r + s - r;
                    score[s] = (double)g[(int64_t)row * w + D + d] + ape[(s - r) * w + D + d];
                    value[s] = kv[(int64_t)row * w + D + d];
                }
                mx = fmax(mx, score[s]);
            }
            double den = 0, num = 0;
            for (int s = 0; s < nslots; s++) {
                den += exp(score[s] - mx);
                num += exp(score[s] - mx) * value[s];
            }
            out[(int64_t)n * D + d] = (float)(num / den);
        }
}

float ref_decode_e2m1(uint8_t nibble) { return (float)decode(nibble & 15u, 2, 1, 1); }

float ref_decode_e8m0(uint8_t b) { return b == 255 ? NAN : (float)ldexp(1.0, (int)b - 127); }

uint8_t ref_encode_e8m0(float f)
{
    if (isnan(f) || f < 0)
        return 255;
    if (f == 0)
        return 0;
    if (isinf(f))
        return 254;
    double d = f;
    int k = ilogb(d); /* 2^k <= d < 2^(k+1) */
    if (ldexp(1.0, k) < d)
        k++;
    k = k < -127 ? -127 : k > 127 ? 127 : k;
    return (uint8_t)(k + 127);
}
