/* clopt: optimizer classes a program defines (Keras's Optimizer subclass with its own
 * update_step, registered for deserialization). */
#ifndef CLOPT_OPTIMIZER_CLASS_H
#define CLOPT_OPTIMIZER_CLASS_H

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

/* Limits of a class description. */
#define CLOPT_CLASS_MAX_HPARAMS 16
#define CLOPT_CLASS_MAX_SLOTS 4
#define CLOPT_CLASS_MAX_SCALARS 8

/* The JSON type of a hyperparameter, as the built-in classes' tables have them. */
typedef enum clopt_hparam_type {
    CLOPT_HPARAM_FLOAT = 0,         /* a number */
    CLOPT_HPARAM_FLOAT_OR_NULL = 1, /* a number or null */
    CLOPT_HPARAM_INT_OR_NULL = 2,   /* an integer or null */
    CLOPT_HPARAM_BOOL = 3           /* true or false (1 or 0) */
} clopt_hparam_type;

/* One hyperparameter: its config key, type, default and allowed range [lo, hi] (an end is
 * excluded when its *_open is set; use -HUGE_VAL / HUGE_VAL for none). */
typedef struct clopt_hparam {
    const char *key;
    clopt_hparam_type type;
    double def;
    int def_null; /* the default is null (the *_OR_NULL types) */
    double lo, hi;
    int lo_open, hi_open;
} clopt_hparam;

/* What the scalars callback knows of a step of one dtype's variables. */
typedef struct clopt_class_step {
    double learning_rate; /* this step's (a schedule evaluated) */
    int64_t t;            /* the 1-based step for bias corrections: iterations + 1 */
    clopt_dtype dtype;    /* of the variables of the launch: Keras computes per-step scalars in
                           * it, so round through float for float32 to match it bit for bit */
    const double *hparams; /* the class's hyperparameters in table order (null: NAN) */
} clopt_class_step;

/* Fills out[0 .. nscalars-1], the per-step scalars the update reads (c0..c7). Must not fail and
 * must depend only on its arguments: it may run for several counts ahead of a step (a
 * LossScaleOptimizer's device-decided steps). */
typedef void (*clopt_class_scalars_fn)(const clopt_class_step *step, double *out,
                                       void *user_data);

/* The host backend's update of one element, in double: *w the variable (after weight decay),
 * g the gradient (after loss-scale unscaling, accumulation and clipping), slots[k] slot k,
 * scalars the callback's. Updates *w and slots in place. */
typedef void (*clopt_class_host_update_fn)(double *w, double g, double *slots,
                                           const double *scalars, void *user_data);

/* A class description, filled in by the program. Everything is copied at registration (or by
 * the call that takes it): the caller may free it afterwards, except user_data.
 *
 * The update rule is element-wise, given twice: `host_update` for the host backend, and
 * `opencl_update`, OpenCL C statements run once per element inside clopt's fused multi-tensor
 * update kernel (compiled at run time for each dtype and pipeline switch like the built-in
 * kernels, and kept in the same on-disk cache keyed by the source). In those statements:
 *   - `real` is the arithmetic type (float; double for float64 variables),
 *   - `w` (real) is the variable's element after weight decay: assign the new value to it,
 *   - `g` (const real) is the gradient after unscaling, accumulation and clipping,
 *   - each slot is a real named by slot_names[k], holding its value, to assign,
 *   - each scalar is a const real named by scalar_names[k] (c0..c7 otherwise),
 * plus locals of their own and OpenCL's math functions (sqrt, fabs, fmax, ...). The statements
 * must not `return` or `continue`. Slot and scalar names must be C identifiers other than w, g,
 * real, store_t, c0..c7, q0..q3, names ending in '_' or starting with "clopt" (clopt's), and
 * should not be macros of cl/common.cl (upper case: LOAD, SLOT, CHUNK...).
 *
 * Not yet supported: whole-variable statistics (norms, as Lamb's trust ratio needs), slots of
 * another shape than the variable's, and host-side state between steps. */
typedef struct clopt_optimizer_class_desc {
    const char *class_name;      /* Keras's class_name: "AdaBelief" */
    const char *registered_name; /* Keras's registered_name: "Custom>AdaBelief"; NULL: as
                                  * class_name (a class registered without a package) */
    const char *module;          /* written to "module"; NULL: "__main__" */
    const char *default_name;    /* the optimizer's name when the config has none; NULL: the
                                  * class name in lower case */
    double default_learning_rate;
    const clopt_hparam *hparams; /* config keys after the base class's, in get_config order */
    int nhparams;
    const char *const *slot_names; /* per variable, Keras names the slot "<var>_<name>" */
    const double *slot_inits;      /* initial values (NULL: zeros) */
    int nslots;
    const char *const *scalar_names; /* NULL: c0..c7 */
    int nscalars;
    clopt_class_scalars_fn scalars;
    const char *opencl_update;
    clopt_class_host_update_fn host_update;
    void *user_data; /* passed to scalars and host_update */
} clopt_optimizer_class_desc;

/* Registers a class for every later clopt_optimizer_from_config in the process: a config
 * resolves it by its registered_name, or by its class_name when the config's registered_name
 * is null or absent. Thread-safe. A registration lasts for the life of the process.
 * Returns CLOPT_OK; CLOPT_ERR_INVALID_ARGUMENT (desc NULL) or CLOPT_ERR_BAD_VALUE for an
 * invalid description, and CLOPT_ERR_BAD_STATE when a registered class or a built-in one
 * already has its class_name or registered_name; the message (clopt_class_last_error) names
 * the culprit. Since v0.2. */
CLOPT_API clopt_status clopt_optimizer_class_register(const clopt_optimizer_class_desc *desc);

/* Whether a class is registered under `name` (its registered_name or class_name, exact case).
 * Thread-safe. Since v0.2. */
CLOPT_API int clopt_optimizer_class_registered(const char *name);

/* The message of this thread's last failed clopt_optimizer_class_register ("" if none): a
 * registration has no context to keep it on. Since v0.2. */
CLOPT_API const char *clopt_class_last_error(void);

/* clopt_optimizer_from_config with Keras's `custom_objects`: `classes[0 .. n-1]` are resolved
 * before the registered ones (by registered_name, then class_name), as Keras looks in
 * custom_objects first; they are checked as clopt_optimizer_class_register checks them (each
 * is copied: the optimizer keeps its class). A LossScaleOptimizer's inner optimizer resolves
 * through them too. n may be 0 (classes NULL).
 * Returns what clopt_optimizer_from_config returns, and CLOPT_ERR_BAD_VALUE for an invalid
 * description among classes (the message names it). Since v0.2. */
CLOPT_API clopt_status clopt_optimizer_from_config_with_classes(
    clopt_context *ctx, const char *json, const clopt_optimizer_class_desc *classes, size_t n,
    clopt_optimizer **out);

#ifdef __cplusplus
}
#endif

#endif
