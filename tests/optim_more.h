/* Shared checks of the optimizer tests test_optim_{rmsprop,adagrad,adadelta,adamax,adamw}.c:
 * Keras's published numbers (test_single_step, test_correctness_with_golden, test_weight_decay),
 * an independent double-precision port of each update rule, host-versus-OpenCL agreement over
 * every apply-pipeline option, bad hyperparameters, and Keras's variable list and config keys.
 * Tolerances come from test_util.h. Not a test source itself (tests/CMakeLists.txt builds
 * test_*.c only). */
#ifndef CLOPT_TEST_OPTIM_MORE_H
#define CLOPT_TEST_OPTIM_MORE_H

#include "test_util.h"
#include "optim_varlist.h"

/* ---- JSON ---- */

/* {"class_name": cls, "config": {parts joined by ", "}}; empty or NULL parts are skipped. */
static inline char *om_json(const char *cls, const char *a, const char *b, const char *c) {
    static char buf[4][1024];
    static int next;
    char *out = buf[next++ & 3];
    const char *parts[3] = {a, b, c};
    int n = snprintf(out, sizeof buf[0], "{\"class_name\": \"%s\", \"config\": {", cls);
    int first = 1;
    for (int i = 0; i < 3; i++) {
        if (!parts[i] || !parts[i][0]) continue;
        n += snprintf(out + n, sizeof buf[0] - (size_t)n, "%s%s", first ? "" : ", ", parts[i]);
        first = 0;
    }
    snprintf(out + n, sizeof buf[0] - (size_t)n, "}}");
    return out;
}

/* ---- Keras's published numbers ---- */

/* Keras's test_single_step: variable [1, 2, 3, 4], gradient [1, 6, 7, 2], one apply; compared
 * with rtol = atol = 1e-4 as in Keras; the iteration counter is then 1. */
static inline void om_keras_single_step(const char *dev, clopt_dtype dtype, const char *json,
                                        const double want[4]) {
    clopt_context *ctx = tu_context(dev);
    const int64_t n = 4;
    const double w0[4] = {1, 2, 3, 4}, g0[4] = {1, 6, 7, 2};
    clopt_variable *w = tu_var_from_f64(ctx, "vars", dtype, 1, &n, w0);
    clopt_variable *g = tu_var_from_f64(ctx, "grads", dtype, 1, &n, g0);
    clopt_optimizer *o = tu_optimizer(ctx, json);
    TU_OK(ctx, clopt_optimizer_apply(o, &g, &w, 1));
    tu_assert_var_close(w, want, TU_KERAS_TOL_SINGLE_STEP, TU_KERAS_TOL_SINGLE_STEP,
                        "single step");
    cr_assert_eq(clopt_optimizer_iterations(o), 1);
    clopt_context_destroy(ctx);
}

/* Keras's test_correctness_with_golden: x = ones(10), one apply of full(10, 0.01), then five
 * times: x must match golden[i] (rtol = atol = 5e-4 as in Keras), then apply arange(0.1, 1.1,
 * 0.1); the iteration counter is then 6. */
static inline void om_keras_golden(const char *dev, clopt_dtype dtype, const char *json,
                                   const double golden[5][10]) {
    clopt_context *ctx = tu_context(dev);
    const int64_t n = 10;
    double ones[10], first[10], grads[10];
    for (int i = 0; i < 10; i++) {
        ones[i] = 1.0;
        first[i] = 0.01;
        grads[i] = 0.1 * (i + 1);
    }
    clopt_variable *x = tu_var_from_f64(ctx, "x", dtype, 1, &n, ones);
    clopt_variable *g = tu_var_from_f64(ctx, "g", dtype, 1, &n, first);
    clopt_optimizer *o = tu_optimizer(ctx, json);
    TU_OK(ctx, clopt_optimizer_apply(o, &g, &x, 1));
    tu_write_f64(g, grads);
    for (int i = 0; i < 5; i++) {
        char what[32];
        snprintf(what, sizeof what, "golden[%d]", i);
        tu_assert_var_close(x, golden[i], TU_KERAS_TOL_GOLDEN, TU_KERAS_TOL_GOLDEN, what);
        TU_OK(ctx, clopt_optimizer_apply(o, &g, &x, 1));
    }
    cr_assert_eq(clopt_optimizer_iterations(o), 6);
    clopt_context_destroy(ctx);
}

/* om_keras_single_step in float32, then in float64 (Keras's test runs each float dtype). */
static inline void om_keras_single_step_f32_f64(const char *dev, const char *json,
                                                const double want[4]) {
    om_keras_single_step(dev, CLOPT_FLOAT32, json, want);
    om_keras_single_step(dev, CLOPT_FLOAT64, json, want);
}

/* om_keras_golden in float32, then in float64. */
static inline void om_keras_golden_f32_f64(const char *dev, const char *json,
                                           const double golden[5][10]) {
    om_keras_golden(dev, CLOPT_FLOAT32, json, golden);
    om_keras_golden(dev, CLOPT_FLOAT64, json, golden);
}

/* Keras's test_weight_decay: scalar variables at 2.0, zero gradients, learning_rate 1.0,
 * weight_decay 0.004; one optimizer decays var1 alone, one excludes var2 by name ("exclude"),
 * one excludes var3 by identity. var1 ends at 1.9760959 (decimal=6), var2 and var3 at 2. */
static inline void om_keras_weight_decay(const char *dev, const char *cls) {
    clopt_context *ctx = tu_context(dev);
    const float two = 2.0f, zero = 0.0f;
    clopt_variable *var1 = tu_var(ctx, "variable", CLOPT_FLOAT32, 0, NULL, &two);
    clopt_variable *var2 = tu_var(ctx, "exclude", CLOPT_FLOAT32, 0, NULL, &two);
    clopt_variable *var3 = tu_var(ctx, "variable_1", CLOPT_FLOAT32, 0, NULL, &two);
    clopt_variable *g[2] = {tu_var(ctx, "g0", CLOPT_FLOAT32, 0, NULL, &zero),
                            tu_var(ctx, "g1", CLOPT_FLOAT32, 0, NULL, &zero)};
    const char *json = om_json(cls, "\"learning_rate\": 1.0", "\"weight_decay\": 0.004", NULL);
    clopt_optimizer *o1 = tu_optimizer(ctx, json), *o2 = tu_optimizer(ctx, json),
                    *o3 = tu_optimizer(ctx, json);
    TU_OK(ctx, clopt_optimizer_apply(o1, g, &var1, 1));
    const char *names[] = {"exclude"};
    TU_OK(ctx, clopt_optimizer_exclude_from_weight_decay(o2, NULL, 0, names, 1));
    clopt_variable *v12[2] = {var1, var2};
    TU_OK(ctx, clopt_optimizer_apply(o2, g, v12, 2));
    TU_OK(ctx, clopt_optimizer_exclude_from_weight_decay(o3, &var3, 1, NULL, 0));
    clopt_variable *v13[2] = {var1, var3};
    TU_OK(ctx, clopt_optimizer_apply(o3, g, v13, 2));
    const double want1 = 1.9760959, want2 = 2.0;
    tu_assert_var_close(var1, &want1, 0, 1.5e-6, "var1"); /* assertAlmostEqual(decimal=6) */
    tu_assert_var_close(var2, &want2, 0, 1.5e-6, "var2");
    tu_assert_var_close(var3, &want2, 0, 1.5e-6, "var3");
    clopt_context_destroy(ctx);
}

/* ---- an independent port of an update rule ---- */

/* One element's update in double: hp are the class hyperparameters in table order, slot the
 * element's slots in the order of the kind names given to om_formula_check. */
typedef void (*om_ref_fn)(const double *hp, double lr, int64_t t, double g, double *w,
                          double *slot);

/* Five steps over two float64 variables (shapes [5] and [3, 2]) against `ref`, checking the
 * variables and every named slot after each step. */
static inline void om_formula_check(const char *dev, const char *json, double lr,
                                    const double *hp, om_ref_fn ref, int nslots,
                                    const char *const *slot_names, const double *slot_init) {
    clopt_context *ctx = tu_context(dev);
    const int64_t s0 = 5, s1[2] = {3, 2};
    const int64_t size[2] = {5, 6};
    double w[2][6], sl[2][4][6], g[2][6];
    uint64_t rng = 1234;
    for (int v = 0; v < 2; v++) {
        tu_rand_fill(&rng, w[v], (size_t)size[v], -1, 1);
        for (int k = 0; k < nslots; k++)
            for (int i = 0; i < size[v]; i++) sl[v][k][i] = slot_init[k];
    }
    clopt_variable *vars[2] = {tu_var(ctx, "a", CLOPT_FLOAT64, 1, &s0, w[0]),
                               tu_var(ctx, "b", CLOPT_FLOAT64, 2, s1, w[1])};
    clopt_variable *grads[2] = {tu_var(ctx, "ga", CLOPT_FLOAT64, 1, &s0, NULL),
                                tu_var(ctx, "gb", CLOPT_FLOAT64, 2, s1, NULL)};
    clopt_optimizer *o = tu_optimizer(ctx, json);
    for (int t = 1; t <= 5; t++) {
        for (int v = 0; v < 2; v++) {
            /* Gradients of both signs, some larger than earlier ones (Adamax's max). */
            tu_rand_fill(&rng, g[v], (size_t)size[v], -1.5, 1.5);
            tu_write_f64(grads[v], g[v]);
            for (int i = 0; i < size[v]; i++) {
                double e[4];
                for (int k = 0; k < nslots; k++) e[k] = sl[v][k][i];
                ref(hp, lr, t, g[v][i], &w[v][i], e);
                for (int k = 0; k < nslots; k++) sl[v][k][i] = e[k];
            }
        }
        TU_OK(ctx, clopt_optimizer_apply(o, grads, vars, 2));
        for (int v = 0; v < 2; v++) {
            char what[96];
            snprintf(what, sizeof what, "step %d variable %s", t, clopt_variable_name(vars[v]));
            tu_assert_var_close(vars[v], w[v], 1e-10, 1e-12, what);
            for (int k = 0; k < nslots; k++) {
                char name[64];
                snprintf(name, sizeof name, "%s_%s", clopt_variable_name(vars[v]),
                         slot_names[k]);
                snprintf(what, sizeof what, "step %d slot %s", t, name);
                tu_assert_var_close(tu_slot(o, name), sl[v][k], 1e-10, 1e-12, what);
            }
        }
    }
    clopt_context_destroy(ctx);
}

/* ---- per-variable references over several variables (Lamb, ScheduleFreeAdamW) ---- */

/* For k < n: the float64 variable names[k] holding init[k] and its gradient "g" (zeros), of
 * shape [17, 33] for k == matrix (sizes[k] must be 17 * 33), else [sizes[k]]. */
static inline void om_ref_vars_f64(clopt_context *ctx, int n, const int64_t *sizes,
                                   const char *const *names, int matrix, double *const *init,
                                   clopt_variable **vars, clopt_variable **grads) {
    const int64_t shape2[2] = {17, 33};
    for (int k = 0; k < n; k++) {
        const int two = k == matrix;
        cr_assert(!two || sizes[k] == 17 * 33, "om_ref_vars_f64: variable %d is not 17 x 33", k);
        vars[k] = tu_var(ctx, names[k], CLOPT_FLOAT64, two ? 2 : 1, two ? shape2 : &sizes[k],
                         init[k]);
        grads[k] = tu_var(ctx, "g", CLOPT_FLOAT64, two ? 2 : 1, two ? shape2 : &sizes[k], NULL);
    }
}

/* For k < n: fills g[k] (sizes[k] values) uniformly in [-1, 1) from rng, writes it to grads[k],
 * and sets pass[k] = grads[k] (the gradients of one apply; the caller may then drop some). */
static inline void om_ref_random_grads(uint64_t *rng, int n, const int64_t *sizes,
                                       double *const *g, clopt_variable *const *grads,
                                       clopt_variable **pass) {
    for (int k = 0; k < n; k++) {
        tu_rand_fill(rng, g[k], (size_t)sizes[k], -1, 1);
        tu_write_f64(grads[k], g[k]);
        pass[k] = grads[k];
    }
}

/* For k < n, after step t: vars[k] holds w[k], and the slots "<names[k]>_momentum" and
 * "<names[k]>_velocity" hold m[k] and v[k] (rtol 1e-10, atol 1e-12: float64 against a double
 * reference). `dev` goes in the messages. */
static inline void om_ref_check_momentum_velocity(const char *dev, int t, const clopt_optimizer *o,
                                                  int n, const char *const *names,
                                                  clopt_variable *const *vars, double *const *w,
                                                  double *const *m, double *const *v) {
    for (int k = 0; k < n; k++) {
        char what[96], name[64];
        snprintf(what, sizeof what, "%s step %d: %s", dev, t, names[k]);
        tu_assert_var_close(vars[k], w[k], 1e-10, 1e-12, what);
        snprintf(name, sizeof name, "%s_momentum", names[k]);
        tu_assert_var_close(tu_slot(o, name), m[k], 1e-10, 1e-12, name);
        snprintf(name, sizeof name, "%s_velocity", names[k]);
        tu_assert_var_close(tu_slot(o, name), v[k], 1e-10, 1e-12, name);
    }
}

/* ---- host versus OpenCL ---- */

#define OM_NVARS 4
#define OM_NSTEPS 7

/* The apply pipeline's options, each alone and all together. */
typedef struct om_option {
    const char *name;
    const char *json;
    double grad_scale; /* gradients are multiplied by this (the loss scale) */
    int exclude;       /* exclude variable 0 by identity and "4096$" by name from weight decay */
    int finalize;      /* call finalize_variable_values after the last step */
} om_option;

static const om_option om_options[] = {
    {"none", "", 1, 0, 0},
    {"clipnorm", "\"clipnorm\": 1.0", 1, 0, 0},
    {"global_clipnorm", "\"global_clipnorm\": 5.0", 1, 0, 0},
    {"clipvalue", "\"clipvalue\": 0.5", 1, 0, 0},
    {"weight_decay", "\"weight_decay\": 0.05", 1, 1, 0},
    {"ema", "\"use_ema\": true, \"ema_momentum\": 0.9, \"ema_overwrite_frequency\": 3", 1, 0, 1},
    {"accumulation", "\"gradient_accumulation_steps\": 3", 1, 0, 0},
    {"loss_scale", "\"loss_scale_factor\": 128.0", 128, 0, 0},
    {"combined",
     "\"weight_decay\": 0.02, \"clipnorm\": 2.0, \"use_ema\": true, \"ema_momentum\": 0.8, "
     "\"gradient_accumulation_steps\": 2, \"loss_scale_factor\": 16.0",
     16, 1, 1},
};
#define OM_NOPTIONS (sizeof om_options / sizeof *om_options)

typedef struct om_side {
    clopt_context *ctx;
    clopt_optimizer *opt;
    clopt_variable *vars[OM_NVARS], *grads[OM_NVARS];
} om_side;

static const char *const om_var_names[OM_NVARS] = {"v1", "v300", "v4096", "m17x33"};
static const int om_ndims[OM_NVARS] = {1, 1, 1, 2};
static const int64_t om_shapes[OM_NVARS][2] = {{1, 0}, {300, 0}, {4096, 0}, {17, 33}};

static inline void om_side_open(om_side *s, const char *dev, clopt_dtype dtype, const char *json,
                                const om_option *opt, double *const init[OM_NVARS]) {
    s->ctx = tu_context(dev);
    for (int i = 0; i < OM_NVARS; i++) {
        s->vars[i] = tu_var_from_f64(s->ctx, om_var_names[i], dtype, om_ndims[i], om_shapes[i],
                                     init[i]);
        char gname[32];
        snprintf(gname, sizeof gname, "grad_%s", om_var_names[i]);
        s->grads[i] = tu_var_from_f64(s->ctx, gname, dtype, om_ndims[i], om_shapes[i], init[i]);
    }
    s->opt = tu_optimizer(s->ctx, json);
    if (opt->exclude) {
        const char *names[] = {"4096$"};
        TU_OK(s->ctx, clopt_optimizer_exclude_from_weight_decay(s->opt, &s->vars[0], 1, names, 1));
    }
    TU_OK(s->ctx, clopt_optimizer_build(s->opt, s->vars, OM_NVARS));
}

/* Asserts that both sides hold the same variables and the same optimizer variables (names,
 * iteration counter, learning rate, every slot). */
static inline void om_compare(const om_side *h, const om_side *c, const char *what) {
    char msg[160];
    for (int i = 0; i < OM_NVARS; i++) {
        snprintf(msg, sizeof msg, "%s: variable %s", what, om_var_names[i]);
        tu_assert_vars_close(c->vars[i], h->vars[i], msg);
    }
    size_t n = clopt_optimizer_variable_count(h->opt);
    cr_assert_eq(clopt_optimizer_variable_count(c->opt), n, "%s: variable counts differ", what);
    for (size_t k = 0; k < n; k++) {
        const char *hn, *cn;
        clopt_variable *hv, *cv;
        TU_OK(h->ctx, clopt_optimizer_variable(h->opt, k, &hn, NULL, &hv));
        TU_OK(c->ctx, clopt_optimizer_variable(c->opt, k, &cn, NULL, &cv));
        cr_assert_str_eq(cn, hn, "%s: optimizer variable %zu", what, k);
        size_t count = hv ? (size_t)clopt_variable_size(hv) : 1;
        double *a = malloc(count * sizeof *a), *b = malloc(count * sizeof *b);
        cr_assert(a && b);
        TU_OK(h->ctx, clopt_optimizer_variable_read(h->opt, k, a, count));
        TU_OK(c->ctx, clopt_optimizer_variable_read(c->opt, k, b, count));
        snprintf(msg, sizeof msg, "%s: optimizer variable %s", what, hn);
        if (hv) {
            clopt_dtype d = clopt_variable_dtype(hv);
            tu_assert_close(b, a, count, tu_rtol(d), tu_atol(d), msg);
        } else {
            tu_assert_close(b, a, count, 0, 0, msg);
        }
        free(a);
        free(b);
    }
}

/* Runs OM_NSTEPS steps of the same optimizer on the host and on `dev` with option `opt`:
 * random variables and gradients, a NULL gradient for variable 1 at step 2, the variables in
 * reverse order at step 4, then finalize_variable_values where the option uses EMA. Compares
 * everything after every step. */
static inline void om_agree_one(const char *dev, clopt_dtype dtype, const char *cls,
                                const char *base, const om_option *opt) {
    char json[1024];
    snprintf(json, sizeof json, "%s", om_json(cls, base, opt->json, NULL));
    uint64_t rng = 42;
    double *init[OM_NVARS], *g[OM_NVARS];
    size_t size[OM_NVARS];
    for (int i = 0; i < OM_NVARS; i++) {
        size[i] = (size_t)(om_shapes[i][0] * (om_ndims[i] == 2 ? om_shapes[i][1] : 1));
        init[i] = malloc(size[i] * sizeof(double));
        g[i] = malloc(size[i] * sizeof(double));
        cr_assert(init[i] && g[i]);
        tu_rand_fill(&rng, init[i], size[i], -1, 1);
    }
    om_side h, c;
    om_side_open(&h, TU_HOST, dtype, json, opt, init);
    om_side_open(&c, dev, dtype, json, opt, init);
    for (int step = 0; step < OM_NSTEPS; step++) {
        for (int i = 0; i < OM_NVARS; i++) {
            tu_rand_fill(&rng, g[i], size[i], -1, 1);
            for (size_t j = 0; j < size[i]; j++) g[i][j] *= opt->grad_scale;
            tu_write_f64(h.grads[i], g[i]);
            tu_write_f64(c.grads[i], g[i]);
        }
        clopt_variable *hg[OM_NVARS], *cg[OM_NVARS], *hv[OM_NVARS], *cv[OM_NVARS];
        for (int i = 0; i < OM_NVARS; i++) {
            const int j = step == 4 ? OM_NVARS - 1 - i : i;
            hg[i] = h.grads[j];
            cg[i] = c.grads[j];
            hv[i] = h.vars[j];
            cv[i] = c.vars[j];
        }
        if (step == 2) hg[1] = cg[1] = NULL;
        TU_OK(h.ctx, clopt_optimizer_apply(h.opt, hg, hv, OM_NVARS));
        TU_OK(c.ctx, clopt_optimizer_apply(c.opt, cg, cv, OM_NVARS));
        char what[192];
        snprintf(what, sizeof what, "%s %s [%s] %s, step %d", cls, base, opt->name,
                 clopt_dtype_name(dtype), step);
        om_compare(&h, &c, what);
    }
    if (opt->finalize) {
        TU_OK(h.ctx, clopt_optimizer_finalize_variable_values(h.opt));
        TU_OK(c.ctx, clopt_optimizer_finalize_variable_values(c.opt));
        char what[192];
        snprintf(what, sizeof what, "%s %s [%s] %s, after finalize", cls, base, opt->name,
                 clopt_dtype_name(dtype));
        om_compare(&h, &c, what);
    }
    clopt_context_destroy(h.ctx);
    clopt_context_destroy(c.ctx);
    for (int i = 0; i < OM_NVARS; i++) {
        free(init[i]);
        free(g[i]);
    }
}

/* Every option in one dtype. `base` holds the class's config entries (with the learning rate).
 * Tests that run float32 and float64 as separate tests keep a cold kernel cache (18 programs
 * per dtype) well inside the per-test timeout on a loaded machine. */
static inline void om_agree_dtype(const char *dev, clopt_dtype dtype, const char *cls,
                                  const char *base) {
    for (size_t k = 0; k < OM_NOPTIONS; k++) om_agree_one(dev, dtype, cls, base, &om_options[k]);
}

/* Every option, in float32 and float64. */
static inline void om_agree_all(const char *dev, const char *cls, const char *base) {
    om_agree_dtype(dev, CLOPT_FLOAT32, cls, base);
    om_agree_dtype(dev, CLOPT_FLOAT64, cls, base);
}

/* ---- bad hyperparameters ---- */

typedef struct om_bad {
    const char *config; /* entries of "config" */
    const char *key;    /* the key the error must name */
} om_bad;

/* Each config must fail with CLOPT_ERR_BAD_VALUE, name its key and create nothing. */
static inline void om_bad_values(const char *cls, const om_bad *bad, size_t n) {
    clopt_context *ctx = tu_context(TU_HOST);
    for (size_t i = 0; i < n; i++) {
        clopt_optimizer *sentinel = (clopt_optimizer *)(uintptr_t)0x5eed, *o = sentinel;
        const char *json = om_json(cls, bad[i].config, NULL, NULL);
        clopt_status st = clopt_optimizer_from_config(ctx, json, &o);
        cr_assert(st == CLOPT_ERR_BAD_VALUE, "%s: got %s, expected CLOPT_ERR_BAD_VALUE", json,
                  clopt_status_name(st));
        cr_assert(o == sentinel, "%s: the out pointer was written on failure", json);
        tu_assert_error_mentions(ctx, bad[i].key);
    }
    clopt_context_destroy(ctx);
}

/* Each config must be accepted (boundary values). */
static inline void om_good_values(const char *cls, const char *const *good, size_t n) {
    clopt_context *ctx = tu_context(TU_HOST);
    for (size_t i = 0; i < n; i++) {
        clopt_optimizer *o = tu_optimizer(ctx, om_json(cls, good[i], NULL, NULL));
        clopt_optimizer_destroy(o);
    }
    clopt_context_destroy(ctx);
}

/* ---- Keras's variable list and config ---- */

/* ovl_entry list of `names` (NULL-terminated) as om_variable_list expects it: the entries from
 * `first_slot` on are device slots of 6 elements ("dense_kernel_...") or 2 (the bias), the ones
 * before it host entries (no device storage). `out` has room for `room` entries. */
static inline void om_varlist_entries(const char *const *names, size_t first_slot,
                                      ovl_entry *out, size_t room) {
    size_t i = 0;
    for (; names[i]; i++) {
        cr_assert(i + 1 < room, "om_varlist_entries: too many names");
        const int kernel = strncmp(names[i], "dense_kernel_", 13) == 0;
        out[i] = (ovl_entry){names[i], i < first_slot ? 0 : kernel ? 6 : 2};
    }
    out[i] = (ovl_entry){NULL, 0};
}

/* Builds `json` on "dense/kernel" [3, 2] and "dense/bias" [2] and checks the optimizer's
 * variable names and paths (<name>/<var>) against `want` (NULL-terminated), Keras's save order
 * (semantics doc section 5): iteration and learning_rate on the host, then slots of the
 * variables' sizes (ovl_check). */
static inline void om_variable_list(const char *json, const char *const *want) {
    ovl_entry entries[64];
    om_varlist_entries(want, 2, entries, sizeof entries / sizeof *entries);
    ovl_check(json, entries);
}

/* om_variable_list with "use_ema" and "gradient_accumulation_steps" on
 * (ovl_check_with_ema_and_accumulation): `slots` (NULL-terminated) are the names after the
 * averages and gradient accumulators, usually the plain list's names after learning_rate. */
static inline void om_variable_list_with_ema_and_accumulation(const char *cls, const char *config,
                                                              const char *const *slots,
                                                              int steps) {
    ovl_entry entries[64];
    om_varlist_entries(slots, 0, entries, sizeof entries / sizeof *entries);
    ovl_check_with_ema_and_accumulation(cls, config, entries, steps);
}

/* get_config of the default optimizer: class_name, default name, and the keys in Keras's order
 * (the base keys, then `keys`, NULL-terminated); then from_config(get_config()) gives the same
 * text. */
static inline void om_config_keys(const char *cls, const char *default_name,
                                  const char *const *keys) {
    clopt_context *ctx = tu_context(TU_HOST);
    clopt_optimizer *o = tu_optimizer(ctx, om_json(cls, NULL, NULL, NULL));
    cr_assert_str_eq(clopt_optimizer_class_name(o), cls);
    cr_assert_str_eq(clopt_optimizer_name(o), default_name);
    char *cfg = NULL;
    TU_OK(ctx, clopt_optimizer_get_config(o, &cfg));
    char want_cls[64], want_name[64];
    snprintf(want_cls, sizeof want_cls, "\"class_name\": \"%s\"", cls);
    snprintf(want_name, sizeof want_name, "\"name\": \"%s\"", default_name);
    cr_assert(strstr(cfg, want_cls), "%s lacks %s", cfg, want_cls);
    cr_assert(strstr(cfg, want_name), "%s lacks %s", cfg, want_name);
    static const char *const base[] = {
        "name", "learning_rate", "weight_decay", "clipnorm", "global_clipnorm", "clipvalue",
        "use_ema", "ema_momentum", "ema_overwrite_frequency", "loss_scale_factor",
        "gradient_accumulation_steps"};
    const char *at = strstr(cfg, "\"config\"");
    cr_assert(at);
    size_t nb = sizeof base / sizeof *base, nk = 0;
    while (keys[nk]) nk++;
    for (size_t i = 0; i < nb + nk; i++) {
        char k[64];
        snprintf(k, sizeof k, "\"%s\": ", i < nb ? base[i] : keys[i - nb]);
        const char *next = strstr(at, k);
        cr_assert(next, "%s: key %s missing or out of Keras's order", cfg, k);
        at = next;
    }
    clopt_optimizer *o2 = NULL;
    TU_OK(ctx, clopt_optimizer_from_config(ctx, cfg, &o2));
    char *cfg2 = NULL;
    TU_OK(ctx, clopt_optimizer_get_config(o2, &cfg2));
    cr_assert_str_eq(cfg2, cfg);
    clopt_free(cfg);
    clopt_free(cfg2);
    clopt_context_destroy(ctx);
}

#endif
