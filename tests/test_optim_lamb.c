/* Lamb: Keras's published numbers, the layer-wise update against an independent double
 * reference (per-variable norms over multi-chunk variables, zero norms, weight decay before the
 * norm, missing gradients, plans that grow), host versus OpenCL over every apply-pipeline option,
 * resolution by class name, bad hyperparameters, variable list and config.
 *
 * Keras's numbers: keras-team/keras keras/src/optimizers/lamb_test.py (Keras 3):
 * test_single_step, test_correctness_with_golden and test_weight_decay, with that file's
 * tolerances (test_util.h). */
#include "optim_more.h"
#include "optim_varlist.h"

static const double single_step[4] = {-0.3693, 0.6306, 1.6306, 2.6306};
#define SINGLE_STEP_JSON "{\"class_name\": \"Lamb\", \"config\": {\"learning_rate\": 0.5}}"

static const double golden[5][10] = {
#define ROW(x) {x, x, x, x, x, x, x, x, x, x}
    ROW(0.999), ROW(0.9982), ROW(0.9974), ROW(0.9965), ROW(0.9955),
#undef ROW
};
#define GOLDEN_JSON "{\"class_name\": \"Lamb\", \"config\": {}}"

Test(lamb_host, keras_single_step) {
    om_keras_single_step_f32_f64(TU_HOST, SINGLE_STEP_JSON, single_step);
}
Test(lamb_pocl, keras_single_step) {
    om_keras_single_step_f32_f64(TU_POCL, SINGLE_STEP_JSON, single_step);
}
Test(lamb_host, keras_golden) {
    om_keras_golden_f32_f64(TU_HOST, GOLDEN_JSON, golden);
}
Test(lamb_pocl, keras_golden) {
    om_keras_golden_f32_f64(TU_POCL, GOLDEN_JSON, golden);
}
Test(lamb_host, keras_weight_decay) { om_keras_weight_decay(TU_HOST, "Lamb"); }
Test(lamb_pocl, keras_weight_decay) { om_keras_weight_decay(TU_POCL, "Lamb"); }

/* ---- the update rule (semantics doc section 3), ported independently, per variable ---- */

#define NV 6
static const int64_t ref_sizes[NV] = {1, 300, 4096, 17 * 33, 700, 5};
static const char *const ref_names[NV] = {"v1", "v300", "v4096", "m17x33", "zero", "nograd"};

typedef struct lamb_ref {
    double b1, b2, eps, lr, wd;
    double *w[NV], *m[NV], *v[NV];
} lamb_ref;

/* One step of variable k with gradient g (NULL: no gradient, nothing changes). */
static void ref_step(lamb_ref *r, int k, int64_t t, const double *g) {
    if (!g) return;
    const size_t n = (size_t)ref_sizes[k];
    double *w = r->w[k], *m = r->m[k], *v = r->v[k];
    for (size_t i = 0; i < n; i++) w[i] -= w[i] * r->wd * r->lr; /* decoupled decay first */
    double sw = 0, sr = 0;
    double *upd = malloc(n * sizeof *upd);
    cr_assert(upd);
    for (size_t i = 0; i < n; i++) {
        m[i] += (g[i] - m[i]) * (1 - r->b1);
        v[i] += (g[i] * g[i] - v[i]) * (1 - r->b2);
        upd[i] = (m[i] / (1 - pow(r->b1, (double)t))) /
                 (sqrt(v[i] / (1 - pow(r->b2, (double)t))) + r->eps);
        sw += w[i] * w[i];
        sr += upd[i] * upd[i];
    }
    const double wn = sqrt(sw), rn = sqrt(sr);
    const double ratio = (wn > 0 && rn > 0) ? wn / rn : 1.0;
    for (size_t i = 0; i < n; i++) w[i] -= ratio * r->lr * upd[i];
    free(upd);
}

/* Eight float64 steps on six variables: of 1, 300, 4096 (16 chunks), 17x33 elements, one all
 * zero (||w|| = 0 at first: ratio 1), one whose gradient is missing at some steps; a step
 * where the 4096-element variable has no gradient comes first, so the plan grows afterwards.
 * Checks every variable and slot after every step. */
static void reference(const char *dev, double wd, const char *extra) {
    clopt_context *ctx = tu_context(dev);
    lamb_ref r = {0.8, 0.95, 1e-6, (double)0.05f, wd, {0}, {0}, {0}};
    char json[512];
    snprintf(json, sizeof json,
             "{\"class_name\": \"Lamb\", \"config\": {\"learning_rate\": 0.05, \"beta_1\": 0.8, "
             "\"beta_2\": 0.95, \"epsilon\": 1e-06%s%s}}",
             wd != 0 ? ", \"weight_decay\": 0.1" : "", extra);
    cr_assert(wd == 0 || wd == 0.1);
    uint64_t rng = 7;
    clopt_variable *vars[NV], *grads[NV];
    double *g[NV];
    for (int k = 0; k < NV; k++) {
        const size_t n = (size_t)ref_sizes[k];
        r.w[k] = calloc(n, sizeof(double));
        r.m[k] = calloc(n, sizeof(double));
        r.v[k] = calloc(n, sizeof(double));
        g[k] = malloc(n * sizeof(double));
        cr_assert(r.w[k] && r.m[k] && r.v[k] && g[k]);
        if (k != 4) tu_rand_fill(&rng, r.w[k], n, -1, 1);
    }
    om_ref_vars_f64(ctx, NV, ref_sizes, ref_names, 3, r.w, vars, grads);
    clopt_optimizer *o = tu_optimizer(ctx, json);
    for (int t = 1; t <= 8; t++) {
        clopt_variable *pass[NV];
        om_ref_random_grads(&rng, NV, ref_sizes, g, grads, pass);
        if (t == 1) pass[2] = NULL;
        if (t % 3 == 0) pass[5] = NULL;
        for (int k = 0; k < NV; k++) ref_step(&r, k, t, pass[k] ? g[k] : NULL);
        TU_OK(ctx, clopt_optimizer_apply(o, pass, vars, NV));
        om_ref_check_momentum_velocity(dev, t, o, NV, ref_names, vars, r.w, r.m, r.v);
    }
    /* The all-zero variable moved at lr per element on its first step (ratio 1). */
    cr_assert(r.w[4][0] != 0);
    for (int k = 0; k < NV; k++) free(r.w[k]), free(r.m[k]), free(r.v[k]), free(g[k]);
    clopt_context_destroy(ctx);
}
Test(lamb_host, reference) { reference(TU_HOST, 0, ""); }
Test(lamb_pocl, reference) { reference(TU_POCL, 0, ""); }
/* Keras applies the decoupled decay before update_step: the norm is the decayed w's. */
Test(lamb_host, reference_weight_decay_before_norm) { reference(TU_HOST, 0.1, ""); }
Test(lamb_pocl, reference_weight_decay_before_norm) { reference(TU_POCL, 0.1, ""); }
/* A large clip norm (clipping never binds) runs the sumsq partials on the same plan buffers. */
Test(lamb_host, reference_with_inactive_clipnorm) { reference(TU_HOST, 0, ", \"clipnorm\": 1e9"); }
Test(lamb_pocl, reference_with_inactive_clipnorm) { reference(TU_POCL, 0, ", \"clipnorm\": 1e9"); }

/* ---- host versus OpenCL, every pipeline option, float32 and float64 ---- */

Test(lamb_pocl, agrees_with_host) { om_agree_all(TU_POCL, "Lamb", "\"learning_rate\": 0.01"); }
Test(lamb_pocl, agrees_with_host_other_betas) {
    om_agree_all(TU_POCL, "Lamb",
                 "\"learning_rate\": 0.05, \"beta_1\": 0.5, \"beta_2\": 0.67, \"epsilon\": 1e-05");
}

/* ---- class name, hyperparameters, variable list, config ---- */

/* Keras's optimizers.get("lamb") fails (Lamb is missing from its lookup); clopt resolves Lamb by
 * class name like every other class, case-insensitively as Keras's get() does for the others. */
Test(lamb_host, resolved_by_class_name) {
    clopt_context *ctx = tu_context(TU_HOST);
    static const char *const jsons[] = {
        "{\"module\": \"keras.optimizers\", \"class_name\": \"Lamb\", \"config\": {\"name\": "
        "\"lamb\", \"learning_rate\": 0.001}, \"registered_name\": null}",
        "{\"class_name\": \"lamb\", \"config\": {}}"};
    for (int i = 0; i < 2; i++) {
        clopt_optimizer *o = tu_optimizer(ctx, jsons[i]);
        cr_assert_str_eq(clopt_optimizer_class_name(o), "Lamb");
        cr_assert_str_eq(clopt_optimizer_name(o), "lamb");
        clopt_optimizer_destroy(o);
    }
    clopt_context_destroy(ctx);
}

Test(lamb_host, bad_values_are_rejected) {
    static const om_bad bad[] = {
        {"\"beta_1\": -0.1", "beta_1"},
        {"\"beta_1\": 1.5", "beta_1"},
        {"\"beta_2\": 2.0", "beta_2"},
        {"\"epsilon\": -1e-07", "epsilon"},
    };
    om_bad_values("Lamb", bad, sizeof bad / sizeof *bad);
}

Test(lamb_host, config_keys_in_keras_order) {
    static const char *const keys[] = {"beta_1", "beta_2", "epsilon", NULL};
    om_config_keys("Lamb", "lamb", keys);
}

/* Keras 3.16, keras/src/optimizers/lamb.py, Lamb.build: add_optimizer_variables(var_list,
 * ["momentum", "velocity"]), interleaved per variable; named by base_optimizer.py's
 * add_variable_from_reference "<path, '/' -> '_'>_<name>". */
Test(lamb_host, variable_list_in_keras_order) {
    static const ovl_entry plain[] = {
        {"iteration", 0},           {"learning_rate", 0},       {"dense_kernel_momentum", 6},
        {"dense_kernel_velocity", 6}, {"dense_bias_momentum", 2}, {"dense_bias_velocity", 2},
        {NULL, 0}};
    ovl_check("{\"class_name\": \"Lamb\", \"config\": {}}", plain);
    ovl_check_with_ema_and_accumulation("Lamb", NULL, plain + 2, 2);
}
