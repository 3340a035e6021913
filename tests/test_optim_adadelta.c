/* Adadelta: Keras's published numbers, the update rule, host versus OpenCL over every
 * apply-pipeline option, bad hyperparameters, variable list and config. */
#include "optim_more.h"

/* ---- Keras's numbers: keras/src/optimizers/adadelta_test.py (keras-team/keras) ---- */

static const double single_step[4] = {0.9993, 1.9993, 2.9993, 3.9993};
#define SINGLE_STEP_JSON "{\"class_name\": \"Adadelta\", \"config\": {\"learning_rate\": 0.5}}"

static const double golden[5][10] = {
#define ROW(x) {x, x, x, x, x, x, x, x, x, x}
    ROW(0.9978), ROW(0.9947), ROW(0.9915), ROW(0.9882), ROW(0.9849),
#undef ROW
};
#define GOLDEN_JSON                                                                      \
    "{\"class_name\": \"Adadelta\", \"config\": {\"learning_rate\": 1.0, \"rho\": 0.8, " \
    "\"epsilon\": 1e-6}}"

Test(adadelta_host, keras_single_step) {
    om_keras_single_step_f32_f64(TU_HOST, SINGLE_STEP_JSON, single_step);
}
Test(adadelta_pocl, keras_single_step) {
    om_keras_single_step_f32_f64(TU_POCL, SINGLE_STEP_JSON, single_step);
}
Test(adadelta_host, keras_golden) {
    om_keras_golden_f32_f64(TU_HOST, GOLDEN_JSON, golden);
}
Test(adadelta_pocl, keras_golden) {
    om_keras_golden_f32_f64(TU_POCL, GOLDEN_JSON, golden);
}
Test(adadelta_host, keras_weight_decay) { om_keras_weight_decay(TU_HOST, "Adadelta"); }
Test(adadelta_pocl, keras_weight_decay) { om_keras_weight_decay(TU_POCL, "Adadelta"); }

/* ---- the update rule (semantics doc section 3), ported independently ---- */

enum { RHO, EPSILON };

static void ref(const double *hp, double lr, int64_t t, double g, double *w, double *s) {
    (void)t;
    const double rho = hp[RHO], eps = hp[EPSILON];
    s[0] = rho * s[0] + (1 - rho) * g * g;
    const double delta = -sqrt(s[1] + eps) * g / sqrt(s[0] + eps); /* the old Ex */
    s[1] = rho * s[1] + (1 - rho) * delta * delta;
    *w += lr * delta;
}

static void formula(const char *dev, double lr, double rho, double eps) {
    char json[256];
    snprintf(json, sizeof json,
             "{\"class_name\": \"Adadelta\", \"config\": {\"learning_rate\": %.17g, \"rho\": "
             "%.17g, \"epsilon\": %.17g}}",
             lr, rho, eps);
    const double hp[2] = {rho, eps}, init[2] = {0, 0};
    const char *names[2] = {"accumulated_grad", "accumulated_delta_var"};
    om_formula_check(dev, json, (double)(float)lr, hp, ref, 2, names, init);
}

static void formula_all(const char *dev) {
    formula(dev, 0.001, 0.95, 1e-7);
    formula(dev, 1.0, 0.8, 1e-6);
    formula(dev, 0.5, 0.5, 1e-3);
}
Test(adadelta_host, update_rule) { formula_all(TU_HOST); }
Test(adadelta_pocl, update_rule) { formula_all(TU_POCL); }

/* ---- host versus OpenCL, every pipeline option, float32 and float64 ---- */

Test(adadelta_pocl, agrees_with_host_float32) {
    om_agree_dtype(TU_POCL, CLOPT_FLOAT32, "Adadelta", "\"learning_rate\": 1.0, \"epsilon\": 1e-6");
}
Test(adadelta_pocl, agrees_with_host_float64) {
    om_agree_dtype(TU_POCL, CLOPT_FLOAT64, "Adadelta", "\"learning_rate\": 1.0, \"epsilon\": 1e-6");
}
Test(adadelta_pocl, agrees_with_host_rho_float32) {
    om_agree_dtype(TU_POCL, CLOPT_FLOAT32, "Adadelta",
                   "\"learning_rate\": 0.5, \"rho\": 0.7, \"epsilon\": 1e-4");
}
Test(adadelta_pocl, agrees_with_host_rho_float64) {
    om_agree_dtype(TU_POCL, CLOPT_FLOAT64, "Adadelta",
                   "\"learning_rate\": 0.5, \"rho\": 0.7, \"epsilon\": 1e-4");
}

/* ---- hyperparameters ---- */

Test(adadelta_host, bad_values_are_rejected) {
    static const om_bad bad[] = {
        {"\"rho\": -0.5", "rho"},
        {"\"rho\": 1.5", "rho"},
        {"\"epsilon\": -1e-7", "epsilon"},
    };
    om_bad_values("Adadelta", bad, sizeof bad / sizeof *bad);
}

Test(adadelta_host, boundary_values_are_accepted) {
    static const char *const good[] = {"\"rho\": 0.0", "\"rho\": 1.0", "\"epsilon\": 0.0"};
    om_good_values("Adadelta", good, sizeof good / sizeof *good);
}

Test(adadelta_host, config_keys_in_keras_order) {
    static const char *const keys[] = {"rho", "epsilon", NULL};
    om_config_keys("Adadelta", "adadelta", keys);
}

/* Keras 3.16, keras/src/optimizers/adadelta.py, Adadelta.build: add_optimizer_variables(var_list,
 * ["accumulated_grad", "accumulated_delta_var"]), interleaved per variable (zeros); named by
 * base_optimizer.py's add_variable_from_reference "<path, '/' -> '_'>_<name>". */
Test(adadelta_host, variable_list_in_keras_order) {
    static const char *const plain[] = {"iteration",
                                        "learning_rate",
                                        "dense_kernel_accumulated_grad",
                                        "dense_kernel_accumulated_delta_var",
                                        "dense_bias_accumulated_grad",
                                        "dense_bias_accumulated_delta_var",
                                        NULL};
    om_variable_list("{\"class_name\": \"Adadelta\", \"config\": {}}", plain);
    om_variable_list_with_ema_and_accumulation("Adadelta", NULL, plain + 2, 2);
}
