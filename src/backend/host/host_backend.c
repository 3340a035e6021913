/* The host backend: buffers are host memory, operations are plain C loops. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
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

/* A buffer is calloc'd memory after a header that keeps its size for the context's memory
 * accounting (16 bytes, so the data keeps malloc's alignment for doubles). */
#define HOST_BUF_HEADER 16

static clopt_status host_buffer_create(clopt_context *ctx, size_t bytes, void **buf) {
    unsigned char *p = calloc(1, HOST_BUF_HEADER + (bytes ? bytes : 1));
    if (!p)
        return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "host backend: cannot allocate %zu bytes",
                           bytes);
    memcpy(p, &bytes, sizeof bytes);
    clopt__mem_created(ctx, bytes);
    *buf = p + HOST_BUF_HEADER;
    return CLOPT_OK;
}

static void host_buffer_release(clopt_context *ctx, void *buf) {
    if (!buf) return;
    unsigned char *p = (unsigned char *)buf - HOST_BUF_HEADER;
    size_t bytes;
    memcpy(&bytes, p, sizeof bytes);
    clopt__mem_released(ctx, bytes);
    free(p);
}

static clopt_status host_write(clopt_context *ctx, void *buf, size_t off, const void *src,
                               size_t n) {
    (void)ctx;
    memcpy((char *)buf + off, src, n);
    return CLOPT_OK;
}

static clopt_status host_read(clopt_context *ctx, void *buf, size_t off, void *dst, size_t n) {
    clopt__mem_read(ctx);
    memcpy(dst, (char *)buf + off, n);
    return CLOPT_OK;
}

static clopt_status host_fill(clopt_context *ctx, void *buf, clopt_dtype dtype, size_t off,
                              size_t count, double value) {
    (void)ctx;
    for (size_t i = 0; i < count; i++) clopt__elem_store(buf, dtype, off + i, value);
    return CLOPT_OK;
}

static clopt_status host_assign(clopt_context *ctx, clopt__assign_op op, clopt_dtype dtype,
                                void *dst, size_t doff, const void *src, size_t soff,
                                size_t count) {
    (void)ctx;
    if (op == CLOPT__ASSIGN) { /* a copy: bits as they are (-0.0, NaN payloads) */
        const size_t esize = clopt_dtype_size(dtype);
        memmove((char *)dst + doff * esize, (const char *)src + soff * esize, count * esize);
        return CLOPT_OK;
    }
    for (size_t i = 0; i < count; i++) {
        double s = clopt__elem_load(src, dtype, soff + i);
        double d = clopt__elem_load(dst, dtype, doff + i);
        clopt__elem_store(dst, dtype, doff + i, op == CLOPT__ASSIGN_SUB ? d - s : d + s);
    }
    return CLOPT_OK;
}

double clopt__host_grad(const clopt__host_update *u, size_t g, size_t s, uint32_t seg) {
    const clopt__launch *l = u->launch;
    double x = HL(u->grad, g) * l->pipe[0];
    if (l->accum) {
        x = (x + HL(u->slot, SLOT_ABS(l->slot_acc))) * l->pipe[1];
        HS(u->slot, SLOT_ABS(l->slot_acc), 0.0);
    }
    if (l->clip == 1) x *= SEG(2 * seg);
    else if (l->clip == 2) x = fmin(fmax(x, -l->pipe[2]), l->pipe[2]);
    return x;
}

double clopt__host_weight(const clopt__host_update *u, size_t w, uint32_t seg) {
    double x = HL(u->var, w);
    /* The segment's decay real multiplies weight_decay*lr (1 for most classes, 0 when the
     * variable is excluded; Muon's per-variable rate, with pipe[3] the learning rate). */
    const double on = u->launch->decay ? SEG(2 * seg + 1) : 0.0;
    if (on != 0.0) x -= x * on * u->launch->pipe[3];
    return x;
}

/* A program's kernel (clopt__user_kernel): its per-element update between the loads and
 * stores a built-in host kernel does itself. */
static void user_kernel(const clopt__host_update *u, size_t w, size_t g, size_t s,
                        uint32_t seg) {
    const clopt__user_kernel *k = u->launch->user;
    double slots[CLOPT__USER_MAX_SLOTS];
    const double gv = GRAD();
    double wv = WEIGHT();
    for (int i = 0; i < k->nslots; i++) slots[i] = HL(u->slot, SLOT(i));
    k->host(&wv, gv, slots, u->launch->scalars, k->user_data);
    for (int i = 0; i < k->nslots; i++) HS(u->slot, SLOT(i), slots[i]);
    HS(u->var, w, wv);
}

static const clopt__host_kernel user_entry = {"(program's kernel)", user_kernel, NULL};

static const clopt__host_kernel *find_kernel(const clopt__launch *l) {
    if (clopt__launch_user(l)) return &user_entry;
    for (const clopt__host_kernel *k = clopt__host_kernels; k->name; k++)
        if (strcmp(k->name, l->kernel) == 0) return k;
    return NULL;
}

static clopt_status host_prepare(clopt_context *ctx, const clopt__launch *l) {
    if (!find_kernel(l))
        return clopt__fail(ctx, CLOPT_ERR_UNSUPPORTED, "host backend: no kernel '%s'", l->kernel);
    return CLOPT_OK;
}

/* A device-decided step (clopt__launch.step_state, STEP_LOAD_ in cl/common.cl): 0 when the
 * step is skipped; else *out is `l` with the scalars of the table row the state points at. */
static int step_launch(const clopt__launch *l, clopt__launch *out) {
    const uint64_t *state = l->step_state;
    float flag, scale;
    memcpy(&flag, &state[0], sizeof flag);
    memcpy(&scale, &state[3], sizeof scale);
    if (flag != 1.0f) return 0;
    const clopt_dtype rd = CLOPT_FLOAT64; /* the host's table (src/optim/loss_scale_device.c) */
    const size_t row = (size_t)(state[1] - state[4]) * CLOPT__STEP_KINDS * CLOPT__STEP_REALS +
                       (size_t)l->step_kind * CLOPT__STEP_REALS;
    if (clopt__elem_load(l->step_table, rd, row + CLOPT__STEP_REALS - 1) == 0) return 0;
    *out = *l;
    for (int i = 0; i < CLOPT__MAX_SCALARS; i++)
        out->scalars[i] = clopt__elem_load(l->step_table, rd, row + (size_t)i);
    for (int i = 1; i < 4; i++)
        out->pipe[i] = clopt__elem_load(l->step_table, rd, row + CLOPT__MAX_SCALARS + (size_t)i);
    out->pipe[0] = 1.0 / (double)scale;
    out->step_state = NULL;
    return 1;
}

static clopt_status host_update(clopt_context *ctx, const clopt__launch *l) {
    const clopt__host_kernel *k = find_kernel(l);
    if (!k) return clopt__fail(ctx, CLOPT_ERR_UNSUPPORTED, "host backend: no kernel '%s'", l->kernel);
    clopt__launch stepped;
    if (l->step_state) {
        if (!step_launch(l, &stepped)) return CLOPT_OK;
        l = &stepped;
    }
    clopt__host_update u = {l, l->var_buf, l->grad_buf, l->slot_buf, l->seg_buf, 0};
    if (l->own_table) { /* a class's own entries, each a unit of work */
        const clopt__chunk *table = (const clopt__chunk *)l->table_buf + l->table_base;
        for (size_t e = 0; e < l->ntable; e++) k->chunk_fn(&u, &table[e], l->table_base + e);
        return CLOPT_OK;
    }
    const clopt__segment *segs = (const clopt__segment *)l->table_buf + l->table_base;
    for (size_t r = 0; r < l->ntable; r++)
        for (uint32_t c = 0; c < segs[r].count; c++) {
            const clopt__chunk ch = {segs[r].var + c, segs[r].grad + c, segs[r].slot + c,
                                     segs[r].index};
            if (k->chunk_fn) {
                u.block_first = c % segs[r].bchunks == 0;
                k->chunk_fn(&u, &ch, (size_t)segs[r].block + c / segs[r].bchunks);
                continue;
            }
            for (size_t i = 0; i < CLOPT__CHUNK; i++)
                k->fn(&u, (size_t)ch.var * CLOPT__CHUNK + i, (size_t)ch.grad * CLOPT__CHUNK + i,
                      (size_t)ch.slot * CLOPT__CHUNK + i, ch.seg);
        }
    return CLOPT_OK;
}

static double range_sum(const clopt__clip_launch *l, const clopt__segment *r) {
    double sum = 0;
    for (uint32_t b = 0; b < clopt__segment_blocks(r); b++)
        sum += clopt__elem_load(l->partials_buf, CLOPT_FLOAT64, (size_t)r->block + b);
    return sum;
}

/* Partials are kept in double on the host whatever the dtype (8 bytes per block). */
static clopt_status host_clip_factors(clopt_context *ctx, const clopt__clip_launch *l) {
    (void)ctx;
    const clopt__segment *ranges = (const clopt__segment *)l->ranges_buf + l->range_base;
    const clopt_dtype rd = clopt__real_dtype(l->dtype);
    const double c = l->clipnorm;
    if (l->mode == 0) {
        for (size_t i = 0; i < l->nranges; i++) {
            double s = range_sum(l, &ranges[i]), n = s > 0 ? sqrt(s) : 0;
            clopt__elem_store(l->seg_buf, rd, 2 * (size_t)ranges[i].index, c / fmax(n, c));
        }
        return CLOPT_OK;
    }
    double s = 0;
    for (size_t i = 0; i < l->nranges; i++) s += range_sum(l, &ranges[i]);
    const double n = sqrt(s), f = c * fmin(1 / n, 1 / c) + (n - n);
    for (size_t i = 0; i < l->nranges; i++)
        clopt__elem_store(l->seg_buf, rd, 2 * (size_t)ranges[i].index, f);
    return CLOPT_OK;
}

static clopt_status host_segments(clopt_context *ctx, const clopt__segment_launch *l) {
    const clopt__host_segment_kernel *k = clopt__host_segment_kernels;
    while (k->name && strcmp(k->name, l->kernel) != 0) k++;
    if (!k->name)
        return clopt__fail(ctx, CLOPT_ERR_UNSUPPORTED, "host backend: no segment kernel '%s'",
                           l->kernel);
    const clopt__segment *ranges = (const clopt__segment *)l->ranges_buf + l->range_base;
    for (size_t i = 0; i < l->nranges; i++) k->fn(l, &ranges[i]);
    return CLOPT_OK;
}

/* Row-major C = alpha*op(A)*op(B) + beta*C, each product accumulated in double and stored once
 * in the dtype (beta 0 ignores C, as BLAS does); a batch is the same, product after product. */
static clopt_status host_gemm(clopt_context *ctx, const clopt__gemm_launch *l) {
    (void)ctx;
    const size_t batch = l->batch > 1 ? l->batch : 1;
    for (size_t q = 0; q < batch; q++) {
        const size_t a_off = l->a_off + q * l->a_stride, b_off = l->b_off + q * l->b_stride,
                     c_off = l->c_off + q * l->c_stride;
        for (size_t i = 0; i < l->m; i++)
            for (size_t j = 0; j < l->n; j++) {
                double acc = 0;
                for (size_t p = 0; p < l->k; p++) {
                    const size_t ai = a_off + (l->trans_a ? p * l->lda + i : i * l->lda + p);
                    const size_t bi = b_off + (l->trans_b ? j * l->ldb + p : p * l->ldb + j);
                    acc += clopt__elem_load(l->a, l->dtype, ai) *
                           clopt__elem_load(l->b, l->dtype, bi);
                }
                const size_t ci = c_off + i * l->ldc + j;
                double r = l->alpha * acc;
                if (l->beta != 0) r += l->beta * clopt__elem_load(l->c, l->dtype, ci);
                clopt__elem_store(l->c, l->dtype, ci, r);
            }
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
    .clip_factors = host_clip_factors,
    .segments = host_segments,
    .gemm = host_gemm,
    .finish = host_finish,
};
