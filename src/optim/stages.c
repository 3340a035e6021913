/* The stages of one apply step over its launch plan, in Keras's order (semantics doc 1.4):
 *
 *   unscale -> accumulate -> clip -> weight decay -> reduce -> update -> EMA -> count
 *
 * Most stages launch nothing of their own: each sets its switch and real of the pipeline part
 * that every launch of the step carries (q0..q3, ACCUM, CLIP, DECAY: GRAD() and DECAY in
 * cl/common.cl), and the update launch applies them all in its one pass over the data. Per plan
 * launch (one per dtype and pair of arena blocks), the launches are:
 *   unscale       none: q0 = 1/loss_scale_factor, or 1/scale for a wrapper's request
 *   accumulate    on a step that only accumulates, its launch (pipeline.accumulate), and the
 *                 step goes on to EMA; on the update step, ACCUM and q1 of the update
 *   clip          none (clipvalue: CLIP 2, q2) or, by norm, two before the update
 *                 (reduce.sumsq, then the clip factors; CLIP 1 reads them)
 *   weight decay  none: DECAY, q3 (and the per-variable decay reals written at build)
 *   reduce        none: the seam where a distributed step would all-reduce the processed
 *                 gradients (per-replica work before it, the shared update after); the
 *                 identity on one device
 *   update        the class's launch: 1, or 3 with statistics of its own (Lamb), or the
 *                 class's own fixed passes (Adafactor, Muon)
 *   EMA           1 over every built variable, 2 on an overwrite step
 *   count         none: the host counts (a device-decided step counts on the device)
 * So a step is a constant number of launches per plan launch whatever the number of variables. */
#include <string.h>
#include "optim_internal.h"
#include "schedule_internal.h"

/* Keras reads a schedule at the raw iteration count (not divided by accumulation steps). */
double clopt__learning_rate(const clopt_optimizer *o) {
    return o->schedule ? clopt__schedule_value(o->schedule, o->iterations) : o->lr;
}

/* One step as the stages see it (each launch's pipeline part: `pipeline` below). */
typedef struct step {
    clopt_optimizer *o;
    const clopt__plan *p;
    const clopt__step_request *req; /* NULL: a plain step */
    double lr;
    int accumulate_only; /* gradient accumulation: a step that only adds to the accumulators */
    int accum_update;    /* gradient accumulation: the update step, which adds them in */
    int device;          /* the device decides the step (req->step_state) */
    void *const *reduced; /* a distributed step's update: per plan launch, the all-reduced
                           * gradients at the gradient block's offsets (NULL: one device) */
} step;

/* ---- the stages before the update: each contributes to the pipeline part ---- */

static void unscale(const clopt_optimizer *o, const clopt__step_request *req, clopt__launch *l) {
    const clopt__value *f = &o->base[CLOPT__B_LOSS_SCALE_FACTOR];
    l->pipe[0] = (!f->null && f->v != 0) ? 1.0 / f->v : 1.0;
    if (req && req->unscale != 0) l->pipe[0] = 1.0 / req->unscale;
}

/* accum_update: this step adds the accumulator into the update. */
static void accumulate(const clopt_optimizer *o, int accum_update, clopt__launch *l) {
    const int64_t steps = clopt__accumulation_steps(o);
    l->pipe[1] = steps ? 1.0 / (double)steps : 1.0;
    l->accum = accum_update;
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

static void clip(const clopt_optimizer *o, clopt__launch *l) {
    int global;
    l->clip = clip_mode(o, &l->pipe[2], &global);
}

static void weight_decay(const clopt_optimizer *o, double lr, clopt__launch *l) {
    const clopt__value *wd = &o->base[CLOPT__B_WEIGHT_DECAY];
    if (wd->null) return;
    /* Keras casts the learning rate to the variable's dtype before w*wd*lr. */
    const double lrc = l->dtype == CLOPT_FLOAT64 ? lr : (double)(float)lr;
    l->decay = 1;
    l->pipe[3] = wd->v * lrc;
}

/* The pipeline part of a launch of l->dtype: the stages before the update, in order (weight
 * decay's real depends on the dtype, so each launch takes its own). */
static void pipeline(const clopt_optimizer *o, const clopt__step_request *req, int accum_update,
                     double lr, clopt__launch *l) {
    unscale(o, req, l);
    accumulate(o, accum_update, l);
    clip(o, l);
    weight_decay(o, lr, l);
    l->slot_base = o->slot_base;
    l->slot_acc = o->slot_acc < 0 ? 0 : o->slot_acc;
    l->slot_ema = o->slot_ema < 0 ? 0 : o->slot_ema;
}

/* A launch over plan entry `pl` with the pipeline part for (req, accum_update, lr). On a
 * device-decided step it reads its scalars on the device (clopt__launch.step_state; kind: its
 * block of the table). */
static clopt__launch make_launch(const clopt_optimizer *o, const clopt__plan *p,
                                 const clopt__plan_launch *pl, const clopt__step_request *req,
                                 int accum_update, double lr, int kind) {
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
    pipeline(o, req, accum_update, lr, &l);
    if (req && req->step_state) {
        l.step_table = req->step_table[pl->dtype];
        l.step_state = req->step_state;
        l.step_kind = kind;
    }
    return l;
}

/* Whether launch l of o may go over its plan launch's runs instead of its segments (plan.c,
 * layout_runs): its kernel reads no per-variable data but the segment reals, and those are alike
 * along a run (decay reals by construction; clip factors unless norm clipping is per variable).
 * A class's statistics or passes of its own work per variable. */
static int runs_fit(const clopt_optimizer *o, const clopt__launch *l) {
    double c;
    int global;
    if (o->cls->run_launch || o->cls->stats_kernel) return 0;
    return l->clip != 1 || (clip_mode(o, &c, &global) == 1 && global);
}

static void over_runs(const clopt__plan *p, const clopt__plan_launch *pl, clopt__launch *l) {
    l->table_base = p->n + pl->run_base;
    l->ntable = pl->nruns;
    l->nunits = pl->nrun_blocks;
}

static clopt__launch step_launch(const step *s, const clopt__plan_launch *pl, int kind) {
    clopt__launch l = make_launch(s->o, s->p, pl, s->req, s->accum_update, s->lr, kind);
    if (s->reduced) { /* the gradients went through their stages before the all-reduce */
        l.grad_buf = s->reduced[pl - s->p->launches];
        l.pipe[0] = 1.0;
        l.accum = 0;
        l.clip = 0;
    }
    return l;
}

/* Runs a pipeline kernel ("pipeline.ema", ...) over every launch of plan p. */
static clopt_status run_pass(const step *s, const clopt__plan *p, const char *kernel, double c0,
                             int kind) {
    for (size_t i = 0; i < p->nlaunches; i++) {
        clopt__launch l = make_launch(s->o, p, &p->launches[i], s->req, 0, s->lr, kind);
        if (runs_fit(s->o, &l)) over_runs(p, &p->launches[i], &l);
        l.kernel = kernel;
        l.scalars[0] = c0;
        clopt_status st = s->o->ctx->ops->update(s->o->ctx, &l);
        if (st != CLOPT_OK) return st;
    }
    return CLOPT_OK;
}

/* ---- the stages that launch ---- */

/* A step that only accumulates (gradient accumulation, not the update step). */
static clopt_status accumulate_pass(const step *s) {
    return run_pass(s, s->p, "pipeline.accumulate", 0.0, CLOPT__STEP_UPDATE);
}

/* Norm clipping: per-block sums of squares, then per-variable (or one global) factors that the
 * update's GRAD() applies. */
static clopt_status clip_factors(const step *s) {
    double c;
    int global;
    if (clip_mode(s->o, &c, &global) != 1) return CLOPT_OK;
    clopt_optimizer *o = s->o;
    const clopt__plan *p = s->p;
    clopt_status st = CLOPT_OK;
    for (size_t i = 0; i < p->nlaunches && st == CLOPT_OK; i++) {
        clopt__launch l = step_launch(s, &p->launches[i], CLOPT__STEP_UPDATE);
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

/* The seam between each replica's own work on its gradients (unscale, accumulate, clip, weight
 * decay) and the update every replica applies alike: where a distributed step all-reduces the
 * processed gradients (Keras on TF: in _backend_update_step, semantics doc section 2). One
 * device: the identity; a distributed step (src/dist) runs the halves on each side of it apart,
 * clopt__apply_run_local and clopt__apply_run_shared below. */
static clopt_status reduce(const step *s) {
    (void)s;
    return CLOPT_OK;
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

/* The class's update, launch by launch of the plan. */
static clopt_status update(const step *s) {
    clopt_optimizer *o = s->o;
    const clopt__plan *p = s->p;
    const clopt__step_info info = {clopt__iterations(o) + 1, s->lr};
    /* A device-decided step's host-side state moved on when its table was made. */
    if (o->cls->before_step && !s->device) o->cls->before_step(o, &info);
    for (size_t i = 0; i < p->nlaunches; i++) {
        clopt__launch l = step_launch(s, &p->launches[i], CLOPT__STEP_UPDATE);
        o->cls->launch(o, &info, &l);
        clopt_status st;
        if (o->cls->run_launch) { /* a class with passes of its own (Adafactor) */
            if ((st = o->cls->run_launch(o, p, &p->launches[i], &l, 0)) != CLOPT_OK) return st;
            continue;
        }
        if (o->cls->stats_kernel && (st = run_stats(o, p, &p->launches[i], &l, 0)) != CLOPT_OK)
            return st;
        if (runs_fit(o, &l)) over_runs(p, &p->launches[i], &l);
        if ((st = o->ctx->ops->update(o->ctx, &l)) != CLOPT_OK) return st;
    }
    return s->accum_update ? reset_absent_accumulators(o) : CLOPT_OK;
}

/* Keras's EMA after every apply: average := m*average + (1-m)*var over every built variable,
 * m = 0 on the first step; then the periodic overwrite of the variables by their averages. */
static clopt_status ema(const step *s) {
    clopt_optimizer *o = s->o;
    const clopt__value *b = o->base;
    if (!b[CLOPT__B_USE_EMA].v) return CLOPT_OK;
    const int64_t it = clopt__iterations(o);
    clopt_status st = run_pass(s, &o->all_plan, "pipeline.ema", clopt__ema_momentum_at(o, it),
                               CLOPT__STEP_EMA);
    const clopt__value *f = &b[CLOPT__B_EMA_OVERWRITE_FREQUENCY];
    /* On a device-decided step the device knows the count: the launch skips itself off beat. */
    if (st == CLOPT_OK && !f->null && f->v >= 1 && (s->device || clopt__ema_overwrite_at(o, it)))
        st = run_pass(s, &o->all_plan, "pipeline.ema_overwrite", 0.0, CLOPT__STEP_EMA_OVERWRITE);
    return st;
}

static void count(const step *s) {
    if (!s->device) s->o->iterations++; /* else the device counts */
}

clopt_status clopt__apply_run(clopt_optimizer *o, const clopt__step_request *req) {
    const int64_t steps = clopt__accumulation_steps(o);
    step s = {o, &o->plan, req, clopt__learning_rate(o), 0, 0, req && req->step_state, NULL};
    s.accumulate_only = steps && (o->iterations + 1) % steps != 0;
    s.accum_update = steps && !s.accumulate_only;
    clopt_status st;
    if (s.accumulate_only) {
        st = accumulate_pass(&s);
    } else if ((st = clip_factors(&s)) == CLOPT_OK && (st = reduce(&s)) == CLOPT_OK) {
        st = update(&s);
    }
    if (st == CLOPT_OK) st = ema(&s);
    if (st == CLOPT_OK) count(&s);
    return st;
}

/* ---- a distributed step (src/dist): the stages split at the reduce seam ---- */

clopt_status clopt__apply_run_local(clopt_optimizer *o, const clopt__step_request *req,
                                    void *const *out, int *done) {
    const int64_t steps = clopt__accumulation_steps(o);
    step s = {o, &o->plan, req, clopt__learning_rate(o), 0, 0, 0, NULL};
    s.accumulate_only = steps && (o->iterations + 1) % steps != 0;
    s.accum_update = steps && !s.accumulate_only;
    *done = s.accumulate_only;
    if (s.accumulate_only) { /* each replica its own accumulators: nothing to reduce */
        clopt_status st = accumulate_pass(&s);
        if (st == CLOPT_OK) st = ema(&s);
        if (st == CLOPT_OK) count(&s);
        return st;
    }
    clopt_status st = clip_factors(&s);
    for (size_t i = 0; i < s.p->nlaunches && st == CLOPT_OK; i++) {
        clopt__launch l = step_launch(&s, &s.p->launches[i], CLOPT__STEP_UPDATE);
        if (runs_fit(o, &l)) over_runs(s.p, &s.p->launches[i], &l);
        l.kernel = "pipeline.grad";
        l.var_buf = out[i];
        st = o->ctx->ops->update(o->ctx, &l);
    }
    return st;
}

clopt_status clopt__apply_run_shared(clopt_optimizer *o, void *const *reduced) {
    const int64_t steps = clopt__accumulation_steps(o);
    step s = {o, &o->plan, NULL, clopt__learning_rate(o), 0, steps != 0, 0, reduced};
    clopt_status st = update(&s);
    if (st == CLOPT_OK) st = ema(&s);
    if (st == CLOPT_OK) count(&s);
    return st;
}

/* EMA's momentum and overwrite beat at raw count it (before the step). */
double clopt__ema_momentum_at(const clopt_optimizer *o, int64_t it) {
    return it != 0 ? o->base[CLOPT__B_EMA_MOMENTUM].v : 0.0;
}
int clopt__ema_overwrite_at(const clopt_optimizer *o, int64_t it) {
    const clopt__value *f = &o->base[CLOPT__B_EMA_OVERWRITE_FREQUENCY];
    return o->base[CLOPT__B_USE_EMA].v && !f->null && f->v >= 1 && (it + 1) % (int64_t)f->v == 0;
}

void clopt__step_scalars(clopt_optimizer *o, clopt_dtype d, const clopt__step_info *info,
                         double out[CLOPT__MAX_SCALARS + 4]) {
    clopt__launch l;
    memset(&l, 0, sizeof l);
    l.dtype = d;
    pipeline(o, NULL, 0, info->lr, &l);
    o->cls->launch(o, info, &l);
    memcpy(out, l.scalars, sizeof l.scalars);
    memcpy(out + CLOPT__MAX_SCALARS, l.pipe, sizeof l.pipe);
}

size_t clopt__partials_bytes(const clopt_optimizer *o) {
    /* 16 (two reals, clopt__launch.aux_buf) for a class's statistics (Lamb) or passes of its
     * own (Adafactor, Muon), 8 for norm clipping's sums of squares alone, else 0. */
    double c;
    int global;
    if (o->cls->stats_kernel || o->cls->run_launch) return 16;
    return clip_mode(o, &c, &global) == 1 ? 8 : 0;
}

clopt_status clopt__run_finite_check(clopt_optimizer *o, void *flag_buf, int reset) {
    /* Two floats of 1: a float kernel's 0 clears the first, a double kernel's clears both. */
    clopt_status st =
        reset ? o->ctx->ops->fill(o->ctx, flag_buf, CLOPT_FLOAT32, 0, 2, 1.0) : CLOPT_OK;
    for (size_t i = 0; st == CLOPT_OK && i < o->plan.nlaunches; i++) {
        clopt__launch l = make_launch(o, &o->plan, &o->plan.launches[i], NULL, 0, 0.0,
                                      CLOPT__STEP_UPDATE);
        if (runs_fit(o, &l)) over_runs(&o->plan, &o->plan.launches[i], &l);
        l.kernel = "pipeline.finite";
        l.seg_buf = flag_buf;
        st = o->ctx->ops->update(o->ctx, &l);
    }
    return st;
}

clopt_status clopt_optimizer_finalize_variable_values(clopt_optimizer *o) {
    if (!o) return CLOPT_ERR_INVALID_ARGUMENT;
    clopt_optimizer *in = clopt__wrapped(o);
    if (in) return clopt_optimizer_finalize_variable_values(in);
    if (!o->base[CLOPT__B_USE_EMA].v) return CLOPT_OK;
    if (!o->built)
        return clopt__fail(o->ctx, CLOPT_ERR_NOT_BUILT,
                           "finalize_variable_values: the optimizer is not built");
    const step s = {o, &o->all_plan, NULL, clopt__learning_rate(o), 0, 0, 0, NULL};
    return run_pass(&s, &o->all_plan, "pipeline.ema_overwrite", 0.0, CLOPT__STEP_UPDATE);
}

/* Compiles and warms every kernel a step with request `req` can use, per dtype, so step 1 pays
 * no compilation (a device-decided step's variants, when the request is for such steps). */
clopt_status clopt__warm_kernels(clopt_optimizer *o, const clopt__step_request *req) {
    const int steps = clopt__accumulation_steps(o) != 0;
    double c = 0; /* set when clip_mode returns 1 */
    int global;
    const int clip = clip_mode(o, &c, &global);
    /* The scalars do not matter to a warm-up; the switches and the device variant do. */
    clopt__step_request wreq = {0};
    if (req) wreq = *req;
    wreq.unscale = 0;
    for (size_t i = 0; i < o->all_plan.nlaunches; i++) {
        const clopt__plan_launch *pl = &o->all_plan.launches[i];
        const clopt__step_info info = {1, o->lr};
        clopt__launch l = make_launch(o, &o->all_plan, pl, req ? &wreq : NULL, steps, o->lr,
                                      CLOPT__STEP_UPDATE);
        clopt__launch base = l;
        o->cls->launch(o, &info, &l);
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
        if (st == CLOPT_OK && req && req->finite_check) {
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
