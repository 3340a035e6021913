/* Adadelta (keras.optimizers.Adadelta). Kernel: cl/adadelta.cl. */
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

static void launch(const clopt_optimizer *o, const clopt__step_info *s, clopt__launch *l) {
    const double rho = clopt__hp(o, RHO);
    l->kernel = "adadelta";
    l->ndefines = 0;
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
};
