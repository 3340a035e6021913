/* Lion (keras.optimizers.Lion). Kernel: cl/lion.cl. Keras checks beta_1 in (0, 1] with a message
 * of its own (reproduced by validate(); the table's range is open for it); beta_2 is not
 * checked. */
#include <math.h>
#include "json_internal.h"
#include "optim_internal.h"

enum { CLOPT_SCALARS_LION(CLOPT__SCALAR_INDEX) };

enum { BETA_1, BETA_2 };

static const clopt__param params[] = {
    [BETA_1] = {"beta_1", CLOPT__P_FLOAT, 0.9, 0, -HUGE_VAL, HUGE_VAL, 0, 0},
    [BETA_2] = {"beta_2", CLOPT__P_FLOAT, 0.99, 0, -HUGE_VAL, HUGE_VAL, 0, 0},
};

static clopt_status validate(clopt_optimizer *o) {
    const double b1 = clopt__hp(o, BETA_1);
    if (b1 > 0.0 && b1 <= 1.0) return CLOPT_OK;
    char num[32];
    clopt__format_real(b1, num, sizeof num);
    return clopt__fail(o->ctx, CLOPT_ERR_BAD_VALUE,
                       "Lion config: Argument `beta_1` must be in the [0, 1] range. Otherwise, "
                       "the optimizer degenerates to SignSGD. Received: beta_1=%s.",
                       num);
}

static int slots(const clopt_optimizer *o, clopt__slot_kind *k) {
    (void)o;
    k[0] = (clopt__slot_kind){"momentum", 0, 0.0};
    return 1;
}

static void launch(const clopt_optimizer *o, const clopt__step_info *s, clopt__launch *l) {
    const double b1 = clopt__hp(o, BETA_1), b2 = clopt__hp(o, BETA_2);
    l->kernel = "lion";
    l->ndefines = 0;
    l->scalars[SC_lr] = s->lr;
    l->scalars[SC_beta_1] = b1;
    l->scalars[SC_one_minus_beta_1] = 1.0 - b1;
    l->scalars[SC_beta_2] = b2;
    l->scalars[SC_one_minus_beta_2] = 1.0 - b2;
}

const clopt__optimizer_class clopt__lion_class = {
    .class_name = "Lion",
    .default_name = "lion",
    .default_lr = 0.001,
    CLOPT__PARAMS(params),
    .slots = slots,
    .validate = validate,
    .launch = launch,
};
