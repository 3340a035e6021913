/* An optimizer's state as Keras's variable list shows it, for the layers above the optimizer
 * layer (src/io's checkpoints) and the public variable-list calls (variables_api.c): entries by
 * index, a wrapper's own entries first, each a device variable or a value the host keeps.
 * Never installed. */
#ifndef CLOPT_OPTIM_ACCESS_H
#define CLOPT_OPTIM_ACCESS_H

#include <jansson.h>
#include <stdint.h>
#include "clopt/optimizer.h"

/* Where an entry of Keras's `variables` list lives. */
typedef enum clopt__optvar_kind {
    CLOPT__OV_SLOT,      /* a device slot variable */
    CLOPT__OV_ITERATION, /* the raw iteration counter, int64 on the host */
    CLOPT__OV_LR,        /* the float learning rate, float32 on the host */
    CLOPT__OV_SCALAR     /* a class scalar on the host (Nadam's u_product, LSO's dynamic_scale) */
} clopt__optvar_kind;

/* What an entry is. */
typedef struct clopt__entry_info {
    const char *path;        /* "<optimizer name>/<name>" */
    clopt__optvar_kind kind;
    clopt_dtype dtype;       /* ITERATION: int64 (no clopt_dtype); LR: float32 */
    int integer;             /* a host value that is a counter (ITERATION, LSO's step_counter) */
    clopt_variable *var;     /* CLOPT__OV_SLOT: the device variable; else NULL */
} clopt__entry_info;

clopt_context *clopt__optimizer_context(const clopt_optimizer *o);
int clopt__optimizer_is_built(const clopt_optimizer *o);

/* Makes the host-side values current where the device keeps them (a LossScaleOptimizer's
 * device-decided steps); `write`: the caller is about to change them. Call once before reading
 * or writing a run of entries. */
clopt_status clopt__optimizer_sync(const clopt_optimizer *o, int write);

/* Entry `index` of the list (clopt_optimizer_variable's order). CLOPT_ERR_INVALID_ARGUMENT, with
 * nothing recorded, when out of range. */
clopt_status clopt__optimizer_entry_info(const clopt_optimizer *o, size_t index,
                                         clopt__entry_info *out);
/* The value of a host-side entry: as a real, and exactly in *count for a counter. */
clopt_status clopt__optimizer_host_get(const clopt_optimizer *o, size_t index, double *real,
                                       int64_t *count);
/* Sets a host-side entry to `v` (rounded to its dtype), as a loaded checkpoint or
 * clopt_optimizer_variable_write does; the caller checked the value. CLOPT_ERR_INVALID_ARGUMENT
 * for a slot or out of range. */
clopt_status clopt__optimizer_set_host_value(clopt_optimizer *o, size_t index, double v);

/* The serialize() object of an optimizer (get_config's), NULL when out of memory. */
json_t *clopt__optimizer_to_json(const clopt_optimizer *o);

#endif
