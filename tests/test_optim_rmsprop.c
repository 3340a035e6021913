/* RMSprop: Keras's published numbers, the update rule with momentum and centered, host versus
 * OpenCL over every apply-pipeline option, bad hyperparameters, variable list and config. */
#include "optim_more.h"

/* ---- Keras's numbers: keras/src/optimizers/rmsprop_test.py (keras-team/keras) ---- */

static const double single_step[4] = {-0.5811, 0.4189, 1.4189, 2.4189};
#define SINGLE_STEP_JSON "{\"class_name\": \"RMSprop\", \"config\": {\"learning_rate\": 0.5}}"

static const double golden[5][10] = {
#define ROW(x) {x, x, x, x, x, x, x, x, x, x}
    ROW(0.9967), ROW(0.9933), ROW(0.9908), ROW(0.9885), ROW(0.9864),
#undef ROW
};
#define GOLDEN_JSON "{\"class_name\": \"RMSprop\", \"config\": {\"centered\": true}}"

Test(rmsprop_host, keras_single_step) {
    om_keras_single_step_f32_f64(TU_HOST, SINGLE_STEP_JSON, single_step);
}
Test(rmsprop_pocl, keras_single_step) {
    om_keras_single_step_f32_f64(TU_POCL, SINGLE_STEP_JSON, single_step);
}
Test(rmsprop_host, keras_golden) {
    om_keras_golden_f32_f64(TU_HOST, GOLDEN_JSON, golden);
}
Test(rmsprop_pocl, keras_golden) {
    om_keras_golden_f32_f64(TU_POCL, GOLDEN_JSON, golden);
}
Test(rmsprop_host, keras_weight_decay) { om_keras_weight_decay(TU_HOST, "RMSprop"); }
Test(rmsprop_pocl, keras_weight_decay) { om_keras_weight_decay(TU_POCL, "RMSprop"); }

/* ---- the update rule (semantics doc section 3), ported independently ---- */

enum { RHO, MOMENTUM, EPSILON, CENTERED };

static void ref(const double *hp, double lr, int64_t t, double g, double *w, double *s) {
    (void)t;
    const int mom = hp[MOMENTUM] > 0, mg = 1 + mom;
    s[0] = hp[RHO] * s[0] + (1 - hp[RHO]) * g * g;
    double den = s[0] + hp[EPSILON];
    if (hp[CENTERED] != 0) {
        s[mg] = hp[RHO] * s[mg] + (1 - hp[RHO]) * g;
        den = s[0] - s[mg] * s[mg] + hp[EPSILON];
    }
    const double inc = lr * g / sqrt(den);
    if (mom) {
        s[1] = hp[MOMENTUM] * s[1] + inc;
        *w -= s[1];
    } else {
        *w -= inc;
    }
}

static void formula(const char *dev, double rho, double momentum, double eps, int centered) {
    char json[256];
    snprintf(json, sizeof json,
             "{\"class_name\": \"RMSprop\", \"config\": {\"learning_rate\": 0.05, \"rho\": %.17g, "
             "\"momentum\": %.17g, \"epsilon\": %.17g, \"centered\": %s}}",
             rho, momentum, eps, centered ? "true" : "false");
    const double hp[4] = {rho, momentum, eps, centered};
    const char *names[3];
    const double init[3] = {0, 0, 0};
    int n = 0;
    names[n++] = "velocity";
    if (momentum > 0) names[n++] = "momentum";
    if (centered) names[n++] = "average_gradient";
    om_formula_check(dev, json, (double)0.05f, hp, ref, n, names, init);
}

static void formula_all(const char *dev) {
    formula(dev, 0.9, 0.0, 1e-7, 0);
    formula(dev, 0.9, 0.9, 1e-7, 0);
    formula(dev, 0.8, 0.0, 1e-6, 1);
    formula(dev, 0.7, 0.5, 1e-3, 1);
}
Test(rmsprop_host, update_rule_all_variants) { formula_all(TU_HOST); }
Test(rmsprop_pocl, update_rule_all_variants) { formula_all(TU_POCL); }

/* ---- host versus OpenCL, every pipeline option, float32 and float64 ---- */

Test(rmsprop_pocl, agrees_with_host_plain_float32) {
    om_agree_dtype(TU_POCL, CLOPT_FLOAT32, "RMSprop", "\"learning_rate\": 0.01");
}
Test(rmsprop_pocl, agrees_with_host_plain_float64) {
    om_agree_dtype(TU_POCL, CLOPT_FLOAT64, "RMSprop", "\"learning_rate\": 0.01");
}
Test(rmsprop_pocl, agrees_with_host_momentum_float32) {
    om_agree_dtype(TU_POCL, CLOPT_FLOAT32, "RMSprop", "\"learning_rate\": 0.01, \"momentum\": 0.9");
}
Test(rmsprop_pocl, agrees_with_host_momentum_float64) {
    om_agree_dtype(TU_POCL, CLOPT_FLOAT64, "RMSprop", "\"learning_rate\": 0.01, \"momentum\": 0.9");
}
Test(rmsprop_pocl, agrees_with_host_centered_float32) {
    om_agree_dtype(TU_POCL, CLOPT_FLOAT32, "RMSprop",
                   "\"learning_rate\": 0.01, \"centered\": true");
}
Test(rmsprop_pocl, agrees_with_host_centered_float64) {
    om_agree_dtype(TU_POCL, CLOPT_FLOAT64, "RMSprop",
                   "\"learning_rate\": 0.01, \"centered\": true");
}
Test(rmsprop_pocl, agrees_with_host_momentum_centered_float32) {
    om_agree_dtype(TU_POCL, CLOPT_FLOAT32, "RMSprop",
                   "\"learning_rate\": 0.01, \"rho\": 0.8, \"momentum\": 0.5, \"centered\": true");
}
Test(rmsprop_pocl, agrees_with_host_momentum_centered_float64) {
    om_agree_dtype(TU_POCL, CLOPT_FLOAT64, "RMSprop",
                   "\"learning_rate\": 0.01, \"rho\": 0.8, \"momentum\": 0.5, \"centered\": true");
}

/* ---- hyperparameters ---- */

Test(rmsprop_host, bad_values_are_rejected) {
    static const om_bad bad[] = {
        {"\"rho\": -0.1", "rho"},
        {"\"rho\": 1.1", "rho"},
        {"\"momentum\": -0.1", "momentum"},
        {"\"momentum\": 2.0", "momentum"},
        {"\"epsilon\": -1e-7", "epsilon"},
        {"\"learning_rate\": 0.1, \"clipnorm\": 1.0, \"clipvalue\": 1.0", "clip"},
    };
    om_bad_values("RMSprop", bad, sizeof bad / sizeof *bad);
}

Test(rmsprop_host, boundary_values_are_accepted) {
    static const char *const good[] = {"\"rho\": 0.0", "\"rho\": 1.0", "\"momentum\": 0.0",
                                       "\"momentum\": 1.0", "\"epsilon\": 1e-12"};
    om_good_values("RMSprop", good, sizeof good / sizeof *good);
}

Test(rmsprop_host, config_keys_in_keras_order) {
    static const char *const keys[] = {"rho", "momentum", "epsilon", "centered", NULL};
    om_config_keys("RMSprop", "rmsprop", keys);
}

/* Keras 3.16, keras/src/optimizers/rmsprop.py, RMSprop.build: three add_optimizer_variables calls,
 * so three blocks: "velocity", then "momentum" if momentum > 0, then "average_gradient" if
 * centered; named by base_optimizer.py's add_variable_from_reference
 * "<path, '/' -> '_'>_<name>". */
Test(rmsprop_host, variable_list_in_keras_order) {
    static const char *const plain[] = {"iteration", "learning_rate", "dense_kernel_velocity",
                                        "dense_bias_velocity", NULL};
    om_variable_list("{\"class_name\": \"RMSprop\", \"config\": {}}", plain);
    static const char *const centered[] = {
        "iteration", "learning_rate", "dense_kernel_velocity", "dense_bias_velocity",
        "dense_kernel_average_gradient", "dense_bias_average_gradient", NULL};
    om_variable_list("{\"class_name\": \"RMSprop\", \"config\": {\"centered\": true}}", centered);
    static const char *const slots[] = {
        "dense_kernel_velocity",
        "dense_bias_velocity",
        "dense_kernel_momentum",
        "dense_bias_momentum",
        "dense_kernel_average_gradient",
        "dense_bias_average_gradient",
        NULL};
    om_variable_list_with_ema_and_accumulation("RMSprop", "\"momentum\": 0.9, \"centered\": true",
                                               slots, 2);
}
