/* The all-reduce through host memory (clopt__dist_host_reducer): works for any mix of
 * replicas, host or OpenCL, on one or several platforms. */
#include "dist_internal.h"

/* Sums launch i's processed gradients over the replicas into every replica's scratch: one read
 * per replica, the sum in replica order in the element's dtype (float for 16-bit ones), one
 * write per replica. Pairs may sit at other offsets on another replica: each is summed at its
 * own offsets. */
static clopt_status host_reduce(clopt_mirrored_optimizer *m, size_t i) {
    const size_t n = m->s->n;
    const clopt__plan *p0 = &clopt__dist_stepper(m, 0)->plan;
    const clopt__plan_launch *pl0 = &p0->launches[i];
    const clopt_dtype dt = pl0->dtype;
    const size_t es = clopt_dtype_size(dt);
    size_t lo[MAX_REPLICAS], hi[MAX_REPLICAS];
    for (size_t r = 0; r < n; r++) {
        clopt_context *ctx = m->r[r].opt->ctx;
        clopt__dist_launch_span(&clopt__dist_stepper(m, r)->plan, i, &lo[r], &hi[r]);
        if (ctx->ops->read(ctx, m->r[r].scratch[i], lo[r] * es, m->host[r] + lo[r] * es,
                           (hi[r] - lo[r]) * es) != CLOPT_OK)
            return clopt__dist_fail_replica(m->s, r, CLOPT_ERR_OPENCL);
    }
    for (size_t k = pl0->range_base; k < pl0->range_base + pl0->nranges; k++) {
        const size_t count = p0->grads[k]->padded;
        for (size_t e = 0; e < count; e++) {
            double sum = 0;
            float sumf = 0;
            for (size_t r = 0; r < n; r++) {
                const size_t at = clopt__dist_stepper(m, r)->plan.grads[k]->offset + e;
                const double x = clopt__elem_load(m->host[r], dt, at);
                sum += x;
                sumf += (float)x;
            }
            if (dt != CLOPT_FLOAT64) sum = sumf;
            if (m->op == CLOPT_REDUCE_MEAN)
                sum = dt == CLOPT_FLOAT64 ? sum / (double)n : (double)(sumf / (float)n);
            for (size_t r = 0; r < n; r++) {
                const size_t at = clopt__dist_stepper(m, r)->plan.grads[k]->offset + e;
                clopt__elem_store(m->host[r], dt, at, sum);
            }
        }
    }
    for (size_t r = 0; r < n; r++) {
        clopt_context *ctx = m->r[r].opt->ctx;
        if (ctx->ops->write(ctx, m->r[r].scratch[i], lo[r] * es, m->host[r] + lo[r] * es,
                            (hi[r] - lo[r]) * es) != CLOPT_OK)
            return clopt__dist_fail_replica(m->s, r, CLOPT_ERR_OPENCL);
    }
    return CLOPT_OK;
}

const clopt__dist_reducer clopt__dist_host_reducer = {.name = "host",
                                                      .reduce_launch = host_reduce};
