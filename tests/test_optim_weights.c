/* Writing an optimizer's state: Keras's set_weights (semantics doc section 1.3), variable_write /
 * variable_read for every kind of entry of the variable list, add_variable and
 * add_variable_from_reference, and the assign helpers.
 *
 * Keras's set_weights requires a built optimizer, zips `weights` with `variables` (extra entries
 * on either side are ignored) and refuses a shape mismatch naming the variable. clopt checks
 * every entry before writing any, so a refused call changes nothing even when earlier entries
 * were valid; every "nothing changed" check here is bitwise over the whole variable list
 * (optim_state.h) and the user variables. add_variable's variables are freed with the optimizer:
 * the ASan build (CLOPT_SANITIZE=address,undefined) of these tests reports any leak or double
 * free. */
#include "optim_state.h"

static clopt_context *ctx;
static void setup(void) { ctx = tu_context(TU_HOST); }
static void teardown(void) { clopt_context_destroy(ctx); }
TestSuite(weights, .init = setup, .fini = teardown);

#define ADAM_AMS                                                                                 \
    "{\"class_name\": \"Adam\", \"config\": {\"learning_rate\": 0.01, \"amsgrad\": true}}"

/* kernel [2, 3] float32 and bias [3] float64 with fixed values and gradients. */
typedef struct model {
    clopt_context *ctx;
    clopt_variable *v[2], *g[2];
} model;

static void model_init(model *m, clopt_context *c, const char *prefix) {
    const int64_t ks[2] = {2, 3}, bs = 3;
    const double k0[6] = {1, 2, -3, 0.5, -0.25, 4}, b0[3] = {-1, 0.125, 1};
    const double gk[6] = {0.5, -0.5, 0.25, 1, -2, 0.125}, gb[3] = {1, -1, 0.5};
    char kn[64], bn[64];
    snprintf(kn, sizeof kn, "%s/kernel", prefix);
    snprintf(bn, sizeof bn, "%s/bias", prefix);
    m->ctx = c;
    m->v[0] = tu_var_from_f64(c, kn, CLOPT_FLOAT32, 2, ks, k0);
    m->v[1] = tu_var_from_f64(c, bn, CLOPT_FLOAT64, 1, &bs, b0);
    m->g[0] = tu_var_from_f64(c, "grad_kernel", CLOPT_FLOAT32, 2, ks, gk);
    m->g[1] = tu_var_from_f64(c, "grad_bias", CLOPT_FLOAT64, 1, &bs, gb);
}

static void model_steps(model *m, clopt_optimizer *o, int steps) {
    for (int i = 0; i < steps; i++) TU_OK(m->ctx, clopt_optimizer_apply(o, m->g, m->v, 2));
}

/* An optimizer from `json`, built on m's variables, after `steps` steps of m's gradients. */
static clopt_optimizer *model_optimizer(model *m, const char *json, int steps) {
    clopt_optimizer *o = tu_optimizer(m->ctx, json);
    TU_OK(m->ctx, clopt_optimizer_build(o, m->v, 2));
    model_steps(m, o, steps);
    return o;
}

/* ---- set_weights ---- */

/* Keras: "You are calling set_weights() on an optimizer that has not yet been built". */
Test(weights, set_weights_requires_build) {
    clopt_optimizer *o = tu_optimizer(ctx, ADAM_AMS);
    const double it = 3, lr = 0.5;
    const double *vals[2] = {&it, &lr};
    const size_t counts[2] = {1, 1};
    TU_ASSERT_STATUS(ctx, clopt_optimizer_set_weights(o, vals, counts, 2), CLOPT_ERR_NOT_BUILT);
    tu_assert_error_mentions(ctx, "built");
    cr_assert_eq(os_scalar(o, 0), 0.0, "iteration written by a refused set_weights");
    cr_assert_eq(os_scalar(o, 1), (double)0.01f, "learning_rate written by a refused set_weights");
    TU_ASSERT_STATUS(ctx, clopt_optimizer_set_weights(NULL, vals, counts, 2),
                     CLOPT_ERR_INVALID_ARGUMENT);
    /* An LSO is built when its inner optimizer is. */
    clopt_optimizer *l = tu_optimizer(
        ctx, "{\"class_name\": \"LossScaleOptimizer\", \"config\": {\"inner_optimizer\": " ADAM_AMS
             "}}");
    TU_ASSERT_STATUS(ctx, clopt_optimizer_set_weights(l, vals, counts, 2), CLOPT_ERR_NOT_BUILT);
    /* Built: n == 0 writes nothing and succeeds; NULL lists with n > 0 are refused. */
    model m;
    model_init(&m, ctx, "dense");
    TU_OK(ctx, clopt_optimizer_build(o, m.v, 2));
    TU_OK(ctx, clopt_optimizer_set_weights(o, NULL, NULL, 0));
    TU_ASSERT_STATUS(ctx, clopt_optimizer_set_weights(o, NULL, counts, 2),
                     CLOPT_ERR_INVALID_ARGUMENT);
    TU_ASSERT_STATUS(ctx, clopt_optimizer_set_weights(o, vals, NULL, 2),
                     CLOPT_ERR_INVALID_ARGUMENT);
}

/* The state of one optimizer, written into a fresh one with set_weights, makes the fresh one
 * continue exactly as the first: same variable list values bit for bit, and the same next steps
 * (the iteration drives the bias corrections, the slots the moments, Nadam's u_product its
 * schedule, an LSO's counter and scale its unscaling). */
static void transplant(const char *dev, const char *json) {
    clopt_context *c = tu_context(dev);
    model a, b;
    model_init(&a, c, "a");
    model_init(&b, c, "b");
    clopt_optimizer *oa = tu_optimizer(c, json), *ob = tu_optimizer(c, json);
    TU_OK(c, clopt_optimizer_build(oa, a.v, 2));
    TU_OK(c, clopt_optimizer_build(ob, b.v, 2));
    model_steps(&a, oa, 3);
    os_state sa, sb;
    os_read(&sa, oa);
    TU_OK(c, clopt_optimizer_set_weights(ob, (const double *const *)sa.vals, sa.counts, sa.n));
    os_read(&sb, ob);
    os_assert_same(&sb, &sa, ob, "after set_weights");
    os_free(&sb);
    for (int i = 0; i < 2; i++) TU_OK(c, clopt_variable_assign(b.v[i], a.v[i]));
    for (int step = 0; step < 3; step++) {
        model_steps(&a, oa, 1);
        model_steps(&b, ob, 1);
        char what[160];
        snprintf(what, sizeof what, "%s %s, step %d after the transplant", dev, json, step);
        for (int i = 0; i < 2; i++) os_assert_vars_same(b.v[i], a.v[i], what);
        os_state ta, tb;
        os_read(&ta, oa);
        os_read(&tb, ob);
        os_assert_same(&tb, &ta, ob, what);
        os_free(&ta);
        os_free(&tb);
    }
    os_free(&sa);
    clopt_context_destroy(c);
}
#define NADAM "{\"class_name\": \"Nadam\", \"config\": {\"learning_rate\": 0.01}}"
#define LSO_ADAM                                                                                 \
    "{\"class_name\": \"LossScaleOptimizer\", \"config\": {\"inner_optimizer\": " ADAM_AMS      \
    ", \"initial_scale\": 1.0, \"dynamic_growth_steps\": 2}}"
#define SGD_ACC_EMA                                                                              \
    "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.1, \"momentum\": 0.9, "         \
    "\"use_ema\": true, \"gradient_accumulation_steps\": 2}}"
Test(weights_host, set_weights_transplants_state) {
    transplant(TU_HOST, ADAM_AMS);
    transplant(TU_HOST, NADAM);
    transplant(TU_HOST, LSO_ADAM);
    transplant(TU_HOST, SGD_ACC_EMA);
}
Test(weights_pocl, set_weights_transplants_state) {
    transplant(TU_POCL, ADAM_AMS);
    transplant(TU_POCL, NADAM);
    transplant(TU_POCL, LSO_ADAM);
    transplant(TU_POCL, SGD_ACC_EMA);
}

/* Keras zips the lists: fewer values write the first entries only; more values are ignored
 * (whatever they hold). */
Test(weights, set_weights_zips_lists) {
    model m;
    model_init(&m, ctx, "dense");
    clopt_optimizer *o = model_optimizer(&m, ADAM_AMS, 2);
    os_state before, want, after;
    os_read(&before, o);
    os_alloc(&want, o, 0.75);
    want.vals[0][0] = 9; /* iteration */
    /* Two entries: iteration and learning_rate only. */
    TU_OK(ctx, clopt_optimizer_set_weights(o, (const double *const *)want.vals, want.counts, 2));
    os_read(&after, o);
    cr_assert_eq(after.vals[0][0], 9.0);
    cr_assert_eq(after.vals[1][0], 0.75);
    cr_assert_eq(clopt_optimizer_iterations(o), 9);
    for (size_t i = 2; i < after.n; i++) os_assert_entry_same(&after, &before, i, o, "zip 2");
    os_free(&after);
    /* More values than variables: the extras are ignored even when NULL or mis-sized. */
    const size_t n = want.n + 3;
    const double **vals = calloc(n, sizeof *vals);
    size_t *counts = calloc(n, sizeof *counts);
    cr_assert(vals && counts);
    for (size_t i = 0; i < want.n; i++) {
        vals[i] = want.vals[i];
        counts[i] = want.counts[i];
    }
    counts[want.n] = 12345; /* NULL values, wrong count: beyond the list, ignored */
    TU_OK(ctx, clopt_optimizer_set_weights(o, vals, counts, n));
    os_read(&after, o);
    os_assert_same(&after, &want, o, "zip with extra values");
    free(vals);
    free(counts);
    os_free(&before);
    os_free(&want);
    os_free(&after);
}

/* A shape mismatch is refused naming the variable, and nothing changes although every entry
 * before it was valid; so are NULL values and a non-integer or negative counter. */
Test(weights, set_weights_refusals_change_nothing) {
    model m;
    model_init(&m, ctx, "dense");
    clopt_optimizer *o = model_optimizer(&m, LSO_ADAM, 2);
    os_state before, good, after;
    os_read(&before, o);
    os_alloc(&good, o, 0.5);
    for (size_t i = 0; i < good.n; i++) good.vals[i][0] = 1.0; /* counters: integers */
    const size_t iv = tu_optimizer_variable_index(o, "dense_bias_velocity");
    char path[64];
    snprintf(path, sizeof path, "adam/dense_bias_velocity");
    /* A slot given too few values: the last entries before it are all valid. */
    good.counts[iv]--;
    TU_ASSERT_STATUS(ctx,
                     clopt_optimizer_set_weights(o, (const double *const *)good.vals, good.counts,
                                                 good.n),
                     CLOPT_ERR_SHAPE_MISMATCH);
    tu_assert_error_mentions(ctx, path);
    good.counts[iv]++;
    /* NULL values for one entry. */
    double *keep = good.vals[iv];
    good.vals[iv] = NULL;
    TU_ASSERT_STATUS(ctx,
                     clopt_optimizer_set_weights(o, (const double *const *)good.vals, good.counts,
                                                 good.n),
                     CLOPT_ERR_INVALID_ARGUMENT);
    tu_assert_error_mentions(ctx, path);
    good.vals[iv] = keep;
    /* Counters: the LSO's step_counter (2) and the inner iteration (4) must be integers >= 0;
     * the LSO's own iteration (0) too. */
    const struct {
        size_t index;
        double value;
        const char *name;
    } bad[] = {{2, 0.5, "step_counter"}, {4, 1.5, "iteration"},  {4, -1.0, "iteration"},
               {4, NAN, "iteration"},    {0, INFINITY, "iteration"}, {2, -2.0, "step_counter"},
               {4, 1e19, "iteration"}};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        const double save = good.vals[bad[k].index][0];
        good.vals[bad[k].index][0] = bad[k].value;
        TU_ASSERT_STATUS(ctx,
                         clopt_optimizer_set_weights(o, (const double *const *)good.vals,
                                                     good.counts, good.n),
                         CLOPT_ERR_BAD_VALUE);
        tu_assert_error_mentions(ctx, bad[k].name);
        good.vals[bad[k].index][0] = save;
    }
    os_read(&after, o);
    os_assert_same(&after, &before, o, "after refused set_weights");
    os_free(&after);
    cr_assert_eq(clopt_optimizer_iterations(o), 2);
    /* And the valid list is then accepted. */
    TU_OK(ctx, clopt_optimizer_set_weights(o, (const double *const *)good.vals, good.counts,
                                           good.n));
    os_read(&after, o);
    for (size_t i = 0; i < after.n; i++)
        for (size_t j = 0; j < after.counts[i]; j++)
            cr_assert_eq(after.vals[i][j], good.vals[i][j], "entry %zu[%zu]", i, j);
    os_free(&before);
    os_free(&good);
    os_free(&after);
}

/* ---- variable_write / variable_read, entry by entry ---- */

/* The iteration counter: integers >= 0; the raw count (Keras's _iterations), which
 * clopt_optimizer_iterations divides by the accumulation steps. */
Test(weights, write_read_iteration) {
    model m;
    model_init(&m, ctx, "dense");
    clopt_optimizer *o = model_optimizer(
        &m, "{\"class_name\": \"SGD\", \"config\": {\"gradient_accumulation_steps\": 3}}", 0);
    const double seven = 7, big = 4503599627370496.0; /* 2^52 */
    TU_OK(ctx, clopt_optimizer_variable_write(o, 0, &seven, 1));
    cr_assert_eq(os_scalar(o, 0), 7.0);
    cr_assert_eq(clopt_optimizer_iterations(o), 2, "iterations = 7 // 3");
    TU_OK(ctx, clopt_optimizer_variable_write(o, 0, &big, 1));
    cr_assert_eq(os_scalar(o, 0), big);
    const double bad[] = {0.5, -1, NAN, INFINITY, -INFINITY, 1e19};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        TU_ASSERT_STATUS(ctx, clopt_optimizer_variable_write(o, 0, &bad[i], 1),
                         CLOPT_ERR_BAD_VALUE);
        tu_assert_error_mentions(ctx, "SGD/iteration");
        cr_assert_eq(os_scalar(o, 0), big, "a refused write changed the counter");
    }
}

/* The learning rate is a float32 variable: a written double is rounded; get_learning_rate and
 * the next step use the rounded value. */
Test(weights, write_read_learning_rate) {
    const double one = 1.0, g = 1.0;
    clopt_variable *w = tu_var(ctx, "w", CLOPT_FLOAT64, 0, NULL, &one);
    clopt_variable *gv = tu_var(ctx, "g", CLOPT_FLOAT64, 0, NULL, &g);
    clopt_optimizer *o = tu_optimizer(ctx, "{\"class_name\": \"SGD\"}");
    const double lr = 0.1;
    TU_OK(ctx, clopt_optimizer_variable_write(o, 1, &lr, 1)); /* unbuilt: allowed */
    cr_assert_eq(os_scalar(o, 1), (double)0.1f);
    double got = 0;
    TU_OK(ctx, clopt_optimizer_get_learning_rate(o, &got));
    cr_assert_eq(got, (double)0.1f);
    TU_OK(ctx, clopt_optimizer_apply(o, &gv, &w, 1));
    const double want = 1.0 - (double)0.1f;
    tu_assert_var_close(w, &want, 0, 0, "w after a step at the written learning rate");
    /* Below float32's range: zero, as numpy's float32 cast. */
    const double tiny = 1e-50;
    TU_OK(ctx, clopt_optimizer_variable_write(o, 1, &tiny, 1));
    cr_assert_eq(os_scalar(o, 1), 0.0);
    /* With a schedule there is no learning_rate entry: index 1 is the first slot. */
    clopt_optimizer *s = tu_optimizer(
        ctx, "{\"class_name\": \"SGD\", \"config\": {\"momentum\": 0.5, \"learning_rate\": "
             "{\"class_name\": \"ExponentialDecay\", \"config\": {\"initial_learning_rate\": 0.1, "
             "\"decay_steps\": 10, \"decay_rate\": 0.5}}}}");
    TU_OK(ctx, clopt_optimizer_build(s, &w, 1));
    const char *name;
    TU_OK(ctx, clopt_optimizer_variable(s, 1, &name, NULL, NULL));
    cr_assert_str_eq(name, "w_momentum");
    const double m = 0.25;
    TU_OK(ctx, clopt_optimizer_variable_write(s, 1, &m, 1));
    cr_assert_eq(os_scalar(s, 1), 0.25);
}

/* Slots: float32 rounds, float64 is exact, the sign of zero survives; the next step uses the
 * written slot (Keras's SGD: m = momentum * m - lr * g; w += m). */
Test(weights, write_read_slots) {
    const int64_t n = 4;
    const double w0[4] = {1, 2, 3, 4}, g0[4] = {1, -1, 0.5, 2};
    clopt_variable *w32 = tu_var_from_f64(ctx, "w32", CLOPT_FLOAT32, 1, &n, w0);
    clopt_variable *w64 = tu_var_from_f64(ctx, "w64", CLOPT_FLOAT64, 1, &n, w0);
    clopt_variable *g32 = tu_var_from_f64(ctx, "g32", CLOPT_FLOAT32, 1, &n, g0);
    clopt_variable *g64 = tu_var_from_f64(ctx, "g64", CLOPT_FLOAT64, 1, &n, g0);
    clopt_optimizer *o = tu_optimizer(
        ctx, "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.5, \"momentum\": "
             "0.25}}");
    clopt_variable *vars[2] = {w32, w64}, *grads[2] = {g32, g64};
    TU_OK(ctx, clopt_optimizer_build(o, vars, 2));
    const double m[4] = {0.1, -0.0, 1e-45, 3.0};
    TU_OK(ctx, clopt_optimizer_variable_write(o, 2, m, 4));
    TU_OK(ctx, clopt_optimizer_variable_write(o, 3, m, 4));
    double r32[4], r64[4];
    TU_OK(ctx, clopt_optimizer_variable_read(o, 2, r32, 4));
    TU_OK(ctx, clopt_optimizer_variable_read(o, 3, r64, 4));
    for (int i = 0; i < 4; i++) {
        const double f = (double)(float)m[i];
        cr_assert(memcmp(&r32[i], &f, sizeof f) == 0, "float32 slot[%d]: %.17g, want %.17g", i,
                  r32[i], f);
        cr_assert(memcmp(&r64[i], &m[i], sizeof f) == 0, "float64 slot[%d]: %.17g, want %.17g",
                  i, r64[i], m[i]);
    }
    cr_assert(signbit(r32[1]) && signbit(r64[1]), "the sign of -0.0");
    /* The slot variable itself holds the written values. */
    double *direct = tu_read_f64(tu_slot(o, "w64_momentum"));
    cr_assert(memcmp(direct, m, sizeof m) == 0);
    free(direct);
    TU_OK(ctx, clopt_optimizer_apply(o, grads, vars, 2));
    double want[4];
    for (int i = 0; i < 4; i++) want[i] = w0[i] + (0.25 * m[i] - 0.5 * g0[i]);
    tu_assert_var_close(w64, want, 1e-15, 0, "float64 step from the written momentum");
    tu_assert_var_close(w32, want, 1e-7, 1e-7, "float32 step from the written momentum");
    /* Refusals: wrong count (names the path), NULL, index out of range; nothing written. */
    os_state before, after;
    os_read(&before, o);
    const double five[5] = {9, 9, 9, 9, 9};
    TU_ASSERT_STATUS(ctx, clopt_optimizer_variable_write(o, 2, five, 5), CLOPT_ERR_SHAPE_MISMATCH);
    tu_assert_error_mentions(ctx, "SGD/w32_momentum");
    TU_ASSERT_STATUS(ctx, clopt_optimizer_variable_write(o, 2, five, 1), CLOPT_ERR_SHAPE_MISMATCH);
    TU_ASSERT_STATUS(ctx, clopt_optimizer_variable_write(o, 2, NULL, 4),
                     CLOPT_ERR_INVALID_ARGUMENT);
    TU_ASSERT_STATUS(ctx, clopt_optimizer_variable_write(o, 4, five, 1),
                     CLOPT_ERR_INVALID_ARGUMENT);
    TU_ASSERT_STATUS(ctx, clopt_optimizer_variable_write(NULL, 0, five, 1),
                     CLOPT_ERR_INVALID_ARGUMENT);
    os_read(&after, o);
    os_assert_same(&after, &before, o, "after refused writes");
    /* variable_read's refusals. */
    double sink[5];
    TU_ASSERT_STATUS(ctx, clopt_optimizer_variable_read(o, 2, sink, 5), CLOPT_ERR_SHAPE_MISMATCH);
    TU_ASSERT_STATUS(ctx, clopt_optimizer_variable_read(o, 0, sink, 2), CLOPT_ERR_SHAPE_MISMATCH);
    TU_ASSERT_STATUS(ctx, clopt_optimizer_variable_read(o, 2, NULL, 4),
                     CLOPT_ERR_INVALID_ARGUMENT);
    TU_ASSERT_STATUS(ctx, clopt_optimizer_variable_read(o, 9, sink, 1),
                     CLOPT_ERR_INVALID_ARGUMENT);
    TU_ASSERT_STATUS(ctx, clopt_optimizer_variable_read(NULL, 0, sink, 1),
                     CLOPT_ERR_INVALID_ARGUMENT);
    os_free(&before);
    os_free(&after);
}

/* Nadam's u_product is a scalar variable of the first variable's dtype (Keras creates it with
 * that dtype): a written double is rounded to it, as a step's value is. */
static void nadam_scalar(clopt_dtype dt, double written, double want) {
    const int64_t n = 2;
    clopt_variable *w = tu_var(ctx, "w", dt, 1, &n, NULL);
    clopt_optimizer *o = tu_optimizer(ctx, NADAM);
    TU_OK(ctx, clopt_optimizer_build(o, &w, 1));
    const size_t iu = clopt_optimizer_variable_count(o) - 1;
    const char *name;
    TU_OK(ctx, clopt_optimizer_variable(o, iu, &name, NULL, NULL));
    cr_assert_str_eq(name, "variable");
    cr_assert_eq(os_scalar(o, iu), 1.0, "u_product starts at 1");
    TU_OK(ctx, clopt_optimizer_variable_write(o, iu, &written, 1));
    const double got = os_scalar(o, iu);
    cr_assert(memcmp(&got, &want, sizeof got) == 0, "%s u_product: wrote %.17g, read %.17g, "
              "want %.17g", clopt_dtype_name(dt), written, got, want);
    clopt_optimizer_destroy(o);
    clopt_variable_destroy(w);
}
Test(weights, write_read_host_scalars) {
    nadam_scalar(CLOPT_FLOAT64, 0.1, 0.1);
    nadam_scalar(CLOPT_FLOAT32, 0.1, (double)0.1f);
    nadam_scalar(CLOPT_FLOAT16, 0.1, 0.0999755859375);  /* float16 0x2e66 */
    nadam_scalar(CLOPT_BFLOAT16, 0.1, 0.10009765625);   /* bfloat16 0x3dcd */
    nadam_scalar(CLOPT_FLOAT16, 0.5, 0.5);
    /* An LSO's step_counter (an integer) and dynamic_scale (float32). */
    model m;
    model_init(&m, ctx, "dense");
    clopt_optimizer *l = model_optimizer(&m, LSO_ADAM, 0);
    const double five = 5, half = 2.5, tenth = 0.1;
    TU_OK(ctx, clopt_optimizer_variable_write(l, 2, &five, 1));
    cr_assert_eq(os_scalar(l, 2), 5.0);
    TU_ASSERT_STATUS(ctx, clopt_optimizer_variable_write(l, 2, &half, 1), CLOPT_ERR_BAD_VALUE);
    tu_assert_error_mentions(ctx, "loss_scale_optimizer/step_counter");
    cr_assert_eq(os_scalar(l, 2), 5.0);
    TU_OK(ctx, clopt_optimizer_variable_write(l, 3, &tenth, 1));
    cr_assert_eq(os_scalar(l, 3), (double)0.1f);
    double s = 0;
    TU_OK(ctx, clopt_optimizer_scale_loss(l, 1.0, &s));
    cr_assert_eq(s, (double)0.1f);
    /* The LSO's own learning_rate and iteration, and the inner ones, are separate entries. */
    TU_OK(ctx, clopt_optimizer_variable_write(l, 1, &tenth, 1));
    TU_OK(ctx, clopt_optimizer_variable_write(l, 4, &five, 1));
    cr_assert_eq(os_scalar(l, 0), 0.0);
    cr_assert_eq(os_scalar(l, 1), (double)0.1f);
    cr_assert_eq(os_scalar(l, 5), (double)0.01f);
    cr_assert_eq(clopt_optimizer_iterations(l), 5);
}

/* ---- add_variable / add_variable_from_reference ---- */

static void check_entry(clopt_optimizer *o, size_t i, const char *name, const char *path,
                        clopt_variable *var) {
    const char *n, *p;
    clopt_variable *v;
    TU_OK(ctx, clopt_optimizer_variable(o, i, &n, &p, &v));
    cr_assert_str_eq(n, name, "entry %zu", i);
    cr_assert_str_eq(p, path, "entry %zu", i);
    cr_assert_eq(v, var, "entry %zu: another variable", i);
}

static void check_filled(clopt_variable *v, double x) {
    double *got = tu_read_f64(v);
    for (int64_t i = 0; i < clopt_variable_size(v); i++)
        cr_assert_eq(got[i], x, "'%s'[%lld] = %g, want %g", clopt_variable_name(v), (long long)i,
                     got[i], x);
    free(got);
}

/* Keras's add_variable: path "<optimizer name>/<name>", the initial value, appended to the
 * variable list in creation order (before build: before the slots build makes). */
Test(weights, add_variable) {
    const int64_t shape[2] = {2, 2};
    const double three = 3.0;
    model m;
    model_init(&m, ctx, "dense");
    clopt_optimizer *o = tu_optimizer(
        ctx, "{\"class_name\": \"SGD\", \"config\": {\"momentum\": 0.5, \"name\": \"opt\"}}");
    clopt_variable *before = NULL, *after = NULL;
    TU_OK(ctx, clopt_optimizer_add_variable(o, "early", CLOPT_FLOAT32, 2, shape, three, &before));
    cr_assert_not_null(before);
    cr_assert_str_eq(clopt_variable_name(before), "early");
    cr_assert_eq(clopt_variable_ndim(before), 2);
    cr_assert_eq(clopt_variable_dtype(before), CLOPT_FLOAT32);
    check_filled(before, 3.0);
    cr_assert_eq(clopt_optimizer_variable_count(o), 3);
    check_entry(o, 2, "early", "opt/early", before);
    TU_OK(ctx, clopt_optimizer_build(o, m.v, 2));
    TU_OK(ctx, clopt_optimizer_add_variable(o, "late", CLOPT_FLOAT64, 0, NULL, -0.5, &after));
    TU_OK(ctx, clopt_optimizer_add_variable(o, "zeros", CLOPT_FLOAT16, 1, shape, 0.0, NULL));
    cr_assert_eq(clopt_optimizer_variable_count(o), 7);
    check_entry(o, 2, "early", "opt/early", before);
    check_entry(o, 3, "dense_kernel_momentum", "opt/dense_kernel_momentum",
                tu_slot(o, "dense_kernel_momentum"));
    check_entry(o, 5, "late", "opt/late", after);
    cr_assert_eq(os_scalar(o, 5), -0.5);
    clopt_variable *z;
    TU_OK(ctx, clopt_optimizer_variable(o, 6, NULL, NULL, &z));
    cr_assert_eq(clopt_variable_dtype(z), CLOPT_FLOAT16);
    cr_assert_eq(clopt_variable_size(z), 2);
    double zz[2] = {1, 1};
    TU_OK(ctx, clopt_optimizer_variable_read(o, 6, zz, 2));
    cr_assert(zz[0] == 0 && zz[1] == 0);
    /* They are optimizer variables: readable, writable, in set_weights, and steps leave them
     * alone. */
    const double v4[4] = {1, 2, 3, 4};
    TU_OK(ctx, clopt_optimizer_variable_write(o, 2, v4, 4));
    model_steps(&m, o, 2);
    double r[4];
    TU_OK(ctx, clopt_optimizer_variable_read(o, 2, r, 4));
    cr_assert(memcmp(r, v4, sizeof r) == 0);
    /* The optimizer owns them: destroying one through the variable API does nothing, and they
     * cannot be trained as model variables. */
    clopt_variable_destroy(before);
    check_filled(after, -0.5);
    clopt_optimizer *other = tu_optimizer(ctx, "{\"class_name\": \"SGD\"}");
    TU_ASSERT_STATUS(ctx, clopt_optimizer_build(other, &after, 1), CLOPT_ERR_INVALID_ARGUMENT);
    tu_assert_error_mentions(ctx, "late");
    /* Refusals add nothing. */
    const size_t count = clopt_optimizer_variable_count(o);
    clopt_variable *sentinel = (clopt_variable *)(uintptr_t)0x5eed, *out = sentinel;
    TU_ASSERT_STATUS(ctx, clopt_optimizer_add_variable(o, NULL, CLOPT_FLOAT32, 0, NULL, 0, &out),
                     CLOPT_ERR_INVALID_ARGUMENT);
    TU_ASSERT_STATUS(ctx, clopt_optimizer_add_variable(o, "", CLOPT_FLOAT32, 0, NULL, 0, &out),
                     CLOPT_ERR_INVALID_ARGUMENT);
    TU_ASSERT_STATUS(ctx, clopt_optimizer_add_variable(o, "x", CLOPT_FLOAT32, 0, NULL, NAN, &out),
                     CLOPT_ERR_BAD_VALUE);
    tu_assert_error_mentions(ctx, "'x'");
    TU_ASSERT_STATUS(ctx,
                     clopt_optimizer_add_variable(o, "x", CLOPT_FLOAT32, 0, NULL, INFINITY, &out),
                     CLOPT_ERR_BAD_VALUE);
    const int64_t zero = 0;
    TU_ASSERT_STATUS(ctx, clopt_optimizer_add_variable(o, "x", CLOPT_FLOAT32, 1, &zero, 0, &out),
                     CLOPT_ERR_INVALID_ARGUMENT);
    TU_ASSERT_STATUS(ctx, clopt_optimizer_add_variable(o, "x", CLOPT_FLOAT32, -1, NULL, 0, &out),
                     CLOPT_ERR_INVALID_ARGUMENT);
    TU_ASSERT_STATUS(ctx, clopt_optimizer_add_variable(o, "x", (clopt_dtype)7, 0, NULL, 0, &out),
                     CLOPT_ERR_INVALID_ARGUMENT);
    TU_ASSERT_STATUS(ctx,
                     clopt_optimizer_add_variable(NULL, "x", CLOPT_FLOAT32, 0, NULL, 0, &out),
                     CLOPT_ERR_INVALID_ARGUMENT);
    /* names already taken: Keras paths must be unique (a checkpoint names tensors by them) */
    const char *taken[] = {"early", "zeros", "iteration"};
    for (size_t i = 0; i < sizeof taken / sizeof *taken; i++) {
        TU_ASSERT_STATUS(ctx,
                         clopt_optimizer_add_variable(o, taken[i], CLOPT_FLOAT32, 0, NULL, 0, &out),
                         CLOPT_ERR_INVALID_ARGUMENT);
        tu_assert_error_mentions(ctx, taken[i]);
        tu_assert_error_mentions(ctx, "unique");
    }
    cr_assert_eq(out, sentinel, "out written on failure");
    cr_assert_eq(clopt_optimizer_variable_count(o), count);
}

/* Keras's add_variable_from_reference: "<reference name with '/' and ':' as '_'>_<name>", name
 * defaulting to "var"; the reference's shape and dtype; path "<optimizer name>/<that name>". */
Test(weights, add_variable_from_reference) {
    const int64_t shape[2] = {3, 2};
    clopt_variable *ref = tu_var(ctx, "dense/kernel:0", CLOPT_FLOAT64, 2, shape, NULL);
    clopt_optimizer *o = tu_optimizer(ctx, "{\"class_name\": \"Adam\"}");
    clopt_variable *a = NULL, *b = NULL, *c = NULL;
    TU_OK(ctx, clopt_optimizer_build(o, &ref, 1));
    const size_t n0 = clopt_optimizer_variable_count(o);
    TU_OK(ctx, clopt_optimizer_add_variable_from_reference(o, ref, "m", 0.25, &a));
    TU_OK(ctx, clopt_optimizer_add_variable_from_reference(o, ref, NULL, 0.0, &b));
    /* "" also means "var": a second dense_kernel_0_var would share its Keras path, refused */
    TU_ASSERT_STATUS(ctx, clopt_optimizer_add_variable_from_reference(o, ref, "", 1.0, &c),
                     CLOPT_ERR_INVALID_ARGUMENT);
    tu_assert_error_mentions(ctx, "adam/dense_kernel_0_var");
    cr_assert_null(c);
    TU_OK(ctx, clopt_optimizer_add_variable_from_reference(o, ref, "c", 1.0, &c));
    cr_assert_eq(clopt_optimizer_variable_count(o), n0 + 3);
    check_entry(o, n0, "dense_kernel_0_m", "adam/dense_kernel_0_m", a);
    check_entry(o, n0 + 1, "dense_kernel_0_var", "adam/dense_kernel_0_var", b);
    check_entry(o, n0 + 2, "dense_kernel_0_c", "adam/dense_kernel_0_c", c);
    cr_assert_str_eq(clopt_variable_name(a), "dense_kernel_0_m");
    cr_assert_eq(clopt_variable_dtype(a), CLOPT_FLOAT64);
    cr_assert_eq(clopt_variable_ndim(a), 2);
    cr_assert_eq(clopt_variable_shape(a)[0], 3);
    cr_assert_eq(clopt_variable_shape(a)[1], 2);
    check_filled(a, 0.25);
    check_filled(b, 0.0);
    check_filled(c, 1.0);
    /* A float16 reference gives a float16 variable, filled with the rounded value. */
    clopt_variable *h = tu_var(ctx, "half", CLOPT_FLOAT16, 1, shape, NULL), *hv = NULL;
    TU_OK(ctx, clopt_optimizer_add_variable_from_reference(o, h, "s", 0.1, &hv));
    cr_assert_eq(clopt_variable_dtype(hv), CLOPT_FLOAT16);
    uint16_t bits[3];
    TU_OK(ctx, clopt_variable_read(hv, bits, sizeof bits));
    for (int i = 0; i < 3; i++) cr_assert_eq(bits[i], 0x2e66, "0.1 in float16: 0x%04x", bits[i]);
    /* The reference may go first: the new variable does not depend on it. */
    clopt_variable_destroy(h);
    TU_OK(ctx, clopt_variable_read(hv, bits, sizeof bits));
    /* Refusals. */
    clopt_context *other = tu_context(TU_HOST);
    clopt_variable *foreign = tu_var(other, "foreign", CLOPT_FLOAT32, 0, NULL, NULL);
    const size_t count = clopt_optimizer_variable_count(o);
    clopt_variable *sentinel = (clopt_variable *)(uintptr_t)0x5eed, *out = sentinel;
    TU_ASSERT_STATUS(ctx, clopt_optimizer_add_variable_from_reference(o, NULL, "m", 0, &out),
                     CLOPT_ERR_INVALID_ARGUMENT);
    TU_ASSERT_STATUS(ctx, clopt_optimizer_add_variable_from_reference(o, foreign, "m", 0, &out),
                     CLOPT_ERR_INVALID_ARGUMENT);
    TU_ASSERT_STATUS(ctx, clopt_optimizer_add_variable_from_reference(o, ref, "m", NAN, &out),
                     CLOPT_ERR_BAD_VALUE);
    TU_ASSERT_STATUS(ctx, clopt_optimizer_add_variable_from_reference(NULL, ref, "m", 0, &out),
                     CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(out, sentinel);
    cr_assert_eq(clopt_optimizer_variable_count(o), count);
    clopt_context_destroy(other);
}

/* A LossScaleOptimizer's added variables are its own (Keras tracks them in the LSO's _variables,
 * which come before the inner optimizer's): path "<LSO name>/<name>", right after
 * dynamic_scale. */
Test(weights, add_variable_on_loss_scale_optimizer) {
    model m;
    model_init(&m, ctx, "dense");
    clopt_optimizer *l = model_optimizer(&m, LSO_ADAM, 0);
    const size_t n0 = clopt_optimizer_variable_count(l);
    clopt_variable *x = NULL, *y = NULL;
    TU_OK(ctx, clopt_optimizer_add_variable(l, "x", CLOPT_FLOAT32, 0, NULL, 2.0, &x));
    TU_OK(ctx, clopt_optimizer_add_variable_from_reference(l, m.v[1], "y", 0.5, &y));
    cr_assert_eq(clopt_optimizer_variable_count(l), n0 + 2);
    check_entry(l, 4, "x", "loss_scale_optimizer/x", x);
    check_entry(l, 5, "dense_bias_y", "loss_scale_optimizer/dense_bias_y", y);
    check_entry(l, 6, "iteration", "adam/iteration", NULL);
    cr_assert_eq(os_scalar(l, 4), 2.0);
    /* The list still works as a whole: set_weights round trip, steps. */
    os_state s;
    os_read(&s, l);
    TU_OK(ctx, clopt_optimizer_set_weights(l, (const double *const *)s.vals, s.counts, s.n));
    model_steps(&m, l, 2);
    cr_assert_eq(clopt_optimizer_iterations(l), 2);
    cr_assert_eq(os_scalar(l, 6), 2.0);
    os_free(&s);
}

/* Freed with the optimizer, whether the optimizer or the context goes first (ASan checks the
 * leaks and double frees), on both backends. */
static void added_variables_freed(const char *dev) {
    clopt_context *c = tu_context(dev);
    const int64_t shape[1] = {300}; /* more than one chunk */
    clopt_variable *ref = tu_var(c, "ref", CLOPT_FLOAT32, 1, shape, NULL);
    for (int round = 0; round < 3; round++) {
        clopt_optimizer *o = tu_optimizer(c, "{\"class_name\": \"SGD\"}");
        clopt_variable *a, *b;
        TU_OK(c, clopt_optimizer_add_variable(o, "a", CLOPT_FLOAT64, 1, shape, 1.5, &a));
        TU_OK(c, clopt_optimizer_build(o, &ref, 1));
        TU_OK(c, clopt_optimizer_add_variable_from_reference(o, ref, "b", -2.0, &b));
        check_filled(a, 1.5);
        check_filled(b, -2.0);
        clopt_optimizer_destroy(o);
    }
    /* Memory given back is reused: a new variable in the same place starts at zero. */
    clopt_variable *fresh = tu_var(c, "fresh", CLOPT_FLOAT32, 1, shape, NULL);
    check_filled(fresh, 0.0);
    /* Left to the context: an optimizer with added variables, and an LSO with its own. */
    clopt_optimizer *o = tu_optimizer(c, "{\"class_name\": \"Adam\"}");
    TU_OK(c, clopt_optimizer_add_variable(o, "kept", CLOPT_FLOAT32, 1, shape, 1.0, NULL));
    clopt_optimizer *l = tu_optimizer(
        c, "{\"class_name\": \"LossScaleOptimizer\", \"config\": {\"inner_optimizer\": "
           "{\"class_name\": \"SGD\"}}}");
    TU_OK(c, clopt_optimizer_build(l, &ref, 1));
    TU_OK(c, clopt_optimizer_add_variable_from_reference(l, ref, "kept", 1.0, NULL));
    clopt_context_destroy(c);
}
Test(weights_host, added_variables_freed_with_optimizer) { added_variables_freed(TU_HOST); }
Test(weights_pocl, added_variables_freed_with_optimizer) { added_variables_freed(TU_POCL); }

/* ---- assign helpers ---- */

/* Keras's optimizer.assign / assign_add / assign_sub, on a slot and on a model variable. */
static void assign_helpers(const char *dev) {
    clopt_context *c = tu_context(dev);
    const int64_t n = 3;
    const double a0[3] = {1, -2, 0.5}, b0[3] = {0.25, 4, -0.5};
    clopt_variable *w = tu_var_from_f64(c, "w", CLOPT_FLOAT32, 1, &n, a0);
    clopt_variable *val = tu_var_from_f64(c, "val", CLOPT_FLOAT32, 1, &n, b0);
    clopt_optimizer *o =
        tu_optimizer(c, "{\"class_name\": \"SGD\", \"config\": {\"momentum\": 0.9}}");
    TU_OK(c, clopt_optimizer_build(o, &w, 1));
    clopt_variable *m = tu_slot(o, "w_momentum");
    TU_OK(c, clopt_optimizer_assign(o, m, val));
    tu_assert_var_close(m, b0, 0, 0, "assign on a slot");
    TU_OK(c, clopt_optimizer_assign_add(o, m, w));
    double want[3];
    for (int i = 0; i < 3; i++) want[i] = b0[i] + a0[i];
    tu_assert_var_close(m, want, 0, 0, "assign_add on a slot");
    TU_OK(c, clopt_optimizer_assign_sub(o, w, val));
    for (int i = 0; i < 3; i++) want[i] = a0[i] - b0[i];
    tu_assert_var_close(w, want, 0, 0, "assign_sub on a model variable");
    TU_OK(c, clopt_optimizer_assign(o, w, m));
    for (int i = 0; i < 3; i++) want[i] = b0[i] + a0[i];
    tu_assert_var_close(w, want, 0, 0, "assign from a slot");
    /* Refusals change nothing. */
    const int64_t n4 = 4;
    clopt_variable *shape4 = tu_var(c, "four", CLOPT_FLOAT32, 1, &n4, NULL);
    clopt_variable *f64 = tu_var(c, "f64", CLOPT_FLOAT64, 1, &n, NULL);
    clopt_context *c2 = tu_context(TU_HOST);
    clopt_variable *foreign = tu_var(c2, "foreign", CLOPT_FLOAT32, 1, &n, NULL);
    tu_snapshot before;
    clopt_variable *all[2] = {w, m};
    tu_snapshot_take(&before, NULL, all, 2);
    clopt_status (*const fns[3])(clopt_optimizer *, clopt_variable *, const clopt_variable *) = {
        clopt_optimizer_assign, clopt_optimizer_assign_add, clopt_optimizer_assign_sub};
    for (int k = 0; k < 3; k++) {
        TU_ASSERT_STATUS(c, fns[k](o, m, shape4), CLOPT_ERR_SHAPE_MISMATCH);
        tu_assert_error_mentions(c, "four");
        TU_ASSERT_STATUS(c, fns[k](o, w, f64), CLOPT_ERR_DTYPE_MISMATCH);
        tu_assert_error_mentions(c, "f64");
        TU_ASSERT_STATUS(c, fns[k](o, w, foreign), CLOPT_ERR_CONTEXT_MISMATCH);
        TU_ASSERT_STATUS(c, fns[k](o, NULL, val), CLOPT_ERR_INVALID_ARGUMENT);
        TU_ASSERT_STATUS(c, fns[k](o, w, NULL), CLOPT_ERR_INVALID_ARGUMENT);
        TU_ASSERT_STATUS(c, fns[k](NULL, w, val), CLOPT_ERR_INVALID_ARGUMENT);
    }
    tu_snapshot_assert_same(&before, NULL, "after refused assigns");
    tu_snapshot_free(&before);
    clopt_context_destroy(c2);
    clopt_context_destroy(c);
}
Test(weights_host, assign_helpers) { assign_helpers(TU_HOST); }
Test(weights_pocl, assign_helpers) { assign_helpers(TU_POCL); }
