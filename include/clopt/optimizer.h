/* clopt: optimizers with Keras semantics. */
#ifndef CLOPT_OPTIMIZER_H
#define CLOPT_OPTIMIZER_H

#include <stddef.h>
#include <stdint.h>
#include "clopt/export.h"
#include "clopt/status.h"
#include "clopt/context.h"
#include "clopt/variable.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A Keras optimizer (tf.keras.Optimizer semantics) living in one context. Opaque. */
typedef struct clopt_optimizer clopt_optimizer;

/* Creates an optimizer from the JSON Keras writes with
 * json.dumps(keras.optimizers.serialize(opt)): {"module", "class_name", "config",
 * "registered_name"}; the bare {"class_name", "config"} is accepted too. "learning_rate" may be a
 * number or a serialized Keras schedule (ExponentialDecay, PiecewiseConstantDecay,
 * PolynomialDecay, InverseTimeDecay, CosineDecay, CosineDecayRestarts): then Keras's variable
 * list has no learning_rate entry. Class names match case-insensitively ("adam", "Adam"); a
 * class a program registered (clopt/optimizer_class.h) matches by registered_name, or by its
 * exact class_name when the config's registered_name is null. Keys missing from "config" take Keras's defaults. Keras's
 * legacy key "decay" is accepted and ignored, as Keras does. Integer JSON numbers are accepted
 * where Keras wants a float (Python's json writes 1.0 as 1.0, so this only matters to hand-written
 * configs).
 *   json: borrowed, NUL-terminated. out: written only on success.
 * Returns CLOPT_OK, CLOPT_ERR_INVALID_ARGUMENT, CLOPT_ERR_JSON (with line and column),
 * CLOPT_ERR_UNKNOWN_OPTIMIZER, CLOPT_ERR_UNKNOWN_SCHEDULE, CLOPT_ERR_UNKNOWN_KEY,
 * CLOPT_ERR_BAD_TYPE, CLOPT_ERR_BAD_VALUE (each naming the key in clopt_context_last_error) or
 * CLOPT_ERR_OUT_OF_MEMORY. Since v0.1. */
CLOPT_API clopt_status clopt_optimizer_from_config(clopt_context *ctx, const char *json,
                                                   clopt_optimizer **out);

/* Writes the optimizer's config in Keras's serialized form (the keys of get_config in Keras's
 * order, nested in {"module", "class_name", "config", "registered_name"}).
 *   json: receives a NUL-terminated string the caller frees with clopt_free.
 * Returns CLOPT_OK, CLOPT_ERR_INVALID_ARGUMENT or CLOPT_ERR_OUT_OF_MEMORY. Since v0.1. */
CLOPT_API clopt_status clopt_optimizer_get_config(const clopt_optimizer *opt, char **json);

/* Releases the optimizer and its slot variables (not the variables it was built on). NULL is
 * allowed, and so is an optimizer already destroyed (itself, or with its context): nothing
 * happens. clopt_optimizer_apply on a destroyed optimizer returns CLOPT_ERR_INVALID_ARGUMENT.
 * Since v0.1. */
CLOPT_API void clopt_optimizer_destroy(clopt_optimizer *opt);

/* Keras's build(var_list): creates the optimizer's slot variables for `vars` (borrowed; the
 * variables must outlive the optimizer) and compiles and warms its kernels, so the first apply
 * pays no compilation. A second call on a built optimizer does nothing, as in Keras.
 * Returns CLOPT_OK, CLOPT_ERR_INVALID_ARGUMENT (NULL entries, duplicates, n == 0),
 * CLOPT_ERR_CONTEXT_MISMATCH, CLOPT_ERR_OUT_OF_MEMORY, CLOPT_ERR_OPENCL or
 * CLOPT_ERR_BUILD_FAILED. Since v0.1. */
CLOPT_API clopt_status clopt_optimizer_build(clopt_optimizer *opt, clopt_variable *const *vars,
                                             size_t n);

/* Keras's apply(grads, trainable_variables): one optimizer step.
 *   grads: n gradients (borrowed); a NULL entry means "no gradient for this variable" and the
 *     variable is left alone, as in Keras. Each gradient must have its variable's shape and dtype.
 *   vars: the variables to update, or NULL for the built list (then n must equal its length).
 *     Any subset of the built variables, in any order, is allowed. If the optimizer is not built
 *     and vars is given, it is built on vars first.
 * n == 0 does nothing (Keras returns early and the counter does not move). Otherwise, on success
 * the iteration counter advances by one. Every input is checked before anything changes: on
 * failure no variable, slot or counter has changed.
 * Returns CLOPT_OK, CLOPT_ERR_INVALID_ARGUMENT, CLOPT_ERR_NOT_BUILT (vars NULL on an unbuilt
 * optimizer), CLOPT_ERR_LENGTH_MISMATCH (n differs from the built count when vars is NULL),
 * CLOPT_ERR_UNKNOWN_VARIABLE, CLOPT_ERR_SHAPE_MISMATCH, CLOPT_ERR_DTYPE_MISMATCH,
 * CLOPT_ERR_CONTEXT_MISMATCH, CLOPT_ERR_NO_GRADIENTS (all NULL) or CLOPT_ERR_OPENCL.
 * The work is queued; clopt_variable_read or clopt_finish waits for it. Since v0.1. */
CLOPT_API clopt_status clopt_optimizer_apply(clopt_optimizer *opt, clopt_variable *const *grads,
                                             clopt_variable *const *vars, size_t n);

/* Keras's `iterations`: the number of applied steps. -1 if opt is NULL (or, for a
 * LossScaleOptimizer, when reading its count back from the device fails). A LossScaleOptimizer
 * whose steps the device decides (README, "Loss scaling") keeps the count on the device: asking
 * waits for the steps enqueued so far and reads it back, as do scale_loss, the learning rate,
 * the variable list's values and checkpoints. Since v0.1. */
CLOPT_API int64_t clopt_optimizer_iterations(const clopt_optimizer *opt);

/* The learning rate the next step will use (the float, or the schedule at the current step).
 * Returns CLOPT_OK or CLOPT_ERR_INVALID_ARGUMENT. Since v0.1. */
CLOPT_API clopt_status clopt_optimizer_get_learning_rate(const clopt_optimizer *opt, double *lr);

/* Keras's learning_rate setter for a float learning rate. Returns CLOPT_OK,
 * CLOPT_ERR_INVALID_ARGUMENT, CLOPT_ERR_BAD_VALUE (not finite as a float32, such as 1e300: the
 * learning rate is kept as a float32) or CLOPT_ERR_BAD_STATE (the optimizer was created with a
 * schedule, as Keras's TypeError). Since v0.1. */
CLOPT_API clopt_status clopt_optimizer_set_learning_rate(clopt_optimizer *opt, double lr);

/* The optimizer's class name as Keras writes it ("Adam"), and its name ("adam"). Owned by the
 * optimizer. */
CLOPT_API const char *clopt_optimizer_class_name(const clopt_optimizer *opt);
CLOPT_API const char *clopt_optimizer_name(const clopt_optimizer *opt);

/* Keras's `variables`, in Keras's order (the order save_own_variables writes): the iteration
 * counter, the learning rate when it is a float, then the slots. Returns the count (0 if opt is
 * NULL). */
CLOPT_API size_t clopt_optimizer_variable_count(const clopt_optimizer *opt);

/* Describes optimizer variable `index`: its Keras name (e.g. "dense_kernel_momentum"), and its
 * Keras path (e.g. "adam/dense_kernel_momentum"); both owned by the optimizer. *var receives the
 * slot variable, or NULL for the iteration counter and the learning rate, which live on the host
 * (read them with clopt_optimizer_iterations and clopt_optimizer_get_learning_rate). Any out
 * pointer may be NULL. Returns CLOPT_OK or CLOPT_ERR_INVALID_ARGUMENT (index out of range). */
CLOPT_API clopt_status clopt_optimizer_variable(const clopt_optimizer *opt, size_t index,
                                                const char **name, const char **path,
                                                clopt_variable **var);

/* Keras's scale_loss: loss times the loss scale (a LossScaleOptimizer's current dynamic scale,
 * or its initial_scale before it is built; otherwise loss_scale_factor when set, else 1). The
 * gradients of a scaled loss are divided by the same factor inside apply. A LossScaleOptimizer
 * whose steps the device decides waits for them to read the scale back; a loop that scales on
 * the device takes the scale's buffer from clopt_optimizer_cl_loss_scale (clopt/clopt_cl.h)
 * instead. Returns CLOPT_OK, CLOPT_ERR_INVALID_ARGUMENT or CLOPT_ERR_OPENCL. Since v0.1. */
CLOPT_API clopt_status clopt_optimizer_scale_loss(const clopt_optimizer *opt, double loss,
                                                  double *out);

/* Reads optimizer variable `index` (see clopt_optimizer_variable) into `dst` as doubles, whatever
 * its storage: the raw iteration counter (Keras's `_iterations`, not divided by the accumulation
 * steps), the float32 learning rate, a host scalar such as Nadam's u_product, or a slot's
 * elements. count must equal its element count (1 for scalars). Blocking. Returns CLOPT_OK,
 * CLOPT_ERR_INVALID_ARGUMENT, CLOPT_ERR_SHAPE_MISMATCH or CLOPT_ERR_OPENCL. Since v0.1. */
CLOPT_API clopt_status clopt_optimizer_variable_read(const clopt_optimizer *opt, size_t index,
                                                     double *dst, size_t count);

/* Writes optimizer variable `index` from `count` doubles (converted to its storage: a counter
 * must be an integer >= 0, the learning rate is rounded to float32 and must stay finite). count
 * must equal its element count. Every check happens before anything changes. Returns CLOPT_OK,
 * CLOPT_ERR_INVALID_ARGUMENT, CLOPT_ERR_SHAPE_MISMATCH, CLOPT_ERR_BAD_VALUE or CLOPT_ERR_OPENCL.
 * Since v0.1. */
CLOPT_API clopt_status clopt_optimizer_variable_write(clopt_optimizer *opt, size_t index,
                                                      const double *src, size_t count);

/* Keras's set_weights: writes values[i] (counts[i] doubles) into optimizer variable i, for i
 * below both n and the variable count (Keras zips the lists: extra entries are ignored). Every
 * entry is checked before anything changes. Returns CLOPT_OK, CLOPT_ERR_INVALID_ARGUMENT,
 * CLOPT_ERR_NOT_BUILT, CLOPT_ERR_SHAPE_MISMATCH (naming the variable), CLOPT_ERR_BAD_VALUE or
 * CLOPT_ERR_OPENCL. Since v0.1. */
CLOPT_API clopt_status clopt_optimizer_set_weights(clopt_optimizer *opt,
                                                   const double *const *values,
                                                   const size_t *counts, size_t n);

/* Keras's add_variable, for optimizers written on top of clopt: a new variable of the optimizer
 * (appended to its variable list, saved with it, freed with it), filled with `init` (rounded to
 * the dtype). name is required and becomes "<optimizer name>/<name>" as its path. On a
 * LossScaleOptimizer the variable is the LSO's own, listed after its own entries and before the
 * inner optimizer's, as Keras lists it. *out (may be NULL) receives the
 * variable, owned by the optimizer. Returns CLOPT_OK, CLOPT_ERR_INVALID_ARGUMENT,
 * CLOPT_ERR_BAD_VALUE or CLOPT_ERR_OUT_OF_MEMORY. Since v0.1. */
CLOPT_API clopt_status clopt_optimizer_add_variable(clopt_optimizer *opt, const char *name,
                                                    clopt_dtype dtype, int ndim,
                                                    const int64_t *shape, double init,
                                                    clopt_variable **out);

/* Keras's add_variable_from_reference: like clopt_optimizer_add_variable with the reference's
 * shape and dtype, named "<reference name with '/' and ':' as '_'>_<name>" (name NULL means
 * "var"). Since v0.1. */
CLOPT_API clopt_status clopt_optimizer_add_variable_from_reference(clopt_optimizer *opt,
                                                                   const clopt_variable *ref,
                                                                   const char *name, double init,
                                                                   clopt_variable **out);

/* Keras's optimizer.assign / assign_add / assign_sub helpers: var := value, var += value,
 * var -= value, for model and optimizer variables alike (as clopt_variable_assign*). */
CLOPT_API clopt_status clopt_optimizer_assign(clopt_optimizer *opt, clopt_variable *var,
                                              const clopt_variable *value);
CLOPT_API clopt_status clopt_optimizer_assign_add(clopt_optimizer *opt, clopt_variable *var,
                                                  const clopt_variable *value);
CLOPT_API clopt_status clopt_optimizer_assign_sub(clopt_optimizer *opt, clopt_variable *var,
                                                  const clopt_variable *value);

/* Keras's stateless_apply: computes one step from given values without changing the optimizer
 * or its variables. opt_in[i] holds the values of optimizer variable i (as
 * clopt_optimizer_variable_read gives them; one entry per variable), vars_in the trainable
 * variables' values (n variables, shaped as the built ones), grads the gradients (NULL entries
 * allowed). The new values go to opt_out[i] (caller-allocated, same counts) and vars_out
 * (caller's variables, shaped as the built ones). A convenience, not a fast path: it copies the
 * optimizer state through the host. Returns CLOPT_OK, CLOPT_ERR_INVALID_ARGUMENT,
 * CLOPT_ERR_NOT_BUILT, CLOPT_ERR_LENGTH_MISMATCH, CLOPT_ERR_SHAPE_MISMATCH,
 * CLOPT_ERR_DTYPE_MISMATCH, CLOPT_ERR_CONTEXT_MISMATCH, CLOPT_ERR_BAD_VALUE (a counter in
 * opt_in that is not an integer >= 0), any status of apply, or
 * CLOPT_ERR_OUT_OF_MEMORY. (Keras's TensorFlow backend refuses stateless_apply; clopt follows the
 * JAX-style base semantics.) Since v0.1. */
CLOPT_API clopt_status clopt_optimizer_stateless_apply(clopt_optimizer *opt,
                                                       const double *const *opt_in,
                                                       clopt_variable *const *grads,
                                                       clopt_variable *const *vars_in, size_t n,
                                                       double *const *opt_out,
                                                       clopt_variable *const *vars_out);

/* Keras's exclude_from_weight_decay(var_list, var_names): the variables in `vars` (by identity)
 * and every variable whose name matches one of the POSIX extended regular expressions `names`
 * (searched anywhere in the name, as Python's re.search) get no weight decay. Allowed before and
 * after build (Keras documents an error after build but never raises it). Calls add to earlier
 * ones. Either list may be empty (NULL with count 0). Returns CLOPT_OK,
 * CLOPT_ERR_INVALID_ARGUMENT or CLOPT_ERR_BAD_VALUE (a pattern that does not compile, named in
 * the message). Since v0.1. */
CLOPT_API clopt_status clopt_optimizer_exclude_from_weight_decay(clopt_optimizer *opt,
                                                                 clopt_variable *const *vars,
                                                                 size_t nvars,
                                                                 const char *const *names,
                                                                 size_t nnames);

/* Keras's finalize_variable_values: when use_ema is on, overwrites every built variable with its
 * exponential moving average (what fit() does after the last epoch); otherwise does nothing.
 * Returns CLOPT_OK, CLOPT_ERR_INVALID_ARGUMENT, CLOPT_ERR_NOT_BUILT or CLOPT_ERR_OPENCL.
 * Since v0.1. */
CLOPT_API clopt_status clopt_optimizer_finalize_variable_values(clopt_optimizer *opt);

#ifdef __cplusplus
}
#endif
#endif
