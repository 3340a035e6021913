/* Adafactor: Keras's published numbers (1-D and 2-D), the factored update against an independent
 * double reference (rank 0, 1, 2 and 3 variables; long rows, one-row and one-column matrices,
 * multi-chunk variables, missing gradients and a growing plan, weight decay before RMS(w),
 * a schedule, non-default hyperparameters), host versus OpenCL over every apply-pipeline option,
 * Keras's variable list (r and c views of their own shapes, integer placeholders for rank < 2),
 * a checkpoint round trip, bad hyperparameters and config.
 *
 * Keras's numbers: keras-team/keras keras/src/optimizers/adafactor_test.py (Keras 3):
 * test_single_step_1d, test_single_step_2d, test_correctness_with_golden and test_weight_decay,
 * with that file's tolerances (test_util.h). */
#include <unistd.h>
#include "optim_more.h"
#include "optim_varlist.h"
#include "optim_half.h"

#define CLS "Adafactor"

static const double single_step_1d[4] = {-0.3693, 0.6307, 1.6307, 2.6307};
static const double single_step_2d[4] = {0.7007, -0.0081, 1.2492, 3.4407};
#define SINGLE_STEP_JSON "{\"class_name\": \"Adafactor\", \"config\": {\"learning_rate\": 0.5}}"

static const double golden[5][10] = {
    {0.55, 0.55, 0.55, 0.55, 0.55, 0.55, 0.55, 0.55, 0.55, 0.55},
    {0.3031, 0.3026, 0.3025, 0.3024, 0.3024, 0.3024, 0.3024, 0.3024, 0.3024, 0.3024},
    {0.1671, 0.1665, 0.1663, 0.1663, 0.1663, 0.1663, 0.1663, 0.1663, 0.1663, 0.1663},
    {0.0923, 0.0916, 0.0915, 0.0914, 0.0914, 0.0914, 0.0914, 0.0914, 0.0914, 0.0914},
    {0.0554, 0.0548, 0.0546, 0.0546, 0.0546, 0.0546, 0.0546, 0.0545, 0.0545, 0.0545}};
#define GOLDEN_JSON                                                                             \
    "{\"class_name\": \"Adafactor\", \"config\": {\"learning_rate\": 0.5, \"beta_2_decay\": "   \
    "-0.65, \"epsilon_1\": 1e-15, \"epsilon_2\": 0.0001, \"clip_threshold\": 0.9, "              \
    "\"relative_step\": false}}"

/* Keras's test_single_step_2d: [[1, 2], [3, 4]] with gradient [[1, 6], [7, 2]]. */
static void keras_single_step_2d(const char *dev, clopt_dtype dtype) {
    clopt_context *ctx = tu_context(dev);
    const int64_t shape[2] = {2, 2};
    const double w0[4] = {1, 2, 3, 4}, g0[4] = {1, 6, 7, 2};
    clopt_variable *w = tu_var_from_f64(ctx, "vars", dtype, 2, shape, w0);
    clopt_variable *g = tu_var_from_f64(ctx, "grads", dtype, 2, shape, g0);
    clopt_optimizer *o = tu_optimizer(ctx, SINGLE_STEP_JSON);
    TU_OK(ctx, clopt_optimizer_apply(o, &g, &w, 1));
    tu_assert_var_close(w, single_step_2d, TU_KERAS_TOL_SINGLE_STEP, TU_KERAS_TOL_SINGLE_STEP,
                        "single step 2d");
    clopt_context_destroy(ctx);
}

Test(adafactor_host, keras_single_step_1d) {
    om_keras_single_step_f32_f64(TU_HOST, SINGLE_STEP_JSON, single_step_1d);
}
Test(adafactor_pocl, keras_single_step_1d) {
    om_keras_single_step_f32_f64(TU_POCL, SINGLE_STEP_JSON, single_step_1d);
}
Test(adafactor_host, keras_single_step_2d) {
    keras_single_step_2d(TU_HOST, CLOPT_FLOAT32);
    keras_single_step_2d(TU_HOST, CLOPT_FLOAT64);
}
Test(adafactor_pocl, keras_single_step_2d) {
    keras_single_step_2d(TU_POCL, CLOPT_FLOAT32);
    keras_single_step_2d(TU_POCL, CLOPT_FLOAT64);
}
Test(adafactor_host, keras_golden) {
    om_keras_golden_f32_f64(TU_HOST, GOLDEN_JSON, golden);
}
Test(adafactor_pocl, keras_golden) {
    om_keras_golden_f32_f64(TU_POCL, GOLDEN_JSON, golden);
}
Test(adafactor_host, keras_weight_decay) { om_keras_weight_decay(TU_HOST, CLS); }
Test(adafactor_pocl, keras_weight_decay) { om_keras_weight_decay(TU_POCL, CLS); }

/* ---- the update rule (semantics doc section 3), ported independently, per variable ---- */

#define NV 12
typedef struct ref_var {
    const char *name;
    int ndim;
    int64_t shape[3];
} ref_var;

/* Scalar, vectors (one of 16 chunks), matrices with short rows (one row per work-item), long rows
 * (one row per work-group), one row, one column, rank-3 tensors (one with a single long row per
 * batch), blocks of long rows with column partials (adafactor.c's rows_per_block: 8 rows of
 * 2048 per block, the last block of each batch one or eight rows), and a matrix whose gradient
 * is missing at some steps (last). */
static const ref_var ref_vars[NV] = {
    {"s", 0, {0}},           {"v300", 1, {300}},      {"v4096", 1, {4096}},
    {"m17x33", 2, {17, 33}}, {"m3x300", 2, {3, 300}}, {"t2x3x5", 3, {2, 3, 5}},
    {"t2x1x260", 3, {2, 1, 260}}, {"m7x1", 2, {7, 1}}, {"m1x9", 2, {1, 9}},
    {"m33x2048", 2, {33, 2048}}, {"t2x40x2048", 3, {2, 40, 2048}},
    {"nograd", 2, {4, 3}},
};

typedef struct ref_cfg {
    double lr;            /* float learning rate (0: the schedule below) */
    double decay, eps1, eps2, clip;
    int relative_step;
    double wd;            /* weight_decay, 0: none */
} ref_cfg;

static size_t var_size(const ref_var *v) {
    size_t n = 1;
    for (int d = 0; d < v->ndim; d++) n *= (size_t)v->shape[d];
    return n;
}

typedef struct ref_state {
    double *w, *r, *c, *v; /* r and c only for rank >= 2 */
    size_t n, nb, nr, nc;  /* elements, batches, rows, columns */
} ref_state;

static double rms(const double *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += x[i] * x[i];
    return sqrt(s / (double)n);
}

/* One step of one variable: Keras's update_step after the decoupled decay. */
static void ref_step(const ref_cfg *cfg, double lr, int schedule, ref_state *st, int64_t t,
                     const double *g) {
    const size_t n = st->n;
    for (size_t i = 0; i < n; i++) st->w[i] -= st->w[i] * cfg->wd * lr;
    double lr_t = lr;
    if (!schedule && cfg->relative_step) lr_t = fmin(lr_t, 1 / sqrt((double)t));
    const double rho = fmin(lr_t, 1 / sqrt((double)t));
    const double alpha = fmax(cfg->eps2, rms(st->w, n)) * rho;
    const double b2t = 1 - pow((double)t, cfg->decay);
    double *G = malloc(n * sizeof *G), *u = malloc(n * sizeof *u);
    cr_assert(G && u);
    for (size_t i = 0; i < n; i++) G[i] = g[i] * g[i] + cfg->eps1;
    if (st->r) {
        const size_t B = st->nb, R = st->nr, C = st->nc;
        for (size_t b = 0; b < B; b++) {
            for (size_t i = 0; i < R; i++) {
                double m = 0;
                for (size_t j = 0; j < C; j++) m += G[(b * R + i) * C + j];
                st->r[b * R + i] = b2t * st->r[b * R + i] + (1 - b2t) * (m / (double)C);
            }
            for (size_t j = 0; j < C; j++) {
                double m = 0;
                for (size_t i = 0; i < R; i++) m += G[(b * R + i) * C + j];
                st->c[b * C + j] = b2t * st->c[b * C + j] + (1 - b2t) * (m / (double)R);
            }
            double rm = 0;
            for (size_t i = 0; i < R; i++) rm += st->r[b * R + i];
            rm /= (double)R;
            for (size_t i = 0; i < R; i++)
                for (size_t j = 0; j < C; j++)
                    st->v[(b * R + i) * C + j] = st->r[b * R + i] / rm * st->c[b * C + j];
        }
    } else {
        for (size_t i = 0; i < n; i++) st->v[i] = b2t * st->v[i] + (1 - b2t) * G[i];
    }
    for (size_t i = 0; i < n; i++) u[i] = g[i] / sqrt(st->v[i]);
    const double d = fmax(1.0, rms(u, n) / cfg->clip);
    for (size_t i = 0; i < n; i++) st->w[i] -= alpha * (u[i] / d);
    free(G);
    free(u);
}

/* The optimizer variable entries of variable k: r, c, velocity (Keras's order). */
static void check_slots(clopt_context *ctx, const clopt_optimizer *o, int k, const ref_state *st,
                        const char *what) {
    /* After iteration and, for a float learning rate, learning_rate. */
    size_t nbase = 0;
    while (nbase < 2) {
        const char *name;
        TU_OK(ctx, clopt_optimizer_variable(o, nbase, &name, NULL, NULL));
        if (strcmp(name, "iteration") != 0 && strcmp(name, "learning_rate") != 0) break;
        nbase++;
    }
    const size_t first = nbase + 3 * (size_t)k;
    char msg[128];
    for (int j = 0; j < 3; j++) {
        clopt_variable *v;
        const char *name;
        TU_OK(ctx, clopt_optimizer_variable(o, first + (size_t)j, &name, NULL, &v));
        snprintf(msg, sizeof msg, "%s: %s slot %d (%s)", what, ref_vars[k].name, j, name);
        if (j < 2 && !st->r) { /* a placeholder: a host integer 0 */
            cr_assert(v == NULL, "%s: a placeholder has device storage", msg);
            double x = -1;
            TU_OK(ctx, clopt_optimizer_variable_read(o, first + (size_t)j, &x, 1));
            cr_assert(x == 0, "%s: placeholder is %g", msg, x);
            continue;
        }
        const double *want = j == 0 ? st->r : j == 1 ? st->c : st->v;
        tu_assert_var_close(v, want, 1e-10, 1e-13, msg);
    }
}

#define SCHEDULE_JSON                                                                          \
    "{\"class_name\": \"ExponentialDecay\", \"config\": {\"initial_learning_rate\": 0.9, "     \
    "\"decay_steps\": 2, \"decay_rate\": 0.5}}"

/* Seven float64 steps over the NV variables, every variable and slot checked after each. */
static void reference(const char *dev, const ref_cfg *cfg, const char *extra) {
    clopt_context *ctx = tu_context(dev);
    char json[1024], lr[256];
    if (cfg->lr > 0) snprintf(lr, sizeof lr, "%.17g", cfg->lr);
    else snprintf(lr, sizeof lr, "%s", SCHEDULE_JSON);
    snprintf(json, sizeof json,
             "{\"class_name\": \"Adafactor\", \"config\": {\"learning_rate\": %s, "
             "\"beta_2_decay\": %.17g, \"epsilon_1\": %.17g, \"epsilon_2\": %.17g, "
             "\"clip_threshold\": %.17g, \"relative_step\": %s%s%s}}",
             lr, cfg->decay, cfg->eps1, cfg->eps2, cfg->clip,
             cfg->relative_step ? "true" : "false",
             cfg->wd != 0 ? ", \"weight_decay\": 0.1" : "", extra);
    cr_assert(cfg->wd == 0 || cfg->wd == 0.1);
    uint64_t rng = 99;
    ref_state st[NV];
    clopt_variable *vars[NV], *grads[NV];
    double *g[NV];
    for (int k = 0; k < NV; k++) {
        const ref_var *rv = &ref_vars[k];
        ref_state *s = &st[k];
        memset(s, 0, sizeof *s);
        s->n = var_size(rv);
        s->w = malloc(s->n * sizeof(double));
        s->v = calloc(s->n, sizeof(double));
        g[k] = malloc(s->n * sizeof(double));
        cr_assert(s->w && s->v && g[k]);
        if (rv->ndim >= 2) {
            s->nb = 1;
            for (int d = 0; d < rv->ndim - 2; d++) s->nb *= (size_t)rv->shape[d];
            s->nr = (size_t)rv->shape[rv->ndim - 2];
            s->nc = (size_t)rv->shape[rv->ndim - 1];
            s->r = calloc(s->nb * s->nr, sizeof(double));
            s->c = calloc(s->nb * s->nc, sizeof(double));
            cr_assert(s->r && s->c);
        }
        tu_rand_fill(&rng, s->w, s->n, -1, 1);
        vars[k] = tu_var(ctx, rv->name, CLOPT_FLOAT64, rv->ndim, rv->shape, s->w);
        grads[k] = tu_var(ctx, "g", CLOPT_FLOAT64, rv->ndim, rv->shape, NULL);
    }
    clopt_optimizer *o = tu_optimizer(ctx, json);
    for (int t = 1; t <= 7; t++) {
        double lr_now;
        TU_OK(ctx, clopt_optimizer_get_learning_rate(o, &lr_now));
        clopt_variable *pass[NV];
        for (int k = 0; k < NV; k++) {
            tu_rand_fill(&rng, g[k], st[k].n, -1.5, 1.5);
            tu_write_f64(grads[k], g[k]);
            pass[k] = grads[k];
        }
        if (t == 1 || t % 3 == 0) pass[NV - 1] = NULL;
        for (int k = 0; k < NV; k++)
            if (pass[k]) ref_step(cfg, lr_now, cfg->lr == 0, &st[k], t, g[k]);
        TU_OK(ctx, clopt_optimizer_apply(o, pass, vars, NV));
        for (int k = 0; k < NV; k++) {
            char what[96];
            snprintf(what, sizeof what, "%s step %d: %s", dev, t, ref_vars[k].name);
            tu_assert_var_close(vars[k], st[k].w, 1e-10, 1e-13, what);
            check_slots(ctx, o, k, &st[k], what);
        }
    }
    for (int k = 0; k < NV; k++) {
        free(st[k].w), free(st[k].v), free(st[k].r), free(st[k].c), free(g[k]);
    }
    clopt_context_destroy(ctx);
}

/* Keras's defaults with learning rate 0.5 (rho = min(0.5, 1/sqrt(t))). */
static const ref_cfg defaults = {0.5, -0.8, 1e-30, 1e-3, 1.0, 1, 0};
/* The golden test's hyperparameters, a binding clip threshold, and weight decay. */
static const ref_cfg custom = {0.05, -0.65, 1e-15, 1e-4, 0.3, 0, 0.1};
/* A schedule: relative_step does not apply (rho is still capped at 1/sqrt(t)). */
static const ref_cfg scheduled = {0, -0.8, 1e-30, 1e-3, 1.0, 1, 0};

Test(adafactor_host, reference) { reference(TU_HOST, &defaults, ""); }
Test(adafactor_pocl, reference) { reference(TU_POCL, &defaults, ""); }
Test(adafactor_host, reference_custom_with_weight_decay) { reference(TU_HOST, &custom, ""); }
Test(adafactor_pocl, reference_custom_with_weight_decay) { reference(TU_POCL, &custom, ""); }
Test(adafactor_host, reference_schedule) { reference(TU_HOST, &scheduled, ""); }
Test(adafactor_pocl, reference_schedule) { reference(TU_POCL, &scheduled, ""); }
/* A large clip norm (clipping never binds) runs the sumsq partials on the same plan buffers. */
Test(adafactor_host, reference_with_inactive_clipnorm) {
    reference(TU_HOST, &custom, ", \"clipnorm\": 1e9");
}
Test(adafactor_pocl, reference_with_inactive_clipnorm) {
    reference(TU_POCL, &custom, ", \"clipnorm\": 1e9");
}

/* relative_step changes nothing in Keras (rho is min(lr, 1/sqrt(t)) either way). */
Test(adafactor_host, relative_step_changes_nothing) {
    clopt_context *ctx = tu_context(TU_HOST);
    const int64_t shape[2] = {3, 4};
    double w0[12], g0[12];
    uint64_t rng = 5;
    tu_rand_fill(&rng, w0, 12, -1, 1);
    tu_rand_fill(&rng, g0, 12, -1, 1);
    double *out[2];
    for (int rs = 0; rs < 2; rs++) {
        clopt_variable *w = tu_var(ctx, "w", CLOPT_FLOAT64, 2, shape, w0);
        clopt_variable *g = tu_var(ctx, "g", CLOPT_FLOAT64, 2, shape, g0);
        clopt_optimizer *o = tu_optimizer(
            ctx, rs ? "{\"class_name\": \"Adafactor\", \"config\": {\"learning_rate\": 0.9}}"
                    : "{\"class_name\": \"Adafactor\", \"config\": {\"learning_rate\": 0.9, "
                      "\"relative_step\": false}}");
        for (int t = 0; t < 4; t++) TU_OK(ctx, clopt_optimizer_apply(o, &g, &w, 1));
        out[rs] = tu_read_f64(w);
    }
    tu_assert_close(out[1], out[0], 12, 0, 0, "relative_step true vs false");
    free(out[0]);
    free(out[1]);
    clopt_context_destroy(ctx);
}

/* ---- host versus OpenCL, every pipeline option ---- */

Test(adafactor_pocl, agrees_with_host_float32) {
    om_agree_dtype(TU_POCL, CLOPT_FLOAT32, CLS, "\"learning_rate\": 0.01");
}
Test(adafactor_pocl, agrees_with_host_float64) {
    om_agree_dtype(TU_POCL, CLOPT_FLOAT64, CLS, "\"learning_rate\": 0.01");
}
Test(adafactor_pocl, agrees_with_host_other_values) {
    om_agree_dtype(TU_POCL, CLOPT_FLOAT32, CLS,
                   "\"learning_rate\": 0.3, \"beta_2_decay\": -0.5, \"epsilon_1\": 1e-12, "
                   "\"epsilon_2\": 0.01, \"clip_threshold\": 0.5, \"relative_step\": false");
}

/* float16 and bfloat16 storage (float arithmetic on OpenCL). */
#define HALF_JSON \
    "{\"class_name\": \"Adafactor\", " \
    "\"config\": {\"learning_rate\": 0.05}}"
Test(adafactor_pocl, agrees_with_host_half_formats) {
    oh_agree(TU_POCL, HALF_JSON, CLOPT_FLOAT16);
    oh_agree(TU_POCL, HALF_JSON, CLOPT_BFLOAT16);
}

/* Every dtype and rank in ONE optimizer (the io tests' model is mixed too): float32, float64,
 * float16 and bfloat16 variables of ranks 0 to 3, interleaved so that consecutive variables are
 * of different dtypes, with long rows (row groups), one-row matrices and multi-chunk tensors,
 * and some gradients missing in most steps. Build warms every kernel of every dtype group on
 * scratch memory (a class's info table on a zeroed buffer of its own: the warm-up's data buffer
 * takes the kernels' stores, and read as the table it gave Adafactor's kernels wild indices,
 * a crash on pocl); then host and OpenCL agree on the variables and every optimizer variable
 * after each step. */
#define MIX_NVARS 16
static const clopt_dtype mix_dtypes[4] = {CLOPT_FLOAT32, CLOPT_FLOAT64, CLOPT_FLOAT16,
                                          CLOPT_BFLOAT16};
static const int64_t mix_shapes[4][4][3] = {
    /* rank 0 */ {{0}, {0}, {0}, {0}},
    /* rank 1 */ {{5}, {300}, {6}, {1}},
    /* rank 2 */ {{3, 4}, {7, 2}, {1, 300}, {17, 33}},
    /* rank 3 */ {{2, 3, 5}, {2, 2, 260}, {3, 1, 4}, {2, 5, 3}},
};

static size_t mix_size(int rank, int d) {
    size_t n = 1;
    for (int k = 0; k < rank; k++) n *= (size_t)mix_shapes[rank][d][k];
    return n;
}

static void mix_write(clopt_variable *v, const double *x) {
    const size_t n = (size_t)clopt_variable_size(v);
    unsigned char *b = malloc(n * 8 + 1);
    cr_assert(b);
    for (size_t i = 0; i < n; i++) clopt__elem_store(b, clopt_variable_dtype(v), i, x[i]);
    TU_OK(clopt_variable_context(v),
          clopt_variable_write(v, b, n * clopt_dtype_size(clopt_variable_dtype(v))));
    free(b);
}

static double *mix_read(const clopt_variable *v) {
    const size_t n = (size_t)clopt_variable_size(v);
    unsigned char *b = malloc(n * 8 + 1);
    double *x = malloc(n * sizeof *x + 1);
    cr_assert(b && x);
    TU_OK(clopt_variable_context(v),
          clopt_variable_read(v, b, n * clopt_dtype_size(clopt_variable_dtype(v))));
    for (size_t i = 0; i < n; i++) x[i] = clopt__elem_load(b, clopt_variable_dtype(v), i);
    free(b);
    return x;
}

static double mix_tol(clopt_dtype d) {
    return d == CLOPT_FLOAT64 ? 1e-12 : d == CLOPT_FLOAT32 ? 1e-5 : d == CLOPT_FLOAT16 ? 4e-3
                                                                                        : 3e-2;
}

Test(adafactor_pocl, agrees_with_host_mixed_dtypes_and_ranks) {
    clopt_context *ctx[2] = {tu_context(TU_HOST), tu_context(TU_POCL)};
    clopt_variable *vars[2][MIX_NVARS], *grads[2][MIX_NVARS];
    clopt_optimizer *o[2];
    double x[1100];
    uint64_t rng = 11;
    for (int side = 0; side < 2; side++) {
        rng = 11;
        for (int k = 0; k < MIX_NVARS; k++) {
            const int rank = k / 4, d = k % 4;
            char name[32];
            snprintf(name, sizeof name, "layer%d/w%d", rank, d);
            vars[side][k] = tu_var(ctx[side], name, mix_dtypes[d], rank, mix_shapes[rank][d], NULL);
            grads[side][k] =
                tu_var(ctx[side], "g", mix_dtypes[d], rank, mix_shapes[rank][d], NULL);
            tu_rand_fill(&rng, x, mix_size(rank, d), -1, 1);
            mix_write(vars[side][k], x);
        }
        o[side] = tu_optimizer(ctx[side], "{\"class_name\": \"Adafactor\", \"config\": "
                                          "{\"learning_rate\": 0.05}}");
        TU_OK(ctx[side], clopt_optimizer_build(o[side], vars[side], MIX_NVARS));
    }
    for (int t = 0; t < 6; t++) {
        clopt_variable *g[2][MIX_NVARS];
        for (int k = 0; k < MIX_NVARS; k++) {
            const int rank = k / 4, d = k % 4;
            tu_rand_fill(&rng, x, mix_size(rank, d), -1, 1);
            const int missing = t > 0 && (t * 5 + k) % 7 == 6;
            for (int side = 0; side < 2; side++) {
                mix_write(grads[side][k], x);
                g[side][k] = missing ? NULL : grads[side][k];
            }
        }
        for (int side = 0; side < 2; side++)
            TU_OK(ctx[side], clopt_optimizer_apply(o[side], g[side], vars[side], MIX_NVARS));
        char what[160];
        for (int k = 0; k < MIX_NVARS; k++) {
            const clopt_dtype d = mix_dtypes[k % 4];
            double *h = mix_read(vars[0][k]), *c = mix_read(vars[1][k]);
            snprintf(what, sizeof what, "step %d: variable %s (%s, rank %d)", t,
                     clopt_variable_name(vars[0][k]), clopt_dtype_name(d), k / 4);
            tu_assert_close(c, h, mix_size(k / 4, k % 4), mix_tol(d), mix_tol(d), what);
            free(h);
            free(c);
        }
        const size_t n = clopt_optimizer_variable_count(o[0]);
        cr_assert_eq(clopt_optimizer_variable_count(o[1]), n);
        for (size_t i = 0; i < n; i++) {
            clopt_variable *hv;
            const char *path, *cpath;
            TU_OK(ctx[0], clopt_optimizer_variable(o[0], i, NULL, &path, &hv));
            TU_OK(ctx[1], clopt_optimizer_variable(o[1], i, NULL, &cpath, NULL));
            cr_assert_str_eq(cpath, path, "optimizer variable %zu", i);
            const size_t count = hv ? (size_t)clopt_variable_size(hv) : 1;
            double *a = malloc(count * sizeof *a), *b = malloc(count * sizeof *b);
            cr_assert(a && b);
            TU_OK(ctx[0], clopt_optimizer_variable_read(o[0], i, a, count));
            TU_OK(ctx[1], clopt_optimizer_variable_read(o[1], i, b, count));
            const double tol = hv ? mix_tol(clopt_variable_dtype(hv)) : 0;
            snprintf(what, sizeof what, "step %d: optimizer variable %zu (%s)", t, i, path);
            tu_assert_close(b, a, count, tol, tol, what);
            free(a);
            free(b);
        }
    }
    clopt_context_destroy(ctx[0]);
    clopt_context_destroy(ctx[1]);
}

/* ---- Keras's variable list ---- */

/* Keras 3.16, keras/src/optimizers/adafactor.py, Adafactor.build: per variable, r and c
 * (add_variable(shape=..., name=var.name) for rank >= 2; for rank < 2 two placeholders
 * backend.Variable(0, name=var.name)), then add_variable_from_reference(var, "velocity"). r and c
 * take the variable's name, not its path; velocity is "<path, '/' -> '_'>_velocity". */
Test(adafactor_host, variable_list_in_keras_order) {
    /* dense/kernel [3, 2]: r "kernel" [3], c "kernel" [2]; dense/bias [2]: two integer
     * placeholders named "bias" (no device storage), then each velocity. */
    static const ovl_entry plain[] = {
        {"iteration", 0}, {"learning_rate", 0}, {"kernel", 3}, {"kernel", 2},
        {"dense_kernel_velocity", 6}, {"bias", 0}, {"bias", 0}, {"dense_bias_velocity", 2},
        {NULL, 0}};
    ovl_check("{\"class_name\": \"Adafactor\", \"config\": {}}", plain);
    ovl_check_with_ema_and_accumulation("Adafactor", NULL, plain + 2, 2);
}

/* The shapes of r and c: shape[:-1] and shape[:-2] + shape[-1:] (rank 3 and 4), the dtype of
 * the variable; placeholders read as 0 and written back as integers. */
Test(adafactor_host, factored_slot_shapes) {
    clopt_context *ctx = tu_context(TU_HOST);
    const int64_t s3[3] = {2, 3, 5}, s4[4] = {2, 2, 7, 4}, s0 = 6;
    clopt_variable *vars[4] = {tu_var(ctx, "block/t3", CLOPT_FLOAT32, 3, s3, NULL),
                               tu_var(ctx, "t4", CLOPT_FLOAT64, 4, s4, NULL),
                               tu_var(ctx, "scalar", CLOPT_FLOAT32, 0, NULL, NULL),
                               tu_var(ctx, "vec", CLOPT_FLOAT64, 1, &s0, NULL)};
    clopt_optimizer *o = tu_optimizer(ctx, "{\"class_name\": \"Adafactor\", \"config\": {}}");
    TU_OK(ctx, clopt_optimizer_build(o, vars, 4));
    cr_assert_eq(clopt_optimizer_variable_count(o), 2 + 12);
    static const struct {
        const char *name, *path;
        int ndim;
        int64_t shape[3];
        clopt_dtype dtype;
    } want[12] = {
        {"t3", "adafactor/t3", 2, {2, 3}, CLOPT_FLOAT32},
        {"t3", "adafactor/t3", 2, {2, 5}, CLOPT_FLOAT32},
        {"block_t3_velocity", "adafactor/block_t3_velocity", 3, {2, 3, 5}, CLOPT_FLOAT32},
        {"t4", "adafactor/t4", 3, {2, 2, 7}, CLOPT_FLOAT64},
        {"t4", "adafactor/t4", 3, {2, 2, 4}, CLOPT_FLOAT64},
        {"t4_velocity", "adafactor/t4_velocity", 0, {0}, CLOPT_FLOAT64},
        {"scalar", "adafactor/scalar", -1, {0}, CLOPT_FLOAT32},
        {"scalar", "adafactor/scalar", -1, {0}, CLOPT_FLOAT32},
        {"scalar_velocity", "adafactor/scalar_velocity", 0, {0}, CLOPT_FLOAT32},
        {"vec", "adafactor/vec", -1, {0}, CLOPT_FLOAT64},
        {"vec", "adafactor/vec", -1, {0}, CLOPT_FLOAT64},
        {"vec_velocity", "adafactor/vec_velocity", 1, {6}, CLOPT_FLOAT64},
    };
    for (size_t i = 0; i < 12; i++) {
        const char *name, *path;
        clopt_variable *v;
        TU_OK(ctx, clopt_optimizer_variable(o, 2 + i, &name, &path, &v));
        cr_assert_str_eq(name, want[i].name, "entry %zu", i);
        cr_assert_str_eq(path, want[i].path, "entry %zu", i);
        if (want[i].ndim < 0) { /* placeholder */
            cr_assert(v == NULL, "entry %zu (%s) has device storage", i, name);
            double x = 7;
            TU_OK(ctx, clopt_optimizer_variable_read(o, 2 + i, &x, 1));
            cr_assert(x == 0);
            continue;
        }
        cr_assert(v, "entry %zu (%s) has no device storage", i, name);
        cr_assert_eq(clopt_variable_dtype(v), want[i].dtype, "entry %zu dtype", i);
        if (i == 5) continue; /* t4's velocity: the variable's shape, checked by size */
        cr_assert_eq(clopt_variable_ndim(v), want[i].ndim, "entry %zu (%s) rank", i, name);
        for (int d = 0; d < want[i].ndim; d++)
            cr_assert_eq(clopt_variable_shape(v)[d], want[i].shape[d], "entry %zu dim %d", i, d);
    }
    clopt_variable *tv;
    TU_OK(ctx, clopt_optimizer_variable(o, 2 + 5, NULL, NULL, &tv));
    cr_assert_eq(clopt_variable_size(tv), 2 * 2 * 7 * 4);
    /* Keras would accept any integer for a placeholder; clopt keeps it as an integer. */
    const double bad = 0.5, zero = 0;
    TU_ASSERT_STATUS(ctx, clopt_optimizer_variable_write(o, 2 + 6, &bad, 1), CLOPT_ERR_BAD_VALUE);
    TU_OK(ctx, clopt_optimizer_variable_write(o, 2 + 6, &zero, 1));
    clopt_context_destroy(ctx);
}

/* A step saved and loaded: the placeholders (int64 scalars) and the r and c views round-trip,
 * and the steps after a load repeat the steps after the save bit for bit. */
static void checkpoint_round_trip(const char *dev) {
    clopt_context *ctx = tu_context(dev);
    const int64_t s2[2] = {5, 300}, s1 = 7;
    double w0[1500], w1[7], g0[1500], g1[7];
    uint64_t rng = 3;
    tu_rand_fill(&rng, w0, 1500, -1, 1);
    tu_rand_fill(&rng, w1, 7, -1, 1);
    tu_rand_fill(&rng, g0, 1500, -1, 1);
    tu_rand_fill(&rng, g1, 7, -1, 1);
    clopt_variable *vars[2] = {tu_var(ctx, "m", CLOPT_FLOAT32, 2, s2, NULL),
                               tu_var(ctx, "b", CLOPT_FLOAT32, 1, &s1, NULL)};
    clopt_variable *grads[2] = {tu_var(ctx, "gm", CLOPT_FLOAT32, 2, s2, NULL),
                                tu_var(ctx, "gb", CLOPT_FLOAT32, 1, &s1, NULL)};
    tu_write_f64(vars[0], w0);
    tu_write_f64(vars[1], w1);
    tu_write_f64(grads[0], g0);
    tu_write_f64(grads[1], g1);
    clopt_optimizer *o = tu_optimizer(ctx, "{\"class_name\": \"Adafactor\", \"config\": {}}");
    TU_OK(ctx, clopt_optimizer_apply(o, grads, vars, 2));
    char path[256];
    snprintf(path, sizeof path, "adafactor-ckpt-%d-%s.safetensors", (int)getpid(),
             dev[0] == 'h' ? "host" : "pocl");
    TU_OK(ctx, clopt_optimizer_save(o, path));
    double *saved_w[2] = {tu_read_f64(vars[0]), tu_read_f64(vars[1])};
    for (int i = 0; i < 2; i++) TU_OK(ctx, clopt_optimizer_apply(o, grads, vars, 2));
    double *after[2] = {tu_read_f64(vars[0]), tu_read_f64(vars[1])};
    /* Scramble the r view, then load and repeat. */
    const size_t r_index = 2;
    double junk[5] = {9, 9, 9, 9, 9};
    TU_OK(ctx, clopt_optimizer_variable_write(o, r_index, junk, 5));
    TU_OK(ctx, clopt_optimizer_load(o, path));
    tu_write_f64(vars[0], saved_w[0]);
    tu_write_f64(vars[1], saved_w[1]);
    cr_assert_eq(clopt_optimizer_iterations(o), 1);
    for (int i = 0; i < 2; i++) TU_OK(ctx, clopt_optimizer_apply(o, grads, vars, 2));
    for (int k = 0; k < 2; k++) {
        tu_assert_var_close(vars[k], after[k], 0, 0, "after load");
        free(saved_w[k]);
        free(after[k]);
    }
    unlink(path);
    clopt_context_destroy(ctx);
}
Test(adafactor_host, checkpoint_round_trip) { checkpoint_round_trip(TU_HOST); }
Test(adafactor_pocl, checkpoint_round_trip) { checkpoint_round_trip(TU_POCL); }

/* ---- class name, hyperparameters, config ---- */

Test(adafactor_host, bad_values_are_rejected) {
    static const om_bad bad[] = {
        {"\"beta_2_decay\": 0.5", "beta_2_decay"},
        {"\"epsilon_1\": -1e-30", "epsilon_1"},
        {"\"epsilon_2\": -0.001", "epsilon_2"},
        {"\"clip_threshold\": 0.0", "clip_threshold"},
        {"\"clip_threshold\": -1.0", "clip_threshold"},
    };
    om_bad_values(CLS, bad, sizeof bad / sizeof *bad);
    static const char *const good[] = {"\"beta_2_decay\": 0.0", "\"epsilon_1\": 0.0",
                                       "\"epsilon_2\": 0.0", "\"clip_threshold\": 1e-9",
                                       "\"relative_step\": false"};
    om_good_values(CLS, good, sizeof good / sizeof *good);
    /* relative_step is a boolean. */
    clopt_context *ctx = tu_context(TU_HOST);
    clopt_optimizer *o = NULL;
    TU_ASSERT_STATUS(ctx,
                     clopt_optimizer_from_config(
                         ctx, "{\"class_name\": \"Adafactor\", \"config\": {\"relative_step\": 1}}",
                         &o),
                     CLOPT_ERR_BAD_TYPE);
    tu_assert_error_mentions(ctx, "relative_step");
    clopt_context_destroy(ctx);
}

Test(adafactor_host, config_keys_in_keras_order) {
    static const char *const keys[] = {"beta_2_decay", "epsilon_1", "epsilon_2",
                                       "clip_threshold", "relative_step", NULL};
    om_config_keys(CLS, "adafactor", keys);
    clopt_context *ctx = tu_context(TU_HOST);
    clopt_optimizer *o = tu_optimizer(ctx, "{\"class_name\": \"adafactor\", \"config\": {}}");
    double lr;
    TU_OK(ctx, clopt_optimizer_get_learning_rate(o, &lr));
    cr_assert_eq(lr, (double)0.001f);
    char *cfg = NULL;
    TU_OK(ctx, clopt_optimizer_get_config(o, &cfg));
    cr_assert(strstr(cfg, "\"beta_2_decay\": -0.8, \"epsilon_1\": 1e-30, \"epsilon_2\": 0.001, "
                          "\"clip_threshold\": 1.0, \"relative_step\": true"),
              "%s", cfg);
    clopt_free(cfg);
    clopt_context_destroy(ctx);
}
