/* The optimizer's variable list (Keras's `variables`): the state accessors (optim_access.h) that
 * checkpoints and the public calls share, reading and writing entries (set_weights), Keras's
 * add_variable and add_variable_from_reference (for optimizers written on top of clopt), and
 * the assign helpers. A wrapper's list is its own entries followed by its inner optimizer's. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "optim_internal.h"

clopt__optvar *clopt__optimizer_entry(const clopt_optimizer *o, size_t index,
                                      clopt_optimizer **owner) {
    for (clopt_optimizer *in; (in = clopt__wrapped(o)) && index >= o->noptvars; o = in)
        index -= o->noptvars;
    if (index >= o->noptvars) return NULL;
    if (owner) *owner = (clopt_optimizer *)o;
    return &o->optvars[index];
}

size_t clopt_optimizer_variable_count(const clopt_optimizer *o) {
    size_t n = 0;
    for (; o; o = clopt__wrapped(o)) n += o->noptvars;
    return n;
}

clopt_status clopt__optimizer_entry_info(const clopt_optimizer *o, size_t index,
                                         clopt__entry_info *out) {
    const clopt__optvar *e = clopt__optimizer_entry(o, index, NULL);
    if (!e) return CLOPT_ERR_INVALID_ARGUMENT;
    *out = (clopt__entry_info){e->path, e->kind, e->dtype,
                               e->integer || e->kind == CLOPT__OV_ITERATION, e->var};
    return CLOPT_OK;
}

clopt_status clopt__optimizer_host_get(const clopt_optimizer *o, size_t index, double *real,
                                       int64_t *count) {
    clopt_optimizer *owner;
    const clopt__optvar *e = clopt__optimizer_entry(o, index, &owner);
    if (!e || e->kind == CLOPT__OV_SLOT) return CLOPT_ERR_INVALID_ARGUMENT;
    const double v = e->kind == CLOPT__OV_ITERATION ? (double)owner->iterations
                     : e->kind == CLOPT__OV_LR      ? (double)owner->lr
                                                    : owner->state[e->state_index];
    if (real) *real = v;
    if (count) *count = e->kind == CLOPT__OV_ITERATION ? owner->iterations : (int64_t)llround(v);
    return CLOPT_OK;
}

clopt_status clopt__optimizer_set_host_value(clopt_optimizer *o, size_t index, double v) {
    clopt_optimizer *owner;
    const clopt__optvar *e = clopt__optimizer_entry(o, index, &owner);
    if (!e) return CLOPT_ERR_INVALID_ARGUMENT;
    switch (e->kind) {
    case CLOPT__OV_ITERATION: owner->iterations = (int64_t)v; return CLOPT_OK;
    case CLOPT__OV_LR: owner->lr = (float)v; return CLOPT_OK;
    case CLOPT__OV_SCALAR: owner->state[e->state_index] = v; return CLOPT_OK;
    case CLOPT__OV_SLOT: break;
    }
    return CLOPT_ERR_INVALID_ARGUMENT;
}

clopt_status clopt_optimizer_variable(const clopt_optimizer *o, size_t index, const char **name,
                                      const char **path, clopt_variable **var) {
    if (!o) return CLOPT_ERR_INVALID_ARGUMENT;
    const clopt__optvar *e = clopt__optimizer_entry(o, index, NULL);
    if (!e)
        return clopt__fail(o->ctx, CLOPT_ERR_INVALID_ARGUMENT,
                           "optimizer variable %zu does not exist (there are %zu)", index,
                           clopt_optimizer_variable_count(o));
    if (name) *name = e->name;
    if (path) *path = e->path;
    if (var) *var = e->var;
    return CLOPT_OK;
}

clopt_status clopt_optimizer_variable_read(const clopt_optimizer *o, size_t index, double *dst,
                                           size_t count) {
    if (!o) return CLOPT_ERR_INVALID_ARGUMENT;
    clopt_status st = clopt__optimizer_sync(o, 0);
    if (st != CLOPT_OK) return st;
    clopt__entry_info e;
    if (clopt__optimizer_entry_info(o, index, &e) != CLOPT_OK || !dst)
        return clopt__fail(o->ctx, CLOPT_ERR_INVALID_ARGUMENT,
                           "clopt_optimizer_variable_read: %s", dst ? "index out of range"
                                                                    : "dst is NULL");
    size_t want = e.var ? (size_t)e.var->size : 1;
    if (count != want)
        return clopt__fail(o->ctx, CLOPT_ERR_SHAPE_MISMATCH,
                           "clopt_optimizer_variable_read: '%s' has %zu elements, %zu asked",
                           e.path, want, count);
    if (!e.var) return clopt__optimizer_host_get(o, index, dst, NULL);
    size_t esize = clopt_dtype_size(e.var->dtype);
    void *buf = malloc(want * esize);
    if (!buf) return clopt__fail(o->ctx, CLOPT_ERR_OUT_OF_MEMORY, "out of host memory");
    st = clopt_variable_read(e.var, buf, want * esize);
    for (size_t i = 0; st == CLOPT_OK && i < want; i++)
        dst[i] = clopt__elem_load(buf, e.var->dtype, i);
    free(buf);
    return st;
}

static clopt_status add_owned(clopt_optimizer *o, const char *name, clopt_dtype dtype, int ndim,
                              const int64_t *shape, double init, clopt_variable **out) {
    clopt_context *ctx = o->ctx;
    /* A checkpoint names each optimizer variable by its Keras path "<optimizer>/<name>". */
    for (size_t i = 0; i < o->noptvars; i++)
        if (strcmp(o->optvars[i].name, name) == 0)
            return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT,
                               "add_variable '%s': the optimizer already has a variable of that "
                               "name ('%s'); Keras paths must be unique",
                               name, o->optvars[i].path);
    clopt_variable *v;
    clopt_status st = clopt_variable_create(ctx, name, dtype, ndim, shape, NULL, &v);
    if (st != CLOPT_OK) return st;
    if (init != 0.0 &&
        (st = ctx->ops->fill(ctx, v->block->buf, dtype, v->offset, (size_t)v->size, init))) {
        clopt_variable_destroy(v);
        return st;
    }
    if ((st = clopt__optvar_add(o, name, CLOPT__OV_SLOT, dtype, v)) != CLOPT_OK) {
        clopt_variable_destroy(v);
        return clopt__fail(ctx, st, "add_variable '%s': out of host memory", name);
    }
    o->optvars[o->noptvars - 1].owns_memory = 1;
    v->owned_by_optimizer = 1;
    if (out) *out = v;
    return CLOPT_OK;
}

clopt_status clopt_optimizer_add_variable(clopt_optimizer *o, const char *name, clopt_dtype dtype,
                                          int ndim, const int64_t *shape, double init,
                                          clopt_variable **out) {
    if (!o) return CLOPT_ERR_INVALID_ARGUMENT;
    /* On a LossScaleOptimizer the variable is its own, as in Keras (tracked in its _variables,
     * listed before the inner optimizer's). */
    if (!name || !*name)
        return clopt__fail(o->ctx, CLOPT_ERR_INVALID_ARGUMENT, "add_variable: a name is required");
    if (!isfinite(init))
        return clopt__fail(o->ctx, CLOPT_ERR_BAD_VALUE,
                           "add_variable '%s': initial value is not finite", name);
    return add_owned(o, name, dtype, ndim, shape, init, out);
}

clopt_status clopt_optimizer_add_variable_from_reference(clopt_optimizer *o,
                                                         const clopt_variable *ref,
                                                         const char *name, double init,
                                                         clopt_variable **out) {
    if (!o) return CLOPT_ERR_INVALID_ARGUMENT;
    if (!ref || ref->ctx != o->ctx)
        return clopt__fail(o->ctx, CLOPT_ERR_INVALID_ARGUMENT,
                           "add_variable_from_reference: the reference is NULL or of another "
                           "context");
    if (!isfinite(init))
        return clopt__fail(o->ctx, CLOPT_ERR_BAD_VALUE,
                           "add_variable_from_reference: initial value is not finite");
    /* Keras: "<reference path with '/' and ':' as '_'>_<name>", name defaulting to "var". */
    char *full = clopt__format("%s_%s", ref->name, name && *name ? name : "var");
    if (!full) return clopt__fail(o->ctx, CLOPT_ERR_OUT_OF_MEMORY, "out of host memory");
    for (char *p = full; *p; p++)
        if (*p == '/' || *p == ':') *p = '_';
    clopt_status st = add_owned(o, full, ref->dtype, ref->ndim, ref->shape, init, out);
    free(full);
    return st;
}

/* Checks `count` values for entry e before anything is written. */
static clopt_status check_write(const clopt_optimizer *o, const clopt__optvar *e,
                                const double *src, size_t count) {
    size_t want = e->var ? (size_t)e->var->size : 1;
    if (!src)
        return clopt__fail(o->ctx, CLOPT_ERR_INVALID_ARGUMENT, "'%s': values are NULL", e->path);
    if (count != want)
        return clopt__fail(o->ctx, CLOPT_ERR_SHAPE_MISMATCH,
                           "optimizer variable '%s' has %zu elements, %zu values given", e->path,
                           want, count);
    if (e->kind == CLOPT__OV_ITERATION || (e->kind == CLOPT__OV_SCALAR && e->integer))
        if (!(src[0] >= 0 && src[0] == floor(src[0]) && src[0] < 9.2e18))
            return clopt__fail(o->ctx, CLOPT_ERR_BAD_VALUE,
                               "optimizer variable '%s' is a counter: %g is not an integer >= 0",
                               e->path, src[0]);
    /* As clopt_optimizer_set_learning_rate: a float32 learning rate that is finite. */
    if (e->kind == CLOPT__OV_LR && !(isfinite(src[0]) && isfinite((float)src[0])))
        return clopt__fail(o->ctx, CLOPT_ERR_BAD_VALUE,
                           "optimizer variable '%s' is the learning rate: %g is not finite as a "
                           "float32",
                           e->path, src[0]);
    return CLOPT_OK;
}

static clopt_status do_write(clopt_optimizer *o, size_t index, const clopt__optvar *e,
                             const double *src) {
    if (e->kind == CLOPT__OV_SCALAR) { /* a variable of its dtype in Keras: rounded to it */
        unsigned char cell[8];
        clopt__elem_store(cell, e->dtype, 0, src[0]);
        return clopt__optimizer_set_host_value(o, index, clopt__elem_load(cell, e->dtype, 0));
    }
    if (e->kind != CLOPT__OV_SLOT) return clopt__optimizer_set_host_value(o, index, src[0]);
    clopt_variable *v = e->var;
    size_t esize = clopt_dtype_size(v->dtype);
    void *buf = malloc((size_t)v->size * esize);
    if (!buf) return clopt__fail(o->ctx, CLOPT_ERR_OUT_OF_MEMORY, "out of host memory");
    for (size_t i = 0; i < (size_t)v->size; i++) clopt__elem_store(buf, v->dtype, i, src[i]);
    clopt_status st = clopt_variable_write(v, buf, (size_t)v->size * esize);
    free(buf);
    return st;
}

clopt_status clopt_optimizer_variable_write(clopt_optimizer *o, size_t index, const double *src,
                                            size_t count) {
    if (!o) return CLOPT_ERR_INVALID_ARGUMENT;
    clopt_status sync = clopt__optimizer_sync(o, 1);
    if (sync != CLOPT_OK) return sync;
    const clopt__optvar *e = clopt__optimizer_entry(o, index, NULL);
    if (!e)
        return clopt__fail(o->ctx, CLOPT_ERR_INVALID_ARGUMENT,
                           "optimizer variable %zu does not exist (there are %zu)", index,
                           clopt_optimizer_variable_count(o));
    clopt_status st = check_write(o, e, src, count);
    return st == CLOPT_OK ? do_write(o, index, e, src) : st;
}

clopt_status clopt_optimizer_set_weights(clopt_optimizer *o, const double *const *values,
                                         const size_t *counts, size_t n) {
    if (!o) return CLOPT_ERR_INVALID_ARGUMENT;
    if (!o->built)
        return clopt__fail(o->ctx, CLOPT_ERR_NOT_BUILT,
                           "set_weights: the optimizer has not been built yet; build it on the "
                           "trainable variables first");
    if (n && (!values || !counts))
        return clopt__fail(o->ctx, CLOPT_ERR_INVALID_ARGUMENT, "set_weights: NULL lists");
    clopt_status sync = clopt__optimizer_sync(o, 1);
    if (sync != CLOPT_OK) return sync;
    /* Keras zips the lists: extra entries on either side are ignored. */
    size_t total = clopt_optimizer_variable_count(o), m = n < total ? n : total;
    for (size_t i = 0; i < m; i++) {
        clopt_status st =
            check_write(o, clopt__optimizer_entry(o, i, NULL), values[i], counts[i]);
        if (st != CLOPT_OK) return st;
    }
    for (size_t i = 0; i < m; i++) {
        clopt_status st = do_write(o, i, clopt__optimizer_entry(o, i, NULL), values[i]);
        if (st != CLOPT_OK) return st;
    }
    return CLOPT_OK;
}

static clopt_status check_opt_var(clopt_optimizer *o, clopt_variable *var, const char *fn) {
    if (!o) return CLOPT_ERR_INVALID_ARGUMENT;
    if (!var) return clopt__fail(o->ctx, CLOPT_ERR_INVALID_ARGUMENT, "%s: variable is NULL", fn);
    return CLOPT_OK;
}

clopt_status clopt_optimizer_assign(clopt_optimizer *o, clopt_variable *var,
                                    const clopt_variable *value) {
    clopt_status st = check_opt_var(o, var, "assign");
    return st == CLOPT_OK ? clopt_variable_assign(var, value) : st;
}

clopt_status clopt_optimizer_assign_add(clopt_optimizer *o, clopt_variable *var,
                                        const clopt_variable *value) {
    clopt_status st = check_opt_var(o, var, "assign_add");
    return st == CLOPT_OK ? clopt_variable_assign_add(var, value) : st;
}

clopt_status clopt_optimizer_assign_sub(clopt_optimizer *o, clopt_variable *var,
                                        const clopt_variable *value) {
    clopt_status st = check_opt_var(o, var, "assign_sub");
    return st == CLOPT_OK ? clopt_variable_assign_sub(var, value) : st;
}
