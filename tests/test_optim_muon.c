/* Muon: Keras's published numbers, the whole step (path selection, AdamW path, momentum, the
 * Newton-Schulz iteration, lr_adjust, Muon's own weight decay) against an independent
 * double-precision reference written here, host versus OpenCL agreement, Keras's variable list
 * (velocity only for AdamW-path variables), config keys and values, bad hyperparameters.
 *
 * Keras's numbers: keras-team/keras keras/src/optimizers/muon_test.py (the version with
 * adam_weight_decay and rms_rate / lr_adjust, commit 0e8b205f): test_Newton_Schulz (rtol = atol =
 * 1e-3), test_adamw_single_step (1e-4), test_should_use_adamw, test_muon_single_step (1e-2),
 * test_clip_norm, test_clip_value, test_muon_weight_decay and test_adamw_weight_decay (1e-4),
 * test_lr_adjust_none, test_lr_adjust_2d and test_config. Keras calls the private steps
 * (_muon_update_step, _adamw_update_step, _apply_weight_decay, lr_adjust, _clip_gradients)
 * directly; here each goes through apply with the other parts made neutral (a zero gradient, a
 * null decay, momentum 0 ...), as noted per test.
 *
 * Tolerances. float64: both backends compute in double and differ by the order of operations
 * (the matrix products' summation order above all): the reference checks use 1e-10 relative.
 * float32 host versus OpenCL: the host's products accumulate in double and round once, CLBlast
 * accumulates in float in its own blocking order: about 1e-6 relative on the Newton-Schulz
 * output, which the learning rate then scales down; test_util.h's TU_RTOL_F32 (1e-5 relative,
 * 1e-6 absolute) holds with a wide margin. */
#include "optim_more.h"
#include "optim_varlist.h"

#define KERAS_MUON_TEST "keras/src/optimizers/muon_test.py"

/* ---- OpenCL without CLBlast ----
 * The Muon path's matrix products need CLBlast on OpenCL. A clopt built without it (CLBlast not
 * installed, or -DCLOPT_WITH_CLBLAST=OFF) must refuse a Muon-path variable at build with
 * CLOPT_ERR_UNSUPPORTED and a message naming CLBlast and the variable, and still run AdamW-path
 * variables. Every muon_pocl test starts here: it checks exactly that and ends early on such a
 * build, or goes on with the full test when CLBlast is there. */
static int pocl_without_clblast(void) {
    clopt_context *ctx = tu_context(TU_POCL);
    const int64_t shape[2] = {2, 2}, n = 3;
    clopt_variable *m = tu_var(ctx, "dense/kernel", CLOPT_FLOAT32, 2, shape, NULL);
    clopt_optimizer *o = tu_optimizer(ctx, "{\"class_name\": \"Muon\", \"config\": {}}");
    const clopt_status st = clopt_optimizer_build(o, &m, 1);
    if (st == CLOPT_OK) {
        clopt_context_destroy(ctx);
        return 0;
    }
    cr_assert(st == CLOPT_ERR_UNSUPPORTED, "Muon build on pocl: %s (%s)", clopt_status_name(st),
              clopt_context_last_error(ctx));
    tu_assert_error_mentions(ctx, "CLBlast");
    tu_assert_error_mentions(ctx, "dense/kernel");
    clopt_variable *b = tu_var(ctx, "dense/bias", CLOPT_FLOAT32, 1, &n, NULL);
    clopt_variable *g = tu_var(ctx, "g", CLOPT_FLOAT32, 1, &n, NULL);
    clopt_optimizer *a = tu_optimizer(ctx, "{\"class_name\": \"Muon\", \"config\": {}}");
    TU_OK(ctx, clopt_optimizer_apply(a, &g, &b, 1));
    cr_log_info("clopt was built without CLBlast: Muon-path variables are unsupported on OpenCL");
    clopt_context_destroy(ctx);
    return 1;
}
#define POCL_NEEDS_CLBLAST()                                                                  \
    do {                                                                                      \
        if (pocl_without_clblast()) return;                                                   \
    } while (0)

/* ---- an independent double-precision reference ---- */

/* Keras's zeropower_via_newtonschulz5 on the rows x cols matrix g (row-major), into out. */
static void ref_ns5(const double *g, int rows, int cols, int steps, double a, double b, double c,
                    double *out) {
    const int tr = rows > cols, m = tr ? cols : rows, n = tr ? rows : cols;
    double *x = malloc((size_t)(m * n) * sizeof *x), *xn = malloc((size_t)(m * n) * sizeof *xn);
    double *A = malloc((size_t)(m * m) * sizeof *A), *B = malloc((size_t)(m * m) * sizeof *B);
    cr_assert(x && xn && A && B);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) x[i * n + j] = tr ? g[j * cols + i] : g[i * cols + j];
    double ss = 0;
    for (int i = 0; i < m * n; i++) ss += x[i] * x[i];
    const double norm = sqrt(ss);
    for (int i = 0; i < m * n; i++) x[i] /= norm + 1e-7;
    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < m; j++) {
                double acc = 0;
                for (int k = 0; k < n; k++) acc += x[i * n + k] * x[j * n + k];
                A[i * m + j] = acc;
            }
        for (int i = 0; i < m; i++)
            for (int j = 0; j < m; j++) {
                double acc = 0;
                for (int k = 0; k < m; k++) acc += A[i * m + k] * A[k * m + j];
                B[i * m + j] = b * A[i * m + j] + c * acc;
            }
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double acc = 0;
                for (int k = 0; k < m; k++) acc += B[i * m + k] * x[k * n + j];
                xn[i * n + j] = a * x[i * n + j] + acc;
            }
        memcpy(x, xn, (size_t)(m * n) * sizeof *x);
    }
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            if (tr) out[j * cols + i] = x[i * n + j];
            else out[i * cols + j] = x[i * n + j];
        }
    free(x), free(xn), free(A), free(B);
}

typedef struct muon_hp {
    double lr, b1, b2, eps, a, b, c, ratio, momentum, wd, adam_wd, rms;
    int ns_steps, nesterov, wd_null, adam_wd_null, rms_null;
} muon_hp;

/* One step of one variable (rank != 2 or adamw: the AdamW path). */
static void ref_step(const muon_hp *h, int adamw, int rows, int cols, size_t n, int64_t t,
                     const double *g, double *w, double *m, double *v) {
    const int null = adamw ? h->adam_wd_null : h->wd_null;
    const double wd = adamw ? h->adam_wd : h->wd;
    if (!null)
        for (size_t i = 0; i < n; i++) w[i] -= w[i] * wd * h->lr;
    if (adamw) {
        const double lr = h->lr * h->ratio;
        const double alpha =
            lr * sqrt(1 - pow(h->b2, (double)t)) / (1 - pow(h->b1, (double)t));
        for (size_t i = 0; i < n; i++) {
            m[i] += (g[i] - m[i]) * (1 - h->b1);
            v[i] += (g[i] * g[i] - v[i]) * (1 - h->b2);
            w[i] -= m[i] * alpha / (sqrt(v[i]) + h->eps);
        }
        return;
    }
    double *G = calloc(n, sizeof *G), *U = calloc(n, sizeof *U); /* no -Wmaybe-uninitialized */
    cr_assert(G && U);
    for (size_t i = 0; i < n; i++) {
        m[i] += g[i] + m[i] * (h->momentum - 1);
        G[i] = h->nesterov ? g[i] + h->momentum * m[i] : m[i];
    }
    ref_ns5(G, rows, cols, h->ns_steps, h->a, h->b, h->c, U);
    const double adj = h->rms_null ? 1.0 : sqrt((double)(rows > cols ? rows : cols)) * h->rms;
    for (size_t i = 0; i < n; i++) w[i] -= h->lr * U[i] * adj;
    free(G), free(U);
}

/* The variables of the reference checks: two Muon-path matrices (3x5 as is, 8x4 transposed),
 * a larger one over several chunks (40x70) and its transpose, a 1-D and a 3-D variable, an
 * "embedding" matrix (AdamW path by exclude_embeddings, whatever the case), a matrix matched by
 * exclude_layers, and a Muon-path matrix whose gradient is missing at some steps. */
#define RV 9
static const struct {
    const char *name;
    int ndim;
    int64_t shape[3];
    int adamw;
} ref_vars[RV] = {
    {"block/w3x5", 2, {3, 5, 0}, 0},      {"block/w8x4", 2, {8, 4, 0}, 0},
    {"big/w40x70", 2, {40, 70, 0}, 0},    {"big/w70x40", 2, {70, 40, 0}, 0},
    {"block/bias", 1, {7, 0, 0}, 1},      {"conv/kernel", 3, {2, 3, 4}, 1},
    {"Token_Embedding/e", 2, {6, 5, 0}, 1}, {"head/out", 2, {5, 3, 0}, 1},
    {"sometimes/w", 2, {4, 4, 0}, 0},
};

static size_t rv_size(int k) {
    size_t n = 1;
    for (int d = 0; d < ref_vars[k].ndim; d++) n *= (size_t)ref_vars[k].shape[d];
    return n;
}

/* Six float64 steps of every ref_vars variable against ref_step, checking each variable and
 * slot after each step. `extra` holds the config entries beyond the learning rate (which the
 * muon_hp must describe). */
static void reference(const char *dev, const muon_hp *h, const char *extra) {
    clopt_context *ctx = tu_context(dev);
    char json[1024];
    snprintf(json, sizeof json,
             "{\"class_name\": \"Muon\", \"config\": {\"learning_rate\": %.17g, "
             "\"exclude_layers\": [\"^head/\", \"nomatch$\"]%s}}",
             h->lr, extra);
    uint64_t rng = 99;
    clopt_variable *vars[RV], *grads[RV];
    double *w[RV], *m[RV], *v[RV], *g[RV];
    for (int k = 0; k < RV; k++) {
        const size_t n = rv_size(k);
        w[k] = malloc(n * sizeof(double));
        m[k] = calloc(n, sizeof(double));
        v[k] = calloc(n, sizeof(double));
        g[k] = malloc(n * sizeof(double));
        cr_assert(w[k] && m[k] && v[k] && g[k]);
        tu_rand_fill(&rng, w[k], n, -1, 1);
        vars[k] = tu_var(ctx, ref_vars[k].name, CLOPT_FLOAT64, ref_vars[k].ndim,
                         ref_vars[k].shape, w[k]);
        grads[k] = tu_var(ctx, "g", CLOPT_FLOAT64, ref_vars[k].ndim, ref_vars[k].shape, NULL);
    }
    clopt_optimizer *o = tu_optimizer(ctx, json);
    for (int t = 1; t <= 6; t++) {
        clopt_variable *pass[RV];
        for (int k = 0; k < RV; k++) {
            tu_rand_fill(&rng, g[k], rv_size(k), -1, 1);
            tu_write_f64(grads[k], g[k]);
            pass[k] = grads[k];
        }
        if (t % 2 == 0) pass[RV - 1] = NULL;
        for (int k = 0; k < RV; k++)
            if (pass[k])
                ref_step(h, ref_vars[k].adamw, (int)ref_vars[k].shape[0],
                         (int)ref_vars[k].shape[1], rv_size(k), t, g[k], w[k], m[k], v[k]);
        TU_OK(ctx, clopt_optimizer_apply(o, pass, vars, RV));
        for (int k = 0; k < RV; k++) {
            char what[128], name[96];
            snprintf(what, sizeof what, "step %d: %s", t, ref_vars[k].name);
            tu_assert_var_close(vars[k], w[k], 1e-10, 1e-12, what);
            snprintf(name, sizeof name, "%s_momentum", ref_vars[k].name);
            for (char *p = name; *p; p++)
                if (*p == '/') *p = '_';
            tu_assert_var_close(tu_slot(o, name), m[k], 1e-10, 1e-12, name);
            if (ref_vars[k].adamw) {
                snprintf(name, sizeof name, "%s_velocity", ref_vars[k].name);
                for (char *p = name; *p; p++)
                    if (*p == '/') *p = '_';
                tu_assert_var_close(tu_slot(o, name), v[k], 1e-10, 1e-12, name);
            }
        }
    }
    /* Keras's list: momentum for every variable, velocity right after it on the AdamW path. */
    size_t want = 2;
    for (int k = 0; k < RV; k++) want += ref_vars[k].adamw ? 2 : 1;
    cr_assert_eq(clopt_optimizer_variable_count(o), want);
    for (int k = 0; k < RV; k++) free(w[k]), free(m[k]), free(v[k]), free(g[k]);
    clopt_context_destroy(ctx);
}

static const muon_hp hp_default = {
    0.03125, 0.9, 0.999, 1e-7, 3.4445, -4.7750, 2.0315, 1, 0.95, 0.004, 0.004, 0.2, 5, 1, 0, 0, 0};
static const muon_hp hp_other = {
    0.03125, 0.85, 0.99, 1e-6, 3.0, -3.2, 1.2, 0.5, 0.9, 0.05, 0.01, 0.3, 3, 0, 0, 0, 0};
#define HP_OTHER_JSON                                                                        \
    ", \"adam_beta_1\": 0.85, \"adam_beta_2\": 0.99, \"epsilon\": 1e-06, \"muon_a\": 3.0, "   \
    "\"muon_b\": -3.2, \"muon_c\": 1.2, \"adam_lr_ratio\": 0.5, \"momentum\": 0.9, "           \
    "\"ns_steps\": 3, \"nesterov\": false, \"weight_decay\": 0.05, \"adam_weight_decay\": 0.01, " \
    "\"rms_rate\": 0.3"
static const muon_hp hp_nulls = {
    0.03125, 0.9, 0.999, 1e-7, 3.4445, -4.7750, 2.0315, 1, 0.95, 0, 0.02, 0, 5, 1, 1, 0, 1};
#define HP_NULLS_JSON ", \"weight_decay\": null, \"adam_weight_decay\": 0.02, \"rms_rate\": null"

Test(muon_host, reference_defaults) { reference(TU_HOST, &hp_default, ""); }
Test(muon_pocl, reference_defaults) {
    POCL_NEEDS_CLBLAST();
    reference(TU_POCL, &hp_default, "");
}
Test(muon_host, reference_other_hyperparameters) { reference(TU_HOST, &hp_other, HP_OTHER_JSON); }
Test(muon_pocl, reference_other_hyperparameters) {
    POCL_NEEDS_CLBLAST();
    reference(TU_POCL, &hp_other, HP_OTHER_JSON);
}
/* No weight decay on the Muon path (weight_decay null), AdamW's still applies; no lr_adjust. */
Test(muon_host, reference_null_weight_decay_and_rms_rate) {
    reference(TU_HOST, &hp_nulls, HP_NULLS_JSON);
}
Test(muon_pocl, reference_null_weight_decay_and_rms_rate) {
    POCL_NEEDS_CLBLAST();
    reference(TU_POCL, &hp_nulls, HP_NULLS_JSON);
}

/* ---- Keras's published numbers ---- */

/* test_Newton_Schulz: zeropower_via_newtonschulz5([[0.2499, 0.9105], [0.2655, 0.8824]], 5). Through
 * apply: momentum 0 (so G = g), learning rate 1, rms_rate and weight_decay null, w = 0: then
 * w = -NS5(g). */
static void keras_newton_schulz(const char *dev, clopt_dtype dtype) {
    clopt_context *ctx = tu_context(dev);
    const int64_t shape[2] = {2, 2};
    const double g0[4] = {0.2499, 0.9105, 0.2655, 0.8824};
    const double want[4] = {0.4422, -0.6457, -0.7285, -0.2968}; /* -except_output */
    clopt_variable *w = tu_var_from_f64(ctx, "variable", dtype, 2, shape, (double[4]){0});
    clopt_variable *g = tu_var_from_f64(ctx, "g", dtype, 2, shape, g0);
    clopt_optimizer *o = tu_optimizer(
        ctx, "{\"class_name\": \"Muon\", \"config\": {\"learning_rate\": 1.0, \"momentum\": 0.0, "
             "\"rms_rate\": null, \"weight_decay\": null}}");
    TU_OK(ctx, clopt_optimizer_apply(o, &g, &w, 1));
    tu_assert_var_close(w, want, 1e-3, 1e-3, KERAS_MUON_TEST " test_Newton_Schulz");
    /* and the double reference agrees with Keras's numbers */
    double u[4];
    ref_ns5(g0, 2, 2, 5, 3.4445, -4.7750, 2.0315, u);
    for (int i = 0; i < 4; i++) cr_assert(fabs(-u[i] - want[i]) <= 1e-3 + 1e-3 * fabs(want[i]));
    clopt_context_destroy(ctx);
}
Test(muon_host, keras_newton_schulz) {
    keras_newton_schulz(TU_HOST, CLOPT_FLOAT32);
    keras_newton_schulz(TU_HOST, CLOPT_FLOAT64);
}
Test(muon_pocl, keras_newton_schulz) {
    POCL_NEEDS_CLBLAST();
    keras_newton_schulz(TU_POCL, CLOPT_FLOAT32);
    keras_newton_schulz(TU_POCL, CLOPT_FLOAT64);
}

/* test_adamw_single_step: _adamw_update_step(grads, vars, 0.5) on a 1-D variable (the AdamW path)
 * gives [0.5, 1.5, 2.5, 3.5]. Keras calls the step alone: adam_weight_decay null here. */
#define ADAMW_SINGLE_JSON                                                                   \
    "{\"class_name\": \"Muon\", \"config\": {\"learning_rate\": 0.5, \"adam_weight_decay\": " \
    "null}}"
static const double adamw_single[4] = {0.5, 1.5, 2.5, 3.5};
Test(muon_host, keras_adamw_single_step) {
    om_keras_single_step(TU_HOST, CLOPT_FLOAT32, ADAMW_SINGLE_JSON, adamw_single);
    om_keras_single_step(TU_HOST, CLOPT_FLOAT64, ADAMW_SINGLE_JSON, adamw_single);
}
Test(muon_pocl, keras_adamw_single_step) {
    POCL_NEEDS_CLBLAST();
    om_keras_single_step(TU_POCL, CLOPT_FLOAT32, ADAMW_SINGLE_JSON, adamw_single);
    om_keras_single_step(TU_POCL, CLOPT_FLOAT64, ADAMW_SINGLE_JSON, adamw_single);
}

/* test_muon_single_step: _muon_update_step([[1, 6], [7, 2]], [[1, 2], [3, 4]], 0.5) with
 * weight_decay 0, compared with rtol = atol = 1e-2. */
static void keras_muon_single_step(const char *dev, clopt_dtype dtype) {
    clopt_context *ctx = tu_context(dev);
    const int64_t shape[2] = {2, 2};
    const double w0[4] = {1, 2, 3, 4}, g0[4] = {1, 6, 7, 2};
    const double want[4] = {0.988775, 1.887053, 2.873428, 3.97035};
    clopt_variable *w = tu_var_from_f64(ctx, "variable", dtype, 2, shape, w0);
    clopt_variable *g = tu_var_from_f64(ctx, "g", dtype, 2, shape, g0);
    clopt_optimizer *o = tu_optimizer(
        ctx, "{\"class_name\": \"Muon\", \"config\": {\"learning_rate\": 0.5, \"weight_decay\": "
             "0}}");
    TU_OK(ctx, clopt_optimizer_apply(o, &g, &w, 1));
    tu_assert_var_close(w, want, 1e-2, 1e-2, KERAS_MUON_TEST " test_muon_single_step");
    clopt_context_destroy(ctx);
}
Test(muon_host, keras_muon_single_step) {
    keras_muon_single_step(TU_HOST, CLOPT_FLOAT32);
    keras_muon_single_step(TU_HOST, CLOPT_FLOAT64);
}
Test(muon_pocl, keras_muon_single_step) {
    POCL_NEEDS_CLBLAST();
    keras_muon_single_step(TU_POCL, CLOPT_FLOAT32);
    keras_muon_single_step(TU_POCL, CLOPT_FLOAT64);
}

/* test_clip_norm and test_clip_value: the gradient [100, 100] clips to [sqrt(2)/2] * 2 (clipnorm
 * 1) and to [1, 1] (clipvalue 1). Observed through one AdamW-path step from w = 0 with epsilon 1,
 * whose result depends on the gradient's magnitude: w = -alpha*m/(sqrt(v) + 1). */
static void keras_clip(const char *dev, const char *clip, double clipped) {
    clopt_context *ctx = tu_context(dev);
    const int64_t n = 2;
    const double g0[2] = {100, 100};
    clopt_variable *w = tu_var_from_f64(ctx, "w", CLOPT_FLOAT32, 1, &n, (double[2]){0});
    clopt_variable *g = tu_var_from_f64(ctx, "g", CLOPT_FLOAT32, 1, &n, g0);
    char json[256];
    snprintf(json, sizeof json,
             "{\"class_name\": \"Muon\", \"config\": {\"learning_rate\": 1.0, \"epsilon\": 1.0, "
             "\"adam_weight_decay\": null, %s}}",
             clip);
    clopt_optimizer *o = tu_optimizer(ctx, json);
    TU_OK(ctx, clopt_optimizer_apply(o, &g, &w, 1));
    const double alpha = sqrt(1 - 0.999) / (1 - 0.9), m = 0.1 * clipped,
                 v = 0.001 * clipped * clipped, x = -alpha * m / (sqrt(v) + 1.0);
    const double want[2] = {x, x};
    tu_assert_var_close(w, want, 1e-5, 1e-7, clip);
    clopt_context_destroy(ctx);
}
Test(muon_host, keras_clip_norm) { keras_clip(TU_HOST, "\"clipnorm\": 1", sqrt(2.0) / 2); }
Test(muon_pocl, keras_clip_norm) {
    POCL_NEEDS_CLBLAST();
    keras_clip(TU_POCL, "\"clipnorm\": 1", sqrt(2.0) / 2);
}
Test(muon_host, keras_clip_value) { keras_clip(TU_HOST, "\"clipvalue\": 1", 1.0); }
Test(muon_pocl, keras_clip_value) {
    POCL_NEEDS_CLBLAST();
    keras_clip(TU_POCL, "\"clipvalue\": 1", 1.0);
}

/* test_muon_weight_decay ([[1, 2], [3, 4]], weight_decay 0.01, learning rate 1: w - w*0.01) and
 * test_adamw_weight_decay (the scalar 2.0, adam_weight_decay 0.01: 1.98), compared with 1e-4.
 * Keras calls _apply_weight_decay alone; here a zero gradient makes the update itself zero on
 * both paths (NS5(0) = 0/(0 + 1e-7) = 0; Adam's m = 0). Each decay belongs to its own path: the
 * other rate is 0.5 and must not be applied. */
static void keras_weight_decay(const char *dev) {
    clopt_context *ctx = tu_context(dev);
    const int64_t shape[2] = {2, 2};
    const double w0[4] = {1, 2, 3, 4}, zero4[4] = {0};
    const float two = 2.0f, zero = 0.0f;
    clopt_variable *mat = tu_var_from_f64(ctx, "variable", CLOPT_FLOAT32, 2, shape, w0);
    clopt_variable *gm = tu_var_from_f64(ctx, "g", CLOPT_FLOAT32, 2, shape, zero4);
    clopt_variable *sc = tu_var(ctx, "variable_1", CLOPT_FLOAT32, 0, NULL, &two);
    clopt_variable *gs = tu_var(ctx, "gs", CLOPT_FLOAT32, 0, NULL, &zero);
    clopt_optimizer *o1 = tu_optimizer(
        ctx, "{\"class_name\": \"Muon\", \"config\": {\"learning_rate\": 1.0, \"weight_decay\": "
             "0.01, \"adam_weight_decay\": 0.5}}");
    clopt_optimizer *o2 = tu_optimizer(
        ctx, "{\"class_name\": \"Muon\", \"config\": {\"learning_rate\": 1.0, "
             "\"adam_weight_decay\": 0.01, \"weight_decay\": 0.5}}");
    TU_OK(ctx, clopt_optimizer_apply(o1, &gm, &mat, 1));
    TU_OK(ctx, clopt_optimizer_apply(o2, &gs, &sc, 1));
    double want[4];
    for (int i = 0; i < 4; i++) want[i] = w0[i] - w0[i] * 0.01;
    tu_assert_var_close(mat, want, 1e-4, 1e-4, KERAS_MUON_TEST " test_muon_weight_decay");
    const double want_s = 1.98;
    tu_assert_var_close(sc, &want_s, 1e-4, 1e-4, KERAS_MUON_TEST " test_adamw_weight_decay");
    /* Excluded from weight decay: neither path decays. */
    clopt_optimizer *o3 = tu_optimizer(
        ctx, "{\"class_name\": \"Muon\", \"config\": {\"learning_rate\": 1.0, \"weight_decay\": "
             "0.01, \"adam_weight_decay\": 0.01}}");
    const char *names[] = {"variable"};
    TU_OK(ctx, clopt_optimizer_exclude_from_weight_decay(o3, NULL, 0, names, 1));
    clopt_variable *both[2] = {mat, sc}, *gboth[2] = {gm, gs};
    double *bm = tu_read_f64(mat), *bs = tu_read_f64(sc);
    TU_OK(ctx, clopt_optimizer_apply(o3, gboth, both, 2));
    tu_assert_var_close(mat, bm, 0, 0, "excluded matrix");
    tu_assert_var_close(sc, bs, 0, 0, "excluded scalar");
    free(bm), free(bs);
    clopt_context_destroy(ctx);
}
Test(muon_host, keras_weight_decay) { keras_weight_decay(TU_HOST); }
Test(muon_pocl, keras_weight_decay) {
    POCL_NEEDS_CLBLAST();
    keras_weight_decay(TU_POCL);
}

/* test_lr_adjust_none and test_lr_adjust_2d: lr_adjust(ones((4, 4))) with rms_rate None is the
 * identity; lr_adjust(ones((4, 2))) with rms_rate 0.2 is 0.2 * 2 = sqrt(max(4, 2)) * 0.2. Through
 * apply: the same step of a 4x2 and a 9x4 matrix with rms_rate 0.2 and null must differ by
 * exactly sqrt(max(rows, cols)) * 0.2: 0.4 and 0.6. */
static void keras_lr_adjust(const char *dev, clopt_dtype dtype) {
    clopt_context *ctx = tu_context(dev);
    const int64_t s42[2] = {4, 2}, s94[2] = {9, 4};
    double g0[36];
    uint64_t rng = 5;
    tu_rand_fill(&rng, g0, 36, -1, 1);
    const char *cfg[2] = {"{\"class_name\": \"Muon\", \"config\": {\"learning_rate\": 0.01, "
                          "\"weight_decay\": null, \"rms_rate\": 0.2}}",
                          "{\"class_name\": \"Muon\", \"config\": {\"learning_rate\": 0.01, "
                          "\"weight_decay\": null, \"rms_rate\": null}}"};
    double d[2][2][36];
    for (int k = 0; k < 2; k++) {
        clopt_variable *w[2] = {tu_var_from_f64(ctx, "a", dtype, 2, s42, (double[36]){0}),
                                tu_var_from_f64(ctx, "b", dtype, 2, s94, (double[36]){0})};
        clopt_variable *g[2] = {tu_var_from_f64(ctx, "ga", dtype, 2, s42, g0),
                                tu_var_from_f64(ctx, "gb", dtype, 2, s94, g0)};
        clopt_optimizer *o = tu_optimizer(ctx, cfg[k]);
        TU_OK(ctx, clopt_optimizer_apply(o, g, w, 2));
        for (int j = 0; j < 2; j++) {
            double *x = tu_read_f64(w[j]);
            memcpy(d[k][j], x, (size_t)clopt_variable_size(w[j]) * sizeof(double));
            free(x);
        }
    }
    const double tol = dtype == CLOPT_FLOAT64 ? 1e-12 : 1e-6;
    for (int i = 0; i < 8; i++) {
        cr_assert(d[1][0][i] != 0);
        cr_assert(fabs(d[0][0][i] - 0.4 * d[1][0][i]) <= tol * fabs(d[1][0][i]),
                  "4x2 element %d: %g vs 0.4 * %g", i, d[0][0][i], d[1][0][i]);
    }
    for (int i = 0; i < 36; i++)
        cr_assert(fabs(d[0][1][i] - 0.6 * d[1][1][i]) <= tol * fabs(d[1][1][i]),
                  "9x4 element %d: %g vs 0.6 * %g", i, d[0][1][i], d[1][1][i]);
    clopt_context_destroy(ctx);
}
Test(muon_host, keras_lr_adjust) {
    keras_lr_adjust(TU_HOST, CLOPT_FLOAT32);
    keras_lr_adjust(TU_HOST, CLOPT_FLOAT64);
}
Test(muon_pocl, keras_lr_adjust) {
    POCL_NEEDS_CLBLAST();
    keras_lr_adjust(TU_POCL, CLOPT_FLOAT32);
    keras_lr_adjust(TU_POCL, CLOPT_FLOAT64);
}

/* test_should_use_adamw, seen through Keras's variable list (a velocity slot exists exactly on
 * the AdamW path): a 2x2 "variable" with exclude_layers ["var"] takes the AdamW path, and so does
 * an Embedding's "embedding/embeddings"; with the defaults "variable" and Dense's "dense/kernel"
 * take the Muon path. */
static int has_velocity(const char *json, const char *name) {
    clopt_context *ctx = tu_context(TU_HOST);
    const int64_t shape[2] = {2, 2};
    clopt_variable *v = tu_var(ctx, name, CLOPT_FLOAT32, 2, shape, NULL);
    clopt_optimizer *o = tu_optimizer(ctx, json);
    TU_OK(ctx, clopt_optimizer_build(o, &v, 1));
    const size_t n = clopt_optimizer_variable_count(o);
    cr_assert(n == 3 || n == 4);
    clopt_context_destroy(ctx);
    return n == 4;
}
Test(muon_host, keras_should_use_adamw) {
    const char *excl = "{\"class_name\": \"Muon\", \"config\": {\"exclude_layers\": [\"var\"]}}";
    const char *dflt = "{\"class_name\": \"Muon\", \"config\": {}}";
    cr_assert(has_velocity(excl, "variable"));
    cr_assert(has_velocity(excl, "embedding/embeddings"));
    cr_assert(!has_velocity(dflt, "variable"));
    cr_assert(!has_velocity(dflt, "dense/kernel"));
    /* exclude_embeddings off: an embedding matrix takes the Muon path */
    cr_assert(!has_velocity(
        "{\"class_name\": \"Muon\", \"config\": {\"exclude_embeddings\": false}}",
        "embedding/embeddings"));
    /* the lower-cased name is searched; exclude_layers is case-sensitive (re.search) */
    cr_assert(has_velocity(dflt, "pos_EMBEDDING"));
    cr_assert(!has_velocity(excl, "VAR"));
    cr_assert(has_velocity(
        "{\"class_name\": \"Muon\", \"config\": {\"exclude_layers\": [\"^out(put)?_dense/\", "
        "\"x\"]}}",
        "output_dense/kernel"));
}

/* exclude_layers patterns that stack three repetition operators ("k+++", Python's "multiple
 * repeat") are refused before glibc's regcomp sees them (a fuzzer's "k+++...+" of 100 signs made
 * it take gigabytes); "a+?" (lazy) and "a++" (possessive) stay valid, as in Python. */
Test(muon_host, stacked_repetitions_refused) {
    clopt_context *ctx;
    cr_assert_eq(clopt_context_create("host", &ctx), CLOPT_OK);
    char json[512], run[120];
    memset(run, '+', sizeof run - 1);
    run[sizeof run - 1] = '\0';
    snprintf(json, sizeof json,
             "{\"class_name\": \"Muon\", \"config\": {\"exclude_layers\": [\"ok\", "
             "\"k%ser\"]}}",
             run);
    clopt_optimizer *o = NULL;
    cr_assert_eq(clopt_optimizer_from_config(ctx, json, &o), CLOPT_ERR_BAD_VALUE);
    cr_assert_null(o);
    cr_assert(strstr(clopt_context_last_error(ctx), "'exclude_layers' entry 1"),
              "%s", clopt_context_last_error(ctx));
    cr_assert_eq(clopt_optimizer_from_config(
                     ctx, "{\"class_name\": \"Muon\", \"config\": {\"exclude_layers\": "
                          "[\"a+++\"]}}", &o), CLOPT_ERR_BAD_VALUE);
    const char *valid = "{\"class_name\": \"Muon\", \"config\": {\"exclude_layers\": "
                        "[\"de+?nse\", \"x++\", \"[+*?]+\", \"a\\\\+\\\\+\\\\+\"]}}";
    cr_assert_eq(clopt_optimizer_from_config(ctx, valid, &o), CLOPT_OK, "%s",
                 clopt_context_last_error(ctx));
    clopt_optimizer_destroy(o);
    clopt_context_destroy(ctx);
}

/* test_config (run_class_serialization_test): Muon(learning_rate=0.5, epsilon=1e-5) survives
 * get_config / from_config; and the keys come in Keras's order with Keras's defaults. */
Test(muon_host, keras_config) {
    static const char *const keys[] = {
        "adam_beta_1", "adam_beta_2", "epsilon", "exclude_layers", "muon_a", "muon_b",
        "muon_c", "adam_lr_ratio", "momentum", "ns_steps", "nesterov", "exclude_embeddings",
        "adam_weight_decay", "rms_rate", NULL};
    om_config_keys("Muon", "muon", keys);
    clopt_context *ctx = tu_context(TU_HOST);
    clopt_optimizer *d = tu_optimizer(ctx, "{\"class_name\": \"Muon\", \"config\": {}}");
    char *cfg = NULL;
    TU_OK(ctx, clopt_optimizer_get_config(d, &cfg));
    static const char *const defaults[] = {
        "\"learning_rate\": 0.001", "\"weight_decay\": 0.004", "\"adam_beta_1\": 0.9",
        "\"adam_beta_2\": 0.999", "\"epsilon\": 1e-07", "\"exclude_layers\": []",
        "\"muon_a\": 3.4445", "\"muon_b\": -4.775", "\"muon_c\": 2.0315",
        "\"adam_lr_ratio\": 1,", "\"momentum\": 0.95", "\"ns_steps\": 5,", "\"nesterov\": true",
        "\"exclude_embeddings\": true", "\"adam_weight_decay\": 0.004", "\"rms_rate\": 0.2"};
    for (size_t i = 0; i < sizeof defaults / sizeof *defaults; i++)
        cr_assert(strstr(cfg, defaults[i]), "%s lacks %s", cfg, defaults[i]);
    clopt_free(cfg);
    clopt_optimizer *o = tu_optimizer(
        ctx, "{\"module\": \"keras.optimizers\", \"class_name\": \"Muon\", \"config\": {\"name\": "
             "\"muon\", \"learning_rate\": 0.5, \"epsilon\": 1e-05, \"exclude_layers\": "
             "[\"last\", \"head\"], \"adam_lr_ratio\": 0.1, \"rms_rate\": null}, "
             "\"registered_name\": null}");
    TU_OK(ctx, clopt_optimizer_get_config(o, &cfg));
    cr_assert(strstr(cfg, "\"learning_rate\": 0.5,") && strstr(cfg, "\"epsilon\": 1e-05,") &&
                  strstr(cfg, "\"exclude_layers\": [\"last\", \"head\"]") &&
                  strstr(cfg, "\"adam_lr_ratio\": 0.1,") && strstr(cfg, "\"rms_rate\": null"),
              "%s", cfg);
    clopt_optimizer *o2 = tu_optimizer(ctx, cfg);
    char *cfg2 = NULL;
    TU_OK(ctx, clopt_optimizer_get_config(o2, &cfg2));
    cr_assert_str_eq(cfg2, cfg);
    clopt_free(cfg);
    clopt_free(cfg2);
    /* Keras writes exclude_layers=None back as [] (`exclude_layers or []`). */
    clopt_optimizer *n =
        tu_optimizer(ctx, "{\"class_name\": \"Muon\", \"config\": {\"exclude_layers\": null}}");
    TU_OK(ctx, clopt_optimizer_get_config(n, &cfg));
    cr_assert(strstr(cfg, "\"exclude_layers\": []"), "%s", cfg);
    clopt_free(cfg);
    clopt_context_destroy(ctx);
}

/* ---- Keras's variable list ---- */

/* Keras 3.16, keras/src/optimizers/muon.py, Muon.build: per variable
 * add_variable_from_reference(var, "momentum"), then add_variable_from_reference(var, "velocity")
 * only if _should_use_adamw(var); named by base_optimizer.py's add_variable_from_reference "<path,
 * '/' -> '_'>_<name>". */
Test(muon_host, variable_list_in_keras_order) {
    /* dense/kernel [3, 2] takes the Muon path (no velocity), dense/bias [2] the AdamW path. */
    static const ovl_entry plain[] = {{"iteration", 0},          {"learning_rate", 0},
                                      {"dense_kernel_momentum", 6}, {"dense_bias_momentum", 2},
                                      {"dense_bias_velocity", 2},   {NULL, 0}};
    ovl_check("{\"class_name\": \"Muon\", \"config\": {}}", plain);
    static const ovl_entry excluded[] = {
        {"iteration", 0},           {"learning_rate", 0},        {"dense_kernel_momentum", 6},
        {"dense_kernel_velocity", 6}, {"dense_bias_momentum", 2}, {"dense_bias_velocity", 2},
        {NULL, 0}};
    ovl_check("{\"class_name\": \"Muon\", \"config\": {\"exclude_layers\": [\"kernel\"]}}",
              excluded);
    static const ovl_entry all[] = {{"iteration", 0},
                                    {"learning_rate", 0},
                                    {"dense_kernel_average", 6},
                                    {"dense_bias_average", 2},
                                    {"dense_kernel_gradient_accumulator", 6},
                                    {"dense_bias_gradient_accumulator", 2},
                                    {"dense_kernel_momentum", 6},
                                    {"dense_bias_momentum", 2},
                                    {"dense_bias_velocity", 2},
                                    {NULL, 0}};
    ovl_check("{\"class_name\": \"Muon\", \"config\": {\"use_ema\": true, "
              "\"gradient_accumulation_steps\": 2}}",
              all);
}

/* ---- host versus OpenCL ---- */

/* Every apply-pipeline option (optim_more.h: v1, v300, v4096 take the AdamW path, m17x33 the
 * Muon path), float32 and float64 as separate tests. */
#define AGREE_BASE "\"learning_rate\": 0.01"
Test(muon_pocl, agrees_with_host_f32) {
    POCL_NEEDS_CLBLAST();
    om_agree_dtype(TU_POCL, CLOPT_FLOAT32, "Muon", AGREE_BASE);
}
Test(muon_pocl, agrees_with_host_f64) {
    POCL_NEEDS_CLBLAST();
    om_agree_dtype(TU_POCL, CLOPT_FLOAT64, "Muon", AGREE_BASE);
}

/* The reference's shapes (transposed, multi-chunk, every path) in float32 and float64, and
 * bfloat16/float16 matrices (iterated in float32, G stored in the variable's dtype): five steps
 * with a missing gradient at step 2, host against pocl. */
static void agree_shapes(clopt_dtype dtype) {
    const char *json =
        "{\"class_name\": \"Muon\", \"config\": {\"learning_rate\": 0.02, \"exclude_layers\": "
        "[\"^head/\"], \"adam_lr_ratio\": 0.5}}";
    clopt_context *ctx[2] = {tu_context(TU_HOST), tu_context(TU_POCL)};
    clopt_variable *vars[2][RV], *grads[2][RV];
    clopt_optimizer *o[2];
    uint64_t rng = 3;
    for (int k = 0; k < RV; k++) {
        const size_t n = rv_size(k);
        double *x = malloc(n * sizeof *x);
        cr_assert(x);
        tu_rand_fill(&rng, x, n, -1, 1);
        for (int s = 0; s < 2; s++) {
            vars[s][k] = tu_var_from_f64(ctx[s], ref_vars[k].name, dtype, ref_vars[k].ndim,
                                         ref_vars[k].shape, x);
            grads[s][k] = tu_var_from_f64(ctx[s], "g", dtype, ref_vars[k].ndim,
                                          ref_vars[k].shape, x);
        }
        free(x);
    }
    for (int s = 0; s < 2; s++) o[s] = tu_optimizer(ctx[s], json);
    for (int step = 0; step < 5; step++) {
        for (int k = 0; k < RV; k++) {
            const size_t n = rv_size(k);
            double *x = malloc(n * sizeof *x);
            cr_assert(x);
            tu_rand_fill(&rng, x, n, -1, 1);
            tu_write_f64(grads[0][k], x);
            tu_write_f64(grads[1][k], x);
            free(x);
        }
        for (int s = 0; s < 2; s++) {
            clopt_variable *pass[RV];
            memcpy(pass, grads[s], sizeof pass);
            if (step == 2) pass[1] = NULL;
            TU_OK(ctx[s], clopt_optimizer_apply(o[s], pass, vars[s], RV));
        }
        for (int k = 0; k < RV; k++) {
            char what[128];
            snprintf(what, sizeof what, "%s step %d: %s", clopt_dtype_name(dtype), step,
                     ref_vars[k].name);
            tu_assert_vars_close(vars[1][k], vars[0][k], what);
        }
        const size_t nv = clopt_optimizer_variable_count(o[0]);
        cr_assert_eq(clopt_optimizer_variable_count(o[1]), nv);
        for (size_t i = 0; i < nv; i++) {
            const char *name;
            clopt_variable *a, *b;
            TU_OK(ctx[0], clopt_optimizer_variable(o[0], i, &name, NULL, &a));
            TU_OK(ctx[1], clopt_optimizer_variable(o[1], i, NULL, NULL, &b));
            if (a) tu_assert_vars_close(b, a, name);
        }
    }
    clopt_context_destroy(ctx[0]);
    clopt_context_destroy(ctx[1]);
}
Test(muon_pocl, agrees_with_host_shapes_f32) {
    POCL_NEEDS_CLBLAST();
    agree_shapes(CLOPT_FLOAT32);
}
Test(muon_pocl, agrees_with_host_shapes_f64) {
    POCL_NEEDS_CLBLAST();
    agree_shapes(CLOPT_FLOAT64);
}

/* ---- hyperparameters ---- */

Test(muon_host, bad_values_are_rejected) {
    static const om_bad bad[] = {
        {"\"adam_beta_1\": 1.5", "adam_beta_1"},
        {"\"adam_beta_2\": -0.1", "adam_beta_2"},
        {"\"epsilon\": -1e-07", "epsilon"},
        {"\"momentum\": 1.5", "momentum"},
        {"\"momentum\": -0.5", "momentum"},
        {"\"ns_steps\": -1", "ns_steps"},
        {"\"ns_steps\": 1001", "ns_steps"},
        {"\"adam_lr_ratio\": -1", "adam_lr_ratio"},
        {"\"rms_rate\": -0.2", "rms_rate"},
        {"\"exclude_layers\": [\"dense\", \"(unclosed\"]", "exclude_layers"},
    };
    om_bad_values("Muon", bad, sizeof bad / sizeof *bad);
}

Test(muon_host, bad_types_are_rejected) {
    static const om_bad bad[] = {
        {"\"ns_steps\": 2.5", "ns_steps"},
        {"\"ns_steps\": null", "ns_steps"},
        {"\"exclude_layers\": \"dense\"", "exclude_layers"},
        {"\"exclude_layers\": [\"dense\", 1]", "exclude_layers"},
        {"\"nesterov\": 1", "nesterov"},
        {"\"muon_a\": \"3.4\"", "muon_a"},
        {"\"adam_lr_ratio\": null", "adam_lr_ratio"},
    };
    clopt_context *ctx = tu_context(TU_HOST);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        clopt_optimizer *sentinel = (clopt_optimizer *)(uintptr_t)0x5eed, *o = sentinel;
        const char *json = om_json("Muon", bad[i].config, NULL, NULL);
        const clopt_status st = clopt_optimizer_from_config(ctx, json, &o);
        cr_assert(st == CLOPT_ERR_BAD_TYPE, "%s: got %s, expected CLOPT_ERR_BAD_TYPE", json,
                  clopt_status_name(st));
        cr_assert(o == sentinel, "%s: the out pointer was written on failure", json);
        tu_assert_error_mentions(ctx, bad[i].key);
    }
    clopt_context_destroy(ctx);
}

Test(muon_host, boundary_values_are_accepted) {
    static const char *const good[] = {
        "\"ns_steps\": 0",          "\"ns_steps\": 1000",        "\"ns_steps\": 3.0",
        "\"momentum\": 0.0",        "\"momentum\": 1.0",         "\"rms_rate\": null",
        "\"rms_rate\": 0",          "\"adam_weight_decay\": null", "\"exclude_layers\": null",
        "\"exclude_layers\": []",   "\"adam_lr_ratio\": 0",      "\"muon_b\": 4.0",
        "\"weight_decay\": null",
    };
    om_good_values("Muon", good, sizeof good / sizeof *good);
}

/* ns_steps 0: the update is the normalised G alone (Keras's loop runs zero times). */
static void zero_steps(const char *dev) {
    muon_hp h = hp_default;
    h.ns_steps = 0;
    reference(dev, &h, ", \"ns_steps\": 0");
}
Test(muon_host, reference_zero_ns_steps) { zero_steps(TU_HOST); }
Test(muon_pocl, reference_zero_ns_steps) {
    POCL_NEEDS_CLBLAST();
    zero_steps(TU_POCL);
}

/* ---- many variables of a few shapes: the batched Newton-Schulz iteration ----
 * The Muon-path variables of a plan launch are grouped by (dtype, rows, cols) and each group's
 * products are one batched matrix product (src/optim/muon.c). Here: GN variables of a handful of
 * shapes, interleaved in the built list (so groups are not contiguous there), plus AdamW-path
 * variables; at some steps gradients are missing for members inside a group (the run splits). */
#define GN 23
static void group_shape(int k, int64_t shape[2], int *adamw, const char **kind) {
    static const int64_t shapes[5][2] = {{6, 10}, {20, 7}, {16, 16}, {1, 300}, {9, 1}};
    if (k % 11 == 5) { /* AdamW path: a bias (1-D) */
        shape[0] = 13, shape[1] = 0, *adamw = 1, *kind = "bias";
        return;
    }
    if (k == 8) { /* AdamW path: an embedding matrix of a Muon group's shape */
        shape[0] = 6, shape[1] = 10, *adamw = 1, *kind = "embedding";
        return;
    }
    const int s = k % 7 < 3 ? 0 : k % 7 < 5 ? 1 : k % 7 == 5 ? 2 : 3 + k % 2;
    shape[0] = shapes[s][0], shape[1] = shapes[s][1], *adamw = 0, *kind = "kernel";
}

/* A set of Muon test variables: variable k's shape, path and name kind come from `layout` (a
 * second dimension of 0 makes it 1-D), its start from the seeded generator; its gradients at step
 * t from the generator seeded grad_seed + t (the same for every caller); `skips` says which
 * variables have no gradient at a step. */
#define SET_MAX 32
typedef void (*set_layout_fn)(int k, int64_t shape[2], int *adamw, const char **kind);
typedef struct mu_set {
    int nv;
    clopt_variable *vars[SET_MAX], *grads[SET_MAX];
    int64_t shape[SET_MAX][2];
    int ndim[SET_MAX], adamw[SET_MAX];
    size_t n[SET_MAX];
    uint64_t grad_seed;
    int (*skips)(int k, int t);
} mu_set;

static void set_make(clopt_context *ctx, clopt_dtype dtype, uint64_t seed, int nv,
                     set_layout_fn layout, uint64_t grad_seed, int (*skips)(int, int), mu_set *s,
                     double **w0) {
    cr_assert(nv <= SET_MAX);
    s->nv = nv, s->grad_seed = grad_seed, s->skips = skips;
    uint64_t rng = seed;
    for (int k = 0; k < nv; k++) {
        const char *kind;
        layout(k, s->shape[k], &s->adamw[k], &kind);
        s->ndim[k] = s->shape[k][1] ? 2 : 1;
        s->n[k] = (size_t)s->shape[k][0] * (size_t)(s->shape[k][1] ? s->shape[k][1] : 1);
        double *x = malloc(s->n[k] * sizeof *x);
        cr_assert(x);
        tu_rand_fill(&rng, x, s->n[k], -1, 1);
        char name[64];
        snprintf(name, sizeof name, "layer%d/%s", k, kind);
        s->vars[k] = tu_var_from_f64(ctx, name, dtype, s->ndim[k], s->shape[k], x);
        s->grads[k] = tu_var_from_f64(ctx, "g", dtype, s->ndim[k], s->shape[k], x);
        if (w0) w0[k] = x;
        else free(x);
    }
}

/* Writes step t's gradients (into g[k] as well when g is not NULL; the caller frees them). */
static void set_grads(const mu_set *s, int t, double **g) {
    uint64_t rng = s->grad_seed + (uint64_t)t;
    for (int k = 0; k < s->nv; k++) {
        double *x = malloc(s->n[k] * sizeof(double));
        cr_assert(x);
        tu_rand_fill(&rng, x, s->n[k], -1, 1);
        tu_write_f64(s->grads[k], x);
        if (g) g[k] = x;
        else free(x);
    }
}

/* One step of the set: step t's gradients, then apply with the skipped ones left out. */
static void set_step(clopt_context *ctx, clopt_optimizer *o, const mu_set *s, int t, double **g) {
    set_grads(s, t, g);
    clopt_variable *pass[SET_MAX];
    for (int k = 0; k < s->nv; k++) pass[k] = s->skips(k, t) ? NULL : s->grads[k];
    TU_OK(ctx, clopt_optimizer_apply(o, pass, (clopt_variable **)s->vars, (size_t)s->nv));
}

#define GROUP_JSON                                                                            \
    "{\"class_name\": \"Muon\", \"config\": {\"learning_rate\": 0.03125, \"exclude_layers\": " \
    "[\"^head/\"]}}"

/* float64 against the double reference (ref_step), four steps: each variable's weights after
 * every step, within 1e-10 relative. */
static void set_reference(const char *dev, uint64_t seed, int nv, set_layout_fn layout,
                          uint64_t grad_seed, int (*skips)(int, int)) {
    clopt_context *ctx = tu_context(dev);
    mu_set s;
    double *w[SET_MAX], *m[SET_MAX], *v[SET_MAX];
    set_make(ctx, CLOPT_FLOAT64, seed, nv, layout, grad_seed, skips, &s, w);
    for (int k = 0; k < nv; k++) {
        m[k] = calloc(s.n[k], sizeof(double));
        v[k] = calloc(s.n[k], sizeof(double));
        cr_assert(m[k] && v[k]);
    }
    muon_hp h = hp_default;
    clopt_optimizer *o = tu_optimizer(ctx, GROUP_JSON);
    for (int t = 1; t <= 4; t++) {
        double *g[SET_MAX];
        set_step(ctx, o, &s, t, g);
        for (int k = 0; k < nv; k++) {
            if (!skips(k, t))
                ref_step(&h, s.adamw[k], (int)s.shape[k][0], (int)s.shape[k][1], s.n[k], t, g[k],
                         w[k], m[k], v[k]);
            char what[96];
            snprintf(what, sizeof what, "step %d: %s (%lld x %lld)", t,
                     clopt_variable_name(s.vars[k]), (long long)s.shape[k][0],
                     (long long)s.shape[k][1]);
            tu_assert_var_close(s.vars[k], w[k], 1e-10, 1e-12, what);
            free(g[k]);
        }
    }
    for (int k = 0; k < nv; k++) free(w[k]), free(m[k]), free(v[k]);
    clopt_context_destroy(ctx);
}

/* Members 1 and 4 of the 6x10 group (variables 1 and 9) and one 20x7 member skip step 2. */
static int group_skips(int k, int t) { return t == 2 && (k == 1 || k == 9 || k == 10); }

static void grouped_reference(const char *dev) {
    set_reference(dev, 7, GN, group_shape, 1000, group_skips);
}
Test(muon_host, grouped_reference) { grouped_reference(TU_HOST); }
Test(muon_pocl, grouped_reference) {
    POCL_NEEDS_CLBLAST();
    grouped_reference(TU_POCL);
}

/* float32: host against pocl (test_util.h's tolerances), and on pocl the batched step against
 * the per-variable computation: each variable alone in an optimizer of its own (a group of one:
 * its products are single, unbatched ones, as every product was before batching). */
Test(muon_pocl, grouped_agrees_with_host_and_per_variable) {
    POCL_NEEDS_CLBLAST();
    clopt_context *ctx[2] = {tu_context(TU_HOST), tu_context(TU_POCL)};
    mu_set s[2], single;
    clopt_optimizer *o[2], *one[GN];
    for (int c = 0; c < 2; c++) {
        set_make(ctx[c], CLOPT_FLOAT32, 11, GN, group_shape, 1000, group_skips, &s[c], NULL);
        o[c] = tu_optimizer(ctx[c], GROUP_JSON);
    }
    set_make(ctx[1], CLOPT_FLOAT32, 11, GN, group_shape, 1000, group_skips, &single, NULL);
    for (int k = 0; k < GN; k++) one[k] = tu_optimizer(ctx[1], GROUP_JSON);
    size_t differ = 0, total = 0;
    for (int t = 1; t <= 4; t++) {
        for (int c = 0; c < 2; c++) set_step(ctx[c], o[c], &s[c], t, NULL);
        set_grads(&single, t, NULL);
        for (int k = 0; k < GN; k++)
            if (!group_skips(k, t))
                TU_OK(ctx[1], clopt_optimizer_apply(one[k], &single.grads[k], &single.vars[k], 1));
        for (int k = 0; k < GN; k++) {
            char what[96];
            snprintf(what, sizeof what, "step %d: %s (pocl vs host)", t,
                     clopt_variable_name(s[1].vars[k]));
            tu_assert_vars_close(s[1].vars[k], s[0].vars[k], what);
            snprintf(what, sizeof what, "step %d: %s (batched vs alone)", t,
                     clopt_variable_name(s[1].vars[k]));
            tu_assert_vars_close(s[1].vars[k], single.vars[k], what);
            double *a = tu_read_f64(s[1].vars[k]), *b = tu_read_f64(single.vars[k]);
            for (size_t i = 0; i < s[1].n[k]; i++) differ += a[i] != b[i];
            total += s[1].n[k];
            free(a), free(b);
        }
    }
    cr_log_info("Muon on pocl, batched vs per-variable products: %zu of %zu float32 values "
                "differ (within tolerance)",
                differ, total);
    clopt_context_destroy(ctx[0]);
    clopt_context_destroy(ctx[1]);
}

/* ---- launches per step (launch_count.h) ----
 * A step over one plan launch with Muon-path variables of G shape groups takes
 * 5 + ns_steps*(2 + 3G) launches (muon.c): 15 + 15G with the default ns_steps 5, whatever the
 * number of variables. */
#include "launch_count.h"

/* The launches of one step (the second) of `nsame` 8x12 float32 matrices, one 12x8 and one 5x5
 * when `others`, and a 1-D AdamW-path variable; ns_steps 3 in the config when `ns3`; with
 * `gaps`, that step has no gradient for every third variable. */
static size_t step_launches_gaps(const char *dev, int nsame, int others, int ns3, int gaps) {
    clopt_context *ctx = tu_context(dev);
    count_launches(ctx);
    const int n = nsame + (others ? 2 : 0) + 1;
    clopt_variable **v = calloc((size_t)n, sizeof *v), **g = calloc((size_t)n, sizeof *g);
    cr_assert(v && g);
    const int64_t s812[2] = {8, 12}, s128[2] = {12, 8}, s55[2] = {5, 5}, s7 = 7;
    int k = 0;
    for (; k < nsame; k++) {
        v[k] = tu_var(ctx, "dense/kernel", CLOPT_FLOAT32, 2, s812, NULL);
        g[k] = tu_var(ctx, "g", CLOPT_FLOAT32, 2, s812, NULL);
        if (others && k == nsame / 2) { /* the other shapes in between */
            v[++k] = tu_var(ctx, "t/kernel", CLOPT_FLOAT32, 2, s128, NULL);
            g[k] = tu_var(ctx, "g", CLOPT_FLOAT32, 2, s128, NULL);
            v[++k] = tu_var(ctx, "sq/kernel", CLOPT_FLOAT32, 2, s55, NULL);
            g[k] = tu_var(ctx, "g", CLOPT_FLOAT32, 2, s55, NULL);
            nsame += 2;
        }
    }
    v[k] = tu_var(ctx, "dense/bias", CLOPT_FLOAT32, 1, &s7, NULL);
    g[k] = tu_var(ctx, "g", CLOPT_FLOAT32, 1, &s7, NULL);
    clopt_optimizer *o = tu_optimizer(
        ctx, ns3 ? "{\"class_name\": \"Muon\", \"config\": {\"ns_steps\": 3}}"
                 : "{\"class_name\": \"Muon\", \"config\": {}}");
    TU_OK(ctx, clopt_optimizer_apply(o, g, v, (size_t)n));
    for (int i = 1; gaps && i < n - 1; i += 3) g[i] = NULL;
    nlaunch = 0;
    TU_OK(ctx, clopt_optimizer_apply(o, g, v, (size_t)n));
    const size_t got = nlaunch;
    free(v), free(g);
    clopt_context_destroy(ctx);
    return got;
}
static size_t step_launches(const char *dev, int nsame, int others, int ns3) {
    return step_launches_gaps(dev, nsame, others, ns3, 0);
}

static void launches_constant(const char *dev) {
    /* one group: 15 + 15 = 30 with ns_steps 5, 5 + 3*5 = 20 with 3 */
    cr_assert_eq(step_launches(dev, 1, 0, 0), 30);
    cr_assert_eq(step_launches(dev, 3, 0, 0), 30);
    cr_assert_eq(step_launches(dev, 40, 0, 0), 30);
    cr_assert_eq(step_launches(dev, 40, 0, 1), 20);
    /* three groups (the 8x12 members are split by the others in the built list, still one
     * group): 15 + 45 = 60 */
    cr_assert_eq(step_launches(dev, 4, 1, 0), 60);
    cr_assert_eq(step_launches(dev, 40, 1, 0), 60);
    /* gradients missing inside the groups (every third variable: 13 of the 40 8x12, and the
     * 5x5, whose group then has none): still one batched product per group with a gradient and
     * product, 30 and 15 + 2*15 */
    cr_assert_eq(step_launches_gaps(dev, 40, 0, 0, 1), 30);
    cr_assert_eq(step_launches_gaps(dev, 40, 1, 0, 1), 45);
}
Test(muon_host, launches_per_step_are_constant) { launches_constant(TU_HOST); }
Test(muon_pocl, launches_per_step_are_constant) {
    POCL_NEEDS_CLBLAST();
    launches_constant(TU_POCL);
}

/* ---- mixed dtypes ----
 * Equal shapes in four dtypes: float32, float16 and bfloat16 variables share the float32 scratch
 * (one header, separate groups: one per dtype, each in its own plan launch), float64 has its own.
 * Three 12x20 and one 20x12 per dtype, created interleaved; four steps, host against pocl (the
 * formats' tolerances of optim_half.h: ~8 units in the last place for float16 and bfloat16). */
static void mixed_write(clopt_variable *v, const double *x) {
    const size_t n = (size_t)clopt_variable_size(v), es = clopt_dtype_size(clopt_variable_dtype(v));
    unsigned char *b = malloc(n * es);
    cr_assert(b);
    for (size_t i = 0; i < n; i++) clopt__elem_store(b, clopt_variable_dtype(v), i, x[i]);
    TU_OK(clopt_variable_context(v), clopt_variable_write(v, b, n * es));
    free(b);
}
static double *mixed_read(const clopt_variable *v) {
    const size_t n = (size_t)clopt_variable_size(v), es = clopt_dtype_size(clopt_variable_dtype(v));
    unsigned char *b = malloc(n * es);
    double *x = malloc(n * sizeof *x);
    cr_assert(b && x);
    TU_OK(clopt_variable_context(v), clopt_variable_read(v, b, n * es));
    for (size_t i = 0; i < n; i++) x[i] = clopt__elem_load(b, clopt_variable_dtype(v), i);
    free(b);
    return x;
}
Test(muon_pocl, mixed_dtypes_agree_with_host) {
    POCL_NEEDS_CLBLAST();
    enum { ND = 4, PER = 4, NV = ND * PER };
    static const clopt_dtype dts[ND] = {CLOPT_FLOAT32, CLOPT_FLOAT16, CLOPT_BFLOAT16,
                                        CLOPT_FLOAT64};
    static const double tol[ND] = {1e-5, 4e-3, 3e-2, 1e-12};
    const int64_t wide[2] = {12, 20}, tall[2] = {20, 12};
    clopt_context *ctx[2] = {tu_context(TU_HOST), tu_context(TU_POCL)};
    clopt_variable *v[2][NV], *g[2][NV];
    clopt_optimizer *o[2];
    double x[240];
    uint64_t rng = 21;
    for (int k = 0; k < NV; k++) { /* k = member * ND + dtype: the dtypes interleaved */
        const int d = k % ND;
        tu_rand_fill(&rng, x, 240, -1, 1);
        for (int s = 0; s < 2; s++) {
            const int64_t *shape = k / ND == 2 ? tall : wide;
            v[s][k] = tu_var(ctx[s], "dense/kernel", dts[d], 2, shape, NULL);
            g[s][k] = tu_var(ctx[s], "g", dts[d], 2, shape, NULL);
            mixed_write(v[s][k], x);
        }
    }
    for (int s = 0; s < 2; s++)
        o[s] = tu_optimizer(ctx[s], "{\"class_name\": \"Muon\", \"config\": {\"learning_rate\": "
                                    "0.02}}");
    for (int t = 0; t < 4; t++) {
        for (int k = 0; k < NV; k++) {
            tu_rand_fill(&rng, x, 240, -1, 1);
            for (int s = 0; s < 2; s++) mixed_write(g[s][k], x);
        }
        for (int s = 0; s < 2; s++) TU_OK(ctx[s], clopt_optimizer_apply(o[s], g[s], v[s], NV));
        for (int k = 0; k < NV; k++) {
            double *h = mixed_read(v[0][k]), *c = mixed_read(v[1][k]);
            char what[96];
            snprintf(what, sizeof what, "step %d: variable %d (%s)", t, k,
                     clopt_dtype_name(dts[k % ND]));
            tu_assert_close(c, h, 240, tol[k % ND], tol[k % ND], what);
            free(h), free(c);
        }
    }
    clopt_context_destroy(ctx[0]);
    clopt_context_destroy(ctx[1]);
}

/* ---- a shape group over several arena blocks ----
 * With 1 MiB arena blocks, 30 float64 matrices of 64 x 96 and their gradients (48 KiB each) fill
 * several blocks, so the group's members fall into several plan launches (each runs its own
 * batched products over its run of members; the launch count of step 3 shows it: a multiple of
 * 30 above 30). Three steps against the double reference, a gradient missing inside a run at step 2. */
static void split_group(const char *dev) {
    enum { NS = 30 };
    clopt_context *ctx = tu_context(dev);
    ctx->block_bytes = (size_t)1 << 20;
    count_launches(ctx);
    const int64_t shape[2] = {64, 96};
    const size_t n = 64 * 96;
    clopt_variable *v[NS], *g[NS];
    double *w[NS], *m[NS], *vv[NS], *gr = malloc(n * sizeof *gr);
    cr_assert(gr);
    uint64_t rng = 5;
    for (int k = 0; k < NS; k++) {
        w[k] = malloc(n * sizeof(double));
        m[k] = calloc(n, sizeof(double));
        vv[k] = calloc(n, sizeof(double));
        cr_assert(w[k] && m[k] && vv[k]);
        tu_rand_fill(&rng, w[k], n, -1, 1);
        v[k] = tu_var(ctx, "dense/kernel", CLOPT_FLOAT64, 2, shape, w[k]);
        g[k] = tu_var(ctx, "g", CLOPT_FLOAT64, 2, shape, NULL);
    }
    muon_hp h = hp_default;
    clopt_optimizer *o = tu_optimizer(ctx, GROUP_JSON);
    for (int t = 1; t <= 3; t++) {
        clopt_variable *pass[NS];
        for (int k = 0; k < NS; k++) {
            tu_rand_fill(&rng, gr, n, -1, 1);
            tu_write_f64(g[k], gr);
            pass[k] = t == 2 && k == 4 ? NULL : g[k];
            if (pass[k]) ref_step(&h, 0, 64, 96, n, t, gr, w[k], m[k], vv[k]);
        }
        nlaunch = 0;
        TU_OK(ctx, clopt_optimizer_apply(o, pass, v, NS));
        if (t == 3) /* step 1 also builds (and warms), step 2 skips a gradient */
            cr_assert(nlaunch > 30 && nlaunch % 30 == 0,
                      "step %d: %zu launches, want 30 per plan launch and several of them", t,
                      nlaunch);
        for (int k = 0; k < NS; k++) {
            char what[64];
            snprintf(what, sizeof what, "step %d: variable %d", t, k);
            tu_assert_var_close(v[k], w[k], 1e-10, 1e-12, what);
        }
    }
    for (int k = 0; k < NS; k++) free(w[k]), free(m[k]), free(vv[k]);
    free(gr);
    clopt_context_destroy(ctx);
}
Test(muon_host, group_over_several_arena_blocks) { split_group(TU_HOST); }
Test(muon_pocl, group_over_several_arena_blocks) {
    POCL_NEEDS_CLBLAST();
    split_group(TU_POCL);
}

/* ---- more distinct shapes than MU_S_MAX (8) groups: merged groups, zero padding ----
 * With more than 8 distinct (dtype, rows, cols) shapes among the Muon-path variables of a dtype,
 * muon.c merges shape groups (greedily, least padded work first) down to 8, each merged group's
 * matrices zero-padded to its largest oriented min x max; the launches of a step stay
 * 5 + ns_steps*(2 + 3*8) per plan launch however many shapes. Here: 20 shapes, tall, wide and
 * square (1 x 12 and 12 x 1 among them: equal once oriented), 4 of them with a second member,
 * and two AdamW-path variables. */
#define MS_SHAPES 20
#define MS_N (MS_SHAPES + 4 + 2)
static const int64_t ms_shapes[MS_SHAPES][2] = {
    {3, 5},  {8, 4},  {17, 33}, {40, 9},  {1, 12}, {12, 1}, {6, 6},  {30, 31}, {31, 30}, {2, 50},
    {50, 3}, {7, 13}, {13, 7},  {20, 20}, {9, 64}, {64, 10}, {5, 5}, {11, 2},  {4, 27},  {25, 16}};

/* Variable k: shapes 0..19, then second members of shapes 3, 8, 14 and 17, then a 1-D bias and
 * an embedding (AdamW path). */
static void ms_shape(int k, int64_t shape[2], int *adamw, const char **kind) {
    static const int again[4] = {3, 8, 14, 17};
    *kind = "kernel", *adamw = 0;
    if (k < MS_SHAPES) {
        memcpy(shape, ms_shapes[k], 2 * sizeof *shape);
    } else if (k < MS_SHAPES + 4) {
        memcpy(shape, ms_shapes[again[k - MS_SHAPES]], 2 * sizeof *shape);
    } else if (k == MS_SHAPES + 4) {
        shape[0] = 19, shape[1] = 0, *adamw = 1, *kind = "bias";
    } else {
        shape[0] = 10, shape[1] = 4, *adamw = 1, *kind = "embedding";
    }
}

/* At step 2 the first 30 x 31 member and the 9 x 64 second member have no gradient. */
static int ms_skips(int k, int t) { return t == 2 && (k == 7 || k == MS_SHAPES + 2); }

/* float64 against the double reference (ref_step), four steps: the padded products give the
 * unpadded iteration's results up to the summation order. */
static void many_shapes_reference(const char *dev) {
    set_reference(dev, 17, MS_N, ms_shape, 2000, ms_skips);
}
Test(muon_host, many_shapes_reference) { many_shapes_reference(TU_HOST); }
Test(muon_pocl, many_shapes_reference) {
    POCL_NEEDS_CLBLAST();
    many_shapes_reference(TU_POCL);
}

/* float32, host against pocl (test_util.h's tolerances), variables and slots, four steps. */
Test(muon_pocl, many_shapes_agree_with_host) {
    POCL_NEEDS_CLBLAST();
    clopt_context *ctx[2] = {tu_context(TU_HOST), tu_context(TU_POCL)};
    mu_set s[2];
    clopt_optimizer *o[2];
    for (int c = 0; c < 2; c++) {
        set_make(ctx[c], CLOPT_FLOAT32, 23, MS_N, ms_shape, 2000, ms_skips, &s[c], NULL);
        o[c] = tu_optimizer(ctx[c], GROUP_JSON);
    }
    for (int t = 1; t <= 4; t++) {
        for (int c = 0; c < 2; c++) set_step(ctx[c], o[c], &s[c], t, NULL);
        for (int k = 0; k < MS_N; k++) {
            char what[96];
            snprintf(what, sizeof what, "step %d: %s", t, clopt_variable_name(s[1].vars[k]));
            tu_assert_vars_close(s[1].vars[k], s[0].vars[k], what);
        }
        const size_t nv = clopt_optimizer_variable_count(o[0]);
        cr_assert_eq(clopt_optimizer_variable_count(o[1]), nv);
        for (size_t i = 0; i < nv; i++) {
            const char *name;
            clopt_variable *a, *b;
            TU_OK(ctx[0], clopt_optimizer_variable(o[0], i, &name, NULL, &a));
            TU_OK(ctx[1], clopt_optimizer_variable(o[1], i, NULL, NULL, &b));
            if (a) tu_assert_vars_close(b, a, name);
        }
    }
    clopt_context_destroy(ctx[0]);
    clopt_context_destroy(ctx[1]);
}

/* The launches of one step (the second) of `nshapes` distinct shapes of float32 matrices (shape
 * k: (3 + k/2) x (5 + k) for even k, its transpose-like (5 + k) x (3 + k/2) for odd k), each with
 * `per` members (created round-robin), plus a 1-D AdamW-path variable; with `f64`, the same
 * again in float64 (a second plan launch, grouped separately). */
static size_t shapes_launches(const char *dev, int nshapes, int per, int f64, int ns3) {
    clopt_context *ctx = tu_context(dev);
    count_launches(ctx);
    const int nd = f64 ? 2 : 1, n = nd * nshapes * per + 1;
    clopt_variable **v = calloc((size_t)n, sizeof *v), **g = calloc((size_t)n, sizeof *g);
    cr_assert(v && g);
    int k = 0;
    for (int d = 0; d < nd; d++)
        for (int r = 0; r < per; r++)
            for (int j = 0; j < nshapes; j++, k++) {
                const int64_t a = 3 + j / 2, b = 5 + j;
                const int64_t shape[2] = {j % 2 ? b : a, j % 2 ? a : b};
                const clopt_dtype dt = d ? CLOPT_FLOAT64 : CLOPT_FLOAT32;
                v[k] = tu_var(ctx, "dense/kernel", dt, 2, shape, NULL);
                g[k] = tu_var(ctx, "g", dt, 2, shape, NULL);
            }
    const int64_t s7 = 7;
    v[k] = tu_var(ctx, "dense/bias", CLOPT_FLOAT32, 1, &s7, NULL);
    g[k] = tu_var(ctx, "g", CLOPT_FLOAT32, 1, &s7, NULL);
    clopt_optimizer *o = tu_optimizer(
        ctx, ns3 ? "{\"class_name\": \"Muon\", \"config\": {\"ns_steps\": 3}}"
                 : "{\"class_name\": \"Muon\", \"config\": {}}");
    TU_OK(ctx, clopt_optimizer_apply(o, g, v, (size_t)n));
    nlaunch = 0;
    TU_OK(ctx, clopt_optimizer_apply(o, g, v, (size_t)n));
    const size_t got = nlaunch;
    free(v), free(g);
    clopt_context_destroy(ctx);
    return got;
}

static void launches_bounded(const char *dev) {
    /* S <= 8 distinct shapes: 5 + 5*(2 + 3S), as before */
    cr_assert_eq(step_launches(dev, 4, 1, 0), 60);
    cr_assert_eq(shapes_launches(dev, 7, 1, 0, 0), 5 + 5 * (2 + 3 * 7));
    cr_assert_eq(shapes_launches(dev, 8, 1, 0, 0), 5 + 5 * (2 + 3 * 8));
    /* more: merged down to 8 groups, 135 with ns_steps 5, 83 with 3, whatever the shapes */
    cr_assert_eq(shapes_launches(dev, 9, 1, 0, 0), 135);
    cr_assert_eq(shapes_launches(dev, 20, 1, 0, 0), 135);
    cr_assert_eq(shapes_launches(dev, 20, 3, 0, 0), 135);
    cr_assert_eq(shapes_launches(dev, 60, 1, 0, 0), 135);
    cr_assert_eq(shapes_launches(dev, 20, 1, 0, 1), 83);
    /* float32 and float64: two plan launches, each at most 8 groups of its own dtype */
    cr_assert_eq(shapes_launches(dev, 20, 1, 1, 0), 2 * 135);
}
Test(muon_host, launches_bounded_by_shape_groups) { launches_bounded(TU_HOST); }
Test(muon_pocl, launches_bounded_by_shape_groups) {
    POCL_NEEDS_CLBLAST();
    launches_bounded(TU_POCL);
}

/* A square matrix merged into a group stored tall: 9 shapes, of which 4 x 4 and the two 60 x 4
 * members make the cheapest merge (the squares 12 .. 60 cost more to merge with anything), so
 * the 4 x 4 is stored transposed in a 60 x 4 (oriented 4 x 60) group. float64, three steps
 * against the double reference. */
static void square_in_tall_group(const char *dev) {
    enum { NQ = 10 };
    static const int64_t shapes[NQ][2] = {{60, 4},  {4, 4},   {12, 12}, {20, 20}, {28, 28},
                                          {36, 36}, {44, 44}, {52, 52}, {60, 60}, {60, 4}};
    clopt_context *ctx = tu_context(dev);
    count_launches(ctx);
    clopt_variable *v[NQ], *g[NQ];
    double *w[NQ], *m[NQ], *vv[NQ];
    uint64_t rng = 31;
    for (int k = 0; k < NQ; k++) {
        const size_t n = (size_t)(shapes[k][0] * shapes[k][1]);
        w[k] = malloc(n * sizeof(double));
        m[k] = calloc(n, sizeof(double));
        vv[k] = calloc(n, sizeof(double));
        cr_assert(w[k] && m[k] && vv[k]);
        tu_rand_fill(&rng, w[k], n, -1, 1);
        v[k] = tu_var(ctx, "dense/kernel", CLOPT_FLOAT64, 2, shapes[k], w[k]);
        g[k] = tu_var(ctx, "g", CLOPT_FLOAT64, 2, shapes[k], NULL);
    }
    muon_hp h = hp_default;
    clopt_optimizer *o = tu_optimizer(ctx, GROUP_JSON);
    for (int t = 1; t <= 3; t++) {
        for (int k = 0; k < NQ; k++) {
            const size_t n = (size_t)(shapes[k][0] * shapes[k][1]);
            double *gr = malloc(n * sizeof *gr);
            cr_assert(gr);
            tu_rand_fill(&rng, gr, n, -1, 1);
            tu_write_f64(g[k], gr);
            ref_step(&h, 0, (int)shapes[k][0], (int)shapes[k][1], n, t, gr, w[k], m[k], vv[k]);
            free(gr);
        }
        nlaunch = 0;
        TU_OK(ctx, clopt_optimizer_apply(o, g, v, NQ));
        if (t > 1) cr_assert_eq(nlaunch, 135, "step %d: %zu launches", t, nlaunch);
        for (int k = 0; k < NQ; k++) {
            char what[64];
            snprintf(what, sizeof what, "step %d: variable %d", t, k);
            tu_assert_var_close(v[k], w[k], 1e-10, 1e-12, what);
        }
    }
    for (int k = 0; k < NQ; k++) free(w[k]), free(m[k]), free(vv[k]);
    clopt_context_destroy(ctx);
}
Test(muon_host, square_in_tall_group) { square_in_tall_group(TU_HOST); }
Test(muon_pocl, square_in_tall_group) {
    POCL_NEEDS_CLBLAST();
    square_in_tall_group(TU_POCL);
}
