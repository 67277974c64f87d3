/* tensor.c — host tensors. */
#include "runtime/tensor.h"

#include <stdlib.h>
#include <string.h>

int64_t rt_tensor_numel(const RtTensor *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->rank; d++)
        n *= t->shape[d];
    return n;
}

size_t rt_tensor_bytes(const RtTensor *t) { return dt_storage_bytes(t->dtype, rt_tensor_numel(t)); }

RtTensor *rt_tensor_new(DType dt, int rank, const int64_t *shape)
{
    RtTensor *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->dtype = dt;
    t->rank = rank;
    for (int d = 0; d < rank; d++)
        t->shape[d] = shape[d];
    t->data = rt_tensor_storage(rt_tensor_bytes(t));
    if (!t->data) {
        free(t);
        return NULL;
    }
    return t;
}

void *rt_tensor_storage(size_t bytes)
{
    size_t padded = (bytes + 63) / 64 * 64 + 64; /* room for vector tails */
    void *p = aligned_alloc(64, padded);
    if (p)
        memset(p, 0, padded);
    return p;
}

void rt_tensor_free(RtTensor *t)
{
    if (!t)
        return;
    free(t->data);
    free(t);
}

RtTensor *rt_tensor_convert(const RtTensor *t, DType to)
{
    RtTensor *r = rt_tensor_new(to, t->rank, t->shape);
    if (!r)
        return NULL;
    int64_t n = rt_tensor_numel(t);
    if (to == t->dtype) /* a copy, bit for bit (NaN codes too), at memcpy's speed */
        return memcpy(r->data, t->data, rt_tensor_bytes(t)), r;
    for (int64_t i = 0; i < n; i++)
        dt_store(to, r->data, i, dt_load(t->dtype, t->data, i));
    return r;
}

const char *rt_tensor_describe(const RtTensor *t, char *buf, size_t n)
{
    size_t used = (size_t)snprintf(buf, n, "%s[", dt_name(t->dtype));
    for (int d = 0; d < t->rank && used < n; d++)
        used += (size_t)snprintf(buf + used, n - used, "%s%lld", d ? ", " : "",
                                 (long long)t->shape[d]);
    if (used < n)
        snprintf(buf + used, n - used, "]");
    return buf;
}
