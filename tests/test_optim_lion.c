/* Lion: Keras's published numbers, the update rule, host versus OpenCL over every apply-pipeline
 * option, Keras's beta_1 check, variable list and config.
 *
 * Keras's numbers: keras-team/keras keras/src/optimizers/lion_test.py (Keras 3):
 * test_single_step, test_correctness_with_golden, test_weight_decay and test_invalid_beta_1,
 * with that file's tolerances (test_util.h). */
#include "optim_more.h"
#include "optim_varlist.h"

static const double single_step[4] = {0.5, 1.5, 2.5, 3.5};
#define SINGLE_STEP_JSON "{\"class_name\": \"Lion\", \"config\": {\"learning_rate\": 0.5}}"

static const double golden[5][10] = {
#define ROW(x) {x, x, x, x, x, x, x, x, x, x}
    ROW(0.999), ROW(0.998), ROW(0.997), ROW(0.996), ROW(0.995),
#undef ROW
};
#define GOLDEN_JSON "{\"class_name\": \"Lion\", \"config\": {}}"

Test(lion_host, keras_single_step) {
    om_keras_single_step_f32_f64(TU_HOST, SINGLE_STEP_JSON, single_step);
}
Test(lion_pocl, keras_single_step) {
    om_keras_single_step_f32_f64(TU_POCL, SINGLE_STEP_JSON, single_step);
}
Test(lion_host, keras_golden) {
    om_keras_golden_f32_f64(TU_HOST, GOLDEN_JSON, golden);
}
Test(lion_pocl, keras_golden) {
    om_keras_golden_f32_f64(TU_POCL, GOLDEN_JSON, golden);
}
Test(lion_host, keras_weight_decay) { om_keras_weight_decay(TU_HOST, "Lion"); }
Test(lion_pocl, keras_weight_decay) { om_keras_weight_decay(TU_POCL, "Lion"); }

/* ---- the update rule (semantics doc section 3), ported independently ---- */

enum { BETA_1, BETA_2 };

static void ref(const double *hp, double lr, int64_t t, double g, double *w, double *s) {
    (void)t;
    const double x = hp[BETA_1] * s[0] + (1 - hp[BETA_1]) * g;
    *w -= lr * (x > 0 ? 1.0 : x < 0 ? -1.0 : 0.0);
    s[0] = hp[BETA_2] * s[0] + (1 - hp[BETA_2]) * g;
}

static void formula(const char *dev, double b1, double b2) {
    char json[256];
    snprintf(json, sizeof json,
             "{\"class_name\": \"Lion\", \"config\": {\"learning_rate\": 0.05, \"beta_1\": %.17g, "
             "\"beta_2\": %.17g}}",
             b1, b2);
    const double hp[2] = {b1, b2};
    const char *names[1] = {"momentum"};
    const double init[1] = {0};
    om_formula_check(dev, json, (double)0.05f, hp, ref, 1, names, init);
}

static void formula_all(const char *dev) {
    formula(dev, 0.9, 0.99);
    formula(dev, 0.5, 0.67);
    formula(dev, 1.0, 0.9);  /* beta_1 = 1: the sign of the old momentum */
    formula(dev, 0.3, 1.5);  /* beta_2 is not checked */
}
Test(lion_host, update_rule) { formula_all(TU_HOST); }
Test(lion_pocl, update_rule) { formula_all(TU_POCL); }

/* sign(0) = 0: a zero gradient on a zero momentum leaves the variable alone. */
static void zero_gradient(const char *dev) {
    clopt_context *ctx = tu_context(dev);
    const int64_t n = 3;
    const float w0[3] = {1, -2, 3};
    clopt_variable *w = tu_var_f32(ctx, "w", n, w0), *g = tu_var_f32(ctx, "g", n, NULL);
    clopt_optimizer *o = tu_optimizer(ctx, SINGLE_STEP_JSON);
    TU_OK(ctx, clopt_optimizer_apply(o, &g, &w, 1));
    const double want[3] = {1, -2, 3};
    tu_assert_var_close(w, want, 0, 0, "w");
    clopt_context_destroy(ctx);
}
Test(lion_host, sign_of_zero_is_zero) { zero_gradient(TU_HOST); }
Test(lion_pocl, sign_of_zero_is_zero) { zero_gradient(TU_POCL); }

/* ops.sign(NaN) is NaN in Keras: a NaN gradient makes the variable NaN instead of leaving it. */
static void nan_gradient(const char *dev, clopt_dtype dtype) {
    clopt_context *ctx = tu_context(dev);
    const int64_t n = 3;
    const double w0[3] = {1, -2, 3}, g0[3] = {NAN, 1, -1};
    clopt_variable *w = tu_var_from_f64(ctx, "w", dtype, 1, &n, w0);
    clopt_variable *g = tu_var_from_f64(ctx, "g", dtype, 1, &n, g0);
    clopt_optimizer *o = tu_optimizer(ctx, SINGLE_STEP_JSON);
    TU_OK(ctx, clopt_optimizer_apply(o, &g, &w, 1));
    double *got = tu_read_f64(w);
    cr_assert(isnan(got[0]), "w[0] = %g, want NaN", got[0]);
    const double want[2] = {-2.5, 3.5};
    tu_assert_close(got + 1, want, 2, 0, 0, "w[1:]");
    free(got);
    clopt_context_destroy(ctx);
}
Test(lion_host, sign_of_nan_is_nan) {
    nan_gradient(TU_HOST, CLOPT_FLOAT32);
    nan_gradient(TU_HOST, CLOPT_FLOAT64);
}
Test(lion_pocl, sign_of_nan_is_nan) {
    nan_gradient(TU_POCL, CLOPT_FLOAT32);
    nan_gradient(TU_POCL, CLOPT_FLOAT64);
}

/* ---- host versus OpenCL, every pipeline option, float32 and float64 ---- */

Test(lion_pocl, agrees_with_host) { om_agree_all(TU_POCL, "Lion", "\"learning_rate\": 0.01"); }
Test(lion_pocl, agrees_with_host_other_betas) {
    om_agree_all(TU_POCL, "Lion", "\"learning_rate\": 0.003, \"beta_1\": 0.5, \"beta_2\": 0.67");
}

/* ---- hyperparameters, variable list, config ---- */

/* Keras's test_invalid_beta_1, with its message. */
Test(lion_host, keras_invalid_beta_1) {
    static const char *const values[] = {"-0.1", "0.0", "1.1"};
    clopt_context *ctx = tu_context(TU_HOST);
    for (int i = 0; i < 3; i++) {
        char cfg[64], msg[256];
        snprintf(cfg, sizeof cfg, "\"beta_1\": %s", values[i]);
        clopt_optimizer *o = NULL;
        TU_ASSERT_STATUS(ctx, clopt_optimizer_from_config(ctx, om_json("Lion", cfg, NULL, NULL), &o),
                         CLOPT_ERR_BAD_VALUE);
        cr_assert_null(o);
        snprintf(msg, sizeof msg,
                 "Argument `beta_1` must be in the [0, 1] range. Otherwise, the optimizer "
                 "degenerates to SignSGD. Received: beta_1=%s.",
                 values[i]);
        tu_assert_error_mentions(ctx, msg);
    }
    clopt_context_destroy(ctx);
    static const om_bad bad[] = {{"\"beta_1\": 2.0", "beta_1"}, {"\"beta_1\": -1e-300", "beta_1"}};
    om_bad_values("Lion", bad, sizeof bad / sizeof *bad);
}

Test(lion_host, boundary_values_are_accepted) {
    static const char *const good[] = {"\"beta_1\": 1.0", "\"beta_1\": 1e-9", "\"beta_2\": -3.0",
                                       "\"beta_2\": 7.0"};
    om_good_values("Lion", good, sizeof good / sizeof *good);
}

Test(lion_host, config_keys_in_keras_order) {
    static const char *const keys[] = {"beta_1", "beta_2", NULL};
    om_config_keys("Lion", "lion", keys);
}

/* Keras 3.16, keras/src/optimizers/lion.py, Lion.build: add_optimizer_variables(var_list,
 * "momentum"); named by base_optimizer.py's add_variable_from_reference "<path, '/' ->
 * '_'>_<name>". */
Test(lion_host, variable_list_in_keras_order) {
    static const ovl_entry plain[] = {{"iteration", 0},
                                      {"learning_rate", 0},
                                      {"dense_kernel_momentum", 6},
                                      {"dense_bias_momentum", 2},
                                      {NULL, 0}};
    ovl_check("{\"class_name\": \"Lion\", \"config\": {}}", plain);
    ovl_check_with_ema_and_accumulation("Lion", NULL, plain + 2, 2);
}
