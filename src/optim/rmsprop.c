/* RMSprop (keras.optimizers.RMSprop), with momentum and the centered variant. Its update: four
 * element-wise rules (plain, momentum, centered, both). */
#include <math.h>
#include "optim_internal.h"

enum { CLOPT_SCALARS_RMSPROP(CLOPT__SCALAR_INDEX) };

enum { RHO, MOMENTUM, EPSILON, CENTERED };

/* Keras 3 does not validate these; the ranges are the ones where the update is meaningful. */
static const clopt__param params[] = {
    [RHO] = {"rho", CLOPT__P_FLOAT, 0.9, 0, 0.0, 1.0, 0, 0},
    [MOMENTUM] = {"momentum", CLOPT__P_FLOAT, 0.0, 0, 0.0, 1.0, 0, 0},
    [EPSILON] = {"epsilon", CLOPT__P_FLOAT, 1e-7, 0, 0.0, HUGE_VAL, 0, 0},
    [CENTERED] = {"centered", CLOPT__P_BOOL, 0, 0, 0, 1, 0, 0},
};

/* Keras builds one block per kind: every velocity, then every momentum (momentum > 0), then
 * every average_gradient (centered). The rule finds average_gradient at slot 2 with momentum,
 * else at slot 1. */
static int slots(const clopt_optimizer *o, clopt__slot_kind *k) {
    int n = 0;
    k[n++] = (clopt__slot_kind){"velocity", 0, 0.0};
    if (clopt__hp(o, MOMENTUM) > 0.0) k[n++] = (clopt__slot_kind){"momentum", 1, 0.0};
    if (clopt__hp(o, CENTERED) != 0.0) k[n++] = (clopt__slot_kind){"average_gradient", 2, 0.0};
    return n;
}

static const char *const scalar_names[] = {CLOPT_SCALARS_RMSPROP(CLOPT__RULE_NAME_)};
static const char body[] = "v = rho * v + one_minus_rho * (g * g);\n"
                           "#if CENTERED\n"
                           "mg = rho * mg + one_minus_rho * g;\n"
                           "const real den = v - mg * mg + epsilon;\n"
                           "#else\n"
                           "const real den = v + epsilon;\n"
                           "#endif\n"
                           "const real inc = lr * g / sqrt(den);\n"
                           "#if MOMENTUM\n"
                           "mom = momentum * mom + inc;\n"
                           "w -= mom;\n"
                           "#else\n"
                           "w -= inc;\n"
                           "#endif";

/* user_data: the variant, bit 0 momentum, bit 1 centered. */
static void host(double *w, double g, double *s, const double *c, void *variant) {
    CLOPT__RULE_SCALARS(RMSPROP, c);
    const int has_momentum = *(const int *)variant & 1, centered = *(const int *)variant & 2;
    s[0] = rho * s[0] + one_minus_rho * (g * g);
    double den = s[0] + epsilon;
    if (centered) {
        double *mg = &s[1 + has_momentum];
        *mg = rho * *mg + one_minus_rho * g;
        den = s[0] - *mg * *mg + epsilon;
    }
    const double inc = lr * g / sqrt(den);
    if (has_momentum) {
        s[1] = momentum * s[1] + inc;
        *w -= s[1];
    } else {
        *w -= inc;
    }
}

static const char *const names_plain[] = {"v"}, *const names_momentum[] = {"v", "mom"},
                         *const names_centered[] = {"v", "mg"},
                         *const names_both[] = {"v", "mom", "mg"};
static int variants[] = {0, 1, 2, 3};
#define RULE(kname, defs, names, i)                                                  \
    {.rule = {kname, defs, CLOPT__COUNTOF(names), names, CLOPT__COUNTOF(scalar_names), \
              scalar_names, body, host, &variants[i]}}
static clopt__builtin_update updates[] = {
    RULE("rmsprop", "#define MOMENTUM 0\n#define CENTERED 0\n", names_plain, 0),
    RULE("rmsprop_momentum", "#define MOMENTUM 1\n#define CENTERED 0\n", names_momentum, 1),
    RULE("rmsprop_centered", "#define MOMENTUM 0\n#define CENTERED 1\n", names_centered, 2),
    RULE("rmsprop_momentum_centered", "#define MOMENTUM 1\n#define CENTERED 1\n", names_both,
         3),
};

static void launch(const clopt_optimizer *o, const clopt__step_info *s, clopt__launch *l) {
    const double rho = clopt__hp(o, RHO);
    clopt__launch_rule(l, &updates[(clopt__hp(o, MOMENTUM) > 0.0) +
                                   2 * (clopt__hp(o, CENTERED) != 0.0)].kernel);
    l->scalars[SC_lr] = s->lr;
    l->scalars[SC_rho] = rho;
    l->scalars[SC_one_minus_rho] = 1.0 - rho;
    l->scalars[SC_momentum] = clopt__hp(o, MOMENTUM);
    l->scalars[SC_epsilon] = clopt__hp(o, EPSILON);
}

const clopt__optimizer_class clopt__rmsprop_class = {
    .class_name = "RMSprop",
    .default_name = "rmsprop",
    .default_lr = 0.001,
    CLOPT__PARAMS(params),
    .slots = slots,
    .launch = launch,
    .updates = updates,
    .nupdates = CLOPT__COUNTOF(updates),
};
