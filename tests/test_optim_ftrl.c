/* Ftrl: Keras's published numbers, the update rule with every option, host versus OpenCL over
 * every apply-pipeline option, Keras's validation messages, variable list and config.
 *
 * Keras's numbers: keras-team/keras keras/src/optimizers/ftrl_test.py (Keras 3):
 * test_single_step and test_correctness_with_golden, with that file's tolerances (test_util.h).
 * (ftrl_test.py has no test_weight_decay.) */
#include "io/io_internal.h"
#include "io_util.h"
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
            tu_assert_var_close(tu_slot(o, v ? "b_accumulator" : "a_accumulator"), n[v], 1e-10,
                                1e-12, "accumulator");
            tu_assert_var_close(tu_slot(o, v ? "b_linear" : "a_linear"), z[v], 1e-10, 1e-12,
                                "linear");
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

/* Keras 3.16, keras/src/optimizers/ftrl.py, Ftrl.build: add_optimizer_variables(var_list,
 * ["accumulator", "linear"], initializer=[Constant(initial_accumulator_value), "zeros"]), named by
 * base_optimizer.py's add_variable_from_reference "<path, '/' -> '_'>_<name>", interleaved per
 * variable. (Keras 3.0 to 3.9 made the accumulator with add_variable(name="accumulator").) */
Test(ftrl_host, variable_list_in_keras_order) {
    static const ovl_entry plain[] = {
        {"iteration", 0},           {"learning_rate", 0},          {"dense_kernel_accumulator", 6},
        {"dense_kernel_linear", 6}, {"dense_bias_accumulator", 2}, {"dense_bias_linear", 2},
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

/* ---- checkpoints written with the old accumulator name ---- */

/* The "optimizer_variables" metadata of a checkpoint (the paths it lists) against `want`. */
static void assert_listed_paths(const char *path, const char *want) {
    clopt__st_file f;
    char err[512];
    cr_assert_eq(clopt__st_read(path, &f, err, sizeof err), CLOPT_OK, "%s", err);
    const char *got = clopt__st_meta(&f, "optimizer_variables");
    cr_assert(got && strcmp(got, want) == 0, "%s lists %s, expected %s", path, got, want);
    clopt__st_free(&f);
}

/* tests/data/ftrl_bare_accumulator.safetensors was written by clopt before the accumulator took
 * Keras 3.10's name (commit 0a5be7f, clopt_checkpoint_save): Ftrl {"name": "ftrl",
 * "learning_rate": 0.0625, "initial_accumulator_value": 0.25} built on dense/kernel [3, 2] and
 * dense/bias [2] (float32, the values k0 and b0 below), its variables then set with
 * clopt_optimizer_set_weights to iteration 7, learning rate 0.0625 and the slots below. Its
 * metadata lists "ftrl/accumulator" twice. Loading matches "optimizer/vars/<i>" by position (the
 * names are informational), so it loads whole into today's "<var>_accumulator" slots, and saving
 * again writes today's names. */
Test(ftrl_host, loads_checkpoint_with_bare_accumulator_names) {
    static const char file[] = CLOPT_TEST_DATA_DIR "/ftrl_bare_accumulator.safetensors";
    assert_listed_paths(file, "[\"ftrl/iteration\", \"ftrl/learning_rate\", "
                              "\"ftrl/accumulator\", \"ftrl/dense_kernel_linear\", "
                              "\"ftrl/accumulator\", \"ftrl/dense_bias_linear\"]");
    static const double k0[6] = {0.125, -0.25, 0.375, -0.5, 0.625, -0.75}, b0[2] = {1.0, -1.0};
    static const double ka[6] = {1.25, 1.5, 1.75, 2.0, 2.25, 2.5};
    static const double kz[6] = {-0.5, -0.25, 0.0, 0.25, 0.5, 0.75};
    static const double ba[2] = {3.5, 3.75}, bz[2] = {-1.5, -1.25};
    clopt_context *ctx = tu_context(TU_HOST);
    const int64_t ks[2] = {3, 2}, bs = 2;
    clopt_variable *vars[2] = {tu_var(ctx, "dense/kernel", CLOPT_FLOAT32, 2, ks, NULL),
                               tu_var(ctx, "dense/bias", CLOPT_FLOAT32, 1, &bs, NULL)};
    const char *json = "{\"class_name\": \"Ftrl\", \"config\": {\"initial_accumulator_value\": "
                       "0.25}}";
    clopt_optimizer *whole = tu_optimizer(ctx, json), *own = tu_optimizer(ctx, json);
    TU_OK(ctx, clopt_optimizer_build(whole, vars, 2));
    TU_OK(ctx, clopt_optimizer_build(own, vars, 2));
    TU_OK(ctx, clopt_checkpoint_load(whole, vars, 2, file));
    tu_assert_var_close(vars[0], k0, 0, 0, "dense/kernel");
    tu_assert_var_close(vars[1], b0, 0, 0, "dense/bias");
    TU_OK(ctx, clopt_optimizer_load(own, file));
    clopt_optimizer *both[2] = {whole, own};
    for (int i = 0; i < 2; i++) {
        double lr;
        cr_assert_eq(clopt_optimizer_iterations(both[i]), 7);
        TU_OK(ctx, clopt_optimizer_get_learning_rate(both[i], &lr));
        cr_assert_eq(lr, 0.0625);
        tu_assert_var_close(tu_slot(both[i], "dense_kernel_accumulator"), ka, 0, 0, "kernel n");
        tu_assert_var_close(tu_slot(both[i], "dense_kernel_linear"), kz, 0, 0, "kernel z");
        tu_assert_var_close(tu_slot(both[i], "dense_bias_accumulator"), ba, 0, 0, "bias n");
        tu_assert_var_close(tu_slot(both[i], "dense_bias_linear"), bz, 0, 0, "bias z");
    }
    char *dir = io_tmpdir(), *again = io_path(dir, "again.safetensors");
    TU_OK(ctx, clopt_checkpoint_save(whole, vars, 2, again));
    assert_listed_paths(again, "[\"ftrl/iteration\", \"ftrl/learning_rate\", "
                               "\"ftrl/dense_kernel_accumulator\", \"ftrl/dense_kernel_linear\", "
                               "\"ftrl/dense_bias_accumulator\", \"ftrl/dense_bias_linear\"]");
    io_rmdir(dir);
    free(again);
    free(dir);
    clopt_context_destroy(ctx);
}
