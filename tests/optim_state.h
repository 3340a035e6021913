/* The whole state of an optimizer as Keras's `variables` list holds it: every entry read with
 * clopt_optimizer_variable_read (the iteration counter, the learning rate, host scalars such as a
 * LossScaleOptimizer's step_counter and dynamic_scale or Nadam's u_product, and the slots), for
 * the tests of LossScaleOptimizer, set_weights / variable_write and stateless_apply.
 * Comparisons are bitwise (on the doubles' bytes), which is what "unchanged" and "exactly the
 * values a normal apply gives" mean there. Not a test source itself. */
#ifndef CLOPT_TEST_OPTIM_STATE_H
#define CLOPT_TEST_OPTIM_STATE_H

#include "test_util.h"

typedef struct os_state {
    size_t n;       /* entries */
    size_t *counts; /* elements per entry */
    double **vals;  /* values per entry */
} os_state;

/* The element count of optimizer variable i (1 for a host scalar). */
static inline size_t os_count(const clopt_optimizer *o, size_t i) {
    clopt_variable *v = NULL;
    cr_assert(clopt_optimizer_variable(o, i, NULL, NULL, &v) == CLOPT_OK);
    return v ? (size_t)clopt_variable_size(v) : 1;
}

/* Buffers shaped as o's variable list, filled with `fill`. */
static inline void os_alloc(os_state *s, const clopt_optimizer *o, double fill) {
    s->n = clopt_optimizer_variable_count(o);
    s->counts = calloc(s->n ? s->n : 1, sizeof *s->counts);
    s->vals = calloc(s->n ? s->n : 1, sizeof *s->vals);
    cr_assert(s->counts && s->vals);
    for (size_t i = 0; i < s->n; i++) {
        s->counts[i] = os_count(o, i);
        s->vals[i] = malloc(s->counts[i] * sizeof(double));
        cr_assert(s->vals[i]);
        for (size_t j = 0; j < s->counts[i]; j++) s->vals[i][j] = fill;
    }
}

/* Reads every entry of o's variable list. */
static inline void os_read(os_state *s, const clopt_optimizer *o) {
    os_alloc(s, o, 0.0);
    for (size_t i = 0; i < s->n; i++) {
        clopt_status st = clopt_optimizer_variable_read(o, i, s->vals[i], s->counts[i]);
        cr_assert(st == CLOPT_OK, "clopt_optimizer_variable_read(%zu) failed: %s", i,
                  clopt_status_name(st));
    }
}

static inline void os_free(os_state *s) {
    for (size_t i = 0; i < s->n; i++) free(s->vals ? s->vals[i] : NULL);
    free(s->vals);
    free(s->counts);
    memset(s, 0, sizeof *s);
}

/* Asserts that entry i of a and b hold the same bits; `o` names the entry in the message. */
static inline void os_assert_entry_same(const os_state *a, const os_state *b, size_t i,
                                        const clopt_optimizer *o, const char *what) {
    const char *name = "?";
    if (o) clopt_optimizer_variable(o, i, &name, NULL, NULL);
    cr_assert_eq(a->counts[i], b->counts[i], "%s: entry %zu (%s) sizes differ", what, i, name);
    for (size_t j = 0; j < a->counts[i]; j++)
        cr_assert(memcmp(&a->vals[i][j], &b->vals[i][j], sizeof(double)) == 0,
                  "%s: optimizer variable %zu (%s) element %zu is %.17g, want %.17g", what, i,
                  name, j, a->vals[i][j], b->vals[i][j]);
}

/* Asserts that every entry of b holds the same bits as a's. With a_off, b's entry i is compared with a's entry a_off + i (a LossScaleOptimizer's inner
 * entries against a plain optimizer's). */
static inline void os_assert_same_from(const os_state *a, size_t a_off, const os_state *b,
                                       const clopt_optimizer *o, const char *what) {
    cr_assert_eq(a->n, a_off + b->n, "%s: %zu entries, want %zu", what, a->n, a_off + b->n);
    for (size_t i = 0; i < b->n; i++) {
        const char *name = "?";
        if (o) clopt_optimizer_variable(o, a_off + i, &name, NULL, NULL);
        cr_assert_eq(a->counts[a_off + i], b->counts[i], "%s: entry %zu (%s) sizes differ", what,
                     a_off + i, name);
        for (size_t j = 0; j < b->counts[i]; j++)
            cr_assert(memcmp(&a->vals[a_off + i][j], &b->vals[i][j], sizeof(double)) == 0,
                      "%s: optimizer variable %zu (%s) element %zu is %.17g, want %.17g", what,
                      a_off + i, name, j, a->vals[a_off + i][j], b->vals[i][j]);
    }
}

static inline void os_assert_same(const os_state *a, const os_state *b, const clopt_optimizer *o,
                                  const char *what) {
    os_assert_same_from(a, 0, b, o, what);
}

/* Asserts that entries agree within the dtype tolerances of test_util.h (host versus OpenCL);
 * host scalars (the counters, the scale) must agree exactly. */
static inline void os_assert_close(const os_state *a, const os_state *b, const clopt_optimizer *o,
                                   clopt_dtype dtype, const char *what) {
    cr_assert_eq(a->n, b->n, "%s: %zu entries, want %zu", what, a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        const char *name = "?";
        clopt_variable *v = NULL;
        clopt_optimizer_variable(o, i, &name, NULL, &v);
        char msg[512];
        snprintf(msg, sizeof msg, "%s: optimizer variable %zu (%s)", what, i, name);
        cr_assert_eq(a->counts[i], b->counts[i], "%s: sizes differ", msg);
        if (v)
            tu_assert_close(a->vals[i], b->vals[i], a->counts[i], tu_rtol(dtype), tu_atol(dtype),
                            msg);
        else
            os_assert_entry_same(a, b, i, o, what);
    }
}


/* The value of a one-element entry. */
static inline double os_scalar(const clopt_optimizer *o, size_t i) {
    double x = NAN;
    clopt_status st = clopt_optimizer_variable_read(o, i, &x, 1);
    cr_assert(st == CLOPT_OK, "clopt_optimizer_variable_read(%zu): %s", i, clopt_status_name(st));
    return x;
}

/* Asserts that two variables hold the same bytes. */
static inline void os_assert_vars_same(const clopt_variable *got, const clopt_variable *want,
                                       const char *what) {
    size_t na, nb;
    unsigned char *a = tu_read_bytes(got, &na), *b = tu_read_bytes(want, &nb);
    cr_assert_eq(na, nb, "%s: sizes differ", what);
    char msg[512];
    snprintf(msg, sizeof msg, "%s ('%s' against '%s')", what, clopt_variable_name(got),
             clopt_variable_name(want));
    tu_assert_same_bytes(a, b, na, msg);
    free(a);
    free(b);
}

#endif
