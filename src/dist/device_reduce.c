/* The all-reduce on the devices (clopt__dist_device_reducer), for replicas that share one
 * cl_context (src/backend/opencl/ocl_group.c): per launch group, replica 0's device gathers the
 * other replicas' processed gradients with device-to-device copies, sums them in replica order
 * (((0 + x0) + x1) + ..., in float for float32 and the 16-bit dtypes, double for float64: the
 * host reducer's arithmetic, so the same bits; float32 and float64 in place in replica 0's
 * gradients, 16-bit dtypes through a float accumulator), and every replica copies the sum back.
 *
 * ReductionToOneDevice rather than a ring: a ring's reduce-scatter sums each chunk starting at
 * another replica (x1 + x2 + x0 for one chunk, x2 + x0 + x1 for the next), so its bits would
 * depend on the chunk and differ from the host reducer's; keeping replica order in a ring turns
 * it into a chain, whose n - 1 sequential hops are no faster on the devices this was measured on
 * (POCL CPU devices: one memory, the copies are memcpy). The queues are ordered by events, not
 * by waiting on the host. */
#include <CL/cl.h>
#include <stdlib.h>
#include <string.h>
#include "clopt/clopt_cl.h"
#include "dist_internal.h"

struct clopt__dist_device {
    clopt_context *ctx; /* replica 0's, which owns the buffers */
    void *stage[MAX_REPLICAS]; /* replica r's gradients on replica 0's device (r >= 1) */
    void *acc;                  /* the running sum, in the dtype's real */
    size_t stage_bytes, acc_bytes;
};

static int is_opencl(const clopt_context *ctx) { return ctx->ops == &clopt__opencl_backend; }

static cl_platform_id platform_of(clopt_context *ctx) {
    cl_command_queue q;
    cl_device_id d;
    cl_platform_id p = NULL;
    if (clopt_context_cl_queue(ctx, &q) != CLOPT_OK ||
        clGetCommandQueueInfo(q, CL_QUEUE_DEVICE, sizeof d, &d, NULL) != CL_SUCCESS ||
        clGetDeviceInfo(d, CL_DEVICE_PLATFORM, sizeof p, &p, NULL) != CL_SUCCESS)
        return NULL;
    return p;
}

void clopt__dist_device_setup(clopt_strategy *s) {
    const char *env = getenv("CLOPT_DIST_SHARE");
    if ((env && strcmp(env, "0") == 0) || s->shared) return;
    int done[MAX_REPLICAS] = {0};
    for (size_t r = 0; r < s->n; r++) {
        if (done[r] || !is_opencl(s->ctx[r])) continue;
        clopt_context *group[MAX_REPLICAS];
        size_t k = 0;
        const cl_platform_id p = platform_of(s->ctx[r]);
        for (size_t q = r; q < s->n; q++)
            if (!done[q] && is_opencl(s->ctx[q]) && platform_of(s->ctx[q]) == p)
                group[k++] = s->ctx[q], done[q] = 1;
        if (p && k > 1) clopt__ocl_group_share(group, k); /* refused: separate contexts */
    }
    if (s->n > 1 && clopt__dist_device_usable(s)) s->reducer = &clopt__dist_device_reducer;
}

int clopt__dist_device_usable(const clopt_strategy *s) {
    for (size_t r = 0; r < s->n; r++)
        if (!clopt__ocl_group_same(s->ctx[0], s->ctx[r])) return 0;
    return 1;
}

void clopt__dist_device_release(clopt_mirrored_optimizer *m) {
    struct clopt__dist_device *d = m->dev;
    if (!d) return;
    for (size_t r = 0; r < MAX_REPLICAS; r++)
        if (d->stage[r]) d->ctx->ops->buffer_release(d->ctx, d->stage[r]);
    if (d->acc) d->ctx->ops->buffer_release(d->ctx, d->acc);
    free(d);
    m->dev = NULL;
}

/* float32 and float64 sum in place: their dtype is the sum's (one replica: through the
 * accumulator, which makes the host's 0 + x0). */
static int in_place(clopt_dtype dt, size_t n) {
    return n > 1 && (dt == CLOPT_FLOAT32 || dt == CLOPT_FLOAT64);
}

/* Replica 0's buffers for a span of `count` elements of dtype dt. */
static clopt_status ensure_buffers(clopt_mirrored_optimizer *m, clopt_dtype dt, size_t count) {
    clopt_context *ctx = m->r[0].opt->ctx;
    if (!m->dev && !(m->dev = calloc(1, sizeof *m->dev)))
        return clopt__dist_fail(m->s, CLOPT_ERR_OUT_OF_MEMORY, "apply: out of memory");
    struct clopt__dist_device *d = m->dev;
    d->ctx = ctx;
    const size_t sb = count * clopt_dtype_size(dt);
    const size_t ab = count * clopt_dtype_size(clopt__real_dtype(dt));
    const int grow = sb > d->stage_bytes;
    for (size_t r = 1; r < m->s->n; r++) {
        if (d->stage[r] && !grow) continue;
        if (d->stage[r]) ctx->ops->buffer_release(ctx, d->stage[r]);
        d->stage[r] = NULL;
        if (ctx->ops->buffer_create(ctx, grow ? sb : d->stage_bytes, &d->stage[r]) != CLOPT_OK)
            return clopt__dist_fail_replica(m->s, 0, CLOPT_ERR_OUT_OF_MEMORY);
    }
    if (grow) d->stage_bytes = sb;
    if (in_place(dt, m->s->n) || (d->acc && ab <= d->acc_bytes)) return CLOPT_OK;
    if (d->acc) ctx->ops->buffer_release(ctx, d->acc);
    d->acc = NULL;
    d->acc_bytes = 0;
    if (ctx->ops->buffer_create(ctx, ab, &d->acc) != CLOPT_OK)
        return clopt__dist_fail_replica(m->s, 0, CLOPT_ERR_OUT_OF_MEMORY);
    d->acc_bytes = ab;
    return CLOPT_OK;
}

/* Launch i's gradients sit at the same offsets on every replica (one copy per replica). */
static int same_layout(const clopt_mirrored_optimizer *m, size_t i) {
    const clopt__plan *p0 = &clopt__dist_stepper(m, 0)->plan;
    const clopt__plan_launch *pl = &p0->launches[i];
    for (size_t r = 1; r < m->s->n; r++)
        for (size_t k = pl->range_base; k < pl->range_base + pl->nranges; k++)
            if (clopt__dist_stepper(m, r)->plan.grads[k]->offset != p0->grads[k]->offset)
                return 0;
    return 1;
}

static clopt_status device_reduce(clopt_mirrored_optimizer *m, size_t i) {
    if (!same_layout(m, i)) return clopt__dist_host_reducer.reduce_launch(m, i);
    const size_t n = m->s->n;
    const clopt__plan *p0 = &clopt__dist_stepper(m, 0)->plan;
    const clopt_dtype dt = p0->launches[i].dtype;
    const size_t es = clopt_dtype_size(dt);
    size_t lo, hi;
    clopt__dist_launch_span(p0, i, &lo, &hi);
    if (hi <= lo) return CLOPT_OK;
    const size_t count = hi - lo, bytes = count * es;
    clopt_status st = ensure_buffers(m, dt, count);
    if (st != CLOPT_OK) return st;
    clopt_context *root = m->r[0].opt->ctx;
    void *const sum = m->r[0].scratch[i];
    size_t fail = 0; /* the replica whose context reports the failure */
    for (size_t r = 1; st == CLOPT_OK && r < n; r++) { /* gather */
        clopt_context *ctx = m->r[r].opt->ctx;
        if ((st = clopt__ocl_group_wait(root, ctx)) != CLOPT_OK) fail = r;
        if (st == CLOPT_OK)
            st = clopt__ocl_group_copy(root, m->r[r].scratch[i], lo * es, m->dev->stage[r], 0,
                                       bytes);
    }
    const int mean = m->op == CLOPT_REDUCE_MEAN;
    if (in_place(dt, n)) { /* the sum in replica 0's gradients: one pass per replica */
        for (size_t r = 1; st == CLOPT_OK && r < n; r++)
            st = clopt__ocl_group_add_into(root, dt, sum, lo, m->dev->stage[r], 0, count, r == 1,
                                           r == n - 1, n, mean);
    } else { /* 16-bit dtypes sum in float, as the host: through the accumulator */
        if (st == CLOPT_OK) st = clopt__ocl_group_add(root, dt, m->dev->acc, sum, lo, count, 1);
        for (size_t r = 1; st == CLOPT_OK && r < n; r++)
            st = clopt__ocl_group_add(root, dt, m->dev->acc, m->dev->stage[r], 0, count, 0);
        if (st == CLOPT_OK)
            st = clopt__ocl_group_store(root, dt, sum, lo, m->dev->acc, count, n, mean);
    }
    for (size_t r = 1; st == CLOPT_OK && r < n; r++) { /* broadcast */
        clopt_context *ctx = m->r[r].opt->ctx;
        st = clopt__ocl_group_wait(ctx, root);
        if (st == CLOPT_OK)
            st = clopt__ocl_group_copy(ctx, sum, lo * es, m->r[r].scratch[i], lo * es, bytes);
        if (st != CLOPT_OK) fail = r;
    }
    /* replica 0's next writes to its gradients wait for the copies out of them */
    for (size_t r = 1; st == CLOPT_OK && r < n; r++)
        if ((st = clopt__ocl_group_wait(root, m->r[r].opt->ctx)) != CLOPT_OK) fail = r;
    return st == CLOPT_OK ? CLOPT_OK : clopt__dist_fail_replica(m->s, fail, st);
}

const clopt__dist_reducer clopt__dist_device_reducer = {.name = "device",
                                                         .reduce_launch = device_reduce};
