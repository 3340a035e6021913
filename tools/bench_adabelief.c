/* `clopt bench`'s registered class: AdaBelief (examples/custom_optimizer.c's, and the C loop
 * c_adabelief in bench_loops.h), so the bench times a program's class against a C loop as it
 * times the built-in ones. */
#include <math.h>
#include "bench_internal.h"

enum { BETA_1, BETA_2, EPSILON };
enum { LR, B1, B2, EPS, M_CORR, S_CORR, NSCALARS };

static const clopt_hparam hparams[] = {
    [BETA_1] = {"beta_1", CLOPT_HPARAM_FLOAT, 0.9, 0, 0.0, 1.0, 0, 0},
    [BETA_2] = {"beta_2", CLOPT_HPARAM_FLOAT, 0.999, 0, 0.0, 1.0, 0, 0},
    [EPSILON] = {"epsilon", CLOPT_HPARAM_FLOAT, 1e-16, 0, 0.0, HUGE_VAL, 0, 0},
};
static const char *const slot_names[] = {"m", "s"};
static const char *const scalar_names[] = {"lr", "beta_1", "beta_2", "epsilon", "m_corr",
                                           "s_corr"};

static void step_scalars(const clopt_class_step *st, double *c, void *user_data) {
    (void)user_data;
    const double b1 = st->hparams[BETA_1], b2 = st->hparams[BETA_2], t = (double)st->t;
    c[LR] = bench_adabelief_round(st->learning_rate, st->dtype);
    c[B1] = b1;
    c[B2] = b2;
    c[EPS] = st->hparams[EPSILON];
    c[M_CORR] = bench_adabelief_corr(b1, t, st->dtype);
    c[S_CORR] = bench_adabelief_corr(b2, t, st->dtype);
}

static const char opencl_update[] =
    "m = beta_1 * m + (1 - beta_1) * g;\n"
    "const real d = g - m;\n"
    "s = beta_2 * s + (1 - beta_2) * d * d + epsilon;\n"
    "w -= lr * (m * m_corr) / (sqrt(s * s_corr) + epsilon);\n";

static void host_update(double *w, double g, double *s, const double *c, void *user_data) {
    (void)user_data;
    s[0] = c[B1] * s[0] + (1 - c[B1]) * g;
    const double d = g - s[0];
    s[1] = c[B2] * s[1] + (1 - c[B2]) * d * d + c[EPS];
    *w -= c[LR] * (s[0] * c[M_CORR]) / (sqrt(s[1] * c[S_CORR]) + c[EPS]);
}

double bench_adabelief_round(double x, clopt_dtype d) {
    return d == CLOPT_FLOAT64 ? x : (double)(float)x;
}

double bench_adabelief_corr(double beta, double t, clopt_dtype d) {
    return bench_adabelief_round(1.0 / bench_adabelief_round(1.0 - pow(beta, t), d), d);
}

int bench_register_adabelief(void) {
    if (clopt_optimizer_class_registered("AdaBelief")) return 0;
    const clopt_optimizer_class_desc desc = {
        .class_name = "AdaBelief",
        .registered_name = "Custom>AdaBelief",
        .default_learning_rate = 0.001,
        .hparams = hparams,
        .nhparams = (int)(sizeof hparams / sizeof *hparams),
        .slot_names = slot_names,
        .nslots = 2,
        .scalar_names = scalar_names,
        .nscalars = NSCALARS,
        .scalars = step_scalars,
        .opencl_update = opencl_update,
        .host_update = host_update,
    };
    return clopt_optimizer_class_register(&desc) == CLOPT_OK ? 0 : -1;
}
