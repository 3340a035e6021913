/* Adamax (keras.optimizers.Adamax). Its update: an element-wise rule. */
#include <math.h>
#include "optim_internal.h"

enum { CLOPT_SCALARS_ADAMAX(CLOPT__SCALAR_INDEX) };

enum { BETA_1, BETA_2, EPSILON };

/* Keras 3 does not validate these. beta_1 = 1 would divide by 1 - beta_1^t = 0. */
static const clopt__param params[] = {
    [BETA_1] = {"beta_1", CLOPT__P_FLOAT, 0.9, 0, 0.0, 1.0, 0, 1},
    [BETA_2] = {"beta_2", CLOPT__P_FLOAT, 0.999, 0, 0.0, 1.0, 0, 0},
    [EPSILON] = {"epsilon", CLOPT__P_FLOAT, 1e-7, 0, 0.0, HUGE_VAL, 0, 0},
};

static int slots(const clopt_optimizer *o, clopt__slot_kind *k) {
    (void)o;
    k[0] = (clopt__slot_kind){"momentum", 0, 0.0};
    k[1] = (clopt__slot_kind){"norm", 0, 0.0};
    return 2;
}

static const char *const slot_names[] = {"m", "u"};
static const char *const scalar_names[] = {CLOPT_SCALARS_ADAMAX(CLOPT__RULE_NAME_)};
static const char body[] = "m += (g - m) * one_minus_beta_1;\n"
                           "u = fmax(beta_2 * u, fabs(g));\n"
                           "w -= lr_t * m / (u + epsilon);";

static void host(double *w, double g, double *s, const double *c, void *user_data) {
    CLOPT__RULE_SCALARS(ADAMAX, c);
    (void)user_data;
    s[0] += (g - s[0]) * one_minus_beta_1;
    s[1] = fmax(beta_2 * s[1], fabs(g));
    *w -= lr_t * s[0] / (s[1] + epsilon);
}

static clopt__builtin_update updates[] = {
    {.rule = {"adamax", NULL, 2, slot_names, CLOPT__COUNTOF(scalar_names), scalar_names, body,
              host, NULL}},
};

static void launch(const clopt_optimizer *o, const clopt__step_info *s, clopt__launch *l) {
    const double b1 = clopt__hp(o, BETA_1);
    clopt__launch_rule(l, &updates[0].kernel);
    const clopt_dtype d = l->dtype;
    const double b1p = clopt__pow_dtype(b1, (double)s->t, d);
    l->scalars[SC_lr_t] =
        clopt__in_dtype(clopt__in_dtype(s->lr, d) / clopt__in_dtype(1.0 - b1p, d), d);
    l->scalars[SC_one_minus_beta_1] = 1.0 - b1;
    l->scalars[SC_beta_2] = clopt__hp(o, BETA_2);
    l->scalars[SC_epsilon] = clopt__hp(o, EPSILON);
}

const clopt__optimizer_class clopt__adamax_class = {
    .class_name = "Adamax",
    .default_name = "adamax",
    .default_lr = 0.001,
    CLOPT__PARAMS(params),
    .slots = slots,
    .launch = launch,
    .updates = updates,
    .nupdates = CLOPT__COUNTOF(updates),
};
