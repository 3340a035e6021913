/* Learning-rate schedules (src/optim/schedule.c).
 *
 * The value tests port Keras's own tests, keras-team/keras
 * keras/src/optimizers/schedules/learning_rate_schedule_test.py: same schedules, same steps, same
 * expected numbers (computed here in double as the Python reference does) and the same tolerance
 * (assertAllClose: |got - want| <= atol + rtol * |want|, atol = rtol = 1e-6 unless the Keras test
 * uses the default, also 1e-6). The round-trip tests use the configs of its test_config cases,
 * written as Keras's serialize() writes them. Not ported: test_fit_lr_correctness (needs a model)
 * and the float64 cases (a JSON initial_learning_rate is always a Python float, so float32). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "clopt.h"
#include "optim/json_internal.h"
#include "optim/schedule_internal.h"

#define PI 3.14159265358979323846

static clopt_context *ctx;

static void setup(void) { cr_assert_eq(clopt_context_create("host", &ctx), CLOPT_OK); }
static void teardown(void) { clopt_context_destroy(ctx); }

TestSuite(schedule, .init = setup, .fini = teardown);

static json_t *load(const char *text) {
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    cr_assert_not_null(j, "bad test JSON %s: %s", text, err.text);
    return j;
}

static clopt__schedule *make(const char *text) {
    json_t *j = load(text);
    clopt__schedule *s = NULL;
    clopt_status st = clopt__schedule_from_json(ctx, j, &s);
    json_decref(j);
    cr_assert_eq(st, CLOPT_OK, "%s: %s", text, clopt_context_last_error(ctx));
    cr_assert_not_null(s);
    return s;
}

/* A config wrapped the way Keras's serialize() writes it. */
static clopt__schedule *make_cfg(const char *cls, const char *cfg) {
    char buf[1024];
    snprintf(buf, sizeof buf,
             "{\"module\": \"keras.optimizers.schedules\", \"class_name\": \"%s\", \"config\": %s, "
             "\"registered_name\": null}",
             cls, cfg);
    return make(buf);
}

/* Keras's assertAllClose(x, want, atol) with rtol = 1e-6 (numpy's assert_allclose rule). The
 * result must also be a float32 value: the computation is float32 throughout. */
static void check(const clopt__schedule *s, int64_t step, double want, double atol) {
    double got = clopt__schedule_value(s, step);
    cr_expect(fabs(got - want) <= atol + 1e-6 * fabs(want),
              "%s at step %lld: got %.9g, want %.9g", clopt__schedule_class_name(s),
              (long long)step, got, want);
    cr_expect_eq(got, (double)(float)got, "%s at step %lld: %.17g is not a float32 value",
                 clopt__schedule_class_name(s), (long long)step, got);
}

/* ---- ExponentialDecayTest ---- */

Test(schedule, exponential_continuous) {
    clopt__schedule *s = make_cfg("ExponentialDecay",
                                  "{\"initial_learning_rate\": 0.05, \"decay_steps\": 10, "
                                  "\"decay_rate\": 0.96}");
    check(s, 5, 0.05 * pow(0.96, 5.0 / 10.0), 1e-6);
    /* float32, as Keras computes it: lr0 * decay_rate^(step / decay_steps) on float32 tensors. */
    cr_expect_eq(clopt__schedule_value(s, 5), (double)(0.05f * powf(0.96f, 5.0f / 10.0f)));
    clopt__schedule_free(s);
}

Test(schedule, exponential_staircase) {
    /* test_staircase and test_variables */
    clopt__schedule *s = make_cfg("ExponentialDecay",
                                  "{\"initial_learning_rate\": 0.1, \"decay_steps\": 3, "
                                  "\"decay_rate\": 0.96, \"staircase\": true}");
    check(s, 1, 0.1, 1e-6);
    check(s, 2, 0.1, 1e-6);
    check(s, 100, 0.1 * pow(0.96, 100 / 3), 1e-6);
    clopt__schedule_free(s);
}

/* ---- PiecewiseConstantDecayTest ---- */

Test(schedule, piecewise_values) {
    clopt__schedule *s = make_cfg("PiecewiseConstantDecay",
                                  "{\"boundaries\": [100, 110, 120], "
                                  "\"values\": [1.0, 0.1, 0.01, 0.001]}");
    check(s, -999, 1.0, 1e-6);
    check(s, 100, 1.0, 1e-6);
    check(s, 105, 0.1, 1e-6);
    check(s, 110, 0.1, 1e-6);
    check(s, 120, 0.01, 1e-6);
    check(s, 999, 0.001, 1e-6);
    /* each value is values[i] rounded to float32 */
    cr_expect_eq(clopt__schedule_value(s, 105), (double)0.1f);
    clopt__schedule_free(s);
}

Test(schedule, piecewise_boundary_values) {
    clopt__schedule *s = make_cfg("PiecewiseConstantDecay",
                                  "{\"boundaries\": [1, 2, 3], \"values\": [0.4, 0.5, 0.6, 0.7]}");
    check(s, 0, 0.4, 1e-6);
    check(s, 1, 0.4, 1e-6);
    check(s, 2, 0.5, 1e-6);
    check(s, 3, 0.6, 1e-6);
    check(s, 4, 0.7, 1e-6);
    clopt__schedule_free(s);
}

Test(schedule, piecewise_float_boundaries) {
    /* Float boundaries are cast to the int64 step dtype (truncated): 1.5 acts as 1. */
    clopt__schedule *s = make_cfg("PiecewiseConstantDecay",
                                  "{\"boundaries\": [1.5, 3.0], \"values\": [0.4, 0.5, 0.6]}");
    check(s, 1, 0.4, 0);
    check(s, 2, 0.5, 0);
    check(s, 3, 0.5, 0);
    check(s, 4, 0.6, 0);
    clopt__schedule_free(s);
}

/* ---- LinearDecayTest (PolynomialDecay, power 1) ---- */

static clopt__schedule *poly(double lr, double end_lr, double power, int cycle) {
    char cfg[256];
    snprintf(cfg, sizeof cfg,
             "{\"initial_learning_rate\": %.17g, \"decay_steps\": 10, \"end_learning_rate\": "
             "%.17g, \"power\": %.17g, \"cycle\": %s}",
             lr, end_lr, power, cycle ? "true" : "false");
    return make_cfg("PolynomialDecay", cfg);
}

Test(schedule, linear_decay) {
    double lr = 0.05;
    clopt__schedule *s = poly(lr, 0.0, 1.0, 0);
    check(s, 5, lr * 0.5, 1e-6); /* test_halfway */
    clopt__schedule_free(s);
    s = poly(lr, 0.001, 1.0, 0);
    check(s, 10, 0.001, 1e-6);                /* test_end */
    check(s, 5, (lr + 0.001) * 0.5, 1e-6);    /* test_halfway_with_end */
    check(s, 15, 0.001, 1e-6);                /* test_beyond_end */
    clopt__schedule_free(s);
    s = poly(lr, 0.001, 1.0, 1);
    check(s, 15, (lr - 0.001) * 0.25 + 0.001, 1e-6); /* test_beyond_end_with_cycle */
    clopt__schedule_free(s);
}

/* ---- SqrtDecayTest (PolynomialDecay, power 0.5) ---- */

Test(schedule, sqrt_decay) {
    double lr = 0.05, power = 0.5;
    clopt__schedule *s = poly(lr, 0.0, power, 0);
    check(s, 5, lr * pow(0.5, power), 1e-6); /* test_halfway */
    clopt__schedule_free(s);
    s = poly(lr, 0.001, power, 0);
    check(s, 10, 0.001, 1e-6);                                  /* test_end */
    check(s, 5, (lr - 0.001) * pow(0.5, power) + 0.001, 1e-6);  /* test_halfway_with_end */
    check(s, 15, 0.001, 1e-6);                                  /* test_beyond_end */
    clopt__schedule_free(s);
    s = poly(lr, 0.001, power, 1);
    check(s, 15, (lr - 0.001) * pow(0.25, power) + 0.001, 1e-6); /* test_beyond_end_with_cycle */
    clopt__schedule_free(s);
}

Test(schedule, sqrt_decay_begin_with_cycle) {
    clopt__schedule *s = make_cfg("PolynomialDecay",
                                  "{\"initial_learning_rate\": 0.001, \"decay_steps\": 10, "
                                  "\"cycle\": true}");
    check(s, 0, 0.001, 1e-6);
    clopt__schedule_free(s);
}

/* ---- InverseTimeDecayTest ---- */

Test(schedule, inverse_time_decay) {
    clopt__schedule *s = make_cfg("InverseTimeDecay",
                                  "{\"initial_learning_rate\": 0.1, \"decay_steps\": 10, "
                                  "\"decay_rate\": 0.96}");
    for (int i = 0; i <= 10; i++) check(s, i, 0.1 / (1 + i / 10.0 * 0.96), 1e-6);
    clopt__schedule_free(s);
}

Test(schedule, inverse_time_staircase) {
    clopt__schedule *s = make_cfg("InverseTimeDecay",
                                  "{\"initial_learning_rate\": 0.1, \"decay_steps\": 10, "
                                  "\"decay_rate\": 0.96, \"staircase\": true}");
    for (int i = 0; i <= 10; i++) check(s, i, 0.1 / (1 + 0.96 * (i / 10)), 1e-6);
    clopt__schedule_free(s);
}

/* ---- CosineDecayTest ---- */

static double np_cosine_decay(double step, double decay_steps, double alpha) {
    step = fmin(step, decay_steps);
    double decay = 0.5 * (1.0 + cos(PI * (step / decay_steps)));
    return (1.0 - alpha) * decay + alpha;
}

static double linear_warmup(double step, double warmup_steps, double lr0, double target) {
    return step / warmup_steps * (target - lr0);
}

Test(schedule, cosine_decay) {
    clopt__schedule *s = make_cfg("CosineDecay",
                                  "{\"initial_learning_rate\": 1.0, \"decay_steps\": 1000}");
    for (int step = 0; step < 1500; step += 250) check(s, step, np_cosine_decay(step, 1000, 0), 1e-6);
    clopt__schedule_free(s);
}

Test(schedule, cosine_warmup) {
    clopt__schedule *s = make_cfg("CosineDecay",
                                  "{\"initial_learning_rate\": 0.0, \"decay_steps\": 10, "
                                  "\"warmup_target\": 10.0, \"warmup_steps\": 1500}");
    for (int step = 0; step < 1500; step += 250)
        check(s, step, linear_warmup(step, 1500, 0.0, 10.0), 1e-6);
    clopt__schedule_free(s);
}

Test(schedule, cosine_alpha) {
    clopt__schedule *s = make_cfg("CosineDecay",
                                  "{\"initial_learning_rate\": 1.0, \"decay_steps\": 1000, "
                                  "\"alpha\": 0.1}");
    for (int step = 0; step < 1500; step += 250)
        check(s, step, np_cosine_decay(step, 1000, 0.1), 1e-6);
    clopt__schedule_free(s);
}

Test(schedule, cosine_warmup_decay) {
    clopt__schedule *s = make_cfg("CosineDecay",
                                  "{\"initial_learning_rate\": 0.0, \"decay_steps\": 1000, "
                                  "\"warmup_target\": 10.0, \"warmup_steps\": 2000}");
    for (int step = 0; step < 3000; step += 250) {
        double want = step < 2000 + 1 ? linear_warmup(step, 2000, 0.0, 10.0)
                                      : 10.0 * np_cosine_decay(step - 2000, 1000, 0);
        check(s, step, want, 1e-6);
    }
    /* exactly warmup_target at the end of the warmup */
    cr_expect_eq(clopt__schedule_value(s, 2000), 10.0);
    clopt__schedule_free(s);
}

/* ---- CosineDecayRestartsTest ---- */

static double np_cosine_decay_restarts(double step, double decay_steps, double t_mul,
                                       double m_mul, double alpha) {
    double fac = 1.0;
    while (step >= decay_steps) {
        step -= decay_steps;
        decay_steps *= t_mul;
        fac *= m_mul;
    }
    double decay = fac * 0.5 * (1.0 + cos(PI * (step / decay_steps)));
    return (1.0 - alpha) * decay + alpha;
}

static void restarts_case(const char *extra, double t_mul, double m_mul, double alpha) {
    char cfg[256];
    snprintf(cfg, sizeof cfg, "{\"initial_learning_rate\": 1.0, \"first_decay_steps\": 1000%s}",
             extra);
    clopt__schedule *s = make_cfg("CosineDecayRestarts", cfg);
    for (int step = 0; step < 1500; step += 250)
        check(s, step, np_cosine_decay_restarts(step, 1000, t_mul, m_mul, alpha), 1e-6);
    clopt__schedule_free(s);
}

Test(schedule, restarts_decay) { restarts_case("", 2.0, 1.0, 0.0); }
Test(schedule, restarts_alpha) { restarts_case(", \"alpha\": 0.1", 2.0, 1.0, 0.1); }
Test(schedule, restarts_mmul) { restarts_case(", \"m_mul\": 0.9", 2.0, 0.9, 0.0); }
Test(schedule, restarts_tmul) { restarts_case(", \"t_mul\": 1.0", 1.0, 1.0, 0.0); }

Test(schedule, restarts_geometric_periods) {
    /* Beyond Keras's test: with t_mul = 2, m_mul = 0.5 periods last 10, 20, 40 steps and start
     * at 1, 0.5, 0.25 (steps 0, 10, 30). Mid-period values against the reference loop. */
    clopt__schedule *s = make_cfg("CosineDecayRestarts",
                                  "{\"initial_learning_rate\": 2.0, \"first_decay_steps\": 10, "
                                  "\"m_mul\": 0.5, \"alpha\": 0.1}");
    int steps[] = {0, 5, 9, 10, 20, 29, 30, 50, 69, 70, 100};
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++)
        check(s, steps[i], 2.0 * np_cosine_decay_restarts(steps[i], 10, 2.0, 0.5, 0.1), 1e-5);
    clopt__schedule_free(s);
}

/* ---- Serialization ---- */

static void round_trip(const char *text) {
    clopt__schedule *s = make(text);
    json_t *j = clopt__schedule_to_json(s);
    cr_assert_not_null(j);
    char *out = clopt__json_dump(j);
    cr_expect_str_eq(out, text);
    free(out);
    json_decref(j);
    clopt__schedule_free(s);
}

#define WRAP(cls, cfg)                                                                            \
    "{\"module\": \"keras.optimizers.schedules\", \"class_name\": \"" cls "\", \"config\": " cfg \
    ", \"registered_name\": null}"

/* The test_config cases of Keras's test file, as serialize() writes them. */
Test(schedule, round_trip_keras_configs) {
    round_trip(WRAP("ExponentialDecay",
                    "{\"initial_learning_rate\": 0.05, \"decay_steps\": 10, \"decay_rate\": 0.96, "
                    "\"staircase\": true, \"name\": \"my_ed\"}"));
    round_trip(WRAP("PiecewiseConstantDecay",
                    "{\"boundaries\": [10, 20], \"values\": [1, 2, 3], \"name\": \"my_pcd\"}"));
    round_trip(WRAP("PolynomialDecay",
                    "{\"initial_learning_rate\": 0.1, \"decay_steps\": 100, \"end_learning_rate\": "
                    "0.005, \"power\": 1.0, \"cycle\": false, \"name\": \"my_ld\"}"));
    round_trip(WRAP("InverseTimeDecay",
                    "{\"initial_learning_rate\": 0.05, \"decay_steps\": 10, \"decay_rate\": 0.96, "
                    "\"staircase\": true, \"name\": \"my_itd\"}"));
    round_trip(WRAP("CosineDecay",
                    "{\"initial_learning_rate\": 0.05, \"decay_steps\": 10, \"alpha\": 0.1, "
                    "\"name\": \"my_cd\", \"warmup_target\": 0.2, \"warmup_steps\": 2}"));
    round_trip(WRAP("CosineDecayRestarts",
                    "{\"initial_learning_rate\": 0.05, \"first_decay_steps\": 10, \"t_mul\": 3.0, "
                    "\"m_mul\": 4.0, \"alpha\": 0.1, \"name\": \"my_cdr\"}"));
    /* what the user passed is kept: float boundaries and values, a null name, an integral real */
    round_trip(WRAP("PiecewiseConstantDecay",
                    "{\"boundaries\": [5.0, 20], \"values\": [1.0, 0.5, 1e-05], \"name\": null}"));
    round_trip(WRAP("ExponentialDecay",
                    "{\"initial_learning_rate\": 1, \"decay_steps\": 5.0, \"decay_rate\": 0.5, "
                    "\"staircase\": false, \"name\": \"ExponentialDecay\"}"));
}

static void defaults(const char *in, const char *want) {
    clopt__schedule *s = make(in);
    json_t *j = clopt__schedule_to_json(s);
    char *out = clopt__json_dump(j);
    cr_expect_str_eq(out, want);
    free(out);
    json_decref(j);
    clopt__schedule_free(s);
}

Test(schedule, defaults_and_key_order) {
    defaults("{\"class_name\": \"ExponentialDecay\", \"config\": {\"decay_rate\": 0.5, "
             "\"decay_steps\": 100, \"initial_learning_rate\": 0.1}}",
             WRAP("ExponentialDecay",
                  "{\"initial_learning_rate\": 0.1, \"decay_steps\": 100, \"decay_rate\": 0.5, "
                  "\"staircase\": false, \"name\": \"ExponentialDecay\"}"));
    defaults("{\"class_name\": \"PiecewiseConstantDecay\", \"config\": {\"values\": [0.1, 0.01], "
             "\"boundaries\": [5]}}",
             WRAP("PiecewiseConstantDecay",
                  "{\"boundaries\": [5], \"values\": [0.1, 0.01], \"name\": \"PiecewiseConstant\"}"));
    defaults("{\"class_name\": \"PolynomialDecay\", \"config\": {\"initial_learning_rate\": 0.1, "
             "\"decay_steps\": 100}}",
             WRAP("PolynomialDecay",
                  "{\"initial_learning_rate\": 0.1, \"decay_steps\": 100, \"end_learning_rate\": "
                  "0.0001, \"power\": 1.0, \"cycle\": false, \"name\": \"PolynomialDecay\"}"));
    defaults("{\"class_name\": \"InverseTimeDecay\", \"config\": {\"initial_learning_rate\": 0.1, "
             "\"decay_steps\": 100, \"decay_rate\": 0.5}}",
             WRAP("InverseTimeDecay",
                  "{\"initial_learning_rate\": 0.1, \"decay_steps\": 100, \"decay_rate\": 0.5, "
                  "\"staircase\": false, \"name\": \"InverseTimeDecay\"}"));
    defaults("{\"class_name\": \"CosineDecay\", \"config\": {\"initial_learning_rate\": 0.1, "
             "\"decay_steps\": 100}}",
             WRAP("CosineDecay",
                  "{\"initial_learning_rate\": 0.1, \"decay_steps\": 100, \"alpha\": 0.0, \"name\": "
                  "\"CosineDecay\", \"warmup_target\": null, \"warmup_steps\": 0}"));
    defaults("{\"class_name\": \"CosineDecayRestarts\", \"config\": {\"initial_learning_rate\": "
             "0.1, \"first_decay_steps\": 100}}",
             WRAP("CosineDecayRestarts",
                  "{\"initial_learning_rate\": 0.1, \"first_decay_steps\": 100, \"t_mul\": 2.0, "
                  "\"m_mul\": 1.0, \"alpha\": 0.0, \"name\": \"SGDRDecay\"}"));
}

Test(schedule, case_insensitive_class_name) {
    clopt__schedule *s = make("{\"class_name\": \"cosinedecayrestarts\", \"config\": "
                              "{\"initial_learning_rate\": 0.1, \"first_decay_steps\": 10}}");
    cr_expect_str_eq(clopt__schedule_class_name(s), "CosineDecayRestarts");
    clopt__schedule_free(s);
    clopt__schedule_free(NULL);
}

/* ---- Errors ---- */

static void expect_error(const char *text, clopt_status want, const char *const *needles) {
    json_t *j = load(text);
    clopt__schedule *s = (clopt__schedule *)&s; /* must be reset to NULL */
    clopt_status st = clopt__schedule_from_json(ctx, j, &s);
    json_decref(j);
    cr_expect_eq(st, want, "%s: got %s, want %s", text, clopt_status_name(st),
                 clopt_status_name(want));
    cr_expect_null(s);
    const char *msg = clopt_context_last_error(ctx);
    cr_assert_not_null(msg);
    for (; needles && *needles; needles++)
        cr_expect(strstr(msg, *needles), "%s: message \"%s\" lacks \"%s\"", text, msg, *needles);
}

#define NEEDLES(...) ((const char *const[]){__VA_ARGS__, NULL})

Test(schedule, error_unknown_class) {
    expect_error("{\"class_name\": \"StepDecay\", \"config\": {}}", CLOPT_ERR_UNKNOWN_SCHEDULE,
                 NEEDLES("StepDecay"));
}

Test(schedule, error_unknown_key) {
    expect_error("{\"class_name\": \"ExponentialDecay\", \"config\": {\"initial_learning_rate\": "
                 "0.1, \"decay_steps\": 10, \"decay_rate\": 0.9, \"cycle\": true}}",
                 CLOPT_ERR_UNKNOWN_KEY, NEEDLES("ExponentialDecay", "'cycle'"));
}

Test(schedule, error_missing_required) {
    expect_error("{\"class_name\": \"ExponentialDecay\", \"config\": {\"initial_learning_rate\": "
                 "0.1, \"decay_steps\": 10}}",
                 CLOPT_ERR_BAD_TYPE, NEEDLES("ExponentialDecay", "'decay_rate'"));
    expect_error("{\"class_name\": \"CosineDecay\", \"config\": {\"decay_steps\": 10}}",
                 CLOPT_ERR_BAD_TYPE, NEEDLES("CosineDecay", "'initial_learning_rate'"));
    expect_error("{\"class_name\": \"PiecewiseConstantDecay\", \"config\": {\"boundaries\": [1]}}",
                 CLOPT_ERR_BAD_TYPE, NEEDLES("PiecewiseConstantDecay", "'values'"));
    expect_error("{\"class_name\": \"CosineDecayRestarts\", \"config\": "
                 "{\"initial_learning_rate\": 0.1}}",
                 CLOPT_ERR_BAD_TYPE, NEEDLES("CosineDecayRestarts", "'first_decay_steps'"));
}

Test(schedule, error_wrong_types) {
    expect_error("{\"class_name\": \"ExponentialDecay\", \"config\": {\"initial_learning_rate\": "
                 "\"0.1\", \"decay_steps\": 10, \"decay_rate\": 0.9}}",
                 CLOPT_ERR_BAD_TYPE, NEEDLES("ExponentialDecay", "'initial_learning_rate'"));
    expect_error("{\"class_name\": \"InverseTimeDecay\", \"config\": {\"initial_learning_rate\": "
                 "0.1, \"decay_steps\": 10, \"decay_rate\": 0.9, \"staircase\": 1}}",
                 CLOPT_ERR_BAD_TYPE, NEEDLES("InverseTimeDecay", "'staircase'"));
    expect_error("{\"class_name\": \"PolynomialDecay\", \"config\": {\"initial_learning_rate\": "
                 "0.1, \"decay_steps\": 2.5}}",
                 CLOPT_ERR_BAD_TYPE, NEEDLES("PolynomialDecay", "'decay_steps'"));
    expect_error("{\"class_name\": \"PolynomialDecay\", \"config\": {\"initial_learning_rate\": "
                 "0.1, \"decay_steps\": 10, \"cycle\": null}}",
                 CLOPT_ERR_BAD_TYPE, NEEDLES("PolynomialDecay", "'cycle'"));
    expect_error("{\"class_name\": \"CosineDecay\", \"config\": {\"initial_learning_rate\": 0.1, "
                 "\"decay_steps\": 10, \"warmup_target\": \"high\"}}",
                 CLOPT_ERR_BAD_TYPE, NEEDLES("CosineDecay", "'warmup_target'"));
    expect_error("{\"class_name\": \"CosineDecay\", \"config\": {\"initial_learning_rate\": 0.1, "
                 "\"decay_steps\": 10, \"name\": 3}}",
                 CLOPT_ERR_BAD_TYPE, NEEDLES("CosineDecay", "'name'"));
    expect_error("{\"class_name\": \"PiecewiseConstantDecay\", \"config\": {\"boundaries\": 5, "
                 "\"values\": [1, 2]}}",
                 CLOPT_ERR_BAD_TYPE, NEEDLES("PiecewiseConstantDecay", "'boundaries'"));
    expect_error("{\"class_name\": \"PiecewiseConstantDecay\", \"config\": {\"boundaries\": [5], "
                 "\"values\": [1, \"2\"]}}",
                 CLOPT_ERR_BAD_TYPE, NEEDLES("PiecewiseConstantDecay", "'values'"));
    /* the wrapper */
    expect_error("[1]", CLOPT_ERR_BAD_TYPE, NULL);
    expect_error("{\"config\": {}}", CLOPT_ERR_BAD_TYPE, NEEDLES("'class_name'"));
    expect_error("{\"class_name\": \"CosineDecay\"}", CLOPT_ERR_BAD_TYPE,
                 NEEDLES("CosineDecay", "'config'"));
    expect_error("{\"class_name\": \"CosineDecay\", \"config\": [1]}", CLOPT_ERR_BAD_TYPE,
                 NEEDLES("CosineDecay", "'config'"));
}

Test(schedule, error_decay_steps) {
    expect_error("{\"class_name\": \"ExponentialDecay\", \"config\": {\"initial_learning_rate\": "
                 "0.1, \"decay_steps\": 0, \"decay_rate\": 0.9}}",
                 CLOPT_ERR_BAD_VALUE,
                 NEEDLES("ExponentialDecay",
                         "Argument `decay_steps` must be > 0. Received: decay_steps=0"));
    expect_error("{\"class_name\": \"PolynomialDecay\", \"config\": {\"initial_learning_rate\": "
                 "0.1, \"decay_steps\": -5.0}}",
                 CLOPT_ERR_BAD_VALUE,
                 NEEDLES("PolynomialDecay",
                         "Argument `decay_steps` must be > 0. Received: decay_steps=-5.0"));
    expect_error("{\"class_name\": \"InverseTimeDecay\", \"config\": {\"initial_learning_rate\": "
                 "0.1, \"decay_steps\": 0, \"decay_rate\": 0.9}}",
                 CLOPT_ERR_BAD_VALUE, NEEDLES("InverseTimeDecay", "decay_steps=0"));
    expect_error("{\"class_name\": \"CosineDecay\", \"config\": {\"initial_learning_rate\": 0.1, "
                 "\"decay_steps\": 0}}",
                 CLOPT_ERR_BAD_VALUE, NEEDLES("CosineDecay", "decay_steps=0"));
    expect_error("{\"class_name\": \"CosineDecayRestarts\", \"config\": "
                 "{\"initial_learning_rate\": 0.1, \"first_decay_steps\": -1}}",
                 CLOPT_ERR_BAD_VALUE,
                 NEEDLES("CosineDecayRestarts", "Argument `first_decay_steps` must be > 0. "
                                                "Received: first_decay_steps=-1"));
}

Test(schedule, error_piecewise_lengths) {
    expect_error("{\"class_name\": \"PiecewiseConstantDecay\", \"config\": {\"boundaries\": [10, "
                 "20], \"values\": [1.0, 0.5]}}",
                 CLOPT_ERR_BAD_VALUE,
                 NEEDLES("PiecewiseConstantDecay",
                         "The length of boundaries should be 1 less than the length of values. "
                         "Received: boundaries=[10, 20] of length 2, and values=[1.0, 0.5] of "
                         "length 2."));
    /* accepted by Keras's constructor, but its first call fails */
    expect_error("{\"class_name\": \"PiecewiseConstantDecay\", \"config\": {\"boundaries\": [], "
                 "\"values\": [1.0]}}",
                 CLOPT_ERR_BAD_VALUE, NEEDLES("PiecewiseConstantDecay", "'boundaries'"));
}

/* Hyperparameters with which the float32 computation gives NaN or inf at some step: Keras takes
 * them and trains on NaN from then on; clopt refuses them, naming the key. */
Test(schedule, error_non_finite_learning_rate) {
    static const struct {
        const char *cls, *config, *key; /* key: what the message must name */
    } bad[] = {
        {"CosineDecayRestarts", "\"first_decay_steps\": 10, \"t_mul\": 0",
         "'t_mul' = 0 must be > 0"},
        {"CosineDecayRestarts", "\"first_decay_steps\": 10, \"t_mul\": -2.0", "'t_mul' = -2.0"},
        {"ExponentialDecay", "\"decay_steps\": 10, \"decay_rate\": -0.5", "'decay_rate' = -0.5"},
        {"InverseTimeDecay", "\"decay_steps\": 10, \"decay_rate\": -1", "'decay_rate' = -1"},
        {"PolynomialDecay", "\"decay_steps\": 10, \"power\": -1.5", "'power' = -1.5"},
        {"CosineDecay", "\"decay_steps\": 10, \"alpha\": 1e39", "'alpha' = 1e+39 is not finite"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char text[512];
        snprintf(text, sizeof text,
                 "{\"class_name\": \"%s\", \"config\": {\"initial_learning_rate\": 0.1, %s}}",
                 bad[i].cls, bad[i].config);
        expect_error(text, CLOPT_ERR_BAD_VALUE, NEEDLES(bad[i].cls, bad[i].key));
    }
    expect_error("{\"class_name\": \"PiecewiseConstantDecay\", \"config\": "
                 "{\"boundaries\": [5], \"values\": [0.1, -1e39]}}",
                 CLOPT_ERR_BAD_VALUE, NEEDLES("PiecewiseConstantDecay", "'values'[1]"));
    /* still accepted: a negative rate with staircase (whole powers), t_mul 1 */
    clopt__schedule *s = make_cfg("ExponentialDecay", "{\"initial_learning_rate\": 1.0, "
                                  "\"decay_steps\": 1, \"decay_rate\": -0.5, \"staircase\": true}");
    check(s, 3, -0.125, 0);
    clopt__schedule_free(s);
}

/* A schedule whose value overflows only at some step (a finite rate to a large power): apply
 * refuses that step, naming the schedule and the step, and changes nothing. */
Test(schedule, apply_refuses_a_non_finite_learning_rate) {
    clopt_optimizer *o = NULL;
    const char *cfg = "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": {\"class_name\": "
                      "\"ExponentialDecay\", \"config\": {\"initial_learning_rate\": 1.0, "
                      "\"decay_steps\": 1, \"decay_rate\": 1e30}}}}";
    cr_assert_eq(clopt_optimizer_from_config(ctx, cfg, &o), CLOPT_OK, "%s",
                 clopt_context_last_error(ctx));
    const int64_t shape[1] = {2};
    const float w0[2] = {1, 2}, g0[2] = {1, 1};
    clopt_variable *w = NULL, *g = NULL;
    cr_assert_eq(clopt_variable_create(ctx, "w", CLOPT_FLOAT32, 1, shape, w0, &w), CLOPT_OK);
    cr_assert_eq(clopt_variable_create(ctx, "g", CLOPT_FLOAT32, 1, shape, g0, &g), CLOPT_OK);
    cr_assert_eq(clopt_optimizer_apply(o, &g, &w, 1), CLOPT_OK); /* lr 1 at step 0 */
    cr_assert_eq(clopt_optimizer_apply(o, &g, &w, 1), CLOPT_OK); /* lr 1e30 at step 1 */
    float before[2], after[2];
    cr_assert_eq(clopt_variable_read(w, before, sizeof before), CLOPT_OK);
    clopt_status st = clopt_optimizer_apply(o, &g, &w, 1); /* 1e60: inf as a float32 */
    cr_assert_eq(st, CLOPT_ERR_BAD_VALUE, "%s", clopt_status_name(st));
    const char *msg = clopt_context_last_error(ctx);
    cr_assert(strstr(msg, "ExponentialDecay") && strstr(msg, "step 2"), "%s", msg);
    cr_assert_eq(clopt_optimizer_iterations(o), 2);
    cr_assert_eq(clopt_variable_read(w, after, sizeof after), CLOPT_OK);
    cr_assert_eq(memcmp(before, after, sizeof before), 0);
    clopt_optimizer_destroy(o);
    clopt_variable_destroy(w);
    clopt_variable_destroy(g);
}
