/* Bad input: each case checks the specific status, that clopt_context_last_error names the
 * culprit (a key, a class, a variable), and that nothing changed.
 *
 * config_errors (host): from_config refuses and writes no optimizer.
 * apply_errors_host / apply_errors_pocl: an Adam(amsgrad) optimizer that already made two steps
 * (so every slot holds non-zero values) gets a bad apply; every variable, gradient, slot, the
 * iteration count and the learning rate must be exactly as before, byte for byte. */
#include "test_util.h"

TU_SUITE(apply_errors_host);
TU_SUITE(apply_errors_pocl);

#define OSENTINEL ((clopt_optimizer *)(uintptr_t)0x5eed)

/* ---- from_config ---- */

static clopt_context *ctx;
static void setup(void) { ctx = tu_context(TU_HOST); }
static void teardown(void) {
    clopt_context_destroy(ctx);
    tu_leak_check();
}
TestSuite(config_errors, .init = setup, .fini = teardown);

/* from_config(json) must fail with `want`, name `culprit`, and leave *out alone. */
static void refuse(const char *json, clopt_status want, const char *culprit) {
    clopt_optimizer *out = OSENTINEL;
    clopt_status st = clopt_optimizer_from_config(ctx, json, &out);
    cr_assert_eq(st, want, "%s: got %s, want %s (%s)", json, clopt_status_name(st),
                 clopt_status_name(want), clopt_context_last_error(ctx));
    cr_assert_eq(out, OSENTINEL, "%s: out written on failure", json);
    if (culprit) tu_assert_error_mentions(ctx, culprit);
}

Test(config_errors, unknown_optimizer_class) {
    refuse("{\"class_name\": \"Adamm\", \"config\": {}}", CLOPT_ERR_UNKNOWN_OPTIMIZER, "Adamm");
    refuse("{\"module\": \"keras.optimizers\", \"class_name\": \"NoSuchOptimizer\", \"config\": "
           "{}, \"registered_name\": null}",
           CLOPT_ERR_UNKNOWN_OPTIMIZER, "NoSuchOptimizer");
    refuse("{\"class_name\": \"\", \"config\": {}}", CLOPT_ERR_UNKNOWN_OPTIMIZER, NULL);
}

Test(config_errors, unknown_key) {
    refuse("{\"class_name\": \"Adam\", \"config\": {\"beta_3\": 0.5}}", CLOPT_ERR_UNKNOWN_KEY,
           "beta_3");
    /* Adam's key is unknown to SGD. */
    refuse("{\"class_name\": \"SGD\", \"config\": {\"momentum\": 0.5, \"amsgrad\": true}}",
           CLOPT_ERR_UNKNOWN_KEY, "amsgrad");
    /* Keys are case-sensitive, as Python's keyword arguments. */
    refuse("{\"class_name\": \"Adam\", \"config\": {\"Beta_1\": 0.5}}", CLOPT_ERR_UNKNOWN_KEY,
           "Beta_1");
    refuse("{\"class_name\": \"Adam\", \"config\": {}, \"extra_wrapper_key\": 1}",
           CLOPT_ERR_UNKNOWN_KEY, "extra_wrapper_key");
}

Test(config_errors, wrong_json_type) {
    refuse("{\"class_name\": \"Adam\", \"config\": {\"beta_1\": \"x\"}}", CLOPT_ERR_BAD_TYPE,
           "beta_1");
    refuse("{\"class_name\": \"Adam\", \"config\": {\"amsgrad\": 1}}", CLOPT_ERR_BAD_TYPE,
           "amsgrad");
    refuse("{\"class_name\": \"SGD\", \"config\": {\"nesterov\": \"yes\"}}", CLOPT_ERR_BAD_TYPE,
           "nesterov");
    refuse("{\"class_name\": \"SGD\", \"config\": {\"momentum\": null}}", CLOPT_ERR_BAD_TYPE,
           "momentum");
    refuse("{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": \"fast\"}}",
           CLOPT_ERR_BAD_TYPE, "learning_rate");
    refuse("{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": [0.1]}}", CLOPT_ERR_BAD_TYPE,
           "learning_rate");
    refuse("{\"class_name\": \"Adam\", \"config\": {\"name\": 5}}", CLOPT_ERR_BAD_TYPE, "name");
    refuse("{\"class_name\": \"Adam\", \"config\": {\"clipnorm\": true}}", CLOPT_ERR_BAD_TYPE,
           "clipnorm");
    refuse("{\"class_name\": \"Adam\", \"config\": {\"gradient_accumulation_steps\": 2.5}}",
           CLOPT_ERR_BAD_TYPE, "gradient_accumulation_steps");
    refuse("{\"class_name\": 3, \"config\": {}}", CLOPT_ERR_BAD_TYPE, "class_name");
    refuse("{\"config\": {}}", CLOPT_ERR_BAD_TYPE, "class_name");
    refuse("{\"class_name\": \"Adam\", \"config\": [1, 2]}", CLOPT_ERR_BAD_TYPE, "config");
    refuse("[{\"class_name\": \"Adam\"}]", CLOPT_ERR_BAD_TYPE, "object");
}

Test(config_errors, value_out_of_range) {
    refuse("{\"class_name\": \"SGD\", \"config\": {\"momentum\": 1.5}}", CLOPT_ERR_BAD_VALUE,
           "momentum");
    refuse("{\"class_name\": \"SGD\", \"config\": {\"momentum\": -0.1}}", CLOPT_ERR_BAD_VALUE,
           "momentum");
    refuse("{\"class_name\": \"Adam\", \"config\": {\"beta_1\": 1.5}}", CLOPT_ERR_BAD_VALUE,
           "beta_1");
    refuse("{\"class_name\": \"Adam\", \"config\": {\"beta_2\": -1}}", CLOPT_ERR_BAD_VALUE,
           "beta_2");
    refuse("{\"class_name\": \"Adam\", \"config\": {\"epsilon\": -1e-7}}", CLOPT_ERR_BAD_VALUE,
           "epsilon");
    /* Both norm clippings at once: Keras's "Only one of ... can be set". */
    refuse("{\"class_name\": \"Adam\", \"config\": {\"clipnorm\": 1.0, \"global_clipnorm\": 1.0}}",
           CLOPT_ERR_BAD_VALUE, "clipnorm");
    refuse("{\"class_name\": \"SGD\", \"config\": {\"clipvalue\": 1.0, \"clipnorm\": 2.0}}",
           CLOPT_ERR_BAD_VALUE, "clipvalue");
    /* Accumulation needs at least 2 steps (0 and null mean off). */
    refuse("{\"class_name\": \"SGD\", \"config\": {\"gradient_accumulation_steps\": 1}}",
           CLOPT_ERR_BAD_VALUE, "gradient_accumulation_steps");
    refuse("{\"class_name\": \"SGD\", \"config\": {\"gradient_accumulation_steps\": -3}}",
           CLOPT_ERR_BAD_VALUE, "gradient_accumulation_steps");
    /* The edges of the ranges are allowed. */
    const char *fine[] = {
        "{\"class_name\": \"SGD\", \"config\": {\"momentum\": 1.0}}",
        "{\"class_name\": \"SGD\", \"config\": {\"momentum\": 0.0}}",
        "{\"class_name\": \"SGD\", \"config\": {\"gradient_accumulation_steps\": 2}}",
        "{\"class_name\": \"SGD\", \"config\": {\"gradient_accumulation_steps\": null}}",
        "{\"class_name\": \"Adam\", \"config\": {\"clipnorm\": 1.0, \"global_clipnorm\": null}}",
    };
    for (size_t i = 0; i < sizeof fine / sizeof *fine; i++) {
        clopt_optimizer *o = tu_optimizer(ctx, fine[i]);
        clopt_optimizer_destroy(o);
    }
}

/* Numbers beyond int64's range (found by fuzz_config): an integer parameter given as an integral
 * real such as 1e300 used to be accepted and then written back by get_config as
 * -9223372036854775808 (an undefined conversion), which from_config refused; a JSON integer
 * whose double value is 2^63 (INT64_MAX) was written back the same way. Now the first is refused
 * and the second is written back as a real, so get_config always reads back. */
Test(config_errors, numbers_beyond_int64) {
    refuse("{\"class_name\": \"SGD\", \"config\": {\"gradient_accumulation_steps\": 1e300}}",
           CLOPT_ERR_BAD_VALUE, "gradient_accumulation_steps");
    refuse("{\"class_name\": \"SGD\", \"config\": {\"use_ema\": true, "
           "\"ema_overwrite_frequency\": -1e19}}",
           CLOPT_ERR_BAD_VALUE, "ema_overwrite_frequency");
    const char *fine[] = {
        "{\"class_name\": \"SGD\", \"config\": {\"gradient_accumulation_steps\": 1e18}}",
        "{\"class_name\": \"Muon\", \"config\": {\"adam_lr_ratio\": 9223372036854775807}}",
        "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": {\"class_name\": "
        "\"ExponentialDecay\", \"config\": {\"initial_learning_rate\": 1e30, "
        "\"decay_steps\": 1, \"decay_rate\": 1e20}}}}",
    };
    /* Reals beyond float32 in a schedule make its learning rate inf: refused since issue 13. */
    refuse("{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": {\"class_name\": "
           "\"ExponentialDecay\", \"config\": {\"initial_learning_rate\": 1e300, "
           "\"decay_steps\": 1, \"decay_rate\": -1e300}}}}",
           CLOPT_ERR_BAD_VALUE, "initial_learning_rate");
    for (size_t i = 0; i < sizeof fine / sizeof *fine; i++) {
        clopt_optimizer *o = tu_optimizer(ctx, fine[i]), *o2 = NULL;
        char *c1 = NULL, *c2 = NULL;
        cr_assert_eq(clopt_optimizer_get_config(o, &c1), CLOPT_OK);
        clopt_status st = clopt_optimizer_from_config(ctx, c1, &o2);
        cr_assert_eq(st, CLOPT_OK, "%s: get_config's %s does not read back: %s", fine[i], c1,
                     clopt_context_last_error(ctx));
        cr_assert_eq(clopt_optimizer_get_config(o2, &c2), CLOPT_OK);
        cr_assert_str_eq(c1, c2);
        clopt_free(c1);
        clopt_free(c2);
        clopt_optimizer_destroy(o2);
        clopt_optimizer_destroy(o);
    }
}

/* A learning rate beyond float32's range (found by fuzz_config: "learning_rate": 1e305) was
 * accepted, became inf as the float32 clopt keeps, and get_config then failed (with
 * CLOPT_ERR_OUT_OF_MEMORY: JSON has no inf). Every way in refuses it now. */
Test(config_errors, learning_rate_beyond_float32) {
    refuse("{\"class_name\": \"Muon\", \"config\": {\"learning_rate\": 1e305}}",
           CLOPT_ERR_BAD_VALUE, "learning_rate");
    refuse("{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": -3.5e38}}",
           CLOPT_ERR_BAD_VALUE, "learning_rate");
    clopt_optimizer *o = tu_optimizer(ctx, "{\"class_name\": \"SGD\", \"config\": "
                                           "{\"learning_rate\": 3.4e38}}");
    const int64_t shape[1] = {2};
    clopt_variable *w = NULL;
    cr_assert_eq(clopt_variable_create(ctx, "w", CLOPT_FLOAT32, 1, shape, NULL, &w), CLOPT_OK);
    cr_assert_eq(clopt_optimizer_build(o, &w, 1), CLOPT_OK);
    cr_assert_eq(clopt_optimizer_set_learning_rate(o, 1e300), CLOPT_ERR_BAD_VALUE);
    const double inf = INFINITY, big = 1e39;
    cr_assert_eq(clopt_optimizer_variable_write(o, 1, &inf, 1), CLOPT_ERR_BAD_VALUE);
    cr_assert_eq(clopt_optimizer_variable_write(o, 1, &big, 1), CLOPT_ERR_BAD_VALUE);
    double lr = 0;
    cr_assert_eq(clopt_optimizer_get_learning_rate(o, &lr), CLOPT_OK);
    cr_assert_eq(lr, (double)3.4e38f);
    char *c = NULL;
    cr_assert_eq(clopt_optimizer_get_config(o, &c), CLOPT_OK);
    clopt_free(c);
    clopt_optimizer_destroy(o);
    clopt_variable_destroy(w);
}

/* loss_scale_factor 0 used to be accepted: scale_loss then returned 0 while apply did not divide.
 * It must be finite and > 0, and so must its reciprocal as the float32 apply divides by. */
Test(config_errors, loss_scale_factor_finite_and_positive) {
    const char *bad[] = {"0", "0.0", "-1", "-1e-3", "1e39", "1e-40", "1e308"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char json[160];
        snprintf(json, sizeof json,
                 "{\"class_name\": \"SGD\", \"config\": {\"loss_scale_factor\": %s}}", bad[i]);
        refuse(json, CLOPT_ERR_BAD_VALUE, "loss_scale_factor");
    }
    clopt_optimizer *o = tu_optimizer(ctx, "{\"class_name\": \"SGD\", \"config\": "
                                           "{\"loss_scale_factor\": 1e-30}}");
    double scaled = 0;
    cr_assert_eq(clopt_optimizer_scale_loss(o, 2.0, &scaled), CLOPT_OK);
    cr_assert_float_eq(scaled, 2e-30, 1e-40);
    clopt_optimizer_destroy(o);
}

Test(config_errors, malformed_json) {
    const char *bad[] = {"", "{", "{\"class_name\": \"Adam\", ", "{\"class_name\": Adam}",
                         "{\"class_name\": \"Adam\"} trailing", "{'class_name': 'Adam'}",
                         "{\"class_name\": \"Adam\", \"config\": {\"beta_1\": 0.9,}}",
                         /* duplicate keys: Python keeps the last, clopt refuses the ambiguity */
                         "{\"class_name\": \"Adam\", \"config\": {\"beta_1\": 0.9, \"beta_1\": "
                         "0.5}}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        refuse(bad[i], CLOPT_ERR_JSON, NULL);
        tu_assert_error_mentions(ctx, "line");
        tu_assert_error_mentions(ctx, "column");
    }
}

Test(config_errors, null_arguments) {
    clopt_optimizer *out = OSENTINEL;
    cr_assert_eq(clopt_optimizer_from_config(NULL, "{\"class_name\": \"SGD\"}", &out),
                 CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(out, OSENTINEL);
    refuse(NULL, CLOPT_ERR_INVALID_ARGUMENT, "json");
    TU_ASSERT_STATUS(ctx, clopt_optimizer_from_config(ctx, "{\"class_name\": \"SGD\"}", NULL),
                     CLOPT_ERR_INVALID_ARGUMENT);
    clopt_optimizer *o = tu_optimizer(ctx, "{\"class_name\": \"SGD\"}");
    char *json = (char *)"untouched";
    cr_assert_eq(clopt_optimizer_get_config(NULL, &json), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(json, "untouched");
    TU_ASSERT_STATUS(ctx, clopt_optimizer_get_config(o, NULL), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(clopt_optimizer_variable_count(NULL), 0);
    cr_assert_eq(clopt_optimizer_variable(NULL, 0, NULL, NULL, NULL), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_null(clopt_optimizer_class_name(NULL));
    cr_assert_null(clopt_optimizer_name(NULL));
}

/* ---- apply ---- */

typedef struct fixture {
    clopt_context *ctx, *other;
    clopt_optimizer *opt;
    clopt_variable *kernel, *bias, *gk, *gb;
    tu_snapshot snap;
} fixture;

/* Adam(amsgrad) built on kernel [2, 3] and bias [3], two steps made, then a snapshot of
 * everything (variables, gradients, slots, counters). */
static void fixture_init(fixture *f, const char *spec) {
    memset(f, 0, sizeof *f);
    f->ctx = tu_context(spec);
    f->opt = tu_optimizer(f->ctx, "{\"class_name\": \"Adam\", \"config\": {\"learning_rate\": "
                                  "0.1, \"amsgrad\": true}}");
    const int64_t ks[2] = {2, 3}, bs[1] = {3};
    const float k0[6] = {1, 2, 3, 4, 5, 6}, b0[3] = {-1, 0, 1};
    const float gk0[6] = {0.5f, -0.5f, 0.25f, 1, -2, 0.125f}, gb0[3] = {1, -1, 0.5f};
    f->kernel = tu_var(f->ctx, "kernel", CLOPT_FLOAT32, 2, ks, k0);
    f->bias = tu_var(f->ctx, "bias", CLOPT_FLOAT32, 1, bs, b0);
    f->gk = tu_var(f->ctx, "grad_kernel", CLOPT_FLOAT32, 2, ks, gk0);
    f->gb = tu_var(f->ctx, "grad_bias", CLOPT_FLOAT32, 1, bs, gb0);
    clopt_variable *vars[] = {f->kernel, f->bias}, *grads[] = {f->gk, f->gb};
    TU_OK(f->ctx, clopt_optimizer_build(f->opt, vars, 2));
    TU_OK(f->ctx, clopt_optimizer_apply(f->opt, grads, vars, 2));
    TU_OK(f->ctx, clopt_optimizer_apply(f->opt, grads, NULL, 2));
    cr_assert_eq(clopt_optimizer_iterations(f->opt), 2);
    clopt_variable *all[] = {f->kernel, f->bias, f->gk, f->gb};
    tu_snapshot_take(&f->snap, f->opt, all, 4);
    cr_assert_eq(f->snap.n, 4 + 6, "4 user variables and 6 slots");
}

static void fixture_check_and_free(fixture *f, const char *what) {
    tu_snapshot_assert_same(&f->snap, f->opt, what);
    /* The optimizer still works after the refused call. */
    clopt_variable *vars[] = {f->kernel, f->bias}, *grads[] = {f->gk, f->gb};
    TU_OK(f->ctx, clopt_optimizer_apply(f->opt, grads, vars, 2));
    cr_assert_eq(clopt_optimizer_iterations(f->opt), 3);
    tu_snapshot_free(&f->snap);
    clopt_context_destroy(f->other);
    clopt_context_destroy(f->ctx);
}

static void grad_shape_mismatch(const char *spec) {
    fixture f;
    fixture_init(&f, spec);
    const int64_t s32[2] = {3, 2};
    clopt_variable *wrong = tu_var(f.ctx, "grad_transposed", CLOPT_FLOAT32, 2, s32, NULL);
    clopt_variable *vars[] = {f.kernel, f.bias}, *grads[] = {wrong, f.gb};
    TU_ASSERT_STATUS(f.ctx, clopt_optimizer_apply(f.opt, grads, vars, 2), CLOPT_ERR_SHAPE_MISMATCH);
    tu_assert_error_mentions(f.ctx, "grad_transposed");
    tu_assert_error_mentions(f.ctx, "kernel");
    TU_ASSERT_STATUS(f.ctx, clopt_optimizer_apply(f.opt, grads, NULL, 2), CLOPT_ERR_SHAPE_MISMATCH);
    fixture_check_and_free(&f, "after a gradient of another shape");
}
Test(apply_errors_host, gradient_shape_mismatch) { grad_shape_mismatch(TU_HOST); }
Test(apply_errors_pocl, gradient_shape_mismatch) { grad_shape_mismatch(TU_POCL); }

static void grad_dtype_mismatch(const char *spec) {
    fixture f;
    fixture_init(&f, spec);
    const int64_t bs[1] = {3};
    clopt_variable *wide = tu_var(f.ctx, "grad_float64", CLOPT_FLOAT64, 1, bs, NULL);
    clopt_variable *vars[] = {f.kernel, f.bias}, *grads[] = {f.gk, wide};
    TU_ASSERT_STATUS(f.ctx, clopt_optimizer_apply(f.opt, grads, vars, 2), CLOPT_ERR_DTYPE_MISMATCH);
    tu_assert_error_mentions(f.ctx, "grad_float64");
    tu_assert_error_mentions(f.ctx, "bias");
    fixture_check_and_free(&f, "after a gradient of another dtype");
}
Test(apply_errors_host, gradient_dtype_mismatch) { grad_dtype_mismatch(TU_HOST); }
Test(apply_errors_pocl, gradient_dtype_mismatch) { grad_dtype_mismatch(TU_POCL); }

/* vars NULL means the built list: n must be its length. */
static void length_mismatch(const char *spec) {
    fixture f;
    fixture_init(&f, spec);
    clopt_variable *grads[] = {f.gk, f.gb, f.gb};
    TU_ASSERT_STATUS(f.ctx, clopt_optimizer_apply(f.opt, grads, NULL, 1), CLOPT_ERR_LENGTH_MISMATCH);
    tu_assert_error_mentions(f.ctx, "1 gradients");
    TU_ASSERT_STATUS(f.ctx, clopt_optimizer_apply(f.opt, grads, NULL, 3), CLOPT_ERR_LENGTH_MISMATCH);
    fixture_check_and_free(&f, "after a gradient list of another length");
}
Test(apply_errors_host, length_mismatch) { length_mismatch(TU_HOST); }
Test(apply_errors_pocl, length_mismatch) { length_mismatch(TU_POCL); }

static void not_built(const char *spec) {
    clopt_context *c = tu_context(spec);
    clopt_optimizer *o = tu_optimizer(c, "{\"class_name\": \"Adam\"}");
    const float x[3] = {1, 2, 3};
    clopt_variable *w = tu_var_f32(c, "w", 3, x), *g = tu_var_f32(c, "g", 3, x);
    TU_ASSERT_STATUS(c, clopt_optimizer_apply(o, &g, NULL, 1), CLOPT_ERR_NOT_BUILT);
    tu_assert_error_mentions(c, "build");
    cr_assert_eq(clopt_optimizer_iterations(o), 0);
    cr_assert_eq(clopt_optimizer_variable_count(o), 2);
    double now[3] = {1, 2, 3};
    tu_assert_var_close(w, now, 0, 0, "w");
    clopt_context_destroy(c);
}
Test(apply_errors_host, vars_null_on_unbuilt_optimizer) { not_built(TU_HOST); }
Test(apply_errors_pocl, vars_null_on_unbuilt_optimizer) { not_built(TU_POCL); }

static void unknown_variable(const char *spec) {
    fixture f;
    fixture_init(&f, spec);
    const int64_t bs[1] = {3};
    clopt_variable *stranger = tu_var(f.ctx, "stranger", CLOPT_FLOAT32, 1, bs, NULL);
    clopt_variable *vars[] = {f.kernel, stranger}, *grads[] = {f.gk, f.gb};
    TU_ASSERT_STATUS(f.ctx, clopt_optimizer_apply(f.opt, grads, vars, 2),
                     CLOPT_ERR_UNKNOWN_VARIABLE);
    tu_assert_error_mentions(f.ctx, "stranger");
    /* Even with a NULL gradient, an unknown variable is an error (Keras checks the list first). */
    clopt_variable *nograd[] = {f.gk, NULL};
    TU_ASSERT_STATUS(f.ctx, clopt_optimizer_apply(f.opt, nograd, vars, 2),
                     CLOPT_ERR_UNKNOWN_VARIABLE);
    fixture_check_and_free(&f, "after an unknown variable");
}
Test(apply_errors_host, unknown_variable) { unknown_variable(TU_HOST); }
Test(apply_errors_pocl, unknown_variable) { unknown_variable(TU_POCL); }

static void no_gradients(const char *spec) {
    fixture f;
    fixture_init(&f, spec);
    clopt_variable *vars[] = {f.kernel, f.bias}, *grads[] = {NULL, NULL};
    TU_ASSERT_STATUS(f.ctx, clopt_optimizer_apply(f.opt, grads, vars, 2), CLOPT_ERR_NO_GRADIENTS);
    tu_assert_error_mentions(f.ctx, "no gradients");
    TU_ASSERT_STATUS(f.ctx, clopt_optimizer_apply(f.opt, grads, NULL, 2), CLOPT_ERR_NO_GRADIENTS);
    fixture_check_and_free(&f, "after all-NULL gradients");
    /* On an unbuilt optimizer: refused before building. */
    clopt_context *c = tu_context(spec);
    clopt_optimizer *o = tu_optimizer(c, "{\"class_name\": \"SGD\", \"config\": {\"momentum\": 0.5}}");
    clopt_variable *w = tu_var_f32(c, "w", 3, NULL), *none = NULL;
    TU_ASSERT_STATUS(c, clopt_optimizer_apply(o, &none, &w, 1), CLOPT_ERR_NO_GRADIENTS);
    cr_assert_eq(clopt_optimizer_variable_count(o), 2, "built by a refused apply");
    cr_assert_eq(clopt_optimizer_iterations(o), 0);
    clopt_context_destroy(c);
}
Test(apply_errors_host, all_gradients_null) { no_gradients(TU_HOST); }
Test(apply_errors_pocl, all_gradients_null) { no_gradients(TU_POCL); }

static void n_zero(const char *spec) {
    fixture f;
    fixture_init(&f, spec);
    clopt_variable *vars[] = {f.kernel, f.bias}, *grads[] = {f.gk, f.gb};
    TU_OK(f.ctx, clopt_optimizer_apply(f.opt, grads, vars, 0));
    TU_OK(f.ctx, clopt_optimizer_apply(f.opt, grads, NULL, 0));
    TU_OK(f.ctx, clopt_optimizer_apply(f.opt, NULL, NULL, 0));
    fixture_check_and_free(&f, "after apply with n == 0");
}
Test(apply_errors_host, n_zero_is_a_no_op) { n_zero(TU_HOST); }
Test(apply_errors_pocl, n_zero_is_a_no_op) { n_zero(TU_POCL); }

/* Every pair is checked before anything runs: a good first pair is not applied either. */
static void bad_second_pair(const char *spec) {
    fixture f;
    fixture_init(&f, spec);
    const int64_t s4[1] = {4};
    clopt_variable *wrong = tu_var(f.ctx, "grad_of_4", CLOPT_FLOAT32, 1, s4, NULL);
    clopt_variable *vars[] = {f.kernel, f.bias}, *grads[] = {f.gk, wrong};
    TU_ASSERT_STATUS(f.ctx, clopt_optimizer_apply(f.opt, grads, vars, 2), CLOPT_ERR_SHAPE_MISMATCH);
    tu_assert_error_mentions(f.ctx, "grad_of_4");
    fixture_check_and_free(&f, "after a bad second pair (the good first one must not run)");
}
Test(apply_errors_host, bad_second_pair_changes_nothing) { bad_second_pair(TU_HOST); }
Test(apply_errors_pocl, bad_second_pair_changes_nothing) { bad_second_pair(TU_POCL); }

static void null_handles(const char *spec) {
    fixture f;
    fixture_init(&f, spec);
    clopt_variable *vars[] = {f.kernel, f.bias}, *grads[] = {f.gk, f.gb};
    clopt_variable *withnull[] = {f.kernel, NULL}, *dup[] = {f.kernel, f.kernel};
    cr_assert_eq(clopt_optimizer_apply(NULL, grads, vars, 2), CLOPT_ERR_INVALID_ARGUMENT);
    TU_ASSERT_STATUS(f.ctx, clopt_optimizer_apply(f.opt, NULL, vars, 2), CLOPT_ERR_INVALID_ARGUMENT);
    TU_ASSERT_STATUS(f.ctx, clopt_optimizer_apply(f.opt, grads, withnull, 2),
                     CLOPT_ERR_INVALID_ARGUMENT);
    tu_assert_error_mentions(f.ctx, "NULL");
    clopt_variable *dgrads[] = {f.gk, f.gk};
    TU_ASSERT_STATUS(f.ctx, clopt_optimizer_apply(f.opt, dgrads, dup, 2), CLOPT_ERR_INVALID_ARGUMENT);
    tu_assert_error_mentions(f.ctx, "kernel");
    fixture_check_and_free(&f, "after NULL handles");
}
Test(apply_errors_host, null_handles) { null_handles(TU_HOST); }
Test(apply_errors_pocl, null_handles) { null_handles(TU_POCL); }

static void foreign_gradient(const char *spec) {
    fixture f;
    fixture_init(&f, spec);
    f.other = tu_context(spec);
    const int64_t bs[1] = {3};
    clopt_variable *foreign = tu_var(f.other, "foreign_grad", CLOPT_FLOAT32, 1, bs, NULL);
    clopt_variable *foreign_var = tu_var(f.other, "foreign_var", CLOPT_FLOAT32, 1, bs, NULL);
    clopt_variable *vars[] = {f.kernel, f.bias}, *grads[] = {f.gk, foreign};
    TU_ASSERT_STATUS(f.ctx, clopt_optimizer_apply(f.opt, grads, vars, 2),
                     CLOPT_ERR_CONTEXT_MISMATCH);
    tu_assert_error_mentions(f.ctx, "foreign_grad");
    clopt_variable *fvars[] = {f.kernel, foreign_var}, *fgrads[] = {f.gk, f.gb};
    TU_ASSERT_STATUS(f.ctx, clopt_optimizer_apply(f.opt, fgrads, fvars, 2),
                     CLOPT_ERR_CONTEXT_MISMATCH);
    tu_assert_error_mentions(f.ctx, "foreign_var");
    fixture_check_and_free(&f, "after objects of another context");
}
Test(apply_errors_host, other_context) { foreign_gradient(TU_HOST); }
Test(apply_errors_pocl, other_context) { foreign_gradient(TU_POCL); }

/* An unbuilt optimizer given a bad pair refuses before building; a good call then builds. */
static void unbuilt_bad_pair(const char *spec) {
    clopt_context *c = tu_context(spec);
    clopt_optimizer *o = tu_optimizer(c, "{\"class_name\": \"Adam\"}");
    const int64_t s3[1] = {3}, s2[1] = {2};
    const float x[3] = {1, 2, 3};
    clopt_variable *w = tu_var(c, "w", CLOPT_FLOAT32, 1, s3, x);
    clopt_variable *bad = tu_var(c, "short_grad", CLOPT_FLOAT32, 1, s2, NULL);
    clopt_variable *good = tu_var(c, "good_grad", CLOPT_FLOAT32, 1, s3, x);
    TU_ASSERT_STATUS(c, clopt_optimizer_apply(o, &bad, &w, 1), CLOPT_ERR_SHAPE_MISMATCH);
    tu_assert_error_mentions(c, "short_grad");
    cr_assert_eq(clopt_optimizer_variable_count(o), 2, "a refused apply built the optimizer");
    double now[3] = {1, 2, 3};
    tu_assert_var_close(w, now, 0, 0, "w");
    TU_OK(c, clopt_optimizer_apply(o, &good, &w, 1));
    cr_assert_eq(clopt_optimizer_variable_count(o), 4);
    cr_assert_eq(clopt_optimizer_iterations(o), 1);
    clopt_context_destroy(c);
}
Test(apply_errors_host, unbuilt_bad_pair_does_not_build) { unbuilt_bad_pair(TU_HOST); }
Test(apply_errors_pocl, unbuilt_bad_pair_does_not_build) { unbuilt_bad_pair(TU_POCL); }
