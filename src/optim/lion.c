/* Lion (keras.optimizers.Lion). Its update: an element-wise rule. Keras checks beta_1 in (0, 1]
 * with a message of its own (reproduced by validate(); the table's range is open for it);
 * beta_2 is not checked. */
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

static const char *const slot_names[] = {"m"};
static const char *const scalar_names[] = {CLOPT_SCALARS_LION(CLOPT__RULE_NAME_)};
static const char body[] = "const real x = m * beta_1 + g * one_minus_beta_1;\n"
                           "w -= lr * (isnan(x) ? x : sign(x));\n"
                           "m = m * beta_2 + g * one_minus_beta_2;";

static void host(double *w, double g, double *s, const double *c, void *user_data) {
    CLOPT__RULE_SCALARS(LION, c);
    (void)user_data;
    const double x = s[0] * beta_1 + g * one_minus_beta_1;
    *w -= lr * (isnan(x) ? x : (double)((x > 0) - (x < 0)));
    s[0] = s[0] * beta_2 + g * one_minus_beta_2;
}

static clopt__builtin_update updates[] = {
    {.rule = {"lion", NULL, 1, slot_names, CLOPT__COUNTOF(scalar_names), scalar_names, body,
              host, NULL}},
};

static void launch(const clopt_optimizer *o, const clopt__step_info *s, clopt__launch *l) {
    const double b1 = clopt__hp(o, BETA_1), b2 = clopt__hp(o, BETA_2);
    clopt__launch_rule(l, &updates[0].kernel);
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
    .updates = updates,
    .nupdates = CLOPT__COUNTOF(updates),
};
