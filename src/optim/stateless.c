/* stateless_apply: one step computed from caller-given values into caller-given outputs, with
 * the optimizer and its variables left exactly as they were. Implemented as save, load the
 * inputs, step, copy out, restore: a convenience for functional training loops, not a fast path
 * (it copies every optimizer variable through the host twice). */
#include <stdlib.h>
#include <string.h>
#include "optim_internal.h"

typedef struct snapshot {
    size_t nopt;
    double **opt;           /* every optimizer variable's values */
    size_t *counts;
    clopt_variable **model; /* copies of the built variables */
    size_t nmodel;
} snapshot;

static void snapshot_free(snapshot *s) {
    for (size_t i = 0; i < s->nopt; i++) free(s->opt ? s->opt[i] : NULL);
    free(s->opt);
    free(s->counts);
    for (size_t i = 0; i < s->nmodel; i++) clopt_variable_destroy(s->model ? s->model[i] : NULL);
    free(s->model);
}

static size_t entry_count(clopt_optimizer *o, size_t i) {
    clopt_variable *v = NULL;
    clopt_optimizer_variable(o, i, NULL, NULL, &v);
    return v ? (size_t)v->size : 1;
}

static clopt_status snapshot_take(clopt_optimizer *o, clopt_optimizer *core, snapshot *s) {
    clopt_context *ctx = o->ctx;
    s->nopt = clopt_optimizer_variable_count(o);
    s->opt = calloc(s->nopt, sizeof *s->opt);
    s->counts = calloc(s->nopt, sizeof *s->counts);
    s->nmodel = core->nvars;
    s->model = calloc(core->nvars, sizeof *s->model);
    if (!s->opt || !s->counts || !s->model)
        return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "stateless_apply: out of host memory");
    for (size_t i = 0; i < s->nopt; i++) {
        s->counts[i] = entry_count(o, i);
        if (!(s->opt[i] = malloc(s->counts[i] * sizeof(double))))
            return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "stateless_apply: out of memory");
        clopt_status st = clopt_optimizer_variable_read(o, i, s->opt[i], s->counts[i]);
        if (st != CLOPT_OK) return st;
    }
    for (size_t i = 0; i < core->nvars; i++) {
        const clopt_variable *v = core->vars[i];
        clopt_status st =
            clopt_variable_create(ctx, v->name, v->dtype, v->ndim, v->shape, NULL, &s->model[i]);
        if (st == CLOPT_OK) st = clopt_variable_assign(s->model[i], v);
        if (st != CLOPT_OK) return st;
    }
    return CLOPT_OK;
}

static clopt_status snapshot_restore(clopt_optimizer *o, clopt_optimizer *core, snapshot *s) {
    clopt_status st = clopt_optimizer_set_weights(o, (const double *const *)s->opt, s->counts,
                                                  s->nopt);
    for (size_t i = 0; st == CLOPT_OK && i < core->nvars; i++)
        st = clopt_variable_assign(core->vars[i], s->model[i]);
    return st;
}

static clopt_status check_list(clopt_optimizer *core, clopt_variable *const *list,
                               const char *what) {
    char a[128], b[128];
    for (size_t i = 0; i < core->nvars; i++) {
        const clopt_variable *v = core->vars[i], *x = list[i];
        if (!x)
            return clopt__fail(core->ctx, CLOPT_ERR_INVALID_ARGUMENT,
                               "stateless_apply: %s[%zu] is NULL", what, i);
        if (x->ctx != core->ctx)
            return clopt__fail(core->ctx, CLOPT_ERR_CONTEXT_MISMATCH,
                               "stateless_apply: %s[%zu] belongs to another context", what, i);
        if (!clopt__same_shape(v, x) || v->dtype != x->dtype)
            return clopt__fail(core->ctx, x->dtype != v->dtype ? CLOPT_ERR_DTYPE_MISMATCH
                                                               : CLOPT_ERR_SHAPE_MISMATCH,
                               "stateless_apply: %s[%zu] ('%s') is %s %s but variable '%s' is "
                               "%s %s",
                               what, i, x->name, clopt_dtype_name(x->dtype),
                               clopt__shape_str(x, a, sizeof a), v->name,
                               clopt_dtype_name(v->dtype), clopt__shape_str(v, b, sizeof b));
    }
    return CLOPT_OK;
}

clopt_status clopt_optimizer_stateless_apply(clopt_optimizer *o, const double *const *opt_in,
                                             clopt_variable *const *grads,
                                             clopt_variable *const *vars_in, size_t n,
                                             double *const *opt_out,
                                             clopt_variable *const *vars_out) {
    if (!o) return CLOPT_ERR_INVALID_ARGUMENT;
    clopt_optimizer *core = o; /* the optimizer that holds the variables (inside wrappers) */
    for (clopt_optimizer *in; (in = clopt__wrapped(core)) != NULL;) core = in;
    clopt_context *ctx = o->ctx;
    if (!o->built)
        return clopt__fail(ctx, CLOPT_ERR_NOT_BUILT,
                           "stateless_apply: the optimizer must be built (its variables must "
                           "exist); build it on the trainable variables first");
    if (!opt_in || !grads || !vars_in || !opt_out || !vars_out)
        return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT, "stateless_apply: a list is NULL");
    if (n != core->nvars)
        return clopt__fail(ctx, CLOPT_ERR_LENGTH_MISMATCH,
                           "stateless_apply: %zu trainable variables given, the optimizer was "
                           "built on %zu",
                           n, core->nvars);
    size_t nopt = clopt_optimizer_variable_count(o);
    for (size_t i = 0; i < nopt; i++)
        if (!opt_in[i] || !opt_out[i])
            return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT,
                               "stateless_apply: optimizer variable %zu has no %s buffer", i,
                               opt_in[i] ? "output" : "input");
    clopt_status st;
    if ((st = check_list(core, vars_in, "trainable_variables")) != CLOPT_OK ||
        (st = check_list(core, vars_out, "outputs")) != CLOPT_OK)
        return st;
    snapshot s = {0};
    if ((st = snapshot_take(o, core, &s)) != CLOPT_OK) {
        snapshot_free(&s);
        return st;
    }
    st = clopt_optimizer_set_weights(o, opt_in, s.counts, nopt);
    for (size_t i = 0; st == CLOPT_OK && i < n; i++)
        st = clopt_variable_assign(core->vars[i], vars_in[i]);
    if (st == CLOPT_OK) st = clopt_optimizer_apply(o, grads, NULL, n);
    for (size_t i = 0; st == CLOPT_OK && i < nopt; i++)
        st = clopt_optimizer_variable_read(o, i, opt_out[i], s.counts[i]);
    for (size_t i = 0; st == CLOPT_OK && i < n; i++)
        st = clopt_variable_assign(vars_out[i], core->vars[i]);
    clopt_status rst = snapshot_restore(o, core, &s);
    snapshot_free(&s);
    return st != CLOPT_OK ? st : rst;
}
