/* The tool-internal entry points (tool_internal.h) over the internal ones. */
#include "tool_internal.h"
#include "../core/core_internal.h"
#include "../io/io_internal.h"
#include "../optim/json_internal.h"

clopt_status clopt__tool_buffer_create(clopt_context *ctx, size_t bytes, void **buf) {
    return ctx->ops->buffer_create(ctx, bytes, buf);
}

void clopt__tool_buffer_release(clopt_context *ctx, void *buf) {
    if (buf) ctx->ops->buffer_release(ctx, buf);
}

clopt_status clopt__tool_ns_products(clopt_context *ctx, clopt_dtype rd, void *x, void *y,
                                     void *a, void *b, size_t m, size_t n, size_t k,
                                     int batched) {
    const size_t xs = m * n, as = m * m;
    clopt_status s = CLOPT_OK;
    for (size_t q = 0; q < (batched ? 1 : k) && s == CLOPT_OK; q++) {
        const size_t nb = batched ? k : 1, xo = q * xs, ao = q * as;
        const clopt__gemm_launch g[3] = {
            {rd, 0, 1, m, m, n, 1.0, 0.0, x, xo, n, x, xo, n, a, ao, m, nb, xs, xs, as},
            {rd, 0, 0, m, m, m, 2.0315, -4.7750, a, ao, m, a, ao, m, b, ao, m, nb, as, as, as},
            {rd, 0, 0, m, n, m, 1.0, 3.4445, b, ao, m, y, xo, n, x, xo, n, nb, as, xs, xs}};
        for (int p = 0; p < 3 && s == CLOPT_OK; p++) s = ctx->ops->gemm(ctx, &g[p]);
    }
    return s == CLOPT_OK ? ctx->ops->finish(ctx) : s;
}
