/* AdaBelief (Zhuang et al., 2020) as a program defines an optimizer class for clopt
 * (include/clopt/optimizer_class.h). Used by examples/custom_optimizer.c, by `clopt bench`
 * (tools/bench_adabelief.c) and by tests/test_optim_custom.c, which checks it against a float64
 * reference of its own.
 *
 *   m = b1 m + (1 - b1) g;  s = b2 s + (1 - b2) (g - m)^2 + eps;
 *   w -= lr * (m / (1 - b1^t)) / (sqrt(s / (1 - b2^t)) + eps). */
#ifndef CLOPT_EXAMPLE_ADABELIEF_H
#define CLOPT_EXAMPLE_ADABELIEF_H

#include <math.h>
#include <clopt.h>

/* Hyperparameters, in config order, and the per-step scalars (c0..c5). */
enum { ADABELIEF_BETA_1, ADABELIEF_BETA_2, ADABELIEF_EPSILON, ADABELIEF_NHPARAMS };
enum { AB_LR, AB_BETA_1, AB_BETA_2, AB_EPSILON, AB_M_CORR, AB_S_CORR, AB_NSCALARS };

/* x as the dtype's arithmetic holds it: Keras computes a float32 variable's per-step scalars
 * in float32. */
static inline double adabelief_round(double x, clopt_dtype d) {
    return d == CLOPT_FLOAT64 ? x : (double)(float)x;
}

/* A bias correction 1 / (1 - beta^t), op by op in the dtype. */
static inline double adabelief_corr(double beta, double t, clopt_dtype d) {
    return adabelief_round(1.0 / adabelief_round(1.0 - pow(beta, t), d), d);
}

static inline void adabelief_scalars(const clopt_class_step *st, double *c, void *user_data) {
    (void)user_data;
    const double b1 = st->hparams[ADABELIEF_BETA_1], b2 = st->hparams[ADABELIEF_BETA_2];
    c[AB_LR] = adabelief_round(st->learning_rate, st->dtype);
    c[AB_BETA_1] = b1;
    c[AB_BETA_2] = b2;
    c[AB_EPSILON] = st->hparams[ADABELIEF_EPSILON];
    c[AB_M_CORR] = adabelief_corr(b1, (double)st->t, st->dtype);
    c[AB_S_CORR] = adabelief_corr(b2, (double)st->t, st->dtype);
}

/* The update of one element on the host backend, in double... */
static inline void adabelief_host(double *w, double g, double *slot, const double *c,
                                  void *user_data) {
    (void)user_data;
    double *m = &slot[0], *s = &slot[1];
    *m = c[AB_BETA_1] * *m + (1 - c[AB_BETA_1]) * g;
    const double d = g - *m;
    *s = c[AB_BETA_2] * *s + (1 - c[AB_BETA_2]) * d * d + c[AB_EPSILON];
    *w -= c[AB_LR] * (*m * c[AB_M_CORR]) / (sqrt(*s * c[AB_S_CORR]) + c[AB_EPSILON]);
}

/* ... and the class: the same update in OpenCL C for devices, where w, g, the slots m and s
 * and the scalars go by these names. */
static inline clopt_optimizer_class_desc adabelief_class(void) {
    static const clopt_hparam hparams[] = {
        [ADABELIEF_BETA_1] = {"beta_1", CLOPT_HPARAM_FLOAT, 0.9, 0, 0.0, 1.0, 0, 0},
        [ADABELIEF_BETA_2] = {"beta_2", CLOPT_HPARAM_FLOAT, 0.999, 0, 0.0, 1.0, 0, 0},
        [ADABELIEF_EPSILON] = {"epsilon", CLOPT_HPARAM_FLOAT, 1e-16, 0, 0.0, HUGE_VAL, 0, 0},
    };
    static const char *const slots[] = {"m", "s"}; /* Keras names them "<variable>_m", ... */
    static const char *const scalars[] = {"lr", "beta_1", "beta_2", "epsilon", "m_corr",
                                          "s_corr"};
    static const char update[] = "m = beta_1 * m + (1 - beta_1) * g;\n"
                                 "const real d = g - m;\n"
                                 "s = beta_2 * s + (1 - beta_2) * d * d + epsilon;\n"
                                 "w -= lr * (m * m_corr) / (sqrt(s * s_corr) + epsilon);\n";
    return (clopt_optimizer_class_desc){
        .class_name = "AdaBelief",
        .registered_name = "Custom>AdaBelief", /* keras.saving.register_keras_serializable() */
        .default_learning_rate = 0.001,
        .hparams = hparams,
        .nhparams = ADABELIEF_NHPARAMS,
        .slot_names = slots,
        .nslots = 2,
        .scalar_names = scalars,
        .nscalars = AB_NSCALARS,
        .scalars = adabelief_scalars,
        .opencl_update = update,
        .host_update = adabelief_host,
    };
}

#endif
