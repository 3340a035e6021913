/* Adagrad: Keras's published numbers, the update rule, host versus OpenCL over every
 * apply-pipeline option, bad hyperparameters, variable list and config. */
#include "optim_more.h"

/* ---- Keras's numbers: keras/src/optimizers/adagrad_test.py (keras-team/keras) ---- */

static const double single_step[4] = {0.5233, 1.5007, 2.5005, 3.5061};
#define SINGLE_STEP_JSON "{\"class_name\": \"Adagrad\", \"config\": {\"learning_rate\": 0.5}}"

static const double golden[5][10] = {
    {0.9963, 0.9963, 0.9963, 0.9963, 0.9963, 0.9963, 0.9963, 0.9963, 0.9963, 0.9963},
    {0.9604, 0.9278, 0.9003, 0.8784, 0.8615, 0.8487, 0.8388, 0.8313, 0.8255, 0.8209},
    {0.9251, 0.8629, 0.8137, 0.7768, 0.7497, 0.7298, 0.7151, 0.704, 0.6956, 0.6891},
    {0.8903, 0.8012, 0.7342, 0.6862, 0.6521, 0.6277, 0.6099, 0.5967, 0.5867, 0.579},
    {0.856, 0.7422, 0.6604, 0.6037, 0.5644, 0.5367, 0.5168, 0.5021, 0.491, 0.4825}};
#define GOLDEN_JSON                                                                      \
    "{\"class_name\": \"Adagrad\", \"config\": {\"learning_rate\": 0.2, "               \
    "\"initial_accumulator_value\": 0.3, \"epsilon\": 1e-6}}"

Test(adagrad_host, keras_single_step) {
    om_keras_single_step_f32_f64(TU_HOST, SINGLE_STEP_JSON, single_step);
}
Test(adagrad_pocl, keras_single_step) {
    om_keras_single_step_f32_f64(TU_POCL, SINGLE_STEP_JSON, single_step);
}
Test(adagrad_host, keras_golden) {
    om_keras_golden_f32_f64(TU_HOST, GOLDEN_JSON, golden);
}
Test(adagrad_pocl, keras_golden) {
    om_keras_golden_f32_f64(TU_POCL, GOLDEN_JSON, golden);
}
Test(adagrad_host, keras_weight_decay) { om_keras_weight_decay(TU_HOST, "Adagrad"); }
Test(adagrad_pocl, keras_weight_decay) { om_keras_weight_decay(TU_POCL, "Adagrad"); }

/* ---- the update rule (semantics doc section 3), ported independently ---- */

enum { INITIAL_ACCUMULATOR_VALUE, EPSILON };

static void ref(const double *hp, double lr, int64_t t, double g, double *w, double *s) {
    (void)t;
    s[0] += g * g;
    *w -= lr * g / sqrt(s[0] + hp[EPSILON]);
}

static void formula(const char *dev, double init, double eps) {
    char json[256];
    snprintf(json, sizeof json,
             "{\"class_name\": \"Adagrad\", \"config\": {\"learning_rate\": 0.05, "
             "\"initial_accumulator_value\": %.17g, \"epsilon\": %.17g}}",
             init, eps);
    const double hp[2] = {init, eps};
    const char *names[1] = {"accumulator"};
    om_formula_check(dev, json, (double)0.05f, hp, ref, 1, names, &init);
}

static void formula_all(const char *dev) {
    formula(dev, 0.1, 1e-7);
    formula(dev, 0.0, 1e-7);
    formula(dev, 2.5, 1e-3);
}
Test(adagrad_host, update_rule) { formula_all(TU_HOST); }
Test(adagrad_pocl, update_rule) { formula_all(TU_POCL); }

/* The accumulators start at initial_accumulator_value (Keras's Constant initializer). */
static void initial_accumulator(const char *dev) {
    clopt_context *ctx = tu_context(dev);
    const int64_t n = 300;
    clopt_variable *v[2] = {tu_var_f32(ctx, "a", n, NULL), tu_var_f64(ctx, "b", 1, NULL)};
    clopt_optimizer *o = tu_optimizer(
        ctx, "{\"class_name\": \"Adagrad\", \"config\": {\"initial_accumulator_value\": 0.3}}");
    TU_OK(ctx, clopt_optimizer_build(o, v, 2));
    double want[300];
    for (int i = 0; i < 300; i++) want[i] = (double)0.3f;
    tu_assert_var_close(tu_slot(o, "a_accumulator"), want, 0, 0, "a_accumulator");
    want[0] = 0.3;
    tu_assert_var_close(tu_slot(o, "b_accumulator"), want, 0, 0, "b_accumulator");
    clopt_context_destroy(ctx);
}
Test(adagrad_host, initial_accumulator_value) { initial_accumulator(TU_HOST); }
Test(adagrad_pocl, initial_accumulator_value) { initial_accumulator(TU_POCL); }

/* ---- host versus OpenCL, every pipeline option, float32 and float64 ---- */

Test(adagrad_pocl, agrees_with_host_float32) {
    om_agree_dtype(TU_POCL, CLOPT_FLOAT32, "Adagrad", "\"learning_rate\": 0.05");
}
Test(adagrad_pocl, agrees_with_host_float64) {
    om_agree_dtype(TU_POCL, CLOPT_FLOAT64, "Adagrad", "\"learning_rate\": 0.05");
}
Test(adagrad_pocl, agrees_with_host_initial_value_float32) {
    om_agree_dtype(TU_POCL, CLOPT_FLOAT32, "Adagrad",
                 "\"learning_rate\": 0.05, \"initial_accumulator_value\": 0.5, \"epsilon\": 1e-5");
}
Test(adagrad_pocl, agrees_with_host_initial_value_float64) {
    om_agree_dtype(TU_POCL, CLOPT_FLOAT64, "Adagrad",
                 "\"learning_rate\": 0.05, \"initial_accumulator_value\": 0.5, \"epsilon\": 1e-5");
}

/* ---- hyperparameters ---- */

Test(adagrad_host, bad_values_are_rejected) {
    static const om_bad bad[] = {
        {"\"initial_accumulator_value\": -0.1", "initial_accumulator_value"},
        {"\"epsilon\": -1.0", "epsilon"},
        {"\"gradient_accumulation_steps\": 1", "gradient_accumulation_steps"},
    };
    om_bad_values("Adagrad", bad, sizeof bad / sizeof *bad);
}

Test(adagrad_host, boundary_values_are_accepted) {
    static const char *const good[] = {"\"initial_accumulator_value\": 0.0",
                                       "\"epsilon\": 0.0"};
    om_good_values("Adagrad", good, sizeof good / sizeof *good);
}

Test(adagrad_host, config_keys_in_keras_order) {
    static const char *const keys[] = {"initial_accumulator_value", "epsilon", NULL};
    om_config_keys("Adagrad", "adagrad", keys);
}

/* Keras 3.16, keras/src/optimizers/adagrad.py, Adagrad.build: add_optimizer_variables(var_list,
 * "accumulator", initializer=Constant(initial_accumulator_value)); named by base_optimizer.py's
 * add_variable_from_reference "<path, '/' -> '_'>_<name>". */
Test(adagrad_host, variable_list_in_keras_order) {
    static const char *const plain[] = {"iteration", "learning_rate", "dense_kernel_accumulator",
                                        "dense_bias_accumulator", NULL};
    om_variable_list("{\"class_name\": \"Adagrad\", \"config\": {}}", plain);
    om_variable_list_with_ema_and_accumulation("Adagrad", NULL, plain + 2, 4);
}
