/* Adadelta (keras.optimizers.Adadelta). Its update: an element-wise rule. */
#include <math.h>
#include "optim_internal.h"

enum { CLOPT_SCALARS_ADADELTA(CLOPT__SCALAR_INDEX) };

enum { RHO, EPSILON };

/* Keras 3 does not validate these; the ranges are the ones where the update is meaningful. */
static const clopt__param params[] = {
    [RHO] = {"rho", CLOPT__P_FLOAT, 0.95, 0, 0.0, 1.0, 0, 0},
    [EPSILON] = {"epsilon", CLOPT__P_FLOAT, 1e-7, 0, 0.0, HUGE_VAL, 0, 0},
};

static int slots(const clopt_optimizer *o, clopt__slot_kind *k) {
    (void)o;
    k[0] = (clopt__slot_kind){"accumulated_grad", 0, 0.0};
    k[1] = (clopt__slot_kind){"accumulated_delta_var", 0, 0.0};
    return 2;
}

static const char *const slot_names[] = {"eg", "ex"};
static const char *const scalar_names[] = {CLOPT_SCALARS_ADADELTA(CLOPT__RULE_NAME_)};
static const char body[] = "eg = rho * eg + one_minus_rho * (g * g);\n"
                           "const real d = -(sqrt(ex + epsilon) * g) / sqrt(eg + epsilon);\n"
                           "ex = rho * ex + one_minus_rho * (d * d);\n"
                           "w += lr * d;";

static void host(double *w, double g, double *s, const double *c, void *user_data) {
    CLOPT__RULE_SCALARS(ADADELTA, c);
    (void)user_data;
    s[0] = rho * s[0] + one_minus_rho * (g * g);
    const double d = -(sqrt(s[1] + epsilon) * g) / sqrt(s[0] + epsilon);
    s[1] = rho * s[1] + one_minus_rho * (d * d);
    *w += lr * d;
}

static clopt__builtin_update updates[] = {
    {.rule = {"adadelta", NULL, 2, slot_names, CLOPT__COUNTOF(scalar_names), scalar_names, body,
              host, NULL}},
};

static void launch(const clopt_optimizer *o, const clopt__step_info *s, clopt__launch *l) {
    const double rho = clopt__hp(o, RHO);
    clopt__launch_rule(l, &updates[0].kernel);
    l->scalars[SC_lr] = s->lr;
    l->scalars[SC_rho] = rho;
    l->scalars[SC_one_minus_rho] = 1.0 - rho;
    l->scalars[SC_epsilon] = clopt__hp(o, EPSILON);
}

const clopt__optimizer_class clopt__adadelta_class = {
    .class_name = "Adadelta",
    .default_name = "adadelta",
    .default_lr = 0.001,
    CLOPT__PARAMS(params),
    .slots = slots,
    .launch = launch,
    .updates = updates,
    .nupdates = CLOPT__COUNTOF(updates),
};
