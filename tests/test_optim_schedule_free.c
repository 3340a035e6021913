/* ScheduleFreeAdamW: Keras's published checks, z initialised to a copy of the variable at build,
 * the update against an independent double reference (warmup, weight decay, missing gradients),
 * the tf.keras choice of x_old from the updated z (semantics doc section 6, quirk 1) against the
 * published algorithm, host versus OpenCL over every apply-pipeline option, Keras's variable list,
 * config and bad hyperparameters.
 *
 * Keras's checks: keras-team/keras keras/src/optimizers/schedule_free_adamw_test.py (Keras 3):
 * test_single_step (the variable moved), test_weight_decay (an excluded variable stays at 2.0),
 * test_warmup (a smaller first step with warmup) and test_multiple_steps (ten steps of a
 * positive gradient lower every element). That file publishes no trajectory; the exact values
 * here come from the doc's formulas (the reference below). */
#include "optim_more.h"
#include "optim_varlist.h"
#include "optim_half.h"

#define CLS "ScheduleFreeAdamW"

/* ---- Keras's tests ---- */

/* test_single_step: learning rate 0.5, variable [1, 2, 3, 4], gradient [1, 6, 7, 2]. Keras only
 * asserts that the variable moved; at t = 1 the new variable is z = w - lr*g/(|g| + eps), so
 * about w - 0.5. */
static void keras_single_step(const char *dev, clopt_dtype dtype) {
    static const double want[4] = {0.5, 1.5, 2.5, 3.5};
    clopt_context *ctx = tu_context(dev);
    const int64_t n = 4;
    const double w0[4] = {1, 2, 3, 4}, g0[4] = {1, 6, 7, 2};
    clopt_variable *w = tu_var_from_f64(ctx, "vars", dtype, 1, &n, w0);
    clopt_variable *g = tu_var_from_f64(ctx, "grads", dtype, 1, &n, g0);
    clopt_optimizer *o = tu_optimizer(
        ctx, "{\"class_name\": \"ScheduleFreeAdamW\", \"config\": {\"learning_rate\": 0.5}}");
    TU_OK(ctx, clopt_optimizer_apply(o, &g, &w, 1));
    double *got = tu_read_f64(w);
    int moved = 0;
    for (int i = 0; i < 4; i++) moved |= fabs(got[i] - w0[i]) > 1e-4 + 1e-4 * fabs(w0[i]);
    cr_assert(moved, "the variable did not move");
    tu_assert_close(got, want, 4, 1e-6, 1e-6, "single step");
    free(got);
    clopt_context_destroy(ctx);
}
Test(schedule_free_host, keras_single_step) {
    keras_single_step(TU_HOST, CLOPT_FLOAT32);
    keras_single_step(TU_HOST, CLOPT_FLOAT64);
}
Test(schedule_free_pocl, keras_single_step) {
    keras_single_step(TU_POCL, CLOPT_FLOAT32);
    keras_single_step(TU_POCL, CLOPT_FLOAT64);
}

/* test_weight_decay: zero gradients, learning rate 1, weight_decay 0.004; "exclude" is excluded
 * by name and stays at 2.0 (decimal=6). Keras asserts nothing about var1: at t = 1 the new
 * variable is z, which is the undecayed copy made at build (2.0) when the gradient is 0. */
static void keras_weight_decay(const char *dev) {
    clopt_context *ctx = tu_context(dev);
    const float two = 2.0f, zero = 0.0f;
    clopt_variable *var1 = tu_var(ctx, "variable", CLOPT_FLOAT32, 0, NULL, &two);
    clopt_variable *var2 = tu_var(ctx, "exclude", CLOPT_FLOAT32, 0, NULL, &two);
    clopt_variable *g[2] = {tu_var(ctx, "g0", CLOPT_FLOAT32, 0, NULL, &zero),
                            tu_var(ctx, "g1", CLOPT_FLOAT32, 0, NULL, &zero)};
    const char *json = om_json(CLS, "\"learning_rate\": 1.0", "\"weight_decay\": 0.004", NULL);
    clopt_optimizer *o1 = tu_optimizer(ctx, json), *o2 = tu_optimizer(ctx, json);
    TU_OK(ctx, clopt_optimizer_apply(o1, g, &var1, 1));
    const char *names[] = {"exclude"};
    TU_OK(ctx, clopt_optimizer_exclude_from_weight_decay(o2, NULL, 0, names, 1));
    clopt_variable *v12[2] = {var1, var2};
    TU_OK(ctx, clopt_optimizer_apply(o2, g, v12, 2));
    const double want = 2.0;
    tu_assert_var_close(var2, &want, 0, 1.5e-6, "var2");
    tu_assert_var_close(var1, &want, 0, 1.5e-6, "var1");
    clopt_context_destroy(ctx);
}
Test(schedule_free_host, keras_weight_decay) { keras_weight_decay(TU_HOST); }
Test(schedule_free_pocl, keras_weight_decay) { keras_weight_decay(TU_POCL); }

/* test_warmup: with warmup_steps 10 the first step is smaller (lr * 1/10) for every element;
 * test_multiple_steps: ten steps of gradient 0.1 at learning rate 0.01 lower every element. */
static void keras_warmup_and_multiple_steps(const char *dev) {
    clopt_context *ctx = tu_context(dev);
    const int64_t n = 3;
    const float w0[3] = {1, 2, 3}, ones[3] = {1, 1, 1}, tenth[3] = {0.1f, 0.1f, 0.1f};
    clopt_variable *var1 = tu_var(ctx, "var1", CLOPT_FLOAT32, 1, &n, w0);
    clopt_variable *var2 = tu_var(ctx, "var2", CLOPT_FLOAT32, 1, &n, w0);
    clopt_variable *g = tu_var(ctx, "g", CLOPT_FLOAT32, 1, &n, ones);
    clopt_optimizer *plain = tu_optimizer(
        ctx, om_json(CLS, "\"learning_rate\": 0.5", "\"warmup_steps\": 0", NULL));
    clopt_optimizer *warm = tu_optimizer(
        ctx, om_json(CLS, "\"learning_rate\": 0.5", "\"warmup_steps\": 10", NULL));
    TU_OK(ctx, clopt_optimizer_apply(plain, &g, &var1, 1));
    TU_OK(ctx, clopt_optimizer_apply(warm, &g, &var2, 1));
    double *a = tu_read_f64(var1), *b = tu_read_f64(var2);
    for (int i = 0; i < 3; i++) {
        cr_assert(fabs(b[i] - w0[i]) < fabs(a[i] - w0[i]), "element %d: warmup %g, none %g", i,
                  b[i], a[i]);
        /* At t = 1: w - lr*g/(|g| + eps), lr 0.5 or 0.05. */
        cr_assert(fabs(a[i] - (w0[i] - 0.5)) < 1e-6 && fabs(b[i] - (w0[i] - 0.05)) < 1e-6);
    }
    free(a);
    free(b);
    clopt_variable *x = tu_var(ctx, "x", CLOPT_FLOAT32, 1, &n, w0);
    clopt_variable *gx = tu_var(ctx, "gx", CLOPT_FLOAT32, 1, &n, tenth);
    clopt_optimizer *o = tu_optimizer(ctx, om_json(CLS, "\"learning_rate\": 0.01", NULL, NULL));
    for (int i = 0; i < 10; i++) TU_OK(ctx, clopt_optimizer_apply(o, &gx, &x, 1));
    double *f = tu_read_f64(x);
    for (int i = 0; i < 3; i++) cr_assert(f[i] < w0[i], "element %d did not decrease", i);
    free(f);
    clopt_context_destroy(ctx);
}
Test(schedule_free_host, keras_warmup_and_multiple_steps) {
    keras_warmup_and_multiple_steps(TU_HOST);
}
Test(schedule_free_pocl, keras_warmup_and_multiple_steps) {
    keras_warmup_and_multiple_steps(TU_POCL);
}

/* ---- z is a copy of the variable at build ---- */

/* Built explicitly (float32 and float64 variables: two slot blocks) and implicitly by the first
 * apply: every "momentum" slot equals its variable, every "velocity" slot is 0. */
static void z_starts_as_copy(const char *dev) {
    clopt_context *ctx = tu_context(dev);
    const int64_t s0 = 300, s1[2] = {17, 33};
    double a[300], b[561];
    uint64_t rng = 11;
    tu_rand_fill(&rng, a, 300, -3, 3);
    tu_rand_fill(&rng, b, 561, -3, 3);
    clopt_variable *vars[2] = {tu_var_from_f64(ctx, "a", CLOPT_FLOAT32, 1, &s0, a),
                               tu_var_from_f64(ctx, "b", CLOPT_FLOAT64, 2, s1, b)};
    clopt_optimizer *o = tu_optimizer(ctx, om_json(CLS, NULL, NULL, NULL));
    TU_OK(ctx, clopt_optimizer_build(o, vars, 2));
    double zeros[561] = {0};
    for (int k = 0; k < 2; k++) {
        double *w = tu_read_f64(vars[k]);
        char name[32];
        snprintf(name, sizeof name, "%s_momentum", k ? "b" : "a");
        tu_assert_var_close(tu_slot(o, name), w, 0, 0, name);
        snprintf(name, sizeof name, "%s_velocity", k ? "b" : "a");
        tu_assert_var_close(tu_slot(o, name), zeros, 0, 0, name);
        free(w);
    }
    /* Built by apply: z is the variable as it was before the step, then the step moves it. */
    clopt_variable *c = tu_var_from_f64(ctx, "c", CLOPT_FLOAT64, 1, &s0, a);
    clopt_variable *gc = tu_var(ctx, "gc", CLOPT_FLOAT64, 1, &s0, NULL); /* zero gradient */
    clopt_optimizer *o2 = tu_optimizer(ctx, om_json(CLS, NULL, NULL, NULL));
    TU_OK(ctx, clopt_optimizer_apply(o2, &gc, &c, 1));
    tu_assert_var_close(tu_slot(o2, "c_momentum"), a, 0, 0, "c_momentum after a zero step");
    tu_assert_var_close(c, a, 1e-15, 0, "c after a zero step (y_new = 0.1 z + 0.9 z)");
    clopt_context_destroy(ctx);
}
Test(schedule_free_host, z_starts_as_copy_of_variable) { z_starts_as_copy(TU_HOST); }
Test(schedule_free_pocl, z_starts_as_copy_of_variable) { z_starts_as_copy(TU_POCL); }

/* ---- the update rule (semantics doc section 3), ported independently ---- */

typedef struct sf_cfg {
    double lr, b1, b2, eps;
    int warmup;
    double wd;
} sf_cfg;

/* One element's step. old_z: the published algorithm (x_old from the z before this step), else
 * tf.keras (from the updated z). */
static void sf_step(const sf_cfg *c, double lr, int64_t t, double g, double *w, double *z,
                    double *v, int old_z) {
    const double td = (double)t;
    double lr_t = lr;
    if (c->warmup > 0) lr_t *= fmin(td / c->warmup, 1.0);
    const double y = *w - *w * c->wd * lr; /* the base decoupled decay, at the raw lr */
    const double z_old = *z;
    *v = *v + (g * g - *v) * (1 - c->b2);
    const double den = sqrt(*v / (1 - pow(c->b2, td))) + c->eps;
    *z = *z - lr_t * g / den;
    const double x_old = (y - (1 - c->b1) * (old_z ? z_old : *z)) / c->b1;
    const double x_new = (1 - 1 / td) * x_old + (1 / td) * *z;
    *w = (1 - c->b1) * *z + c->b1 * x_new;
}

#define NV 5
static const int64_t ref_sizes[NV] = {1, 300, 4096, 17 * 33, 6};
static const char *const ref_names[NV] = {"v1", "v300", "v4096", "m17x33", "nograd"};

/* Eight float64 steps over NV variables (the last without a gradient at some steps), every
 * variable and slot checked after each. */
static void reference(const char *dev, const sf_cfg *cfg) {
    clopt_context *ctx = tu_context(dev);
    char json[512];
    snprintf(json, sizeof json,
             "{\"class_name\": \"ScheduleFreeAdamW\", \"config\": {\"learning_rate\": %.17g, "
             "\"beta_1\": %.17g, \"beta_2\": %.17g, \"epsilon\": %.17g, \"warmup_steps\": %d%s}}",
             cfg->lr, cfg->b1, cfg->b2, cfg->eps, cfg->warmup,
             cfg->wd != 0 ? ", \"weight_decay\": 0.1" : "");
    cr_assert(cfg->wd == 0 || cfg->wd == 0.1);
    const double lr = (double)(float)cfg->lr; /* Keras keeps it in a float32 variable */
    uint64_t rng = 21;
    double *w[NV], *z[NV], *v[NV], *g[NV];
    clopt_variable *vars[NV], *grads[NV];
    for (int k = 0; k < NV; k++) {
        const size_t n = (size_t)ref_sizes[k];
        w[k] = malloc(n * sizeof(double));
        z[k] = malloc(n * sizeof(double));
        v[k] = calloc(n, sizeof(double));
        g[k] = malloc(n * sizeof(double));
        cr_assert(w[k] && z[k] && v[k] && g[k]);
        tu_rand_fill(&rng, w[k], n, -1, 1);
        memcpy(z[k], w[k], n * sizeof(double));
    }
    om_ref_vars_f64(ctx, NV, ref_sizes, ref_names, 3, w, vars, grads);
    clopt_optimizer *o = tu_optimizer(ctx, json);
    for (int t = 1; t <= 8; t++) {
        clopt_variable *pass[NV];
        om_ref_random_grads(&rng, NV, ref_sizes, g, grads, pass);
        if (t == 1 || t % 3 == 0) pass[NV - 1] = NULL;
        for (int k = 0; k < NV; k++) {
            if (!pass[k]) continue;
            for (int64_t i = 0; i < ref_sizes[k]; i++)
                sf_step(cfg, lr, t, g[k][i], &w[k][i], &z[k][i], &v[k][i], 0);
        }
        TU_OK(ctx, clopt_optimizer_apply(o, pass, vars, NV));
        om_ref_check_momentum_velocity(dev, t, o, NV, ref_names, vars, w, z, v);
    }
    for (int k = 0; k < NV; k++) free(w[k]), free(z[k]), free(v[k]), free(g[k]);
    clopt_context_destroy(ctx);
}

static const sf_cfg plain = {0.05, 0.9, 0.999, 1e-8, 0, 0};
static const sf_cfg other = {0.2, 0.7, 0.95, 1e-6, 3, 0.1}; /* warmup over 3 steps, decay */

Test(schedule_free_host, reference) { reference(TU_HOST, &plain); }
Test(schedule_free_pocl, reference) { reference(TU_POCL, &plain); }
Test(schedule_free_host, reference_warmup_weight_decay) { reference(TU_HOST, &other); }
Test(schedule_free_pocl, reference_warmup_weight_decay) { reference(TU_POCL, &other); }

/* The choice of quirk 1: tf.keras recovers x_old from the updated z. Step 1 is the same either
 * way (the new variable is z); from step 2 clopt follows tf.keras, not the published algorithm
 * (JAX and numpy Keras). */
static void tf_parity(const char *dev) {
    clopt_context *ctx = tu_context(dev);
    const int64_t n = 8;
    double w0[8], g1[8], g2[8];
    uint64_t rng = 8;
    tu_rand_fill(&rng, w0, 8, -1, 1);
    tu_rand_fill(&rng, g1, 8, -1, 1);
    tu_rand_fill(&rng, g2, 8, -1, 1);
    clopt_variable *w = tu_var(ctx, "w", CLOPT_FLOAT64, 1, &n, w0);
    clopt_variable *g = tu_var(ctx, "g", CLOPT_FLOAT64, 1, &n, g1);
    const sf_cfg c = {0.5, 0.9, 0.999, 1e-8, 0, 0};
    clopt_optimizer *o = tu_optimizer(ctx, om_json(CLS, "\"learning_rate\": 0.5", NULL, NULL));
    double tf[8], pub[8], tz[8], pz[8], tv[8] = {0}, pv[8] = {0};
    memcpy(tf, w0, sizeof tf);
    memcpy(pub, w0, sizeof pub);
    memcpy(tz, w0, sizeof tz);
    memcpy(pz, w0, sizeof pz);
    for (int t = 1; t <= 2; t++) {
        const double *gt = t == 1 ? g1 : g2;
        tu_write_f64(g, gt);
        for (int i = 0; i < 8; i++) {
            sf_step(&c, 0.5, t, gt[i], &tf[i], &tz[i], &tv[i], 0);
            sf_step(&c, 0.5, t, gt[i], &pub[i], &pz[i], &pv[i], 1);
        }
        TU_OK(ctx, clopt_optimizer_apply(o, &g, &w, 1));
        double *got = tu_read_f64(w);
        tu_assert_close(got, tf, 8, 1e-12, 1e-14,
                        t == 1 ? "step 1 (tf.keras)" : "step 2 (tf.keras)");
        double far = 0;
        for (int i = 0; i < 8; i++) far = fmax(far, fabs(got[i] - pub[i]));
        if (t == 1) cr_assert(far < 1e-12, "step 1 differs from the published algorithm: %g", far);
        else cr_assert(far > 1e-3, "step 2 matches the published algorithm (diff %g)", far);
        free(got);
    }
    clopt_context_destroy(ctx);
}
Test(schedule_free_host, x_old_from_updated_z_as_tf_keras) { tf_parity(TU_HOST); }
Test(schedule_free_pocl, x_old_from_updated_z_as_tf_keras) { tf_parity(TU_POCL); }

/* ---- host versus OpenCL, every pipeline option ---- */

Test(schedule_free_pocl, agrees_with_host_float32) {
    om_agree_dtype(TU_POCL, CLOPT_FLOAT32, CLS, "\"learning_rate\": 0.01");
}
Test(schedule_free_pocl, agrees_with_host_float64) {
    om_agree_dtype(TU_POCL, CLOPT_FLOAT64, CLS, "\"learning_rate\": 0.01");
}
Test(schedule_free_pocl, agrees_with_host_warmup) {
    om_agree_dtype(TU_POCL, CLOPT_FLOAT32, CLS,
                   "\"learning_rate\": 0.05, \"beta_1\": 0.5, \"beta_2\": 0.9, \"epsilon\": "
                   "1e-06, \"warmup_steps\": 4");
}

/* float16 and bfloat16 storage (float arithmetic on OpenCL). */
#define HALF_JSON \
    "{\"class_name\": \"ScheduleFreeAdamW\", " \
    "\"config\": {\"learning_rate\": 0.05, \"warmup_steps\": 2}}"
Test(schedule_free_pocl, agrees_with_host_half_formats) {
    oh_agree(TU_POCL, HALF_JSON, CLOPT_FLOAT16);
    oh_agree(TU_POCL, HALF_JSON, CLOPT_BFLOAT16);
}

/* ---- variable list, config, hyperparameters ---- */

/* Keras 3.16, keras/src/optimizers/schedule_free_adamw.py, ScheduleFreeAdamW.build:
 * add_optimizer_variables(var_list, ["momentum", "velocity"]), interleaved per variable, momentum
 * (z) then assigned a copy of its variable; named by base_optimizer.py's
 * add_variable_from_reference "<path, '/' -> '_'>_<name>". */
Test(schedule_free_host, variable_list_in_keras_order) {
    static const ovl_entry plain_list[] = {
        {"iteration", 0},           {"learning_rate", 0},       {"dense_kernel_momentum", 6},
        {"dense_kernel_velocity", 6}, {"dense_bias_momentum", 2}, {"dense_bias_velocity", 2},
        {NULL, 0}};
    ovl_check("{\"class_name\": \"ScheduleFreeAdamW\", \"config\": {}}", plain_list);
    ovl_check_with_ema_and_accumulation("ScheduleFreeAdamW", NULL, plain_list + 2, 2);
}

Test(schedule_free_host, config_keys_in_keras_order) {
    static const char *const keys[] = {"beta_1", "beta_2", "epsilon", "warmup_steps", NULL};
    om_config_keys(CLS, "schedule_free_adamw", keys);
    clopt_context *ctx = tu_context(TU_HOST);
    /* Keras's optimizers.get matches lower-cased class names ("schedulefreeadamw"). */
    clopt_optimizer *o =
        tu_optimizer(ctx, "{\"class_name\": \"schedulefreeadamw\", \"config\": {}}");
    cr_assert_str_eq(clopt_optimizer_class_name(o), CLS);
    double lr;
    TU_OK(ctx, clopt_optimizer_get_learning_rate(o, &lr));
    cr_assert_eq(lr, (double)0.0025f);
    char *cfg = NULL;
    TU_OK(ctx, clopt_optimizer_get_config(o, &cfg));
    cr_assert(strstr(cfg, "\"beta_1\": 0.9, \"beta_2\": 0.999, \"epsilon\": 1e-08, "
                          "\"warmup_steps\": 0}"),
              "%s", cfg);
    clopt_free(cfg);
    clopt_context_destroy(ctx);
}

Test(schedule_free_host, bad_values_are_rejected) {
    static const om_bad bad[] = {
        {"\"beta_1\": 0.0", "beta_1"},        {"\"beta_1\": 1.5", "beta_1"},
        {"\"beta_2\": -0.1", "beta_2"},       {"\"beta_2\": 1.01", "beta_2"},
        {"\"epsilon\": -1e-08", "epsilon"},   {"\"warmup_steps\": -1", "warmup_steps"},
    };
    om_bad_values(CLS, bad, sizeof bad / sizeof *bad);
    static const char *const good[] = {"\"beta_1\": 1.0", "\"beta_2\": 0.0", "\"beta_2\": 1.0",
                                       "\"epsilon\": 0.0", "\"warmup_steps\": 1000",
                                       "\"warmup_steps\": 10.0"};
    om_good_values(CLS, good, sizeof good / sizeof *good);
    clopt_context *ctx = tu_context(TU_HOST);
    static const char *const bad_types[] = {"\"warmup_steps\": null", "\"warmup_steps\": 2.5",
                                            "\"warmup_steps\": \"10\""};
    for (size_t i = 0; i < 3; i++) {
        clopt_optimizer *o = NULL;
        const char *json = om_json(CLS, bad_types[i], NULL, NULL);
        TU_ASSERT_STATUS(ctx, clopt_optimizer_from_config(ctx, json, &o), CLOPT_ERR_BAD_TYPE);
        cr_assert(o == NULL);
        tu_assert_error_mentions(ctx, "warmup_steps");
    }
    clopt_context_destroy(ctx);
}
