/* The host reference backend and the OpenCL backend (pocl) agree: the same optimizer, variables
 * and gradients on both, ten steps, then every variable and every slot variable compared (with
 * the tolerances of test_util.h), along the way and at the end.
 *
 * Variables of 1, 255, 256, 257 and 5000 elements (around the 256-element chunk of the fused
 * kernels) and a 2-D one; a variable whose gradient is always NULL (it and its slots must not
 * move), and one whose gradient is NULL on odd steps (the launch plan changes between steps). */
#include "test_util.h"
/* After criterion.h (in test_util.h): parameterized.h first would hide Test(). */
#include <criterion/parameterized.h>

TU_SUITE(agreement_pocl);

typedef struct agreement_case {
    int config; /* index in configs[] */
    int dtype;  /* clopt_dtype, or -1: alternate float32 and float64 variables */
} agreement_case;

static const char *const configs[] = {
    "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.05}}",
    "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.05, \"momentum\": 0.9}}",
    "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.05, \"momentum\": 0.9, "
    "\"nesterov\": true}}",
    "{\"class_name\": \"Adam\", \"config\": {\"learning_rate\": 0.01}}",
    "{\"class_name\": \"Adam\", \"config\": {\"learning_rate\": 0.01, \"amsgrad\": true}}",
};

ParameterizedTestParameters(agreement_pocl, host_and_pocl_agree) {
    static agreement_case cases[] = {
        {0, CLOPT_FLOAT32}, {1, CLOPT_FLOAT32}, {1, CLOPT_FLOAT64}, {2, CLOPT_FLOAT32},
        {2, CLOPT_FLOAT64}, {3, CLOPT_FLOAT32}, {3, CLOPT_FLOAT64}, {4, CLOPT_FLOAT32},
        {4, CLOPT_FLOAT64}, {2, -1},            {4, -1},
    };
    return cr_make_param_array(agreement_case, cases, sizeof cases / sizeof *cases);
}

enum { NVARS = 6, STEPS = 10, ALWAYS_NULL = 2, SOMETIMES_NULL = 0 };

typedef struct side {
    clopt_context *ctx;
    clopt_optimizer *opt;
    clopt_variable *vars[NVARS], *grads[NVARS];
} side;

static const int64_t shapes[NVARS][2] = {{1, 0}, {255, 0}, {256, 0}, {257, 0}, {5000, 0}, {37, 41}};
static const int ndims[NVARS] = {1, 1, 1, 1, 1, 2};
static const char *const names[NVARS] = {"one", "v255", "v256", "v257", "v5000", "dense/kernel"};

static int64_t nelem(int i) { return ndims[i] == 1 ? shapes[i][0] : shapes[i][0] * shapes[i][1]; }

static clopt_dtype dtype_of(const agreement_case *c, int i) {
    return c->dtype >= 0 ? (clopt_dtype)c->dtype : (i % 2 ? CLOPT_FLOAT64 : CLOPT_FLOAT32);
}

static void side_init(side *s, const char *spec, const agreement_case *c, double **init) {
    s->ctx = tu_context(spec);
    s->opt = tu_optimizer(s->ctx, configs[c->config]);
    for (int i = 0; i < NVARS; i++) {
        s->vars[i] = tu_var_from_f64(s->ctx, names[i], dtype_of(c, i), ndims[i], shapes[i], init[i]);
        s->grads[i] = tu_var(s->ctx, "grad", dtype_of(c, i), ndims[i], shapes[i], NULL);
    }
    TU_OK(s->ctx, clopt_optimizer_build(s->opt, s->vars, NVARS));
}

/* Compares every variable and every optimizer variable of the two sides. */
static void compare(const side *h, const side *p, int step) {
    char what[160];
    for (int i = 0; i < NVARS; i++) {
        snprintf(what, sizeof what, "step %d variable '%s'", step, names[i]);
        tu_assert_vars_close(p->vars[i], h->vars[i], what);
    }
    size_t n = clopt_optimizer_variable_count(h->opt);
    cr_assert_eq(clopt_optimizer_variable_count(p->opt), n);
    cr_assert_eq(clopt_optimizer_iterations(p->opt), clopt_optimizer_iterations(h->opt));
    for (size_t k = 0; k < n; k++) {
        const char *hn, *pn;
        clopt_variable *hv, *pv;
        TU_OK(h->ctx, clopt_optimizer_variable(h->opt, k, &hn, NULL, &hv));
        TU_OK(p->ctx, clopt_optimizer_variable(p->opt, k, &pn, NULL, &pv));
        cr_assert_str_eq(pn, hn, "variable lists differ at %zu", k);
        cr_assert_eq(!hv, !pv);
        if (!hv) continue;
        snprintf(what, sizeof what, "step %d slot '%s'", step, hn);
        tu_assert_vars_close(pv, hv, what);
    }
}

ParameterizedTest(agreement_case *c, agreement_pocl, host_and_pocl_agree) {
    cr_log_info("config %s, dtype %d", configs[c->config], c->dtype);
    uint64_t rng = 1000 + (uint64_t)c->config * 10 + (uint64_t)(c->dtype + 1);
    double *init[NVARS], *g[NVARS];
    for (int i = 0; i < NVARS; i++) {
        init[i] = malloc((size_t)nelem(i) * sizeof(double));
        g[i] = malloc((size_t)nelem(i) * sizeof(double));
        tu_rand_fill(&rng, init[i], (size_t)nelem(i), -1, 1);
    }
    side h, p;
    side_init(&h, TU_HOST, c, init);
    side_init(&p, TU_POCL, c, init);
    for (int step = 1; step <= STEPS; step++) {
        clopt_variable *hg[NVARS], *pg[NVARS];
        for (int i = 0; i < NVARS; i++) {
            tu_rand_fill(&rng, g[i], (size_t)nelem(i), -1, 1);
            /* A variable with a small gradient now and then (amsgrad's max matters). */
            if (i == 3 && step % 3 == 0)
                for (int64_t j = 0; j < nelem(i); j++) g[i][j] *= 0.01;
            tu_write_f64(h.grads[i], g[i]);
            tu_write_f64(p.grads[i], g[i]);
            int null = i == ALWAYS_NULL || (i == SOMETIMES_NULL && step % 2);
            hg[i] = null ? NULL : h.grads[i];
            pg[i] = null ? NULL : p.grads[i];
        }
        /* Alternate the two ways of naming the variables: the built list, and an explicit
         * list in another order. */
        if (step % 2) {
            TU_OK(h.ctx, clopt_optimizer_apply(h.opt, hg, NULL, NVARS));
            TU_OK(p.ctx, clopt_optimizer_apply(p.opt, pg, NULL, NVARS));
        } else {
            clopt_variable *hv[NVARS], *pv[NVARS], *hgr[NVARS], *pgr[NVARS];
            for (int i = 0; i < NVARS; i++) {
                int j = NVARS - 1 - i;
                hv[i] = h.vars[j], pv[i] = p.vars[j], hgr[i] = hg[j], pgr[i] = pg[j];
            }
            TU_OK(h.ctx, clopt_optimizer_apply(h.opt, hgr, hv, NVARS));
            TU_OK(p.ctx, clopt_optimizer_apply(p.opt, pgr, pv, NVARS));
        }
        if (step == 1 || step == 5 || step == STEPS) compare(&h, &p, step);
    }
    cr_assert_eq(clopt_optimizer_iterations(p.opt), STEPS);
    /* The variable that never had a gradient, and its slots, did not move on either side. */
    for (int s = 0; s < 2; s++) {
        const side *x = s ? &p : &h;
        double *now = tu_read_f64(x->vars[ALWAYS_NULL]);
        for (int64_t j = 0; j < nelem(ALWAYS_NULL); j++) {
            double want = dtype_of(c, ALWAYS_NULL) == CLOPT_FLOAT32 ? (float)init[ALWAYS_NULL][j]
                                                                    : init[ALWAYS_NULL][j];
            cr_assert_eq(now[j], want, "%s: '%s'[%lld] moved without a gradient",
                         s ? "pocl" : "host", names[ALWAYS_NULL], (long long)j);
        }
        free(now);
        size_t n = clopt_optimizer_variable_count(x->opt);
        char prefix[32];
        snprintf(prefix, sizeof prefix, "%s_", names[ALWAYS_NULL]);
        for (size_t k = 0; k < n; k++) {
            const char *nm;
            clopt_variable *v;
            TU_OK(x->ctx, clopt_optimizer_variable(x->opt, k, &nm, NULL, &v));
            if (!v || strncmp(nm, prefix, strlen(prefix)) != 0) continue;
            double *z = tu_read_f64(v);
            for (int64_t j = 0; j < nelem(ALWAYS_NULL); j++)
                cr_assert_eq(z[j], 0.0, "slot '%s' moved without a gradient", nm);
            free(z);
        }
    }
    for (int i = 0; i < NVARS; i++) free(init[i]), free(g[i]);
    clopt_context_destroy(h.ctx);
    clopt_context_destroy(p.ctx);
}
