/* Adam against Keras's published numbers, on the host and the pocl backend.
 *
 * Source: keras-team/keras keras/src/optimizers/adam_test.py (Keras 3): test_single_step
 * (Adam(learning_rate=0.5), one step) and test_correctness_with_golden (Adam(amsgrad=True), a
 * first step with gradient 0.01 then gradients 0.1..1.0, five golden rows), with that file's
 * tolerances. Plus an independent double-precision reference of the semantics doc's Adam
 * (section 3: alpha = lr*sqrt(1-b2^t)/(1-b1^t), m += (g-m)(1-b1), v += (g^2-v)(1-b2),
 * vhat = max(vhat, v), w -= alpha*m/(sqrt(v)+eps)) that checks the variable and every slot. */
#include "optim_more.h"

TU_SUITE(adam_host);
TU_SUITE(adam_pocl);

/* ---- Keras 3 adam_test.py: test_single_step ---- */

static const double adam_single_step[4] = {0.5, 1.5, 2.5, 3.5};

static void single_step(const char *spec) {
    om_keras_single_step(spec, CLOPT_FLOAT32,
                         "{\"class_name\": \"Adam\", \"config\": {\"learning_rate\": 0.5}}",
                         adam_single_step);
}
Test(adam_host, keras_single_step) { single_step(TU_HOST); }
Test(adam_pocl, keras_single_step) { single_step(TU_POCL); }

/* ---- Keras 3 adam_test.py: test_correctness_with_golden ---- */

static const double adam_golden[5][10] = {
#define ROW(x) {x, x, x, x, x, x, x, x, x, x}
    ROW(0.999), ROW(0.9982), ROW(0.9974), ROW(0.9965), ROW(0.9955),
#undef ROW
};

static void golden(const char *spec, clopt_dtype dtype) {
    om_keras_golden(spec, dtype, "{\"class_name\": \"Adam\", \"config\": {\"amsgrad\": true}}",
                    adam_golden);
}
Test(adam_host, keras_golden_amsgrad_float32) { golden(TU_HOST, CLOPT_FLOAT32); }
Test(adam_host, keras_golden_amsgrad_float64) { golden(TU_HOST, CLOPT_FLOAT64); }
Test(adam_pocl, keras_golden_amsgrad_float32) { golden(TU_POCL, CLOPT_FLOAT32); }
Test(adam_pocl, keras_golden_amsgrad_float64) { golden(TU_POCL, CLOPT_FLOAT64); }

/* ---- the semantics doc's formulas, in double, on random data ---- */

static void reference(const char *spec, clopt_dtype dtype, int amsgrad) {
    clopt_context *ctx = tu_context(spec);
    const double lr_json = 0.02, b1 = 0.8, b2 = 0.95, eps = 1e-6;
    char json[256];
    snprintf(json, sizeof json,
             "{\"class_name\": \"Adam\", \"config\": {\"learning_rate\": %.17g, \"beta_1\": %.17g, "
             "\"beta_2\": %.17g, \"epsilon\": %.17g, \"amsgrad\": %s}}",
             lr_json, b1, b2, eps, amsgrad ? "true" : "false");
    clopt_optimizer *o = tu_optimizer(ctx, json);
    enum { N = 777, STEPS = 10 };
    const int64_t shape[2] = {7, 111};
    const double lr = (double)(float)lr_json; /* Keras keeps the learning rate in float32 */
    static double w[N], m[N], v[N], vh[N], g[N];
    memset(m, 0, sizeof m), memset(v, 0, sizeof v), memset(vh, 0, sizeof vh);
    uint64_t rng = 11;
    tu_rand_fill(&rng, w, N, -1, 1);
    if (dtype == CLOPT_FLOAT32)
        for (int i = 0; i < N; i++) w[i] = (float)w[i];
    clopt_variable *var = tu_var_from_f64(ctx, "dense/kernel", dtype, 2, shape, w);
    clopt_variable *grad = tu_var(ctx, "grad", dtype, 2, shape, NULL);
    for (int t = 1; t <= STEPS; t++) {
        /* Gradients of changing scale, some steps with a much smaller one (amsgrad matters). */
        double scale = (t % 3 == 0) ? 0.05 : 1.0;
        tu_rand_fill(&rng, g, N, -scale, scale);
        if (dtype == CLOPT_FLOAT32)
            for (int i = 0; i < N; i++) g[i] = (float)g[i];
        tu_write_f64(grad, g);
        TU_OK(ctx, clopt_optimizer_apply(o, &grad, &var, 1));
        const double alpha = lr * sqrt(1 - pow(b2, t)) / (1 - pow(b1, t));
        for (int i = 0; i < N; i++) {
            m[i] += (g[i] - m[i]) * (1 - b1);
            v[i] += (g[i] * g[i] - v[i]) * (1 - b2);
            double vv = v[i];
            if (amsgrad) vv = vh[i] = fmax(vh[i], v[i]);
            w[i] -= alpha * m[i] / (sqrt(vv) + eps);
        }
    }
    const double rt = tu_rtol(dtype), at = tu_atol(dtype);
    tu_assert_var_close(var, w, rt, at, "w");
    tu_assert_var_close(tu_slot(o, "dense_kernel_momentum"), m, rt, at, "momentum");
    tu_assert_var_close(tu_slot(o, "dense_kernel_velocity"), v, rt, at, "velocity");
    if (amsgrad)
        tu_assert_var_close(tu_slot(o, "dense_kernel_velocity_hat"), vh, rt, at, "velocity_hat");
    else
        cr_assert_eq(clopt_optimizer_variable_count(o), 4, "no velocity_hat without amsgrad");
    cr_assert_eq(clopt_optimizer_iterations(o), STEPS);
    clopt_context_destroy(ctx);
}
Test(adam_host, reference_float32) { reference(TU_HOST, CLOPT_FLOAT32, 0); }
Test(adam_host, reference_float64) { reference(TU_HOST, CLOPT_FLOAT64, 0); }
Test(adam_host, reference_amsgrad_float32) { reference(TU_HOST, CLOPT_FLOAT32, 1); }
Test(adam_host, reference_amsgrad_float64) { reference(TU_HOST, CLOPT_FLOAT64, 1); }
Test(adam_pocl, reference_float32) { reference(TU_POCL, CLOPT_FLOAT32, 0); }
Test(adam_pocl, reference_float64) { reference(TU_POCL, CLOPT_FLOAT64, 0); }
Test(adam_pocl, reference_amsgrad_float32) { reference(TU_POCL, CLOPT_FLOAT32, 1); }
Test(adam_pocl, reference_amsgrad_float64) { reference(TU_POCL, CLOPT_FLOAT64, 1); }

/* ---- Keras's variable list ---- */

/* Keras 3.16, keras/src/optimizers/adam.py, Adam.build: add_optimizer_variables(var_list,
 * ["momentum", "velocity"]) (interleaved per variable), then with amsgrad
 * add_optimizer_variables(var_list, "velocity_hat") as a block; named by base_optimizer.py's
 * add_variable_from_reference "<path, '/' -> '_'>_<name>". adamw.py: AdamW(Adam) has no build of
 * its own, so the same list. */
Test(adam_host, variable_list_in_keras_order) {
    static const char *const plain[] = {"iteration",
                                        "learning_rate",
                                        "dense_kernel_momentum",
                                        "dense_kernel_velocity",
                                        "dense_bias_momentum",
                                        "dense_bias_velocity",
                                        NULL};
    static const char *const amsgrad[] = {"iteration",
                                          "learning_rate",
                                          "dense_kernel_momentum",
                                          "dense_kernel_velocity",
                                          "dense_bias_momentum",
                                          "dense_bias_velocity",
                                          "dense_kernel_velocity_hat",
                                          "dense_bias_velocity_hat",
                                          NULL};
    static const char *const classes[] = {"Adam", "AdamW"};
    for (int c = 0; c < 2; c++) {
        char json[128];
        snprintf(json, sizeof json, "{\"class_name\": \"%s\", \"config\": {}}", classes[c]);
        om_variable_list(json, plain);
        snprintf(json, sizeof json, "{\"class_name\": \"%s\", \"config\": {\"amsgrad\": true}}",
                 classes[c]);
        om_variable_list(json, amsgrad);
        om_variable_list_with_ema_and_accumulation(classes[c], "\"amsgrad\": true", amsgrad + 2, 2);
    }
}
