/* The strategy and the mirrored optimizer (include/clopt/distribute.h): Keras's distributed
 * golden test, the Keras 3 on TF order (each replica's pipeline, then the sum) against a
 * single-context reference, replicas bitwise identical, and bad input changing nothing.
 * CTest runs these with POCL_DEVICES="pthread pthread": two OpenCL devices. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "clopt/distribute.h"
#include "test_util.h"
#include "../examples/adabelief.h"

TU_SUITE(dist_host);
TU_SUITE(dist_pocl);

#define POCL2 "pocl:cpu:0,pocl:cpu:1"

static clopt_strategy *strategy(const char *devices) {
    clopt_strategy *s = NULL;
    clopt_status st = clopt_strategy_create(devices, &s);
    cr_assert(st == CLOPT_OK && s, "clopt_strategy_create(%s): %s: %s", devices,
              clopt_status_name(st), clopt_last_create_error());
    return s;
}

static clopt_mirrored_optimizer *mirrored(clopt_strategy *s, const char *json) {
    clopt_mirrored_optimizer *m = NULL;
    clopt_status st = clopt_strategy_optimizer_from_config(s, json, &m);
    cr_assert(st == CLOPT_OK, "optimizer_from_config: %s: %s", clopt_status_name(st),
              clopt_strategy_last_error(s));
    return m;
}

#define S_OK(s, expr)                                                                          \
    do {                                                                                       \
        clopt_status st_ = (expr);                                                             \
        cr_assert(st_ == CLOPT_OK, "%s: %s: %s", #expr, clopt_status_name(st_),                \
                  clopt_strategy_last_error(s));                                               \
    } while (0)

static float *read_f32(const clopt_variable *v) {
    const size_t n = (size_t)clopt_variable_size(v);
    float *x = malloc(n * sizeof *x);
    cr_assert(x);
    cr_assert(clopt_variable_read(v, x, n * sizeof *x) == CLOPT_OK);
    return x;
}

/* Every replica's variables and optimizer slots equal replica 0's, bit for bit; but for the
 * gradient accumulators, which are each replica's own (Keras's
 * _backend_increment_gradient_accumulators updates each replica's copy with its own gradients). */
static void assert_replicas_identical(clopt_mirrored_optimizer *m, clopt_variable **vars,
                                      size_t nvars, size_t nrep) {
    for (size_t r = 1; r < nrep; r++) {
        for (size_t i = 0; i < nvars; i++) {
            size_t a, b;
            unsigned char *x = tu_read_bytes(vars[i], &a), *y = tu_read_bytes(vars[r * nvars + i], &b);
            cr_assert(a == b && memcmp(x, y, a) == 0, "replica %zu's variable %zu differs", r, i);
            free(x);
            free(y);
        }
        clopt_optimizer *o0 = clopt_mirrored_optimizer_replica(m, 0),
                        *o = clopt_mirrored_optimizer_replica(m, r);
        cr_assert_eq(clopt_optimizer_iterations(o0), clopt_optimizer_iterations(o));
        const size_t n = clopt_optimizer_variable_count(o0);
        cr_assert_eq(n, clopt_optimizer_variable_count(o));
        for (size_t k = 0; k < n; k++) {
            clopt_variable *v0, *v;
            const char *name;
            cr_assert(clopt_optimizer_variable(o0, k, &name, NULL, &v0) == CLOPT_OK);
            cr_assert(clopt_optimizer_variable(o, k, NULL, NULL, &v) == CLOPT_OK);
            if (!v0 || strstr(name, "_gradient_accumulator")) continue;
            size_t a, b;
            unsigned char *x = tu_read_bytes(v0, &a), *y = tu_read_bytes(v, &b);
            cr_assert(a == b && memcmp(x, y, a) == 0, "replica %zu's slot '%s' differs", r, name);
            free(x);
            free(y);
        }
    }
}

/* A mirrored 1-D float32 variable v (init), each replica's gradient g (grad) and an optimizer
 * from `json`, after its first step. */
static clopt_mirrored_optimizer *first_step(clopt_strategy *s, int64_t n, const float *init,
                                              const float *grad, const char *json,
                                              clopt_variable **v, clopt_variable **g) {
    S_OK(s, clopt_strategy_variable_create(s, "v", CLOPT_FLOAT32, 1, &n, init, v));
    for (size_t r = 0; r < clopt_strategy_num_replicas(s); r++)
        g[r] = tu_var_f32(clopt_strategy_context(s, r), "g", n, grad);
    clopt_mirrored_optimizer *m = mirrored(s, json);
    S_OK(s, clopt_mirrored_optimizer_apply(m, g, clopt_strategy_num_replicas(s), v, 1));
    return m;
}

/* ---- Keras's golden test (optimizer_distribute_test.py, test_single_step) ---- */

static void golden(const char *devices) {
    clopt_strategy *s = strategy(devices);
    cr_assert_eq(clopt_strategy_num_replicas(s), 2);
    cr_assert_float_eq(clopt_strategy_loss_scale(s), 0.5, 0);
    const float init[4] = {1, 2, 3, 4}, grad[4] = {1, 6, 7, 2};
    clopt_variable *v[2], *g[2];
    clopt_mirrored_optimizer *m = first_step(
        s, 4, init, grad,
        "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.5, \"momentum\": 0.06}}", v,
        g);
    const float want[4] = {0, -4, -4, 2};
    for (size_t r = 0; r < 2; r++) {
        float *x = read_f32(v[r]);
        for (int i = 0; i < 4; i++)
            cr_assert_eq(x[i], want[i], "replica %zu [%d]: %g, want %g", r, i, x[i], want[i]);
        free(x);
    }
    cr_assert_eq(clopt_mirrored_optimizer_iterations(m), 1);
    assert_replicas_identical(m, v, 1, 2);
    clopt_strategy_destroy(s); /* destroys m too */
}

Test(dist_host, keras_golden_two_replicas) { golden("host,host"); }
Test(dist_pocl, keras_golden_two_devices) { golden(POCL2); }

/* ---- Keras's order against a single-context reference ----
 *
 * The reference runs on one host context: each replica's pipeline (unscale, accumulate, clip)
 * through a probe, SGD(learning_rate=1) with the case's pipeline options on a zero variable, so
 * the probe ends at minus the processed gradient, exactly; then the float sum in replica order;
 * then the class's update without the pipeline options over that sum. With accumulation the
 * reference optimizer accumulates too (zeros between update steps, then twice the sum, which
 * its 1/2 brings back exactly), so that its iteration count matches Keras's. */

typedef struct parity_case {
    const char *cls;  /* class */
    const char *own;  /* keys of the distributed optimizer and the reference, not the probe */
    const char *pipe; /* pipeline keys: the distributed optimizer and the probe */
    int accum;        /* gradient_accumulation_steps (in pipe), 0 for none */
} parity_case;

#define NV 2
static const int64_t sizes[NV] = {5, 300};

static char *config(const char *cls, const char *a, const char *b, const char *c) {
    char *j = malloc(1024);
    cr_assert(j);
    snprintf(j, 1024, "{\"class_name\": \"%s\", \"config\": {%s%s%s%s%s}}", cls, a,
             *b ? ", " : "", b, *c ? ", " : "", c);
    return j;
}

/* Deterministic per-(step, replica, variable, element) values; larger on replica 1 so that
 * clipping each replica differs from clipping the sum. */
static float grad_at(int step, size_t r, size_t i, int64_t e) {
    const unsigned h = (unsigned)(step * 7919 + (int)r * 104729 + (int)i * 1299709 + (int)e * 31);
    const float x = (float)((h * 2654435761u) >> 8) / (float)(1u << 24) - 0.5f;
    return x * (r == 1 ? 8.0f : 1.0f) * (step == 2 && r == 0 && i == 1 ? 0.0f : 1.0f);
}

static void fill_grad(clopt_variable *g, int step, size_t r, size_t i) {
    const int64_t n = clopt_variable_size(g);
    float *x = malloc((size_t)n * sizeof *x);
    cr_assert(x);
    for (int64_t e = 0; e < n; e++) x[e] = grad_at(step, r, i, e);
    cr_assert(clopt_variable_write(g, x, (size_t)n * sizeof *x) == CLOPT_OK);
    free(x);
}

static float init_at(size_t i, int64_t e) { return 0.25f * (float)((e + 3 * (int64_t)i) % 9) - 1.0f; }

/* Runs `steps` steps of case c with n replicas on `devices` and of the reference; returns the
 * largest difference between replica 0 and the reference (0 when bitwise equal). */
static double parity(const parity_case *c, clopt_strategy *s, int steps) {
    const size_t n = clopt_strategy_num_replicas(s);
    clopt_context *host = tu_context("host");
    char *jd = config(c->cls, "\"learning_rate\": 0.01", c->own, c->pipe);
    char *jr = config(c->cls, "\"learning_rate\": 0.01", c->own,
                      c->accum ? "\"gradient_accumulation_steps\": 2" : "");
    char *jp = config("SGD", "\"learning_rate\": 1.0", c->pipe, "");
    clopt_mirrored_optimizer *m = mirrored(s, jd);
    clopt_optimizer *ref, *probe[4];
    TU_OK(host, clopt_optimizer_from_config(host, jr, &ref));
    clopt_variable *v[4 * NV], *g[4 * NV], *rv[NV], *rg[NV], *pv[4 * NV], *pg[4 * NV];
    for (size_t i = 0; i < NV; i++) {
        float *x = malloc((size_t)sizes[i] * sizeof *x);
        for (int64_t e = 0; e < sizes[i]; e++) x[e] = init_at(i, e);
        clopt_variable *mv[64];
        S_OK(s, clopt_strategy_variable_create(s, i ? "b" : "a", CLOPT_FLOAT32, 1, &sizes[i], x,
                                               mv));
        for (size_t r = 0; r < n; r++) v[r * NV + i] = mv[r];
        rv[i] = tu_var_f32(host, i ? "b" : "a", sizes[i], x);
        rg[i] = tu_var_f32(host, "rg", sizes[i], NULL);
        free(x);
    }
    for (size_t r = 0; r < n; r++) {
        TU_OK(host, clopt_optimizer_from_config(host, jp, &probe[r]));
        for (size_t i = 0; i < NV; i++) {
            g[r * NV + i] = tu_var_f32(clopt_strategy_context(s, r), "g", sizes[i], NULL);
            pv[r * NV + i] = tu_var_f32(host, "p", sizes[i], NULL);
            pg[r * NV + i] = tu_var_f32(host, "pg", sizes[i], NULL);
        }
    }
    for (int t = 0; t < steps; t++) {
        float sum[NV][300];
        memset(sum, 0, sizeof sum);
        for (size_t r = 0; r < n; r++) {
            for (size_t i = 0; i < NV; i++) {
                fill_grad(g[r * NV + i], t, r, i);
                fill_grad(pg[r * NV + i], t, r, i);
                float zero[300] = {0};
                cr_assert(clopt_variable_write(pv[r * NV + i], zero,
                                               (size_t)sizes[i] * sizeof(float)) == CLOPT_OK);
            }
            TU_OK(host, clopt_optimizer_apply(probe[r], &pg[r * NV], &pv[r * NV], NV));
            for (size_t i = 0; i < NV; i++) {
                float *p = read_f32(pv[r * NV + i]);
                for (int64_t e = 0; e < sizes[i]; e++) sum[i][e] += -p[e];
                free(p);
            }
        }
        const int update = !c->accum || (t + 1) % c->accum == 0;
        for (size_t i = 0; i < NV; i++) {
            if (c->accum)
                for (int64_t e = 0; e < sizes[i]; e++) sum[i][e] = update ? 2 * sum[i][e] : 0;
            cr_assert(clopt_variable_write(rg[i], sum[i], (size_t)sizes[i] * sizeof(float)) ==
                      CLOPT_OK);
        }
        TU_OK(host, clopt_optimizer_apply(ref, rg, rv, NV));
        S_OK(s, clopt_mirrored_optimizer_apply(m, g, n, v, NV));
        cr_assert_eq(clopt_mirrored_optimizer_iterations(m), clopt_optimizer_iterations(ref),
                     "%s {%s %s}, %zu replicas, step %d", c->cls, c->own, c->pipe, n, t);
        assert_replicas_identical(m, v, NV, n);
    }
    double worst = 0;
    for (size_t i = 0; i < NV; i++) {
        float *a = read_f32(v[i]), *b = read_f32(rv[i]);
        for (int64_t e = 0; e < sizes[i]; e++) {
            const double d = fabs((double)a[e] - (double)b[e]);
            if (d > worst || isnan(d)) worst = isnan(d) ? INFINITY : d;
        }
        free(a);
        free(b);
    }
    clopt_strategy_destroy(s);
    clopt_context_destroy(host);
    free(jd);
    free(jr);
    free(jp);
    return worst;
}

static const parity_case cases[] = {
    {"SGD", "\"momentum\": 0.9", "", 0},
    {"SGD", "\"momentum\": 0.9", "\"clipnorm\": 0.5", 0},
    {"Adam", "", "\"global_clipnorm\": 0.7", 0},
    {"Adam", "", "\"clipvalue\": 0.05", 0},
    {"Adam", "", "\"gradient_accumulation_steps\": 2", 2},
    {"RMSprop", "", "\"loss_scale_factor\": 4.0", 0},
    {"AdamW", "\"weight_decay\": 0.1", "\"clipnorm\": 0.3", 0},
    {"Adam", "",
     "\"clipnorm\": 0.4, \"gradient_accumulation_steps\": 2, \"loss_scale_factor\": 2.0", 2},
    /* Classes with passes of their own (statistics, factored moments) read the reduced sum too. */
    {"Lamb", "", "\"global_clipnorm\": 0.7", 0},
    {"Adafactor", "", "\"clipnorm\": 0.5", 0},
    {"Lion", "", "\"clipvalue\": 0.05", 0},
    {"Adagrad", "", "\"loss_scale_factor\": 4.0", 0},
};
#define NCASES (sizeof cases / sizeof cases[0])

Test(dist_host, keras_order_bitwise_1_to_4_replicas) {
    const char *dev[4] = {"host", "host,host", "host,host,host", "host,host,host,host"};
    for (size_t k = 0; k < NCASES; k++) {
        for (int n = 0; n < 4; n++) {
            const double d = parity(&cases[k], strategy(dev[n]), 4);
            cr_assert(d == 0, "%s {%s %s} on %d host replicas: differs from the reference by %g",
                      cases[k].cls, cases[k].own, cases[k].pipe, n + 1, d);
            /* The same replicas sharing one context (clopt_strategy_create_replicated). */
            clopt_strategy *one = NULL;
            cr_assert(clopt_strategy_create_replicated("host", (size_t)n + 1, &one) == CLOPT_OK);
            const double d1 = parity(&cases[k], one, 4);
            cr_assert(d1 == 0, "%s {%s %s}, %d replicas on one context: differs by %g",
                      cases[k].cls, cases[k].own, cases[k].pipe, n + 1, d1);
        }
    }
}

Test(dist_pocl, keras_order_two_devices) {
    for (size_t k = 0; k < NCASES; k++) {
        const double d = parity(&cases[k], strategy(POCL2), 4);
        cr_assert(d < 1e-5, "%s {%s %s} on 2 POCL devices: differs from the host reference by %g",
                  cases[k].cls, cases[k].own, cases[k].pipe, d);
    }
}

/* A program's class (examples/adabelief.h, registered) runs mirrored as the built-in ones do:
 * each replica's pipeline, the sum, the class's rule on every replica alike. */
static const parity_case custom_cases[] = {
    {"AdaBelief", "", "\"clipnorm\": 0.5", 0},
    {"AdaBelief", "\"weight_decay\": 0.1", "\"gradient_accumulation_steps\": 2", 2},
    {"AdaBelief", "", "\"loss_scale_factor\": 4.0, \"clipvalue\": 0.05", 0},
};

static void register_adabelief(void) {
    const clopt_optimizer_class_desc d = adabelief_class();
    const clopt_status st = clopt_optimizer_class_register(&d);
    cr_assert(st == CLOPT_OK, "register AdaBelief: %s: %s", clopt_status_name(st),
              clopt_class_last_error());
}

Test(dist_host, custom_class_keras_order_bitwise) {
    register_adabelief();
    const char *dev[3] = {"host", "host,host", "host,host,host"};
    for (size_t k = 0; k < sizeof custom_cases / sizeof *custom_cases; k++)
        for (int n = 0; n < 3; n++) {
            const double d = parity(&custom_cases[k], strategy(dev[n]), 4);
            cr_assert(d == 0, "AdaBelief {%s %s} on %d host replicas: differs by %g",
                      custom_cases[k].own, custom_cases[k].pipe, n + 1, d);
        }
}

Test(dist_pocl, custom_class_two_devices) {
    register_adabelief();
    for (size_t k = 0; k < sizeof custom_cases / sizeof *custom_cases; k++) {
        const double d = parity(&custom_cases[k], strategy(POCL2), 4);
        cr_assert(d < 1e-5, "AdaBelief {%s %s} on 2 POCL devices: differs from the host "
                  "reference by %g", custom_cases[k].own, custom_cases[k].pipe, d);
    }
}

/* The order matters in these cases: clipping the sum instead gives other numbers. */
Test(dist_host, clipping_the_sum_differs) {
    clopt_strategy *s = strategy("host,host");
    const float init[4] = {0, 0, 0, 0}, g0[4] = {1, 0, 0, 0}, g1[4] = {0, 3, 0, 0};
    const int64_t shape = 4;
    clopt_variable *v[2], *g[2];
    S_OK(s, clopt_strategy_variable_create(s, "v", CLOPT_FLOAT32, 1, &shape, init, v));
    g[0] = tu_var_f32(clopt_strategy_context(s, 0), "g", 4, g0);
    g[1] = tu_var_f32(clopt_strategy_context(s, 1), "g", 4, g1);
    clopt_mirrored_optimizer *m = mirrored(
        s, "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 1.0, \"clipnorm\": 1.0}}");
    S_OK(s, clopt_mirrored_optimizer_apply(m, g, 2, v, 1));
    float *x = read_f32(v[1]);
    /* Each clipped to norm 1, then summed: [1, 1]; the sum clipped would be [0.316, 0.949]. */
    cr_assert_eq(x[0], -1.0f);
    cr_assert_eq(x[1], -1.0f);
    free(x);
    clopt_strategy_destroy(s);
}

Test(dist_host, mean_divides_the_sum) {
    clopt_strategy *s = strategy("host,host,host,host");
    const float init[2] = {0, 0}, gr[2] = {1, 2};
    const int64_t shape = 2;
    clopt_variable *v[4], *g[4];
    S_OK(s, clopt_strategy_variable_create(s, "v", CLOPT_FLOAT32, 1, &shape, init, v));
    for (size_t r = 0; r < 4; r++) g[r] = tu_var_f32(clopt_strategy_context(s, r), "g", 2, gr);
    clopt_mirrored_optimizer *m =
        mirrored(s, "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 1.0}}");
    cr_assert_eq(clopt_mirrored_optimizer_set_reduction(m, (clopt_reduction)7),
                 CLOPT_ERR_INVALID_ARGUMENT);
    S_OK(s, clopt_mirrored_optimizer_set_reduction(m, CLOPT_REDUCE_MEAN));
    S_OK(s, clopt_mirrored_optimizer_apply(m, g, 4, v, 1));
    float *x = read_f32(v[3]);
    cr_assert_eq(x[0], -1.0f);
    cr_assert_eq(x[1], -2.0f);
    free(x);
    cr_assert_float_eq(clopt_strategy_loss_scale(s), 0.25, 0);
    clopt_strategy_destroy(s);
}

/* ---- bad input: a specific status, a message naming the culprit, nothing changed ---- */

static void assert_error_mentions(const clopt_strategy *s, const char *needle) {
    const char *e = clopt_strategy_last_error(s);
    cr_assert(strstr(e, needle), "last error \"%s\" does not mention \"%s\"", e, needle);
}

/* Two host replicas built and stepped once; returns the state to compare against. */
typedef struct fixture {
    clopt_strategy *s;
    clopt_mirrored_optimizer *m;
    clopt_variable *v[4], *g[4];
} fixture;

static fixture make_fixture(const char *devices) {
    fixture f;
    f.s = strategy(devices);
    const float a[3] = {1, 2, 3}, b[2] = {4, 5};
    const int64_t sa = 3, sb = 2;
    clopt_variable *va[2], *vb[2];
    S_OK(f.s, clopt_strategy_variable_create(f.s, "a", CLOPT_FLOAT32, 1, &sa, a, va));
    S_OK(f.s, clopt_strategy_variable_create(f.s, "b", CLOPT_FLOAT32, 1, &sb, b, vb));
    for (size_t r = 0; r < 2; r++) {
        clopt_context *ctx = clopt_strategy_context(f.s, r);
        f.v[2 * r] = va[r];
        f.v[2 * r + 1] = vb[r];
        f.g[2 * r] = tu_var_f32(ctx, "ga", 3, a);
        f.g[2 * r + 1] = tu_var_f32(ctx, "gb", 2, b);
    }
    f.m = mirrored(f.s, "{\"class_name\": \"Adam\", \"config\": {\"learning_rate\": 0.1}}");
    S_OK(f.s, clopt_mirrored_optimizer_apply(f.m, f.g, 2, f.v, 2));
    return f;
}

/* The replicas' variables and slots as bytes, to compare before and after a failed call. */
static size_t snapshot(const fixture *f, unsigned char *out, size_t cap) {
    size_t at = 0;
    for (size_t r = 0; r < 2; r++) {
        clopt_optimizer *o = clopt_mirrored_optimizer_replica(f->m, r);
        for (size_t k = 0; k < clopt_optimizer_variable_count(o); k++) {
            clopt_variable *v;
            cr_assert(clopt_optimizer_variable(o, k, NULL, NULL, &v) == CLOPT_OK);
            if (!v) continue;
            size_t nb;
            unsigned char *x = tu_read_bytes(v, &nb);
            cr_assert(at + nb <= cap);
            memcpy(out + at, x, nb);
            at += nb;
            free(x);
        }
        for (size_t i = 0; i < 2; i++) {
            size_t nb;
            unsigned char *x = tu_read_bytes(f->v[2 * r + i], &nb);
            cr_assert(at + nb <= cap);
            memcpy(out + at, x, nb);
            at += nb;
            free(x);
        }
    }
    return at;
}

static void assert_unchanged(const fixture *f, const unsigned char *before, size_t n) {
    unsigned char after[4096];
    cr_assert_eq(snapshot(f, after, sizeof after), n);
    cr_assert(memcmp(before, after, n) == 0, "a failed call changed a replica");
    cr_assert_eq(clopt_mirrored_optimizer_iterations(f->m), 1);
    cr_assert_eq(clopt_optimizer_iterations(clopt_mirrored_optimizer_replica(f->m, 1)), 1);
}

static void bad_input(const char *devices) {
    fixture f = make_fixture(devices);
    unsigned char before[4096];
    const size_t n = snapshot(&f, before, sizeof before);

    cr_assert_eq(clopt_mirrored_optimizer_apply(f.m, f.g, 3, f.v, 2), CLOPT_ERR_LENGTH_MISMATCH);
    assert_error_mentions(f.s, "3 replicas");
    assert_unchanged(&f, before, n);

    cr_assert_eq(clopt_mirrored_optimizer_apply(f.m, NULL, 2, f.v, 2),
                 CLOPT_ERR_INVALID_ARGUMENT);

    clopt_variable *g[4];
    memcpy(g, f.g, sizeof g);
    g[3] = f.g[1]; /* replica 1's second gradient lives on replica 0 */
    cr_assert_eq(clopt_mirrored_optimizer_apply(f.m, g, 2, f.v, 2), CLOPT_ERR_CONTEXT_MISMATCH);
    assert_error_mentions(f.s, "belongs to replica 0");
    assert_unchanged(&f, before, n);

    memcpy(g, f.g, sizeof g);
    g[3] = NULL; /* missing on replica 1 only */
    cr_assert_eq(clopt_mirrored_optimizer_apply(f.m, g, 2, f.v, 2), CLOPT_ERR_INVALID_ARGUMENT);
    assert_error_mentions(f.s, "missing on replica 1");
    assert_unchanged(&f, before, n);

    memcpy(g, f.g, sizeof g);
    g[0] = NULL; /* missing on replica 0 only */
    cr_assert_eq(clopt_mirrored_optimizer_apply(f.m, g, 2, f.v, 2), CLOPT_ERR_INVALID_ARGUMENT);
    assert_error_mentions(f.s, "missing on replica 0");
    assert_unchanged(&f, before, n);

    memcpy(g, f.g, sizeof g);
    g[2] = f.g[3]; /* replica 1: a gradient of the wrong shape (checked by replica 1) */
    cr_assert_eq(clopt_mirrored_optimizer_apply(f.m, g, 2, f.v, 2), CLOPT_ERR_SHAPE_MISMATCH);
    assert_error_mentions(f.s, "replica 1");
    assert_unchanged(&f, before, n);

    /* Missing on every replica alike is fine: only b moves. */
    memcpy(g, f.g, sizeof g);
    g[0] = g[2] = NULL;
    S_OK(f.s, clopt_mirrored_optimizer_apply(f.m, g, 2, f.v, 2));
    cr_assert_eq(clopt_mirrored_optimizer_iterations(f.m), 2);
    assert_replicas_identical(f.m, f.v, 2, 2);
    clopt_strategy_destroy(f.s);
}

Test(dist_host, bad_input_changes_nothing) { bad_input("host,host"); }
Test(dist_pocl, bad_input_changes_nothing) { bad_input(POCL2); }

Test(dist_pocl, same_device_twice) {
    clopt_strategy *s = NULL;
    cr_assert_eq(clopt_strategy_create("pocl:cpu:0,pocl:cpu:0", &s), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_null(s);
    cr_assert(strstr(clopt_last_create_error(), "same device"), "%s",
              clopt_last_create_error());
    /* The same device by another spec. */
    cr_assert_eq(clopt_strategy_create("pocl:cpu:1,pocl:cpu:0,pocl:cpu", &s),
                 CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(clopt_last_create_error(), "replicas 1 and 2"), "%s",
              clopt_last_create_error());
}

Test(dist_host, bad_specs) {
    clopt_strategy *s = NULL;
    cr_assert_eq(clopt_strategy_create_replicated("host", 0, &s), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(clopt_strategy_create_replicated("host", 65, &s), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(clopt_strategy_create("host,,host", &s), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(clopt_last_create_error(), "empty"), "%s", clopt_last_create_error());
    cr_assert_eq(clopt_strategy_create(NULL, &s), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(clopt_strategy_create("host,nosuchplatform:gpu:9", &s),
                 CLOPT_ERR_DEVICE_NOT_FOUND);
    cr_assert(strstr(clopt_last_create_error(), "replica 1"), "%s", clopt_last_create_error());
    cr_assert_null(s);
}

/* LossScaleOptimizer: an inf on one replica only skips the step on every replica, and every
 * replica halves its scale alike. */
static void loss_scale_inf_on_one_replica(const char *devices) {
    clopt_strategy *s = strategy(devices);
    const float init[3] = {1, 2, 3}, ok[3] = {4, 8, -4}, bad[3] = {4, INFINITY, -4};
    const int64_t shape = 3;
    clopt_variable *v[2], *g[2];
    S_OK(s, clopt_strategy_variable_create(s, "v", CLOPT_FLOAT32, 1, &shape, init, v));
    for (size_t r = 0; r < 2; r++) g[r] = tu_var_f32(clopt_strategy_context(s, r), "g", 3, ok);
    clopt_mirrored_optimizer *m = mirrored(
        s, "{\"class_name\": \"LossScaleOptimizer\", \"config\": {\"inner_optimizer\": "
           "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.5}}, "
           "\"initial_scale\": 4.0, \"dynamic_growth_steps\": 1000}}");
    /* Step 1: finite; each replica unscales by 4 and the sum is 2 * ok / 4 = [2, 4, -2]. */
    S_OK(s, clopt_mirrored_optimizer_apply(m, g, 2, v, 1));
    const float want1[3] = {0, 0, 4};
    for (size_t r = 0; r < 2; r++) {
        float *x = read_f32(v[r]);
        for (int i = 0; i < 3; i++) cr_assert_eq(x[i], want1[i], "replica %zu [%d]: %g", r, i, x[i]);
        free(x);
    }
    cr_assert_eq(clopt_mirrored_optimizer_iterations(m), 1);
    /* Step 2: an inf on replica 1 only: no replica steps, each halves its scale. */
    cr_assert(clopt_variable_write(g[1], bad, sizeof bad) == CLOPT_OK);
    S_OK(s, clopt_mirrored_optimizer_apply(m, g, 2, v, 1));
    cr_assert_eq(clopt_mirrored_optimizer_iterations(m), 1);
    for (size_t r = 0; r < 2; r++) {
        float *x = read_f32(v[r]);
        for (int i = 0; i < 3; i++) cr_assert_eq(x[i], want1[i], "replica %zu [%d]: %g", r, i, x[i]);
        free(x);
        double scale = 0;
        cr_assert(clopt_optimizer_scale_loss(clopt_mirrored_optimizer_replica(m, r), 1.0,
                                             &scale) == CLOPT_OK);
        cr_assert_eq(scale, 2.0, "replica %zu's scale is %g", r, scale);
        cr_assert_eq(clopt_optimizer_iterations(clopt_mirrored_optimizer_replica(m, r)), 1);
    }
    /* Step 3: finite again, unscaled by 2: the sum is [4, 8, -4], so v -= [2, 4, -2]. */
    cr_assert(clopt_variable_write(g[1], ok, sizeof ok) == CLOPT_OK);
    S_OK(s, clopt_mirrored_optimizer_apply(m, g, 2, v, 1));
    const float want3[3] = {-2, -4, 6};
    for (size_t r = 0; r < 2; r++) {
        float *x = read_f32(v[r]);
        for (int i = 0; i < 3; i++) cr_assert_eq(x[i], want3[i], "replica %zu [%d]: %g", r, i, x[i]);
        free(x);
    }
    cr_assert_eq(clopt_mirrored_optimizer_iterations(m), 2);
    assert_replicas_identical(m, v, 1, 2);
    clopt_strategy_destroy(s);
}

Test(dist_host, loss_scale_inf_on_one_replica) { loss_scale_inf_on_one_replica("host,host"); }
Test(dist_pocl, loss_scale_inf_on_one_replica) { loss_scale_inf_on_one_replica(POCL2); }

/* CLOPT_DIST_CHECK: replicas that part ways (here: a write to one replica's copy) fail the next
 * step with CLOPT_ERR_REPLICAS_DIVERGED naming the replica and the variable; unset, no check. */
static clopt_status diverge(int check) {
    if (check) setenv("CLOPT_DIST_CHECK", "1", 1);
    else unsetenv("CLOPT_DIST_CHECK");
    clopt_strategy *s = strategy("host,host,host");
    const float init[2] = {1, 2}, gr[2] = {1, 1}, other[2] = {1, 3};
    clopt_variable *v[3], *g[3];
    clopt_mirrored_optimizer *m = first_step(
        s, 2, init, gr,
        "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.1, \"momentum\": 0.5}}", v,
        g);
    cr_assert(clopt_variable_write(v[2], other, sizeof other) == CLOPT_OK);
    clopt_status st = clopt_mirrored_optimizer_apply(m, g, 3, v, 1);
    if (check) assert_error_mentions(s, "replica 2's variable 'v'");
    clopt_strategy_destroy(s);
    return st;
}

Test(dist_host, divergence_check) {
    cr_assert_eq(diverge(1), CLOPT_ERR_REPLICAS_DIVERGED);
    cr_assert_eq(diverge(0), CLOPT_OK);
}

/* A destroyed gradient of one replica: refused (CLOPT_ERR_INVALID_ARGUMENT naming the gradient
 * and the replica) before anything of it is read, with nothing changed on any replica. */
Test(dist_host, destroyed_gradient_refused) {
    fixture f = make_fixture("host,host");
    unsigned char before[4096];
    const size_t n = snapshot(&f, before, sizeof before);
    clopt_variable_destroy(f.g[3]);
    cr_assert_eq(clopt_mirrored_optimizer_apply(f.m, f.g, 2, f.v, 2), CLOPT_ERR_INVALID_ARGUMENT);
    assert_error_mentions(f.s, "gradient 1 of replica 1 was destroyed");
    assert_unchanged(&f, before, n);
    clopt_strategy_destroy(f.s);
}
