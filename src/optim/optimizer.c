/* Optimizer lifetime, build (slot layout and Keras's variable list) and accessors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "optim_internal.h"

static void plan_free(clopt_context *ctx, clopt__plan *p) {
    free(p->var_index);
    free(p->grads);
    free(p->launches);
    if (p->table_buf) ctx->ops->buffer_release(ctx, p->table_buf);
    memset(p, 0, sizeof *p);
}

/* Frees Keras variable-list entries from `keep` on. */
static void optvars_free(clopt_optimizer *o, size_t keep) {
    for (size_t i = keep; i < o->noptvars; i++) {
        if (o->optvars[i].var) clopt__variable_free(o->optvars[i].var, 0);
        free(o->optvars[i].name);
        free(o->optvars[i].path);
    }
    if (keep == 0) {
        free(o->optvars);
        o->optvars = NULL;
        o->noptvars = o->capoptvars = 0;
    } else if (o->noptvars > keep) {
        o->noptvars = keep;
    }
}

static void unbuild(clopt_optimizer *o) {
    clopt_context *ctx = o->ctx;
    optvars_free(o, o->nbaseoptvars);
    plan_free(ctx, &o->plan);
    for (int d = 0; d < 4; d++) {
        if (o->groups[d].block) clopt__arena_free(ctx, o->groups[d].block, 0, 0);
        memset(&o->groups[d], 0, sizeof o->groups[d]);
    }
    free(o->vars);
    free(o->slot_off);
    free(o->scratch_idx);
    free(o->scratch_grads);
    o->vars = NULL;
    o->slot_off = NULL;
    o->scratch_idx = NULL;
    o->scratch_grads = NULL;
    o->nvars = 0;
    o->built = 0;
}

static void optimizer_free(clopt_optimizer *o) {
    clopt_context *ctx = o->ctx;
    unbuild(o);
    optvars_free(o, 0);
    if (o->prev) o->prev->next = o->next;
    else ctx->opts = o->next;
    if (o->next) o->next->prev = o->prev;
    free(o->name);
    free(o);
}

void clopt_optimizer_destroy(clopt_optimizer *o) {
    if (o) optimizer_free(o);
}

void clopt__optimizer_free_all(clopt_context *ctx) {
    while (ctx->opts) optimizer_free(ctx->opts);
}

/* Adds an entry to Keras's variable list; var may be NULL (host-side scalars). */
static clopt_status optvar_add(clopt_optimizer *o, const char *name, clopt_variable *var) {
    if (o->noptvars == o->capoptvars) {
        size_t c = o->capoptvars ? 2 * o->capoptvars : 16;
        clopt__optvar *nv = realloc(o->optvars, c * sizeof *nv);
        if (!nv) return CLOPT_ERR_OUT_OF_MEMORY;
        o->optvars = nv;
        o->capoptvars = c;
    }
    clopt__optvar *e = &o->optvars[o->noptvars];
    e->name = clopt__strdup(name);
    e->path = clopt__format("%s/%s", o->name, name);
    e->var = var;
    if (!e->name || !e->path) {
        free(e->name);
        free(e->path);
        return CLOPT_ERR_OUT_OF_MEMORY;
    }
    o->noptvars++;
    return CLOPT_OK;
}

/* Keras's slot name for variable `v`: its name with '/' and ':' replaced by '_', then
 * "_<slot>". */
static char *slot_name(const clopt_variable *v, const char *slot) {
    char *s = clopt__format("%s_%s", v->name, slot);
    if (s)
        for (char *p = s; *p; p++)
            if (*p == '/' || *p == ':') *p = '_';
    return s;
}

static clopt_status make_slot_view(clopt_optimizer *o, size_t i, int k) {
    const clopt_variable *v = o->vars[i];
    clopt__slot_group *g = &o->groups[v->dtype];
    char *name = slot_name(v, o->kinds[k].name);
    if (!name) return CLOPT_ERR_OUT_OF_MEMORY;
    clopt_variable *view;
    clopt_status st = clopt__variable_view(o->ctx, name, v->dtype, v->ndim, v->shape, g->block,
                                           (size_t)k * g->stride + o->slot_off[i], &view);
    if (st == CLOPT_OK) {
        st = optvar_add(o, name, view);
        if (st != CLOPT_OK) clopt__variable_free(view, 0);
    }
    free(name);
    return st;
}

clopt_status clopt__optimizer_init_optvars(clopt_optimizer *o) {
    clopt_status st = optvar_add(o, "iteration", NULL);
    if (st == CLOPT_OK) st = optvar_add(o, "learning_rate", NULL);
    o->nbaseoptvars = o->noptvars;
    return st;
}

/* Keras's order: iteration, learning_rate (a float), then slot groups; within a group the kinds
 * interleave per variable. */
static clopt_status build_optvars(clopt_optimizer *o) {
    clopt_status st = CLOPT_OK;
    int maxgroup = -1;
    for (int k = 0; k < o->nkinds; k++)
        if (o->kinds[k].group > maxgroup) maxgroup = o->kinds[k].group;
    for (int grp = 0; grp <= maxgroup && st == CLOPT_OK; grp++)
        for (size_t i = 0; i < o->nvars && st == CLOPT_OK; i++)
            for (int k = 0; k < o->nkinds && st == CLOPT_OK; k++)
                if (o->kinds[k].group == grp) st = make_slot_view(o, i, k);
    return st;
}

/* Slot storage: per dtype, one dedicated block of nkinds strides, each variable at a chunk-
 * aligned offset; filled with each kind's initial value. */
static clopt_status layout_slots(clopt_optimizer *o) {
    clopt_context *ctx = o->ctx;
    for (size_t i = 0; i < o->nvars; i++) {
        clopt__slot_group *g = &o->groups[o->vars[i]->dtype];
        o->slot_off[i] = g->used;
        g->used += ((size_t)o->vars[i]->size + CLOPT__CHUNK - 1) / CLOPT__CHUNK * CLOPT__CHUNK;
    }
    if (o->nkinds == 0) return CLOPT_OK;
    for (int d = 0; d < 4; d++) {
        clopt__slot_group *g = &o->groups[d];
        if (!g->used) continue;
        g->stride = g->used;
        size_t esize = clopt_dtype_size((clopt_dtype)d), off;
        clopt_status st = clopt__arena_alloc(ctx, g->stride * (size_t)o->nkinds * esize, 1,
                                             &g->block, &off);
        if (st != CLOPT_OK) return st;
        for (int k = 0; k < o->nkinds; k++) {
            if (o->kinds[k].init == 0.0) continue;
            st = ctx->ops->fill(ctx, g->block->buf, (clopt_dtype)d, (size_t)k * g->stride,
                                g->stride, o->kinds[k].init);
            if (st != CLOPT_OK) return st;
        }
    }
    return CLOPT_OK;
}

/* Compiles and warms the kernel of each dtype the optimizer will update. */
static clopt_status warm_kernels(clopt_optimizer *o) {
    int seen[4] = {0};
    for (size_t i = 0; i < o->nvars; i++) {
        clopt_dtype d = o->vars[i]->dtype;
        if (seen[d]++) continue;
        clopt__launch l = {0};
        clopt__step_info step = {1, o->lr};
        l.dtype = d;
        o->cls->launch(o, &step, &l);
        clopt_status st = o->ctx->ops->prepare(o->ctx, &l);
        if (st != CLOPT_OK) return st;
    }
    return CLOPT_OK;
}

clopt_status clopt__optimizer_check_vars(clopt_optimizer *o, clopt_variable *const *vars,
                                         size_t n, const char *fn) {
    clopt_context *ctx = o->ctx;
    if (!vars || n == 0)
        return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT, "%s: empty variable list", fn);
    for (size_t i = 0; i < n; i++) {
        if (!vars[i])
            return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT, "%s: variable %zu is NULL", fn, i);
        if (vars[i]->ctx != ctx)
            return clopt__fail(ctx, CLOPT_ERR_CONTEXT_MISMATCH,
                               "%s: variable %zu ('%s') belongs to another context", fn, i,
                               vars[i]->name);
        for (size_t j = 0; j < i; j++)
            if (vars[j] == vars[i])
                return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT,
                                   "%s: variable '%s' is listed twice (positions %zu and %zu)", fn,
                                   vars[i]->name, j, i);
    }
    return CLOPT_OK;
}

clopt_status clopt_optimizer_build(clopt_optimizer *o, clopt_variable *const *vars, size_t n) {
    if (!o) return CLOPT_ERR_INVALID_ARGUMENT;
    if (o->built) return CLOPT_OK;
    clopt_status st = clopt__optimizer_check_vars(o, vars, n, "clopt_optimizer_build");
    if (st != CLOPT_OK) return st;
    o->vars = malloc(n * sizeof *o->vars);
    o->slot_off = calloc(n, sizeof *o->slot_off);
    o->scratch_idx = malloc(n * sizeof *o->scratch_idx);
    o->scratch_grads = malloc(n * sizeof *o->scratch_grads);
    if (!o->vars || !o->slot_off || !o->scratch_idx || !o->scratch_grads) {
        st = clopt__fail(o->ctx, CLOPT_ERR_OUT_OF_MEMORY, "build: out of host memory");
        goto fail;
    }
    memcpy(o->vars, vars, n * sizeof *vars);
    o->nvars = n;
    o->nkinds = o->cls->slots(o, o->kinds);
    if ((st = layout_slots(o)) != CLOPT_OK || (st = build_optvars(o)) != CLOPT_OK ||
        (st = warm_kernels(o)) != CLOPT_OK) {
        if (st == CLOPT_ERR_OUT_OF_MEMORY && !o->ctx->error)
            clopt__fail(o->ctx, st, "build: out of memory");
        goto fail;
    }
    o->built = 1;
    return CLOPT_OK;
fail:
    unbuild(o);
    return st;
}

int64_t clopt_optimizer_iterations(const clopt_optimizer *o) { return o ? o->iterations : -1; }

clopt_status clopt_optimizer_get_learning_rate(const clopt_optimizer *o, double *lr) {
    if (!o || !lr) return CLOPT_ERR_INVALID_ARGUMENT;
    *lr = o->lr;
    return CLOPT_OK;
}

clopt_status clopt_optimizer_set_learning_rate(clopt_optimizer *o, double lr) {
    if (!o) return CLOPT_ERR_INVALID_ARGUMENT;
    if (!isfinite(lr))
        return clopt__fail(o->ctx, CLOPT_ERR_BAD_VALUE, "learning_rate must be finite, got %g",
                           lr);
    o->lr = (float)lr;
    return CLOPT_OK;
}

const char *clopt_optimizer_class_name(const clopt_optimizer *o) {
    return o ? o->cls->class_name : NULL;
}
const char *clopt_optimizer_name(const clopt_optimizer *o) { return o ? o->name : NULL; }

size_t clopt_optimizer_variable_count(const clopt_optimizer *o) {
    return o ? o->noptvars : 0;
}

clopt_status clopt_optimizer_variable(const clopt_optimizer *o, size_t index, const char **name,
                                      const char **path, clopt_variable **var) {
    if (!o) return CLOPT_ERR_INVALID_ARGUMENT;
    if (index >= o->noptvars)
        return clopt__fail(o->ctx, CLOPT_ERR_INVALID_ARGUMENT,
                           "optimizer variable %zu does not exist (there are %zu)", index,
                           o->noptvars);
    if (name) *name = o->optvars[index].name;
    if (path) *path = o->optvars[index].path;
    if (var) *var = o->optvars[index].var;
    return CLOPT_OK;
}
