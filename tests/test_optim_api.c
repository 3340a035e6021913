/* The optimizer API: from_config in Keras's serialize() form and the bare form, get_config round
 * trips and key order, build and apply bookkeeping, Keras's variable list, the learning rate.
 * Configs are host-side, so suite optimizer_api runs on the host backend; optimizer_host /
 * optimizer_pocl run the few device-dependent behaviours on both. */
#include "test_util.h"

TU_SUITE(optimizer_host);
TU_SUITE(optimizer_pocl);

static clopt_context *ctx;
static void setup(void) { ctx = tu_context(TU_HOST); }
static void teardown(void) {
    clopt_context_destroy(ctx);
    tu_leak_check();
}
TestSuite(optimizer_api, .init = setup, .fini = teardown);

static char *config_of(const clopt_optimizer *o) {
    char *json = NULL;
    TU_OK(ctx, clopt_optimizer_get_config(o, &json));
    cr_assert_not_null(json);
    return json;
}

/* What Keras 3 writes with json.dumps(keras.optimizers.serialize(keras.optimizers.Adam())): the
 * float32 learning rate as a Python float, keys in get_config order. */
static const char keras_adam_default[] =
    "{\"module\": \"keras.optimizers\", \"class_name\": \"Adam\", \"config\": {\"name\": \"adam\", "
    "\"learning_rate\": 0.0010000000474974513, \"weight_decay\": null, \"clipnorm\": null, "
    "\"global_clipnorm\": null, \"clipvalue\": null, \"use_ema\": false, \"ema_momentum\": 0.99, "
    "\"ema_overwrite_frequency\": null, \"loss_scale_factor\": null, "
    "\"gradient_accumulation_steps\": null, \"beta_1\": 0.9, \"beta_2\": 0.999, \"epsilon\": "
    "1e-07, \"amsgrad\": false}, \"registered_name\": null}";

/* The optimizers of Keras's adam_test.py / sgd_test.py test_config, serialized by Keras. */
static const char keras_adam_test_config[] =
    "{\"module\": \"keras.optimizers\", \"class_name\": \"Adam\", \"config\": {\"name\": \"adam\", "
    "\"learning_rate\": 0.5, \"weight_decay\": null, \"clipnorm\": null, \"global_clipnorm\": "
    "null, \"clipvalue\": null, \"use_ema\": false, \"ema_momentum\": 0.99, "
    "\"ema_overwrite_frequency\": null, \"loss_scale_factor\": null, "
    "\"gradient_accumulation_steps\": null, \"beta_1\": 0.5, \"beta_2\": 0.67, \"epsilon\": "
    "1e-05, \"amsgrad\": true}, \"registered_name\": null}";
static const char keras_sgd_test_config[] =
    "{\"module\": \"keras.optimizers\", \"class_name\": \"SGD\", \"config\": {\"name\": \"SGD\", "
    "\"learning_rate\": 0.5, \"weight_decay\": 0.004, \"clipnorm\": null, \"global_clipnorm\": "
    "null, \"clipvalue\": null, \"use_ema\": false, \"ema_momentum\": 0.99, "
    "\"ema_overwrite_frequency\": null, \"loss_scale_factor\": null, "
    "\"gradient_accumulation_steps\": null, \"momentum\": 0.06, \"nesterov\": true}, "
    "\"registered_name\": null}";

Test(optimizer_api, keras_serialize_form_round_trips_exactly) {
    const char *configs[] = {keras_adam_default, keras_adam_test_config, keras_sgd_test_config};
    for (size_t i = 0; i < 3; i++) {
        clopt_optimizer *o = tu_optimizer(ctx, configs[i]);
        char *json = config_of(o);
        cr_assert_str_eq(json, configs[i], "get_config does not write back what Keras wrote");
        clopt_free(json);
        clopt_optimizer_destroy(o);
    }
    clopt_optimizer *o = tu_optimizer(ctx, keras_adam_test_config);
    cr_assert_str_eq(clopt_optimizer_class_name(o), "Adam");
    cr_assert_str_eq(clopt_optimizer_name(o), "adam");
    double lr = 0;
    TU_OK(ctx, clopt_optimizer_get_learning_rate(o, &lr));
    cr_assert_eq(lr, 0.5);
    clopt_optimizer_destroy(o);
    clopt_optimizer_destroy(NULL); /* allowed */
}

/* The bare {"class_name", "config"} form and missing keys take Keras's defaults. */
Test(optimizer_api, bare_form_and_defaults) {
    const char *bare[] = {"{\"class_name\": \"Adam\", \"config\": {}}", "{\"class_name\": \"Adam\"}",
                          "{\"config\": {\"amsgrad\": false}, \"class_name\": \"Adam\"}",
                          "{\"class_name\": \"Adam\", \"config\": {\"beta_1\": 0.9, \"decay\": 0.5}}",
                          "{\"class_name\": \"Adam\", \"module\": \"keras.optimizers\", "
                          "\"registered_name\": null, \"config\": {\"name\": null}}"};
    for (size_t i = 0; i < sizeof bare / sizeof *bare; i++) {
        clopt_optimizer *o = tu_optimizer(ctx, bare[i]);
        char *json = config_of(o);
        cr_assert_str_eq(json, keras_adam_default, "config %zu", i);
        clopt_free(json);
        clopt_optimizer_destroy(o);
    }
    /* Integer JSON numbers are accepted where Keras wants a float. */
    clopt_optimizer *o = tu_optimizer(
        ctx, "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 1, \"momentum\": 0}}");
    double lr = 0;
    TU_OK(ctx, clopt_optimizer_get_learning_rate(o, &lr));
    cr_assert_eq(lr, 1.0);
    char *json = config_of(o);
    cr_assert(strstr(json, "\"learning_rate\": 1.0,"), "%s", json);
    cr_assert(strstr(json, "\"momentum\": 0.0,"), "%s", json);
    clopt_free(json);
}

Test(optimizer_api, class_names_are_case_insensitive) {
    const struct {
        const char *given, *cls, *name;
    } t[] = {{"adam", "Adam", "adam"}, {"ADAM", "Adam", "adam"}, {"aDaM", "Adam", "adam"},
             {"sgd", "SGD", "SGD"},    {"Sgd", "SGD", "SGD"}};
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        char in[128];
        snprintf(in, sizeof in, "{\"class_name\": \"%s\", \"config\": {}}", t[i].given);
        clopt_optimizer *o = tu_optimizer(ctx, in);
        cr_assert_str_eq(clopt_optimizer_class_name(o), t[i].cls);
        cr_assert_str_eq(clopt_optimizer_name(o), t[i].name);
        char *json = config_of(o), want[64];
        snprintf(want, sizeof want, "\"class_name\": \"%s\"", t[i].cls);
        cr_assert(strstr(json, want), "%s", json);
        clopt_free(json);
        clopt_optimizer_destroy(o);
    }
}

/* from_config(get_config(x)) gives x's config again, for assorted non-default values. */
Test(optimizer_api, get_config_round_trip) {
    const char *configs[] = {
        "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.1, \"momentum\": 0.9, "
        "\"nesterov\": true, \"name\": \"my_sgd\"}}",
        "{\"class_name\": \"SGD\", \"config\": {\"clipnorm\": 1.0, \"weight_decay\": 0.01}}",
        "{\"class_name\": \"Adam\", \"config\": {\"learning_rate\": 3e-4, \"beta_1\": 0.85, "
        "\"beta_2\": 0.9999, \"epsilon\": 1e-8, \"amsgrad\": true, \"global_clipnorm\": 2.5}}",
        "{\"class_name\": \"Adam\", \"config\": {\"clipvalue\": 0.5, \"loss_scale_factor\": 128.0}}",
        "{\"class_name\": \"Adam\", \"config\": {\"gradient_accumulation_steps\": 4, "
        "\"name\": \"with \\\"quotes\\\" and \\\\ slash\"}}",
        "{\"class_name\": \"Adam\", \"config\": {\"use_ema\": true, \"ema_momentum\": 0.5, "
        "\"ema_overwrite_frequency\": 3}}",
    };
    for (size_t i = 0; i < sizeof configs / sizeof *configs; i++) {
        clopt_optimizer *a = tu_optimizer(ctx, configs[i]);
        char *ja = config_of(a);
        clopt_optimizer *b = tu_optimizer(ctx, ja);
        char *jb = config_of(b);
        cr_assert_str_eq(jb, ja, "config %zu does not round-trip", i);
        cr_assert_str_eq(clopt_optimizer_name(a), clopt_optimizer_name(b));
        clopt_free(ja);
        clopt_free(jb);
        clopt_optimizer_destroy(a);
        clopt_optimizer_destroy(b);
    }
}

/* The config keys in Keras's get_config order: the base keys, then the class's own. */
Test(optimizer_api, config_keys_in_keras_order) {
    static const char *base[] = {"name", "learning_rate", "weight_decay", "clipnorm",
                                 "global_clipnorm", "clipvalue", "use_ema", "ema_momentum",
                                 "ema_overwrite_frequency", "loss_scale_factor",
                                 "gradient_accumulation_steps"};
    const struct {
        const char *json;
        const char *extra[4];
        int nextra;
    } t[] = {{"{\"class_name\": \"SGD\"}", {"momentum", "nesterov"}, 2},
             {"{\"class_name\": \"Adam\"}", {"beta_1", "beta_2", "epsilon", "amsgrad"}, 4}};
    for (size_t k = 0; k < 2; k++) {
        clopt_optimizer *o = tu_optimizer(ctx, t[k].json);
        char *json = config_of(o);
        const char *cfg = strstr(json, "\"config\": {");
        cr_assert_not_null(cfg, "%s", json);
        const char *prev = cfg;
        for (int i = 0; i < 11 + t[k].nextra; i++) {
            const char *key = i < 11 ? base[i] : t[k].extra[i - 11];
            char quoted[64];
            snprintf(quoted, sizeof quoted, "\"%s\": ", key);
            const char *at = strstr(cfg, quoted);
            cr_assert(at && at > prev, "key '%s' missing or out of order in %s", key, json);
            prev = at;
        }
        /* And the wrapper's keys in serialize() order. */
        const char *m = strstr(json, "\"module\""), *c = strstr(json, "\"class_name\""),
                   *r = strstr(json, "\"registered_name\": null");
        cr_assert(m == json + 1 && c > m && cfg > c && r > cfg, "%s", json);
        clopt_free(json);
        clopt_optimizer_destroy(o);
    }
}

/* Keras's variable list for Adam with amsgrad: iteration, learning_rate, the momentum/velocity
 * pairs interleaved per variable, then the velocity_hat block. */
Test(optimizer_api, adam_variable_list_in_keras_order) {
    clopt_optimizer *o = tu_optimizer(
        ctx, "{\"class_name\": \"Adam\", \"config\": {\"amsgrad\": true, \"name\": \"opt\"}}");
    cr_assert_eq(clopt_optimizer_variable_count(o), 2, "before build: iteration, learning_rate");
    const int64_t ks[2] = {4, 3}, bs[1] = {3};
    clopt_variable *kernel = tu_var(ctx, "kernel", CLOPT_FLOAT32, 2, ks, NULL);
    clopt_variable *bias = tu_var(ctx, "bias", CLOPT_FLOAT32, 1, bs, NULL);
    clopt_variable *vars[] = {kernel, bias};
    TU_OK(ctx, clopt_optimizer_build(o, vars, 2));
    static const char *names[] = {"iteration",       "learning_rate",     "kernel_momentum",
                                  "kernel_velocity", "bias_momentum",     "bias_velocity",
                                  "kernel_velocity_hat", "bias_velocity_hat"};
    cr_assert_eq(clopt_optimizer_variable_count(o), 8);
    for (size_t i = 0; i < 8; i++) {
        const char *name = NULL, *path = NULL;
        clopt_variable *v = (clopt_variable *)(uintptr_t)0x5eed;
        TU_OK(ctx, clopt_optimizer_variable(o, i, &name, &path, &v));
        cr_assert_str_eq(name, names[i], "variable %zu", i);
        char want_path[64];
        snprintf(want_path, sizeof want_path, "opt/%s", names[i]);
        cr_assert_str_eq(path, want_path);
        if (i < 2) {
            cr_assert_null(v, "%s lives on the host", names[i]);
        } else {
            const clopt_variable *of = strncmp(names[i], "kernel", 6) == 0 ? kernel : bias;
            cr_assert_not_null(v);
            cr_assert_str_eq(clopt_variable_name(v), names[i]);
            cr_assert_eq(clopt_variable_ndim(v), clopt_variable_ndim(of));
            cr_assert_eq(memcmp(clopt_variable_shape(v), clopt_variable_shape(of),
                                (size_t)clopt_variable_ndim(of) * sizeof(int64_t)),
                         0, "%s has another shape", names[i]);
            cr_assert_eq(clopt_variable_dtype(v), CLOPT_FLOAT32);
            double *z = tu_read_f64(v);
            for (int64_t j = 0; j < clopt_variable_size(v); j++) cr_assert_eq(z[j], 0.0);
            free(z);
        }
    }
    const char *name = "unchanged";
    TU_ASSERT_STATUS(ctx, clopt_optimizer_variable(o, 8, &name, NULL, NULL),
                     CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(name, "unchanged");
    /* Any out pointer may be NULL. */
    TU_OK(ctx, clopt_optimizer_variable(o, 3, NULL, NULL, NULL));
    /* Building again does nothing (Keras returns early). */
    clopt_variable *other = tu_var(ctx, "other", CLOPT_FLOAT32, 1, bs, NULL);
    TU_OK(ctx, clopt_optimizer_build(o, &other, 1));
    cr_assert_eq(clopt_optimizer_variable_count(o), 8);
    /* Slots belong to the optimizer: destroying one through the variable API does nothing. */
    clopt_variable *slot = tu_slot(o, "bias_momentum");
    clopt_variable_destroy(slot);
    cr_assert_str_eq(clopt_variable_name(tu_slot(o, "bias_momentum")), "bias_momentum");
}

Test(optimizer_api, sgd_variable_list_and_slot_names) {
    clopt_optimizer *plain = tu_optimizer(ctx, "{\"class_name\": \"SGD\"}");
    clopt_optimizer *mom =
        tu_optimizer(ctx, "{\"class_name\": \"SGD\", \"config\": {\"momentum\": 0.5}}");
    const int64_t s[1] = {5};
    clopt_variable *a = tu_var(ctx, "dense/kernel:0", CLOPT_FLOAT64, 1, s, NULL);
    clopt_variable *b = tu_var(ctx, "dense/bias", CLOPT_FLOAT32, 1, s, NULL);
    clopt_variable *vars[] = {a, b};
    TU_OK(ctx, clopt_optimizer_build(plain, vars, 2));
    TU_OK(ctx, clopt_optimizer_build(mom, vars, 2));
    cr_assert_eq(clopt_optimizer_variable_count(plain), 2, "momentum 0: no slots");
    cr_assert_eq(clopt_optimizer_variable_count(mom), 4);
    const char *name, *path;
    clopt_variable *v;
    /* Keras's slot names replace '/' and ':' by '_'. */
    TU_OK(ctx, clopt_optimizer_variable(mom, 2, &name, &path, &v));
    cr_assert_str_eq(name, "dense_kernel_0_momentum");
    cr_assert_str_eq(path, "SGD/dense_kernel_0_momentum");
    cr_assert_eq(clopt_variable_dtype(v), CLOPT_FLOAT64, "slots take their variable's dtype");
    TU_OK(ctx, clopt_optimizer_variable(mom, 3, &name, &path, &v));
    cr_assert_str_eq(name, "dense_bias_momentum");
    cr_assert_eq(clopt_variable_dtype(v), CLOPT_FLOAT32);
}

/* iterations counts successful applies with at least one gradient; n == 0 does nothing. */
Test(optimizer_api, iterations_count_steps) {
    clopt_optimizer *o = tu_optimizer(ctx, "{\"class_name\": \"SGD\"}");
    cr_assert_eq(clopt_optimizer_iterations(o), 0);
    cr_assert_eq(clopt_optimizer_iterations(NULL), -1);
    const float one[3] = {1, 1, 1};
    clopt_variable *w = tu_var_f32(ctx, "w", 3, one), *u = tu_var_f32(ctx, "u", 3, one);
    clopt_variable *g = tu_var_f32(ctx, "g", 3, one);
    clopt_variable *vars[] = {w, u}, *grads[] = {g, NULL};
    TU_OK(ctx, clopt_optimizer_apply(o, grads, vars, 0));
    cr_assert_eq(clopt_optimizer_iterations(o), 0, "n == 0 must not count");
    cr_assert_eq(clopt_optimizer_variable_count(o), 2, "n == 0 must not build");
    for (int k = 1; k <= 5; k++) {
        TU_OK(ctx, clopt_optimizer_apply(o, grads, vars, 2));
        cr_assert_eq(clopt_optimizer_iterations(o), k);
        double it = 0;
        TU_OK(ctx, clopt_optimizer_variable_read(o, 0, &it, 1));
        cr_assert_eq(it, (double)k, "optimizer.variables[0]");
    }
    /* The variable passed a NULL gradient was left alone; the other one moved 5 times. */
    double wn[3] = {1 - 5 * 0.01, 1 - 5 * 0.01, 1 - 5 * 0.01}, un[3] = {1, 1, 1};
    tu_assert_var_close(w, wn, TU_RTOL_F32, TU_ATOL_F32, "w");
    tu_assert_var_close(u, un, 0, 0, "u (NULL gradient)");
    TU_OK(ctx, clopt_optimizer_apply(o, grads, NULL, 0));
    cr_assert_eq(clopt_optimizer_iterations(o), 5);
}

/* A subset of the built variables, in another order, updates exactly those. */
Test(optimizer_api, apply_subset_in_any_order) {
    clopt_optimizer *o = tu_optimizer(ctx, "{\"class_name\": \"SGD\", \"config\": "
                                           "{\"learning_rate\": 1.0}}");
    float init[3][4] = {{1, 2, 3, 4}, {10, 20, 30, 40}, {-1, -2, -3, -4}};
    clopt_variable *v[3], *g[3];
    for (int i = 0; i < 3; i++) {
        float gv[4] = {(float)(i + 1), (float)(i + 1), (float)(i + 1), (float)(i + 1)};
        v[i] = tu_var_f32(ctx, "v", 4, init[i]);
        g[i] = tu_var_f32(ctx, "g", 4, gv);
    }
    TU_OK(ctx, clopt_optimizer_build(o, v, 3));
    clopt_variable *sub_vars[] = {v[2], v[0]}, *sub_grads[] = {g[2], g[0]};
    TU_OK(ctx, clopt_optimizer_apply(o, sub_grads, sub_vars, 2));
    const double w0[4] = {0, 1, 2, 3}, w1[4] = {10, 20, 30, 40}, w2[4] = {-4, -5, -6, -7};
    tu_assert_var_close(v[0], w0, 0, 0, "v0");
    tu_assert_var_close(v[1], w1, 0, 0, "v1 (not in the call)");
    tu_assert_var_close(v[2], w2, 0, 0, "v2");
    /* Then the whole built list with vars NULL, gradients in built order. */
    TU_OK(ctx, clopt_optimizer_apply(o, g, NULL, 3));
    const double x1[4] = {8, 18, 28, 38};
    tu_assert_var_close(v[1], x1, 0, 0, "v1 after the full step");
    cr_assert_eq(clopt_optimizer_iterations(o), 2);
}

Test(optimizer_api, learning_rate_get_and_set) {
    clopt_optimizer *o = tu_optimizer(ctx, "{\"class_name\": \"SGD\"}");
    double lr = 0;
    TU_OK(ctx, clopt_optimizer_get_learning_rate(o, &lr));
    cr_assert_eq(lr, (double)0.01f, "Keras keeps the learning rate in float32");
    TU_OK(ctx, clopt_optimizer_set_learning_rate(o, 0.25));
    TU_OK(ctx, clopt_optimizer_get_learning_rate(o, &lr));
    cr_assert_eq(lr, 0.25);
    char *json = config_of(o);
    cr_assert(strstr(json, "\"learning_rate\": 0.25,"), "%s", json);
    clopt_free(json);
    double rd = 0;
    TU_OK(ctx, clopt_optimizer_variable_read(o, 1, &rd, 1));
    cr_assert_eq(rd, 0.25, "optimizer.variables[1] follows the setter");
    /* The next step uses it. */
    const float w0[2] = {1, 2}, g0[2] = {4, -8};
    clopt_variable *w = tu_var_f32(ctx, "w", 2, w0), *g = tu_var_f32(ctx, "g", 2, g0);
    TU_OK(ctx, clopt_optimizer_apply(o, &g, &w, 1));
    const double want[2] = {0, 4};
    tu_assert_var_close(w, want, 0, 0, "w after a step at 0.25");
    /* Not finite: refused, nothing changes. */
    TU_ASSERT_STATUS(ctx, clopt_optimizer_set_learning_rate(o, NAN), CLOPT_ERR_BAD_VALUE);
    tu_assert_error_mentions(ctx, "learning_rate");
    TU_ASSERT_STATUS(ctx, clopt_optimizer_set_learning_rate(o, INFINITY), CLOPT_ERR_BAD_VALUE);
    TU_OK(ctx, clopt_optimizer_get_learning_rate(o, &lr));
    cr_assert_eq(lr, 0.25);
    cr_assert_eq(clopt_optimizer_set_learning_rate(NULL, 0.1), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(clopt_optimizer_get_learning_rate(NULL, &lr), CLOPT_ERR_INVALID_ARGUMENT);
    TU_ASSERT_STATUS(ctx, clopt_optimizer_get_learning_rate(o, NULL), CLOPT_ERR_INVALID_ARGUMENT);
}

/* apply on an unbuilt optimizer with a variable list builds it on that list. */
Test(optimizer_api, first_apply_builds) {
    clopt_optimizer *o = tu_optimizer(ctx, "{\"class_name\": \"Adam\"}");
    const float x[2] = {1, 1};
    clopt_variable *w = tu_var_f32(ctx, "w", 2, x), *g = tu_var_f32(ctx, "g", 2, x);
    TU_OK(ctx, clopt_optimizer_apply(o, &g, &w, 1));
    cr_assert_eq(clopt_optimizer_variable_count(o), 4);
    /* Keras's first Adam step moves every element by about the learning rate. */
    const double want[2] = {1 - 0.001, 1 - 0.001};
    tu_assert_var_close(w, want, 1e-4, 1e-6, "w");
}

Test(optimizer_api, build_argument_errors) {
    clopt_optimizer *o = tu_optimizer(ctx, "{\"class_name\": \"Adam\"}");
    clopt_context *other = tu_context(TU_HOST);
    clopt_variable *a = tu_var_f32(ctx, "alpha", 3, NULL);
    clopt_variable *f = tu_var_f32(other, "foreign", 3, NULL);
    clopt_variable *dup[] = {a, a}, *withnull[] = {a, NULL}, *mixed[] = {a, f};
    TU_ASSERT_STATUS(ctx, clopt_optimizer_build(o, NULL, 1), CLOPT_ERR_INVALID_ARGUMENT);
    TU_ASSERT_STATUS(ctx, clopt_optimizer_build(o, &a, 0), CLOPT_ERR_INVALID_ARGUMENT);
    TU_ASSERT_STATUS(ctx, clopt_optimizer_build(o, withnull, 2), CLOPT_ERR_INVALID_ARGUMENT);
    TU_ASSERT_STATUS(ctx, clopt_optimizer_build(o, dup, 2), CLOPT_ERR_INVALID_ARGUMENT);
    tu_assert_error_mentions(ctx, "alpha");
    TU_ASSERT_STATUS(ctx, clopt_optimizer_build(o, mixed, 2), CLOPT_ERR_CONTEXT_MISMATCH);
    tu_assert_error_mentions(ctx, "foreign");
    cr_assert_eq(clopt_optimizer_build(NULL, &a, 1), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(clopt_optimizer_variable_count(o), 2, "a failed build built something");
    TU_OK(ctx, clopt_optimizer_build(o, &a, 1));
    cr_assert_eq(clopt_optimizer_variable_count(o), 4);
    clopt_context_destroy(other);
}

/* ---- gradients created and destroyed around every step ----
 * A framework may allocate its gradient buffers per step. A gradient variable created after
 * another was destroyed can get the same handle address at another arena offset; the step must
 * use the new gradient's memory. The expected values are exact (integers, learning rate 1). */
static void recreated_gradients(const char *spec) {
    clopt_context *c = tu_context(spec);
    clopt_optimizer *o =
        tu_optimizer(c, "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 1.0}}");
    enum { N = 300 };
    double w[N] = {0}, gv[N];
    clopt_variable *var = tu_var_f64(c, "w", N, w);
    /* Fill the allocator's per-size caches so that later frees are reused by calloc. */
    for (int i = 0; i < 16; i++) clopt_variable_destroy(tu_var_f64(c, "warm", 1, NULL));
    clopt_variable *g = tu_var_f64(c, "g", N, NULL), *spacer = tu_var_f64(c, "s", N, NULL);
    uint64_t rng = 3;
    for (int step = 0; step < 60; step++) {
        for (int i = 0; i < N; i++) gv[i] = (double)(step + 1) * ((i % 7) - 3);
        TU_OK(c, clopt_variable_write(g, gv, sizeof gv));
        TU_OK(c, clopt_optimizer_apply(o, &g, &var, 1));
        for (int i = 0; i < N; i++) w[i] -= gv[i];
        char what[48];
        snprintf(what, sizeof what, "w after step %d", step);
        tu_assert_var_close(var, w, 0, 0, what);
        /* Free both in a random order, recreate both in a random order. */
        int r = (int)(tu_rand_u64(&rng) % 4);
        if (r & 1) {
            clopt_variable_destroy(spacer);
            clopt_variable_destroy(g);
        } else {
            clopt_variable_destroy(g);
            clopt_variable_destroy(spacer);
        }
        if (r & 2) {
            g = tu_var_f64(c, "g", N, NULL);
            spacer = tu_var_f64(c, "s", N, NULL);
        } else {
            spacer = tu_var_f64(c, "s", N, NULL);
            g = tu_var_f64(c, "g", N, NULL);
        }
        /* Stale data where the old gradient was: a step that reads it is caught. */
        double junk[N];
        for (int i = 0; i < N; i++) junk[i] = 1e6;
        TU_OK(c, clopt_variable_write(spacer, junk, sizeof junk));
    }
    clopt_context_destroy(c);
}
Test(optimizer_host, gradients_recreated_between_steps) { recreated_gradients(TU_HOST); }
Test(optimizer_pocl, gradients_recreated_between_steps) { recreated_gradients(TU_POCL); }
