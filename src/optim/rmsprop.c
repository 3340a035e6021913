/* RMSprop (keras.optimizers.RMSprop), with momentum and the centered variant. Kernel:
 * cl/rmsprop.cl. */
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
 * every average_gradient (centered). The kernel finds average_gradient at slot 2 with momentum,
 * else at slot 1. */
static int slots(const clopt_optimizer *o, clopt__slot_kind *k) {
    int n = 0;
    k[n++] = (clopt__slot_kind){"velocity", 0, 0.0};
    if (clopt__hp(o, MOMENTUM) > 0.0) k[n++] = (clopt__slot_kind){"momentum", 1, 0.0};
    if (clopt__hp(o, CENTERED) != 0.0) k[n++] = (clopt__slot_kind){"average_gradient", 2, 0.0};
    return n;
}

static void launch(const clopt_optimizer *o, const clopt__step_info *s, clopt__launch *l) {
    const double rho = clopt__hp(o, RHO);
    l->kernel = "rmsprop";
    l->ndefines = 2;
    l->defines[0] = (clopt__define){"MOMENTUM", clopt__hp(o, MOMENTUM) > 0.0};
    l->defines[1] = (clopt__define){"CENTERED", clopt__hp(o, CENTERED) != 0.0};
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
};
