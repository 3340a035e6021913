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
    /* The hooks below are for transports whose replicas live in other processes (MPI); NULL
     * in one process. Each is a collective: every process calls it at the same point with its
     * local outcome `st`, and every process returns the same status (the first failing
     * process's, its message naming it), so that no process waits in a collective another
     * has left. */
    /* A mirrored variable was made (st) in every local replica: agree, then copy the first
     * replica's contents to every process's (v: the local replicas' copies, NULL on failure). */
    clopt_status (*variable_created)(clopt_strategy *s, clopt_status st, clopt_variable **v);
    /* Build was done locally (st): agree, and check that every process has the same signature
     * (optimizer config; names, dtypes and shapes of vars, in order). */
    clopt_status (*built)(clopt_mirrored_optimizer *m, clopt_status st,
                          clopt_variable *const *vars, size_t n);
    /* apply's inputs were checked locally (st): agree on the status, on n, on whether apply
     * builds, and on which gradients are present (grads: the first local replica's row of n;
     * vars: apply's, or NULL). */
    clopt_status (*inputs_agreed)(clopt_mirrored_optimizer *m, clopt_status st,
                                  clopt_variable *const *grads, clopt_variable *const *vars,
                                  size_t n);
    /* apply's plans were prepared locally (st): agree, and that every process grouped its
     * gradients alike (the launches' dtypes and element counts). */
    clopt_status (*prepared)(clopt_mirrored_optimizer *m, clopt_status st);
    /* LossScaleOptimizer: *finite is this process's decision; make it every process's AND. */
    clopt_status (*finite_agreed)(clopt_mirrored_optimizer *m, clopt_status st, int *finite);
    /* A step's stages ran locally (st): agree, so that a device failure on one process fails
     * every process alike. exchanged: 0 after the local stages, before any exchange (nothing
     * was shared: every process returns the failing one's status); 1 at the step's end, after
     * the exchange and the update (a failure there left the processes' replicas different:
     * every process returns CLOPT_ERR_REPLICAS_DIVERGED). */
    clopt_status (*step_agreed)(clopt_mirrored_optimizer *m, clopt_status st, int exchanged);
    /* CLOPT_DIST_CHECK: this process's replicas agreed among themselves (st) and hash[k] is
     * the checksum of its first replica's k-th checked variable (names[k]; hash has room for
     * 2k entries, the second k the hook's): compare every process's, failing alike with
     * CLOPT_ERR_REPLICAS_DIVERGED naming a rank and the variable. */
    clopt_status (*checked)(clopt_mirrored_optimizer *m, clopt_status st, uint64_t *hash,
                            const char *const *names, size_t k);
    /* Releases the transport's state in s->transport. */
    void (*destroy)(clopt_strategy *s);
} clopt__dist_reducer;

/* Through host memory: one read and one write per replica and launch. */
extern const clopt__dist_reducer clopt__dist_host_reducer;

struct clopt_strategy {
    size_t n;
    clopt_context *ctx[MAX_REPLICAS];
    int shared; /* every replica in ctx[0] (clopt_strategy_create_replicated) */
    int check;  /* CLOPT_DIST_CHECK: compare the replicas after every step */
    const clopt__dist_reducer *reducer; /* given to every optimizer made over the strategy */
    size_t world; /* replicas in sync over every process (0: n, one process) */
    size_t first; /* the global index of local replica 0 */
    void *transport; /* the reducer's own state (MPI: communicator, buffers) */
    int fault;           /* tests only: CLOPT__DIST_FAULT_TEST's stage (clopt__dist_fault) */
    size_t fault_replica; /* and the global replica it fails */
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
    int disagreed; /* a transport's build found the processes' signatures differ: apply refuses */
    /* A reducer's failure after its exchange (writing the reduced gradients back), held so
     * that the step's remaining collectives still run; the step ends on it (step_agreed). */
    clopt_status late;
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

/* Test-only fault injection (tests/mpi): CLOPT__DIST_FAULT_TEST="STAGE:R", read when the
 * strategy is made, makes global replica R fail with CLOPT_ERR_OPENCL at STAGE: "local" (after
 * its stages, before the reduce), "read" (reading its gradients for the reduce), "write"
 * (writing the reduced ones back) or "shared" (after its update). Not a user setting. */
enum { CLOPT__FAULT_NONE, CLOPT__FAULT_LOCAL, CLOPT__FAULT_READ, CLOPT__FAULT_WRITE,
       CLOPT__FAULT_SHARED };
/* CLOPT_ERR_OPENCL (with s's error saying so) when local replica r of s fails at `stage`,
 * else CLOPT_OK. */
clopt_status clopt__dist_fault(clopt_strategy *s, int stage, size_t r);

/* Formats the strategy's error message and returns st. */
clopt_status clopt__dist_fail(clopt_strategy *s, clopt_status st, const char *fmt, ...)
    CLOPT__PRINTF(3, 4);
/* A failure that replica r's context reported: its message, with the replica named. */
clopt_status clopt__dist_fail_replica(clopt_strategy *s, size_t r, clopt_status st);
/* The optimizer whose stages run on replica r: a LossScaleOptimizer's inner one, else itself. */
clopt_optimizer *clopt__dist_stepper(const clopt_mirrored_optimizer *m, size_t r);
/* Row r of the replica-major list vars (n a row) names row 0's variables: the same names,
 * dtypes and shapes, in order. NULL entries are passed over (the callers' own checks name
 * them). A difference fails with `st` and a message that starts with `what` and names the
 * variable and both replicas. Shared by build and apply (strategy.c) and the checkpoints. */
clopt_status clopt__dist_check_row(clopt_strategy *s, clopt_variable *const *vars, size_t n,
                                   size_t r, clopt_status st, const char *what);
/* The elements [*lo, *hi) of launch i's gradient block that its pairs cover (padded). */
void clopt__dist_launch_span(const clopt__plan *p, size_t i, size_t *lo, size_t *hi);

#endif
