/* Device-decided steps of a LossScaleOptimizer's inner optimizer (loss_scale_internal.h,
 * clopt__device_step): the step's per-step scalars as a table over the iteration counts the
 * step may be at, and the state the device keeps (CLOPT__STEP_* in backend_internal.h). */
#include <stdlib.h>
#include <string.h>
#include "loss_scale_internal.h"

#define ROW_REALS (CLOPT__STEP_KINDS * CLOPT__STEP_REALS)

/* The table's reals: the launch's real dtype, as kernels take their scalars; doubles on the host
 * backend, whose kernels take them unrounded. */
static clopt_dtype table_dtype(const clopt_context *ctx, clopt_dtype t) {
    return ctx->ops == &clopt__host_backend ? CLOPT_FLOAT64 : clopt__real_dtype(t);
}

/* Whether `o` can take device-decided steps: every launch of its step must be one the device
 * can skip and whose scalars are a function of the count alone. */
static int can_decide(const clopt_optimizer *o) {
    return !o->cls->run_launch && clopt__accumulation_steps(o) == 0;
}

clopt_status clopt__device_step_create(clopt_optimizer *o, clopt__device_step **out) {
    *out = NULL;
    if (!can_decide(o)) return CLOPT_OK;
    clopt_context *ctx = o->ctx;
    clopt__device_step *d = calloc(1, sizeof *d);
    if (!d) return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "build: out of host memory");
    *out = d;
    clopt_status st = ctx->ops->buffer_create(ctx, CLOPT__STEP_WORDS * 8, &d->state_buf);
    for (size_t i = 0; st == CLOPT_OK && i < o->nvars; i++) {
        const clopt_dtype t = o->vars[i]->dtype;
        if (d->table_buf[t]) continue;
        const size_t bytes = (size_t)CLOPT__STEP_ROWS * ROW_REALS *
                             clopt_dtype_size(table_dtype(ctx, t));
        st = ctx->ops->buffer_create(ctx, bytes, &d->table_buf[t]);
    }
    /* The finishing kernel, compiled and warmed now (a pass over no ranges) */
    const clopt__segment_launch fin = {"loss_scale.finish", CLOPT_FLOAT32, d->state_buf, 0, 0,
                                       d->state_buf, NULL, {0, 0, 0, 0}};
    if (st == CLOPT_OK) st = ctx->ops->segments(ctx, &fin);
    if (st != CLOPT_OK) clopt__device_step_free(ctx, out);
    return st;
}

void clopt__device_step_free(clopt_context *ctx, clopt__device_step **dp) {
    clopt__device_step *d = *dp;
    if (!d) return;
    if (d->state_buf) ctx->ops->buffer_release(ctx, d->state_buf);
    for (int t = 0; t < 4; t++)
        if (d->table_buf[t]) ctx->ops->buffer_release(ctx, d->table_buf[t]);
    free(d);
    *dp = NULL;
}

clopt__step_request clopt__device_step_request(const clopt__device_step *d) {
    clopt__step_request r = {0};
    r.step_state = d->state_buf;
    memcpy(r.step_table, d->table_buf, sizeof r.step_table);
    r.finite_check = 1;
    return r;
}

/* Row k (count base + k) of every table, computed as the host step would at that count: the
 * class's host state moves on step by step (Nadam's u_product), so rows are made in order and
 * the state after each is kept for the read-back. */
static void make_rows(clopt_optimizer *o, clopt__device_step *d, double *rows[4]) {
    const int64_t saved_it = o->iterations;
    memcpy(d->base_state, o->state, sizeof d->base_state);
    for (int k = 0; k < CLOPT__STEP_ROWS; k++) {
        const int64_t it = d->base + k;
        o->iterations = it;
        const clopt__step_info step = {it + 1, clopt__learning_rate(o)};
        if (o->cls->before_step) o->cls->before_step(o, &step);
        memcpy(d->states[k], o->state, sizeof d->states[k]);
        for (int t = 0; t < 4; t++) {
            if (!rows[t]) continue;
            double *r = rows[t] + (size_t)k * ROW_REALS;
            memset(r, 0, ROW_REALS * sizeof *r);
            clopt__step_scalars(o, (clopt_dtype)t, &step, r);
            r[CLOPT__STEP_REALS - 1] = 1;
            double *e = r + CLOPT__STEP_EMA * CLOPT__STEP_REALS;
            e[0] = clopt__ema_momentum_at(o, it);
            e[CLOPT__STEP_REALS - 1] = 1;
            r[CLOPT__STEP_EMA_OVERWRITE * CLOPT__STEP_REALS + CLOPT__STEP_REALS - 1] =
                clopt__ema_overwrite_at(o, it);
        }
    }
    o->iterations = saved_it;
    memcpy(o->state, d->base_state, sizeof d->base_state);
}

/* Writes the tables from the host's state (its count becomes row 0) and the state words. */
static clopt_status write_all(clopt_optimizer *o, clopt__device_step *d, const double ls[2],
                              double growth) {
    clopt_context *ctx = o->ctx;
    double *rows[4] = {0};
    unsigned char *cells = NULL;
    clopt_status st = CLOPT_OK;
    const size_t n = (size_t)CLOPT__STEP_ROWS * ROW_REALS;
    for (int t = 0; t < 4 && st == CLOPT_OK; t++)
        if (d->table_buf[t] && !(rows[t] = malloc(n * sizeof(double))))
            st = clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "apply: out of host memory");
    if (st == CLOPT_OK && !(cells = malloc(n * sizeof(double))))
        st = clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "apply: out of host memory");
    if (st == CLOPT_OK) {
        d->base = o->iterations;
        make_rows(o, d, rows);
    }
    for (int t = 0; t < 4 && st == CLOPT_OK; t++) {
        if (!rows[t]) continue;
        const clopt_dtype rd = table_dtype(ctx, (clopt_dtype)t);
        for (size_t i = 0; i < n; i++) clopt__elem_store(cells, rd, i, rows[t][i]);
        st = ctx->ops->write(ctx, d->table_buf[t], 0, cells, n * clopt_dtype_size(rd));
    }
    if (st == CLOPT_OK) {
        uint64_t w[CLOPT__STEP_WORDS] = {0};
        const float go[2] = {1.0f, 1.0f}, scale = (float)ls[1];
        memcpy(&w[0], go, sizeof go);
        w[1] = (uint64_t)o->iterations;
        w[2] = (uint64_t)ls[0];
        memcpy(&w[3], &scale, sizeof scale);
        w[4] = (uint64_t)d->base;
        w[5] = (uint64_t)(growth - 1);
        st = ctx->ops->write(ctx, d->state_buf, 0, w, sizeof w);
    }
    for (int t = 0; t < 4; t++) free(rows[t]);
    free(cells);
    if (st == CLOPT_OK) {
        d->issued = d->pending = 0;
        d->valid = 1;
    }
    return st;
}

clopt_status clopt__device_step_sync(clopt_optimizer *o, clopt__device_step *d, double ls[2]) {
    if (!d || !d->pending) return CLOPT_OK;
    uint64_t w[CLOPT__STEP_WORDS];
    clopt_status st = o->ctx->ops->read(o->ctx, d->state_buf, 0, w, sizeof w);
    if (st != CLOPT_OK) return st;
    const int64_t k = (int64_t)w[1] - d->base; /* steps that ran since the table was written */
    float scale;
    memcpy(&scale, &w[3], sizeof scale);
    o->iterations = (int64_t)w[1];
    memcpy(o->state, k > 0 ? d->states[k - 1] : d->base_state, sizeof o->state);
    ls[0] = (double)w[2];
    ls[1] = (double)scale;
    d->pending = 0;
    return CLOPT_OK;
}

void clopt__device_step_invalidate(clopt__device_step *d) {
    if (d) d->valid = 0;
}

clopt_status clopt__device_step_begin(clopt_optimizer *o, clopt__device_step *d, double ls[2],
                                      double growth) {
    /* A step reads row (count - base), at most `issued`: the table lasts CLOPT__STEP_ROWS. */
    if (d->valid && d->issued < CLOPT__STEP_ROWS) return CLOPT_OK;
    clopt_status st = clopt__device_step_sync(o, d, ls);
    return st == CLOPT_OK ? write_all(o, d, ls, growth) : st;
}

clopt_status clopt__device_step_end(clopt_optimizer *o, clopt__device_step *d) {
    const clopt__segment_launch fin = {"loss_scale.finish", CLOPT_FLOAT32, o->plan.ranges_buf,
                                       0, 1, d->state_buf, NULL, {0, 0, 0, 0}};
    clopt_status st = o->ctx->ops->segments(o->ctx, &fin);
    if (st != CLOPT_OK) return st;
    d->issued++;
    d->pending++;
    return CLOPT_OK;
}
