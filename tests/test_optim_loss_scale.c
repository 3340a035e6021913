/* LossScaleOptimizer: Keras's published tests, its variable list and config, scale_loss, skipped
 * steps, wrapping Adam(amsgrad), EMA and gradient accumulation, and host versus OpenCL.
 *
 * Keras's tests: keras-team/keras keras/src/optimizers/loss_scale_optimizer_test.py (Keras 3; the
 * version stored at commit 3a408dacd384b60d175e94cddd49391b14060026): test_apply_with_no_vars,
 * test_finite_step, test_finite_step_with_inner_loss_scale, test_infinite_step,
 * test_downscaling, test_upscaling and test_iterations_update, each stateful and stateless (clopt
 * follows the JAX-style base stateless_apply; Keras skips the stateless variants on TensorFlow
 * only), with that file's tolerance (rtol = atol = 1e-4); test_serialization, test_config,
 * test_init_dynamic_arg, test_init_unsupported_arg, test_init_base_optimizer_unsupported_args
 * and test_deserialization_backwards_compatibility. Not ported: test_finite_step_with_overwrite
 * (clopt has no overwrite_with_gradient variables).
 *
 * Beyond Keras's file: a step with a non-finite gradient must leave every variable, slot and
 * counter of the inner optimizer exactly as it was (only step_counter and dynamic_scale move);
 * an LSO around Adam(amsgrad), around Adam with EMA and around SGD with gradient accumulation
 * must give bitwise what the bare inner optimizer gives when it is fed the unscaled gradients of
 * the finite steps only (the scale is a power of two, so scaling and unscaling are exact); and
 * the host and OpenCL backends agree over such a trajectory (test_util.h tolerances, the scale
 * and counters exactly). */
#include <jansson.h>
#include "optim_state.h"

#define SGD05 "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.5}}"
#define SGD05_LSF                                                                                \
    "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.5, \"loss_scale_factor\": "     \
    "100.0}}"

/* {"class_name": "LossScaleOptimizer", "config": {"inner_optimizer": inner, extra}} */
static const char *lso_json(const char *inner, const char *extra) {
    static char buf[4][2048];
    static int next;
    char *out = buf[next++ & 3];
    snprintf(out, sizeof buf[0],
             "{\"class_name\": \"LossScaleOptimizer\", \"config\": {\"inner_optimizer\": %s%s%s}}",
             inner, extra && *extra ? ", " : "", extra ? extra : "");
    return out;
}

static double scale_of(const clopt_optimizer *o) {
    double s = NAN;
    cr_assert(clopt_optimizer_scale_loss(o, 1.0, &s) == CLOPT_OK);
    return s;
}

/* One stateless step as Keras's tests write it: new values from the optimizer's current values
 * (read into host arrays: Keras's [v.value for v in optimizer.variables]); the new trainable
 * values go to vars_out. With write_back the new optimizer values are assigned back to the
 * optimizer (Keras: for ref_v, v in zip(optimizer.variables, opt_vars): ref_v.assign(v)), which
 * is set_weights. */
static void stateless_step(clopt_optimizer *o, clopt_variable **grads, clopt_variable **vars_in,
                           clopt_variable **vars_out, size_t n, int write_back) {
    clopt_context *ctx = clopt_variable_context(vars_in[0]);
    os_state in, out;
    os_read(&in, o);
    os_alloc(&out, o, NAN);
    TU_OK(ctx, clopt_optimizer_stateless_apply(o, (const double *const *)in.vals, grads, vars_in,
                                               n, out.vals, vars_out));
    if (write_back)
        TU_OK(ctx, clopt_optimizer_set_weights(o, (const double *const *)out.vals, out.counts,
                                               out.n));
    os_free(&in);
    os_free(&out);
}

/* ---- Keras's tests ---- */

static const double W0[4] = {1, 2, 3, 4}, G0[4] = {1, 6, 7, 2};
static const double FINITE_WANT[4] = {0.5, -1.0, -0.5, 3.0};
#define KERAS_TOL 1e-4

/* test_finite_step / test_finite_step_with_inner_loss_scale: SGD(0.5) inside, gradients
 * [1, 6, 7, 2] * initial_scale: one step gives [0.5, -1, -0.5, 3]. */
static void keras_finite_step(const char *dev, const char *inner, int stateless) {
    clopt_context *ctx = tu_context(dev);
    clopt_optimizer *o = tu_optimizer(ctx, lso_json(inner, NULL));
    const double s = scale_of(o); /* Keras: optimizer.initial_scale */
    cr_assert_eq(s, 32768.0, "initial_scale is 2**15 by default");
    double gs[4];
    for (int i = 0; i < 4; i++) gs[i] = G0[i] * s;
    const int64_t n = 4;
    clopt_variable *w = tu_var_from_f64(ctx, "w", CLOPT_FLOAT32, 1, &n, W0);
    clopt_variable *g = tu_var_from_f64(ctx, "g", CLOPT_FLOAT32, 1, &n, gs);
    if (stateless) {
        clopt_variable *w_out = tu_var(ctx, "w_out", CLOPT_FLOAT32, 1, &n, NULL);
        TU_OK(ctx, clopt_optimizer_build(o, &w, 1));
        stateless_step(o, &g, &w, &w_out, 1, 0);
        tu_assert_var_close(w_out, FINITE_WANT, KERAS_TOL, KERAS_TOL, "stateless: new values");
        tu_assert_var_close(w, W0, 0, 0, "stateless: the variable itself");
        cr_assert_eq(clopt_optimizer_iterations(o), 0, "stateless: iterations moved");
    } else {
        TU_OK(ctx, clopt_optimizer_apply(o, &g, &w, 1));
        tu_assert_var_close(w, FINITE_WANT, KERAS_TOL, KERAS_TOL, "stateful");
        cr_assert_eq(clopt_optimizer_iterations(o), 1);
    }
    clopt_context_destroy(ctx);
}
Test(lso_host, keras_finite_step) {
    keras_finite_step(TU_HOST, SGD05, 0);
    keras_finite_step(TU_HOST, SGD05, 1);
}
Test(lso_pocl, keras_finite_step) {
    keras_finite_step(TU_POCL, SGD05, 0);
    keras_finite_step(TU_POCL, SGD05, 1);
}
/* The inner loss_scale_factor (100) is dropped: gradients are unscaled once. */
Test(lso_host, keras_finite_step_with_inner_loss_scale) {
    keras_finite_step(TU_HOST, SGD05_LSF, 0);
    keras_finite_step(TU_HOST, SGD05_LSF, 1);
}
Test(lso_pocl, keras_finite_step_with_inner_loss_scale) {
    keras_finite_step(TU_POCL, SGD05_LSF, 0);
    keras_finite_step(TU_POCL, SGD05_LSF, 1);
}

/* test_apply_with_no_vars: build, then apply(grads) without the variable list. */
static void keras_apply_with_no_vars(const char *dev) {
    clopt_context *ctx = tu_context(dev);
    clopt_optimizer *o = tu_optimizer(ctx, lso_json(SGD05, NULL));
    double gs[4];
    for (int i = 0; i < 4; i++) gs[i] = G0[i] * scale_of(o);
    const int64_t n = 4;
    clopt_variable *w = tu_var_from_f64(ctx, "w", CLOPT_FLOAT32, 1, &n, W0);
    clopt_variable *g = tu_var_from_f64(ctx, "g", CLOPT_FLOAT32, 1, &n, gs);
    TU_OK(ctx, clopt_optimizer_build(o, &w, 1));
    TU_OK(ctx, clopt_optimizer_apply(o, &g, NULL, 1));
    tu_assert_var_close(w, FINITE_WANT, KERAS_TOL, KERAS_TOL, "apply without variables");
    clopt_context_destroy(ctx);
}
Test(lso_host, keras_apply_with_no_vars) { keras_apply_with_no_vars(TU_HOST); }
Test(lso_pocl, keras_apply_with_no_vars) { keras_apply_with_no_vars(TU_POCL); }

/* test_infinite_step: gradients of +inf leave the variable alone. */
static void keras_infinite_step(const char *dev, int stateless) {
    clopt_context *ctx = tu_context(dev);
    clopt_optimizer *o = tu_optimizer(ctx, lso_json(SGD05, NULL));
    const double inf[4] = {INFINITY, INFINITY, INFINITY, INFINITY};
    const int64_t n = 4;
    clopt_variable *w = tu_var_from_f64(ctx, "w", CLOPT_FLOAT32, 1, &n, W0);
    clopt_variable *g = tu_var_from_f64(ctx, "g", CLOPT_FLOAT32, 1, &n, inf);
    if (stateless) {
        clopt_variable *w_out = tu_var(ctx, "w_out", CLOPT_FLOAT32, 1, &n, NULL);
        TU_OK(ctx, clopt_optimizer_build(o, &w, 1));
        stateless_step(o, &g, &w, &w_out, 1, 0);
        tu_assert_var_close(w_out, W0, KERAS_TOL, KERAS_TOL, "stateless: new values");
    } else {
        TU_OK(ctx, clopt_optimizer_apply(o, &g, &w, 1));
    }
    tu_assert_var_close(w, W0, KERAS_TOL, KERAS_TOL, "the variable");
    cr_assert_eq(clopt_optimizer_iterations(o), 0, "the inner optimizer did not step");
    clopt_context_destroy(ctx);
}
Test(lso_host, keras_infinite_step) {
    keras_infinite_step(TU_HOST, 0);
    keras_infinite_step(TU_HOST, 1);
}
Test(lso_pocl, keras_infinite_step) {
    keras_infinite_step(TU_POCL, 0);
    keras_infinite_step(TU_POCL, 1);
}

/* test_downscaling (initial_scale 400, four infinite steps: scale_loss(1.0) == 25) and
 * test_upscaling (initial_scale 2, dynamic_growth_steps 2, eight finite steps: 32). */
static void keras_rescaling(const char *dev, int stateless, int up) {
    clopt_context *ctx = tu_context(dev);
    clopt_optimizer *o = tu_optimizer(
        ctx, lso_json(SGD05, up ? "\"initial_scale\": 2.0, \"dynamic_growth_steps\": 2"
                                : "\"initial_scale\": 400.0"));
    const double inf[4] = {INFINITY, INFINITY, INFINITY, INFINITY};
    const int64_t n = 4;
    clopt_variable *w = tu_var_from_f64(ctx, "w", CLOPT_FLOAT32, 1, &n, W0);
    clopt_variable *g = tu_var_from_f64(ctx, "g", CLOPT_FLOAT32, 1, &n, up ? G0 : inf);
    clopt_variable *w_out = tu_var(ctx, "w_out", CLOPT_FLOAT32, 1, &n, NULL);
    TU_OK(ctx, clopt_optimizer_build(o, &w, 1));
    for (int i = 0; i < (up ? 8 : 4); i++) {
        if (stateless) stateless_step(o, &g, &w, &w_out, 1, 1);
        else TU_OK(ctx, clopt_optimizer_apply(o, &g, &w, 1));
    }
    const double want = up ? 32.0 : 25.0;
    double got = scale_of(o);
    tu_assert_close(&got, &want, 1, KERAS_TOL, KERAS_TOL, "scale_loss(1.0)");
    cr_assert_eq(got, want, "the scale is exact: %.17g", got);
    clopt_context_destroy(ctx);
}
Test(lso_host, keras_downscaling) {
    keras_rescaling(TU_HOST, 0, 0);
    keras_rescaling(TU_HOST, 1, 0);
}
Test(lso_pocl, keras_downscaling) {
    keras_rescaling(TU_POCL, 0, 0);
    keras_rescaling(TU_POCL, 1, 0);
}
Test(lso_host, keras_upscaling) {
    keras_rescaling(TU_HOST, 0, 1);
    keras_rescaling(TU_HOST, 1, 1);
}
Test(lso_pocl, keras_upscaling) {
    keras_rescaling(TU_POCL, 0, 1);
    keras_rescaling(TU_POCL, 1, 1);
}

/* test_iterations_update: iterations (the inner optimizer's) is 0, then 1, 2, 3. */
static void keras_iterations_update(const char *dev, int stateless) {
    clopt_context *ctx = tu_context(dev);
    clopt_optimizer *o = tu_optimizer(ctx, lso_json(SGD05, NULL));
    const int64_t n = 4;
    clopt_variable *w = tu_var_from_f64(ctx, "w", CLOPT_FLOAT32, 1, &n, W0);
    clopt_variable *g = tu_var_from_f64(ctx, "g", CLOPT_FLOAT32, 1, &n, G0);
    clopt_variable *w_out = tu_var(ctx, "w_out", CLOPT_FLOAT32, 1, &n, NULL);
    TU_OK(ctx, clopt_optimizer_build(o, &w, 1));
    cr_assert_eq(clopt_optimizer_iterations(o), 0);
    for (int i = 0; i < 3; i++) {
        if (stateless) stateless_step(o, &g, &w, &w_out, 1, 1);
        else TU_OK(ctx, clopt_optimizer_apply(o, &g, &w, 1));
        cr_assert_eq(clopt_optimizer_iterations(o), i + 1, "%s: after step %d",
                     stateless ? "stateless" : "stateful", i);
    }
    /* The LSO's own `iteration` (entry 0) is never incremented. */
    cr_assert_eq(os_scalar(o, 0), 0.0);
    clopt_context_destroy(ctx);
}
Test(lso_host, keras_iterations_update) {
    keras_iterations_update(TU_HOST, 0);
    keras_iterations_update(TU_HOST, 1);
}
Test(lso_pocl, keras_iterations_update) {
    keras_iterations_update(TU_POCL, 0);
    keras_iterations_update(TU_POCL, 1);
}

/* ---- config (host) ---- */

static clopt_context *cctx;
static void csetup(void) { cctx = tu_context(TU_HOST); }
static void cteardown(void) { clopt_context_destroy(cctx); }
TestSuite(lso_config, .init = csetup, .fini = cteardown);

static char *config_of(const clopt_optimizer *o) {
    char *s = NULL;
    TU_OK(cctx, clopt_optimizer_get_config(o, &s));
    return s;
}

/* from_config(get_config(x)) gives x's config text again. */
static void round_trip(const char *json) {
    clopt_optimizer *o = tu_optimizer(cctx, json);
    char *a = config_of(o);
    clopt_optimizer *o2 = tu_optimizer(cctx, a);
    char *b = config_of(o2);
    cr_assert_str_eq(b, a, "from %s", json);
    clopt_free(a);
    clopt_free(b);
    clopt_optimizer_destroy(o);
    clopt_optimizer_destroy(o2);
}

/* test_serialization: LossScaleOptimizer(SGD(0.5), initial_scale=3.0, dynamic_growth_steps=2,
 * name="test_opt"): get_config has exactly 4 keys with those values, and from_config takes it. */
Test(lso_config, keras_serialization) {
    clopt_optimizer *o = tu_optimizer(
        cctx, lso_json(SGD05, "\"initial_scale\": 3.0, \"dynamic_growth_steps\": 2, \"name\": "
                              "\"test_opt\""));
    cr_assert_str_eq(clopt_optimizer_class_name(o), "LossScaleOptimizer");
    cr_assert_str_eq(clopt_optimizer_name(o), "test_opt");
    char *text = config_of(o);
    json_error_t e;
    json_t *root = json_loads(text, 0, &e);
    cr_assert(root, "get_config is not JSON: %s", text);
    cr_assert_str_eq(json_string_value(json_object_get(root, "class_name")), "LossScaleOptimizer");
    json_t *c = json_object_get(root, "config");
    cr_assert(json_is_object(c));
    cr_assert_eq(json_object_size(c), 4, "config has %zu keys: %s", json_object_size(c), text);
    cr_assert_str_eq(json_string_value(json_object_get(c, "name")), "test_opt");
    cr_assert(json_is_real(json_object_get(c, "initial_scale")));
    cr_assert_eq(json_real_value(json_object_get(c, "initial_scale")), 3.0);
    cr_assert(json_is_integer(json_object_get(c, "dynamic_growth_steps")));
    cr_assert_eq(json_integer_value(json_object_get(c, "dynamic_growth_steps")), 2);
    json_t *inner = json_object_get(c, "inner_optimizer");
    cr_assert(json_is_object(inner), "inner_optimizer missing: %s", text);
    cr_assert_str_eq(json_string_value(json_object_get(inner, "class_name")), "SGD");
    /* Keras's key order: name, inner_optimizer, initial_scale, dynamic_growth_steps. */
    const char *p1 = strstr(text, "\"name\": \"test_opt\""), *p2 = strstr(text, "\"inner_optimizer\""),
               *p3 = strstr(text, "\"initial_scale\""), *p4 = strstr(text, "\"dynamic_growth_steps\"");
    cr_assert(p1 && p2 && p3 && p4 && p1 < p2 && p2 < p3 && p3 < p4, "key order: %s", text);
    json_decref(root);
    clopt_optimizer *o2 = tu_optimizer(cctx, text); /* LossScaleOptimizer.from_config(config) */
    cr_assert_str_eq(clopt_optimizer_name(o2), "test_opt");
    clopt_free(text);
}

/* test_config: run_class_serialization_test on LossScaleOptimizer(SGD(learning_rate=0.5,
 * momentum=0.06, nesterov=True, weight_decay=0.004)), and other LSOs: the config survives a
 * round trip unchanged. */
Test(lso_config, keras_config_round_trip) {
    round_trip(lso_json("{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.5, "
                        "\"momentum\": 0.06, \"nesterov\": true, \"weight_decay\": 0.004}}",
                        NULL));
    round_trip(lso_json("{\"class_name\": \"Adam\", \"config\": {}}", NULL));
    round_trip(lso_json("{\"class_name\": \"Adam\", \"config\": {\"amsgrad\": true, \"use_ema\": "
                        "true, \"ema_overwrite_frequency\": 3, \"clipnorm\": 1.5}}",
                        "\"initial_scale\": 1024.0, \"dynamic_growth_steps\": 7, \"name\": "
                        "\"my_lso\""));
    round_trip(lso_json("{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": {\"module\": "
                        "\"keras.optimizers.schedules\", \"class_name\": \"ExponentialDecay\", "
                        "\"config\": {\"initial_learning_rate\": 0.1, \"decay_steps\": 10, "
                        "\"decay_rate\": 0.5, \"staircase\": false, \"name\": "
                        "\"ExponentialDecay\"}, \"registered_name\": null}}}",
                        NULL));
    /* The default LSO: Keras's default name and values. */
    clopt_optimizer *o = tu_optimizer(cctx, lso_json(SGD05, NULL));
    cr_assert_str_eq(clopt_optimizer_name(o), "loss_scale_optimizer");
    char *text = config_of(o);
    cr_assert(strstr(text, "\"initial_scale\": 32768.0"), "%s", text);
    cr_assert(strstr(text, "\"dynamic_growth_steps\": 2000"), "%s", text);
    clopt_free(text);
}

/* Keras sets the inner loss_scale_factor to None, and the config says so. */
Test(lso_config, inner_loss_scale_factor_is_dropped) {
    clopt_optimizer *o = tu_optimizer(cctx, lso_json(SGD05_LSF, NULL));
    char *text = config_of(o);
    cr_assert(strstr(text, "\"loss_scale_factor\": null"), "%s", text);
    cr_assert(!strstr(text, "100.0"), "%s", text);
    clopt_free(text);
    round_trip(lso_json(SGD05_LSF, NULL));
}

/* from_config(json) must fail with `want`, name `culprit` (and `also`), and leave *out alone. */
static void refuse(const char *json, clopt_status want, const char *culprit, const char *also) {
    clopt_optimizer *sentinel = (clopt_optimizer *)(uintptr_t)0x5eed, *out = sentinel;
    clopt_status st = clopt_optimizer_from_config(cctx, json, &out);
    cr_assert_eq(st, want, "%s: got %s, want %s (%s)", json, clopt_status_name(st),
                 clopt_status_name(want), clopt_context_last_error(cctx));
    cr_assert_eq(out, sentinel, "%s: out written on failure", json);
    if (culprit) tu_assert_error_mentions(cctx, culprit);
    if (also) tu_assert_error_mentions(cctx, also);
}

/* test_init_dynamic_arg: dynamic=True is accepted, dynamic=False refused ("set
 * `loss_scale_factor`"). */
Test(lso_config, keras_init_dynamic_arg) {
    clopt_optimizer *o = tu_optimizer(cctx, lso_json(SGD05, "\"dynamic\": true"));
    clopt_optimizer_destroy(o);
    refuse(lso_json(SGD05, "\"dynamic\": false"), CLOPT_ERR_BAD_VALUE, "dynamic=False",
           "set `loss_scale_factor`");
}

/* test_init_unsupported_arg: unknown arguments are refused, naming them (clopt names the first
 * one it meets; Keras lists all). */
Test(lso_config, keras_init_unsupported_arg) {
    refuse(lso_json(SGD05, "\"foo\": true, \"bar\": 3"), CLOPT_ERR_UNKNOWN_KEY, "foo", NULL);
    refuse(lso_json(SGD05, "\"momentum\": 0.5"), CLOPT_ERR_UNKNOWN_KEY, "momentum", NULL);
}

/* test_init_base_optimizer_unsupported_args: each base argument at a non-default value is
 * refused with "Instead, set `<arg>` on the `inner_optimizer`". */
Test(lso_config, keras_init_base_optimizer_unsupported_args) {
    static const char *const args[][2] = {
        {"weight_decay", "0.5"},        {"clipnorm", "0.5"},
        {"global_clipnorm", "0.5"},     {"clipvalue", "0.5"},
        {"use_ema", "true"},            {"ema_momentum", "0.5"},
        {"ema_overwrite_frequency", "2"}, {"loss_scale_factor", "0.5"},
        {"gradient_accumulation_steps", "2"}};
    for (size_t i = 0; i < sizeof args / sizeof *args; i++) {
        char extra[128], culprit[128];
        snprintf(extra, sizeof extra, "\"%s\": %s", args[i][0], args[i][1]);
        snprintf(culprit, sizeof culprit, "set `%s` on the `inner_optimizer`", args[i][0]);
        refuse(lso_json(SGD05, extra), CLOPT_ERR_BAD_VALUE, culprit, NULL);
    }
    /* Defaults of None are refused with any value other than None, 0 included. */
    refuse(lso_json(SGD05, "\"weight_decay\": 0.0"), CLOPT_ERR_BAD_VALUE, "weight_decay", NULL);
    refuse(lso_json(SGD05, "\"clipvalue\": 0"), CLOPT_ERR_BAD_VALUE, "clipvalue", NULL);
}

/* test_deserialization_backwards_compatibility: an old config listing every base argument at
 * its default is accepted, and the new config has the 4 keys only. */
Test(lso_config, keras_deserialization_backwards_compatibility) {
    static const char json[] =
        "{\"class_name\": \"LossScaleOptimizer\", \"config\": {"
        "\"name\": \"loss_scale_optimizer\", \"weight_decay\": null, \"clipnorm\": null, "
        "\"global_clipnorm\": null, \"clipvalue\": null, \"use_ema\": false, "
        "\"ema_momentum\": 0.99, \"ema_overwrite_frequency\": null, \"loss_scale_factor\": null, "
        "\"gradient_accumulation_steps\": null, \"inner_optimizer\": {\"module\": "
        "\"keras.optimizers\", \"class_name\": \"SGD\", \"config\": {\"name\": \"SGD\", "
        "\"learning_rate\": 0.5, \"weight_decay\": null, \"clipnorm\": null, "
        "\"global_clipnorm\": null, \"clipvalue\": null, \"use_ema\": false, "
        "\"ema_momentum\": 0.99, \"ema_overwrite_frequency\": null, \"loss_scale_factor\": null, "
        "\"gradient_accumulation_steps\": null, \"momentum\": 0.0, \"nesterov\": false}, "
        "\"registered_name\": null}, \"initial_scale\": 2.0, \"dynamic_growth_steps\": 2}}";
    clopt_optimizer *o = tu_optimizer(cctx, json);
    cr_assert_eq(scale_of(o), 2.0);
    char *text = config_of(o);
    json_error_t e;
    json_t *root = json_loads(text, 0, &e);
    cr_assert(root);
    cr_assert_eq(json_object_size(json_object_get(root, "config")), 4, "%s", text);
    json_decref(root);
    clopt_free(text);
}

/* Errors beyond Keras's file: a missing or malformed inner optimizer, nested LSOs, bad values of
 * the LSO's own keys. */
Test(lso_config, config_errors) {
    refuse("{\"class_name\": \"LossScaleOptimizer\", \"config\": {\"initial_scale\": 2.0}}",
           CLOPT_ERR_BAD_TYPE, "inner_optimizer", NULL);
    refuse("{\"class_name\": \"LossScaleOptimizer\"}", CLOPT_ERR_BAD_TYPE, "inner_optimizer",
           NULL);
    refuse(lso_json("\"sgd\"", NULL), CLOPT_ERR_BAD_TYPE, NULL, NULL);
    refuse(lso_json("{\"class_name\": \"Sgdx\", \"config\": {}}", NULL),
           CLOPT_ERR_UNKNOWN_OPTIMIZER, "Sgdx", NULL);
    refuse(lso_json("{\"class_name\": \"SGD\", \"config\": {\"beta_7\": 1}}", NULL),
           CLOPT_ERR_UNKNOWN_KEY, "beta_7", NULL);
    refuse(lso_json("{\"class_name\": \"SGD\", \"config\": {\"momentum\": 2.0}}", NULL),
           CLOPT_ERR_BAD_VALUE, "momentum", NULL);
    char nested[512];
    snprintf(nested, sizeof nested, "%s", lso_json(SGD05, NULL));
    refuse(lso_json(nested, NULL), CLOPT_ERR_BAD_VALUE, "LossScaleOptimizer", NULL);
    refuse(lso_json(SGD05, "\"initial_scale\": 0.0"), CLOPT_ERR_BAD_VALUE, "initial_scale", NULL);
    refuse(lso_json(SGD05, "\"initial_scale\": -4.0"), CLOPT_ERR_BAD_VALUE, "initial_scale",
           NULL);
    refuse(lso_json(SGD05, "\"initial_scale\": \"big\""), CLOPT_ERR_BAD_TYPE, "initial_scale",
           NULL);
    refuse(lso_json(SGD05, "\"dynamic_growth_steps\": 0"), CLOPT_ERR_BAD_VALUE,
           "dynamic_growth_steps", NULL);
    refuse(lso_json(SGD05, "\"dynamic_growth_steps\": 2.5"), CLOPT_ERR_BAD_VALUE,
           "dynamic_growth_steps", NULL);
    refuse(lso_json(SGD05, "\"name\": 3"), CLOPT_ERR_BAD_TYPE, "name", NULL);
}

/* ---- variable list, scale_loss, delegation (host) ---- */

typedef struct lso_entry {
    const char *name, *path;
    int64_t size; /* 0: a host scalar */
} lso_entry;

static void check_list(clopt_optimizer *o, const lso_entry *want) {
    size_t n = 0;
    while (want[n].name) n++;
    cr_assert_eq(clopt_optimizer_variable_count(o), n, "%zu variables, want %zu",
                 clopt_optimizer_variable_count(o), n);
    for (size_t i = 0; i < n; i++) {
        const char *name, *path;
        clopt_variable *v;
        TU_OK(cctx, clopt_optimizer_variable(o, i, &name, &path, &v));
        cr_assert_str_eq(name, want[i].name, "variable %zu", i);
        cr_assert_str_eq(path, want[i].path, "path of variable %zu", i);
        cr_assert_eq(v != NULL, want[i].size != 0, "storage of variable %zu (%s)", i, name);
        if (v) cr_assert_eq(clopt_variable_size(v), want[i].size, "size of %s", name);
    }
    TU_ASSERT_STATUS(cctx, clopt_optimizer_variable(o, n, NULL, NULL, NULL),
                     CLOPT_ERR_INVALID_ARGUMENT);
}

/* Keras 3.16, keras/src/optimizers/loss_scale_optimizer.py: the `variables` property is the
 * LSO's own [iteration, learning_rate (BaseOptimizer.__init__ with learning_rate=0.0),
 * step_counter, dynamic_scale (LossScaleOptimizer.build's add_variable calls)], then the inner
 * optimizer's list (semantics doc sections 3 and 5). Before build, as in Keras, only iteration and
 * learning_rate (then the unbuilt inner optimizer's); a failed build leaves it so. */
Test(lso_config, variable_list) {
    const int64_t ks[2] = {3, 2}, bs = 2;
    clopt_variable *vars[2] = {tu_var(cctx, "dense/kernel", CLOPT_FLOAT32, 2, ks, NULL),
                               tu_var(cctx, "dense/bias", CLOPT_FLOAT32, 1, &bs, NULL)};
    clopt_optimizer *o = tu_optimizer(
        cctx, lso_json("{\"class_name\": \"SGD\", \"config\": {\"momentum\": 0.9}}", NULL));
    static const lso_entry unbuilt[] = {{"iteration", "loss_scale_optimizer/iteration", 0},
                                        {"learning_rate", "loss_scale_optimizer/learning_rate", 0},
                                        {"iteration", "SGD/iteration", 0},
                                        {"learning_rate", "SGD/learning_rate", 0},
                                        {NULL, NULL, 0}};
    check_list(o, unbuilt);
    clopt_variable *dup[2] = {vars[0], vars[0]};
    TU_ASSERT_STATUS(cctx, clopt_optimizer_build(o, dup, 2), CLOPT_ERR_INVALID_ARGUMENT);
    check_list(o, unbuilt);
    TU_OK(cctx, clopt_optimizer_build(o, vars, 2));
    static const lso_entry sgd[] = {{"iteration", "loss_scale_optimizer/iteration", 0},
                                    {"learning_rate", "loss_scale_optimizer/learning_rate", 0},
                                    {"step_counter", "loss_scale_optimizer/step_counter", 0},
                                    {"dynamic_scale", "loss_scale_optimizer/dynamic_scale", 0},
                                    {"iteration", "SGD/iteration", 0},
                                    {"learning_rate", "SGD/learning_rate", 0},
                                    {"dense_kernel_momentum", "SGD/dense_kernel_momentum", 6},
                                    {"dense_bias_momentum", "SGD/dense_bias_momentum", 2},
                                    {NULL, NULL, 0}};
    check_list(o, sgd);
    /* A named LSO around Adam(amsgrad) with a schedule (no inner learning_rate entry). */
    clopt_optimizer *a = tu_optimizer(
        cctx, lso_json("{\"class_name\": \"Adam\", \"config\": {\"name\": \"adam\", \"amsgrad\": "
                       "true, \"learning_rate\": {\"class_name\": \"ExponentialDecay\", "
                       "\"config\": {\"initial_learning_rate\": 0.1, \"decay_steps\": 10, "
                       "\"decay_rate\": 0.5}}}}",
                       "\"name\": \"lso\""));
    TU_OK(cctx, clopt_optimizer_build(a, vars, 2));
    static const lso_entry adam[] = {{"iteration", "lso/iteration", 0},
                                     {"learning_rate", "lso/learning_rate", 0},
                                     {"step_counter", "lso/step_counter", 0},
                                     {"dynamic_scale", "lso/dynamic_scale", 0},
                                     {"iteration", "adam/iteration", 0},
                                     {"dense_kernel_momentum", "adam/dense_kernel_momentum", 6},
                                     {"dense_kernel_velocity", "adam/dense_kernel_velocity", 6},
                                     {"dense_bias_momentum", "adam/dense_bias_momentum", 2},
                                     {"dense_bias_velocity", "adam/dense_bias_velocity", 2},
                                     {"dense_kernel_velocity_hat",
                                      "adam/dense_kernel_velocity_hat", 6},
                                     {"dense_bias_velocity_hat", "adam/dense_bias_velocity_hat",
                                      2},
                                     {NULL, NULL, 0}};
    check_list(a, adam);
}

/* The values of the LSO's own entries over steps: iteration stays 0, learning_rate 0.0,
 * step_counter and dynamic_scale as Keras's rule; the inner entries follow the inner steps. */
Test(lso_config, own_entries_over_steps) {
    const int64_t n = 4;
    clopt_variable *w = tu_var_from_f64(cctx, "w", CLOPT_FLOAT32, 1, &n, W0);
    clopt_variable *g = tu_var_from_f64(cctx, "g", CLOPT_FLOAT32, 1, &n, G0);
    const double inf[4] = {1, INFINITY, 1, 1};
    clopt_variable *gi = tu_var_from_f64(cctx, "g_inf", CLOPT_FLOAT32, 1, &n, inf);
    clopt_optimizer *o = tu_optimizer(
        cctx, lso_json(SGD05, "\"initial_scale\": 8.0, \"dynamic_growth_steps\": 3"));
    TU_OK(cctx, clopt_optimizer_build(o, &w, 1));
    /* steps: finite, finite, inf, finite x3 (growth), finite */
    const int finite[] = {1, 1, 0, 1, 1, 1, 1};
    const double want_counter[] = {1, 2, 0, 1, 2, 0, 1};
    const double want_scale[] = {8, 8, 4, 4, 4, 8, 8};
    const double want_iter[] = {1, 2, 2, 3, 4, 5, 6};
    for (int i = 0; i < 7; i++) {
        clopt_variable *gg = finite[i] ? g : gi;
        TU_OK(cctx, clopt_optimizer_apply(o, &gg, &w, 1));
        cr_assert_eq(os_scalar(o, 0), 0.0, "step %d: LSO iteration", i);
        cr_assert_eq(os_scalar(o, 1), 0.0, "step %d: LSO learning_rate", i);
        cr_assert_eq(os_scalar(o, 2), want_counter[i], "step %d: step_counter %g", i,
                     os_scalar(o, 2));
        cr_assert_eq(os_scalar(o, 3), want_scale[i], "step %d: dynamic_scale %g", i,
                     os_scalar(o, 3));
        cr_assert_eq(os_scalar(o, 4), want_iter[i], "step %d: inner iteration", i);
        cr_assert_eq(clopt_optimizer_iterations(o), (int64_t)want_iter[i], "step %d", i);
        cr_assert_eq(os_scalar(o, 5), 0.5, "step %d: inner learning_rate", i);
        cr_assert_eq(scale_of(o), want_scale[i], "step %d: scale_loss", i);
    }
}

/* scale_loss: the initial scale before build, the dynamic scale after; a plain optimizer
 * multiplies by loss_scale_factor when set, else returns the loss. */
Test(lso_config, scale_loss_before_and_after_build) {
    clopt_optimizer *o = tu_optimizer(cctx, lso_json(SGD05_LSF, "\"initial_scale\": 64.0"));
    double out = 0;
    TU_OK(cctx, clopt_optimizer_scale_loss(o, 1.5, &out));
    cr_assert_eq(out, 96.0, "before build: loss * initial_scale (not the inner factor 100)");
    const int64_t n = 4;
    clopt_variable *w = tu_var_from_f64(cctx, "w", CLOPT_FLOAT32, 1, &n, W0);
    TU_OK(cctx, clopt_optimizer_build(o, &w, 1));
    TU_OK(cctx, clopt_optimizer_scale_loss(o, 1.5, &out));
    cr_assert_eq(out, 96.0, "after build: loss * dynamic_scale");
    const double nan4[4] = {NAN, 0, 0, 0};
    clopt_variable *g = tu_var_from_f64(cctx, "g", CLOPT_FLOAT32, 1, &n, nan4);
    TU_OK(cctx, clopt_optimizer_apply(o, &g, NULL, 1));
    TU_OK(cctx, clopt_optimizer_scale_loss(o, 1.5, &out));
    cr_assert_eq(out, 48.0, "after a non-finite step: the halved scale");
    /* dynamic_scale written through set_weights / variable_write is what scale_loss uses. */
    const double s = 1e6;
    TU_OK(cctx, clopt_optimizer_variable_write(o, 3, &s, 1));
    TU_OK(cctx, clopt_optimizer_scale_loss(o, 2.0, &out));
    cr_assert_eq(out, 2.0 * (double)(float)1e6, "dynamic_scale is a float32 variable");
    TU_ASSERT_STATUS(cctx, clopt_optimizer_scale_loss(o, 1.0, NULL), CLOPT_ERR_INVALID_ARGUMENT);
    TU_ASSERT_STATUS(cctx, clopt_optimizer_scale_loss(NULL, 1.0, &out),
                     CLOPT_ERR_INVALID_ARGUMENT);
    /* Plain optimizers. */
    clopt_optimizer *p = tu_optimizer(cctx, SGD05);
    TU_OK(cctx, clopt_optimizer_scale_loss(p, 1.5, &out));
    cr_assert_eq(out, 1.5);
    clopt_optimizer *q = tu_optimizer(cctx, SGD05_LSF);
    TU_OK(cctx, clopt_optimizer_scale_loss(q, 1.5, &out));
    cr_assert_eq(out, 150.0);
}

/* learning_rate, iterations and finalize_variable_values go to the inner optimizer; the LSO's
 * own learning_rate entry stays 0. */
Test(lso_config, delegation_to_inner) {
    clopt_optimizer *o = tu_optimizer(
        cctx, lso_json("{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.5, "
                       "\"use_ema\": true, \"ema_momentum\": 0.5}}",
                       "\"initial_scale\": 4.0"));
    double lr = 0;
    TU_OK(cctx, clopt_optimizer_get_learning_rate(o, &lr));
    cr_assert_eq(lr, 0.5);
    TU_OK(cctx, clopt_optimizer_set_learning_rate(o, 0.25));
    TU_OK(cctx, clopt_optimizer_get_learning_rate(o, &lr));
    cr_assert_eq(lr, 0.25);
    cr_assert_eq(os_scalar(o, 1), 0.0, "the LSO's own learning_rate");
    cr_assert_eq(os_scalar(o, 3), 0.25, "the inner learning_rate (entry 3 before build)");
    /* EMA in the inner optimizer: after two steps of gradient 1 (scaled by 4) with lr 0.25 from
     * w = 1: w = 0.75, then 0.5; average = 0.75 (first step copies), then 0.5*0.75 + 0.5*0.5. */
    const double one = 1.0, four = 4.0;
    clopt_variable *w = tu_var(cctx, "w", CLOPT_FLOAT64, 0, NULL, &one);
    clopt_variable *g = tu_var(cctx, "g", CLOPT_FLOAT64, 0, NULL, &four);
    TU_OK(cctx, clopt_optimizer_apply(o, &g, &w, 1));
    TU_OK(cctx, clopt_optimizer_apply(o, &g, &w, 1));
    const double w2 = 0.5, avg = 0.625;
    tu_assert_var_close(w, &w2, 0, 0, "w after two steps");
    TU_OK(cctx, clopt_optimizer_finalize_variable_values(o));
    tu_assert_var_close(w, &avg, 0, 0, "w after finalize_variable_values (the average)");
}

/* Bad applies on an LSO change nothing, the scale and counter included. */
Test(lso_config, apply_errors_change_nothing) {
    const int64_t n = 4, n3 = 3;
    clopt_variable *w = tu_var_from_f64(cctx, "w", CLOPT_FLOAT32, 1, &n, W0);
    clopt_variable *g = tu_var_from_f64(cctx, "g", CLOPT_FLOAT32, 1, &n, G0);
    clopt_variable *bad = tu_var(cctx, "g_short", CLOPT_FLOAT32, 1, &n3, NULL);
    clopt_variable *bad64 = tu_var(cctx, "g_f64", CLOPT_FLOAT64, 1, &n, NULL);
    clopt_optimizer *o = tu_optimizer(cctx, lso_json(SGD05, "\"dynamic_growth_steps\": 2"));
    TU_ASSERT_STATUS(cctx, clopt_optimizer_apply(o, &g, NULL, 1), CLOPT_ERR_NOT_BUILT);
    TU_OK(cctx, clopt_optimizer_apply(o, &g, &w, 1));
    os_state before, after;
    os_read(&before, o);
    tu_snapshot vb;
    tu_snapshot_take(&vb, NULL, &w, 1);
    TU_ASSERT_STATUS(cctx, clopt_optimizer_apply(o, &bad, &w, 1), CLOPT_ERR_SHAPE_MISMATCH);
    tu_assert_error_mentions(cctx, "g_short");
    TU_ASSERT_STATUS(cctx, clopt_optimizer_apply(o, &bad64, NULL, 1), CLOPT_ERR_DTYPE_MISMATCH);
    clopt_variable *none = NULL;
    TU_ASSERT_STATUS(cctx, clopt_optimizer_apply(o, &none, &w, 1), CLOPT_ERR_NO_GRADIENTS);
    TU_ASSERT_STATUS(cctx, clopt_optimizer_apply(o, &g, &g, 1), CLOPT_ERR_UNKNOWN_VARIABLE);
    TU_ASSERT_STATUS(cctx, clopt_optimizer_apply(o, &g, NULL, 2), CLOPT_ERR_LENGTH_MISMATCH);
    os_read(&after, o);
    os_assert_same(&after, &before, o, "after refused applies");
    tu_snapshot_assert_same(&vb, NULL, "after refused applies");
    os_free(&before);
    os_free(&after);
    tu_snapshot_free(&vb);
}

/* ---- a non-finite gradient skips the inner step entirely ---- */

/* An LSO around Adam(amsgrad) with EMA over a float32 and a float64 variable, after two finite
 * steps: a NaN, +inf or -inf anywhere in any gradient (the others finite or missing) leaves every
 * variable, slot and inner counter bit for bit as it was; only step_counter goes to 0 and
 * dynamic_scale halves. */
static void nonfinite_skips(const char *dev) {
    clopt_context *ctx = tu_context(dev);
    clopt_optimizer *o = tu_optimizer(
        ctx, lso_json("{\"class_name\": \"Adam\", \"config\": {\"learning_rate\": 0.01, "
                      "\"amsgrad\": true, \"use_ema\": true, \"ema_momentum\": 0.9, "
                      "\"ema_overwrite_frequency\": 3}}",
                      "\"initial_scale\": 1024.0"));
    const int64_t n0 = 5, s1[2] = {2, 3};
    const double w0[5] = {1, -2, 0.5, 3, -0.25}, w1[6] = {0.1, 0.2, -0.3, 0.4, 0.5, -0.6};
    clopt_variable *v[2] = {tu_var_from_f64(ctx, "a", CLOPT_FLOAT32, 1, &n0, w0),
                            tu_var_from_f64(ctx, "b", CLOPT_FLOAT64, 2, s1, w1)};
    clopt_variable *g[2] = {tu_var(ctx, "ga", CLOPT_FLOAT32, 1, &n0, NULL),
                            tu_var(ctx, "gb", CLOPT_FLOAT64, 2, s1, NULL)};
    double ga[5], gb[6];
    for (int step = 0; step < 2; step++) {
        for (int i = 0; i < 5; i++) ga[i] = 1024.0 * (0.1 * i - 0.2 + step);
        for (int i = 0; i < 6; i++) gb[i] = 1024.0 * (0.3 - 0.05 * i);
        tu_write_f64(g[0], ga);
        tu_write_f64(g[1], gb);
        TU_OK(ctx, clopt_optimizer_apply(o, g, v, 2));
    }
    cr_assert_eq(clopt_optimizer_iterations(o), 2);
    struct {
        int var, elem; /* where the bad value goes */
        double value;
        int other_missing; /* the other gradient is NULL */
    } cases[] = {{1, 4, NAN, 0},        {0, 0, INFINITY, 0}, {0, 4, -INFINITY, 1},
                 {1, 0, -INFINITY, 0}, {1, 5, NAN, 1},      {0, 2, NAN, 0}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        double a[5], b[6];
        memcpy(a, ga, sizeof a);
        memcpy(b, gb, sizeof b);
        (cases[c].var ? b : a)[cases[c].elem] = cases[c].value;
        tu_write_f64(g[0], a);
        tu_write_f64(g[1], b);
        clopt_variable *gg[2] = {g[0], g[1]};
        if (cases[c].other_missing) gg[1 - cases[c].var] = NULL;
        os_state before, after;
        os_read(&before, o);
        tu_snapshot vb;
        tu_snapshot_take(&vb, NULL, v, 2);
        const double scale = os_scalar(o, 3);
        TU_OK(ctx, clopt_optimizer_apply(o, gg, v, 2));
        char what[96];
        snprintf(what, sizeof what, "%s: case %zu (%g in gradient %d)", dev, c, cases[c].value,
                 cases[c].var);
        tu_snapshot_assert_same(&vb, NULL, what);
        os_read(&after, o);
        cr_assert_eq(after.vals[2][0], 0.0, "%s: step_counter", what);
        cr_assert_eq(after.vals[3][0], scale / 2, "%s: dynamic_scale", what);
        after.vals[2][0] = before.vals[2][0];
        after.vals[3][0] = before.vals[3][0];
        os_assert_same(&after, &before, o, what);
        cr_assert_eq(clopt_optimizer_iterations(o), 2, "%s: inner iterations", what);
        os_free(&before);
        os_free(&after);
        tu_snapshot_free(&vb);
    }
    /* Finite again: the inner optimizer steps. */
    tu_write_f64(g[0], ga);
    tu_write_f64(g[1], gb);
    TU_OK(ctx, clopt_optimizer_apply(o, g, v, 2));
    cr_assert_eq(clopt_optimizer_iterations(o), 3);
    cr_assert_eq(os_scalar(o, 2), 1.0);
    clopt_context_destroy(ctx);
}
Test(lso_host, nonfinite_gradient_skips_inner_step) { nonfinite_skips(TU_HOST); }
Test(lso_pocl, nonfinite_gradient_skips_inner_step) { nonfinite_skips(TU_POCL); }

/* Mixed precision: float16 and bfloat16 gradients (inf and NaN bit patterns) are caught too. */
static void half_gradients(const char *dev, clopt_dtype dt) {
    clopt_context *ctx = tu_context(dev);
    clopt_optimizer *o = tu_optimizer(ctx, lso_json(SGD05, "\"initial_scale\": 16.0"));
    const int64_t n = 4;
    /* w = [1, 2, 3, 4]; gradients [1, 6, 7, 2] * 16, exact in both formats */
    const uint16_t w16[4] = {0x3c00, 0x4000, 0x4200, 0x4400}, g16[4] = {0x4c00, 0x5600, 0x5700,
                                                                         0x5000};
    const uint16_t wbf[4] = {0x3f80, 0x4000, 0x4040, 0x4080}, gbf[4] = {0x4180, 0x42c0, 0x42e0,
                                                                        0x4200};
    const int h = dt == CLOPT_FLOAT16;
    clopt_variable *w = tu_var(ctx, "w", dt, 1, &n, h ? w16 : wbf);
    clopt_variable *g = tu_var(ctx, "g", dt, 1, &n, h ? g16 : gbf);
    TU_OK(ctx, clopt_optimizer_apply(o, &g, &w, 1));
    /* [0.5, -1, -0.5, 3] */
    const uint16_t want16[4] = {0x3800, 0xbc00, 0xb800, 0x4200},
                   wantbf[4] = {0x3f00, 0xbf80, 0xbf00, 0x4040};
    uint16_t got[4];
    TU_OK(ctx, clopt_variable_read(w, got, sizeof got));
    tu_assert_same_bytes(got, h ? want16 : wantbf, sizeof got, "finite 16-bit step");
    const uint16_t inf = h ? 0x7c00 : 0x7f80, nan = h ? 0x7e00 : 0x7fc0, ninf = h ? 0xfc00 : 0xff80;
    const uint16_t bad[3] = {inf, nan, ninf};
    for (int k = 0; k < 3; k++) {
        uint16_t gb[4];
        memcpy(gb, h ? g16 : gbf, sizeof gb);
        gb[k + 1] = bad[k];
        TU_OK(ctx, clopt_variable_write(g, gb, sizeof gb));
        const double before = scale_of(o);
        TU_OK(ctx, clopt_optimizer_apply(o, &g, &w, 1));
        TU_OK(ctx, clopt_variable_read(w, got, sizeof got));
        tu_assert_same_bytes(got, h ? want16 : wantbf, sizeof got, "non-finite 16-bit step");
        cr_assert_eq(scale_of(o), before / 2);
        cr_assert_eq(clopt_optimizer_iterations(o), 1);
    }
    clopt_context_destroy(ctx);
}
Test(lso_host, half_precision_gradients) {
    half_gradients(TU_HOST, CLOPT_FLOAT16);
    half_gradients(TU_HOST, CLOPT_BFLOAT16);
}
Test(lso_pocl, half_precision_gradients) {
    half_gradients(TU_POCL, CLOPT_FLOAT16);
    half_gradients(TU_POCL, CLOPT_BFLOAT16);
}

/* ---- trajectories: LSO against the bare inner optimizer, and host against OpenCL ---- */

#define NSTEPS 14
#define GROWTH 3

/* Step `step`'s non-finite value, if any: variable, element, value; and whether a gradient is
 * missing at that step (-1: none). */
static int bad_value(int step, int *var, int *elem, double *value) {
    switch (step) {
    case 3: *var = 1; *elem = 7; *value = NAN; return 1;
    case 4: *var = 0; *elem = 0; *value = INFINITY; return 1;
    case 9: *var = 1; *elem = 11; *value = -INFINITY; return 1;
    default: return 0;
    }
}
static int missing_at(int step) { return step == 6 ? 0 : step == 9 ? 0 : step == 11 ? 1 : -1; }

typedef struct side {
    clopt_context *ctx;
    clopt_optimizer *o;
    clopt_variable *v[2], *g[2];
} side;

static const int64_t SHAPE0 = 5, SHAPE1[2] = {3, 4};
static const size_t SIZE[2] = {5, 12};

static void side_open(side *s, const char *dev, clopt_dtype dt, const char *json,
                      double *const init[2]) {
    s->ctx = tu_context(dev);
    s->o = tu_optimizer(s->ctx, json);
    s->v[0] = tu_var_from_f64(s->ctx, "dense/bias", dt, 1, &SHAPE0, init[0]);
    s->v[1] = tu_var_from_f64(s->ctx, "dense/kernel", dt, 2, SHAPE1, init[1]);
    s->g[0] = tu_var(s->ctx, "g0", dt, 1, &SHAPE0, NULL);
    s->g[1] = tu_var(s->ctx, "g1", dt, 2, SHAPE1, NULL);
    TU_OK(s->ctx, clopt_optimizer_build(s->o, s->v, 2));
}

/* Writes the step's gradients (times `scale`, with the bad value if `with_bad`) and applies. */
static void side_step(side *s, int step, const double g[2][12], double scale, int with_bad) {
    double buf[12];
    int bv = -1, be = 0;
    double bval = 0;
    if (!(with_bad && bad_value(step, &bv, &be, &bval))) bv = -1;
    for (int i = 0; i < 2; i++) {
        for (size_t j = 0; j < SIZE[i]; j++) buf[j] = g[i][j] * scale;
        if (i == bv) buf[be] = bval;
        tu_write_f64(s->g[i], buf);
    }
    clopt_variable *gg[2] = {s->g[0], s->g[1]};
    if (missing_at(step) >= 0) gg[missing_at(step)] = NULL;
    TU_OK(s->ctx, clopt_optimizer_apply(s->o, gg, s->v, 2));
}

static void make_data(uint64_t seed, double *init[2], double grads[NSTEPS][2][12]) {
    uint64_t rng = seed;
    for (int i = 0; i < 2; i++) {
        init[i] = malloc(SIZE[i] * sizeof(double));
        cr_assert(init[i]);
        tu_rand_fill(&rng, init[i], SIZE[i], -1, 1);
    }
    for (int k = 0; k < NSTEPS; k++)
        for (int i = 0; i < 2; i++) tu_rand_fill(&rng, grads[k][i], SIZE[i], -1, 1);
}

/* Keras's scale rule, as a reference. */
static void scale_rule(int finite, double *scale, double *counter) {
    if (!finite) {
        *counter = 0;
        *scale *= 0.5;
    } else if (*counter == GROWTH - 1) {
        *counter = 0;
        *scale *= 2;
    } else {
        *counter += 1;
    }
}

/* An LSO(inner) fed scaled gradients with some non-finite steps, against the bare inner
 * optimizer fed the unscaled gradients of the finite steps: bitwise the same variables, slots and
 * counters after every step; the LSO's scale and counter follow Keras's rule. */
static void lso_vs_inner(const char *dev, clopt_dtype dt, const char *inner) {
    double *init[2], grads[NSTEPS][2][12];
    make_data(7, init, grads);
    char extra[96];
    snprintf(extra, sizeof extra, "\"initial_scale\": 256.0, \"dynamic_growth_steps\": %d",
             GROWTH);
    side l, p;
    side_open(&l, dev, dt, lso_json(inner, extra), init);
    side_open(&p, dev, dt, inner, init);
    double scale = 256, counter = 0;
    for (int k = 0; k < NSTEPS; k++) {
        int bv, be;
        double bval;
        const int finite = !bad_value(k, &bv, &be, &bval);
        side_step(&l, k, grads[k], scale_of(l.o), 1);
        if (finite) side_step(&p, k, grads[k], 1.0, 0);
        scale_rule(finite, &scale, &counter);
        char what[256];
        snprintf(what, sizeof what, "%s %s %s, step %d", dev, clopt_dtype_name(dt), inner, k);
        cr_assert_eq(os_scalar(l.o, 2), counter, "%s: step_counter", what);
        cr_assert_eq(os_scalar(l.o, 3), scale, "%s: dynamic_scale", what);
        cr_assert_eq(clopt_optimizer_iterations(l.o), clopt_optimizer_iterations(p.o), "%s",
                     what);
        for (int i = 0; i < 2; i++) os_assert_vars_same(l.v[i], p.v[i], what);
        os_state ls, ps;
        os_read(&ls, l.o);
        os_read(&ps, p.o);
        os_assert_same_from(&ls, 4, &ps, l.o, what);
        os_free(&ls);
        os_free(&ps);
    }
    clopt_context_destroy(l.ctx);
    clopt_context_destroy(p.ctx);
    free(init[0]);
    free(init[1]);
}

#define ADAM_AMSGRAD                                                                             \
    "{\"class_name\": \"Adam\", \"config\": {\"learning_rate\": 0.01, \"amsgrad\": true}}"
#define ADAM_EMA                                                                                 \
    "{\"class_name\": \"Adam\", \"config\": {\"learning_rate\": 0.01, \"amsgrad\": true, "       \
    "\"use_ema\": true, \"ema_momentum\": 0.8, \"ema_overwrite_frequency\": 4}}"
#define SGD_ACCUM                                                                                \
    "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.1, \"momentum\": 0.9, "         \
    "\"nesterov\": true, \"gradient_accumulation_steps\": 3}}"

Test(lso_host, wraps_adam_amsgrad_exactly) {
    lso_vs_inner(TU_HOST, CLOPT_FLOAT32, ADAM_AMSGRAD);
    lso_vs_inner(TU_HOST, CLOPT_FLOAT64, ADAM_AMSGRAD);
}
Test(lso_pocl, wraps_adam_amsgrad_exactly) {
    lso_vs_inner(TU_POCL, CLOPT_FLOAT32, ADAM_AMSGRAD);
    lso_vs_inner(TU_POCL, CLOPT_FLOAT64, ADAM_AMSGRAD);
}
Test(lso_host, wraps_adam_with_ema_exactly) {
    lso_vs_inner(TU_HOST, CLOPT_FLOAT32, ADAM_EMA);
    lso_vs_inner(TU_HOST, CLOPT_FLOAT64, ADAM_EMA);
}
Test(lso_pocl, wraps_adam_with_ema_exactly) {
    lso_vs_inner(TU_POCL, CLOPT_FLOAT32, ADAM_EMA);
    lso_vs_inner(TU_POCL, CLOPT_FLOAT64, ADAM_EMA);
}
Test(lso_host, wraps_gradient_accumulation_exactly) {
    lso_vs_inner(TU_HOST, CLOPT_FLOAT32, SGD_ACCUM);
}
Test(lso_pocl, wraps_gradient_accumulation_exactly) {
    lso_vs_inner(TU_POCL, CLOPT_FLOAT32, SGD_ACCUM);
}

/* The same LSO trajectory (with its non-finite steps) on the host and on OpenCL: the variables
 * and slots agree within test_util.h's tolerances, the counters and the scale exactly. */
static void host_vs_opencl(clopt_dtype dt, const char *inner) {
    double *init[2], grads[NSTEPS][2][12];
    make_data(11, init, grads);
    const char *json = lso_json(inner, "\"initial_scale\": 4096.0, \"dynamic_growth_steps\": 3");
    side h, c;
    side_open(&h, TU_HOST, dt, json, init);
    side_open(&c, TU_POCL, dt, json, init);
    for (int k = 0; k < NSTEPS; k++) {
        side_step(&h, k, grads[k], scale_of(h.o), 1);
        side_step(&c, k, grads[k], scale_of(c.o), 1);
        char what[256];
        snprintf(what, sizeof what, "%s %s, step %d", clopt_dtype_name(dt), inner, k);
        cr_assert_eq(scale_of(h.o), scale_of(c.o), "%s: scale", what);
        for (int i = 0; i < 2; i++) tu_assert_vars_close(c.v[i], h.v[i], what);
        os_state hs, cs;
        os_read(&hs, h.o);
        os_read(&cs, c.o);
        os_assert_close(&cs, &hs, c.o, dt, what);
        os_free(&hs);
        os_free(&cs);
    }
    cr_assert_eq(clopt_optimizer_iterations(h.o), clopt_optimizer_iterations(c.o));
    cr_assert_gt(clopt_optimizer_iterations(h.o), 0);
    clopt_context_destroy(h.ctx);
    clopt_context_destroy(c.ctx);
    free(init[0]);
    free(init[1]);
}
Test(lso_pocl, host_and_opencl_agree) {
    host_vs_opencl(CLOPT_FLOAT32, ADAM_EMA);
    host_vs_opencl(CLOPT_FLOAT64, ADAM_EMA);
    host_vs_opencl(CLOPT_FLOAT32, SGD_ACCUM);
}
