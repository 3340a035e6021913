/* Host versus OpenCL for variables stored as float16 or bfloat16 (storage formats with float
 * arithmetic on OpenCL, double on the host): the tests of Adafactor and ScheduleFreeAdamW, whose
 * kernels keep intermediate values in their slots. Not a test source itself. */
#ifndef CLOPT_TEST_OPTIM_HALF_H
#define CLOPT_TEST_OPTIM_HALF_H

#include "core/core_internal.h" /* clopt__elem_store / clopt__elem_load */
#include "test_util.h"

#define OH_NVARS 4
static const int oh_ndims[OH_NVARS] = {0, 1, 2, 3};
static const int64_t oh_shapes[OH_NVARS][3] = {{0}, {300}, {17, 33}, {2, 3, 260}};

static inline size_t oh_size(int k) {
    size_t n = 1;
    for (int d = 0; d < oh_ndims[k]; d++) n *= (size_t)oh_shapes[k][d];
    return n;
}

/* Writes n doubles into a variable of any dtype (float16 / bfloat16 rounded to nearest even). */
static inline void oh_write(clopt_variable *v, const double *x, size_t n) {
    const size_t es = clopt_dtype_size(clopt_variable_dtype(v));
    unsigned char *b = malloc(n * es);
    cr_assert(b);
    for (size_t i = 0; i < n; i++) clopt__elem_store(b, clopt_variable_dtype(v), i, x[i]);
    TU_OK(clopt_variable_context(v), clopt_variable_write(v, b, n * es));
    free(b);
}

/* A variable of any dtype as doubles (caller frees). */
static inline double *oh_read(const clopt_variable *v) {
    size_t n = (size_t)clopt_variable_size(v), es = clopt_dtype_size(clopt_variable_dtype(v));
    unsigned char *b = malloc(n * es);
    double *x = malloc(n * sizeof *x);
    cr_assert(b && x);
    TU_OK(clopt_variable_context(v), clopt_variable_read(v, b, n * es));
    for (size_t i = 0; i < n; i++) x[i] = clopt__elem_load(b, clopt_variable_dtype(v), i);
    free(b);
    return x;
}

/* Five steps of `json` on the host and on `dev` over a scalar, a vector, a matrix and a rank-3
 * tensor of `dtype`; the variables and every slot must agree within a few units of the format's
 * precision (the host rounds once per stored value from double, OpenCL from float). */
static inline void oh_agree(const char *dev, const char *json, clopt_dtype dtype) {
    const double tol = dtype == CLOPT_FLOAT16 ? 4e-3 : 3e-2; /* ~8 ulps of 2^-11 / 2^-8 */
    clopt_context *ctx[2] = {tu_context(TU_HOST), tu_context(dev)};
    clopt_variable *vars[2][OH_NVARS], *grads[2][OH_NVARS];
    clopt_optimizer *o[2];
    uint64_t rng = 77;
    double *x[OH_NVARS];
    for (int k = 0; k < OH_NVARS; k++) {
        x[k] = malloc(oh_size(k) * sizeof(double));
        cr_assert(x[k]);
        tu_rand_fill(&rng, x[k], oh_size(k), -1, 1);
    }
    for (int side = 0; side < 2; side++) {
        for (int k = 0; k < OH_NVARS; k++) {
            char name[16];
            snprintf(name, sizeof name, "v%d", k);
            vars[side][k] = tu_var(ctx[side], name, dtype, oh_ndims[k], oh_shapes[k], NULL);
            grads[side][k] = tu_var(ctx[side], "g", dtype, oh_ndims[k], oh_shapes[k], NULL);
            oh_write(vars[side][k], x[k], oh_size(k));
        }
        o[side] = tu_optimizer(ctx[side], json);
    }
    for (int t = 0; t < 5; t++) {
        for (int k = 0; k < OH_NVARS; k++) {
            tu_rand_fill(&rng, x[k], oh_size(k), -1, 1);
            for (int side = 0; side < 2; side++) oh_write(grads[side][k], x[k], oh_size(k));
        }
        for (int side = 0; side < 2; side++)
            TU_OK(ctx[side], clopt_optimizer_apply(o[side], grads[side], vars[side], OH_NVARS));
        char what[160];
        for (int k = 0; k < OH_NVARS; k++) {
            double *h = oh_read(vars[0][k]), *c = oh_read(vars[1][k]);
            snprintf(what, sizeof what, "%s %s step %d: variable v%d", json,
                     clopt_dtype_name(dtype), t, k);
            tu_assert_close(c, h, oh_size(k), tol, tol, what);
            free(h);
            free(c);
        }
        const size_t n = clopt_optimizer_variable_count(o[0]);
        for (size_t i = 0; i < n; i++) {
            clopt_variable *hv, *cv;
            const char *name;
            TU_OK(ctx[0], clopt_optimizer_variable(o[0], i, &name, NULL, &hv));
            TU_OK(ctx[1], clopt_optimizer_variable(o[1], i, NULL, NULL, &cv));
            if (!hv) continue;
            double *h = oh_read(hv), *c = oh_read(cv);
            snprintf(what, sizeof what, "%s %s step %d: %s", json, clopt_dtype_name(dtype), t,
                     name);
            tu_assert_close(c, h, (size_t)clopt_variable_size(hv), tol, tol, what);
            free(h);
            free(c);
        }
    }
    for (int k = 0; k < OH_NVARS; k++) free(x[k]);
    clopt_context_destroy(ctx[0]);
    clopt_context_destroy(ctx[1]);
}

#endif
