/* The all-reduce of a mirrored optimizer as a whole: which reducer (dist_internal.h) it uses,
 * every launch group through it, and its counters (clopt_mirrored_optimizer_all_reduce_stats). */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <string.h>
#include <time.h>
#include "dist_internal.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Every replica's queue drained (for timing). */
static clopt_status finish_all(clopt_mirrored_optimizer *m) {
    for (size_t r = 0; r < m->s->n; r++) {
        clopt_context *ctx = m->r[r].opt->ctx;
        if (ctx->ops->finish(ctx) != CLOPT_OK)
            return clopt__dist_fail_replica(m->s, r, CLOPT_ERR_OPENCL);
    }
    return CLOPT_OK;
}

clopt_status clopt__dist_all_reduce(clopt_mirrored_optimizer *m) {
    const clopt__plan *p0 = &clopt__dist_stepper(m, 0)->plan;
    clopt_status st = m->timing ? finish_all(m) : CLOPT_OK;
    const double t0 = m->timing ? now() : 0;
    uint64_t bytes = 0;
    for (size_t i = 0; st == CLOPT_OK && i < p0->nlaunches; i++) {
        size_t lo, hi;
        clopt__dist_launch_span(p0, i, &lo, &hi);
        if (hi > lo) bytes += (hi - lo) * clopt_dtype_size(p0->launches[i].dtype);
        st = m->reducer->reduce_launch(m, i);
    }
    if (st == CLOPT_OK && m->timing && (st = finish_all(m)) == CLOPT_OK)
        m->stats.seconds += now() - t0;
    if (st != CLOPT_OK) return st;
    m->stats.steps++;
    m->stats.launches += p0->nlaunches;
    m->stats.bytes += bytes;
    return CLOPT_OK;
}

clopt_status clopt_mirrored_optimizer_set_all_reduce(clopt_mirrored_optimizer *m,
                                                     const char *how) {
    if (!m) return CLOPT_ERR_INVALID_ARGUMENT;
    clopt_strategy *s = m->s;
    if (!how)
        return clopt__dist_fail(s, CLOPT_ERR_INVALID_ARGUMENT, "set_all_reduce: how is NULL");
    if (strcmp(how, "auto") == 0) {
        m->reducer = s->reducer;
    } else if (s->reducer != &clopt__dist_host_reducer &&
               s->reducer != &clopt__dist_device_reducer) {
        return clopt__dist_fail(s, CLOPT_ERR_UNSUPPORTED,
                                "set_all_reduce: this strategy's all-reduce is '%s' (across "
                                "processes); only 'auto' applies",
                                s->reducer->name);
    } else if (strcmp(how, "host") == 0) {
        m->reducer = &clopt__dist_host_reducer;
    } else if (strcmp(how, "device") == 0) {
        if (!clopt__dist_device_usable(s))
            return clopt__dist_fail(s, CLOPT_ERR_UNSUPPORTED,
                        "set_all_reduce: 'device' needs every replica in one shared cl_context "
                        "(OpenCL devices of one platform, CLOPT_DIST_SHARE not 0)");
        m->reducer = &clopt__dist_device_reducer;
    } else {
        return clopt__dist_fail(s, CLOPT_ERR_INVALID_ARGUMENT,
                    "set_all_reduce: '%s' is not an all-reduce (host, device or auto)", how);
    }
    return CLOPT_OK;
}

const char *clopt_mirrored_optimizer_all_reduce(const clopt_mirrored_optimizer *m) {
    return m ? m->reducer->name : "";
}

clopt_status clopt_mirrored_optimizer_set_all_reduce_timing(clopt_mirrored_optimizer *m,
                                                            int on) {
    if (!m) return CLOPT_ERR_INVALID_ARGUMENT;
    m->timing = on != 0;
    memset(&m->stats, 0, sizeof m->stats);
    return CLOPT_OK;
}

clopt_status clopt_mirrored_optimizer_all_reduce_stats(const clopt_mirrored_optimizer *m,
                                                       clopt_all_reduce_stats *out) {
    if (!m || !out) return CLOPT_ERR_INVALID_ARGUMENT;
    *out = m->stats;
    return CLOPT_OK;
}
