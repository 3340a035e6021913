/* Ftrl (keras.optimizers.Ftrl). Its update: two element-wise rules (-learning_rate_power 0.5,
 * where n^0.5 is a correctly rounded sqrt, and any other).
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

/* Slots 0 accumulator n, 1 linear z. */
static const char *const slot_names[] = {"n", "z"};
static const char *const scalar_names[] = {CLOPT_SCALARS_FTRL(CLOPT__RULE_NAME_)};
static const char body[] = "const real gs = g + shrinkage_twice * w;\n"
                           "const real n1 = n + g * g;\n"
                           "const real p1 = NPOW(n1);\n"
                           "z += gs - (p1 - NPOW(n)) / lr * w;\n"
                           "const real q = p1 / lr + l2_twice;\n"
                           "w = (clamp(z, -l1, l1) - z) / q;\n"
                           "n = n1;";

/* user_data: 1 where -learning_rate_power is 0.5. */
static void host(double *w, double g, double *s, const double *c, void *half_power) {
    CLOPT__RULE_SCALARS(FTRL, c);
    const int half = *(const int *)half_power;
    const double gs = g + shrinkage_twice * *w, n1 = s[0] + g * g;
    const double p1 = half ? sqrt(n1) : pow(n1, neg_power);
    const double p0 = half ? sqrt(s[0]) : pow(s[0], neg_power);
    s[1] += gs - (p1 - p0) / lr * *w;
    const double q = p1 / lr + l2_twice;
    *w = (fmin(fmax(s[1], -l1), l1) - s[1]) / q;
    s[0] = n1;
}

static int variants[] = {0, 1};
static clopt__builtin_update updates[] = {
    {.rule = {"ftrl", "#define NPOW(x) pow((x), neg_power)\n", 2, slot_names,
              CLOPT__COUNTOF(scalar_names), scalar_names, body, host, &variants[0]}},
    {.rule = {"ftrl_power_half", "#define NPOW(x) sqrt(x)\n", 2, slot_names,
              CLOPT__COUNTOF(scalar_names), scalar_names, body, host, &variants[1]}},
};

static void launch(const clopt_optimizer *o, const clopt__step_info *s, clopt__launch *l) {
    const double power = -clopt__hp(o, LEARNING_RATE_POWER);
    const double l2 = clopt__hp(o, L2) + clopt__hp(o, BETA) / (2.0 * s->lr);
    /* n^0.5 (the default learning_rate_power) as a correctly rounded sqrt. */
    clopt__launch_rule(l, &updates[power == 0.5].kernel);
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
    .updates = updates,
    .nupdates = CLOPT__COUNTOF(updates),
};
