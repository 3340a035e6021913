/* Adamax (keras.optimizers.Adamax). Kernel: cl/adamax.cl. */
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

static void launch(const clopt_optimizer *o, const clopt__step_info *s, clopt__launch *l) {
    const double b1 = clopt__hp(o, BETA_1);
    l->kernel = "adamax";
    l->ndefines = 0;
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
};
