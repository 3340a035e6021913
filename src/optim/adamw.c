/* AdamW (keras.optimizers.AdamW): Adam whose weight_decay defaults to 0.004 and may not be None.
 * The decay itself is the apply pipeline's decoupled w - w*wd*lr, applied before the Adam step,
 * so the math, slots and update rules are Adam's (adam.c). */
#include <math.h>
#include "optim_internal.h"

extern const clopt__optimizer_class clopt__adam_class;

/* Adam's keys, in Adam's order (Keras's AdamW adds none): the same table as adam.c, so that
 * Adam's slots() and launch() read the same indices. */
static const clopt__param params[] = {
    {"beta_1", CLOPT__P_FLOAT, 0.9, 0, 0.0, 1.0, 0, 0},
    {"beta_2", CLOPT__P_FLOAT, 0.999, 0, 0.0, 1.0, 0, 0},
    {"epsilon", CLOPT__P_FLOAT, 1e-7, 0, 0.0, HUGE_VAL, 0, 0},
    {"amsgrad", CLOPT__P_BOOL, 0, 0, 0, 1, 0, 0},
};

static int slots(const clopt_optimizer *o, clopt__slot_kind *k) {
    return clopt__adam_class.slots(o, k);
}

static void launch(const clopt_optimizer *o, const clopt__step_info *s, clopt__launch *l) {
    clopt__adam_class.launch(o, s, l);
}

static void init(clopt_optimizer *o) {
    o->base[CLOPT__B_WEIGHT_DECAY] = (clopt__value){0.004, 0};
}

static clopt_status validate(clopt_optimizer *o) {
    if (o->base[CLOPT__B_WEIGHT_DECAY].null)
        return clopt__fail(o->ctx, CLOPT_ERR_BAD_VALUE,
                           "AdamW config: Argument `weight_decay` must be a float. Received: "
                           "weight_decay=None ('weight_decay' is null)");
    return CLOPT_OK;
}

const clopt__optimizer_class clopt__adamw_class = {
    .class_name = "AdamW",
    .default_name = "adamw",
    .default_lr = 0.001,
    CLOPT__PARAMS(params),
    .slots = slots,
    .validate = validate,
    .launch = launch,
    .init = init,
};
