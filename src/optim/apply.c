/* apply(): every input checked before anything changes, then the launch plan of the step's
 * pairs (plan.c, cached), then the step's stages (stages.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "optim_internal.h"
#include "schedule_internal.h"

/* The position of `v` in the built list, or -1. `hint` is checked first: callers usually pass
 * the built order, which keeps a step O(n) in the number of variables. */
static long built_index(const clopt_optimizer *o, const clopt_variable *v, size_t hint) {
    if (hint < o->nvars && o->vars[hint] == v) return (long)hint;
    for (size_t i = 0; i < o->nvars; i++)
        if (o->vars[i] == v) return (long)i;
    return -1;
}

static clopt_status check_pair(clopt_optimizer *o, size_t i, const clopt_variable *g,
                               const clopt_variable *v) {
    clopt_context *ctx = o->ctx;
    char a[128], b[128];
    if (g->ctx != ctx)
        return clopt__fail(ctx, CLOPT_ERR_CONTEXT_MISMATCH,
                           "apply: gradient %zu ('%s') belongs to another context", i, g->name);
    if (!clopt__same_shape(g, v))
        return clopt__fail(ctx, CLOPT_ERR_SHAPE_MISMATCH,
                           "apply: gradient %zu ('%s') has shape %s but variable '%s' has %s", i,
                           g->name, clopt__shape_str(g, a, sizeof a), v->name,
                           clopt__shape_str(v, b, sizeof b));
    if (g->dtype != v->dtype)
        return clopt__fail(ctx, CLOPT_ERR_DTYPE_MISMATCH,
                           "apply: gradient %zu ('%s') is %s but variable '%s' is %s", i, g->name,
                           clopt_dtype_name(g->dtype), v->name, clopt_dtype_name(v->dtype));
    return CLOPT_OK;
}

/* Resolves the variable list, drops missing gradients and checks every pair. Writes the built
 * index and gradient of each kept pair to idx/kept and their count to *m. */
static clopt_status resolve_pairs(clopt_optimizer *o, clopt_variable *const *grads,
                                  clopt_variable *const *vars, size_t n, size_t *idx,
                                  clopt_variable **kept, size_t *m) {
    clopt_context *ctx = o->ctx;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        clopt_variable *v = vars ? vars[i] : o->vars[i];
        long bi = built_index(o, v, i);
        if (bi < 0)
            return clopt__fail(ctx, CLOPT_ERR_UNKNOWN_VARIABLE,
                               "apply: unknown variable '%s' (position %zu): this optimizer can "
                               "only be called for the variables it was built with",
                               v->name, i);
        if (!grads[i]) continue;
        clopt_status st = check_pair(o, i, grads[i], v);
        if (st != CLOPT_OK) return st;
        idx[k] = (size_t)bi;
        kept[k++] = grads[i];
    }
    if (k == 0)
        return clopt__fail(ctx, CLOPT_ERR_NO_GRADIENTS,
                           "apply: no gradients provided for any variable (all %zu are NULL)", n);
    *m = k;
    return CLOPT_OK;
}

/* Checks what can be checked before an unbuilt optimizer builds on `vars`. */
static clopt_status check_before_build(clopt_optimizer *o, clopt_variable *const *grads,
                                       clopt_variable *const *vars, size_t n) {
    int any = 0;
    for (size_t i = 0; i < n; i++) {
        if (!grads[i]) continue;
        any = 1;
        clopt_status st = check_pair(o, i, grads[i], vars[i]);
        if (st != CLOPT_OK) return st;
    }
    if (!any)
        return clopt__fail(o->ctx, CLOPT_ERR_NO_GRADIENTS,
                           "apply: no gradients provided for any variable (all %zu are NULL)", n);
    return CLOPT_OK;
}

/* Whether this step's pairs are the last step's, which were checked and planned: the built list
 * (vars NULL or it, in order) with the same gradients, and no handle freed since (so none of
 * them can be another object at the same address). Then the step costs two memcmp of n
 * pointers rather than n handle lookups and pair checks. */
static int same_step(const clopt_optimizer *o, clopt_variable *const *grads,
                     clopt_variable *const *vars, size_t n) {
    const clopt__plan *p = &o->plan;
    return o->built && p->whole && p->n == n && n == o->nvars &&
           p->epoch == clopt__handles_epoch() &&
           (!vars || memcmp(vars, o->vars, n * sizeof *vars) == 0) &&
           memcmp(grads, p->grads, n * sizeof *grads) == 0;
}

clopt_status clopt__apply_prepare(clopt_optimizer *o, clopt_optimizer *builder,
                                  clopt_variable *const *grads, clopt_variable *const *vars,
                                  size_t n) {
    clopt_context *ctx = o->ctx;
    if (!grads) return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT, "apply: grads is NULL");
    clopt_status st;
    /* A schedule's hyperparameters are checked when parsed; a finite one may still overflow at
     * some step (ExponentialDecay with a large rate): refuse that step rather than train on it. */
    if (o->schedule && !isfinite(clopt__learning_rate(o)))
        return clopt__fail(ctx, CLOPT_ERR_BAD_VALUE,
                           "apply: the learning-rate schedule %s gives %g at step %lld; nothing "
                           "was changed",
                           clopt__schedule_class_name(o->schedule), clopt__learning_rate(o),
                           (long long)o->iterations);
    if (!vars && !o->built)
        return clopt__fail(ctx, CLOPT_ERR_NOT_BUILT,
                           "apply: gradients given without variables, but the optimizer is "
                           "not built; call clopt_optimizer_build first");
    if (!vars && n != o->nvars)
        return clopt__fail(ctx, CLOPT_ERR_LENGTH_MISMATCH,
                           "apply: %zu gradients given but the optimizer tracks %zu "
                           "variables; they must match one to one",
                           n, o->nvars);
    if (same_step(o, grads, vars, n)) return CLOPT_OK;
    const uint64_t epoch = clopt__handles_epoch(); /* before the checks it vouches for */
    /* Only now read grads' handles: without vars, n is the caller's claim, checked above. */
    const size_t dead = clopt__handles_first_dead((const void *const *)grads, n);
    if (dead < n) /* read nothing of it: its memory is freed */
        return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT,
                           "apply: gradient %zu was destroyed (or its context was); nothing was "
                           "changed",
                           dead);
    if (!vars) {
        /* the built list, checked at build */
    } else if (o->built && n == o->nvars && memcmp(vars, o->vars, n * sizeof *vars) == 0) {
        /* The built list itself, in built order, as a training loop passes it every step: it
         * was checked at build (no NULL, no duplicate, this context). Skipping check_vars,
         * whose duplicate scan is O(n^2), keeps the step O(n): with 2000 variables the scan
         * cost about 1 ms per step on 2 cores, half of a memory-bound Adam step over them. */
    } else {
        if ((st = clopt__optimizer_check_vars(o, vars, n, "apply")) != CLOPT_OK) return st;
        if (!o->built && ((st = check_before_build(o, grads, vars, n)) != CLOPT_OK ||
                          (st = clopt_optimizer_build(builder, vars, n)) != CLOPT_OK))
            return st;
    }
    /* Scratch made at build: the variables are distinct and known, so at most nvars pairs. */
    size_t *idx = o->scratch_idx, m = 0;
    clopt_variable **kept = o->scratch_grads;
    if ((st = resolve_pairs(o, grads, vars, n, idx, kept, &m)) != CLOPT_OK) return st;
    if (!clopt__plan_matches(&o->plan, idx, kept, m) &&
        (st = clopt__plan_build(o, &o->plan, idx, kept, m, clopt__partials_bytes(o))) != CLOPT_OK)
        return st;
    o->plan.epoch = epoch;
    return CLOPT_OK;
}

clopt_status clopt_optimizer_apply(clopt_optimizer *o, clopt_variable *const *grads,
                                   clopt_variable *const *vars, size_t n) {
    if (!clopt__handle_live(o)) return CLOPT_ERR_INVALID_ARGUMENT; /* NULL or destroyed */
    if (n == 0) return CLOPT_OK; /* Keras returns early; the counter does not move */
    if (o->cls->wrapper) return o->cls->wrapper->apply(o, grads, vars, n);
    clopt_status st = clopt__apply_prepare(o, o, grads, vars, n);
    return st == CLOPT_OK ? clopt__apply_run(o, NULL) : st;
}
