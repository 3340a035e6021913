/* Adagrad (keras.optimizers.Adagrad). Kernel: cl/adagrad.cl. */
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

static void launch(const clopt_optimizer *o, const clopt__step_info *s, clopt__launch *l) {
    l->kernel = "adagrad";
    l->ndefines = 0;
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
};
