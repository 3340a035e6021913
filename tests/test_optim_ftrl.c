/* Ftrl: Keras's published numbers, the update rule with every option, host versus OpenCL over
 * every apply-pipeline option, Keras's validation messages, variable list and config.
 *
 * Keras's numbers: keras-team/keras keras/src/optimizers/ftrl_test.py (Keras 3):
 * test_single_step and test_correctness_with_golden, with that file's tolerances (test_util.h).
 * (ftrl_test.py has no test_weight_decay.) */
#include "optim_more.h"
#include "optim_varlist.h"

static const double single_step[4] = {0.2218, 1.3954, 2.3651, 2.8814};
#define SINGLE_STEP_JSON "{\"class_name\": \"Ftrl\", \"config\": {\"learning_rate\": 0.5}}"

static const double golden[5][10] = {
    {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0},
    {-0.0034, -0.0077, -0.0118, -0.0157, -0.0194, -0.023, -0.0263, -0.0294, -0.0325, -0.0354},
    {-0.0078, -0.0162, -0.0242, -0.0317, -0.0387, -0.0454, -0.0516, -0.0575, -0.0631, -0.0685},
    {-0.0121, -0.0246, -0.0363, -0.0472, -0.0573, -0.0668, -0.0757, -0.0842, -0.0922, -0.0999},
    {-0.0164, -0.0328, -0.0481, -0.0623, -0.0753, -0.0875, -0.099, -0.1098, -0.1201, -0.1299},
};
#define GOLDEN_CONFIG                                                                            \
    "\"learning_rate\": 0.05, \"learning_rate_power\": -0.2, \"initial_accumulator_value\": "    \
    "0.4, \"l1_regularization_strength\": 0.05, \"l2_regularization_strength\": 0.15, "          \
    "\"l2_shrinkage_regularization_strength\": 0.01, \"beta\": 0.3"
#define GOLDEN_JSON "{\"class_name\": \"Ftrl\", \"config\": {" GOLDEN_CONFIG "}}"

Test(ftrl_host, keras_single_step) {
    om_keras_single_step_f32_f64(TU_HOST, SINGLE_STEP_JSON, single_step);
}
Test(ftrl_pocl, keras_single_step) {
    om_keras_single_step_f32_f64(TU_POCL, SINGLE_STEP_JSON, single_step);
}
Test(ftrl_host, keras_golden) {
    om_keras_golden_f32_f64(TU_HOST, GOLDEN_JSON, golden);
}
Test(ftrl_pocl, keras_golden) {
    om_keras_golden_f32_f64(TU_POCL, GOLDEN_JSON, golden);
}

/* ---- the update rule (semantics doc section 3), ported independently ---- */

enum { POWER, INIT, L1, L2, SHRINK, BETA };

static void ref(const double *hp, double lr, int64_t t, double g, double *w, double *s) {
    (void)t;
    const double p = hp[POWER], l2 = hp[L2] + hp[BETA] / (2 * lr);
    const double gs = g + 2 * hp[SHRINK] * *w;
    const double n1 = s[0] + g * g;
    s[1] += gs - ((pow(n1, -p) - pow(s[0], -p)) / lr) * *w;
    const double q = pow(n1, -p) / lr + 2 * l2;
    *w = (fabs(s[1]) <= hp[L1] ? 0.0 : (copysign(hp[L1], s[1]) - s[1]) / q);
    s[0] = n1;
}

/* Six steps over two float64 variables ([5] and [3, 2]) against `ref`, checking the variables
 * and both slots after each step. */
static void formula(const char *dev, double lr, const double hp[6]) {
    char json[512];
    snprintf(json, sizeof json,
             "{\"class_name\": \"Ftrl\", \"config\": {\"learning_rate\": %.17g, "
             "\"learning_rate_power\": %.17g, \"initial_accumulator_value\": %.17g, "
             "\"l1_regularization_strength\": %.17g, \"l2_regularization_strength\": %.17g, "
             "\"l2_shrinkage_regularization_strength\": %.17g, \"beta\": %.17g}}",
             lr, hp[POWER], hp[INIT], hp[L1], hp[L2], hp[SHRINK], hp[BETA]);
    /* Not om_formula_check, which finds slots by "<var>_<kind>": the accumulators are all named
     * "accumulator", so slots are read by position. */
    clopt_context *ctx = tu_context(dev);
    const int64_t s0 = 5, s1[2] = {3, 2}, size[2] = {5, 6};
    double w[2][6], n[2][6], z[2][6], g[2][6];
    uint64_t rng = 99;
    for (int v = 0; v < 2; v++) {
        tu_rand_fill(&rng, w[v], (size_t)size[v], -1, 1);
        for (int i = 0; i < 6; i++) n[v][i] = hp[INIT], z[v][i] = 0;
    }
    clopt_variable *vars[2] = {tu_var(ctx, "a", CLOPT_FLOAT64, 1, &s0, w[0]),
                               tu_var(ctx, "b", CLOPT_FLOAT64, 2, s1, w[1])};
    clopt_variable *grads[2] = {tu_var(ctx, "ga", CLOPT_FLOAT64, 1, &s0, NULL),
                                tu_var(ctx, "gb", CLOPT_FLOAT64, 2, s1, NULL)};
    clopt_optimizer *o = tu_optimizer(ctx, json);
    const double lr32 = (double)(float)lr;
    for (int t = 1; t <= 6; t++) {
        for (int v = 0; v < 2; v++) {
            tu_rand_fill(&rng, g[v], (size_t)size[v], -1.5, 1.5);
            tu_write_f64(grads[v], g[v]);
            for (int i = 0; i < size[v]; i++) {
                double sl[2] = {n[v][i], z[v][i]};
                ref(hp, lr32, t, g[v][i], &w[v][i], sl);
                n[v][i] = sl[0], z[v][i] = sl[1];
            }
        }
        TU_OK(ctx, clopt_optimizer_apply(o, grads, vars, 2));
        for (int v = 0; v < 2; v++) {
            char what[640];
            snprintf(what, sizeof what, "%s step %d variable %d", json, t, v);
            tu_assert_var_close(vars[v], w[v], 1e-10, 1e-12, what);
            /* iteration, learning_rate, then accumulator_k, linear_k. */
            clopt_variable *acc, *lin;
            TU_OK(ctx, clopt_optimizer_variable(o, 2 + 2 * (size_t)v, NULL, NULL, &acc));
            TU_OK(ctx, clopt_optimizer_variable(o, 3 + 2 * (size_t)v, NULL, NULL, &lin));
            tu_assert_var_close(acc, n[v], 1e-10, 1e-12, "accumulator");
            tu_assert_var_close(lin, z[v], 1e-10, 1e-12, "linear");
        }
    }
    clopt_context_destroy(ctx);
}

static void formula_all(const char *dev) {
    /* power, initial accumulator, l1, l2, l2 shrinkage, beta */
    static const double cases[][6] = {
        {-0.5, 0.1, 0, 0, 0, 0},         /* the defaults (sqrt path) */
        {-0.2, 0.4, 0.05, 0.15, 0.01, 0.3}, /* Keras's golden configuration */
        {-0.5, 0.1, 0.3, 0, 0, 0},       /* l1 large enough to zero weights */
        {-0.5, 0.2, 0, 0.5, 0, 0},       /* l2 */
        {-0.7, 0.1, 0, 0, 0.2, 0},       /* shrinkage */
        {-0.5, 0.1, 0, 0, 0, 1.0},       /* beta */
        {0.0, 0.0, 0.01, 0.1, 0, 0},     /* fixed learning rate, zero initial accumulator */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) formula(dev, 0.1, cases[i]);
}
Test(ftrl_host, update_rule_all_options) { formula_all(TU_HOST); }
Test(ftrl_pocl, update_rule_all_options) { formula_all(TU_POCL); }

/* ---- host versus OpenCL, every pipeline option, float32 and float64 ---- */

Test(ftrl_pocl, agrees_with_host_plain) {
    om_agree_all(TU_POCL, "Ftrl", "\"learning_rate\": 0.1");
}
Test(ftrl_pocl, agrees_with_host_l1_l2_shrinkage_beta) {
    om_agree_all(TU_POCL, "Ftrl", GOLDEN_CONFIG);
}
Test(ftrl_pocl, agrees_with_host_l1) {
    om_agree_all(TU_POCL, "Ftrl",
                 "\"learning_rate\": 0.2, \"l1_regularization_strength\": 0.2, "
                 "\"l2_regularization_strength\": 0.1");
}
Test(ftrl_pocl, agrees_with_host_learning_rate_power) {
    om_agree_all(TU_POCL, "Ftrl",
                 "\"learning_rate\": 0.1, \"learning_rate_power\": -0.8, "
                 "\"l2_shrinkage_regularization_strength\": 0.05, \"beta\": 0.5");
    om_agree_all(TU_POCL, "Ftrl",
                 "\"learning_rate\": 0.1, \"learning_rate_power\": 0.0, "
                 "\"initial_accumulator_value\": 0.0, \"l2_regularization_strength\": 0.3");
}

/* ---- Keras's validation messages ---- */

static void rejected(const char *config, const char *message) {
    clopt_context *ctx = tu_context(TU_HOST);
    clopt_optimizer *o = NULL;
    TU_ASSERT_STATUS(ctx, clopt_optimizer_from_config(ctx, om_json("Ftrl", config, NULL, NULL), &o),
                     CLOPT_ERR_BAD_VALUE);
    cr_assert_null(o);
    tu_assert_error_mentions(ctx, message);
    clopt_context_destroy(ctx);
}

Test(ftrl_host, bad_values_keras_messages) {
    rejected("\"initial_accumulator_value\": -0.1",
             "`initial_accumulator_value` needs to be positive or zero. Received: "
             "initial_accumulator_value=-0.1.");
    rejected("\"learning_rate_power\": 0.5",
             "`learning_rate_power` needs to be negative or zero. Received: "
             "learning_rate_power=0.5.");
    rejected("\"l1_regularization_strength\": -0.05",
             "`l1_regularization_strength` needs to be positive or zero. Received: "
             "l1_regularization_strength=-0.05.");
    rejected("\"l2_regularization_strength\": -1.0",
             "`l2_regularization_strength` needs to be positive or zero. Received: "
             "l2_regularization_strength=-1.0.");
    rejected("\"l2_shrinkage_regularization_strength\": -0.25",
             "`l2_shrinkage_regularization_strength` needs to be positive or zero. Received: "
             "l2_shrinkage_regularization_strength=-0.25.");
    static const om_bad bad[] = {
        {"\"initial_accumulator_value\": -1e-9", "initial_accumulator_value"},
        {"\"learning_rate_power\": 1e-9", "learning_rate_power"},
        {"\"l1_regularization_strength\": -3.0", "l1_regularization_strength"},
        {"\"beta\": true", "beta"},
    };
    om_bad_values("Ftrl", bad, 3);
    /* A wrong JSON type is a type error, not a value error. */
    clopt_context *ctx = tu_context(TU_HOST);
    clopt_optimizer *o = NULL;
    TU_ASSERT_STATUS(ctx, clopt_optimizer_from_config(ctx, om_json("Ftrl", bad[3].config, NULL,
                                                                   NULL), &o),
                     CLOPT_ERR_BAD_TYPE);
    tu_assert_error_mentions(ctx, "beta");
    clopt_context_destroy(ctx);
}

Test(ftrl_host, boundary_values_are_accepted) {
    static const char *const good[] = {
        "\"initial_accumulator_value\": 0.0", "\"learning_rate_power\": 0.0",
        "\"learning_rate_power\": -3.0", "\"l1_regularization_strength\": 0.0",
        "\"l2_shrinkage_regularization_strength\": 0.0", "\"beta\": -1.0"};
    om_good_values("Ftrl", good, sizeof good / sizeof *good);
}

Test(ftrl_host, config_keys_in_keras_order) {
    static const char *const keys[] = {"learning_rate_power",
                                       "initial_accumulator_value",
                                       "l1_regularization_strength",
                                       "l2_regularization_strength",
                                       "l2_shrinkage_regularization_strength",
                                       "beta",
                                       NULL};
    om_config_keys("Ftrl", "ftrl", keys);
}

/* Keras: accumulator_k (add_variable(name="accumulator"): not named after the variable),
 * linear_k (add_variable_from_reference), interleaved per variable. */
Test(ftrl_host, variable_list_in_keras_order) {
    static const ovl_entry plain[] = {
        {"iteration", 0},   {"learning_rate", 0},      {"accumulator", 6},
        {"dense_kernel_linear", 6}, {"accumulator", 2}, {"dense_bias_linear", 2},
        {NULL, 0}};
    ovl_check("{\"class_name\": \"Ftrl\", \"config\": {}}", plain);
    ovl_check_with_ema_and_accumulation("Ftrl", NULL, plain + 2, 3);
}

/* The accumulator starts at initial_accumulator_value, the linear slot at zero. */
Test(ftrl_host, slot_initial_values) {
    clopt_context *ctx = tu_context(TU_HOST);
    const int64_t n = 3;
    clopt_variable *w = tu_var(ctx, "w", CLOPT_FLOAT32, 1, &n, NULL);
    clopt_optimizer *o = tu_optimizer(
        ctx, "{\"class_name\": \"Ftrl\", \"config\": {\"initial_accumulator_value\": 0.25}}");
    TU_OK(ctx, clopt_optimizer_build(o, &w, 1));
    double a[3], l[3];
    TU_OK(ctx, clopt_optimizer_variable_read(o, 2, a, 3));
    TU_OK(ctx, clopt_optimizer_variable_read(o, 3, l, 3));
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(a[i], 0.25);
        cr_assert_eq(l[i], 0.0);
    }
    clopt_context_destroy(ctx);
}
