/* Adagrad (keras.optimizers.Adagrad). Its update: an element-wise rule. */
#include <math.h>
#include "optim_internal.h"

enum { CLOPT_SCALARS_ADAGRAD(CLOPT__SCALAR_INDEX) };

enum { INITIAL_ACCUMULATOR_VALUE, EPSILON };

/* Keras documents initial_accumulator_value as non-negative (it does not check it). */
static const clopt__param params[] = {
    [INITIAL_ACCUMULATOR_VALUE] = {"initial_accumulator_value", CLOPT__P_FLOAT, 0.1, 0, 0.0,
                                   HUGE_VAL, 0, 0},
    [EPSILON] = {"epsilon", CLOPT__P_FLOAT, 1e-7, 0, 0.0, HUGE_VAL, 0, 0},
};

/* The accumulator starts at initial_accumulator_value (Keras's Constant initializer). */
static int slots(const clopt_optimizer *o, clopt__slot_kind *k) {
    k[0] = (clopt__slot_kind){"accumulator", 0, clopt__hp(o, INITIAL_ACCUMULATOR_VALUE)};
    return 1;
}

static const char *const slot_names[] = {"a"};
static const char *const scalar_names[] = {CLOPT_SCALARS_ADAGRAD(CLOPT__RULE_NAME_)};
static const char body[] = "a += g * g;\n"
                           "w -= lr * g / sqrt(a + epsilon);";

static void host(double *w, double g, double *s, const double *c, void *user_data) {
    CLOPT__RULE_SCALARS(ADAGRAD, c);
    (void)user_data;
    s[0] += g * g;
    *w -= lr * g / sqrt(s[0] + epsilon);
}

static clopt__builtin_update updates[] = {
    {.rule = {"adagrad", NULL, 1, slot_names, CLOPT__COUNTOF(scalar_names), scalar_names, body,
              host, NULL}},
};

static void launch(const clopt_optimizer *o, const clopt__step_info *s, clopt__launch *l) {
    clopt__launch_rule(l, &updates[0].kernel);
    l->scalars[SC_lr] = s->lr;
    l->scalars[SC_epsilon] = clopt__hp(o, EPSILON);
}

const clopt__optimizer_class clopt__adagrad_class = {
    .class_name = "Adagrad",
    .default_name = "adagrad",
    .default_lr = 0.001,
    CLOPT__PARAMS(params),
    .slots = slots,
    .launch = launch,
    .updates = updates,
    .nupdates = CLOPT__COUNTOF(updates),
};
