/* clopt: data-parallel training over several devices of one process (tf.distribute's
 * MirroredStrategy with Keras 3 on TensorFlow's optimizer semantics). */
#ifndef CLOPT_DISTRIBUTE_H
#define CLOPT_DISTRIBUTE_H

#include <stddef.h>
#include <stdint.h>
#include "clopt/export.h"
#include "clopt/status.h"
#include "clopt/context.h"
#include "clopt/variable.h"
#include "clopt/optimizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A set of replicas, one per device, each with its own context. Variables made through it are
 * mirrored: one copy per replica, identical at creation; an optimizer made through it keeps one
 * copy of its slots per replica and applies the same update on every replica, so the copies stay
 * bitwise identical. Opaque. Not thread-safe: one thread drives all replicas. */
typedef struct clopt_strategy clopt_strategy;

/* An optimizer over mirrored variables: one clopt_optimizer per replica (its slots mirrored),
 * moved on together (one iteration count). Its slots stay bitwise identical on every replica but
 * the gradient accumulators (gradient_accumulation_steps), which are each replica's own, as in
 * Keras. Opaque. */
typedef struct clopt_mirrored_optimizer clopt_mirrored_optimizer;

/* How apply combines the replicas' gradients. SUM is Keras's contract (each replica's loss is
 * already divided by the global batch: clopt_strategy_loss_scale); MEAN divides the sum by the
 * number of replicas. */
typedef enum clopt_reduction { CLOPT_REDUCE_SUM = 0, CLOPT_REDUCE_MEAN = 1 } clopt_reduction;

/* Opens one replica per device of a comma-separated list of device specs (each as
 * clopt_context_create takes it: "pocl:cpu:0,pocl:cpu:1", or "host,host" for host replicas).
 * Replica r is the r-th spec. An OpenCL device may appear once only; "host" any number of times
 * (each host replica has its own memory).
 *   devices: borrowed, NUL-terminated, 1 to 64 specs. out: written only on success.
 * Returns CLOPT_OK, CLOPT_ERR_INVALID_ARGUMENT (NULL, an empty spec, more than 64, or the same
 * OpenCL device twice), CLOPT_ERR_DEVICE_NOT_FOUND, CLOPT_ERR_OPENCL or
 * CLOPT_ERR_OUT_OF_MEMORY; the reason is kept in clopt_last_create_error. Since v0.2. */
CLOPT_API clopt_status clopt_strategy_create(const char *devices, clopt_strategy **out);

/* Opens n replicas that share one context on one device (as clopt_context_create takes
 * `device`): the same steps as n devices, each replica with its own copies, to replay a
 * multi-replica run on one device or to test one. Gradients of any replica are variables of that
 * one context.
 * Returns CLOPT_OK, CLOPT_ERR_INVALID_ARGUMENT (out NULL, n not in 1..64) or what
 * clopt_context_create returns. Since v0.2. */
CLOPT_API clopt_status clopt_strategy_create_replicated(const char *device, size_t n,
                                                        clopt_strategy **out);

/* Destroys the strategy, its contexts and everything still alive in them. NULL is allowed.
 * Since v0.2. */
CLOPT_API void clopt_strategy_destroy(clopt_strategy *s);

/* The number of replicas (0 for NULL). Since v0.2. */
CLOPT_API size_t clopt_strategy_num_replicas(const clopt_strategy *s);

/* Replica r's context (borrowed; NULL when r is out of range). Gradients for replica r must be
 * variables of this context. Since v0.2. */
CLOPT_API clopt_context *clopt_strategy_context(const clopt_strategy *s, size_t replica);

/* The message of the last failure of a strategy or mirrored-optimizer call, naming the replica;
 * "" if none. Valid until the next call on the strategy. Since v0.2. */
CLOPT_API const char *clopt_strategy_last_error(const clopt_strategy *s);

/* The factor each replica multiplies its loss by under the SUM contract: 1/num_replicas, so that
 * the summed gradients are those of the mean loss over the global batch (Keras's
 * scale_loss_for_distribution; compute_average_loss divides by the global batch, which is the
 * same when every replica has batch/num_replicas examples). 0 for NULL. Since v0.2. */
CLOPT_API double clopt_strategy_loss_scale(const clopt_strategy *s);

/* Creates a mirrored variable: one variable per replica, in replica r's context, each with
 * `init_or_NULL` as its contents (as clopt_variable_create).
 *   out: an array of num_replicas entries, replica order; written only on success. Destroy
 *     each with clopt_variable_destroy (or let clopt_strategy_destroy do it).
 * Returns what clopt_variable_create returns; on failure no replica's variable exists.
 * Since v0.2. */
CLOPT_API clopt_status clopt_strategy_variable_create(clopt_strategy *s, const char *name,
                                                      clopt_dtype dtype, int ndim,
                                                      const int64_t *shape,
                                                      const void *init_or_NULL,
                                                      clopt_variable **out);

/* Creates a mirrored optimizer from a Keras config (as clopt_optimizer_from_config), one copy per
 * replica. A LossScaleOptimizer decides on the host, over every replica's gradients before the
 * sum: a non-finite element on any replica skips the step on every replica, and every replica
 * moves its scale alike (Keras's code reads the first replica's flag only).
 *   out: written only on success.
 * Returns what clopt_optimizer_from_config returns, or CLOPT_ERR_UNSUPPORTED for a wrapper
 * class other than LossScaleOptimizer. Since v0.2. */
CLOPT_API clopt_status clopt_strategy_optimizer_from_config(clopt_strategy *s, const char *json,
                                                            clopt_mirrored_optimizer **out);

/* Destroys a mirrored optimizer and its replicas' slots. NULL is allowed. Since v0.2. */
CLOPT_API void clopt_mirrored_optimizer_destroy(clopt_mirrored_optimizer *m);

/* Replica r's optimizer (borrowed; NULL when r is out of range): read its slots and variable
 * list with the clopt_optimizer_* calls. Apply only through clopt_mirrored_optimizer_apply, or
 * the replicas part ways. Since v0.2. */
CLOPT_API clopt_optimizer *clopt_mirrored_optimizer_replica(const clopt_mirrored_optimizer *m,
                                                            size_t replica);

/* Sets how gradients are combined (default CLOPT_REDUCE_SUM, Keras's).
 * Returns CLOPT_OK or CLOPT_ERR_INVALID_ARGUMENT. Since v0.2. */
CLOPT_API clopt_status clopt_mirrored_optimizer_set_reduction(clopt_mirrored_optimizer *m,
                                                              clopt_reduction op);

/* The iteration count, which every replica shares (-1 for NULL). Since v0.2. */
CLOPT_API int64_t clopt_mirrored_optimizer_iterations(const clopt_mirrored_optimizer *m);

/* Builds every replica on its copies of the mirrored variables.
 *   vars: num_replicas rows of n variables, replica-major (vars[r * n + i] is replica r's copy
 *     of variable i, a variable of replica r's context); every row must name the same
 *     variables (names, dtypes, shapes) in the same order.
 * Returns what clopt_optimizer_build returns, with the replica named. Since v0.2. */
CLOPT_API clopt_status clopt_mirrored_optimizer_build(clopt_mirrored_optimizer *m,
                                                      clopt_variable *const *vars, size_t n);

/* One step with per-replica gradients, in Keras 3 on TensorFlow's order: each replica unscales
 * its own gradients (loss_scale_factor), accumulates them (gradient_accumulation_steps: one
 * accumulator per replica; a step that only accumulates stops there) and clips them (clipnorm,
 * global_clipnorm, clipvalue: over its own gradients); then the gradients are all-reduced,
 * summed in replica order r0 + r1 + ... in the variable's dtype (so a run is deterministic),
 * and every replica applies weight decay and the update alike. The all-reduce goes through host
 * memory, one read and one write per replica and launch group, or runs on the devices when the
 * replicas share a cl_context (clopt_mirrored_optimizer_set_all_reduce); the same bits.
 *   grads: nreplicas rows of n gradients, replica-major; grads[r * n + i] is a variable of
 *     replica r's context, or NULL for a missing gradient, which must be missing on every
 *     replica.
 *   vars: the same layout as grads (a row per replica) or NULL for the built list.
 * Every input is checked on every replica before anything changes; a failure names the replica.
 * With the environment variable CLOPT_DIST_CHECK set (not "0") when the strategy was created,
 * every step then compares each replica's variables and slots with replica 0's (by checksum,
 * read back: slow) and returns CLOPT_ERR_REPLICAS_DIVERGED naming the first that differs.
 * Returns CLOPT_OK, CLOPT_ERR_INVALID_ARGUMENT (NULL, or a gradient missing on some replicas
 * only), CLOPT_ERR_LENGTH_MISMATCH (nreplicas is not the number of replicas), the statuses of
 * clopt_optimizer_apply (CLOPT_ERR_CONTEXT_MISMATCH for a gradient of another replica's context),
 * CLOPT_ERR_UNSUPPORTED (replicas whose variables are laid out differently in memory),
 * CLOPT_ERR_REPLICAS_DIVERGED (CLOPT_DIST_CHECK, after the step) or a
 * device error (then the replicas may differ: restore them from a checkpoint). Since v0.2. */
CLOPT_API clopt_status clopt_mirrored_optimizer_apply(clopt_mirrored_optimizer *m,
                                                      clopt_variable *const *grads,
                                                      size_t nreplicas,
                                                      clopt_variable *const *vars, size_t n);

/* ---- The all-reduce's transport, its counters, and checkpoints (since v0.3) ---- */

/* Replicas of clopt_strategy_create on one OpenCL platform share one cl_context (each keeps its
 * own device and queue), unless the environment variable CLOPT_DIST_SHARE is "0" when the
 * strategy is made. When every replica is in that one shared context, the all-reduce runs on the
 * devices ("device"): device-to-device copies of each launch group's gradients to replica 0's
 * device, a sum kernel in replica order in the same float arithmetic as the host reducer (so
 * the bits are the same), and copies back to every replica. Otherwise it goes through host
 * memory ("host"). */

/* Chooses the all-reduce of a mirrored optimizer: "host", "device" (every replica's context
 * must be in one shared cl_context) or "auto" (the strategy's choice, the default). Both give
 * the same bits.
 * Returns CLOPT_OK, CLOPT_ERR_INVALID_ARGUMENT (NULL, or another name) or CLOPT_ERR_UNSUPPORTED
 * ("device" where the replicas do not share a cl_context); on failure nothing changes.
 * Since v0.3. */
CLOPT_API clopt_status clopt_mirrored_optimizer_set_all_reduce(clopt_mirrored_optimizer *m,
                                                               const char *how);

/* The name of the all-reduce in use: "host" or "device" ("" for NULL). Since v0.3. */
CLOPT_API const char *clopt_mirrored_optimizer_all_reduce(const clopt_mirrored_optimizer *m);

/* Counters of a mirrored optimizer's all-reduces since it was made or its timing last set. */
typedef struct clopt_all_reduce_stats {
    uint64_t steps;    /* steps that reduced (not those that only accumulated, or were skipped) */
    uint64_t launches; /* launch groups reduced */
    uint64_t bytes;    /* gradient bytes reduced, each counted once (not once per replica) */
    double seconds;    /* wall time of the reduces, with timing on; else 0 */
} clopt_all_reduce_stats;

/* Timing on: every step finishes every replica's queue before and after its all-reduce and adds
 * the time between to the counters (slower: for benchmarks). Resets the counters.
 * Returns CLOPT_OK or CLOPT_ERR_INVALID_ARGUMENT (NULL). Since v0.3. */
CLOPT_API clopt_status clopt_mirrored_optimizer_set_all_reduce_timing(clopt_mirrored_optimizer *m,
                                                                      int on);

/* The counters. Returns CLOPT_OK or CLOPT_ERR_INVALID_ARGUMENT (NULL). Since v0.3. */
CLOPT_API clopt_status clopt_mirrored_optimizer_all_reduce_stats(const clopt_mirrored_optimizer *m,
                                                                 clopt_all_reduce_stats *out);

/* Saves a training state as clopt_checkpoint_save does (one safetensors file, written
 * atomically: a temporary file, then a rename), from replica 0: its optimizer state and its
 * copies of the model variables, which every replica holds bitwise alike (the gradient
 * accumulators, each replica's own, are saved as replica 0's).
 *   vars: NULL (n 0: the optimizer only) or num_replicas rows of n model variables,
 *     replica-major as clopt_mirrored_optimizer_build takes them; only row 0 is read.
 * Returns what clopt_checkpoint_save returns (CLOPT_ERR_INVALID_ARGUMENT for NULL m or path);
 * the message is in clopt_strategy_last_error. Since v0.3. */
CLOPT_API clopt_status clopt_mirrored_optimizer_checkpoint_save(clopt_mirrored_optimizer *m,
                                                                clopt_variable *const *vars,
                                                                size_t n, const char *path);

/* Loads a file of clopt_mirrored_optimizer_checkpoint_save (or clopt_checkpoint_save) into every
 * replica: slots, iteration count, learning rate, loss scale and, with vars, the model
 * variables; every replica gets the same bits (the gradient accumulators too: the file's).
 *   vars: as for the save; every row is written and must name the same variables (names,
 *     dtypes, shapes) as row 0, row r in replica r's context.
 * Every row is checked, and the file read and checked against replica 0 (all of
 * clopt_checkpoint_load's checks), before anything changes: a bad file, or one that does not fit,
 * changes no replica. The other replicas then load the same file; only a device error or a file
 * replaced in between can fail there (the replicas may then differ: load again).
 * Returns what clopt_checkpoint_load returns (CLOPT_ERR_INVALID_ARGUMENT for NULL m or path, a
 * NULL variable or a row that differs; CLOPT_ERR_CONTEXT_MISMATCH for a variable of another
 * replica's context); the message, naming the replica, is in clopt_strategy_last_error.
 * Since v0.3. */
CLOPT_API clopt_status clopt_mirrored_optimizer_checkpoint_load(clopt_mirrored_optimizer *m,
                                                                clopt_variable *const *vars,
                                                                size_t n, const char *path);

#ifdef __cplusplus
}
#endif

#endif
