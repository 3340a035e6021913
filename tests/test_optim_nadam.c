/* Nadam: Keras's published numbers, the update rule and u_product, host versus OpenCL over every
 * apply-pipeline option, bad hyperparameters, variable list and config.
 *
 * Keras's numbers: keras-team/keras keras/src/optimizers/nadam_test.py (Keras 3):
 * test_single_step, test_correctness_with_golden and test_weight_decay, with that file's
 * tolerances (test_util.h). */
#include "optim_more.h"
#include "optim_varlist.h"

static const double single_step[4] = {0.4686, 1.4686, 2.4686, 3.4686};
#define SINGLE_STEP_JSON "{\"class_name\": \"Nadam\", \"config\": {\"learning_rate\": 0.5}}"

static const double golden[5][10] = {
    {0.4281, 0.4281, 0.4281, 0.4281, 0.4281, 0.4281, 0.4281, 0.4281, 0.4281, 0.4281},
    {-0.1738, -0.1731, -0.1726, -0.1723, -0.1721, -0.172, -0.1719, -0.1718, -0.1718, -0.1717},
    {-0.7115, -0.7103, -0.7096, -0.7092, -0.709, -0.7088, -0.7086, -0.7085, -0.7085, -0.7084},
    {-1.2335, -1.2322, -1.2313, -1.2309, -1.2306, -1.2304, -1.2302, -1.2301, -1.23, -1.2299},
    {-1.7492, -1.7478, -1.7469, -1.7464, -1.7461, -1.7459, -1.7457, -1.7456, -1.7455, -1.7454},
};
#define GOLDEN_JSON                                                                              \
    "{\"class_name\": \"Nadam\", \"config\": {\"learning_rate\": 0.5, \"beta_1\": 0.5, "          \
    "\"beta_2\": 0.67, \"epsilon\": 1e-05}}"

Test(nadam_host, keras_single_step) {
    om_keras_single_step_f32_f64(TU_HOST, SINGLE_STEP_JSON, single_step);
}
Test(nadam_pocl, keras_single_step) {
    om_keras_single_step_f32_f64(TU_POCL, SINGLE_STEP_JSON, single_step);
}
Test(nadam_host, keras_golden) {
    om_keras_golden_f32_f64(TU_HOST, GOLDEN_JSON, golden);
}
Test(nadam_pocl, keras_golden) {
    om_keras_golden_f32_f64(TU_POCL, GOLDEN_JSON, golden);
}
Test(nadam_host, keras_weight_decay) { om_keras_weight_decay(TU_HOST, "Nadam"); }
Test(nadam_pocl, keras_weight_decay) { om_keras_weight_decay(TU_POCL, "Nadam"); }

/* ---- the update rule (semantics doc section 3), ported independently ---- */

enum { BETA_1, BETA_2, EPSILON };

/* u_t = beta_1 * (1 - 0.5 * 0.96^t) and P_t = u_1 * ... * u_t (u_product after step t). */
static double u_at(double b1, int64_t t) { return b1 * (1 - 0.5 * pow(0.96, (double)t)); }
static double u_product(double b1, int64_t t) {
    double p = 1;
    for (int64_t i = 1; i <= t; i++) p *= u_at(b1, i);
    return p;
}

static void ref(const double *hp, double lr, int64_t t, double g, double *w, double *s) {
    const double b1 = hp[BETA_1], b2 = hp[BETA_2];
    const double u_t = u_at(b1, t), u_t1 = u_at(b1, t + 1);
    const double p_t = u_product(b1, t), p_t1 = p_t * u_t1;
    s[0] += (g - s[0]) * (1 - b1);
    s[1] += (g * g - s[1]) * (1 - b2);
    const double mhat = u_t1 * s[0] / (1 - p_t1) + (1 - u_t) * g / (1 - p_t);
    const double vhat = s[1] / (1 - pow(b2, (double)t));
    *w -= lr * mhat / (sqrt(vhat) + hp[EPSILON]);
}

static void formula(const char *dev, double b1, double b2, double eps) {
    char json[256];
    snprintf(json, sizeof json,
             "{\"class_name\": \"Nadam\", \"config\": {\"learning_rate\": 0.05, \"beta_1\": %.17g, "
             "\"beta_2\": %.17g, \"epsilon\": %.17g}}",
             b1, b2, eps);
    const double hp[3] = {b1, b2, eps};
    const char *names[2] = {"momentum", "velocity"};
    const double init[2] = {0, 0};
    om_formula_check(dev, json, (double)0.05f, hp, ref, 2, names, init);
}

static void formula_all(const char *dev) {
    formula(dev, 0.9, 0.999, 1e-7);
    formula(dev, 0.5, 0.67, 1e-5);
    formula(dev, 0.95, 0.9, 1e-3);
}
Test(nadam_host, update_rule) { formula_all(TU_HOST); }
Test(nadam_pocl, update_rule) { formula_all(TU_POCL); }

/* u_product: the last optimizer variable, named "variable" as Keras's unnamed Variable, 1.0 at
 * build, the product of u_1..u_t after t steps, in the first variable's dtype (a float32 value
 * for a float32 first variable, as Keras stores it); accumulation-only steps leave it alone. */
static void u_product_check(const char *dev, clopt_dtype dtype, int accumulate) {
    clopt_context *ctx = tu_context(dev);
    const int64_t n = 5;
    const double w0[5] = {1, -2, 3, -4, 5}, g0[5] = {0.5, 0.1, -0.2, 0.3, -0.4};
    clopt_variable *w = tu_var_from_f64(ctx, "w", dtype, 1, &n, w0);
    clopt_variable *g = tu_var_from_f64(ctx, "g", dtype, 1, &n, g0);
    clopt_optimizer *o = tu_optimizer(
        ctx, accumulate ? "{\"class_name\": \"Nadam\", \"config\": {\"beta_1\": 0.8, "
                          "\"gradient_accumulation_steps\": 2}}"
                        : "{\"class_name\": \"Nadam\", \"config\": {\"beta_1\": 0.8}}");
    TU_OK(ctx, clopt_optimizer_build(o, &w, 1));
    const size_t last = clopt_optimizer_variable_count(o) - 1;
    const char *name, *path;
    clopt_variable *v = NULL;
    TU_OK(ctx, clopt_optimizer_variable(o, last, &name, &path, &v));
    cr_assert_str_eq(name, "variable");
    cr_assert_str_eq(path, "nadam/variable");
    cr_assert_null(v, "u_product lives on the host");
    double up = 0;
    TU_OK(ctx, clopt_optimizer_variable_read(o, last, &up, 1));
    cr_assert_eq(up, 1.0);
    for (int step = 1; step <= 6; step++) {
        TU_OK(ctx, clopt_optimizer_apply(o, &g, &w, 1));
        const int64_t t = accumulate ? step / 2 : step;
        TU_OK(ctx, clopt_optimizer_variable_read(o, last, &up, 1));
        const double want = u_product(0.8, t);
        cr_assert(fabs(up - want) <= (dtype == CLOPT_FLOAT64 ? 1e-15 : 1e-6) * want,
                  "step %d: u_product %.17g, want %.17g", step, up, want);
        if (dtype == CLOPT_FLOAT32) cr_assert_eq(up, (double)(float)up, "not a float32 value");
    }
    clopt_context_destroy(ctx);
}
Test(nadam_host, u_product) {
    u_product_check(TU_HOST, CLOPT_FLOAT32, 0);
    u_product_check(TU_HOST, CLOPT_FLOAT64, 0);
    u_product_check(TU_HOST, CLOPT_FLOAT64, 1);
}
Test(nadam_pocl, u_product) {
    u_product_check(TU_POCL, CLOPT_FLOAT32, 0);
    u_product_check(TU_POCL, CLOPT_FLOAT32, 1);
}

/* ---- host versus OpenCL, every pipeline option, float32 and float64 ---- */

Test(nadam_pocl, agrees_with_host) {
    om_agree_all(TU_POCL, "Nadam", "\"learning_rate\": 0.01");
}
Test(nadam_pocl, agrees_with_host_other_betas) {
    om_agree_all(TU_POCL, "Nadam",
                 "\"learning_rate\": 0.02, \"beta_1\": 0.5, \"beta_2\": 0.67, \"epsilon\": 1e-05");
}

/* ---- hyperparameters, variable list, config ---- */

Test(nadam_host, bad_values_are_rejected) {
    static const om_bad bad[] = {
        {"\"beta_1\": -0.1", "beta_1"},
        {"\"beta_1\": 1.5", "beta_1"},
        {"\"beta_2\": -0.5", "beta_2"},
        {"\"beta_2\": 1.01", "beta_2"},
        {"\"epsilon\": -1e-07", "epsilon"},
        {"\"gradient_accumulation_steps\": 1", "gradient_accumulation_steps"},
    };
    om_bad_values("Nadam", bad, sizeof bad / sizeof *bad);
}

Test(nadam_host, boundary_values_are_accepted) {
    static const char *const good[] = {"\"beta_1\": 0.0", "\"beta_1\": 1.0", "\"beta_2\": 0.0",
                                       "\"beta_2\": 1.0", "\"epsilon\": 0.0"};
    om_good_values("Nadam", good, sizeof good / sizeof *good);
}

Test(nadam_host, config_keys_in_keras_order) {
    static const char *const keys[] = {"beta_1", "beta_2", "epsilon", NULL};
    om_config_keys("Nadam", "nadam", keys);
}

/* Keras 3.16, keras/src/optimizers/nadam.py, Nadam.build: add_optimizer_variables(var_list,
 * ["momentum", "velocity"]), interleaved per variable (named by base_optimizer.py's
 * add_variable_from_reference "<path, '/' -> '_'>_<name>"), then self._u_product =
 * backend.Variable(1.0), tracked last with the auto-generated name "variable". */
Test(nadam_host, variable_list_in_keras_order) {
    static const ovl_entry plain[] = {
        {"iteration", 0},           {"learning_rate", 0},       {"dense_kernel_momentum", 6},
        {"dense_kernel_velocity", 6}, {"dense_bias_momentum", 2}, {"dense_bias_velocity", 2},
        {"variable", 0},            {NULL, 0}};
    ovl_check("{\"class_name\": \"Nadam\", \"config\": {}}", plain);
    ovl_check_with_ema_and_accumulation("Nadam", NULL, plain + 2, 2);
}
