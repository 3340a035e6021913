/* SGD (keras.optimizers.SGD): momentum and Nesterov momentum. Kernel: cl/sgd.cl. */
#include "optim_internal.h"

enum { CLOPT_SCALARS_SGD(CLOPT__SCALAR_INDEX) };

enum { MOMENTUM, NESTEROV };

static const clopt__param params[] = {
    [MOMENTUM] = {"momentum", CLOPT__P_FLOAT, 0.0, 0, 0.0, 1.0, 0, 0},
    [NESTEROV] = {"nesterov", CLOPT__P_BOOL, 0, 0, 0, 1, 0, 0},
};

static int slots(const clopt_optimizer *o, clopt__slot_kind *k) {
    if (clopt__hp(o, MOMENTUM) == 0.0) return 0;
    k[0] = (clopt__slot_kind){"momentum", 0, 0.0};
    return 1;
}

static void launch(const clopt_optimizer *o, const clopt__step_info *s, clopt__launch *l) {
    const int momentum = clopt__hp(o, MOMENTUM) != 0.0;
    l->kernel = "sgd";
    l->ndefines = 2;
    l->defines[0] = (clopt__define){"MOMENTUM", momentum};
    l->defines[1] = (clopt__define){"NESTEROV", momentum && clopt__hp(o, NESTEROV) != 0.0};
    l->scalars[SC_lr] = s->lr;
    l->scalars[SC_momentum] = clopt__hp(o, MOMENTUM);
}

const clopt__optimizer_class clopt__sgd_class = {
    .class_name = "SGD",
    .default_name = "SGD",
    .default_lr = 0.01,
    CLOPT__PARAMS(params),
    .slots = slots,
    .launch = launch,
};
