/* The host backend: buffers are host memory, operations are plain C loops. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../../core/core_internal.h"
#include "host_internal.h"

static clopt_status host_open(clopt_context *ctx, const char *spec, void **state) {
    (void)ctx;
    (void)spec;
    *state = NULL;
    return CLOPT_OK;
}

static void host_close(void *state) { (void)state; }

static const char *host_device_name(void *state) {
    (void)state;
    return "host (C reference backend)";
}

static clopt_status host_buffer_create(clopt_context *ctx, size_t bytes, void **buf) {
    *buf = calloc(1, bytes ? bytes : 1);
    if (!*buf)
        return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "host backend: cannot allocate %zu bytes",
                           bytes);
    return CLOPT_OK;
}

static void host_buffer_release(clopt_context *ctx, void *buf) {
    (void)ctx;
    free(buf);
}

static clopt_status host_write(clopt_context *ctx, void *buf, size_t off, const void *src,
                               size_t n) {
    (void)ctx;
    memcpy((char *)buf + off, src, n);
    return CLOPT_OK;
}

static clopt_status host_read(clopt_context *ctx, void *buf, size_t off, void *dst, size_t n) {
    (void)ctx;
    memcpy(dst, (char *)buf + off, n);
    return CLOPT_OK;
}

static uint16_t f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    int32_t exp = (int32_t)((x >> 23) & 0xff) - 127 + 15;
    uint32_t mant = x & 0x7fffffu;
    if (((x >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u : 0));
    if (exp >= 31) return (uint16_t)(sign | 0x7c00u);
    if (exp <= 0) {
        if (exp < -10) return (uint16_t)sign;
        mant |= 0x800000u;
        uint32_t shift = (uint32_t)(14 - exp);
        uint32_t h = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((uint32_t)exp << 10) | (mant >> 13), rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ffu, x;
    if (exp == 0x1f) x = sign | 0x7f800000u | (mant << 13);
    else if (exp) x = sign | ((exp + 112) << 23) | (mant << 13);
    else if (!mant) x = sign;
    else {
        int e = -1;
        do { mant <<= 1; e++; } while (!(mant & 0x400u));
        x = sign | ((uint32_t)(112 - e) << 23) | ((mant & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

static uint16_t f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

static float bf16_to_f32(uint16_t h) {
    uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

double clopt__host_load(const void *base, clopt_dtype dtype, size_t i) {
    switch (dtype) {
    case CLOPT_FLOAT32: return ((const float *)base)[i];
    case CLOPT_FLOAT64: return ((const double *)base)[i];
    case CLOPT_FLOAT16: return f16_to_f32(((const uint16_t *)base)[i]);
    case CLOPT_BFLOAT16: return bf16_to_f32(((const uint16_t *)base)[i]);
    }
    return 0;
}

void clopt__host_store(void *base, clopt_dtype dtype, size_t i, double x) {
    switch (dtype) {
    case CLOPT_FLOAT32: ((float *)base)[i] = (float)x; break;
    case CLOPT_FLOAT64: ((double *)base)[i] = x; break;
    case CLOPT_FLOAT16: ((uint16_t *)base)[i] = f32_to_f16((float)x); break;
    case CLOPT_BFLOAT16: ((uint16_t *)base)[i] = f32_to_bf16((float)x); break;
    }
}

static clopt_status host_fill(clopt_context *ctx, void *buf, clopt_dtype dtype, size_t off,
                              size_t count, double value) {
    (void)ctx;
    for (size_t i = 0; i < count; i++) clopt__host_store(buf, dtype, off + i, value);
    return CLOPT_OK;
}

static clopt_status host_assign(clopt_context *ctx, clopt__assign_op op, clopt_dtype dtype,
                                void *dst, size_t doff, const void *src, size_t soff,
                                size_t count) {
    (void)ctx;
    for (size_t i = 0; i < count; i++) {
        double s = clopt__host_load(src, dtype, soff + i);
        double d = op == CLOPT__ASSIGN ? 0.0 : clopt__host_load(dst, dtype, doff + i);
        clopt__host_store(dst, dtype, doff + i, op == CLOPT__ASSIGN_SUB ? d - s : d + s);
    }
    return CLOPT_OK;
}

static const clopt__host_kernel *find_kernel(const char *name) {
    for (const clopt__host_kernel *k = clopt__host_kernels; k->name; k++)
        if (strcmp(k->name, name) == 0) return k;
    return NULL;
}

static clopt_status host_prepare(clopt_context *ctx, const clopt__launch *l) {
    if (!find_kernel(l->kernel))
        return clopt__fail(ctx, CLOPT_ERR_UNSUPPORTED, "host backend: no kernel '%s'", l->kernel);
    return CLOPT_OK;
}

static clopt_status host_update(clopt_context *ctx, const clopt__launch *l) {
    const clopt__host_kernel *k = find_kernel(l->kernel);
    if (!k) return clopt__fail(ctx, CLOPT_ERR_UNSUPPORTED, "host backend: no kernel '%s'", l->kernel);
    clopt__host_update u = {l, l->var_buf, l->grad_buf, l->slot_buf, l->seg_buf};
    const clopt__chunk *table = (const clopt__chunk *)l->table_buf + l->table_base;
    for (size_t c = 0; c < l->nchunks; c++) {
        const clopt__chunk ch = table[c];
        for (size_t i = 0; i < CLOPT__CHUNK; i++)
            k->fn(&u, (size_t)ch.var * CLOPT__CHUNK + i, (size_t)ch.grad * CLOPT__CHUNK + i,
                  (size_t)ch.slot * CLOPT__CHUNK + i, ch.seg);
    }
    return CLOPT_OK;
}

static clopt_status host_finish(clopt_context *ctx) {
    (void)ctx;
    return CLOPT_OK;
}

const clopt__backend_ops clopt__host_backend = {
    .name = "host",
    .open = host_open,
    .close = host_close,
    .device_name = host_device_name,
    .buffer_create = host_buffer_create,
    .buffer_release = host_buffer_release,
    .write = host_write,
    .read = host_read,
    .fill = host_fill,
    .assign = host_assign,
    .prepare = host_prepare,
    .update = host_update,
    .finish = host_finish,
};
