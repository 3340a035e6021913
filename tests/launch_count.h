/* Launches per step, counted by wrapping a context's backend operations (internal:
 * src/core/core_internal.h): every update, segment pass, clip pass, matrix product, fill and copy
 * is one launch (a CLBlast product counts once, though CLBlast may run several kernels for it).
 * One counter per test process: Criterion runs each test in a process of its own. */
#ifndef CLOPT_TEST_LAUNCH_COUNT_H
#define CLOPT_TEST_LAUNCH_COUNT_H

#include "core/core_internal.h"

static const clopt__backend_ops *real_ops;
static clopt__backend_ops counting_ops;
static size_t nlaunch;
static clopt_status count_update(clopt_context *c, const clopt__launch *l) {
    nlaunch++;
    return real_ops->update(c, l);
}
static clopt_status count_segments(clopt_context *c, const clopt__segment_launch *l) {
    nlaunch++;
    return real_ops->segments(c, l);
}
static clopt_status count_clip(clopt_context *c, const clopt__clip_launch *l) {
    nlaunch++;
    return real_ops->clip_factors(c, l);
}
static clopt_status count_gemm(clopt_context *c, const clopt__gemm_launch *l) {
    nlaunch++;
    return real_ops->gemm(c, l);
}
static clopt_status count_fill(clopt_context *c, void *b, clopt_dtype d, size_t off, size_t n,
                               double v) {
    nlaunch++;
    return real_ops->fill(c, b, d, off, n, v);
}
static clopt_status count_assign(clopt_context *c, clopt__assign_op op, clopt_dtype d, void *dst,
                                 size_t doff, const void *src, size_t soff, size_t n) {
    nlaunch++;
    return real_ops->assign(c, op, d, dst, doff, src, soff, n);
}
static inline void count_launches(clopt_context *ctx) {
    real_ops = ctx->ops;
    counting_ops = *real_ops;
    counting_ops.update = count_update;
    counting_ops.segments = count_segments;
    counting_ops.clip_factors = count_clip;
    counting_ops.gemm = count_gemm;
    counting_ops.fill = count_fill;
    counting_ops.assign = count_assign;
    ctx->ops = &counting_ops;
}

#endif
