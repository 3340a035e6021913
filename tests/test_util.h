/* Shared helpers of clopt's Criterion tests: tolerances (in one place), contexts, variables,
 * comparisons, snapshots of an optimizer's whole state, and a deterministic random generator.
 * Every helper fails the current test with a message (cr_assert) rather than returning errors. */
#ifndef CLOPT_TEST_UTIL_H
#define CLOPT_TEST_UTIL_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "clopt.h"

/* ---- tolerances ----
 *
 * All numeric comparisons use |got - want| <= atol + rtol * |want|, element by element.
 *
 * TU_RTOL_F32 / TU_ATOL_F32: float32 variables. The host backend loads every element into double,
 * computes in double and rounds once when it stores (variable and each slot); the OpenCL kernels
 * compute in float (and the compiler may contract a*b+c into fma), so the two differ by a few
 * float32 ulps (eps = 1.19e-7) per step and per stored value. Ten steps of Adam or SGD on values
 * of order 1 stay below ~20 ulps; 1e-5 relative (about 80 ulps) leaves margin without hiding a
 * wrong formula (a wrong beta, bias correction or sign changes values by 1e-3 or more). The
 * absolute 1e-6 covers values that cross zero (momentum slots).
 *
 * TU_RTOL_F64 / TU_ATOL_F64: float64 variables, where both backends compute in double and
 * differ only by operation order and fma contraction: 1e-12 relative.
 *
 * TU_KERAS_TOL_*: the tolerances of the Keras tests whose published numbers are ported here
 * (keras/src/optimizers/{sgd,adam}_test.py: test_single_step uses rtol=atol=1e-4, the golden trajectories
 * rtol=atol=5e-4; the golden values are printed with 4 decimals). */
#define TU_RTOL_F32 1e-5
#define TU_ATOL_F32 1e-6
#define TU_RTOL_F64 1e-12
#define TU_ATOL_F64 1e-13
#define TU_KERAS_TOL_SINGLE_STEP 1e-4
#define TU_KERAS_TOL_GOLDEN 5e-4

/* ---- leak checks ----
 * Criterion's workers leave without running exit handlers, so LeakSanitizer's check at exit never
 * sees a test's process. Under -fsanitize=address every suite therefore checks for leaks when a
 * test ends (TU_SUITE, or tu_leak_check at the end of a suite's own fini): a clopt object or
 * buffer the test did not release fails the test. Allocations made by the OpenCL stack are
 * suppressed by tests/lsan.supp. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define TU_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/lsan_interface.h>
#define TU_LSAN 1
#endif
#endif

static inline void tu_leak_check(void) {
#ifdef TU_LSAN
    /* An assertion in a fini does not fail the test: crash it instead. */
    if (__lsan_do_recoverable_leak_check() != 0) {
        fprintf(stderr, "LeakSanitizer found leaks at the end of the test (report above)\n");
        abort();
    }
#endif
}

/* Declares a suite whose tests end with a leak check (a no-op without ASan). */
#define TU_SUITE(name) TestSuite(name, .fini = tu_leak_check)

/* The two backends every numeric test runs on. */
#define TU_HOST "host"
#define TU_POCL "pocl:cpu:0"

static inline double tu_rtol(clopt_dtype d) { return d == CLOPT_FLOAT64 ? TU_RTOL_F64 : TU_RTOL_F32; }
static inline double tu_atol(clopt_dtype d) { return d == CLOPT_FLOAT64 ? TU_ATOL_F64 : TU_ATOL_F32; }

/* ---- statuses ---- */

/* Asserts that `expr` returned `want`, printing both names and the context's last error. */
#define TU_ASSERT_STATUS(ctx, expr, want)                                                      \
    do {                                                                                       \
        clopt_status tu_st_ = (expr);                                                          \
        cr_assert(tu_st_ == (want), "%s returned %s, expected %s (last error: %s)", #expr,     \
                  clopt_status_name(tu_st_), clopt_status_name(want),                          \
                  (ctx) ? clopt_context_last_error(ctx) : "-");                                \
    } while (0)

#define TU_OK(ctx, expr) TU_ASSERT_STATUS(ctx, expr, CLOPT_OK)

/* Asserts that the context's last error mentions `needle` (the culprit: a key, a variable). */
static inline void tu_assert_error_mentions(const clopt_context *ctx, const char *needle) {
    const char *e = clopt_context_last_error(ctx);
    cr_assert(e && strstr(e, needle), "last error \"%s\" does not mention \"%s\"", e ? e : "(null)",
              needle);
}

/* ---- contexts ---- */

static inline clopt_context *tu_context(const char *spec) {
    clopt_context *ctx = NULL;
    clopt_status st = clopt_context_create(spec, &ctx);
    cr_assert(st == CLOPT_OK && ctx, "clopt_context_create(\"%s\") failed: %s: %s",
              spec ? spec : "(NULL)", clopt_status_name(st), clopt_last_create_error());
    return ctx;
}

/* ---- variables ---- */

static inline clopt_variable *tu_var(clopt_context *ctx, const char *name, clopt_dtype dtype,
                                     int ndim, const int64_t *shape, const void *init) {
    clopt_variable *v = NULL;
    clopt_status st = clopt_variable_create(ctx, name, dtype, ndim, shape, init, &v);
    cr_assert(st == CLOPT_OK && v, "clopt_variable_create('%s') failed: %s: %s",
              name ? name : "(NULL)", clopt_status_name(st), clopt_context_last_error(ctx));
    return v;
}

/* A 1-D float32 / float64 variable of n elements (init may be NULL: zeros). */
static inline clopt_variable *tu_var_f32(clopt_context *ctx, const char *name, int64_t n,
                                         const float *init) {
    return tu_var(ctx, name, CLOPT_FLOAT32, 1, &n, init);
}
static inline clopt_variable *tu_var_f64(clopt_context *ctx, const char *name, int64_t n,
                                         const double *init) {
    return tu_var(ctx, name, CLOPT_FLOAT64, 1, &n, init);
}

/* A variable of `dtype` holding `vals` (converted from double). */
static inline clopt_variable *tu_var_from_f64(clopt_context *ctx, const char *name,
                                              clopt_dtype dtype, int ndim, const int64_t *shape,
                                              const double *vals) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    if (dtype == CLOPT_FLOAT64) return tu_var(ctx, name, dtype, ndim, shape, vals);
    cr_assert(dtype == CLOPT_FLOAT32, "tu_var_from_f64: float32 or float64 only");
    float *f = malloc((size_t)n * sizeof *f);
    cr_assert(f);
    for (int64_t i = 0; i < n; i++) f[i] = (float)vals[i];
    clopt_variable *v = tu_var(ctx, name, dtype, ndim, shape, f);
    free(f);
    return v;
}

/* Overwrites a float32 or float64 variable with `vals` (converted from double). */
static inline void tu_write_f64(clopt_variable *v, const double *vals) {
    int64_t n = clopt_variable_size(v);
    clopt_context *ctx = clopt_variable_context(v);
    if (clopt_variable_dtype(v) == CLOPT_FLOAT64) {
        TU_OK(ctx, clopt_variable_write(v, vals, (size_t)n * sizeof(double)));
        return;
    }
    float *f = malloc((size_t)n * sizeof *f);
    cr_assert(f);
    for (int64_t i = 0; i < n; i++) f[i] = (float)vals[i];
    clopt_status st = clopt_variable_write(v, f, (size_t)n * sizeof *f);
    free(f);
    TU_OK(ctx, st);
}

/* Reads a float32 or float64 variable into a new array of doubles (caller frees). */
static inline double *tu_read_f64(const clopt_variable *v) {
    int64_t n = clopt_variable_size(v);
    clopt_dtype d = clopt_variable_dtype(v);
    clopt_context *ctx = clopt_variable_context(v);
    double *out = malloc((size_t)(n ? n : 1) * sizeof *out);
    cr_assert(out);
    if (d == CLOPT_FLOAT64) {
        TU_OK(ctx, clopt_variable_read(v, out, (size_t)n * sizeof *out));
    } else {
        cr_assert(d == CLOPT_FLOAT32, "tu_read_f64: float32 or float64 only");
        float *f = malloc((size_t)(n ? n : 1) * sizeof *f);
        cr_assert(f);
        clopt_status st = clopt_variable_read(v, f, (size_t)n * sizeof *f);
        for (int64_t i = 0; st == CLOPT_OK && i < n; i++) out[i] = f[i];
        free(f);
        TU_OK(ctx, st);
    }
    return out;
}

/* Reads a variable's raw bytes into a new buffer (caller frees); *nbytes gets the size. */
static inline unsigned char *tu_read_bytes(const clopt_variable *v, size_t *nbytes) {
    size_t n = (size_t)clopt_variable_size(v) * clopt_dtype_size(clopt_variable_dtype(v));
    unsigned char *b = malloc(n ? n : 1);
    cr_assert(b);
    TU_OK(clopt_variable_context(v), clopt_variable_read(v, b, n));
    if (nbytes) *nbytes = n;
    return b;
}

/* ---- comparisons ---- */

/* Asserts got[i] ~ want[i] for every i; the message names `what` and the first bad index. */
static inline void tu_assert_close(const double *got, const double *want, size_t n, double rtol,
                                   double atol, const char *what) {
    for (size_t i = 0; i < n; i++) {
        double tol = atol + rtol * fabs(want[i]);
        cr_assert(fabs(got[i] - want[i]) <= tol && !isnan(got[i]) == !isnan(want[i]),
                  "%s[%zu]: got %.17g, want %.17g (diff %.3g > tol %.3g)", what, i, got[i],
                  want[i], fabs(got[i] - want[i]), tol);
    }
}

/* Asserts that a variable holds `want` within tolerance. */
static inline void tu_assert_var_close(const clopt_variable *v, const double *want, double rtol,
                                       double atol, const char *what) {
    double *got = tu_read_f64(v);
    tu_assert_close(got, want, (size_t)clopt_variable_size(v), rtol, atol, what);
    free(got);
}

/* Asserts that two variables (any contexts) hold close values, with the dtype's tolerance. */
static inline void tu_assert_vars_close(const clopt_variable *got, const clopt_variable *want,
                                        const char *what) {
    cr_assert_eq(clopt_variable_size(got), clopt_variable_size(want), "%s: sizes differ", what);
    cr_assert_eq(clopt_variable_dtype(got), clopt_variable_dtype(want), "%s: dtypes differ",
                 what);
    double *w = tu_read_f64(want);
    clopt_dtype d = clopt_variable_dtype(got);
    tu_assert_var_close(got, w, tu_rtol(d), tu_atol(d), what);
    free(w);
}

/* Asserts byte equality and names the first differing byte. */
static inline void tu_assert_same_bytes(const void *got, const void *want, size_t n,
                                        const char *what) {
    const unsigned char *a = got, *b = want;
    for (size_t i = 0; i < n; i++)
        cr_assert(a[i] == b[i], "%s: byte %zu differs (0x%02x, want 0x%02x)", what, i, a[i],
                  b[i]);
}

/* Asserts that v still holds `bytes` (nbytes of them, as tu_read_bytes gave); the message says
 * "<what>: variable '<name>' changed". */
static inline void tu_assert_var_bytes_unchanged(const clopt_variable *v,
                                                 const unsigned char *bytes, size_t nbytes,
                                                 const char *what) {
    char msg[512];
    size_t nb;
    unsigned char *now = tu_read_bytes(v, &nb);
    cr_assert_eq(nb, nbytes);
    snprintf(msg, sizeof msg, "%s: variable '%s' changed", what, clopt_variable_name(v));
    tu_assert_same_bytes(now, bytes, nb, msg);
    free(now);
}

/* ---- optimizers ---- */

static inline clopt_optimizer *tu_optimizer(clopt_context *ctx, const char *json) {
    clopt_optimizer *o = NULL;
    clopt_status st = clopt_optimizer_from_config(ctx, json, &o);
    cr_assert(st == CLOPT_OK && o, "clopt_optimizer_from_config(%s) failed: %s: %s", json,
              clopt_status_name(st), clopt_context_last_error(ctx));
    return o;
}

/* The index of the first entry named `name` in an optimizer's variable list (Keras's
 * `variables`); fails the test if absent. */
static inline size_t tu_optimizer_variable_index(const clopt_optimizer *o, const char *name) {
    size_t n = clopt_optimizer_variable_count(o);
    for (size_t i = 0; i < n; i++) {
        const char *nm = NULL;
        cr_assert(clopt_optimizer_variable(o, i, &nm, NULL, NULL) == CLOPT_OK);
        if (strcmp(nm, name) == 0) return i;
    }
    cr_assert_fail("the optimizer has no variable named '%s'", name);
    return 0;
}

/* The slot variable `name` of an optimizer (e.g. "var0_momentum"); fails the test if absent. */
static inline clopt_variable *tu_slot(const clopt_optimizer *o, const char *name) {
    const size_t i = tu_optimizer_variable_index(o, name);
    clopt_variable *v = NULL;
    cr_assert(clopt_optimizer_variable(o, i, NULL, NULL, &v) == CLOPT_OK);
    cr_assert(v, "optimizer variable '%s' has no device variable", name);
    return v;
}

/* ---- snapshots: "nothing changed" ----
 * The bytes of some user variables, of every slot variable of an optimizer, and its iteration
 * count and learning rate. */
typedef struct tu_snapshot {
    size_t n;
    const clopt_variable *vars[64];
    unsigned char *bytes[64];
    size_t nbytes[64];
    int64_t iterations;
    double lr;
    size_t nvariables;
} tu_snapshot;

static inline void tu_snapshot_take(tu_snapshot *s, const clopt_optimizer *o,
                                    clopt_variable *const *vars, size_t nvars) {
    memset(s, 0, sizeof *s);
    for (size_t i = 0; i < nvars; i++) s->vars[s->n++] = vars[i];
    if (o) {
        size_t n = clopt_optimizer_variable_count(o);
        for (size_t i = 0; i < n; i++) {
            clopt_variable *v = NULL;
            cr_assert(clopt_optimizer_variable(o, i, NULL, NULL, &v) == CLOPT_OK);
            if (v) {
                cr_assert(s->n < 64, "tu_snapshot: too many variables");
                s->vars[s->n++] = v;
            }
        }
        s->iterations = clopt_optimizer_iterations(o);
        cr_assert(clopt_optimizer_get_learning_rate(o, &s->lr) == CLOPT_OK);
        s->nvariables = n;
    }
    for (size_t i = 0; i < s->n; i++) s->bytes[i] = tu_read_bytes(s->vars[i], &s->nbytes[i]);
}

/* Asserts that every variable, slot and counter is as when the snapshot was taken. */
static inline void tu_snapshot_assert_same(const tu_snapshot *s, const clopt_optimizer *o,
                                           const char *what) {
    for (size_t i = 0; i < s->n; i++)
        tu_assert_var_bytes_unchanged(s->vars[i], s->bytes[i], s->nbytes[i], what);
    if (o) {
        double lr;
        cr_assert_eq(clopt_optimizer_iterations(o), s->iterations,
                     "%s: iterations changed from %lld to %lld", what, (long long)s->iterations,
                     (long long)clopt_optimizer_iterations(o));
        cr_assert(clopt_optimizer_get_learning_rate(o, &lr) == CLOPT_OK);
        cr_assert_eq(lr, s->lr, "%s: learning rate changed", what);
        cr_assert_eq(clopt_optimizer_variable_count(o), s->nvariables,
                     "%s: the optimizer's variable list changed", what);
    }
}

static inline void tu_snapshot_free(tu_snapshot *s) {
    for (size_t i = 0; i < s->n; i++) free(s->bytes[i]);
    memset(s, 0, sizeof *s);
}

/* ---- deterministic random numbers (splitmix64) ---- */

static inline uint64_t tu_rand_u64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi). */
static inline double tu_rand_uniform(uint64_t *state, double lo, double hi) {
    return lo + (hi - lo) * ((double)(tu_rand_u64(state) >> 11) * 0x1.0p-53);
}

static inline void tu_rand_fill(uint64_t *state, double *x, size_t n, double lo, double hi) {
    for (size_t i = 0; i < n; i++) x[i] = tu_rand_uniform(state, lo, hi);
}

#endif
