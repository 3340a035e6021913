/* LossScaleOptimizer (keras.optimizers.LossScaleOptimizer): dynamic loss scaling around an inner
 * optimizer. Its own variables are [iteration (never incremented), learning_rate (0.0),
 * step_counter, dynamic_scale], followed by the inner optimizer's; as in Keras, step_counter and
 * dynamic_scale are made by build (before it the list is [iteration, learning_rate] and the
 * inner optimizer's). A step checks on the device
 * whether every gradient is finite (one kernel per launch group); then either the inner step
 * runs with gradients divided by the scale, or it is skipped and the scale halves.
 *
 * A wrapper (clopt__wrapper_ops): it owns its inner optimizer and the state of its steps, and
 * the base layer reaches the inner optimizer only through the hooks below.
 *
 * Who decides: the device, with no host round trip (loss_scale_device.c), for every inner
 * optimizer but Adafactor and Muon (passes of their own) and inner optimizers with gradient
 * accumulation (the count picks the kernels). Each launch of the inner step then skips itself
 * on a zero flag and takes its per-step scalars from a table indexed by the device's count, and
 * one more kernel moves the count, step counter and scale on. The host reads that state back
 * when asked for it (iterations, scale_loss, the variable list, checkpoints) and every
 * CLOPT__STEP_ROWS steps, when the table is rewritten. For the other inner optimizers the host
 * reads the flag (4 bytes) back every step and decides. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "clopt/clopt_cl.h"
#include "loss_scale_internal.h"

enum { INITIAL_SCALE, DYNAMIC_GROWTH_STEPS };
enum { STEP_COUNTER, DYNAMIC_SCALE }; /* indices into o->state */

extern const clopt__optimizer_class clopt__loss_scale_class;

static clopt__loss_scale *lso(const clopt_optimizer *o) {
    return (clopt__loss_scale *)o; /* the wrapper's struct starts with the optimizer's */
}

static const clopt__param params[] = {
    [INITIAL_SCALE] = {"initial_scale", CLOPT__P_FLOAT, 32768.0, 0, 0.0, HUGE_VAL, 1, 0},
    [DYNAMIC_GROWTH_STEPS] = {"dynamic_growth_steps", CLOPT__P_FLOAT, 2000, 0, 1, 1e15, 0, 0},
};

/* Keras accepts the base arguments only at their defaults (for old serialized configs). */
static int base_key_at_default(const char *key, const json_t *v) {
    for (int i = 0; i < CLOPT__B_COUNT; i++) {
        const clopt__param *p = &clopt__base_params[i];
        if (strcmp(key, p->key) != 0) continue;
        if (json_is_null(v)) return p->def_null;
        if (json_is_boolean(v)) return p->type == CLOPT__P_BOOL && json_is_true(v) == (p->def != 0);
        return json_is_number(v) && !p->def_null && json_number_value(v) == p->def;
    }
    return 0;
}

static int is_base_key(const char *key) {
    for (int i = 0; i < CLOPT__B_COUNT; i++)
        if (strcmp(key, clopt__base_params[i].key) == 0) return 1;
    return 0;
}

static clopt_status configure(clopt_optimizer *o, const json_t *config) {
    clopt_context *ctx = o->ctx;
    const char *key;
    json_t *v;
    const json_t *inner = NULL;
    json_object_foreach((json_t *)config, key, v) {
        if (strcmp(key, "inner_optimizer") == 0) {
            inner = v;
        } else if (strcmp(key, "dynamic") == 0) {
            if (!json_is_true(v))
                return clopt__fail(ctx, CLOPT_ERR_BAD_VALUE,
                                   "LossScaleOptimizer config: LossScaleOptimizer no longer "
                                   "supports `dynamic=False`. Instead, simply set "
                                   "`loss_scale_factor` directly on the `inner_optimizer`.");
        } else if (strcmp(key, "learning_rate") == 0) {
            continue; /* Keras's base init fixes it at 0.0 */
        } else if (is_base_key(key)) {
            if (!base_key_at_default(key, v))
                return clopt__fail(ctx, CLOPT_ERR_BAD_VALUE,
                                   "LossScaleOptimizer config: LossScaleOptimizer does not "
                                   "support `%s`. Instead, set `%s` on the `inner_optimizer`.",
                                   key, key);
        } else {
            clopt_status st = clopt__config_key(o, key, v);
            if (st != CLOPT_OK) return st;
        }
    }
    if (!inner)
        return clopt__fail(ctx, CLOPT_ERR_BAD_TYPE,
                           "LossScaleOptimizer config: 'inner_optimizer' is missing");
    if (o->hp[DYNAMIC_GROWTH_STEPS].v != floor(o->hp[DYNAMIC_GROWTH_STEPS].v))
        return clopt__fail(ctx, CLOPT_ERR_BAD_VALUE,
                           "LossScaleOptimizer config: 'dynamic_growth_steps' must be an integer");
    clopt_optimizer **in = &lso(o)->inner;
    clopt_status st = clopt__optimizer_from_json(ctx, inner, in);
    if (st != CLOPT_OK) return st;
    if ((*in)->cls->wrapper)
        return clopt__fail(ctx, CLOPT_ERR_BAD_VALUE,
                           "LossScaleOptimizer config: the inner optimizer is itself a "
                           "LossScaleOptimizer");
    /* Keras sets the inner loss_scale_factor to None: gradients are never unscaled twice. */
    (*in)->base[CLOPT__B_LOSS_SCALE_FACTOR] = (clopt__value){0, 1};
    o->lr = 0.0f;
    return clopt__optimizer_init_optvars(o);
}

static json_t *config_json(const clopt_optimizer *o) {
    json_t *c = json_object();
    if (!c) return NULL;
    int bad = json_object_set_new(c, "name", json_string(o->name));
    bad |= json_object_set_new(c, "inner_optimizer", clopt__optimizer_to_json(lso(o)->inner));
    bad |= json_object_set_new(c, "initial_scale", json_real(o->hp[INITIAL_SCALE].v));
    bad |= json_object_set_new(c, "dynamic_growth_steps",
                               json_integer((json_int_t)o->hp[DYNAMIC_GROWTH_STEPS].v));
    if (bad) {
        json_decref(c);
        return NULL;
    }
    return c;
}

/* Removes what add_own_variables added (a failed build). */
static void drop_own_variables(clopt_optimizer *o) {
    while (o->noptvars > o->nbaseoptvars) {
        clopt__optvar *e = &o->optvars[--o->noptvars];
        free(e->name);
        free(e->path);
    }
}

/* LossScaleOptimizer.build: the step counter (0) and dynamic scale (initial_scale) join the
 * variable list after iteration and learning_rate. */
static clopt_status add_own_variables(clopt_optimizer *o) {
    o->state[STEP_COUNTER] = 0;
    o->state[DYNAMIC_SCALE] = (double)(float)o->hp[INITIAL_SCALE].v;
    clopt_status st = clopt__optvar_add(o, "step_counter", CLOPT__OV_SCALAR, CLOPT_FLOAT64, NULL);
    if (st == CLOPT_OK) {
        o->optvars[o->noptvars - 1].state_index = STEP_COUNTER;
        o->optvars[o->noptvars - 1].integer = 1;
        st = clopt__optvar_add(o, "dynamic_scale", CLOPT__OV_SCALAR, CLOPT_FLOAT32, NULL);
    }
    if (st == CLOPT_OK) o->optvars[o->noptvars - 1].state_index = DYNAMIC_SCALE;
    if (st != CLOPT_OK) drop_own_variables(o);
    return st;
}

static clopt_optimizer *inner(const clopt_optimizer *o) { return lso(o)->inner; }

static void destroy(clopt_optimizer *o) {
    clopt__loss_scale *s = lso(o);
    clopt__device_step_free(o->ctx, &s->dstep);
    if (s->flag_buf) o->ctx->ops->buffer_release(o->ctx, s->flag_buf);
    if (s->inner) clopt__optimizer_free_detached(s->inner);
    s->flag_buf = NULL;
    s->inner = NULL;
}

/* Builds the inner optimizer for the steps this wrapper asks of it: device-decided ones when
 * its class allows, and the finite check either way. */
static clopt_status build(clopt_optimizer *o, clopt_variable *const *vars, size_t n) {
    clopt__loss_scale *s = lso(o);
    clopt_optimizer *in = s->inner;
    clopt_status st = add_own_variables(o);
    if (st != CLOPT_OK) return clopt__fail(o->ctx, st, "build: out of host memory");
    st = clopt__optimizer_build_begin(in, vars, n);
    if (st == CLOPT_OK && !s->host_decided) st = clopt__device_step_create(in, &s->dstep);
    if (st == CLOPT_OK) {
        clopt__step_request req = {0};
        req.finite_check = 1;
        if (s->dstep) req = clopt__device_step_request(s->dstep);
        st = clopt__optimizer_build_end(in, &req);
    }
    if (st != CLOPT_OK) {
        clopt__device_step_free(o->ctx, &s->dstep);
        drop_own_variables(o);
        return clopt__optimizer_build_failed(in, st);
    }
    o->built = 1;
    return CLOPT_OK;
}

/* A step the device decides: nothing read back (loss_scale_device.c). */
static clopt_status apply_on_device(clopt_optimizer *o) {
    clopt__loss_scale *s = lso(o);
    clopt_optimizer *in = s->inner;
    clopt_status st = clopt__device_step_begin(in, s->dstep, &o->state[STEP_COUNTER],
                                               o->hp[DYNAMIC_GROWTH_STEPS].v);
    if (st != CLOPT_OK) return st;
    if ((st = clopt__run_finite_check(in, s->dstep->state_buf, 0)) != CLOPT_OK) return st;
    const clopt__step_request req = clopt__device_step_request(s->dstep);
    st = clopt__apply_run(in, &req);
    if (st == CLOPT_OK) st = clopt__device_step_end(in, s->dstep);
    /* A step cut short may leave the flag at skip: the next one rewrites the state. */
    if (st != CLOPT_OK) clopt__device_step_invalidate(s->dstep);
    return st;
}

static clopt_status sync(const clopt_optimizer *co, int write) {
    clopt_optimizer *o = (clopt_optimizer *)co; /* the state is the same, only known */
    clopt__loss_scale *s = lso(o);
    if (!s->dstep) return CLOPT_OK;
    clopt_status st = clopt__device_step_sync(s->inner, s->dstep, &o->state[STEP_COUNTER]);
    if (write) clopt__device_step_invalidate(s->dstep);
    return st;
}

int clopt__loss_scale_on_device(const clopt_optimizer *o) {
    return o->cls == &clopt__loss_scale_class && lso(o)->dstep != NULL;
}

clopt_status clopt__loss_scale_finite(clopt_optimizer *o, int *finite) {
    clopt__loss_scale *s = lso(o);
    clopt_status st;
    if (!s->flag_buf &&
        (st = o->ctx->ops->buffer_create(o->ctx, 8, &s->flag_buf)) != CLOPT_OK)
        return st;
    if ((st = clopt__run_finite_check(s->inner, s->flag_buf, 1)) != CLOPT_OK) return st;
    float flag = 0;
    st = o->ctx->ops->read(o->ctx, s->flag_buf, 0, &flag, sizeof flag);
    *finite = flag == 1.0f;
    return st;
}

double clopt__loss_scale_current(const clopt_optimizer *o) { return o->state[DYNAMIC_SCALE]; }

void clopt__loss_scale_after(clopt_optimizer *o, int finite) {
    double *scale = &o->state[DYNAMIC_SCALE], *counter = &o->state[STEP_COUNTER];
    if (!finite) { /* the inner step was skipped: halve the scale */
        *counter = 0;
        *scale = (double)(float)(*scale * 0.5);
    } else if (*counter == o->hp[DYNAMIC_GROWTH_STEPS].v - 1) {
        *counter = 0;
        *scale = (double)(float)(*scale * 2.0);
    } else {
        *counter += 1;
    }
}

void clopt__loss_scale_host_decided(clopt_optimizer *o) { lso(o)->host_decided = 1; }

static clopt_status apply(clopt_optimizer *o, clopt_variable *const *grads,
                          clopt_variable *const *vars, size_t n) {
    clopt__loss_scale *s = lso(o);
    clopt_optimizer *in = s->inner;
    clopt_status st;
    int finite = 0;
    if ((st = clopt__apply_prepare(in, o, grads, vars, n)) != CLOPT_OK) return st;
    if (s->dstep) return apply_on_device(o);
    if ((st = clopt__loss_scale_finite(o, &finite)) != CLOPT_OK) return st;
    const clopt__step_request req = {clopt__loss_scale_current(o), NULL, {0}, 0};
    if (finite && (st = clopt__apply_run(in, &req)) != CLOPT_OK) return st;
    clopt__loss_scale_after(o, finite);
    return CLOPT_OK;
}

static const clopt__wrapper_ops wrapper = {
    .size = sizeof(clopt__loss_scale),
    .configure = configure,
    .config_json = config_json,
    .inner = inner,
    .build = build,
    .apply = apply,
    .sync = sync,
    .destroy = destroy,
};

const clopt__optimizer_class clopt__loss_scale_class = {
    .class_name = "LossScaleOptimizer",
    .default_name = "loss_scale_optimizer",
    .default_lr = 0.0,
    CLOPT__PARAMS(params),
    .wrapper = &wrapper,
};

clopt_status clopt_optimizer_cl_loss_scale(const clopt_optimizer *co, cl_mem *mem, size_t *off) {
    if (!co || !mem || !off) return CLOPT_ERR_INVALID_ARGUMENT;
    clopt_optimizer *o = (clopt_optimizer *)co; /* makes the device's state current, once */
    clopt_context *ctx = o->ctx;
    if (o->cls != &clopt__loss_scale_class)
        return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT,
                           "clopt_optimizer_cl_loss_scale: '%s' is a %s, not a "
                           "LossScaleOptimizer", o->name, o->cls->class_name);
    if (!o->built)
        return clopt__fail(ctx, CLOPT_ERR_NOT_BUILT,
                           "clopt_optimizer_cl_loss_scale: '%s' is not built", o->name);
    clopt__loss_scale *s = lso(o);
    if (ctx->ops != &clopt__opencl_backend || !s->dstep)
        return clopt__fail(ctx, CLOPT_ERR_UNSUPPORTED,
                           "clopt_optimizer_cl_loss_scale: '%s' keeps its scale on the host (%s)",
                           o->name, ctx->ops != &clopt__opencl_backend
                                        ? "a host context"
                                        : "its inner optimizer's steps are decided on the host");
    clopt_status st = clopt__device_step_begin(s->inner, s->dstep, &o->state[STEP_COUNTER],
                                               o->hp[DYNAMIC_GROWTH_STEPS].v);
    if (st != CLOPT_OK) return st;
    *mem = (cl_mem)s->dstep->state_buf;
    *off = 3 * sizeof(uint64_t); /* word 3 (backend_internal.h, CLOPT__STEP_*) */
    return CLOPT_OK;
}

clopt_status clopt_optimizer_scale_loss(const clopt_optimizer *o, double loss, double *out) {
    if (!o || !out) return CLOPT_ERR_INVALID_ARGUMENT;
    if (o->cls == &clopt__loss_scale_class) {
        clopt_status st = sync(o, 0);
        if (st != CLOPT_OK) return st;
        *out = loss * (o->built ? o->state[DYNAMIC_SCALE] : (double)(float)o->hp[INITIAL_SCALE].v);
        return CLOPT_OK;
    }
    const clopt__value *f = &o->base[CLOPT__B_LOSS_SCALE_FACTOR];
    *out = f->null ? loss : loss * f->v;
    return CLOPT_OK;
}
