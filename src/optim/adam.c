/* Adam (keras.optimizers.Adam), with amsgrad. Its update: two element-wise rules (AdamW's too). */
#include <math.h>
#include "optim_internal.h"

enum { CLOPT_SCALARS_ADAM(CLOPT__SCALAR_INDEX) };

enum { BETA_1, BETA_2, EPSILON, AMSGRAD };

static const clopt__param params[] = {
    [BETA_1] = {"beta_1", CLOPT__P_FLOAT, 0.9, 0, 0.0, 1.0, 0, 0},
    [BETA_2] = {"beta_2", CLOPT__P_FLOAT, 0.999, 0, 0.0, 1.0, 0, 0},
    [EPSILON] = {"epsilon", CLOPT__P_FLOAT, 1e-7, 0, 0.0, HUGE_VAL, 0, 0},
    [AMSGRAD] = {"amsgrad", CLOPT__P_BOOL, 0, 0, 0, 1, 0, 0},
};

/* Slots 0 m, 1 v, 2 vhat (amsgrad). */
static const char *const slot_names[] = {"m", "v", "vhat"};
static const char *const scalar_names[] = {CLOPT_SCALARS_ADAM(CLOPT__RULE_NAME_)};
static const char body[] = "m += (g - m) * one_minus_beta_1;\n"
                           "v += (g * g - v) * one_minus_beta_2;\n"
                           "#if AMSGRAD\n"
                           "vhat = fmax(vhat, v);\n"
                           "w -= alpha * m / (sqrt(vhat) + epsilon);\n"
                           "#else\n"
                           "w -= alpha * m / (sqrt(v) + epsilon);\n"
                           "#endif";

/* user_data: amsgrad (0 or 1). */
static void host(double *w, double g, double *s, const double *c, void *amsgrad) {
    CLOPT__RULE_SCALARS(ADAM, c);
    s[0] += (g - s[0]) * one_minus_beta_1;
    s[1] += (g * g - s[1]) * one_minus_beta_2;
    double v = s[1];
    if (*(const int *)amsgrad) v = s[2] = fmax(s[2], v);
    *w -= alpha * s[0] / (sqrt(v) + epsilon);
}

static int variants[] = {0, 1};
static clopt__builtin_update updates[] = {
    {.rule = {"adam", "#define AMSGRAD 0\n", 2, slot_names, CLOPT__COUNTOF(scalar_names),
              scalar_names, body, host, &variants[0]}},
    {.rule = {"adam_amsgrad", "#define AMSGRAD 1\n", 3, slot_names,
              CLOPT__COUNTOF(scalar_names), scalar_names, body, host, &variants[1]}},
};

static int slots(const clopt_optimizer *o, clopt__slot_kind *k) {
    k[0] = (clopt__slot_kind){"momentum", 0, 0.0};
    k[1] = (clopt__slot_kind){"velocity", 0, 0.0};
    if (clopt__hp(o, AMSGRAD) == 0.0) return 2;
    k[2] = (clopt__slot_kind){"velocity_hat", 1, 0.0};
    return 3;
}

static void launch(const clopt_optimizer *o, const clopt__step_info *s, clopt__launch *l) {
    const double b1 = clopt__hp(o, BETA_1), b2 = clopt__hp(o, BETA_2);
    const double t = (double)s->t;
    clopt__launch_rule(l, &updates[clopt__hp(o, AMSGRAD) != 0.0].kernel);
    /* alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t), op by op in the variable's dtype. */
    const clopt_dtype d = l->dtype;
    const double lr = clopt__in_dtype(s->lr, d);
    const double b1p = clopt__pow_dtype(b1, t, d), b2p = clopt__pow_dtype(b2, t, d);
    const double root = clopt__in_dtype(sqrt(clopt__in_dtype(1.0 - b2p, d)), d);
    const double num = clopt__in_dtype(lr * root, d);
    l->scalars[SC_alpha] = clopt__in_dtype(num / clopt__in_dtype(1.0 - b1p, d), d);
    l->scalars[SC_one_minus_beta_1] = 1.0 - b1;
    l->scalars[SC_one_minus_beta_2] = 1.0 - b2;
    l->scalars[SC_epsilon] = clopt__hp(o, EPSILON);
}

const clopt__optimizer_class clopt__adam_class = {
    .class_name = "Adam",
    .default_name = "adam",
    .default_lr = 0.001,
    CLOPT__PARAMS(params),
    .slots = slots,
    .launch = launch,
    .updates = updates,
    .nupdates = CLOPT__COUNTOF(updates),
};
