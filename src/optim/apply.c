/* apply(): Keras's order of operations (semantics doc, section 1.4), with every input checked
 * before anything changes, and a cached launch plan so a step allocates nothing. */
#include <stdlib.h>
#include <string.h>
#include "optim_internal.h"

/* The position of `v` in the built list, or -1. */
static long built_index(const clopt_optimizer *o, const clopt_variable *v) {
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

static int plan_matches(const clopt__plan *p, const size_t *idx, clopt_variable *const *grads,
                        size_t n) {
    return p->n == n && p->var_index && memcmp(p->var_index, idx, n * sizeof *idx) == 0 &&
           memcmp(p->grads, grads, n * sizeof *grads) == 0;
}

static size_t chunks_of(const clopt_variable *v) {
    return ((size_t)v->size + CLOPT__CHUNK - 1) / CLOPT__CHUNK;
}

/* Groups the pairs by (dtype, variable block, gradient block): one launch each, a run of chunk
 * table entries each. Rebuilt only when the pattern of pairs changes. */
static clopt_status plan_build(clopt_optimizer *o, const size_t *idx,
                               clopt_variable *const *grads, size_t n) {
    clopt_context *ctx = o->ctx;
    clopt__plan *p = &o->plan;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += chunks_of(o->vars[idx[i]]);
    clopt__chunk *table = malloc((total ? total : 1) * sizeof *table);
    clopt__plan_launch *ls = malloc((n ? n : 1) * sizeof *ls);
    size_t *nidx = malloc(n * sizeof *nidx);
    clopt_variable **ngrads = malloc(n * sizeof *ngrads);
    char *done = calloc(n, 1);
    clopt_status st = CLOPT_OK;
    if (!table || !ls || !nidx || !ngrads || !done) {
        st = clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "apply: out of host memory");
        goto out;
    }
    size_t nl = 0, used = 0;
    for (size_t i = 0; i < n; i++) {
        if (done[i]) continue;
        const clopt_variable *vi = o->vars[idx[i]];
        clopt__plan_launch *l = &ls[nl++];
        l->dtype = vi->dtype;
        l->var_block = vi->block;
        l->grad_block = grads[i]->block;
        l->table_base = used;
        for (size_t j = i; j < n; j++) {
            const clopt_variable *v = o->vars[idx[j]], *g = grads[j];
            if (done[j] || v->dtype != l->dtype || v->block != l->var_block ||
                g->block != l->grad_block)
                continue;
            done[j] = 1;
            for (size_t c = 0; c < chunks_of(v); c++)
                table[used++] = (clopt__chunk){
                    (uint32_t)(v->offset / CLOPT__CHUNK + c),
                    (uint32_t)(g->offset / CLOPT__CHUNK + c),
                    (uint32_t)(o->slot_off[idx[j]] / CLOPT__CHUNK + c), (uint32_t)idx[j]};
        }
        l->nchunks = used - l->table_base;
    }
    if (total > p->table_cap) {
        void *buf;
        if ((st = ctx->ops->buffer_create(ctx, total * sizeof *table, &buf)) != CLOPT_OK) goto out;
        if (p->table_buf) ctx->ops->buffer_release(ctx, p->table_buf);
        p->table_buf = buf;
        p->table_cap = total;
    }
    if (total && (st = ctx->ops->write(ctx, p->table_buf, 0, table, total * sizeof *table)))
        goto out;
    memcpy(nidx, idx, n * sizeof *idx);
    memcpy(ngrads, grads, n * sizeof *grads);
    free(p->var_index);
    free(p->grads);
    free(p->launches);
    p->var_index = nidx;
    p->grads = ngrads;
    p->launches = ls;
    p->nlaunches = nl;
    p->n = n;
    nidx = NULL;
    ngrads = NULL;
    ls = NULL;
out:
    free(table);
    free(ls);
    free(nidx);
    free(ngrads);
    free(done);
    /* A failed rebuild leaves no plan, so the next apply rebuilds. */
    if (st != CLOPT_OK) p->n = 0;
    return st;
}

static clopt_status run_update(clopt_optimizer *o) {
    clopt_context *ctx = o->ctx;
    const clopt__step_info step = {o->iterations + 1, o->lr};
    for (size_t i = 0; i < o->plan.nlaunches; i++) {
        const clopt__plan_launch *pl = &o->plan.launches[i];
        clopt__launch l = {0};
        l.dtype = pl->dtype;
        o->cls->launch(o, &step, &l);
        l.var_buf = pl->var_block->buf;
        l.grad_buf = pl->grad_block->buf;
        l.slot_buf = o->groups[pl->dtype].block ? o->groups[pl->dtype].block->buf : NULL;
        l.slot_stride = o->groups[pl->dtype].stride;
        l.table_buf = o->plan.table_buf;
        l.table_base = pl->table_base;
        l.nchunks = pl->nchunks;
        clopt_status st = ctx->ops->update(ctx, &l);
        if (st != CLOPT_OK) return st;
    }
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
        long bi = built_index(o, v);
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

clopt_status clopt_optimizer_apply(clopt_optimizer *o, clopt_variable *const *grads,
                                   clopt_variable *const *vars, size_t n) {
    if (!o) return CLOPT_ERR_INVALID_ARGUMENT;
    clopt_context *ctx = o->ctx;
    if (n == 0) return CLOPT_OK; /* Keras returns early; the counter does not move */
    if (!grads) return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT, "apply: grads is NULL");
    clopt_status st;
    if (!vars) {
        if (!o->built)
            return clopt__fail(ctx, CLOPT_ERR_NOT_BUILT,
                               "apply: gradients given without variables, but the optimizer is "
                               "not built; call clopt_optimizer_build first");
        if (n != o->nvars)
            return clopt__fail(ctx, CLOPT_ERR_LENGTH_MISMATCH,
                               "apply: %zu gradients given but the optimizer tracks %zu "
                               "variables; they must match one to one",
                               n, o->nvars);
    } else {
        if ((st = clopt__optimizer_check_vars(o, vars, n, "apply")) != CLOPT_OK) return st;
        if (!o->built) {
            /* Check the pairs before building, so a bad call changes nothing. */
            int any = 0;
            for (size_t i = 0; i < n; i++) {
                if (!grads[i]) continue;
                any = 1;
                if ((st = check_pair(o, i, grads[i], vars[i])) != CLOPT_OK) return st;
            }
            if (!any)
                return clopt__fail(ctx, CLOPT_ERR_NO_GRADIENTS,
                                   "apply: no gradients provided for any variable (all %zu are "
                                   "NULL)",
                                   n);
            if ((st = clopt_optimizer_build(o, vars, n)) != CLOPT_OK) return st;
        }
    }
    /* Scratch made at build: the variables are distinct and known, so at most nvars pairs. */
    size_t *idx = o->scratch_idx, m = 0;
    clopt_variable **kept = o->scratch_grads;
    if ((st = resolve_pairs(o, grads, vars, n, idx, kept, &m)) != CLOPT_OK) return st;
    if (!plan_matches(&o->plan, idx, kept, m) && (st = plan_build(o, idx, kept, m)) != CLOPT_OK)
        return st;
    if ((st = run_update(o)) != CLOPT_OK) return st;
    o->iterations++;
    return CLOPT_OK;
}
