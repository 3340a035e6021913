/* The apply pipeline (src/optim/stages.c; kernels cl/common.cl GRAD() and WEIGHT(), cl/reduce.cl,
 * cl/pipeline.cl; host twins in src/backend/host/): loss-scale unscaling, gradient
 * accumulation, clipnorm / global_clipnorm / clipvalue, decoupled weight decay with
 * exclude_from_weight_decay, EMA with ema_overwrite_frequency and finalize_variable_values, and
 * iteration counting. The semantics are those of /work/shared/docs/keras-optimizer-semantics.md
 * sections 1.1 and 1.3 to 1.7 ("the doc" below).
 *
 * Every test runs on both backends: suite pipeline_host ("host") and suite pipeline_pocl
 * ("pocl:cpu:0"), one Test() line each, calling the same body.
 *
 *  1. keras_*: Keras's own tests, ported with their inputs and published numbers, from
 *     keras-team/keras keras/src/optimizers/optimizer_test.py, sgd_test.py and adam_test.py (and,
 *     for the divided `iterations` under accumulation, keras/src/backend/tensorflow/
 *     optimizer_distribute_test.py). float32 variables, as Keras's floatx.
 *  2. ref_*: an independent double-precision reference written here from the doc's formulas,
 *     for SGD and Adam, several steps, four variables (a scalar, 300 and 4096 elements, and a
 *     17x33 matrix), in float32 (TU_RTOL_F32 / TU_ATOL_F32; the reference rounds what it stores
 *     to float32, as a float32 variable or slot does) and float64 (TU_RTOL_F64 / TU_ATOL_F64).
 *     After every step it compares the variables, every slot (EMA averages, accumulators,
 *     momentum / velocity), the raw iteration counter and the `iterations` property.
 *  3. failed_*: failing calls with the pipeline on change nothing (snapshots, and a twin
 *     optimizer that never saw the failing calls ends bit-identical).
 *  4. config_*: the doc's constructor errors, with their statuses and messages. */
#include <regex.h>
#include <stdarg.h>
#include "test_util.h"

/* Keras's TestCase.assertAllClose default tolerance (keras/src/testing/test_case.py:
 * atol=1e-6, rtol=1e-6), used by the ported tests that do not pass their own. */
#define KERAS_DEFAULT_TOL 1e-6
/* Keras's TestCase.assertAlmostEqual(x, y, decimal=6) is numpy's assert_almost_equal:
 * |x - y| < 1.5 * 10**-6. */
#define KERAS_DECIMAL6 1.5e-6

/* ---------------------------------------------------------------------------------------------
 * Small helpers */

static clopt_optimizer *make_opt(clopt_context *ctx, const char *cls, const char *cfg) {
    char buf[2048];
    snprintf(buf, sizeof buf, "{\"class_name\": \"%s\", \"config\": {%s}}", cls, cfg);
    return tu_optimizer(ctx, buf);
}

/* A float32 variable from doubles (Keras's floatx); vals NULL: zeros. */
static clopt_variable *var32(clopt_context *ctx, const char *name, int ndim, const int64_t *shape,
                             const double *vals) {
    if (!vals) return tu_var(ctx, name, CLOPT_FLOAT32, ndim, shape, NULL);
    return tu_var_from_f64(ctx, name, CLOPT_FLOAT32, ndim, shape, vals);
}

/* Reads optimizer variable `name` (count elements) through clopt_optimizer_variable_read and
 * compares it with `want`. */
static void assert_optvar(const clopt_optimizer *o, const char *name, const double *want,
                          size_t count, double rtol, double atol, const char *what) {
    double *got = malloc(count * sizeof *got);
    cr_assert(got);
    size_t i = tu_optimizer_variable_index(o, name);
    clopt_status st = clopt_optimizer_variable_read(o, i, got, count);
    cr_assert(st == CLOPT_OK, "%s: reading '%s' failed: %s", what, name, clopt_status_name(st));
    char msg[256];
    snprintf(msg, sizeof msg, "%s: %s", what, name);
    tu_assert_close(got, want, count, rtol, atol, msg);
    free(got);
}

/* The raw iteration counter (Keras's `_iterations`, variables[0]). */
static int64_t raw_iterations(const clopt_optimizer *o) {
    double it = -1;
    cr_assert(clopt_optimizer_variable_read(o, 0, &it, 1) == CLOPT_OK);
    return (int64_t)it;
}

static void assert_iterations(const clopt_optimizer *o, int64_t raw, int64_t divided,
                              const char *what) {
    cr_assert_eq(raw_iterations(o), raw, "%s: _iterations is %lld, want %lld", what,
                 (long long)raw_iterations(o), (long long)raw);
    cr_assert_eq(clopt_optimizer_iterations(o), divided, "%s: iterations is %lld, want %lld",
                 what, (long long)clopt_optimizer_iterations(o), (long long)divided);
}

/* ---------------------------------------------------------------------------------------------
 * 1. Keras's own tests */

/* optimizer_test.py, sgd_test.py and adam_test.py test_clip_norm: SGD(clipnorm=1) and
 * Adam(clipnorm=1) turn the gradient [100, 100] into [2**0.5 / 2, 2**0.5 / 2] (assertAllClose,
 * default tolerance). clopt has no _clip_gradients, so the clipped gradient is observed after a
 * step: SGD(learning_rate=1.0) from w = 0 gives w = -g, and Adam(beta_1=0.0) stores its first
 * moment m := m + (g - m) * (1 - 0) = g. keras_clip runs both with the option `clip` and
 * expects the clipped gradient `want`. */
static void keras_clip(const char *dev, const char *clip, const double want[2],
                       const char *what) {
    clopt_context *ctx = tu_context(dev);
    const int64_t shape[1] = {2};
    const double g100[2] = {100.0, 100.0}, zero[2] = {0, 0};
    const double neg[2] = {-want[0], -want[1]};
    char cfg[128], msg[64];
    clopt_variable *g = var32(ctx, "grad", 1, shape, g100);

    clopt_variable *v = var32(ctx, "variable", 1, shape, zero);
    snprintf(cfg, sizeof cfg, "\"learning_rate\": 1.0, %s", clip);
    clopt_optimizer *sgd = make_opt(ctx, "SGD", cfg);
    TU_OK(ctx, clopt_optimizer_apply(sgd, &g, &v, 1));
    snprintf(msg, sizeof msg, "SGD %s", what);
    tu_assert_var_close(v, neg, KERAS_DEFAULT_TOL, KERAS_DEFAULT_TOL, msg);

    clopt_variable *va = var32(ctx, "variable_a", 1, shape, zero);
    snprintf(cfg, sizeof cfg, "%s, \"beta_1\": 0.0", clip);
    clopt_optimizer *adam = make_opt(ctx, "Adam", cfg);
    TU_OK(ctx, clopt_optimizer_apply(adam, &g, &va, 1));
    snprintf(msg, sizeof msg, "Adam %s", what);
    assert_optvar(adam, "variable_a_momentum", want, 2, KERAS_DEFAULT_TOL, KERAS_DEFAULT_TOL, msg);
    clopt_context_destroy(ctx);
}

static void keras_clip_norm(const char *dev) {
    const double want[2] = {sqrt(2.0) / 2, sqrt(2.0) / 2};
    keras_clip(dev, "\"clipnorm\": 1", want, "clipnorm");
}

/* optimizer_test.py, sgd_test.py and adam_test.py test_clip_value: clipvalue=1 turns
 * [100, 100] into [1, 1]. Observed as in keras_clip_norm. */
static void keras_clip_value(const char *dev) {
    const double want[2] = {1.0, 1.0};
    keras_clip(dev, "\"clipvalue\": 1", want, "clipvalue");
}

/* optimizer_test.py test_global_clip_norm: SGD(global_clipnorm=1) turns the float32 gradient
 * [50, 100] into grad / np.linalg.norm(grad) (the test computes the expectation itself, as
 * here). */
static void keras_global_clip_norm(const char *dev) {
    clopt_context *ctx = tu_context(dev);
    const int64_t shape[1] = {2};
    const double grad[2] = {50.0, 100.0}, zero[2] = {0, 0};
    const double norm = sqrt(50.0 * 50.0 + 100.0 * 100.0);
    const double neg[2] = {-grad[0] / norm, -grad[1] / norm};
    clopt_variable *g = var32(ctx, "grad", 1, shape, grad);
    clopt_variable *v = var32(ctx, "variable", 1, shape, zero);
    clopt_optimizer *sgd = make_opt(ctx, "SGD", "\"learning_rate\": 1.0, \"global_clipnorm\": 1");
    TU_OK(ctx, clopt_optimizer_apply(sgd, &g, &v, 1));
    tu_assert_var_close(v, neg, KERAS_DEFAULT_TOL, KERAS_DEFAULT_TOL, "SGD global_clipnorm");
    clopt_context_destroy(ctx);
}

/* optimizer_test.py test_ema: SGD(learning_rate=1.0, use_ema=True, ema_momentum=0.9,
 * ema_overwrite_frequency=3) on [[3, 4], [5, 6]] with gradients of ones. The average is the
 * variable after the first step; the third step overwrites the variable with the average. */
static void keras_ema(const char *dev) {
    clopt_context *ctx = tu_context(dev);
    const int64_t shape[2] = {2, 2};
    const double init[4] = {3, 4, 5, 6}, ones[4] = {1, 1, 1, 1};
    const double v1[4] = {2, 3, 4, 5}, a1[4] = {2, 3, 4, 5};
    const double v2[4] = {1, 2, 3, 4}, a2[4] = {1.9, 2.9, 3.9, 4.9};
    const double v3[4] = {1.71, 2.71, 3.71, 4.71}, a3[4] = {1.71, 2.71, 3.71, 4.71};
    clopt_variable *v = var32(ctx, "variable", 2, shape, init);
    clopt_variable *g = var32(ctx, "grad", 2, shape, ones);
    clopt_optimizer *o = make_opt(ctx, "SGD",
                                  "\"learning_rate\": 1.0, \"use_ema\": true, "
                                  "\"ema_momentum\": 0.9, \"ema_overwrite_frequency\": 3");
    const double T = KERAS_DEFAULT_TOL;
    TU_OK(ctx, clopt_optimizer_apply(o, &g, &v, 1));
    tu_assert_var_close(v, v1, T, T, "step 1 variable");
    assert_optvar(o, "variable_average", a1, 4, T, T, "step 1 (initialized after first step)");
    TU_OK(ctx, clopt_optimizer_apply(o, &g, &v, 1));
    tu_assert_var_close(v, v2, T, T, "step 2 variable");
    assert_optvar(o, "variable_average", a2, 4, T, T, "step 2");
    TU_OK(ctx, clopt_optimizer_apply(o, &g, &v, 1));
    tu_assert_var_close(v, v3, T, T, "step 3 variable (overwritten with the EMA)");
    assert_optvar(o, "variable_average", a3, 4, T, T, "step 3");
    clopt_context_destroy(ctx);
}

/* optimizer_test.py test_ema_with_model_fit: SGD(learning_rate=0.1, use_ema=True,
 * ema_momentum=0.9), a Dense(2) kernel of ones without bias, x = [[1]], y = [[0]], mse, two
 * epochs of one batch; afterwards both the average and the kernel (fit() calls
 * finalize_variable_values) are [[0.891, 0.891]] (atol=1e-5). The model is not ported: the mse
 * gradient of loss = mean((x @ w - y)**2) over the 2 outputs is w itself, so each step passes
 * the current kernel as its gradient. */
static void keras_ema_with_model_fit(const char *dev) {
    clopt_context *ctx = tu_context(dev);
    const int64_t shape[2] = {1, 2};
    const double ones[2] = {1, 1}, want[2] = {0.891, 0.891};
    clopt_variable *w = var32(ctx, "dense/kernel", 2, shape, ones);
    clopt_variable *g = var32(ctx, "grad", 2, shape, NULL);
    clopt_optimizer *o = make_opt(ctx, "SGD",
                                  "\"learning_rate\": 0.1, \"use_ema\": true, "
                                  "\"ema_momentum\": 0.9");
    for (int epoch = 0; epoch < 2; epoch++) {
        TU_OK(ctx, clopt_variable_assign(g, w)); /* d loss / d w = w */
        TU_OK(ctx, clopt_optimizer_apply(o, &g, &w, 1));
    }
    TU_OK(ctx, clopt_optimizer_finalize_variable_values(o));
    assert_optvar(o, "dense_kernel_average", want, 2, 1e-6, 1e-5, "average");
    tu_assert_var_close(w, want, 1e-6, 1e-5, "kernel after finalize_variable_values");
    clopt_context_destroy(ctx);
}

/* optimizer_test.py test_static_loss_scaling: SGD(learning_rate=1.0, loss_scale_factor=1024.0)
 * with gradients [[1, 2], [3, 4]] * 1024 takes [[1, 2], [3, 4]] to zeros, and scale_loss(1.0) is
 * 1024.0. */
static void keras_static_loss_scaling(const char *dev) {
    clopt_context *ctx = tu_context(dev);
    const int64_t shape[2] = {2, 2};
    const double init[4] = {1, 2, 3, 4}, scaled[4] = {1024, 2048, 3072, 4096},
                 zeros[4] = {0, 0, 0, 0};
    clopt_variable *v = var32(ctx, "variable", 2, shape, init);
    clopt_variable *g = var32(ctx, "grad", 2, shape, scaled);
    clopt_optimizer *o =
        make_opt(ctx, "SGD", "\"learning_rate\": 1.0, \"loss_scale_factor\": 1024.0");
    TU_OK(ctx, clopt_optimizer_apply(o, &g, &v, 1));
    double scaled_loss = 0;
    TU_OK(ctx, clopt_optimizer_scale_loss(o, 1.0, &scaled_loss));
    cr_assert_eq(scaled_loss, 1024.0, "scale_loss(1.0) = %g", scaled_loss);
    tu_assert_var_close(v, zeros, KERAS_DEFAULT_TOL, KERAS_DEFAULT_TOL, "variable");
    clopt_context_destroy(ctx);
}

/* optimizer_test.py test_gradient_accumulation: SGD(learning_rate=1.0,
 * gradient_accumulation_steps=3), v = [[1, 2], [3, 4]], gradients of ones, four steps: the
 * variable, the accumulator and the counter after each.
 *
 * The stored optimizer_test.py asserts `optimizer.iterations` = 1, 2, 3, 4, from before Keras
 * divided the property by the accumulation steps; with the division (base_optimizer.py
 * `iterations`: floor_divide(_iterations, gradient_accumulation_steps); doc 1.3) those are the
 * values of the raw `_iterations` (variables[0], read here with clopt_optimizer_variable_read),
 * and `iterations` is 0, 0, 1, 1, as optimizer_distribute_test.py test_gradient_accumulation
 * asserts (_iterations 1, 2, 3 with iterations 0, 0, 1). */
static void keras_gradient_accumulation(const char *dev) {
    clopt_context *ctx = tu_context(dev);
    const int64_t shape[2] = {2, 2};
    const double init[4] = {1, 2, 3, 4}, ones[4] = {1, 1, 1, 1};
    const double want_v[4][4] = {{1, 2, 3, 4}, {1, 2, 3, 4}, {0, 1, 2, 3}, {0, 1, 2, 3}};
    const double want_acc[4][4] = {{1, 1, 1, 1}, {2, 2, 2, 2}, {0, 0, 0, 0}, {1, 1, 1, 1}};
    const int64_t want_raw[4] = {1, 2, 3, 4}, want_it[4] = {0, 0, 1, 1};
    clopt_variable *v = var32(ctx, "variable", 2, shape, init);
    clopt_variable *g = var32(ctx, "grad", 2, shape, ones);
    clopt_optimizer *o =
        make_opt(ctx, "SGD", "\"learning_rate\": 1.0, \"gradient_accumulation_steps\": 3");
    const double T = KERAS_DEFAULT_TOL;
    for (int s = 0; s < 4; s++) {
        char what[64];
        snprintf(what, sizeof what, "step %d", s + 1);
        TU_OK(ctx, clopt_optimizer_apply(o, &g, &v, 1));
        tu_assert_var_close(v, want_v[s], T, T, what);
        assert_optvar(o, "variable_gradient_accumulator", want_acc[s], 4, T, T, what);
        assert_iterations(o, want_raw[s], want_it[s], what);
    }
    clopt_context_destroy(ctx);
}

/* optimizer_test.py test_iterations_counter: Adam(learning_rate=1.0): iterations 0, 1, 2. */
static void keras_iterations_counter(const char *dev) {
    clopt_context *ctx = tu_context(dev);
    const int64_t shape[2] = {2, 2};
    const double init[4] = {1, 2, 3, 4}, ones[4] = {1, 1, 1, 1};
    clopt_variable *v = var32(ctx, "variable", 2, shape, init);
    clopt_variable *g = var32(ctx, "grad", 2, shape, ones);
    clopt_optimizer *o = make_opt(ctx, "Adam", "\"learning_rate\": 1.0");
    cr_assert_eq(clopt_optimizer_iterations(o), 0);
    TU_OK(ctx, clopt_optimizer_apply(o, &g, &v, 1));
    assert_iterations(o, 1, 1, "step 1");
    TU_OK(ctx, clopt_optimizer_apply(o, &g, &v, 1));
    assert_iterations(o, 2, 2, "step 2");
    /* Keras returns early on an empty list and does not count it (doc 1.4 step 1). */
    TU_OK(ctx, clopt_optimizer_apply(o, &g, &v, 0));
    assert_iterations(o, 2, 2, "empty apply");
    clopt_context_destroy(ctx);
}

/* optimizer_test.py test_empty_gradients: all gradients None raises "No gradients provided for
 * any variable."; SGD(learning_rate=1.0) with [(None, v), (ones, v2)] leaves v alone and takes
 * v2 from [[3, 4], [5, 6]] to [[2, 3], [4, 5]]. */
static void keras_empty_gradients(const char *dev) {
    clopt_context *ctx = tu_context(dev);
    const int64_t shape[2] = {2, 2};
    const double init[4] = {3, 4, 5, 6}, ones[4] = {1, 1, 1, 1}, want2[4] = {2, 3, 4, 5};
    clopt_variable *v = var32(ctx, "variable", 2, shape, init);
    clopt_variable *v2 = var32(ctx, "variable_2", 2, shape, init);
    clopt_variable *g2 = var32(ctx, "grad", 2, shape, ones);
    clopt_optimizer *o1 = make_opt(ctx, "SGD", "\"learning_rate\": 1.0");
    clopt_variable *none = NULL;
    TU_ASSERT_STATUS(ctx, clopt_optimizer_apply(o1, &none, &v, 1), CLOPT_ERR_NO_GRADIENTS);
    tu_assert_error_mentions(ctx, "no gradients provided");
    clopt_optimizer *o = make_opt(ctx, "SGD", "\"learning_rate\": 1.0");
    clopt_variable *grads[2] = {NULL, g2}, *vars[2] = {v, v2};
    TU_OK(ctx, clopt_optimizer_apply(o, grads, vars, 2));
    tu_assert_var_close(v, init, KERAS_DEFAULT_TOL, KERAS_DEFAULT_TOL, "v");
    tu_assert_var_close(v2, want2, KERAS_DEFAULT_TOL, KERAS_DEFAULT_TOL, "v2");
    clopt_context_destroy(ctx);
}

/* sgd_test.py, adam_test.py and adamw_test.py test_weight_decay (the same numbers): three
 * optimizers with learning_rate=1.0, weight_decay=0.004 and zero scalar gradients; the first
 * updates var1, the second var1 and var2 (named "exclude", excluded with
 * var_names=["exclude"]), the third var1 and var3 (excluded with var_list=[var3]).
 * var1 = 1.9760959 (decimal=6), var2 = var3 = 2.0. */
static void keras_weight_decay_one(const char *dev, const char *cls) {
    clopt_context *ctx = tu_context(dev);
    const double two = 2.0;
    clopt_variable *var1 = var32(ctx, "variable", 0, NULL, &two);
    clopt_variable *var2 = var32(ctx, "exclude", 0, NULL, &two);
    clopt_variable *var3 = var32(ctx, "variable_1", 0, NULL, &two);
    clopt_variable *grads[2] = {var32(ctx, "zeros", 0, NULL, NULL), NULL};
    grads[1] = grads[0];
    const char *cfg = "\"learning_rate\": 1.0, \"weight_decay\": 0.004";

    clopt_optimizer *o1 = make_opt(ctx, cls, cfg);
    TU_OK(ctx, clopt_optimizer_apply(o1, grads, &var1, 1));

    clopt_optimizer *o2 = make_opt(ctx, cls, cfg);
    const char *names[1] = {"exclude"};
    TU_OK(ctx, clopt_optimizer_exclude_from_weight_decay(o2, NULL, 0, names, 1));
    clopt_variable *vars2[2] = {var1, var2};
    TU_OK(ctx, clopt_optimizer_apply(o2, grads, vars2, 2));

    clopt_optimizer *o3 = make_opt(ctx, cls, cfg);
    TU_OK(ctx, clopt_optimizer_exclude_from_weight_decay(o3, &var3, 1, NULL, 0));
    clopt_variable *vars3[2] = {var1, var3};
    TU_OK(ctx, clopt_optimizer_apply(o3, grads, vars3, 2));

    const double w1 = 1.9760959, w2 = 2.0;
    tu_assert_var_close(var1, &w1, 0, KERAS_DECIMAL6, cls);
    tu_assert_var_close(var2, &w2, 0, KERAS_DECIMAL6, cls);
    tu_assert_var_close(var3, &w2, 0, KERAS_DECIMAL6, cls);
    clopt_context_destroy(ctx);
}

static void keras_weight_decay(const char *dev) {
    keras_weight_decay_one(dev, "SGD");
    keras_weight_decay_one(dev, "Adam");
    keras_weight_decay_one(dev, "AdamW");
}

Test(pipeline_host, keras_clip_norm) { keras_clip_norm(TU_HOST); }
Test(pipeline_pocl, keras_clip_norm) { keras_clip_norm(TU_POCL); }
Test(pipeline_host, keras_clip_value) { keras_clip_value(TU_HOST); }
Test(pipeline_pocl, keras_clip_value) { keras_clip_value(TU_POCL); }
Test(pipeline_host, keras_global_clip_norm) { keras_global_clip_norm(TU_HOST); }
Test(pipeline_pocl, keras_global_clip_norm) { keras_global_clip_norm(TU_POCL); }
Test(pipeline_host, keras_ema) { keras_ema(TU_HOST); }
Test(pipeline_pocl, keras_ema) { keras_ema(TU_POCL); }
Test(pipeline_host, keras_ema_with_model_fit) { keras_ema_with_model_fit(TU_HOST); }
Test(pipeline_pocl, keras_ema_with_model_fit) { keras_ema_with_model_fit(TU_POCL); }
Test(pipeline_host, keras_static_loss_scaling) { keras_static_loss_scaling(TU_HOST); }
Test(pipeline_pocl, keras_static_loss_scaling) { keras_static_loss_scaling(TU_POCL); }
Test(pipeline_host, keras_gradient_accumulation) { keras_gradient_accumulation(TU_HOST); }
Test(pipeline_pocl, keras_gradient_accumulation) { keras_gradient_accumulation(TU_POCL); }
Test(pipeline_host, keras_iterations_counter) { keras_iterations_counter(TU_HOST); }
Test(pipeline_pocl, keras_iterations_counter) { keras_iterations_counter(TU_POCL); }
Test(pipeline_host, keras_empty_gradients) { keras_empty_gradients(TU_HOST); }
Test(pipeline_pocl, keras_empty_gradients) { keras_empty_gradients(TU_POCL); }
Test(pipeline_host, keras_weight_decay) { keras_weight_decay(TU_HOST); }
Test(pipeline_pocl, keras_weight_decay) { keras_weight_decay(TU_POCL); }

/* ---------------------------------------------------------------------------------------------
 * 2. The double-precision reference
 *
 * Four variables: a scalar, 300 and 4096 elements, and a 17x33 matrix. A gradient element is
 * uniform in [0.25, 1] times a per-variable scale (chosen so that clipnorm=1 clips some variables
 * and not others, and clipvalue=0.5 clips some elements) times a sign fixed per element for the
 * whole run. The fixed sign keeps accumulated sums and Adam's moments away from cancellation:
 * with random signs, an averaged gradient of 3e-6 made of two O(1) float32 values has a
 * relative error of 1e-2, which Adam's first step (m / (sqrt(v) + epsilon), sqrt(v) ~ epsilon)
 * turns into a 60-ulp difference from the reference; that is conditioning, not a pipeline error.
 * A step is a pattern string:
 *   "*"          every variable, vars = NULL (the built list);
 *   '0'..'3'     that variable with a random gradient;
 *   'a'..'d'     variable 0..3 with a NULL gradient (Keras's None);
 *   'A'..'D'     variable 0..3 with an all-zero gradient.
 * The order of the characters is the order of the lists passed to apply. */

#define NV 4
typedef struct vspec {
    const char *name;
    const char *slot_prefix; /* the name with '/' replaced by '_', as Keras's slot names */
    int ndim;
    int64_t shape[2];
    double gscale;
} vspec;
static const vspec VS[NV] = {
    {"layer_norm/scale", "layer_norm_scale", 0, {1, 1}, 3.0},
    {"dense/bias", "dense_bias", 1, {300, 1}, 0.02},
    {"embedding/embeddings", "embedding_embeddings", 1, {4096, 1}, 1.0},
    {"dense/kernel", "dense_kernel", 2, {17, 33}, 0.05},
};

/* Variable 2's element count when a case makes it "big" (0: as in VS). */
static int64_t big_size;

static size_t vs_size(int i) {
    if (i == 2 && big_size) return (size_t)big_size;
    size_t n = 1;
    for (int d = 0; d < VS[i].ndim; d++) n *= (size_t)VS[i].shape[d];
    return n;
}

static const int64_t *vs_shape(int i) {
    static int64_t big[1];
    if (i == 2 && big_size) {
        big[0] = big_size;
        return big;
    }
    return VS[i].shape;
}

#define MAXSTEPS 14
typedef struct pcase {
    int adam;          /* 0: SGD, 1: Adam (beta_1 0.9, beta_2 0.999, epsilon 1e-7) */
    double lr;
    double momentum;   /* SGD */
    int nesterov;      /* SGD */
    double wd;         /* 0: None */
    double clipnorm, global_clipnorm, clipvalue; /* 0: None */
    int use_ema;
    double ema_momentum;
    int ema_freq;      /* 0: None */
    double lsf;        /* loss_scale_factor, 0: None */
    int acc;           /* gradient_accumulation_steps, 0: None */
    /* exclude_from_weight_decay before build: by identity (bit i = variable i) and by name (a
     * regular expression, and the variables it is expected to match) */
    unsigned excl_ids;
    const char *excl_name;
    unsigned excl_name_mask;
    /* the same after `late_step` steps (0: never) */
    int late_step;
    unsigned late_ids;
    const char *late_name;
    unsigned late_name_mask;
    int no_build;      /* 1: the first apply builds (its pattern must list every variable) */
    /* before step lr_step (0: never), clopt_optimizer_set_learning_rate(lr2): the decay uses the
     * learning rate of its step */
    int lr_step;
    double lr2;
    /* a learning-rate schedule (JSON, replaces lr) and its value at the raw iteration count */
    const char *schedule;
    double (*schedule_at)(int64_t raw);
    /* 1: 1 MiB arena blocks and variable 2 of 300000 elements, so that variable 2, its gradient
     * and the other variables live in three blocks and a step takes several launches */
    int multiblock;
    /* 1: every step destroys the gradients it uses and creates new ones (a filler variable in
     * between moves them), so cached launch plans must not outlive their gradients */
    int fresh_grads;
    /* 1: variables 0 and 2 float32, 1 and 3 float64, in one optimizer (run once) */
    int mixed;
    const char *steps[MAXSTEPS]; /* NULL-terminated */
} pcase;

/* The reference state. */
typedef struct ref {
    const pcase *c;
    int f32[NV]; /* variable i is float32 (its stored values round) */
    int64_t raw;
    double lr;
    double *w[NV], *m[NV], *v[NV], *avg[NV], *acc[NV];
    int nodecay[NV];
} ref;

/* What a stored value becomes: float32 storage rounds. */
static double stored(const ref *r, int i, double x) { return r->f32[i] ? (double)(float)x : x; }

/* The dtype cast c() of the doc's Adam formula. */
static double cst(const ref *r, int i, double x) { return r->f32[i] ? (double)(float)x : x; }

/* Keras's clipping (doc 1.5) of the gradients x[k] (sizes n[k]) of one update. */
static void ref_clip(const ref *r, double **x, const size_t *n, int np) {
    const pcase *c = r->c;
    if (c->clipnorm > 0) {
        for (int k = 0; k < np; k++) {
            double s = 0;
            for (size_t j = 0; j < n[k]; j++) s += x[k][j] * x[k][j];
            const double nrm = s > 0 ? sqrt(s) : 0;
            const double f = c->clipnorm / fmax(nrm, c->clipnorm);
            for (size_t j = 0; j < n[k]; j++) x[k][j] *= f;
        }
    } else if (c->global_clipnorm > 0) {
        double s = 0;
        for (int k = 0; k < np; k++)
            for (size_t j = 0; j < n[k]; j++) s += x[k][j] * x[k][j];
        const double N = sqrt(s), cn = c->global_clipnorm;
        const double scale = cn * fmin(1.0 / N, 1.0 / cn) + (N - N);
        for (int k = 0; k < np; k++)
            for (size_t j = 0; j < n[k]; j++) x[k][j] *= scale;
    } else if (c->clipvalue > 0) {
        for (int k = 0; k < np; k++)
            for (size_t j = 0; j < n[k]; j++)
                x[k][j] = fmin(fmax(x[k][j], -c->clipvalue), c->clipvalue);
    }
}

/* One update_step (doc section 3) of variable i with gradient x, at t = iterations + 1.
 *
 * Adam's bias correction follows the doc (and keras/src/optimizers/adam.py): the betas are cast
 * to the variable's dtype before the powers, alpha = lr * sqrt(1 - c(b2)^t) / (1 - c(b1)^t).
 * clopt's Adam (src/optim/adam.c) computes it with the double betas; for float32 that makes
 * alpha larger by about 6e-6 relative at t = 1 (1 - 0.999f is 1.3e-5 below 1 - 0.999), shrinking
 * with t. That is the Adam class, not the pipeline: the Adam cases here use learning rates of
 * 0.01 and below, where the difference (< 2e-7 absolute) is inside the float32 tolerance, so
 * these tests hold either way. */
static void ref_update_step(ref *r, int i, const double *x, int64_t t) {
    const pcase *c = r->c;
    double *w = r->w[i], *m = r->m[i], *v = r->v[i];
    const double lr = r->lr;
    if (c->adam) {
        const double b1 = 0.9, b2 = 0.999, eps = 1e-7;
        const double alpha =
            lr * sqrt(1 - pow(cst(r, i, b2), (double)t)) / (1 - pow(cst(r, i, b1), (double)t));
        for (size_t j = 0; j < vs_size(i); j++) {
            m[j] = stored(r, i, m[j] + (x[j] - m[j]) * (1 - b1));
            v[j] = stored(r, i, v[j] + (x[j] * x[j] - v[j]) * (1 - b2));
            w[j] = stored(r, i, w[j] - alpha * m[j] / (sqrt(v[j]) + eps));
        }
    } else if (c->momentum != 0) {
        for (size_t j = 0; j < vs_size(i); j++) {
            m[j] = stored(r, i, c->momentum * m[j] - lr * x[j]);
            w[j] = stored(r, i, c->nesterov ? w[j] + c->momentum * m[j] - lr * x[j] : w[j] + m[j]);
        }
    } else {
        for (size_t j = 0; j < vs_size(i); j++) w[j] = stored(r, i, w[j] - lr * x[j]);
    }
}

/* Keras's apply (doc 1.4) on pairs (vi[k], g[k]); g[k] NULL is a missing gradient. */
static void ref_apply(ref *r, const int *vi, double *const *g, int n) {
    const pcase *c = r->c;
    const int64_t S = c->acc;
    const int64_t it = S ? r->raw / S : r->raw; /* `iterations`, before the increment */
    double *x[NV];
    size_t sz[NV];
    int idx[NV], np = 0;
    for (int k = 0; k < n; k++) {
        if (!g[k]) continue; /* step 3: drop None gradients */
        const int i = vi[k];
        idx[np] = i;
        sz[np] = vs_size(i);
        x[np] = malloc(sz[np] * sizeof(double));
        cr_assert(x[np]);
        for (size_t j = 0; j < sz[np]; j++)
            x[np][j] = c->lsf != 0 ? g[k][j] / c->lsf : g[k][j]; /* 5a: unscale */
        np++;
    }
    cr_assert(np > 0, "reference: a step needs a gradient");
    const int update = !S || (r->raw + 1) % S == 0;
    if (!update) { /* accumulate the raw (unscaled, unclipped) gradient */
        for (int k = 0; k < np; k++)
            for (size_t j = 0; j < sz[k]; j++)
                r->acc[idx[k]][j] = stored(r, idx[k], r->acc[idx[k]][j] + x[k][j]);
    } else {
        if (S)
            for (int k = 0; k < np; k++)
                for (size_t j = 0; j < sz[k]; j++)
                    x[k][j] = (x[k][j] + r->acc[idx[k]][j]) / (double)S;
        ref_clip(r, x, sz, np);
        if (c->wd != 0) /* decoupled weight decay on the pre-update weights */
            for (int k = 0; k < np; k++) {
                if (r->nodecay[idx[k]]) continue;
                double *w = r->w[idx[k]];
                for (size_t j = 0; j < sz[k]; j++) w[j] = stored(r, idx[k], w[j] - w[j] * c->wd * r->lr);
            }
        for (int k = 0; k < np; k++) ref_update_step(r, idx[k], x[k], it + 1);
        if (S) /* every accumulator, including those of variables absent from this step */
            for (int i = 0; i < NV; i++) memset(r->acc[i], 0, vs_size(i) * sizeof(double));
    }
    if (c->use_ema) { /* every built variable, on every call */
        const double me = it != 0 ? c->ema_momentum : 0.0;
        for (int i = 0; i < NV; i++)
            for (size_t j = 0; j < vs_size(i); j++)
                r->avg[i][j] = stored(r, i, me * r->avg[i][j] + (1 - me) * r->w[i][j]);
        if (c->ema_freq && (it + 1) % c->ema_freq == 0)
            for (int i = 0; i < NV; i++) memcpy(r->w[i], r->avg[i], vs_size(i) * sizeof(double));
    }
    r->raw++;
    for (int k = 0; k < np; k++) free(x[k]);
}

/* The case as Keras's serialized config. */
static void append(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void append(char *buf, size_t cap, const char *fmt, ...) {
    size_t len = strlen(buf);
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + len, cap - len, fmt, ap);
    va_end(ap);
    cr_assert(k >= 0 && (size_t)k < cap - len, "config buffer too small");
}

static void case_json(const pcase *c, char *buf, size_t cap) {
    buf[0] = 0;
    append(buf, cap, "{\"class_name\": \"%s\", \"config\": {", c->adam ? "Adam" : "SGD");
    if (c->schedule) append(buf, cap, "\"learning_rate\": %s", c->schedule);
    else append(buf, cap, "\"learning_rate\": %.17g", c->lr);
    if (!c->adam && c->momentum != 0)
        append(buf, cap, ", \"momentum\": %.17g, \"nesterov\": %s", c->momentum,
               c->nesterov ? "true" : "false");
    if (c->wd != 0) append(buf, cap, ", \"weight_decay\": %.17g", c->wd);
    if (c->clipnorm != 0) append(buf, cap, ", \"clipnorm\": %.17g", c->clipnorm);
    if (c->global_clipnorm != 0)
        append(buf, cap, ", \"global_clipnorm\": %.17g", c->global_clipnorm);
    if (c->clipvalue != 0) append(buf, cap, ", \"clipvalue\": %.17g", c->clipvalue);
    if (c->use_ema)
        append(buf, cap, ", \"use_ema\": true, \"ema_momentum\": %.17g", c->ema_momentum);
    if (c->ema_freq) append(buf, cap, ", \"ema_overwrite_frequency\": %d", c->ema_freq);
    if (c->lsf != 0) append(buf, cap, ", \"loss_scale_factor\": %.17g", c->lsf);
    if (c->acc) append(buf, cap, ", \"gradient_accumulation_steps\": %d", c->acc);
    append(buf, cap, "}}");
}

/* A run: the library's objects and the reference. */
typedef struct engine {
    clopt_context *ctx;
    clopt_dtype dt[NV];
    clopt_optimizer *o;
    clopt_variable *v[NV], *g[NV];
    double *gbuf[NV];
    double *sign[NV]; /* each element's gradient sign, fixed over the steps */
    clopt_variable *fillers[MAXSTEPS * NV];
    int nfillers;
    uint64_t rng;
    ref r;
    const char *label;
} engine;

/* Keras's variable list after build (doc 1.2): iteration, learning_rate, the EMA averages, the
 * accumulators, then the optimizer's slots interleaved per variable. */
static void check_variable_list(const engine *e) {
    const pcase *c = e->r.c;
    const char *want[2 + 4 * NV];
    char names[4 * NV][64];
    int n = 0, k = 0;
    want[n++] = "iteration";
    if (!c->schedule) want[n++] = "learning_rate"; /* a schedule has no variable */
#define ADD(i, slot) (snprintf(names[k], sizeof names[k], "%s_%s", VS[i].slot_prefix, slot), \
                      want[n++] = names[k++])
    if (c->use_ema)
        for (int i = 0; i < NV; i++) ADD(i, "average");
    if (c->acc)
        for (int i = 0; i < NV; i++) ADD(i, "gradient_accumulator");
    for (int i = 0; i < NV; i++) {
        if (c->adam) {
            ADD(i, "momentum");
            ADD(i, "velocity");
        } else if (c->momentum != 0) {
            ADD(i, "momentum");
        }
    }
#undef ADD
    cr_assert_eq(clopt_optimizer_variable_count(e->o), (size_t)n,
                 "%s: %zu optimizer variables, want %d", e->label,
                 clopt_optimizer_variable_count(e->o), n);
    for (int i = 0; i < n; i++) {
        const char *nm = NULL;
        cr_assert(clopt_optimizer_variable(e->o, (size_t)i, &nm, NULL, NULL) == CLOPT_OK);
        cr_assert_str_eq(nm, want[i], "%s: optimizer variable %d is '%s', want '%s'", e->label, i,
                         nm, want[i]);
    }
}

static void engine_check(const engine *e, const char *when) {
    const pcase *c = e->r.c;
    char what[192], slot[96];
    for (int i = 0; i < NV; i++) {
        const double rt = tu_rtol(e->dt[i]), at = tu_atol(e->dt[i]);
        snprintf(what, sizeof what, "%s, %s: variable '%s'", e->label, when, VS[i].name);
        tu_assert_var_close(e->v[i], e->r.w[i], rt, at, what);
        snprintf(what, sizeof what, "%s, %s", e->label, when);
        const size_t n = vs_size(i);
        if (c->use_ema) {
            snprintf(slot, sizeof slot, "%s_average", VS[i].slot_prefix);
            assert_optvar(e->o, slot, e->r.avg[i], n, rt, at, what);
        }
        if (c->acc) {
            snprintf(slot, sizeof slot, "%s_gradient_accumulator", VS[i].slot_prefix);
            assert_optvar(e->o, slot, e->r.acc[i], n, rt, at, what);
        }
        if (c->adam || c->momentum != 0) {
            snprintf(slot, sizeof slot, "%s_momentum", VS[i].slot_prefix);
            assert_optvar(e->o, slot, e->r.m[i], n, rt, at, what);
        }
        if (c->adam) {
            snprintf(slot, sizeof slot, "%s_velocity", VS[i].slot_prefix);
            assert_optvar(e->o, slot, e->r.v[i], n, rt, at, what);
        }
    }
    snprintf(what, sizeof what, "%s, %s", e->label, when);
    assert_iterations(e->o, e->r.raw, c->acc ? e->r.raw / c->acc : e->r.raw, what);
}

static unsigned name_mask(const char *re_text) {
    /* The variables a pattern is expected to match, recomputed with POSIX regexec as a check
     * on the case's own table (re.search semantics: anywhere in the name). */
    regex_t re;
    cr_assert(regcomp(&re, re_text, REG_EXTENDED | REG_NOSUB) == 0);
    unsigned m = 0;
    for (int i = 0; i < NV; i++)
        if (regexec(&re, VS[i].name, 0, NULL, 0) == 0) m |= 1u << i;
    regfree(&re);
    return m;
}

static void engine_exclude(engine *e, unsigned ids, const char *name, unsigned name_mask_want) {
    clopt_variable *vl[NV];
    size_t nv = 0;
    for (int i = 0; i < NV; i++)
        if (ids & (1u << i)) {
            vl[nv++] = e->v[i];
            e->r.nodecay[i] = 1;
        }
    if (name) {
        cr_assert_eq(name_mask(name), name_mask_want, "case table: '%s' matches 0x%x", name,
                     name_mask(name));
        for (int i = 0; i < NV; i++)
            if (name_mask_want & (1u << i)) e->r.nodecay[i] = 1;
    }
    if (nv || name)
        TU_OK(e->ctx, clopt_optimizer_exclude_from_weight_decay(e->o, vl, nv, &name, name ? 1 : 0));
}

static void engine_step(engine *e, const char *pat) {
    clopt_variable *gl[NV], *vl[NV];
    double *gref[NV];
    int vi[NV], n = 0;
    const int all = strcmp(pat, "*") == 0;
    const int len = all ? NV : (int)strlen(pat);
    cr_assert(len <= NV);
    for (int k = 0; k < len; k++) {
        int i = 0, kind = 0; /* kind: 0 random, 1 NULL, 2 zeros */
        char ch = all ? (char)('0' + k) : pat[k];
        if (ch >= '0' && ch <= '3') i = ch - '0', kind = 0;
        else if (ch >= 'a' && ch <= 'd') i = ch - 'a', kind = 1;
        else if (ch >= 'A' && ch <= 'D') i = ch - 'A', kind = 2;
        else cr_assert_fail("bad step pattern '%s'", pat);
        const size_t sz = vs_size(i);
        if (kind == 1) {
            gl[n] = NULL;
            gref[n] = NULL;
        } else {
            double *vals = calloc(sz, sizeof *vals);
            cr_assert(vals);
            if (kind == 0) {
                tu_rand_fill(&e->rng, vals, sz, 0.25, 1.0);
                const double f = VS[i].gscale * (e->r.c->lsf != 0 ? e->r.c->lsf : 1.0);
                for (size_t j = 0; j < sz; j++) vals[j] *= f * e->sign[i][j];
            }
            if (e->r.c->fresh_grads) {
                char gname[64];
                snprintf(gname, sizeof gname, "grad_%d", i);
                clopt_variable_destroy(e->g[i]);
                cr_assert(e->nfillers < MAXSTEPS * NV);
                e->fillers[e->nfillers++] = tu_var(e->ctx, "filler", e->dt[i], 0, NULL, NULL);
                e->g[i] = tu_var(e->ctx, gname, e->dt[i], VS[i].ndim, vs_shape(i), NULL);
            }
            tu_write_f64(e->g[i], vals);
            free(vals);
            free(e->gbuf[i]);
            e->gbuf[i] = tu_read_f64(e->g[i]); /* exactly what the library reads */
            gl[n] = e->g[i];
            gref[n] = e->gbuf[i];
        }
        vl[n] = e->v[i];
        vi[n] = i;
        n++;
    }
    TU_OK(e->ctx, clopt_optimizer_apply(e->o, gl, all ? NULL : vl, (size_t)n));
    ref_apply(&e->r, vi, gref, n);
}

static void run_case(const char *dev, const pcase *c, clopt_dtype dt, const char *cname) {
    engine e;
    memset(&e, 0, sizeof e);
    big_size = c->multiblock ? 300000 : 0;
    if (c->multiblock) setenv("CLOPT_ARENA_MB", "1", 1);
    char label[128];
    snprintf(label, sizeof label, "%s (%s, %s)", cname, dev,
             c->mixed ? "float32 and float64" : clopt_dtype_name(dt));
    e.label = label;
    e.ctx = tu_context(dev);
    if (c->multiblock) unsetenv("CLOPT_ARENA_MB");
    for (int i = 0; i < NV; i++) {
        e.dt[i] = c->mixed ? (i % 2 ? CLOPT_FLOAT64 : CLOPT_FLOAT32) : dt;
        e.r.f32[i] = e.dt[i] == CLOPT_FLOAT32;
    }
    e.rng = 0x5eed0000u + (uint64_t)dt;
    e.r.c = c;
    e.r.lr = (double)(float)c->lr; /* Keras keeps a float learning rate in a float32 variable */
    for (int i = 0; i < NV; i++) {
        const size_t sz = vs_size(i);
        double *init = malloc(sz * sizeof *init);
        cr_assert(init);
        tu_rand_fill(&e.rng, init, sz, -1.0, 1.0);
        e.v[i] = tu_var_from_f64(e.ctx, VS[i].name, e.dt[i], VS[i].ndim, vs_shape(i), init);
        free(init);
        char gname[64];
        snprintf(gname, sizeof gname, "grad_%d", i);
        e.g[i] = tu_var(e.ctx, gname, e.dt[i], VS[i].ndim, vs_shape(i), NULL);
        e.r.w[i] = tu_read_f64(e.v[i]);
        e.sign[i] = malloc(sz * sizeof(double));
        cr_assert(e.sign[i]);
        for (size_t j = 0; j < sz; j++) e.sign[i][j] = tu_rand_u64(&e.rng) & 1 ? 1.0 : -1.0;
        e.r.m[i] = calloc(sz, sizeof(double));
        e.r.v[i] = calloc(sz, sizeof(double));
        e.r.avg[i] = calloc(sz, sizeof(double));
        e.r.acc[i] = calloc(sz, sizeof(double));
        cr_assert(e.r.m[i] && e.r.v[i] && e.r.avg[i] && e.r.acc[i]);
    }
    char json[1024];
    case_json(c, json, sizeof json);
    e.o = tu_optimizer(e.ctx, json);
    engine_exclude(&e, c->excl_ids, c->excl_name, c->excl_name_mask);
    if (!c->no_build) {
        TU_OK(e.ctx, clopt_optimizer_build(e.o, e.v, NV));
        check_variable_list(&e);
        engine_check(&e, "after build");
    }
    for (int s = 0; s < MAXSTEPS && c->steps[s]; s++) {
        if (c->late_step && s == c->late_step)
            engine_exclude(&e, c->late_ids, c->late_name, c->late_name_mask);
        if (c->schedule) {
            /* The schedule at the raw _iterations (doc 1.3, 1.4), for the update and the decay. */
            double lr;
            TU_OK(e.ctx, clopt_optimizer_get_learning_rate(e.o, &lr));
            const double want = c->schedule_at(e.r.raw);
            cr_assert(fabs(lr - want) <= 1e-7 * want, "%s: learning rate %.9g at raw step %lld, "
                      "want %.9g", label, lr, (long long)e.r.raw, want);
            e.r.lr = lr;
        }
        if (c->lr_step && s == c->lr_step) {
            TU_OK(e.ctx, clopt_optimizer_set_learning_rate(e.o, c->lr2));
            e.r.lr = (double)(float)c->lr2;
        }
        engine_step(&e, c->steps[s]);
        if (s == 0 && c->no_build) check_variable_list(&e);
        char when[64];
        snprintf(when, sizeof when, "step %d ('%s')", s + 1, c->steps[s]);
        engine_check(&e, when);
    }
    /* finalize_variable_values: the averages when use_ema, otherwise nothing (doc 1.3, 1.7). */
    TU_OK(e.ctx, clopt_optimizer_finalize_variable_values(e.o));
    if (c->use_ema)
        for (int i = 0; i < NV; i++) memcpy(e.r.w[i], e.r.avg[i], vs_size(i) * sizeof(double));
    engine_check(&e, "after finalize_variable_values");
    for (int i = 0; i < NV; i++) {
        free(e.r.w[i]);
        free(e.r.m[i]);
        free(e.r.v[i]);
        free(e.r.avg[i]);
        free(e.r.acc[i]);
        free(e.gbuf[i]);
        free(e.sign[i]);
    }
    clopt_context_destroy(e.ctx);
}

static void run_both(const char *dev, const pcase *c, const char *cname) {
    run_case(dev, c, CLOPT_FLOAT32, cname);
    if (!c->mixed) run_case(dev, c, CLOPT_FLOAT64, cname);
}

/* A plain run over a mix of patterns: every variable, subsets in another order, NULL
 * gradients, zero gradients. */
#define MIXED_STEPS {"0123", "A123", "*", "0BCD", "3210", "0b23", "30", "*"}

/* clipnorm per variable: the scalar (x3) and the 4096-element gradients are clipped, the others
 * mostly not; a zero gradient must stay zero (the NaN-safe norm). */
static const pcase C_CLIPNORM_SGD = {.lr = 0.1, .momentum = 0.5, .clipnorm = 1.0,
                                     .steps = MIXED_STEPS};
static const pcase C_CLIPNORM_ADAM = {.adam = 1, .lr = 0.01, .clipnorm = 1.0,
                                      .steps = MIXED_STEPS};
/* global_clipnorm: one norm over the gradients of the step; "ABCD" is N = 0, where Keras's
 * formula gives scale 1 (with momentum the step still moves the variables, so a NaN scale
 * would show). */
#define GLOBAL_STEPS {"0123", "*", "ABCD", "30", "0b23", "A1C3", "0123"}
static const pcase C_GLOBAL_SGD = {.lr = 0.1, .momentum = 0.5, .global_clipnorm = 5.0,
                                   .steps = GLOBAL_STEPS};
static const pcase C_GLOBAL_ADAM = {.adam = 1, .lr = 0.01, .global_clipnorm = 5.0,
                                    .steps = GLOBAL_STEPS};
/* A norm below global_clipnorm: the scale is 1. */
static const pcase C_GLOBAL_LOOSE = {.lr = 0.1, .momentum = 0.5, .nesterov = 1,
                                     .global_clipnorm = 1000.0, .steps = GLOBAL_STEPS};
static const pcase C_CLIPVALUE_SGD = {.lr = 0.1, .clipvalue = 0.5, .steps = MIXED_STEPS};
static const pcase C_CLIPVALUE_ADAM = {.adam = 1, .lr = 0.01, .clipvalue = 0.5,
                                       .steps = MIXED_STEPS};
/* Weight decay, exclusions by identity and by name before build (the first apply builds), and
 * by name after three steps; a new learning rate from step 5. */
static const pcase C_WD_SGD = {.lr = 0.1, .momentum = 0.5, .wd = 0.1, .excl_ids = 1u << 0,
                               .excl_name = "bias$", .excl_name_mask = 1u << 1, .late_step = 3,
                               .late_name = "kernel", .late_name_mask = 1u << 3, .no_build = 1,
                               .lr_step = 4, .lr2 = 0.3,
                               .steps = {"0123", "*", "3210", "0123", "0b2d", "*", "13"}};
/* Weight decay, exclusion by a name alternation before an explicit build, and by identity
 * after two steps. */
static const pcase C_WD_ADAM = {.adam = 1, .lr = 0.01, .wd = 0.5,
                                .excl_name = "^layer_norm/|bias$", .excl_name_mask = 3u,
                                .late_step = 2, .late_ids = 1u << 2,
                                .steps = {"*", "3210", "0123", "a1C3", "*", "2"}};
/* EMA: the first step sets average := variable; overwrite every 3 steps; finalize. */
static const pcase C_EMA_SGD = {.lr = 0.1, .momentum = 0.5, .use_ema = 1, .ema_momentum = 0.8,
                                .ema_freq = 3,
                                .steps = {"*", "0123", "3210", "0b23", "*", "a123", "30", "*"}};
static const pcase C_EMA_ADAM = {.adam = 1, .lr = 0.01, .use_ema = 1, .ema_momentum = 0.9,
                                 .steps = {"*", "0123", "21", "0b23", "*", "3"}};
/* Accumulation over 2 steps: accumulate-only steps leave the variables; update steps use
 * (sum)/2; an update step with NULL gradients (variables 1 and 3) and one with a subset (2, 1)
 * reset every accumulator; `iterations` = raw // 2. */
static const pcase C_ACC2_SGD = {.lr = 0.1, .momentum = 0.5, .acc = 2,
                                 .steps = {"*", "*", "0123", "0b2d", "*", "*", "30", "21", "*",
                                           "3210"}};
/* Accumulation over 3 steps with Adam: bias correction with t = raw // 3 + 1. */
static const pcase C_ACC3_ADAM = {.adam = 1, .lr = 0.01, .acc = 3,
                                  .steps = {"*", "0123", "0b23", "*", "30", "1", "*", "*", "0123",
                                            "a1C3", "3210", "*"}};
static const pcase C_LSF_SGD = {.lr = 0.1, .momentum = 0.5, .lsf = 128.0, .steps = MIXED_STEPS};
/* loss_scale_factor with accumulation: the accumulators hold unscaled gradients. */
static const pcase C_LSF_ADAM_ACC = {.adam = 1, .lr = 0.01, .lsf = 1000.0, .acc = 2,
                                     .steps = MIXED_STEPS};
/* No pipeline option: NULL gradients and subsets in another order. */
static const pcase C_PLAIN_SGD = {.lr = 0.1, .momentum = 0.5,
                                  .steps = {"0b23", "30", "*", "a1c3", "12", "0123"}};
/* Combinations. */
static const pcase C_COMBO_SGD = {.lr = 0.1, .momentum = 0.5, .nesterov = 1, .acc = 3,
                                  .clipnorm = 1.0, .wd = 0.05, .excl_name = "bias$",
                                  .excl_name_mask = 1u << 1, .use_ema = 1, .ema_momentum = 0.9,
                                  .ema_freq = 2, .lsf = 64.0,
                                  .steps = {"*", "0123", "0b23", "*", "30", "21", "*", "*",
                                            "3210", "a1C3", "*", "*"}};
static const pcase C_COMBO_ADAM = {.adam = 1, .lr = 0.01, .acc = 2, .global_clipnorm = 2.0,
                                   .wd = 0.1, .excl_ids = 1u << 0, .late_step = 4,
                                   .late_name = "kernel", .late_name_mask = 1u << 3,
                                   .use_ema = 1, .ema_momentum = 0.7, .ema_freq = 3,
                                   .steps = {"*", "0123", "0b23", "*", "30", "21", "*", "ABCD",
                                             "3210", "*"}};
static const pcase C_COMBO_ADAM_CLIPVALUE = {.adam = 1, .lr = 0.01, .acc = 2, .clipvalue = 0.3,
                                             .wd = 0.2, .excl_name = "^embedding",
                                             .excl_name_mask = 1u << 2, .use_ema = 1,
                                             .ema_momentum = 0.5, .ema_freq = 1, .lsf = 8.0,
                                             .steps = {"*", "*", "0b23", "3210", "*", "12"}};

/* Several arena blocks, so several launches per pass: global_clipnorm sums over all of them;
 * clipnorm, EMA and the accumulator reset run per launch. */
static const pcase C_MULTIBLOCK_SGD = {.lr = 0.1, .momentum = 0.5, .acc = 2,
                                       .global_clipnorm = 5.0, .wd = 0.1, .excl_name = "bias$",
                                       .excl_name_mask = 1u << 1, .use_ema = 1,
                                       .ema_momentum = 0.9, .ema_freq = 2, .multiblock = 1,
                                       .steps = {"*", "0123", "0b23", "*", "30", "21", "*", "*"}};
static const pcase C_MULTIBLOCK_ADAM = {.adam = 1, .lr = 0.01, .acc = 3, .clipnorm = 1.0,
                                        .lsf = 16.0, .use_ema = 1, .ema_momentum = 0.8,
                                        .multiblock = 1,
                                        .steps = {"*", "0123", "0b23", "*", "30", "21", "*"}};
/* float32 and float64 variables in one optimizer: per-dtype slot storage and per-dtype
 * launches, every pipeline stage but global_clipnorm (which clopt does not support across
 * dtypes: see global_clipnorm_mixed_dtypes). */
static const pcase C_MIXED_ADAM = {.adam = 1, .lr = 0.01, .acc = 2, .clipnorm = 1.0, .lsf = 32.0,
                                   .wd = 0.1, .excl_name = "kernel", .excl_name_mask = 1u << 3,
                                   .use_ema = 1, .ema_momentum = 0.9, .ema_freq = 3, .mixed = 1,
                                   .steps = {"*", "0123", "0b23", "*", "30", "21", "*", "*",
                                             "3210"}};
static const pcase C_MIXED_SGD = {.lr = 0.1, .momentum = 0.5, .acc = 3, .clipvalue = 0.5,
                                  .wd = 0.2, .late_step = 3, .late_ids = 1u << 1, .use_ema = 1,
                                  .ema_momentum = 0.8, .mixed = 1,
                                  .steps = {"*", "0123", "0b23", "*", "30", "21", "*"}};
/* A schedule under accumulation: the learning rate of the update and of the decay is the
 * schedule at the raw _iterations (1, 3, 5, 7 on the update steps: 0.1, 0.05, 0.05, 0.02), not
 * at the divided count. PiecewiseConstantDecay(boundaries=[2, 5], values=[0.1, 0.05, 0.02]):
 * values[0] while step <= 2, values[1] while step <= 5, then values[2]. */
static double piecewise_at(int64_t raw) {
    return raw <= 2 ? (double)0.1f : raw <= 5 ? (double)0.05f : (double)0.02f;
}
#define PIECEWISE                                                                             \
    "{\"module\": \"keras.optimizers.schedules\", \"class_name\": \"PiecewiseConstantDecay\", "  \
    "\"config\": {\"boundaries\": [2, 5], \"values\": [0.1, 0.05, 0.02], "                     \
    "\"name\": \"PiecewiseConstantDecay\"}, \"registered_name\": null}"
static const pcase C_SCHEDULE_SGD = {.momentum = 0.5, .schedule = PIECEWISE,
                                     .schedule_at = piecewise_at, .acc = 2, .wd = 0.5,
                                     .excl_name = "bias$", .excl_name_mask = 1u << 1,
                                     .use_ema = 1, .ema_momentum = 0.9,
                                     .steps = {"*", "*", "0123", "0b23", "*", "*", "30", "21",
                                               "*", "*"}};
/* Adam keeps its learning rates at 0.01 and below, as the other Adam cases: see ref_update_step
 * on the float32 bias correction. */
static double piecewise_small_at(int64_t raw) {
    return raw <= 2 ? (double)0.01f : raw <= 5 ? (double)0.005f : (double)0.002f;
}
#define PIECEWISE_SMALL                                                                       \
    "{\"module\": \"keras.optimizers.schedules\", \"class_name\": \"PiecewiseConstantDecay\", "  \
    "\"config\": {\"boundaries\": [2, 5], \"values\": [0.01, 0.005, 0.002], "                  \
    "\"name\": \"PiecewiseConstantDecay\"}, \"registered_name\": null}"
static const pcase C_SCHEDULE_ADAM = {.adam = 1, .schedule = PIECEWISE_SMALL,
                                      .schedule_at = piecewise_small_at, .wd = 0.5,
                                      .clipnorm = 1.0, .acc = 2,
                                      .steps = {"*", "0123", "0b23", "*", "30", "21", "*", "*"}};

/* Steps that grow from one small variable to all of them: the cached plan's buffers (segment
 * table, per-block partial sums of the norm reduction) must grow with it. */
static const pcase C_GROWING_CLIPNORM = {.lr = 0.1, .momentum = 0.5, .clipnorm = 1.0,
                                         .steps = {"0", "01", "*", "1", "3210", "0"}};
static const pcase C_GROWING_GLOBAL = {.adam = 1, .lr = 0.01, .global_clipnorm = 5.0, .acc = 2,
                                       .steps = {"0", "0", "1", "13", "*", "*", "3", "3210"}};
/* New gradient variables every step. */
static const pcase C_FRESH_SGD = {.lr = 0.1, .momentum = 0.5, .acc = 2, .clipnorm = 1.0,
                                  .use_ema = 1, .ema_momentum = 0.9, .ema_freq = 3,
                                  .fresh_grads = 1,
                                  .steps = {"*", "0123", "0123", "0b23", "*", "*", "30", "30",
                                            "*"}};

#define REF_TEST(name, c)                                                                    \
    static void name(const char *dev) { run_both(dev, &c, #name); }
REF_TEST(ref_clipnorm_sgd, C_CLIPNORM_SGD)
REF_TEST(ref_clipnorm_adam, C_CLIPNORM_ADAM)
REF_TEST(ref_global_clipnorm_sgd, C_GLOBAL_SGD)
REF_TEST(ref_global_clipnorm_adam, C_GLOBAL_ADAM)
REF_TEST(ref_global_clipnorm_not_reached, C_GLOBAL_LOOSE)
REF_TEST(ref_clipvalue_sgd, C_CLIPVALUE_SGD)
REF_TEST(ref_clipvalue_adam, C_CLIPVALUE_ADAM)
REF_TEST(ref_weight_decay_sgd, C_WD_SGD)
REF_TEST(ref_weight_decay_adam, C_WD_ADAM)
REF_TEST(ref_ema_sgd, C_EMA_SGD)
REF_TEST(ref_ema_adam, C_EMA_ADAM)
REF_TEST(ref_accumulation2_sgd, C_ACC2_SGD)
REF_TEST(ref_accumulation3_adam, C_ACC3_ADAM)
REF_TEST(ref_loss_scale_sgd, C_LSF_SGD)
REF_TEST(ref_loss_scale_accumulation_adam, C_LSF_ADAM_ACC)
REF_TEST(ref_null_and_subset_sgd, C_PLAIN_SGD)
REF_TEST(ref_combo_sgd, C_COMBO_SGD)
REF_TEST(ref_combo_adam, C_COMBO_ADAM)
REF_TEST(ref_combo_adam_clipvalue, C_COMBO_ADAM_CLIPVALUE)
REF_TEST(ref_multiblock_sgd, C_MULTIBLOCK_SGD)
REF_TEST(ref_multiblock_adam, C_MULTIBLOCK_ADAM)
REF_TEST(ref_fresh_gradients_sgd, C_FRESH_SGD)
REF_TEST(ref_schedule_accumulation_sgd, C_SCHEDULE_SGD)
REF_TEST(ref_schedule_adam, C_SCHEDULE_ADAM)
REF_TEST(ref_growing_steps_clipnorm, C_GROWING_CLIPNORM)
REF_TEST(ref_growing_steps_global_clipnorm, C_GROWING_GLOBAL)
REF_TEST(ref_mixed_dtypes_adam, C_MIXED_ADAM)
REF_TEST(ref_mixed_dtypes_sgd, C_MIXED_SGD)

Test(pipeline_host, ref_clipnorm_sgd) { ref_clipnorm_sgd(TU_HOST); }
Test(pipeline_pocl, ref_clipnorm_sgd) { ref_clipnorm_sgd(TU_POCL); }
Test(pipeline_host, ref_clipnorm_adam) { ref_clipnorm_adam(TU_HOST); }
Test(pipeline_pocl, ref_clipnorm_adam) { ref_clipnorm_adam(TU_POCL); }
Test(pipeline_host, ref_global_clipnorm_sgd) { ref_global_clipnorm_sgd(TU_HOST); }
Test(pipeline_pocl, ref_global_clipnorm_sgd) { ref_global_clipnorm_sgd(TU_POCL); }
Test(pipeline_host, ref_global_clipnorm_adam) { ref_global_clipnorm_adam(TU_HOST); }
Test(pipeline_pocl, ref_global_clipnorm_adam) { ref_global_clipnorm_adam(TU_POCL); }
Test(pipeline_host, ref_global_clipnorm_not_reached) { ref_global_clipnorm_not_reached(TU_HOST); }
Test(pipeline_pocl, ref_global_clipnorm_not_reached) { ref_global_clipnorm_not_reached(TU_POCL); }
Test(pipeline_host, ref_clipvalue_sgd) { ref_clipvalue_sgd(TU_HOST); }
Test(pipeline_pocl, ref_clipvalue_sgd) { ref_clipvalue_sgd(TU_POCL); }
Test(pipeline_host, ref_clipvalue_adam) { ref_clipvalue_adam(TU_HOST); }
Test(pipeline_pocl, ref_clipvalue_adam) { ref_clipvalue_adam(TU_POCL); }
Test(pipeline_host, ref_weight_decay_sgd) { ref_weight_decay_sgd(TU_HOST); }
Test(pipeline_pocl, ref_weight_decay_sgd) { ref_weight_decay_sgd(TU_POCL); }
Test(pipeline_host, ref_weight_decay_adam) { ref_weight_decay_adam(TU_HOST); }
Test(pipeline_pocl, ref_weight_decay_adam) { ref_weight_decay_adam(TU_POCL); }
Test(pipeline_host, ref_ema_sgd) { ref_ema_sgd(TU_HOST); }
Test(pipeline_pocl, ref_ema_sgd) { ref_ema_sgd(TU_POCL); }
Test(pipeline_host, ref_ema_adam) { ref_ema_adam(TU_HOST); }
Test(pipeline_pocl, ref_ema_adam) { ref_ema_adam(TU_POCL); }
Test(pipeline_host, ref_accumulation2_sgd) { ref_accumulation2_sgd(TU_HOST); }
Test(pipeline_pocl, ref_accumulation2_sgd) { ref_accumulation2_sgd(TU_POCL); }
Test(pipeline_host, ref_accumulation3_adam) { ref_accumulation3_adam(TU_HOST); }
Test(pipeline_pocl, ref_accumulation3_adam) { ref_accumulation3_adam(TU_POCL); }
Test(pipeline_host, ref_loss_scale_sgd) { ref_loss_scale_sgd(TU_HOST); }
Test(pipeline_pocl, ref_loss_scale_sgd) { ref_loss_scale_sgd(TU_POCL); }
Test(pipeline_host, ref_loss_scale_accumulation_adam) { ref_loss_scale_accumulation_adam(TU_HOST); }
Test(pipeline_pocl, ref_loss_scale_accumulation_adam) { ref_loss_scale_accumulation_adam(TU_POCL); }
Test(pipeline_host, ref_null_and_subset_sgd) { ref_null_and_subset_sgd(TU_HOST); }
Test(pipeline_pocl, ref_null_and_subset_sgd) { ref_null_and_subset_sgd(TU_POCL); }
Test(pipeline_host, ref_combo_sgd) { ref_combo_sgd(TU_HOST); }
Test(pipeline_pocl, ref_combo_sgd) { ref_combo_sgd(TU_POCL); }
Test(pipeline_host, ref_combo_adam) { ref_combo_adam(TU_HOST); }
Test(pipeline_pocl, ref_combo_adam) { ref_combo_adam(TU_POCL); }
Test(pipeline_host, ref_combo_adam_clipvalue) { ref_combo_adam_clipvalue(TU_HOST); }
Test(pipeline_pocl, ref_combo_adam_clipvalue) { ref_combo_adam_clipvalue(TU_POCL); }
Test(pipeline_host, ref_multiblock_sgd) { ref_multiblock_sgd(TU_HOST); }
Test(pipeline_pocl, ref_multiblock_sgd) { ref_multiblock_sgd(TU_POCL); }
Test(pipeline_host, ref_multiblock_adam) { ref_multiblock_adam(TU_HOST); }
Test(pipeline_pocl, ref_multiblock_adam) { ref_multiblock_adam(TU_POCL); }
Test(pipeline_host, ref_fresh_gradients_sgd) { ref_fresh_gradients_sgd(TU_HOST); }
Test(pipeline_pocl, ref_fresh_gradients_sgd) { ref_fresh_gradients_sgd(TU_POCL); }
Test(pipeline_host, ref_schedule_accumulation_sgd) { ref_schedule_accumulation_sgd(TU_HOST); }
Test(pipeline_pocl, ref_schedule_accumulation_sgd) { ref_schedule_accumulation_sgd(TU_POCL); }
Test(pipeline_host, ref_schedule_adam) { ref_schedule_adam(TU_HOST); }
Test(pipeline_pocl, ref_schedule_adam) { ref_schedule_adam(TU_POCL); }
Test(pipeline_host, ref_growing_steps_clipnorm) { ref_growing_steps_clipnorm(TU_HOST); }
Test(pipeline_pocl, ref_growing_steps_clipnorm) { ref_growing_steps_clipnorm(TU_POCL); }
Test(pipeline_host, ref_growing_steps_global_clipnorm) { ref_growing_steps_global_clipnorm(TU_HOST); }
Test(pipeline_pocl, ref_growing_steps_global_clipnorm) { ref_growing_steps_global_clipnorm(TU_POCL); }
Test(pipeline_host, ref_mixed_dtypes_adam) { ref_mixed_dtypes_adam(TU_HOST); }
Test(pipeline_pocl, ref_mixed_dtypes_adam) { ref_mixed_dtypes_adam(TU_POCL); }
Test(pipeline_host, ref_mixed_dtypes_sgd) { ref_mixed_dtypes_sgd(TU_HOST); }
Test(pipeline_pocl, ref_mixed_dtypes_sgd) { ref_mixed_dtypes_sgd(TU_POCL); }

/* clopt refuses global_clipnorm over variables of several dtypes at build (CLOPT_ERR_UNSUPPORTED,
 * naming both variables) and stays unbuilt. */
static void global_clipnorm_mixed_dtypes(const char *dev) {
    clopt_context *ctx = tu_context(dev);
    const int64_t n2[1] = {2};
    clopt_variable *v[2] = {var32(ctx, "a32", 1, n2, NULL),
                            tu_var(ctx, "b64", CLOPT_FLOAT64, 1, n2, NULL)};
    clopt_optimizer *o = make_opt(ctx, "SGD", "\"global_clipnorm\": 1.0");
    TU_ASSERT_STATUS(ctx, clopt_optimizer_build(o, v, 2), CLOPT_ERR_UNSUPPORTED);
    tu_assert_error_mentions(ctx, "'a32'");
    tu_assert_error_mentions(ctx, "'b64'");
    cr_assert_eq(clopt_optimizer_variable_count(o), 2);
    TU_ASSERT_STATUS(ctx, clopt_optimizer_apply(o, v, NULL, 2), CLOPT_ERR_NOT_BUILT);
    clopt_context_destroy(ctx);
}
Test(pipeline_host, global_clipnorm_mixed_dtypes) { global_clipnorm_mixed_dtypes(TU_HOST); }
Test(pipeline_pocl, global_clipnorm_mixed_dtypes) { global_clipnorm_mixed_dtypes(TU_POCL); }

/* global_clipnorm with an infinite gradient: N = inf gives scale = NaN in Keras's formula
 * (c * min(1/N, 1/c) + (N - N)), so every updated element becomes NaN (doc 1.5). */
static void global_clipnorm_inf(const char *dev) {
    clopt_context *ctx = tu_context(dev);
    const int64_t shape[1] = {3};
    const double init[3] = {1, 2, 3}, gi[3] = {INFINITY, 1, 1}, g2[3] = {1, 1, 1};
    clopt_variable *v = var32(ctx, "v", 1, shape, init), *w = var32(ctx, "w", 1, shape, init);
    clopt_variable *vars[2] = {v, w};
    clopt_variable *grads[2] = {var32(ctx, "gi", 1, shape, gi), var32(ctx, "g2", 1, shape, g2)};
    clopt_optimizer *o = make_opt(ctx, "SGD", "\"learning_rate\": 0.1, \"global_clipnorm\": 1.0");
    TU_OK(ctx, clopt_optimizer_apply(o, grads, vars, 2));
    for (int k = 0; k < 2; k++) {
        double *x = tu_read_f64(vars[k]);
        for (int j = 0; j < 3; j++)
            cr_assert(isnan(x[j]), "variable %d element %d is %g, want NaN", k, j, x[j]);
        free(x);
    }
    clopt_context_destroy(ctx);
}
Test(pipeline_host, global_clipnorm_inf) { global_clipnorm_inf(TU_HOST); }
Test(pipeline_pocl, global_clipnorm_inf) { global_clipnorm_inf(TU_POCL); }

/* A clipping value of 0 disables that mode (doc 1.5: "when truthy and > 0"). */
static void clip_zero_disables(const char *dev) {
    clopt_context *ctx = tu_context(dev);
    const int64_t shape[1] = {2};
    const double g100[2] = {100.0, -100.0}, neg[2] = {-100.0, 100.0};
    const char *cfgs[3] = {"\"clipnorm\": 0.0", "\"global_clipnorm\": 0.0", "\"clipvalue\": 0.0"};
    clopt_variable *g = var32(ctx, "grad", 1, shape, g100);
    for (int k = 0; k < 3; k++) {
        char cfg[128];
        snprintf(cfg, sizeof cfg, "\"learning_rate\": 1.0, %s", cfgs[k]);
        clopt_variable *v = var32(ctx, "variable", 1, shape, NULL);
        clopt_optimizer *o = make_opt(ctx, "SGD", cfg);
        TU_OK(ctx, clopt_optimizer_apply(o, &g, &v, 1));
        tu_assert_var_close(v, neg, 0, 0, cfgs[k]);
        clopt_optimizer_destroy(o);
        clopt_variable_destroy(v);
    }
    clopt_context_destroy(ctx);
}
Test(pipeline_host, clip_zero_disables) { clip_zero_disables(TU_HOST); }
Test(pipeline_pocl, clip_zero_disables) { clip_zero_disables(TU_POCL); }

/* ---------------------------------------------------------------------------------------------
 * 3. Failing calls change nothing */

/* An accumulating, EMA, clipping, decaying Adam after one accumulate-only step (non-zero
 * accumulators and averages). Every failing apply leaves every variable, every optimizer
 * variable (read with clopt_optimizer_variable_read) and both counters as they were; a twin
 * optimizer that never saw the failing calls ends bit-identical. */
static void failed_apply_changes_nothing(const char *dev) {
    clopt_context *ctx = tu_context(dev);
    clopt_context *other = tu_context(TU_HOST);
    const char *cfg = "\"learning_rate\": 0.01, \"gradient_accumulation_steps\": 2, "
                      "\"use_ema\": true, \"ema_momentum\": 0.9, \"ema_overwrite_frequency\": 2, "
                      "\"clipnorm\": 1.0, \"weight_decay\": 0.1, \"loss_scale_factor\": 4.0";
    const int64_t n3[1] = {3}, n5[1] = {5}, n4[1] = {4};
    const double a[3] = {1, -2, 3}, b[5] = {0.5, 0.25, -1, 2, 4}, ga[3] = {0.3, -0.2, 0.1},
                 gb[5] = {1, 2, 3, 4, 5};
    clopt_variable *v[2] = {var32(ctx, "a", 1, n3, a), var32(ctx, "b", 1, n5, b)};
    clopt_variable *t[2] = {var32(ctx, "ta", 1, n3, a), var32(ctx, "tb", 1, n5, b)};
    clopt_variable *g[2] = {var32(ctx, "ga", 1, n3, ga), var32(ctx, "gb", 1, n5, gb)};
    clopt_variable *bad_shape = var32(ctx, "bad_shape", 1, n4, NULL);
    clopt_variable *bad_dtype = tu_var(ctx, "bad_dtype", CLOPT_FLOAT64, 1, n5, NULL);
    clopt_variable *stranger = var32(ctx, "stranger", 1, n5, NULL);
    clopt_variable *foreign = var32(other, "foreign", 1, n5, NULL);
    clopt_optimizer *o = make_opt(ctx, "Adam", cfg), *twin = make_opt(ctx, "Adam", cfg);
    TU_OK(ctx, clopt_optimizer_apply(o, g, v, 2));
    TU_OK(ctx, clopt_optimizer_apply(twin, g, t, 2));

    const size_t nopt = clopt_optimizer_variable_count(o);
    double before[32][5], now[5];
    size_t cnt[32];
    cr_assert(nopt <= 32);
    for (size_t i = 0; i < nopt; i++) {
        clopt_variable *sv = NULL;
        TU_OK(ctx, clopt_optimizer_variable(o, i, NULL, NULL, &sv));
        cnt[i] = sv ? (size_t)clopt_variable_size(sv) : 1;
        TU_OK(ctx, clopt_optimizer_variable_read(o, i, before[i], cnt[i]));
    }
    tu_snapshot snap;
    tu_snapshot_take(&snap, o, v, 2);
    const int64_t raw = raw_iterations(o);

    struct {
        clopt_variable *g[2], *v[2];
        int vars_null;
        size_t n;
        clopt_status want;
        const char *what;
    } calls[] = {
        {{g[0], bad_shape}, {v[0], v[1]}, 0, 2, CLOPT_ERR_SHAPE_MISMATCH, "bad second shape"},
        {{g[0], bad_dtype}, {v[0], v[1]}, 0, 2, CLOPT_ERR_DTYPE_MISMATCH, "bad second dtype"},
        {{g[0], foreign}, {v[0], v[1]}, 0, 2, CLOPT_ERR_CONTEXT_MISMATCH, "foreign gradient"},
        {{g[0], g[1]}, {v[0], stranger}, 0, 2, CLOPT_ERR_UNKNOWN_VARIABLE, "unknown variable"},
        {{g[0], g[0]}, {v[0], v[0]}, 0, 2, CLOPT_ERR_INVALID_ARGUMENT, "duplicate variable"},
        {{NULL, NULL}, {v[0], v[1]}, 0, 2, CLOPT_ERR_NO_GRADIENTS, "all gradients NULL"},
        {{g[0], NULL}, {NULL, NULL}, 1, 1, CLOPT_ERR_LENGTH_MISMATCH, "built list, 1 gradient"},
        {{g[0], bad_shape}, {NULL, NULL}, 1, 2, CLOPT_ERR_SHAPE_MISMATCH, "built list, bad shape"},
    };
    for (size_t k = 0; k < sizeof calls / sizeof calls[0]; k++) {
        clopt_status s = clopt_optimizer_apply(o, calls[k].g, calls[k].vars_null ? NULL : calls[k].v,
                                               calls[k].n);
        cr_assert_eq(s, calls[k].want, "%s: got %s, want %s (%s)", calls[k].what,
                     clopt_status_name(s), clopt_status_name(calls[k].want),
                     clopt_context_last_error(ctx));
        tu_snapshot_assert_same(&snap, o, calls[k].what);
        cr_assert_eq(raw_iterations(o), raw, "%s: _iterations changed", calls[k].what);
        for (size_t i = 0; i < nopt; i++) {
            TU_OK(ctx, clopt_optimizer_variable_read(o, i, now, cnt[i]));
            for (size_t j = 0; j < cnt[i]; j++)
                cr_assert(now[j] == before[i][j] || (isnan(now[j]) && isnan(before[i][j])),
                          "%s: optimizer variable %zu element %zu changed", calls[k].what, i, j);
        }
    }
    tu_snapshot_free(&snap);
    /* Both go on, through an update step, then an accumulate-only step and an update step that
     * both overwrite the variables with their averages ((raw // 2 + 1) % 2 == 0). */
    for (int s = 0; s < 3; s++) {
        TU_OK(ctx, clopt_optimizer_apply(o, g, v, 2));
        TU_OK(ctx, clopt_optimizer_apply(twin, g, t, 2));
    }
    for (int k = 0; k < 2; k++) {
        size_t n1, n2;
        unsigned char *x = tu_read_bytes(v[k], &n1), *y = tu_read_bytes(t[k], &n2);
        cr_assert_eq(n1, n2);
        tu_assert_same_bytes(x, y, n1, "variable after the failed calls vs twin");
        free(x);
        free(y);
    }
    for (size_t i = 0; i < nopt; i++) {
        double y[5];
        TU_OK(ctx, clopt_optimizer_variable_read(o, i, now, cnt[i]));
        TU_OK(ctx, clopt_optimizer_variable_read(twin, i, y, cnt[i]));
        for (size_t j = 0; j < cnt[i]; j++)
            cr_assert(now[j] == y[j], "optimizer variable %zu element %zu differs from the twin",
                      i, j);
    }
    clopt_context_destroy(other);
    clopt_context_destroy(ctx);
}
Test(pipeline_host, failed_apply_changes_nothing) { failed_apply_changes_nothing(TU_HOST); }
Test(pipeline_pocl, failed_apply_changes_nothing) { failed_apply_changes_nothing(TU_POCL); }

/* A failing first apply on an unbuilt accumulating EMA optimizer builds nothing. */
static void failed_first_apply_builds_nothing(const char *dev) {
    clopt_context *ctx = tu_context(dev);
    const int64_t n3[1] = {3}, n4[1] = {4};
    const double a[3] = {1, 2, 3};
    clopt_variable *v[2] = {var32(ctx, "a", 1, n3, a), var32(ctx, "b", 1, n3, a)};
    clopt_variable *g[2] = {var32(ctx, "ga", 1, n3, a), var32(ctx, "bad", 1, n4, NULL)};
    clopt_optimizer *o =
        make_opt(ctx, "Adam", "\"gradient_accumulation_steps\": 3, \"use_ema\": true");
    tu_snapshot snap;
    tu_snapshot_take(&snap, o, v, 2);
    TU_ASSERT_STATUS(ctx, clopt_optimizer_apply(o, g, v, 2), CLOPT_ERR_SHAPE_MISMATCH);
    tu_snapshot_assert_same(&snap, o, "failed first apply");
    cr_assert_eq(clopt_optimizer_variable_count(o), 2, "the optimizer was built");
    TU_ASSERT_STATUS(ctx, clopt_optimizer_apply(o, g, NULL, 2), CLOPT_ERR_NOT_BUILT);
    TU_ASSERT_STATUS(ctx, clopt_optimizer_finalize_variable_values(o), CLOPT_ERR_NOT_BUILT);
    tu_snapshot_assert_same(&snap, o, "after NOT_BUILT calls");
    tu_snapshot_free(&snap);
    clopt_context_destroy(ctx);
}
Test(pipeline_host, failed_first_apply_builds_nothing) { failed_first_apply_builds_nothing(TU_HOST); }
Test(pipeline_pocl, failed_first_apply_builds_nothing) { failed_first_apply_builds_nothing(TU_POCL); }

/* exclude_from_weight_decay with an invalid pattern (after build) fails with BAD_VALUE naming
 * the pattern, and adds nothing: a valid pattern in the same call is not kept, and decay goes
 * on for every variable (checked against a twin without the call). */
static void failed_exclude_changes_nothing(const char *dev) {
    clopt_context *ctx = tu_context(dev);
    const int64_t n3[1] = {3};
    const double a[3] = {1, 2, 3}, ga[3] = {0.5, 0.5, 0.5};
    clopt_variable *v = var32(ctx, "dense/bias", 1, n3, a), *t = var32(ctx, "twin/bias", 1, n3, a);
    clopt_variable *g = var32(ctx, "g", 1, n3, ga);
    const char *cfg = "\"learning_rate\": 0.5, \"weight_decay\": 0.5";
    clopt_optimizer *o = make_opt(ctx, "SGD", cfg), *twin = make_opt(ctx, "SGD", cfg);
    TU_OK(ctx, clopt_optimizer_apply(o, &g, &v, 1));
    TU_OK(ctx, clopt_optimizer_apply(twin, &g, &t, 1));
    const char *names[2] = {"bias", "dense/(kernel"};
    TU_ASSERT_STATUS(ctx, clopt_optimizer_exclude_from_weight_decay(o, &v, 1, names, 2),
                     CLOPT_ERR_BAD_VALUE);
    tu_assert_error_mentions(ctx, "dense/(kernel");
    TU_OK(ctx, clopt_optimizer_apply(o, &g, &v, 1));
    TU_OK(ctx, clopt_optimizer_apply(twin, &g, &t, 1));
    double *x = tu_read_f64(v), *y = tu_read_f64(t);
    tu_assert_same_bytes(x, y, 3 * sizeof *x, "decayed like the twin");
    free(x);
    free(y);
    clopt_context_destroy(ctx);
}
Test(pipeline_host, failed_exclude_changes_nothing) { failed_exclude_changes_nothing(TU_HOST); }
Test(pipeline_pocl, failed_exclude_changes_nothing) { failed_exclude_changes_nothing(TU_POCL); }

/* ---------------------------------------------------------------------------------------------
 * 4. Constructor errors (doc 1.1 steps 5 to 7) */

static void expect_config(clopt_context *ctx, const char *cfg, clopt_status want,
                          const char *mention1, const char *mention2) {
    char buf[1024];
    snprintf(buf, sizeof buf, "{\"class_name\": \"SGD\", \"config\": {%s}}", cfg);
    clopt_optimizer *o = NULL;
    clopt_status s = clopt_optimizer_from_config(ctx, buf, &o);
    cr_assert_eq(s, want, "%s: got %s, want %s (%s)", cfg, clopt_status_name(s),
                 clopt_status_name(want), clopt_context_last_error(ctx));
    if (want != CLOPT_OK) {
        cr_assert_null(o, "%s: out written on failure", cfg);
        if (mention1) tu_assert_error_mentions(ctx, mention1);
        if (mention2) tu_assert_error_mentions(ctx, mention2);
    } else {
        clopt_optimizer_destroy(o);
    }
}

static void config_errors(const char *dev) {
    clopt_context *ctx = tu_context(dev);
    /* Step 7: more than one of clipnorm, clipvalue and global_clipnorm non-None. */
    expect_config(ctx, "\"clipnorm\": 1.0, \"global_clipnorm\": 1.0", CLOPT_ERR_BAD_VALUE,
                  "'clipnorm'", "'global_clipnorm'");
    expect_config(ctx, "\"clipnorm\": 0.1, \"clipvalue\": 0.1", CLOPT_ERR_BAD_VALUE,
                  "'clipnorm'", "'clipvalue'");
    expect_config(ctx, "\"clipvalue\": 0.1, \"global_clipnorm\": 0.1", CLOPT_ERR_BAD_VALUE,
                  "'clipvalue'", "'global_clipnorm'");
    /* 0 is "set" for this rule (non-None), although 0 disables clipping. */
    expect_config(ctx, "\"clipnorm\": 0.0, \"clipvalue\": 1.0", CLOPT_ERR_BAD_VALUE, "'clipnorm'",
                  NULL);
    expect_config(ctx, "\"clipnorm\": null, \"clipvalue\": 1.0", CLOPT_OK, NULL, NULL);
    /* Step 5: a truthy gradient_accumulation_steps < 2; 0 and None mean off. */
    expect_config(ctx, "\"gradient_accumulation_steps\": 1", CLOPT_ERR_BAD_VALUE,
                  "'gradient_accumulation_steps'", ">= 2");
    expect_config(ctx, "\"gradient_accumulation_steps\": -1", CLOPT_ERR_BAD_VALUE,
                  "'gradient_accumulation_steps'", NULL);
    expect_config(ctx, "\"gradient_accumulation_steps\": 0", CLOPT_OK, NULL, NULL);
    expect_config(ctx, "\"gradient_accumulation_steps\": null", CLOPT_OK, NULL, NULL);
    expect_config(ctx, "\"gradient_accumulation_steps\": 2", CLOPT_OK, NULL, NULL);
    /* Step 6, only with use_ema: ema_momentum in [0, 1]. */
    expect_config(ctx, "\"use_ema\": true, \"ema_momentum\": 1.5", CLOPT_ERR_BAD_VALUE,
                  "'ema_momentum'", NULL);
    expect_config(ctx, "\"use_ema\": true, \"ema_momentum\": -0.1", CLOPT_ERR_BAD_VALUE,
                  "'ema_momentum'", NULL);
    expect_config(ctx, "\"use_ema\": true, \"ema_momentum\": 1.0", CLOPT_OK, NULL, NULL);
    expect_config(ctx, "\"use_ema\": false, \"ema_momentum\": 1.5", CLOPT_OK, NULL, NULL);
    /* Step 6: a truthy ema_overwrite_frequency that is not an int >= 1. 0 is falsy in Python, so
     * Keras accepts it (no overwrite): see config_ema_overwrite_frequency_zero. */
    expect_config(ctx, "\"use_ema\": true, \"ema_overwrite_frequency\": 0", CLOPT_OK, NULL, NULL);
    expect_config(ctx, "\"use_ema\": true, \"ema_overwrite_frequency\": -1", CLOPT_ERR_BAD_VALUE,
                  "'ema_overwrite_frequency'", NULL);
    expect_config(ctx, "\"use_ema\": false, \"ema_overwrite_frequency\": -1", CLOPT_OK, NULL,
                  NULL);
    {
        clopt_optimizer *o = NULL;
        clopt_status s = clopt_optimizer_from_config(
            ctx,
            "{\"class_name\": \"SGD\", \"config\": {\"use_ema\": true, "
            "\"ema_overwrite_frequency\": 2.5}}",
            &o);
        cr_assert(s == CLOPT_ERR_BAD_TYPE || s == CLOPT_ERR_BAD_VALUE,
                  "ema_overwrite_frequency 2.5: got %s", clopt_status_name(s));
        tu_assert_error_mentions(ctx, "'ema_overwrite_frequency'");
    }
    /* exclude_from_weight_decay: a pattern that does not compile. */
    clopt_optimizer *o = make_opt(ctx, "SGD", "\"weight_decay\": 0.1");
    const char *bad[1] = {"("};
    TU_ASSERT_STATUS(ctx, clopt_optimizer_exclude_from_weight_decay(o, NULL, 0, bad, 1),
                     CLOPT_ERR_BAD_VALUE);
    tu_assert_error_mentions(ctx, "exclude_from_weight_decay");
    tu_assert_error_mentions(ctx, "'('");
    clopt_context_destroy(ctx);
}
Test(pipeline_host, config_errors) { config_errors(TU_HOST); }
Test(pipeline_pocl, config_errors) { config_errors(TU_POCL); }

/* ema_overwrite_frequency 0 with use_ema is accepted and means "never overwrite": the variables
 * follow plain SGD while the average trails them. SGD(learning_rate=1.0, ema_momentum=0.5) on
 * [4] with gradients of 1: w = 3, 2, 1; average = 3, 2.5, 1.75. */
static void config_ema_overwrite_frequency_zero(const char *dev) {
    clopt_context *ctx = tu_context(dev);
    const int64_t n1[1] = {1};
    const double four = 4, one = 1;
    clopt_variable *v = var32(ctx, "v", 1, n1, &four), *g = var32(ctx, "g", 1, n1, &one);
    clopt_optimizer *o = make_opt(ctx, "SGD",
                                  "\"learning_rate\": 1.0, \"use_ema\": true, "
                                  "\"ema_momentum\": 0.5, \"ema_overwrite_frequency\": 0");
    const double w[3] = {3, 2, 1}, avg[3] = {3, 2.5, 1.75};
    for (int s = 0; s < 3; s++) {
        TU_OK(ctx, clopt_optimizer_apply(o, &g, &v, 1));
        tu_assert_var_close(v, &w[s], 0, 0, "variable");
        assert_optvar(o, "v_average", &avg[s], 1, 0, 0, "average");
    }
    TU_OK(ctx, clopt_optimizer_finalize_variable_values(o));
    tu_assert_var_close(v, &avg[2], 0, 0, "after finalize");
    clopt_context_destroy(ctx);
}
Test(pipeline_host, config_ema_overwrite_frequency_zero) {
    config_ema_overwrite_frequency_zero(TU_HOST);
}
Test(pipeline_pocl, config_ema_overwrite_frequency_zero) {
    config_ema_overwrite_frequency_zero(TU_POCL);
}
