/* Internal to src/dist: the strategy's and the mirrored optimizer's state, and the seam where
 * a transport plugs in its all-reduce (clopt__dist_reducer: host memory in one process today;
 * device-to-device copies over a shared cl_context, or MPI across processes, beside it). */
#ifndef CLOPT_DIST_INTERNAL_H
#define CLOPT_DIST_INTERNAL_H

#include "clopt/distribute.h"
#include "../optim/optim_internal.h"

#define MAX_REPLICAS 64

typedef struct clopt_mirrored_optimizer clopt_mirrored_optimizer;

/* How the processed gradients of one plan launch, in every local replica's scratch[launch],
 * become their sum (or mean, m->op) in every replica's scratch[launch]. The sum runs in replica
 * order so that a run is deterministic and every replica gets the same bits. */
typedef struct clopt__dist_reducer {
    const char *name;
    clopt_status (*reduce_launch)(clopt_mirrored_optimizer *m, size_t launch);
} clopt__dist_reducer;

/* Through host memory: one read and one write per replica and launch. */
extern const clopt__dist_reducer clopt__dist_host_reducer;

struct clopt_strategy {
    size_t n;
    clopt_context *ctx[MAX_REPLICAS];
    int shared; /* every replica in ctx[0] (clopt_strategy_create_replicated) */
    int check;  /* CLOPT_DIST_CHECK: compare the replicas after every step */
    const clopt__dist_reducer *reducer; /* given to every optimizer made over the strategy */
    struct clopt_mirrored_optimizer *opts; /* alive, destroyed with the strategy */
    char error[1024];
};

/* Per replica: one scratch buffer per plan launch (the processed, then reduced, gradients at
 * the gradient block's offsets). */
typedef struct replica_state {
    clopt_optimizer *opt;
    void **scratch;
    size_t *scratch_bytes;
    size_t nscratch;
} replica_state;

struct clopt_mirrored_optimizer {
    clopt_strategy *s;
    clopt_reduction op;
    const clopt__dist_reducer *reducer;
    replica_state r[MAX_REPLICAS];
    unsigned char *host[MAX_REPLICAS]; /* host staging, host_cap bytes each */
    size_t host_cap;
    struct clopt_mirrored_optimizer *next;
    /* The device reducer's buffers on replica 0's device (device_reduce.c), the counters
     * (all_reduce.c) and whether steps time their reduce. */
    struct clopt__dist_device *dev;
    clopt_all_reduce_stats stats;
    int timing;
};

/* Within one shared cl_context (src/backend/opencl/ocl_group.c): copies to replica 0's device,
 * the sum there, copies back (device_reduce.c). */
extern const clopt__dist_reducer clopt__dist_device_reducer;
/* After clopt_strategy_create opened the replicas: unless CLOPT_DIST_SHARE is "0", replicas on
 * one OpenCL platform share a cl_context, and the device reducer is the strategy's when that
 * holds every replica (device_reduce.c). A platform that refuses keeps separate contexts. */
void clopt__dist_device_setup(clopt_strategy *s);
/* Whether every replica is in one shared cl_context (the device reducer can run). */
int clopt__dist_device_usable(const clopt_strategy *s);
/* Frees the device reducer's buffers of m (with m). */
void clopt__dist_device_release(clopt_mirrored_optimizer *m);
/* Every launch group through m's reducer, counted (and timed: all_reduce.c). */
clopt_status clopt__dist_all_reduce(clopt_mirrored_optimizer *m);

/* Formats the strategy's error message and returns st. */
clopt_status clopt__dist_fail(clopt_strategy *s, clopt_status st, const char *fmt, ...)
    CLOPT__PRINTF(3, 4);
/* A failure that replica r's context reported: its message, with the replica named. */
clopt_status clopt__dist_fail_replica(clopt_strategy *s, size_t r, clopt_status st);
/* The optimizer whose stages run on replica r: a LossScaleOptimizer's inner one, else itself. */
clopt_optimizer *clopt__dist_stepper(const clopt_mirrored_optimizer *m, size_t r);
/* The elements [*lo, *hi) of launch i's gradient block that its pairs cover (padded). */
void clopt__dist_launch_span(const clopt__plan *p, size_t i, size_t *lo, size_t *hi);

#endif
