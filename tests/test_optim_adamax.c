/* Adamax: Keras's published numbers, the update rule, host versus OpenCL over every
 * apply-pipeline option, bad hyperparameters, variable list and config. */
#include "optim_more.h"

/* ---- Keras's numbers: keras/src/optimizers/adamax_test.py (keras-team/keras) ---- */

static const double single_step[4] = {0.5, 1.5, 2.5, 3.5};
#define SINGLE_STEP_JSON "{\"class_name\": \"Adamax\", \"config\": {\"learning_rate\": 0.5}}"

static const double golden[5][10] = {
    {0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8},
    {0.6827, 0.6873, 0.6888, 0.6896, 0.6901, 0.6904, 0.6906, 0.6908, 0.6909, 0.691},
    {0.5333, 0.5407, 0.5431, 0.5444, 0.5451, 0.5456, 0.546, 0.5462, 0.5464, 0.5466},
    {0.368, 0.3773, 0.3804, 0.382, 0.3829, 0.3835, 0.384, 0.3843, 0.3846, 0.3848},
    {0.1933, 0.204, 0.2076, 0.2094, 0.2105, 0.2112, 0.2117, 0.2121, 0.2124, 0.2126}};
#define GOLDEN_JSON                                                                      \
    "{\"class_name\": \"Adamax\", \"config\": {\"learning_rate\": 0.2, \"beta_1\": 0.85, " \
    "\"beta_2\": 0.95, \"epsilon\": 1e-6}}"

Test(adamax_host, keras_single_step) {
    om_keras_single_step_f32_f64(TU_HOST, SINGLE_STEP_JSON, single_step);
}
Test(adamax_pocl, keras_single_step) {
    om_keras_single_step_f32_f64(TU_POCL, SINGLE_STEP_JSON, single_step);
}
Test(adamax_host, keras_golden) {
    om_keras_golden_f32_f64(TU_HOST, GOLDEN_JSON, golden);
}
Test(adamax_pocl, keras_golden) {
    om_keras_golden_f32_f64(TU_POCL, GOLDEN_JSON, golden);
}
Test(adamax_host, keras_weight_decay) { om_keras_weight_decay(TU_HOST, "Adamax"); }
Test(adamax_pocl, keras_weight_decay) { om_keras_weight_decay(TU_POCL, "Adamax"); }

/* ---- the update rule (semantics doc section 3), ported independently ---- */

enum { BETA_1, BETA_2, EPSILON };

static void ref(const double *hp, double lr, int64_t t, double g, double *w, double *s) {
    s[0] += (g - s[0]) * (1 - hp[BETA_1]);
    s[1] = fmax(hp[BETA_2] * s[1], fabs(g));
    *w -= lr * s[0] / ((1 - pow(hp[BETA_1], (double)t)) * (s[1] + hp[EPSILON]));
}

static void formula(const char *dev, double b1, double b2, double eps) {
    char json[256];
    snprintf(json, sizeof json,
             "{\"class_name\": \"Adamax\", \"config\": {\"learning_rate\": 0.05, \"beta_1\": "
             "%.17g, \"beta_2\": %.17g, \"epsilon\": %.17g}}",
             b1, b2, eps);
    const double hp[3] = {b1, b2, eps}, init[2] = {0, 0};
    const char *names[2] = {"momentum", "norm"};
    om_formula_check(dev, json, (double)0.05f, hp, ref, 2, names, init);
}

static void formula_all(const char *dev) {
    formula(dev, 0.9, 0.999, 1e-7);
    formula(dev, 0.85, 0.95, 1e-6);
    formula(dev, 0.0, 0.5, 1e-3);
}
Test(adamax_host, update_rule) { formula_all(TU_HOST); }
Test(adamax_pocl, update_rule) { formula_all(TU_POCL); }

/* ---- host versus OpenCL, every pipeline option, float32 and float64 ---- */

Test(adamax_pocl, agrees_with_host_float32) {
    om_agree_dtype(TU_POCL, CLOPT_FLOAT32, "Adamax", "\"learning_rate\": 0.02");
}
Test(adamax_pocl, agrees_with_host_float64) {
    om_agree_dtype(TU_POCL, CLOPT_FLOAT64, "Adamax", "\"learning_rate\": 0.02");
}
Test(adamax_pocl, agrees_with_host_betas_float32) {
    om_agree_dtype(TU_POCL, CLOPT_FLOAT32, "Adamax",
                 "\"learning_rate\": 0.02, \"beta_1\": 0.8, \"beta_2\": 0.9, \"epsilon\": 1e-5");
}
Test(adamax_pocl, agrees_with_host_betas_float64) {
    om_agree_dtype(TU_POCL, CLOPT_FLOAT64, "Adamax",
                 "\"learning_rate\": 0.02, \"beta_1\": 0.8, \"beta_2\": 0.9, \"epsilon\": 1e-5");
}

/* ---- hyperparameters ---- */

Test(adamax_host, bad_values_are_rejected) {
    static const om_bad bad[] = {
        {"\"beta_1\": -0.1", "beta_1"},
        {"\"beta_1\": 1.0", "beta_1"}, /* 1 - beta_1^t would be 0 */
        {"\"beta_2\": 1.5", "beta_2"},
        {"\"beta_2\": -1.0", "beta_2"},
        {"\"epsilon\": -1e-7", "epsilon"},
    };
    om_bad_values("Adamax", bad, sizeof bad / sizeof *bad);
}

Test(adamax_host, boundary_values_are_accepted) {
    static const char *const good[] = {"\"beta_1\": 0.0", "\"beta_2\": 0.0", "\"beta_2\": 1.0",
                                       "\"epsilon\": 0.0"};
    om_good_values("Adamax", good, sizeof good / sizeof *good);
}

Test(adamax_host, config_keys_in_keras_order) {
    static const char *const keys[] = {"beta_1", "beta_2", "epsilon", NULL};
    om_config_keys("Adamax", "adamax", keys);
}

/* Keras 3.16, keras/src/optimizers/adamax.py, Adamax.build: add_optimizer_variables(var_list,
 * ["momentum", "norm"]) (m and u), interleaved per variable; named by base_optimizer.py's
 * add_variable_from_reference "<path, '/' -> '_'>_<name>". */
Test(adamax_host, variable_list_in_keras_order) {
    static const char *const plain[] = {"iteration",          "learning_rate",
                                        "dense_kernel_momentum", "dense_kernel_norm",
                                        "dense_bias_momentum",   "dense_bias_norm",
                                        NULL};
    om_variable_list("{\"class_name\": \"Adamax\", \"config\": {}}", plain);
    om_variable_list_with_ema_and_accumulation("Adamax", NULL, plain + 2, 2);
}
