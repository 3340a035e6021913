/* LossScaleOptimizer's own internals (loss_scale.c, loss_scale_device.c): the wrapper's struct
 * and its inner optimizer's device-decided steps. */
#ifndef CLOPT_LOSS_SCALE_INTERNAL_H
#define CLOPT_LOSS_SCALE_INTERNAL_H

#include "optim_internal.h"

/* A step of the inner optimizer decided on the device: the finite check writes a flag on the
 * device, and every launch of the step (built with DEVICE_STEP=1) reads it and skips itself on
 * non-finite gradients, with its per-step scalars taken from a table of rows, one for each
 * iteration count the step may be at, since only the device knows how many steps ran. A
 * one-work-item kernel (cl/loss_scale.cl) then moves the count, step counter and scale on. The
 * host reads the state back only when asked for it (iterations, the scale, a checkpoint...) and
 * when the table runs out, every CLOPT__STEP_ROWS steps. */
#define CLOPT__STEP_ROWS 256
typedef struct clopt__device_step {
    void *state_buf;      /* CLOPT__STEP_WORDS uint64 words (backend_internal.h) */
    void *table_buf[4];   /* per dtype of a built variable: CLOPT__STEP_ROWS rows */
    int64_t base;         /* the iteration count of row 0 */
    int64_t issued;       /* steps enqueued since the table was written */
    int64_t pending;      /* of those, enqueued since the host last read the state */
    int valid;            /* the device's state and table agree with the host's */
    double base_state[4]; /* the class's host state (o->state) at count `base` */
    double states[CLOPT__STEP_ROWS][4]; /* and after the step of each row */
} clopt__device_step;

/* A LossScaleOptimizer: an optimizer (its own variable-list entries and config) that owns the
 * one it wraps. */
typedef struct clopt__loss_scale {
    clopt_optimizer base;
    clopt_optimizer *inner;
    void *flag_buf;            /* the host-decided step's finite flag (8 bytes), made on use */
    clopt__device_step *dstep; /* made at build when the inner optimizer allows */
    int host_decided;          /* never make dstep (a replica of a strategy, src/dist) */
} clopt__loss_scale;

/* Device-decided steps of inner optimizer `o` (loss_scale_device.c). create: at build, after
 * the layout (*out stays NULL when the class cannot: Adafactor and Muon run passes of their own,
 * and gradient accumulation picks kernels by the count). `ls` is the loss scaler's host state
 * {step counter, dynamic scale} and growth its dynamic_growth_steps. begin: makes the table and
 * state current (reading the state back first when the table ran out or was invalidated). end:
 * enqueues the finishing kernel. sync: reads the state back into o->iterations, o->state and ls
 * when steps ran since the last read. invalidate: the host state changed (a load, a set
 * learning rate): the next step rewrites. */
clopt_status clopt__device_step_create(clopt_optimizer *o, clopt__device_step **out);
void clopt__device_step_free(clopt_context *ctx, clopt__device_step **d);
clopt_status clopt__device_step_begin(clopt_optimizer *o, clopt__device_step *d, double ls[2],
                                      double growth);
clopt_status clopt__device_step_end(clopt_optimizer *o, clopt__device_step *d);
clopt_status clopt__device_step_sync(clopt_optimizer *o, clopt__device_step *d, double ls[2]);
void clopt__device_step_invalidate(clopt__device_step *d);
/* The request that makes a step of the inner optimizer device-decided. */
clopt__step_request clopt__device_step_request(const clopt__device_step *d);

/* Whether LossScaleOptimizer `o`'s inner steps are decided on the device (for tests). */
int clopt__loss_scale_on_device(const clopt_optimizer *o);

#endif
