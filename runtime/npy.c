/* npy.c — reading and writing NumPy .npy files. */
#include "runtime/npy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *descr;
    DType dtype;
    int bytes;
} npy_types[] = {
    {"<f4", DT_F32, 4}, {"<f2", DT_F16, 2}, {"<i4", DT_I32, 4}, {"<i8", DT_I64, 8},
    {"|u1", DT_U8, 1},  {"|i1", DT_I8, 1},  {"|b1", DT_BOOL, 1}, {"<u2", DT_BF16, 2},
};

static bool fail(Diag *d, const char *path, const char *fmt, const char *detail)
{
    SrcLoc loc = {path, 0};
    char msg[300];
    snprintf(msg, sizeof msg, fmt, detail);
    return diag_error(d, loc, "%s", msg);
}

/* Find `'key':` in the header dict and return a pointer past the colon. */
static const char *dict_value(const char *h, const char *key)
{
    char pat[32];
    snprintf(pat, sizeof pat, "'%s'", key);
    const char *p = strstr(h, pat);
    if (!p)
        return NULL;
    p = strchr(p + strlen(pat), ':');
    if (!p)
        return NULL;
    p++;
    while (*p == ' ')
        p++;
    return p;
}

static bool parse_header(const char *path, const char *h, RtTensor *t, int *elem_bytes,
                         bool *from_f64, Diag *d)
{
    const char *v = dict_value(h, "descr");
    if (!v || *v != '\'')
        return fail(d, path, "malformed .npy header (no descr)%s", "");
    char descr[16] = {0};
    const char *end = strchr(v + 1, '\'');
    if (!end || end - v - 1 >= (long)sizeof descr)
        return fail(d, path, "malformed .npy header (descr)%s", "");
    memcpy(descr, v + 1, (size_t)(end - v - 1));
    if (descr[0] == '=')
        descr[0] = '<'; /* native order: this is a little-endian machine */
    *from_f64 = !strcmp(descr, "<f8");
    t->dtype = DT_NONE;
    for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++)
        if (!strcmp(descr, npy_types[i].descr)) {
            t->dtype = npy_types[i].dtype;
            *elem_bytes = npy_types[i].bytes;
        }
    if (*from_f64) {
        t->dtype = DT_F32;
        *elem_bytes = 8;
    }
    if (t->dtype == DT_NONE)
        return fail(d, path,
                    "unsupported .npy dtype '%s' (tilec reads f4, f2, f8, i4, i8, u1, i1, b1, u2; "
                    "little-endian)", descr);
    v = dict_value(h, "fortran_order");
    if (!v || strncmp(v, "False", 5))
        return fail(d, path, "Fortran-order .npy is not supported%s (save with np.ascontiguousarray)", "");
    v = dict_value(h, "shape");
    if (!v || *v != '(')
        return fail(d, path, "malformed .npy header (shape)%s", "");
    t->rank = 0;
    for (v++; *v && *v != ')';) {
        while (*v == ' ' || *v == ',')
            v++;
        if (*v == ')')
            break;
        char *e;
        long long n = strtoll(v, &e, 10);
        if (e == v || n < 0)
            return fail(d, path, "malformed .npy header (shape)%s", "");
        if (t->rank == IR_MAX_RANK)
            return fail(d, path, "too many dimensions in .npy (tilec allows 6)%s", "");
        t->shape[t->rank++] = n;
        v = e;
    }
    return true;
}

RtTensor *rt_npy_load(const char *path, Diag *d)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fail(d, path, "cannot open: %s", strerror(errno));
        return NULL;
    }
    unsigned char pre[10];
    RtTensor *t = NULL;
    char *header = NULL;
    if (fread(pre, 1, 8, f) != 8 || memcmp(pre, "\x93NUMPY", 6)) {
        fail(d, path, "not an .npy file (bad magic)%s", "");
        goto out;
    }
    size_t hlen;
    if (pre[6] == 1) {
        if (fread(pre + 8, 1, 2, f) != 2)
            goto truncated;
        hlen = pre[8] | (size_t)pre[9] << 8;
    } else if (pre[6] == 2 || pre[6] == 3) {
        unsigned char l[4];
        if (fread(l, 1, 4, f) != 4)
            goto truncated;
        hlen = l[0] | (size_t)l[1] << 8 | (size_t)l[2] << 16 | (size_t)l[3] << 24;
    } else {
        fail(d, path, "unsupported .npy format version%s", "");
        goto out;
    }
    if (hlen > (1u << 20)) {
        fail(d, path, "malformed .npy header (length)%s", "");
        goto out;
    }
    header = calloc(1, hlen + 1);
    if (!header || fread(header, 1, hlen, f) != hlen)
        goto truncated;
    RtTensor meta = {0};
    int elem_bytes = 0;
    bool from_f64 = false;
    if (!parse_header(path, header, &meta, &elem_bytes, &from_f64, d))
        goto out;
    t = rt_tensor_new(meta.dtype, meta.rank, meta.shape);
    if (!t) {
        fail(d, path, "out of memory reading%s", "");
        goto out;
    }
    int64_t n = rt_tensor_numel(t);
    if (from_f64) {
        float *dst = t->data;
        for (int64_t i = 0; i < n; i++) {
            double x;
            if (fread(&x, 8, 1, f) != 1)
                goto truncated;
            dst[i] = (float)x;
        }
    } else if (fread(t->data, (size_t)elem_bytes, (size_t)n, f) != (size_t)n) {
        goto truncated;
    }
    free(header);
    fclose(f);
    return t;
truncated:
    fail(d, path, "truncated .npy file%s (fewer bytes than its header's shape needs)", "");
out:
    rt_tensor_free(t);
    free(header);
    fclose(f);
    return NULL;
}

static const char *npy_descr(DType dt)
{
    for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++)
        if (npy_types[i].dtype == dt)
            return npy_types[i].descr;
    return NULL;
}

bool rt_npy_save(const char *path, const RtTensor *t, Diag *d)
{
    const char *descr = npy_descr(t->dtype);
    if (!descr)
        return fail(d, path, "cannot write dtype %s to .npy (convert to f32 first)",
                    dt_name(t->dtype));
    char dict[256];
    int used = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                        descr);
    for (int i = 0; i < t->rank; i++)
        used += snprintf(dict + used, sizeof dict - (size_t)used, "%lld,%s",
                         (long long)t->shape[i], i + 1 < t->rank ? " " : "");
    used += snprintf(dict + used, sizeof dict - (size_t)used, "), }");
    /* Pad with spaces so the data starts at a multiple of 64 bytes. */
    int total = 10 + used + 1;
    int pad = (64 - total % 64) % 64;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return fail(d, path, "cannot write: %s", strerror(errno));
    unsigned hlen = (unsigned)(used + pad + 1);
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, hlen & 255, hlen >> 8};
    bool ok = fwrite(pre, 1, 10, f) == 10 && fwrite(dict, 1, (size_t)used, f) == (size_t)used;
    for (int i = 0; ok && i < pad; i++)
        ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF;
    size_t bytes = rt_tensor_bytes(t);
    ok = ok && fwrite(t->data, 1, bytes, f) == bytes;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return fail(d, path, "cannot write: %s", strerror(errno ? errno : EIO));
    }
    return true;
}
