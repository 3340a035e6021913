/* Optimizer lifetime, build (slot layout and Keras's variable list) and accessors. */
#include <math.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include "optim_internal.h"
#include "schedule_internal.h"

/* Three repetition operators in a row, outside brackets and escapes. */
static int stacks_repetitions(const char *p) {
    int after_rep = 0; /* repetition operators just before p */
    for (; *p; p++) {
        if (*p == '\\') {
            after_rep = 0;
            if (!*++p) break;
            continue;
        }
        if (*p == '[') { /* skip a bracket expression: ']' first is a member */
            p += p[1] == '^';
            p += p[1] == ']';
            while (p[1] && p[1] != ']') p++;
            if (p[1]) p++;
            after_rep = 0;
            continue;
        }
        const int rep = *p == '*' || *p == '+' || *p == '?' || *p == '{';
        if (rep && after_rep == 2) return 1;
        if (*p == '{') {
            while (p[1] && p[1] != '}') p++;
            if (p[1]) p++;
        }
        after_rep = rep ? after_rep + 1 : 0;
    }
    return 0;
}

int clopt__regcomp(regex_t *re, const char *pattern) {
    if (stacks_repetitions(pattern)) return REG_BADRPT;
    return regcomp(re, pattern, REG_EXTENDED | REG_NOSUB);
}

/* Frees Keras variable-list entries from `keep` on. */
static void optvars_free(clopt_optimizer *o, size_t keep) {
    for (size_t i = keep; i < o->noptvars; i++) {
        if (o->optvars[i].var) {
            /* Views into the slot blocks own no memory; add_variable's variables do. */
            clopt_variable *v = o->optvars[i].var;
            if (o->optvars[i].owns_memory) v->owned_by_optimizer = 0;
            clopt__variable_free(v, o->optvars[i].owns_memory);
        }
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
    if (o->cls->on_unbuild) o->cls->on_unbuild(o);
    o->class_state = NULL;
    optvars_free(o, o->nbaseoptvars);
    clopt__plan_free(ctx, &o->plan);
    clopt__plan_free(ctx, &o->all_plan);
    for (int d = 0; d < 4; d++) {
        if (o->groups[d].block) clopt__arena_free(ctx, o->groups[d].block, 0, 0);
        if (o->groups[d].seg_buf) ctx->ops->buffer_release(ctx, o->groups[d].seg_buf);
        memset(&o->groups[d], 0, sizeof o->groups[d]);
    }
    free(o->vars);
    free(o->slot_off);
    free(o->scratch_idx);
    free(o->scratch_grads);
    free(o->no_decay);
    free(o->decay_real);
    o->decay_real = NULL;
    o->vars = NULL;
    o->slot_off = NULL;
    o->scratch_idx = NULL;
    o->scratch_grads = NULL;
    o->no_decay = NULL;
    o->nvars = 0;
    o->built = 0;
}

static void free_names(clopt_optimizer *o) {
    for (size_t i = 0; i < o->ndecay_exclude_names; i++) free(o->decay_exclude_names[i]);
    free(o->decay_exclude_names);
    o->decay_exclude_names = NULL;
    o->ndecay_exclude_names = 0;
}

/* ---- the context's list of optimizers: the optimizer layer's data on the context ---- */

static void free_all(clopt_context *ctx, void *head);
static const clopt__context_hooks layer_hooks = {clopt__optimizer_using,
                                                 clopt__optimizers_forget_variable, free_all};

clopt_status clopt__optimizer_attach(clopt_optimizer *o) {
    void **head = clopt__context_layer(o->ctx, &layer_hooks);
    if (!head) return clopt__fail(o->ctx, CLOPT_ERR_OUT_OF_MEMORY, "too many context layers");
    if (clopt__handle_add(o) != 0)
        return clopt__fail(o->ctx, CLOPT_ERR_OUT_OF_MEMORY, "out of host memory");
    o->prev = NULL;
    o->next = *head;
    if (o->next) o->next->prev = o;
    *head = o;
    return CLOPT_OK;
}

/* Takes o off the context's list, if it is on it (a wrapper's inner optimizer is not). */
static void detach(clopt_optimizer *o) {
    void **head = clopt__context_layer(o->ctx, &layer_hooks);
    if (!head || !(o->prev || *head == o)) return;
    if (o->prev) o->prev->next = o->next;
    else *head = o->next;
    if (o->next) o->next->prev = o->prev;
}

static void optimizer_free(clopt_optimizer *o) {
    if (o->cls->wrapper) o->cls->wrapper->destroy(o);
    unbuild(o);
    optvars_free(o, 0);
    free_names(o);
    for (int i = 0; i < o->cls->nparams; i++) json_decref(o->hp_list[i]);
    free(o->pending_no_decay);
    clopt__schedule_free(o->schedule);
    clopt__handle_remove(o);
    detach(o);
    free(o->name);
    clopt__custom_class_free(o->own_class);
    free(o);
}

void clopt__optimizer_free_detached(clopt_optimizer *o) { optimizer_free(o); }

void clopt_optimizer_destroy(clopt_optimizer *o) {
    if (clopt__handle_live(o)) optimizer_free(o); /* not NULL, not destroyed already */
}

static void free_all(clopt_context *ctx, void *head) {
    (void)head;
    void **h;
    while ((h = clopt__context_layer(ctx, &layer_hooks)) && *h) optimizer_free(*h);
}

/* Adds an entry to Keras's variable list. */
clopt_status clopt__optvar_add(clopt_optimizer *o, const char *name, clopt__optvar_kind kind,
                               clopt_dtype dtype, clopt_variable *var) {
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
    e->kind = kind;
    e->dtype = dtype;
    e->var = var;
    e->owns_memory = 0;
    e->state_index = 0;
    e->integer = 0;
    if (!e->name || !e->path) {
        free(e->name);
        free(e->path);
        return CLOPT_ERR_OUT_OF_MEMORY;
    }
    o->noptvars++;
    return CLOPT_OK;
}

clopt_status clopt__optimizer_init_optvars(clopt_optimizer *o) {
    clopt_status st = clopt__optvar_add(o, "iteration", CLOPT__OV_ITERATION, CLOPT_FLOAT64, NULL);
    /* Keras makes a learning_rate variable only for a float learning rate. */
    if (st == CLOPT_OK && !o->schedule)
        st = clopt__optvar_add(o, "learning_rate", CLOPT__OV_LR, CLOPT_FLOAT32, NULL);
    o->nbaseoptvars = o->noptvars;
    return st;
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
    /* The class may give the entry another shape or name, or make it a host placeholder. */
    clopt__slot_entry e;
    memset(&e, 0, sizeof e);
    e.ndim = v->ndim;
    memcpy(e.shape, v->shape, sizeof e.shape);
    if (k >= o->slot_base && o->cls->slot_entry) {
        clopt_status st = o->cls->slot_entry(o, i, k - o->slot_base, &e);
        if (st != CLOPT_OK || e.absent) {
            free(e.name);
            return st;
        }
    }
    char *name = e.name ? e.name : slot_name(v, o->kinds[k].name);
    if (!name) return CLOPT_ERR_OUT_OF_MEMORY;
    if (e.placeholder) {
        clopt_status st = clopt__optvar_add(o, name, CLOPT__OV_SCALAR, v->dtype, NULL);
        if (st == CLOPT_OK) {
            o->optvars[o->noptvars - 1].integer = 1;
            o->optvars[o->noptvars - 1].state_index = e.state_index;
        }
        free(name);
        return st;
    }
    clopt_variable *view;
    clopt_status st = clopt__variable_view(o->ctx, name, v->dtype, e.ndim, e.shape, g->block,
                                           (size_t)k * g->stride + o->slot_off[i], &view);
    if (st == CLOPT_OK && view->size > v->size) { /* a class's shape larger than its storage */
        clopt__variable_free(view, 0);
        st = CLOPT_ERR_INVALID_ARGUMENT;
    }
    if (st == CLOPT_OK) {
        st = clopt__optvar_add(o, name, CLOPT__OV_SLOT, v->dtype, view);
        if (st != CLOPT_OK) clopt__variable_free(view, 0);
    }
    free(name);
    return st;
}

/* Keras's order after iteration and learning_rate: slot groups in order (EMA averages, then
 * accumulators, then the class's); within a group the kinds interleave per variable; then a
 * class scalar (Nadam's u_product). */
static clopt_status build_optvars(clopt_optimizer *o) {
    clopt_status st = CLOPT_OK;
    int maxgroup = -1;
    for (int k = 0; k < o->nkinds; k++)
        if (o->kinds[k].group > maxgroup) maxgroup = o->kinds[k].group;
    for (int grp = 0; grp <= maxgroup && st == CLOPT_OK; grp++)
        for (size_t i = 0; i < o->nvars && st == CLOPT_OK; i++)
            for (int k = 0; k < o->nkinds && st == CLOPT_OK; k++)
                if (o->kinds[k].group == grp) st = make_slot_view(o, i, k);
    if (st == CLOPT_OK && o->cls->scalar_name)
        st = clopt__optvar_add(o, o->cls->scalar_name, CLOPT__OV_SCALAR, o->vars[0]->dtype, NULL);
    return st;
}

/* The slot kinds: the pipeline's (EMA average, gradient accumulator), then the class's, whose
 * Keras groups come after the pipeline's. */
static void choose_kinds(clopt_optimizer *o) {
    int n = 0;
    o->slot_ema = o->slot_acc = -1;
    if (o->base[CLOPT__B_USE_EMA].v) {
        o->slot_ema = n;
        o->kinds[n++] = (clopt__slot_kind){"average", 0, 0.0};
    }
    if (clopt__accumulation_steps(o)) {
        o->slot_acc = n;
        o->kinds[n++] = (clopt__slot_kind){"gradient_accumulator", 1, 0.0};
    }
    o->slot_base = n;
    int nc = o->cls->slots(o, o->kinds + n);
    for (int k = n; k < n + nc; k++) o->kinds[k].group += 2;
    o->nkinds = n + nc;
}

/* Whether slot kind k starts as a copy of its variable (a class kind in copy_slots). */
static int copy_slot(const clopt_optimizer *o, int k) {
    return k >= o->slot_base && ((o->cls->copy_slots >> (k - o->slot_base)) & 1u);
}

/* Slot storage: per dtype, one dedicated block of nkinds strides, each variable at a chunk-
 * aligned offset, filled with each kind's initial value; and the per-variable reals. */
static clopt_status layout_slots(clopt_optimizer *o) {
    clopt_context *ctx = o->ctx;
    for (size_t i = 0; i < o->nvars; i++) {
        clopt__slot_group *g = &o->groups[o->vars[i]->dtype];
        o->slot_off[i] = g->used;
        g->used += ((size_t)o->vars[i]->size + CLOPT__CHUNK - 1) / CLOPT__CHUNK * CLOPT__CHUNK;
    }
    for (int d = 0; d < 4; d++) {
        clopt__slot_group *g = &o->groups[d];
        if (!g->used) continue;
        clopt_dtype rd = clopt__real_dtype((clopt_dtype)d);
        clopt_status st = ctx->ops->buffer_create(
            ctx, 2 * o->nvars * clopt_dtype_size(rd), &g->seg_buf);
        if (st != CLOPT_OK) return st;
        if (o->nkinds == 0) continue;
        g->stride = g->used;
        size_t esize = clopt_dtype_size((clopt_dtype)d), off;
        st = clopt__arena_alloc(ctx, g->stride * (size_t)o->nkinds * esize, esize, 1, &g->block,
                                    &off);
        if (st != CLOPT_OK) return st;
        for (int k = 0; k < o->nkinds; k++) {
            if (o->kinds[k].init == 0.0 || copy_slot(o, k)) continue;
            st = ctx->ops->fill(ctx, g->block->buf, (clopt_dtype)d, (size_t)k * g->stride,
                                g->stride, o->kinds[k].init);
            if (st != CLOPT_OK) return st;
        }
    }
    /* Kinds that start as a copy of their variable: one assign per variable (at build only). */
    for (int k = 0; k < o->nkinds; k++) {
        if (!copy_slot(o, k)) continue;
        for (size_t i = 0; i < o->nvars; i++) {
            const clopt_variable *v = o->vars[i];
            clopt__slot_group *g = &o->groups[v->dtype];
            clopt_status st =
                ctx->ops->assign(ctx, CLOPT__ASSIGN, v->dtype, g->block->buf,
                                 (size_t)k * g->stride + o->slot_off[i], v->block->buf, v->offset,
                                 (size_t)v->size);
            if (st != CLOPT_OK) return st;
        }
    }
    return CLOPT_OK;
}

/* Keras's decision for weight decay: excluded by identity, or by a name matching one of the
 * regular expressions (re.search on the variable's name). */
static int decay_excluded_by_name(const clopt_optimizer *o, const clopt_variable *v) {
    for (size_t i = 0; i < o->ndecay_exclude_names; i++) {
        regex_t re;
        if (clopt__regcomp(&re, o->decay_exclude_names[i]) != 0) continue;
        int hit = regexec(&re, v->name, 0, NULL, 0) == 0;
        regfree(&re);
        if (hit) return 1;
    }
    return 0;
}

/* Writes every built variable's weight-decay multiplier (segment real 2*i+1): 0 when excluded,
 * else 1 or the class's per-variable rate (clopt__optimizer_class.decay_rate). */
clopt_status clopt__write_decay_flags(clopt_optimizer *o) {
    clopt_context *ctx = o->ctx;
    for (size_t i = 0; i < o->nvars; i++) {
        const clopt_variable *v = o->vars[i];
        double flag = (o->no_decay[i] || decay_excluded_by_name(o, v)) ? 0.0
                      : o->cls->decay_rate                             ? o->cls->decay_rate(o, i)
                                                                       : 1.0;
        o->decay_real[i] = flag;
        clopt_status st = ctx->ops->fill(ctx, o->groups[v->dtype].seg_buf,
                                         clopt__real_dtype(v->dtype), 2 * i + 1, 1, flag);
        if (st != CLOPT_OK) return st;
    }
    return CLOPT_OK;
}

clopt_status clopt__optimizer_check_vars(clopt_optimizer *o, clopt_variable *const *vars,
                                         size_t n, const char *fn) {
    clopt_context *ctx = o->ctx;
    if (!vars || n == 0)
        return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT, "%s: empty variable list", fn);
    size_t dead = clopt__handles_first_dead((const void *const *)vars, n);
    if (dead < n)
        return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT,
                           "%s: variable %zu was destroyed (or its context was)", fn, dead);
    for (size_t i = 0; i < n; i++) {
        if (!vars[i])
            return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT, "%s: variable %zu is NULL", fn, i);
        if (vars[i]->ctx != ctx)
            return clopt__fail(ctx, CLOPT_ERR_CONTEXT_MISMATCH,
                               "%s: variable %zu ('%s') belongs to another context", fn, i,
                               vars[i]->name);
        if (vars[i]->owned_by_optimizer)
            return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT,
                               "%s: variable %zu ('%s') is an optimizer slot", fn, i,
                               vars[i]->name);
        for (size_t j = 0; j < i; j++)
            if (vars[j] == vars[i])
                return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT,
                                   "%s: variable '%s' is listed twice (positions %zu and %zu)", fn,
                                   vars[i]->name, j, i);
    }
    return CLOPT_OK;
}

static clopt_status check_build_rules(clopt_optimizer *o) {
    if (o->base[CLOPT__B_GLOBAL_CLIPNORM].null || o->base[CLOPT__B_GLOBAL_CLIPNORM].v == 0)
        return CLOPT_OK;
    for (size_t i = 1; i < o->nvars; i++)
        if (o->vars[i]->dtype != o->vars[0]->dtype)
            return clopt__fail(o->ctx, CLOPT_ERR_UNSUPPORTED,
                               "build: global_clipnorm over variables of different dtypes ('%s' "
                               "is %s, '%s' is %s) is not supported",
                               o->vars[0]->name, clopt_dtype_name(o->vars[0]->dtype),
                               o->vars[i]->name, clopt_dtype_name(o->vars[i]->dtype));
    return CLOPT_OK;
}

clopt_status clopt__optimizer_build_begin(clopt_optimizer *o, clopt_variable *const *vars,
                                          size_t n) {
    clopt_status st = clopt__optimizer_check_vars(o, vars, n, "clopt_optimizer_build");
    if (st != CLOPT_OK) return st;
    o->vars = malloc(n * sizeof *o->vars);
    o->slot_off = calloc(n, sizeof *o->slot_off);
    o->scratch_idx = malloc(n * sizeof *o->scratch_idx);
    o->scratch_grads = malloc(n * sizeof *o->scratch_grads);
    o->no_decay = calloc(n, 1);
    o->decay_real = calloc(n, sizeof *o->decay_real);
    if (!o->vars || !o->slot_off || !o->scratch_idx || !o->scratch_grads || !o->no_decay ||
        !o->decay_real)
        return clopt__fail(o->ctx, CLOPT_ERR_OUT_OF_MEMORY, "build: out of host memory");
    memcpy(o->vars, vars, n * sizeof *vars);
    o->nvars = n;
    clopt_context_kernel_params(o->ctx, &o->kparams, NULL); /* the tuning database's, or set */
    choose_kinds(o);
    clopt__clear_error(o->ctx);
    if ((st = check_build_rules(o)) != CLOPT_OK || (st = layout_slots(o)) != CLOPT_OK ||
        (st = build_optvars(o)) != CLOPT_OK ||
        (o->cls->on_build && (st = o->cls->on_build(o)) != CLOPT_OK) ||
        (clopt__apply_pending_no_decay(o), st = clopt__write_decay_flags(o)) != CLOPT_OK)
        return st;
    return clopt__all_plan_build(o);
}

clopt_status clopt__optimizer_build_end(clopt_optimizer *o, const clopt__step_request *req) {
    clopt_status st = clopt__warm_kernels(o, req);
    if (st != CLOPT_OK) return st;
    if (o->cls->before_step == NULL) memset(o->state, 0, sizeof o->state);
    o->built = 1;
    return CLOPT_OK;
}

clopt_status clopt__optimizer_build_failed(clopt_optimizer *o, clopt_status st) {
    if (!o->ctx->error) clopt__fail(o->ctx, st, "build: %s", clopt_status_string(st));
    unbuild(o);
    return st;
}

clopt_status clopt_optimizer_build(clopt_optimizer *o, clopt_variable *const *vars, size_t n) {
    if (!o) return CLOPT_ERR_INVALID_ARGUMENT;
    if (o->built) return CLOPT_OK;
    if (o->cls->wrapper) return o->cls->wrapper->build(o, vars, n);
    clopt_status st = clopt__optimizer_build_begin(o, vars, n);
    if (st == CLOPT_OK) st = clopt__optimizer_build_end(o, NULL);
    return st == CLOPT_OK ? CLOPT_OK : clopt__optimizer_build_failed(o, st);
}

/* A wrapper delegates iterations and the learning rate to the optimizer it wraps. */
int64_t clopt_optimizer_iterations(const clopt_optimizer *o) {
    if (!o) return -1;
    const clopt_optimizer *in = clopt__wrapped(o);
    if (in) return clopt__optimizer_sync(o, 0) == CLOPT_OK ? clopt_optimizer_iterations(in) : -1;
    return clopt__iterations(o);
}

clopt_status clopt_optimizer_get_learning_rate(const clopt_optimizer *o, double *lr) {
    if (!o || !lr) return CLOPT_ERR_INVALID_ARGUMENT;
    clopt_status st = clopt__optimizer_sync(o, 0); /* a schedule reads the count */
    if (st != CLOPT_OK) return st;
    const clopt_optimizer *in = clopt__wrapped(o);
    if (in) return clopt_optimizer_get_learning_rate(in, lr);
    *lr = clopt__learning_rate(o);
    return CLOPT_OK;
}

clopt_status clopt_optimizer_set_learning_rate(clopt_optimizer *o, double lr) {
    if (!o) return CLOPT_ERR_INVALID_ARGUMENT;
    clopt_optimizer *in = clopt__wrapped(o);
    if (in) {
        clopt_status st = clopt__optimizer_sync(o, 1);
        if (st == CLOPT_OK) st = clopt_optimizer_set_learning_rate(in, lr);
        if (st != CLOPT_OK) clopt__fail(o->ctx, st, "%s", o->ctx->error ? o->ctx->error : "");
        return st;
    }
    if (o->schedule)
        return clopt__fail(o->ctx, CLOPT_ERR_BAD_STATE,
                           "learning_rate: this optimizer was created with a %s schedule as its "
                           "learning rate, hence its learning rate is not settable",
                           clopt__schedule_class_name(o->schedule));
    if (!isfinite(lr) || !isfinite((float)lr)) /* it is kept as a float32 */
        return clopt__fail(o->ctx, CLOPT_ERR_BAD_VALUE,
                           "learning_rate must be finite as a float32, got %g", lr);
    o->lr = (float)lr;
    return CLOPT_OK;
}

const char *clopt_optimizer_class_name(const clopt_optimizer *o) {
    return o ? o->cls->class_name : NULL;
}
const char *clopt_optimizer_name(const clopt_optimizer *o) { return o ? o->name : NULL; }
clopt_context *clopt__optimizer_context(const clopt_optimizer *o) { return o->ctx; }
int clopt__optimizer_is_built(const clopt_optimizer *o) { return o->built; }

clopt_status clopt__optimizer_sync(const clopt_optimizer *o, int write) {
    return o && o->cls->wrapper ? o->cls->wrapper->sync(o, write) : CLOPT_OK;
}

clopt_status clopt_optimizer_exclude_from_weight_decay(clopt_optimizer *o,
                                                       clopt_variable *const *vars, size_t nvars,
                                                       const char *const *names, size_t nnames) {
    if (!o) return CLOPT_ERR_INVALID_ARGUMENT;
    clopt_optimizer *in = clopt__wrapped(o);
    if (in) return clopt_optimizer_exclude_from_weight_decay(in, vars, nvars, names, nnames);
    if ((nvars && !vars) || (nnames && !names))
        return clopt__fail(o->ctx, CLOPT_ERR_INVALID_ARGUMENT,
                           "exclude_from_weight_decay: a list with entries is NULL");
    for (size_t i = 0; i < nnames; i++) {
        regex_t re;
        if (!names[i] || clopt__regcomp(&re, names[i]) != 0)
            return clopt__fail(o->ctx, CLOPT_ERR_BAD_VALUE,
                               "exclude_from_weight_decay: name pattern %zu ('%s') is not a valid "
                               "regular expression",
                               i, names[i] ? names[i] : "(null)");
        regfree(&re);
    }
    for (size_t i = 0; i < nvars; i++)
        if (!vars[i] || vars[i]->ctx != o->ctx)
            return clopt__fail(o->ctx, CLOPT_ERR_INVALID_ARGUMENT,
                               "exclude_from_weight_decay: variable %zu is NULL or of another "
                               "context",
                               i);
    /* Variables excluded before build are remembered by identity and applied at build. */
    clopt_variable **pend = realloc(o->pending_no_decay,
                                    (o->npending_no_decay + nvars) * sizeof *pend + 1);
    char **nn = realloc(o->decay_exclude_names,
                        (o->ndecay_exclude_names + nnames) * sizeof *nn + 1);
    if (pend) o->pending_no_decay = pend;
    if (nn) o->decay_exclude_names = nn;
    if (!pend || !nn) return clopt__fail(o->ctx, CLOPT_ERR_OUT_OF_MEMORY, "out of host memory");
    for (size_t i = 0; i < nnames; i++) {
        char *c = clopt__strdup(names[i]);
        if (!c) return clopt__fail(o->ctx, CLOPT_ERR_OUT_OF_MEMORY, "out of host memory");
        o->decay_exclude_names[o->ndecay_exclude_names++] = c;
    }
    for (size_t i = 0; i < nvars; i++) o->pending_no_decay[o->npending_no_decay++] = vars[i];
    if (!o->built) return CLOPT_OK;
    clopt__apply_pending_no_decay(o);
    clopt_status st = clopt__write_decay_flags(o);
    /* The plans' runs join variables by their decay reals: lay them out again. */
    o->plan.n = 0;
    return st == CLOPT_OK ? clopt__all_plan_build(o) : st;
}

void clopt__apply_pending_no_decay(clopt_optimizer *o) {
    for (size_t j = 0; j < o->npending_no_decay; j++)
        for (size_t i = 0; i < o->nvars; i++)
            if (o->vars[i] == o->pending_no_decay[j]) o->no_decay[i] = 1;
}
