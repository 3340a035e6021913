/* Runs (src/optim/plan.c, layout_runs): a launch whose kernel reads no per-variable data goes over
 * merged segments when variables, gradients and slots lie end to end. The same steps on the same
 * values give the same bits with the variables laid out end to end (few runs) and with a spacer
 * variable after each one (one segment per variable), on POCL and on the host, for every
 * element-wise optimizer and for the pipeline options that read segment reals along a run: weight
 * decay with a variable excluded in the middle (by name, and by identity after build), global
 * and per-variable norm clipping, EMA, accumulation. Also: arena ranges are whole chunks of the
 * variable's own dtype, so float32 variables of 256 elements lie end to end. */
#include "clopt/experimental.h"
#include "test_util.h"

TU_SUITE(runs_host);
TU_SUITE(runs_pocl);

enum { NV = 7, STEPS = 4 };
static const int64_t sizes[NV] = {256, 256, 1, 300, 256, 512, 7};

typedef struct side {
    clopt_context *ctx;
    clopt_optimizer *opt;
    clopt_variable *vars[NV], *grads[NV];
} side;

/* Values of variable i (or its gradient at step s, when s >= 0) by a fixed rule. */
static void values(double *x, int i, int s, int64_t n) {
    uint64_t st = 0x9e37u + (uint64_t)i * 131u + (uint64_t)(s + 1) * 7919u;
    tu_rand_fill(&st, x, (size_t)n, s < 0 ? -1.0 : -0.5, s < 0 ? 1.0 : 0.5);
}

static clopt_variable *make(clopt_context *ctx, const char *name, clopt_dtype d, int64_t n) {
    double *x = malloc((size_t)n * sizeof *x);
    cr_assert(x);
    values(x, name[0] == 'v' ? atoi(name + 1) : 99, -1, n);
    const int64_t shape[1] = {n};
    clopt_variable *v = tu_var_from_f64(ctx, name, d, 1, shape, x);
    free(x);
    return v;
}

/* spaced: a one-element spacer after every variable and every gradient, so nothing is contiguous.
 * ctx: the context to share (its kernels compile once for both sides), or NULL for a new one. */
static void side_init(side *s, const char *dev, clopt_context *ctx, const char *json,
                      clopt_dtype d, int spaced) {
    char name[16];
    s->ctx = ctx ? ctx : tu_context(dev);
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < NV; i++) {
            snprintf(name, sizeof name, "%c%d", pass ? 'g' : 'v', i);
            clopt_variable **slot = pass ? &s->grads[i] : &s->vars[i];
            *slot = make(s->ctx, name, d, sizes[i]);
            if (spaced) make(s->ctx, "spacer", d, 1);
        }
    s->opt = tu_optimizer(s->ctx, json);
}

static void side_step(side *s, int step) {
    for (int i = 0; i < NV; i++) {
        double *g = malloc((size_t)sizes[i] * sizeof *g);
        cr_assert(g);
        values(g, i, step, sizes[i]);
        tu_write_f64(s->grads[i], g);
        free(g);
    }
    TU_OK(s->ctx, clopt_optimizer_apply(s->opt, s->grads, s->vars, NV));
}

/* The two layouts step alike, bit for bit, in every variable and slot. after_build: exclude v3
 * from weight decay by identity after the first step (the plans' runs are laid out again). */
static void layouts_agree(const char *dev, const char *json, clopt_dtype d, int after_build) {
    side a, b;
    side_init(&a, dev, NULL, json, d, 0);
    side_init(&b, dev, a.ctx, json, d, 1);
    double *start = tu_read_f64(a.vars[0]);
    for (int step = 0; step < STEPS; step++) {
        if (after_build && step == 1) {
            TU_OK(a.ctx, clopt_optimizer_exclude_from_weight_decay(a.opt, &a.vars[3], 1, NULL, 0));
            TU_OK(b.ctx, clopt_optimizer_exclude_from_weight_decay(b.opt, &b.vars[3], 1, NULL, 0));
        }
        side_step(&a, step);
        side_step(&b, step);
    }
    tu_snapshot sa, sb;
    tu_snapshot_take(&sa, a.opt, a.vars, NV);
    tu_snapshot_take(&sb, b.opt, b.vars, NV);
    cr_assert_eq(sa.n, sb.n);
    for (size_t i = 0; i < sa.n; i++) {
        cr_assert_eq(sa.nbytes[i], sb.nbytes[i]);
        tu_assert_same_bytes(sa.bytes[i], sb.bytes[i], sa.nbytes[i], clopt_variable_name(sa.vars[i]));
    }
    /* and the step moved them: the comparison is not of two untouched copies */
    double *v0 = tu_read_f64(a.vars[0]);
    int moved = 0;
    for (int k = 0; k < 256; k++) moved |= v0[k] != start[k];
    cr_assert(moved, "%s: v0 did not move", json);
    free(v0);
    free(start);
    tu_snapshot_free(&sa);
    tu_snapshot_free(&sb);
    clopt_context_destroy(a.ctx);
}

#define CFG(cls, extra) "{\"class_name\": \"" cls "\", \"config\": {\"learning_rate\": 0.01" extra "}}"
static const char *const optimizers[] = {
    CFG("SGD", ", \"momentum\": 0.9, \"nesterov\": true"),
    CFG("Adam", ", \"amsgrad\": true"),
    CFG("AdamW", ", \"weight_decay\": 0.1"),
    CFG("RMSprop", ", \"momentum\": 0.5, \"centered\": true"),
    CFG("Adagrad", ""),
    CFG("Adadelta", ""),
    CFG("Adamax", ""),
    CFG("Nadam", ""),
    CFG("Ftrl", ", \"l1_regularization_strength\": 0.01, \"l2_regularization_strength\": 0.01"),
    CFG("Lion", ""),
    CFG("ScheduleFreeAdamW", ""),
    CFG("Lamb", ""),
};
/* The pipeline options on Adam: the segment reals read along a run, or per-variable segments. */
static const char *const pipeline[] = {
    CFG("Adam", ", \"weight_decay\": 0.1"),
    CFG("Adam", ", \"clipnorm\": 0.5"),
    CFG("Adam", ", \"global_clipnorm\": 0.5"),
    CFG("Adam", ", \"clipvalue\": 0.1"),
    CFG("Adam", ", \"use_ema\": true, \"ema_momentum\": 0.9, \"ema_overwrite_frequency\": 3"),
    CFG("Adam", ", \"gradient_accumulation_steps\": 2"),
    CFG("Adam", ", \"loss_scale_factor\": 4.0"),
};
#define DECAY_EXCLUDE_V3 CFG("AdamW", ", \"weight_decay\": 0.1")

static void every_case(const char *dev) {
    const clopt_dtype dts[2] = {CLOPT_FLOAT32, CLOPT_FLOAT64};
    for (size_t k = 0; k < sizeof optimizers / sizeof *optimizers; k++)
        for (int d = 0; d < 2; d++) layouts_agree(dev, optimizers[k], dts[d], 0);
    for (size_t k = 0; k < sizeof pipeline / sizeof *pipeline; k++)
        layouts_agree(dev, pipeline[k], CLOPT_FLOAT32, 0);
    layouts_agree(dev, DECAY_EXCLUDE_V3, CLOPT_FLOAT32, 1);
}

Test(runs_host, layouts_agree) { every_case(TU_HOST); }
Test(runs_pocl, layouts_agree) { every_case(TU_POCL); }

/* Weight decay excluded by name for a variable in the middle of a run: the run splits there. The
 * excluded variable moves as plain Adam would move it, the others as AdamW. */
static void exclusion_by_name(const char *dev) {
    const char *const names[1] = {"^v3$"};
    side a, b;
    side_init(&a, dev, NULL, CFG("AdamW", ", \"weight_decay\": 0.5"), CLOPT_FLOAT32, 0);
    side_init(&b, dev, a.ctx, CFG("AdamW", ", \"weight_decay\": 0.5"), CLOPT_FLOAT32, 1);
    TU_OK(a.ctx, clopt_optimizer_exclude_from_weight_decay(a.opt, NULL, 0, names, 1));
    TU_OK(b.ctx, clopt_optimizer_exclude_from_weight_decay(b.opt, &b.vars[3], 1, NULL, 0));
    for (int step = 0; step < STEPS; step++) {
        side_step(&a, step);
        side_step(&b, step);
    }
    for (int i = 0; i < NV; i++) {
        size_t na, nb;
        unsigned char *x = tu_read_bytes(a.vars[i], &na), *y = tu_read_bytes(b.vars[i], &nb);
        cr_assert_eq(na, nb);
        tu_assert_same_bytes(x, y, na, clopt_variable_name(a.vars[i]));
        free(x);
        free(y);
    }
    clopt_context_destroy(a.ctx);
}
Test(runs_host, weight_decay_exclusion_splits_a_run) { exclusion_by_name(TU_HOST); }
Test(runs_pocl, weight_decay_exclusion_splits_a_run) { exclusion_by_name(TU_POCL); }

/* Arena ranges: whole chunks of the variable's dtype at offsets of whole chunks of it. */
Test(runs_host, arena_ranges_are_chunks_of_the_dtype) {
    clopt_context *ctx = tu_context(TU_HOST);
    clopt_memory_stats m;
    clopt_variable *a = tu_var_f32(ctx, "a", 256, NULL);
    clopt_variable *b = tu_var_f32(ctx, "b", 256, NULL);
    TU_OK(ctx, clopt_context_memory_stats(ctx, &m));
    cr_assert_eq(m.arena_used_bytes, 2 * 1024, "two float32 chunks: %llu",
                 (unsigned long long)m.arena_used_bytes);
    /* a float64 variable after three float32 chunks starts at the next 2048-byte boundary */
    clopt_variable *c = tu_var_f32(ctx, "c", 1, NULL);
    clopt_variable *d = tu_var_f64(ctx, "d", 1, NULL);
    TU_OK(ctx, clopt_context_memory_stats(ctx, &m));
    cr_assert_eq(m.arena_used_bytes, 3 * 1024 + 2048);
    /* the 1024-byte gap before it is free: a float32 chunk fits there, in the same block */
    clopt_variable *e = tu_var_f32(ctx, "e", 10, NULL);
    TU_OK(ctx, clopt_context_memory_stats(ctx, &m));
    cr_assert_eq(m.arena_used_bytes, 4 * 1024 + 2048);
    cr_assert_eq(m.arena_blocks, 1);
    /* values survive the neighbours' writes */
    const double one = 1.0, two = 2.0;
    tu_write_f64(d, &two);
    tu_write_f64(e, (double[10]){0});
    tu_write_f64(c, &one);
    double *got = tu_read_f64(d);
    cr_assert_eq(got[0], 2.0);
    free(got);
    clopt_variable_destroy(a);
    clopt_variable_destroy(b);
    clopt_variable_destroy(c);
    clopt_variable_destroy(d);
    clopt_variable_destroy(e);
    TU_OK(ctx, clopt_context_memory_stats(ctx, &m));
    cr_assert_eq(m.arena_used_bytes, 0);
    clopt_context_destroy(ctx);
}

/* The step whose lists are the last step's skips its checks (apply.c, same_step), but only while
 * no handle was freed: a gradient destroyed and its address reused by a variable of another
 * shape is caught, with nothing changed. */
static void reused_address(const char *dev) {
    side a;
    side_init(&a, dev, NULL, CFG("Adam", ""), CLOPT_FLOAT32, 0);
    side_step(&a, 0);
    side_step(&a, 1);
    tu_snapshot before;
    tu_snapshot_take(&before, a.opt, a.vars, NV);
    clopt_variable_destroy(a.grads[4]);
    /* try hard to land a wrong-shaped variable at the freed address */
    clopt_variable *tries[64];
    int hit = -1;
    for (int k = 0; k < 64 && hit < 0; k++) {
        tries[k] = tu_var_f32(a.ctx, "wrong", 3, NULL);
        if (tries[k] == a.grads[4]) hit = k;
    }
    if (hit >= 0) {
        TU_ASSERT_STATUS(a.ctx, clopt_optimizer_apply(a.opt, a.grads, a.vars, NV),
                         CLOPT_ERR_SHAPE_MISMATCH);
        tu_assert_error_mentions(a.ctx, "gradient 4");
    } else {
        TU_ASSERT_STATUS(a.ctx, clopt_optimizer_apply(a.opt, a.grads, a.vars, NV),
                         CLOPT_ERR_INVALID_ARGUMENT);
        tu_assert_error_mentions(a.ctx, "gradient 4 was destroyed");
    }
    tu_snapshot_assert_same(&before, a.opt, "after a step with a gradient gone");
    tu_snapshot_free(&before);
    clopt_context_destroy(a.ctx);
}
Test(runs_host, gradient_freed_between_steps_is_checked) { reused_address(TU_HOST); }
Test(runs_pocl, gradient_freed_between_steps_is_checked) { reused_address(TU_POCL); }
