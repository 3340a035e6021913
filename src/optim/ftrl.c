/* Ftrl (keras.optimizers.Ftrl). Kernel: cl/ftrl.cl.
 *
 * Keras checks its hyperparameters in the constructor with messages of its own, reproduced here
 * (the table's ranges are open so that validate() reports them). Slots as Keras's
 * add_optimizer_variables(var_list, ["accumulator", "linear"]) makes them: "<var>_accumulator"
 * (initial_accumulator_value) and "<var>_linear" (zeros), interleaved per variable. Keras before
 * 3.10 named the accumulator a bare "accumulator"; checkpoints match variables by position, so
 * files written with that name load the same. */
#include <math.h>
#include "json_internal.h"
#include "optim_internal.h"

enum { CLOPT_SCALARS_FTRL(CLOPT__SCALAR_INDEX) };

enum {
    LEARNING_RATE_POWER,
    INITIAL_ACCUMULATOR_VALUE,
    L1,
    L2,
    L2_SHRINKAGE,
    BETA
};

#define INF HUGE_VAL
static const clopt__param params[] = {
    [LEARNING_RATE_POWER] = {"learning_rate_power", CLOPT__P_FLOAT, -0.5, 0, -INF, INF, 0, 0},
    [INITIAL_ACCUMULATOR_VALUE] = {"initial_accumulator_value", CLOPT__P_FLOAT, 0.1, 0, -INF, INF,
                                   0, 0},
    [L1] = {"l1_regularization_strength", CLOPT__P_FLOAT, 0.0, 0, -INF, INF, 0, 0},
    [L2] = {"l2_regularization_strength", CLOPT__P_FLOAT, 0.0, 0, -INF, INF, 0, 0},
    [L2_SHRINKAGE] = {"l2_shrinkage_regularization_strength", CLOPT__P_FLOAT, 0.0, 0, -INF, INF,
                      0, 0},
    [BETA] = {"beta", CLOPT__P_FLOAT, 0.0, 0, -INF, INF, 0, 0},
};

/* Keras's ValueError text: "<what> Received: <key>=<value>." */
static clopt_status reject(clopt_optimizer *o, int i, const char *what) {
    char num[32];
    clopt__format_real(clopt__hp(o, i), num, sizeof num);
    return clopt__fail(o->ctx, CLOPT_ERR_BAD_VALUE, "Ftrl config: `%s` %s Received: %s=%s.",
                       params[i].key, what, params[i].key, num);
}

static clopt_status validate(clopt_optimizer *o) {
    if (clopt__hp(o, INITIAL_ACCUMULATOR_VALUE) < 0.0)
        return reject(o, INITIAL_ACCUMULATOR_VALUE, "needs to be positive or zero.");
    if (clopt__hp(o, LEARNING_RATE_POWER) > 0.0)
        return reject(o, LEARNING_RATE_POWER, "needs to be negative or zero.");
    for (int i = L1; i <= L2_SHRINKAGE; i++)
        if (clopt__hp(o, i) < 0.0) return reject(o, i, "needs to be positive or zero.");
    return CLOPT_OK;
}

static int slots(const clopt_optimizer *o, clopt__slot_kind *k) {
    k[0] = (clopt__slot_kind){"accumulator", 0, clopt__hp(o, INITIAL_ACCUMULATOR_VALUE)};
    k[1] = (clopt__slot_kind){"linear", 0, 0.0};
    return 2;
}

static void launch(const clopt_optimizer *o, const clopt__step_info *s, clopt__launch *l) {
    const double power = -clopt__hp(o, LEARNING_RATE_POWER);
    const double l2 = clopt__hp(o, L2) + clopt__hp(o, BETA) / (2.0 * s->lr);
    l->kernel = "ftrl";
    l->ndefines = 1;
    /* n^0.5 (the default learning_rate_power) as a correctly rounded sqrt. */
    l->defines[0] = (clopt__define){"POWER_HALF", power == 0.5};
    l->scalars[SC_lr] = s->lr;
    l->scalars[SC_neg_power] = power;
    l->scalars[SC_l2_twice] = 2.0 * l2;
    l->scalars[SC_l1] = clopt__hp(o, L1);
    l->scalars[SC_shrinkage_twice] = 2.0 * clopt__hp(o, L2_SHRINKAGE);
}

const clopt__optimizer_class clopt__ftrl_class = {
    .class_name = "Ftrl",
    .default_name = "ftrl",
    .default_lr = 0.001,
    CLOPT__PARAMS(params),
    .slots = slots,
    .validate = validate,
    .launch = launch,
};
