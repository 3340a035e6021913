/* apply(): Keras's order of operations (semantics doc, section 1.4), with every input checked
 * before anything changes, and cached launch plans so a step allocates nothing. A step issues a
 * constant number of launches per (dtype, variable arena block, gradient arena block) group:
 * the update (plus two for norm clipping, or one accumulate instead on accumulation-only steps;
 * three instead of one for a class with statistics of its own, Lamb; a class's own fixed number
 * of passes with run_launch, Adafactor's six), and one or two EMA passes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "optim_internal.h"
#include "schedule_internal.h"

/* Keras reads a schedule at the raw iteration count (not divided by accumulation steps). */
double clopt__learning_rate(const clopt_optimizer *o) {
    return o->schedule ? clopt__schedule_value(o->schedule, o->iterations) : o->lr;
}

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

static int plan_matches(const clopt__plan *p, const size_t *idx, clopt_variable *const *grads,
                        size_t n) {
    return p->n == n && p->var_index && memcmp(p->var_index, idx, n * sizeof *idx) == 0 &&
           memcmp(p->grads, grads, n * sizeof *grads) == 0;
}

static size_t chunks_of(const clopt_variable *v) {
    return ((size_t)v->size + CLOPT__CHUNK - 1) / CLOPT__CHUNK;
}

/* Grows a backend buffer to hold `need` entries of `esize` bytes (only when a plan changes). */
static clopt_status ensure_buffer(clopt_context *ctx, void **buf, size_t *cap, size_t need,
                                  size_t esize) {
    if (need <= *cap && *buf) return CLOPT_OK;
    void *nb;
    clopt_status st = ctx->ops->buffer_create(ctx, (need ? need : 1) * esize, &nb);
    if (st != CLOPT_OK) return st;
    if (*buf) ctx->ops->buffer_release(ctx, *buf);
    *buf = nb;
    *cap = need ? need : 1;
    return CLOPT_OK;
}

/* Lays out the segment table of the pairs (idx[i], grads[i]), one entry per variable, grouped
 * into launches, with blocks of `bchunks` chunks numbered on across the plan; a NULL gradient
 * stands for the variable itself (passes that read no gradient). Returns the launches. */
static size_t layout(const clopt_optimizer *o, const size_t *idx, clopt_variable *const *grads,
                     size_t n, uint32_t bchunks, clopt__segment *segs, clopt__plan_launch *ls,
                     char *done, size_t *nblocks) {
    size_t nl = 0, blocks = 0, nr = 0;
    for (size_t i = 0; i < n; i++) {
        if (done[i]) continue;
        const clopt_variable *vi = o->vars[idx[i]], *gi = grads[i] ? grads[i] : vi;
        clopt__plan_launch *l = &ls[nl++];
        *l = (clopt__plan_launch){vi->dtype, vi->block, gi->block, 0, nr, 0};
        const size_t first = blocks;
        for (size_t j = i; j < n; j++) {
            const clopt_variable *v = o->vars[idx[j]], *g = grads[j] ? grads[j] : v;
            if (done[j] || v->dtype != l->dtype || v->block != l->var_block ||
                g->block != l->grad_block)
                continue;
            done[j] = 1;
            clopt__segment *sg = &segs[nr++];
            *sg = (clopt__segment){(uint32_t)idx[j],
                                   (uint32_t)chunks_of(v),
                                   (uint32_t)(v->offset / CLOPT__CHUNK),
                                   (uint32_t)(g->offset / CLOPT__CHUNK),
                                   (uint32_t)(o->slot_off[idx[j]] / CLOPT__CHUNK),
                                   (uint32_t)blocks,
                                   bchunks,
                                   0};
            blocks += clopt__segment_blocks(sg);
        }
        l->nblocks = blocks - first;
        l->nranges = nr - l->range_base;
    }
    *nblocks = blocks;
    return nl;
}

/* Chunks per block for `total` chunks (CLOPT__BLOCK_CHUNKS in backend_internal.h). */
static uint32_t block_chunks(size_t total) {
    const size_t b = (total + CLOPT__MAX_BLOCKS - 1) / CLOPT__MAX_BLOCKS;
    return (uint32_t)(b > CLOPT__BLOCK_CHUNKS ? b : CLOPT__BLOCK_CHUNKS);
}

static int clip_mode(const clopt_optimizer *o, double *c, int *global);

/* The bytes per block of a plan's partials that the steps of `o` use: 16 (two reals,
 * clopt__launch.aux_buf) for a class's statistics (Lamb) or passes of its own (Adafactor, Muon),
 * 8 for norm clipping's sums of squares alone (clopt__clip_launch), else 0. */
static size_t partials_bytes(const clopt_optimizer *o) {
    double c;
    int global;
    if (o->cls->stats_kernel || o->cls->run_launch) return 16;
    return clip_mode(o, &c, &global) == 1 ? 8 : 0;
}

/* Builds `p` for the pairs, uploading its segment table. Rebuilt only when the pattern
 * changes. Device memory: 32 bytes per variable for the segments, and `pbytes` per block for the
 * partials (at most CLOPT__MAX_BLOCKS blocks plus one per variable; a one-entry placeholder when
 * no step uses them: kernel arguments stay valid buffers). */
static clopt_status plan_build(clopt_optimizer *o, clopt__plan *p, const size_t *idx,
                               clopt_variable *const *grads, size_t n, size_t pbytes) {
    clopt_context *ctx = o->ctx;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += chunks_of(o->vars[idx[i]]);
    clopt__segment *segs = malloc((n ? n : 1) * sizeof *segs);
    clopt__plan_launch *ls = malloc((n ? n : 1) * sizeof *ls);
    size_t *nidx = malloc((n ? n : 1) * sizeof *nidx);
    clopt_variable **ngrads = malloc((n ? n : 1) * sizeof *ngrads);
    char *done = calloc(n ? n : 1, 1);
    clopt_status st = CLOPT_OK;
    if (!segs || !ls || !nidx || !ngrads || !done) {
        st = clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "apply: out of host memory");
        goto out;
    }
    if (total > UINT32_MAX) {
        st = clopt__fail(ctx, CLOPT_ERR_UNSUPPORTED,
                         "apply: the variables hold more than 2^32 chunks of %d elements",
                         CLOPT__CHUNK);
        goto out;
    }
    size_t nblocks;
    size_t nl = layout(o, idx, grads, n, block_chunks(total), segs, ls, done, &nblocks);
    if ((st = ensure_buffer(ctx, &p->ranges_buf, &p->ranges_cap, n, sizeof *segs)) ||
        (st = ensure_buffer(ctx, &p->partials_buf, &p->partials_cap, pbytes ? nblocks : 0,
                            pbytes ? pbytes : 16)))
        goto out;
    if (n && (st = ctx->ops->write(ctx, p->ranges_buf, 0, segs, n * sizeof *segs))) goto out;
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
    free(segs);
    free(ls);
    free(nidx);
    free(ngrads);
    free(done);
    if (st != CLOPT_OK) p->n = 0; /* no valid plan: the next apply rebuilds */
    return st;
}

clopt_status clopt__all_plan_build(clopt_optimizer *o) {
    for (size_t i = 0; i < o->nvars; i++) {
        o->scratch_idx[i] = i;
        o->scratch_grads[i] = NULL;
    }
    /* Only EMA's passes launch over this plan; nothing uses its partials. */
    return plan_build(o, &o->all_plan, o->scratch_idx, o->scratch_grads, o->nvars, 0);
}

/* The clipping mode Keras picks (semantics doc 1.5): 1 by norm, 2 by value, 0 none. */
static int clip_mode(const clopt_optimizer *o, double *c, int *global) {
    const clopt__value *b = o->base;
    *global = 0;
    if (!b[CLOPT__B_CLIPNORM].null && b[CLOPT__B_CLIPNORM].v > 0) {
        *c = b[CLOPT__B_CLIPNORM].v;
        return 1;
    }
    if (!b[CLOPT__B_GLOBAL_CLIPNORM].null && b[CLOPT__B_GLOBAL_CLIPNORM].v > 0) {
        *c = b[CLOPT__B_GLOBAL_CLIPNORM].v;
        *global = 1;
        return 1;
    }
    if (!b[CLOPT__B_CLIPVALUE].null && b[CLOPT__B_CLIPVALUE].v > 0) {
        *c = b[CLOPT__B_CLIPVALUE].v;
        return 2;
    }
    return 0;
}

/* The pipeline's per-step reals and switches of a launch of l->dtype (make_launch's). */
static void pipe_scalars(const clopt_optimizer *o, int accum_update, double lr, clopt__launch *l);

/* A launch over plan entry `pl` with the pipeline's switches for an update step (accum_update:
 * this step adds the accumulator). While a LossScaleOptimizer runs a device-decided step, its
 * launches read their scalars on the device (clopt__launch.step_state; kind: the table block). */
static clopt__launch make_launch_kind(const clopt_optimizer *o, const clopt__plan *p,
                                      const clopt__plan_launch *pl, int accum_update, double lr,
                                      int kind) {
    const clopt__slot_group *grp = &o->groups[pl->dtype];
    clopt__launch l;
    memset(&l, 0, sizeof l);
    l.dtype = pl->dtype;
    l.var_buf = pl->var_block->buf;
    l.grad_buf = pl->grad_block->buf;
    l.slot_buf = grp->block ? grp->block->buf : NULL;
    l.slot_stride = grp->stride;
    l.table_buf = p->ranges_buf;
    l.table_base = pl->range_base;
    l.ntable = pl->nranges;
    l.nunits = pl->nblocks;
    l.seg_buf = grp->seg_buf;
    pipe_scalars(o, accum_update, lr, &l);
    if (o->dstep && o->dstep->stepping) {
        l.step_table = o->dstep->table_buf[pl->dtype];
        l.step_state = o->dstep->state_buf;
        l.step_kind = kind;
    }
    return l;
}

static clopt__launch make_launch(const clopt_optimizer *o, const clopt__plan *p,
                                 const clopt__plan_launch *pl, int accum_update, double lr) {
    return make_launch_kind(o, p, pl, accum_update, lr, CLOPT__STEP_UPDATE);
}

static void pipe_scalars(const clopt_optimizer *o, int accum_update, double lr, clopt__launch *l) {
    const clopt__value *b = o->base;
    const int64_t steps = clopt__accumulation_steps(o);
    l->pipe[0] = (!b[CLOPT__B_LOSS_SCALE_FACTOR].null && b[CLOPT__B_LOSS_SCALE_FACTOR].v != 0)
                     ? 1.0 / b[CLOPT__B_LOSS_SCALE_FACTOR].v
                     : 1.0;
    if (o->grad_unscale != 0) l->pipe[0] = 1.0 / o->grad_unscale; /* a LossScaleOptimizer's */
    l->pipe[1] = steps ? 1.0 / (double)steps : 1.0;
    l->accum = accum_update;
    int global;
    l->clip = clip_mode(o, &l->pipe[2], &global);
    if (!b[CLOPT__B_WEIGHT_DECAY].null) {
        /* Keras casts the learning rate to the variable's dtype before w*wd*lr. */
        const double lrc = l->dtype == CLOPT_FLOAT64 ? lr : (double)(float)lr;
        l->decay = 1;
        l->pipe[3] = b[CLOPT__B_WEIGHT_DECAY].v * lrc;
    }
    l->slot_base = o->slot_base;
    l->slot_acc = o->slot_acc < 0 ? 0 : o->slot_acc;
    l->slot_ema = o->slot_ema < 0 ? 0 : o->slot_ema;
}

void clopt__step_scalars(clopt_optimizer *o, clopt_dtype d, const clopt__step_info *step,
                         double out[CLOPT__MAX_SCALARS + 4]) {
    clopt__launch l;
    memset(&l, 0, sizeof l);
    l.dtype = d;
    pipe_scalars(o, 0, step->lr, &l);
    o->cls->launch(o, step, &l);
    memcpy(out, l.scalars, sizeof l.scalars);
    memcpy(out + CLOPT__MAX_SCALARS, l.pipe, sizeof l.pipe);
}

/* Runs a pipeline kernel ("pipeline.ema", ...) over every launch of a plan (kind: its block
 * of a device-decided step's table). */
static clopt_status run_pass(clopt_optimizer *o, const clopt__plan *p, const char *kernel,
                             double c0, double lr, int kind) {
    for (size_t i = 0; i < p->nlaunches; i++) {
        clopt__launch l = make_launch_kind(o, p, &p->launches[i], 0, lr, kind);
        l.kernel = kernel;
        l.scalars[0] = c0;
        clopt_status st = o->ctx->ops->update(o->ctx, &l);
        if (st != CLOPT_OK) return st;
    }
    return CLOPT_OK;
}

/* Norm clipping: per-block sums of squares, then per-variable (or one global) factors. */
static clopt_status clip_factors(clopt_optimizer *o, int accum_update, double lr) {
    double c;
    int global;
    if (clip_mode(o, &c, &global) != 1) return CLOPT_OK;
    const clopt__plan *p = &o->plan;
    clopt_status st = CLOPT_OK;
    for (size_t i = 0; i < p->nlaunches && st == CLOPT_OK; i++) {
        clopt__launch l = make_launch(o, p, &p->launches[i], accum_update, lr);
        l.kernel = "reduce.sumsq";
        l.seg_buf = p->partials_buf;
        st = o->ctx->ops->update(o->ctx, &l);
    }
    for (size_t i = 0; i < p->nlaunches && st == CLOPT_OK; i++) {
        const clopt__plan_launch *pl = &p->launches[i];
        clopt__clip_launch cl = {pl->dtype, global, p->ranges_buf, pl->range_base, pl->nranges,
                                 p->partials_buf, o->groups[pl->dtype].seg_buf, c};
        if (global) { /* one norm over every range: build rules keep a single dtype */
            cl.range_base = 0;
            cl.nranges = p->n;
            i = p->nlaunches;
        }
        st = o->ctx->ops->clip_factors(o->ctx, &cl);
    }
    return st;
}

/* Zeroes the accumulators of built variables absent from this update step (Keras resets all). */
static clopt_status reset_absent_accumulators(clopt_optimizer *o) {
    if (o->plan.n == o->nvars) return CLOPT_OK;
    for (int d = 0; d < 4; d++) {
        clopt__slot_group *g = &o->groups[d];
        if (!g->block) continue;
        clopt_status st = o->ctx->ops->fill(o->ctx, g->block->buf, (clopt_dtype)d,
                                            (size_t)o->slot_acc * g->stride, g->stride, 0.0);
        if (st != CLOPT_OK) return st;
    }
    return CLOPT_OK;
}

/* A class with statistics of its own (Lamb; clopt__optimizer_class.stats_kernel): before the
 * update launch `l` of plan launch `pl`, the statistics launch and the segment pass, whose
 * per-variable results `l` then reads through the plan's partials (its aux buffer). With `warm`,
 * only compiles and warms both kernels. */
static clopt_status run_stats(clopt_optimizer *o, const clopt__plan *p,
                              const clopt__plan_launch *pl, clopt__launch *l, int warm) {
    l->aux_buf = p->partials_buf;
    clopt__launch s = *l;
    s.kernel = o->cls->stats_kernel;
    clopt_status st = warm ? o->ctx->ops->prepare(o->ctx, &s) : o->ctx->ops->update(o->ctx, &s);
    if (st != CLOPT_OK) return st;
    const clopt__segment_launch sl = {o->cls->segment_kernel, pl->dtype, p->ranges_buf,
                                      pl->range_base, warm ? 0 : pl->nranges, p->partials_buf,
                                      NULL, {0, 0, 0, 0}};
    return o->ctx->ops->segments(o->ctx, &sl);
}

static clopt_status run_update(clopt_optimizer *o, int accum_update, double lr) {
    clopt_status st = clip_factors(o, accum_update, lr);
    if (st != CLOPT_OK) return st;
    const clopt__step_info step = {clopt__iterations(o) + 1, lr};
    /* A device-decided step's host-side state moved on when its table was made. */
    if (o->cls->before_step && !(o->dstep && o->dstep->stepping)) o->cls->before_step(o, &step);
    for (size_t i = 0; i < o->plan.nlaunches; i++) {
        clopt__launch l = make_launch(o, &o->plan, &o->plan.launches[i], accum_update, lr);
        o->cls->launch(o, &step, &l);
        if (o->cls->run_launch) { /* a class with passes of its own (Adafactor) */
            if ((st = o->cls->run_launch(o, &o->plan, &o->plan.launches[i], &l, 0)) != CLOPT_OK)
                return st;
            continue;
        }
        if (o->cls->stats_kernel &&
            (st = run_stats(o, &o->plan, &o->plan.launches[i], &l, 0)) != CLOPT_OK)
            return st;
        if ((st = o->ctx->ops->update(o->ctx, &l)) != CLOPT_OK) return st;
    }
    return accum_update ? reset_absent_accumulators(o) : CLOPT_OK;
}

/* Keras's EMA after every apply: average := m*average + (1-m)*var over every built variable,
 * m = 0 on the first step; then the periodic overwrite of the variables by their averages. */
static clopt_status run_ema(clopt_optimizer *o, double lr) {
    const clopt__value *b = o->base;
    if (!b[CLOPT__B_USE_EMA].v) return CLOPT_OK;
    const int64_t it = clopt__iterations(o);
    clopt_status st = run_pass(o, &o->all_plan, "pipeline.ema",
                               it != 0 ? b[CLOPT__B_EMA_MOMENTUM].v : 0.0, lr, CLOPT__STEP_EMA);
    const clopt__value *f = &b[CLOPT__B_EMA_OVERWRITE_FREQUENCY];
    /* On a device-decided step the device knows the count: the launch skips itself off beat. */
    const int device = o->dstep && o->dstep->stepping;
    if (st == CLOPT_OK && !f->null && f->v >= 1 && (device || (it + 1) % (int64_t)f->v == 0))
        st = run_pass(o, &o->all_plan, "pipeline.ema_overwrite", 0.0, lr,
                      CLOPT__STEP_EMA_OVERWRITE);
    return st;
}

/* EMA's momentum and overwrite beat at raw count it (before the step), for device_step.c. */
double clopt__ema_momentum_at(const clopt_optimizer *o, int64_t it) {
    return it != 0 ? o->base[CLOPT__B_EMA_MOMENTUM].v : 0.0;
}
int clopt__ema_overwrite_at(const clopt_optimizer *o, int64_t it) {
    const clopt__value *f = &o->base[CLOPT__B_EMA_OVERWRITE_FREQUENCY];
    return o->base[CLOPT__B_USE_EMA].v && !f->null && f->v >= 1 && (it + 1) % (int64_t)f->v == 0;
}

clopt_status clopt_optimizer_finalize_variable_values(clopt_optimizer *o) {
    if (!o) return CLOPT_ERR_INVALID_ARGUMENT;
    if (o->inner) return clopt_optimizer_finalize_variable_values(o->inner);
    if (!o->base[CLOPT__B_USE_EMA].v) return CLOPT_OK;
    if (!o->built)
        return clopt__fail(o->ctx, CLOPT_ERR_NOT_BUILT,
                           "finalize_variable_values: the optimizer is not built");
    return run_pass(o, &o->all_plan, "pipeline.ema_overwrite", 0.0, clopt__learning_rate(o),
                    CLOPT__STEP_UPDATE);
}

static clopt_status warm_kernels(clopt_optimizer *o);

/* Compiles and warms every kernel a step can use, per dtype, so step 1 pays no compilation (a
 * device-decided step's variants, when the optimizer takes such steps). */
clopt_status clopt__warm_kernels(clopt_optimizer *o) {
    if (o->dstep) o->dstep->stepping = 1;
    clopt_status st = warm_kernels(o);
    if (o->dstep) o->dstep->stepping = 0;
    return st;
}

static clopt_status warm_kernels(clopt_optimizer *o) {
    const int steps = clopt__accumulation_steps(o) != 0;
    double c = 0; /* set when clip_mode returns 1 */
    int global;
    const int clip = clip_mode(o, &c, &global);
    for (size_t i = 0; i < o->all_plan.nlaunches; i++) {
        const clopt__plan_launch *pl = &o->all_plan.launches[i];
        const clopt__step_info step = {1, o->lr};
        clopt__launch l = make_launch(o, &o->all_plan, pl, steps, o->lr);
        clopt__launch base = l;
        o->cls->launch(o, &step, &l);
        clopt_status st;
        if (o->cls->run_launch) {
            st = o->cls->run_launch(o, &o->all_plan, pl, &l, 1);
        } else {
            st = o->cls->stats_kernel ? run_stats(o, &o->all_plan, pl, &l, 1) : CLOPT_OK;
            if (st == CLOPT_OK) st = o->ctx->ops->prepare(o->ctx, &l);
        }
        if (st == CLOPT_OK && steps) {
            l = base;
            l.kernel = "pipeline.accumulate";
            l.accum = 0;
            st = o->ctx->ops->prepare(o->ctx, &l);
        }
        if (st == CLOPT_OK && o->finite_check) {
            l = base;
            l.kernel = "pipeline.finite"; /* never device-decided: it decides */
            l.step_table = l.step_state = NULL;
            st = o->ctx->ops->prepare(o->ctx, &l);
        }
        if (st == CLOPT_OK && clip == 1) {
            l = base;
            l.kernel = "reduce.sumsq";
            st = o->ctx->ops->prepare(o->ctx, &l);
            /* The factor kernel too: a pass over no ranges compiles and warms it. */
            const clopt__clip_launch cl = {pl->dtype, global, o->all_plan.ranges_buf, 0, 0,
                                           o->all_plan.partials_buf,
                                           o->groups[pl->dtype].seg_buf, c};
            if (st == CLOPT_OK) st = o->ctx->ops->clip_factors(o->ctx, &cl);
        }
        for (int k = 0; st == CLOPT_OK && o->slot_ema >= 0 && k < 2; k++) {
            l = base;
            l.kernel = k ? "pipeline.ema_overwrite" : "pipeline.ema";
            l.accum = 0;
            st = o->ctx->ops->prepare(o->ctx, &l);
        }
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

clopt_status clopt__apply_prepare(clopt_optimizer *o, clopt_variable *const *grads,
                                  clopt_variable *const *vars, size_t n) {
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
    } else if (o->built && n == o->nvars && memcmp(vars, o->vars, n * sizeof *vars) == 0) {
        /* The built list itself, in built order, as a training loop passes it every step: it
         * was checked at build (no NULL, no duplicate, this context). Skipping check_vars,
         * whose duplicate scan is O(n^2), keeps the step O(n): with 2000 variables the scan
         * cost about 1 ms per step on 2 cores, half of a memory-bound Adam step over them. */
    } else {
        if ((st = clopt__optimizer_check_vars(o, vars, n, "apply")) != CLOPT_OK) return st;
        if (!o->built && ((st = check_before_build(o, grads, vars, n)) != CLOPT_OK ||
                          (st = clopt_optimizer_build(o, vars, n)) != CLOPT_OK))
            return st;
    }
    /* Scratch made at build: the variables are distinct and known, so at most nvars pairs. */
    size_t *idx = o->scratch_idx, m = 0;
    clopt_variable **kept = o->scratch_grads;
    if ((st = resolve_pairs(o, grads, vars, n, idx, kept, &m)) != CLOPT_OK) return st;
    if (!plan_matches(&o->plan, idx, kept, m) &&
        (st = plan_build(o, &o->plan, idx, kept, m, partials_bytes(o))) != CLOPT_OK)
        return st;
    return CLOPT_OK;
}

clopt_status clopt__apply_run(clopt_optimizer *o) {
    const double lr = clopt__learning_rate(o);
    const int64_t steps = clopt__accumulation_steps(o);
    clopt_status st;
    if (steps && (o->iterations + 1) % steps != 0)
        st = run_pass(o, &o->plan, "pipeline.accumulate", 0.0, lr, CLOPT__STEP_UPDATE);
    else
        st = run_update(o, steps != 0, lr);
    if (st == CLOPT_OK) st = run_ema(o, lr);
    if (st != CLOPT_OK) return st;
    if (!(o->dstep && o->dstep->stepping)) o->iterations++; /* else the device counts */
    return CLOPT_OK;
}

clopt_status clopt__run_finite_check(clopt_optimizer *o, void *flag_buf, int reset) {
    /* Two floats of 1: a float kernel's 0 clears the first, a double kernel's clears both. */
    clopt_status st =
        reset ? o->ctx->ops->fill(o->ctx, flag_buf, CLOPT_FLOAT32, 0, 2, 1.0) : CLOPT_OK;
    for (size_t i = 0; st == CLOPT_OK && i < o->plan.nlaunches; i++) {
        clopt__launch l = make_launch(o, &o->plan, &o->plan.launches[i], 0, 0.0);
        l.kernel = "pipeline.finite";
        l.seg_buf = flag_buf;
        st = o->ctx->ops->update(o->ctx, &l);
    }
    return st;
}

clopt_status clopt_optimizer_apply(clopt_optimizer *o, clopt_variable *const *grads,
                                   clopt_variable *const *vars, size_t n) {
    if (!clopt__handle_live(o)) return CLOPT_ERR_INVALID_ARGUMENT; /* NULL or destroyed */
    if (n == 0) return CLOPT_OK; /* Keras returns early; the counter does not move */
    if (o->cls->apply) return o->cls->apply(o, grads, vars, n);
    clopt_status st = clopt__apply_prepare(o, grads, vars, n);
    return st == CLOPT_OK ? clopt__apply_run(o) : st;
}
