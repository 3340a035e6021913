/* SGD against Keras's published numbers, on the host and the pocl backend.
 *
 * Sources (keras-team/keras):
 *  - keras/src/optimizers/sgd_test.py (Keras 3): test_single_step and
 *    test_correctness_with_golden (SGD(nesterov=True) with the default momentum 0, so plain SGD
 *    at learning rate 0.01), with that file's tolerances.
 *  - keras/optimizers/optimizer_v2/gradient_descent_test.py (Keras 2): MomentumOptimizerTest.
 *    testBasic (learning rate 2, momentum 0.9: the momentum slots and variables after one and
 *    two steps, written there as expressions) and testNesterovMomentum (its numpy reference
 *    _update_nesterov_momentum_numpy, run here in double, on loss 5*var0^2 + 3*var1).
 *    Keras 2 and 3 share SGD's update and the sign of the momentum slot (m := mu*m - lr*g).
 * Plus an independent double-precision reference of the semantics doc's SGD formulas (section 3)
 * over 12 random steps. */
#include "optim_more.h"

TU_SUITE(sgd_host);
TU_SUITE(sgd_pocl);

/* ---- Keras 3 sgd_test.py: test_single_step ---- */

static void single_step(const char *spec) {
    clopt_context *ctx = tu_context(spec);
    clopt_optimizer *o =
        tu_optimizer(ctx, "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.5}}");
    cr_assert_eq(clopt_optimizer_variable_count(o), 2, "len(optimizer.variables) == 2");
    const float g[4] = {1, 6, 7, 2}, w[4] = {1, 2, 3, 4};
    clopt_variable *vars = tu_var_f32(ctx, "vars", 4, w), *grads = tu_var_f32(ctx, "grads", 4, g);
    TU_OK(ctx, clopt_optimizer_build(o, &vars, 1));
    TU_OK(ctx, clopt_optimizer_apply(o, &grads, &vars, 1));
    const double want[4] = {0.5, -1.0, -0.5, 3.0};
    tu_assert_var_close(vars, want, TU_KERAS_TOL_SINGLE_STEP, TU_KERAS_TOL_SINGLE_STEP, "vars");
    /* Without momentum SGD has no slots: still iteration and learning_rate only. */
    cr_assert_eq(clopt_optimizer_variable_count(o), 2);
    double it = 0, lr = 0;
    TU_OK(ctx, clopt_optimizer_variable_read(o, 0, &it, 1));
    TU_OK(ctx, clopt_optimizer_variable_read(o, 1, &lr, 1));
    cr_assert_eq(it, 1.0, "optimizer.variables[0] == 1");
    cr_assert_eq(lr, 0.5, "optimizer.variables[1] == 0.5");
    cr_assert_eq(clopt_optimizer_iterations(o), 1);
    clopt_context_destroy(ctx);
}
Test(sgd_host, keras_single_step) { single_step(TU_HOST); }
Test(sgd_pocl, keras_single_step) { single_step(TU_POCL); }

/* ---- Keras 3 sgd_test.py: test_correctness_with_golden ---- */

static const double sgd_golden[5][10] = {
    {0.9999, 0.9999, 0.9999, 0.9999, 0.9999, 0.9999, 0.9999, 0.9999, 0.9999, 0.9999},
    {0.9989, 0.9979, 0.9969, 0.9959, 0.9949, 0.9939, 0.9929, 0.9919, 0.9909, 0.9899},
    {0.9979, 0.9959, 0.9939, 0.9919, 0.9899, 0.9879, 0.9859, 0.9839, 0.9819, 0.9799},
    {0.9969, 0.9939, 0.9909, 0.9879, 0.9849, 0.9819, 0.9789, 0.9759, 0.9729, 0.9699},
    {0.9959, 0.9919, 0.9879, 0.9839, 0.9799, 0.9759, 0.9719, 0.9679, 0.9639, 0.9599},
};

static void golden(const char *spec, clopt_dtype dtype) {
    om_keras_golden(spec, dtype, "{\"class_name\": \"SGD\", \"config\": {\"nesterov\": true}}",
                    sgd_golden);
}
Test(sgd_host, keras_golden_float32) { golden(TU_HOST, CLOPT_FLOAT32); }
Test(sgd_host, keras_golden_float64) { golden(TU_HOST, CLOPT_FLOAT64); }
Test(sgd_pocl, keras_golden_float32) { golden(TU_POCL, CLOPT_FLOAT32); }
Test(sgd_pocl, keras_golden_float64) { golden(TU_POCL, CLOPT_FLOAT64); }

/* ---- Keras 2 gradient_descent_test.py: MomentumOptimizerTest.testBasic ---- */

static void momentum_basic(const char *spec, clopt_dtype dtype) {
    clopt_context *ctx = tu_context(spec);
    clopt_optimizer *o = tu_optimizer(
        ctx, "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 2.0, \"momentum\": 0.9}}");
    const int64_t n = 2;
    const double v0[2] = {1.0, 2.0}, v1[2] = {3.0, 4.0}, g0[2] = {0.1, 0.1}, g1[2] = {0.01, 0.01};
    clopt_variable *var0 = tu_var_from_f64(ctx, "var0", dtype, 1, &n, v0);
    clopt_variable *var1 = tu_var_from_f64(ctx, "var1", dtype, 1, &n, v1);
    clopt_variable *grads0 = tu_var_from_f64(ctx, "grads0", dtype, 1, &n, g0);
    clopt_variable *grads1 = tu_var_from_f64(ctx, "grads1", dtype, 1, &n, g1);
    clopt_variable *vars[] = {var0, var1}, *grads[] = {grads0, grads1};
    TU_OK(ctx, clopt_optimizer_apply(o, grads, vars, 2));
    /* "Check we have slots", of the variables' shapes. */
    clopt_variable *slot0 = tu_slot(o, "var0_momentum"), *slot1 = tu_slot(o, "var1_momentum");
    cr_assert_eq(clopt_variable_size(slot0), 2);
    cr_assert_eq(clopt_variable_ndim(slot1), 1);
    /* assertAllCloseAccordingToType: 1e-6 for float32 and float64. */
    const double tol = 1e-6;
    /* Step 1: the momentum accumulators were 0, so a normal update. */
    const double s0[2] = {-0.2, -0.2}, s1[2] = {-0.02, -0.02};
    const double w0[2] = {1.0 - (0.1 * 2.0), 2.0 - (0.1 * 2.0)};
    const double w1[2] = {3.0 - (0.01 * 2.0), 4.0 - (0.01 * 2.0)};
    tu_assert_var_close(slot0, s0, tol, tol, "step 1 slot0");
    tu_assert_var_close(slot1, s1, tol, tol, "step 1 slot1");
    tu_assert_var_close(var0, w0, tol, tol, "step 1 var0");
    tu_assert_var_close(var1, w1, tol, tol, "step 1 var1");
    /* Step 2: the momentum accumulators contain the previous update. */
    TU_OK(ctx, clopt_optimizer_apply(o, grads, vars, 2));
    const double t0[2] = {(0.9 * (-0.2) - 2.0 * 0.1), (0.9 * (-0.2) - 2.0 * 0.1)};
    const double t1[2] = {(0.9 * (-0.02) - 2.0 * 0.01), (0.9 * (-0.02) - 2.0 * 0.01)};
    const double x0[2] = {1.0 - (0.1 * 2.0) - ((0.9 * 0.1 + 0.1) * 2.0),
                          2.0 - (0.1 * 2.0) - ((0.9 * 0.1 + 0.1) * 2.0)};
    const double x1[2] = {2.98 - ((0.9 * 0.01 + 0.01) * 2.0), 3.98 - ((0.9 * 0.01 + 0.01) * 2.0)};
    tu_assert_var_close(slot0, t0, tol, tol, "step 2 slot0");
    tu_assert_var_close(slot1, t1, tol, tol, "step 2 slot1");
    tu_assert_var_close(var0, x0, tol, tol, "step 2 var0");
    tu_assert_var_close(var1, x1, tol, tol, "step 2 var1");
    clopt_context_destroy(ctx);
}
Test(sgd_host, keras_momentum_basic_float32) { momentum_basic(TU_HOST, CLOPT_FLOAT32); }
Test(sgd_host, keras_momentum_basic_float64) { momentum_basic(TU_HOST, CLOPT_FLOAT64); }
Test(sgd_pocl, keras_momentum_basic_float32) { momentum_basic(TU_POCL, CLOPT_FLOAT32); }
Test(sgd_pocl, keras_momentum_basic_float64) { momentum_basic(TU_POCL, CLOPT_FLOAT64); }

/* ---- Keras 2 gradient_descent_test.py: MomentumOptimizerTest.testNesterovMomentum ---- */

/* Keras's _update_nesterov_momentum_numpy. */
static void nesterov_numpy(double *var, double *accum, double g, double lr, double momentum) {
    *accum = *accum * momentum - g * lr;
    *var += (*accum * momentum - g * lr);
}

static void nesterov_momentum(const char *spec, clopt_dtype dtype) {
    clopt_context *ctx = tu_context(spec);
    clopt_optimizer *o = tu_optimizer(ctx, "{\"class_name\": \"SGD\", \"config\": "
                                           "{\"learning_rate\": 2.0, \"momentum\": 0.9, "
                                           "\"nesterov\": true}}");
    const int64_t n = 2;
    double var0_np[2] = {1.0, 2.0}, var1_np[2] = {3.0, 4.0};
    double accum0_np[2] = {0, 0}, accum1_np[2] = {0, 0};
    clopt_variable *var0 = tu_var_from_f64(ctx, "var0", dtype, 1, &n, var0_np);
    clopt_variable *var1 = tu_var_from_f64(ctx, "var1", dtype, 1, &n, var1_np);
    clopt_variable *grad0 = tu_var(ctx, "grad0", dtype, 1, &n, NULL);
    clopt_variable *grad1 = tu_var(ctx, "grad1", dtype, 1, &n, NULL);
    clopt_variable *vars[] = {var0, var1}, *grads[] = {grad0, grad1};
    /* The Keras test's tolerance is assertAllClose's 1e-6; float32 gets the suite's float32
     * tolerance because var0 grows by a factor ~37 per step (lr 2 on a gradient 10*var0), to
     * ~1e6 after 4 steps, where 1e-6 relative is 8 float32 ulps. */
    const double tol = dtype == CLOPT_FLOAT64 ? 1e-6 : TU_RTOL_F32;
    for (int t = 1; t < 5; t++) {
        /* loss = 5*var0*var0 + 3*var1: the gradients of minimize(). */
        double *cur0 = tu_read_f64(var0), g0[2] = {10 * cur0[0], 10 * cur0[1]}, g1[2] = {3, 3};
        free(cur0);
        tu_write_f64(grad0, g0);
        tu_write_f64(grad1, g1);
        TU_OK(ctx, clopt_optimizer_apply(o, grads, vars, 2));
        for (int i = 0; i < 2; i++) {
            nesterov_numpy(&var0_np[i], &accum0_np[i], var0_np[i] * 10, 2.0, 0.9);
            nesterov_numpy(&var1_np[i], &accum1_np[i], 3, 2.0, 0.9);
        }
        char what[32];
        snprintf(what, sizeof what, "step %d var0", t);
        tu_assert_var_close(var0, var0_np, tol, tol, what);
        snprintf(what, sizeof what, "step %d var1", t);
        tu_assert_var_close(var1, var1_np, tol, tol, what);
        tu_assert_var_close(tu_slot(o, "var1_momentum"), accum1_np, tol, tol, "accum1");
    }
    clopt_context_destroy(ctx);
}
Test(sgd_host, keras_nesterov_momentum_float32) { nesterov_momentum(TU_HOST, CLOPT_FLOAT32); }
Test(sgd_host, keras_nesterov_momentum_float64) { nesterov_momentum(TU_HOST, CLOPT_FLOAT64); }
Test(sgd_pocl, keras_nesterov_momentum_float32) { nesterov_momentum(TU_POCL, CLOPT_FLOAT32); }
Test(sgd_pocl, keras_nesterov_momentum_float64) { nesterov_momentum(TU_POCL, CLOPT_FLOAT64); }

/* ---- the semantics doc's formulas, in double, on random data ---- */

static void reference(const char *spec, clopt_dtype dtype, double momentum, int nesterov) {
    clopt_context *ctx = tu_context(spec);
    char json[256];
    snprintf(json, sizeof json,
             "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.05, \"momentum\": %.17g, "
             "\"nesterov\": %s}}",
             momentum, nesterov ? "true" : "false");
    clopt_optimizer *o = tu_optimizer(ctx, json);
    enum { N = 600, STEPS = 12 };
    const int64_t n = N;
    const double lr = (double)(float)0.05; /* Keras keeps the learning rate in float32 */
    double w[N], m[N] = {0}, g[N];
    uint64_t rng = 7;
    tu_rand_fill(&rng, w, N, -1, 1);
    if (dtype == CLOPT_FLOAT32)
        for (int i = 0; i < N; i++) w[i] = (float)w[i];
    clopt_variable *var = tu_var_from_f64(ctx, "w", dtype, 1, &n, w);
    clopt_variable *grad = tu_var(ctx, "g", dtype, 1, &n, NULL);
    for (int s = 0; s < STEPS; s++) {
        tu_rand_fill(&rng, g, N, -2, 2);
        if (dtype == CLOPT_FLOAT32)
            for (int i = 0; i < N; i++) g[i] = (float)g[i];
        tu_write_f64(grad, g);
        TU_OK(ctx, clopt_optimizer_apply(o, &grad, &var, 1));
        for (int i = 0; i < N; i++) {
            if (momentum != 0) {
                m[i] = momentum * m[i] - lr * g[i];
                w[i] += nesterov ? momentum * m[i] - lr * g[i] : m[i];
            } else {
                w[i] -= lr * g[i];
            }
        }
    }
    tu_assert_var_close(var, w, tu_rtol(dtype), tu_atol(dtype), "w");
    if (momentum != 0)
        tu_assert_var_close(tu_slot(o, "w_momentum"), m, tu_rtol(dtype), tu_atol(dtype), "m");
    else
        cr_assert_eq(clopt_optimizer_variable_count(o), 2, "plain SGD has no slot");
    clopt_context_destroy(ctx);
}
Test(sgd_host, reference_plain) { reference(TU_HOST, CLOPT_FLOAT32, 0.0, 0); }
Test(sgd_host, reference_momentum) { reference(TU_HOST, CLOPT_FLOAT64, 0.9, 0); }
Test(sgd_host, reference_nesterov) { reference(TU_HOST, CLOPT_FLOAT32, 0.5, 1); }
Test(sgd_pocl, reference_plain) { reference(TU_POCL, CLOPT_FLOAT64, 0.0, 0); }
Test(sgd_pocl, reference_momentum) { reference(TU_POCL, CLOPT_FLOAT32, 0.9, 0); }
Test(sgd_pocl, reference_nesterov) { reference(TU_POCL, CLOPT_FLOAT64, 0.5, 1); }

/* ---- Keras's variable list ---- */

/* Keras 3.16, keras/src/optimizers/sgd.py, SGD.build: add_optimizer_variables(variables,
 * "momentum") only when momentum != 0; named by base_optimizer.py's add_variable_from_reference
 * "<path, '/' -> '_'>_momentum". iteration and learning_rate come first (BaseOptimizer.__init__);
 * SGD's fixed default name is "SGD" (Keras before 3.15). */
Test(sgd_host, variable_list_in_keras_order) {
    static const char *const plain[] = {"iteration", "learning_rate", NULL};
    om_variable_list("{\"class_name\": \"SGD\", \"config\": {}}", plain);
    static const char *const momentum[] = {"iteration", "learning_rate", "dense_kernel_momentum",
                                           "dense_bias_momentum", NULL};
    om_variable_list("{\"class_name\": \"SGD\", \"config\": {\"momentum\": 0.5}}", momentum);
    om_variable_list_with_ema_and_accumulation("SGD", "\"momentum\": 0.5", momentum + 2, 2);
}
