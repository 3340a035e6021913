/* AdamW: Keras's published numbers, the update rule (Adam after the decoupled decay),
 * equivalence with Adam plus weight_decay, host versus OpenCL over every apply-pipeline option,
 * the weight_decay rules and config (its variable list: test_optim_adam.c, with Adam's). */
#include "optim_more.h"

/* ---- Keras's numbers: keras/src/optimizers/adamw_test.py (keras-team/keras) ---- */

static const double single_step[4] = {0.4980, 1.4960, 2.494, 3.492};
#define SINGLE_STEP_JSON "{\"class_name\": \"AdamW\", \"config\": {\"learning_rate\": 0.5}}"

static const double golden[5][10] = {
    {0.4998, 0.4998, 0.4998, 0.4998, 0.4998, 0.4998, 0.4998, 0.4998, 0.4998, 0.4998},
    {0.2486, 0.2475, 0.2463, 0.2451, 0.244, 0.2428, 0.2417, 0.2405, 0.2394, 0.2382},
    {0.1223, 0.1198, 0.1174, 0.1149, 0.1124, 0.11, 0.1075, 0.1051, 0.1027, 0.1003},
    {0.0586, 0.0549, 0.0512, 0.0475, 0.0439, 0.0402, 0.0366, 0.033, 0.0294, 0.0258},
    {0.0263, 0.0215, 0.0167, 0.012, 0.0073, 0.0026, -0.0021, -0.0067, -0.0113, -0.0159}};
#define GOLDEN_JSON                                                                          \
    "{\"class_name\": \"AdamW\", \"config\": {\"learning_rate\": 1.0, \"weight_decay\": 0.5, " \
    "\"epsilon\": 2}}"

Test(adamw_host, keras_single_step) {
    om_keras_single_step_f32_f64(TU_HOST, SINGLE_STEP_JSON, single_step);
}
Test(adamw_pocl, keras_single_step) {
    om_keras_single_step_f32_f64(TU_POCL, SINGLE_STEP_JSON, single_step);
}
Test(adamw_host, keras_golden) {
    om_keras_golden_f32_f64(TU_HOST, GOLDEN_JSON, golden);
}
Test(adamw_pocl, keras_golden) {
    om_keras_golden_f32_f64(TU_POCL, GOLDEN_JSON, golden);
}
Test(adamw_host, keras_weight_decay) { om_keras_weight_decay(TU_HOST, "AdamW"); }
Test(adamw_pocl, keras_weight_decay) { om_keras_weight_decay(TU_POCL, "AdamW"); }

/* Keras's test_weight_decay_is_none: AdamW(weight_decay=None) raises "Argument `weight_decay`
 * must be a float. Received: weight_decay=None". */
Test(adamw_host, weight_decay_null_is_rejected) {
    static const om_bad bad[] = {
        {"\"learning_rate\": 1.0, \"weight_decay\": null", "weight_decay"},
    };
    om_bad_values("AdamW", bad, 1);
    clopt_context *ctx = tu_context(TU_HOST);
    clopt_optimizer *o = NULL;
    TU_ASSERT_STATUS(ctx,
                     clopt_optimizer_from_config(
                         ctx, om_json("AdamW", "\"weight_decay\": null", NULL, NULL), &o),
                     CLOPT_ERR_BAD_VALUE);
    tu_assert_error_mentions(ctx, "Argument `weight_decay` must be a float");
    cr_assert_null(o);
    clopt_context_destroy(ctx);
}

/* ---- the update rule (semantics doc sections 1.6 and 3), ported independently ---- */

enum { BETA_1, BETA_2, EPSILON, AMSGRAD, WEIGHT_DECAY };

static void ref(const double *hp, double lr, int64_t t, double g, double *w, double *s) {
    const double b1 = hp[BETA_1], b2 = hp[BETA_2];
    *w -= *w * hp[WEIGHT_DECAY] * lr;
    const double alpha = lr * sqrt(1 - pow(b2, (double)t)) / (1 - pow(b1, (double)t));
    s[0] += (g - s[0]) * (1 - b1);
    s[1] += (g * g - s[1]) * (1 - b2);
    double v = s[1];
    if (hp[AMSGRAD] != 0) v = s[2] = fmax(s[2], s[1]);
    *w -= alpha * s[0] / (sqrt(v) + hp[EPSILON]);
}

static void formula(const char *dev, const char *wd_json, double wd, int amsgrad) {
    char json[256];
    snprintf(json, sizeof json,
             "{\"class_name\": \"AdamW\", \"config\": {\"learning_rate\": 0.05, \"beta_1\": 0.8, "
             "\"beta_2\": 0.9, \"epsilon\": 1e-6, \"amsgrad\": %s%s%s}}",
             amsgrad ? "true" : "false", wd_json ? ", " : "", wd_json ? wd_json : "");
    const double hp[5] = {0.8, 0.9, 1e-6, amsgrad, wd}, init[3] = {0, 0, 0};
    const char *names[3] = {"momentum", "velocity", "velocity_hat"};
    om_formula_check(dev, json, (double)0.05f, hp, ref, amsgrad ? 3 : 2, names, init);
}

static void formula_all(const char *dev) {
    formula(dev, NULL, 0.004, 0); /* the default weight_decay */
    formula(dev, "\"weight_decay\": 0.3", 0.3, 0);
    formula(dev, "\"weight_decay\": 0.1", 0.1, 1);
    formula(dev, "\"weight_decay\": 0.0", 0.0, 1);
}
Test(adamw_host, update_rule) { formula_all(TU_HOST); }
Test(adamw_pocl, update_rule) { formula_all(TU_POCL); }

/* AdamW(wd) and Adam(weight_decay=wd) run the same steps: the same bits. */
static void same_as_adam(const char *dev, clopt_dtype dtype) {
    clopt_context *ctx = tu_context(dev);
    const int64_t n = 300;
    double w0[300], g[300];
    uint64_t rng = 7;
    tu_rand_fill(&rng, w0, 300, -1, 1);
    clopt_variable *a = tu_var_from_f64(ctx, "a", dtype, 1, &n, w0);
    clopt_variable *b = tu_var_from_f64(ctx, "b", dtype, 1, &n, w0);
    clopt_variable *ga = tu_var_from_f64(ctx, "ga", dtype, 1, &n, w0);
    clopt_variable *gb = tu_var_from_f64(ctx, "gb", dtype, 1, &n, w0);
    clopt_optimizer *adamw = tu_optimizer(
        ctx, om_json("AdamW", "\"learning_rate\": 0.01", "\"amsgrad\": true", NULL));
    clopt_optimizer *adam = tu_optimizer(
        ctx, om_json("Adam", "\"learning_rate\": 0.01",
                     "\"amsgrad\": true, \"weight_decay\": 0.004", NULL));
    for (int step = 0; step < 4; step++) {
        tu_rand_fill(&rng, g, 300, -1, 1);
        tu_write_f64(ga, g);
        tu_write_f64(gb, g);
        TU_OK(ctx, clopt_optimizer_apply(adamw, &ga, &a, 1));
        TU_OK(ctx, clopt_optimizer_apply(adam, &gb, &b, 1));
    }
    size_t na, nb;
    unsigned char *ba = tu_read_bytes(a, &na), *bb = tu_read_bytes(b, &nb);
    tu_assert_same_bytes(ba, bb, na, "AdamW versus Adam + weight_decay");
    free(ba);
    free(bb);
    clopt_context_destroy(ctx);
}
Test(adamw_host, same_as_adam_with_weight_decay) {
    same_as_adam(TU_HOST, CLOPT_FLOAT32);
    same_as_adam(TU_HOST, CLOPT_FLOAT64);
}
Test(adamw_pocl, same_as_adam_with_weight_decay) {
    same_as_adam(TU_POCL, CLOPT_FLOAT32);
    same_as_adam(TU_POCL, CLOPT_FLOAT64);
}

/* ---- host versus OpenCL, every pipeline option, float32 and float64 ---- */

Test(adamw_pocl, agrees_with_host_float32) {
    om_agree_dtype(TU_POCL, CLOPT_FLOAT32, "AdamW", "\"learning_rate\": 0.01");
}
Test(adamw_pocl, agrees_with_host_float64) {
    om_agree_dtype(TU_POCL, CLOPT_FLOAT64, "AdamW", "\"learning_rate\": 0.01");
}
Test(adamw_pocl, agrees_with_host_amsgrad_float32) {
    om_agree_dtype(TU_POCL, CLOPT_FLOAT32, "AdamW", "\"learning_rate\": 0.01, \"amsgrad\": true");
}
Test(adamw_pocl, agrees_with_host_amsgrad_float64) {
    om_agree_dtype(TU_POCL, CLOPT_FLOAT64, "AdamW", "\"learning_rate\": 0.01, \"amsgrad\": true");
}

/* ---- hyperparameters ---- */

Test(adamw_host, bad_values_are_rejected) {
    static const om_bad bad[] = {
        {"\"weight_decay\": null", "weight_decay"},
        {"\"beta_1\": 1.5", "beta_1"},
        {"\"beta_2\": -0.1", "beta_2"},
        {"\"epsilon\": -1.0", "epsilon"},
        {"\"use_ema\": true, \"ema_momentum\": 1.5", "ema_momentum"},
    };
    om_bad_values("AdamW", bad, sizeof bad / sizeof *bad);
}

Test(adamw_host, config_keys_in_keras_order) {
    static const char *const keys[] = {"beta_1", "beta_2", "epsilon", "amsgrad", NULL};
    om_config_keys("AdamW", "adamw", keys);
}

/* weight_decay defaults to 0.004 and is written by get_config. */
Test(adamw_host, default_weight_decay) {
    clopt_context *ctx = tu_context(TU_HOST);
    clopt_optimizer *o = tu_optimizer(ctx, "{\"class_name\": \"AdamW\", \"config\": {}}");
    char *cfg = NULL;
    TU_OK(ctx, clopt_optimizer_get_config(o, &cfg));
    cr_assert(strstr(cfg, "\"weight_decay\": 0.004,"), "%s", cfg);
    clopt_free(cfg);
    /* the plain class name "adamw" resolves too, as keras.optimizers.get does */
    o = tu_optimizer(ctx, "{\"class_name\": \"adamw\", \"config\": {\"weight_decay\": 0.1}}");
    TU_OK(ctx, clopt_optimizer_get_config(o, &cfg));
    cr_assert(strstr(cfg, "\"weight_decay\": 0.1,"), "%s", cfg);
    cr_assert(strstr(cfg, "\"class_name\": \"AdamW\""), "%s", cfg);
    clopt_free(cfg);
    clopt_context_destroy(ctx);
}
