/* SGD (keras.optimizers.SGD): momentum and Nesterov momentum. Its update: three element-wise
 * rules (plain, momentum, Nesterov), each in OpenCL C and in C. */
#include "optim_internal.h"

enum { CLOPT_SCALARS_SGD(CLOPT__SCALAR_INDEX) };

enum { MOMENTUM, NESTEROV };

static const clopt__param params[] = {
    [MOMENTUM] = {"momentum", CLOPT__P_FLOAT, 0.0, 0, 0.0, 1.0, 0, 0},
    [NESTEROV] = {"nesterov", CLOPT__P_BOOL, 0, 0, 0, 1, 0, 0},
};

/* Slot 0 momentum (with MOMENTUM). */
static const char *const slot_names[] = {"m"};
static const char *const scalar_names[] = {CLOPT_SCALARS_SGD(CLOPT__RULE_NAME_)};
static const char body[] = "#if MOMENTUM\n"
                           "m = momentum * m - lr * g;\n"
                           "#if NESTEROV\n"
                           "w += momentum * m - lr * g;\n"
                           "#else\n"
                           "w += m;\n"
                           "#endif\n"
                           "#else\n"
                           "w -= lr * g;\n"
                           "#endif";

/* user_data: the variant, 0 plain, 1 momentum, 2 Nesterov. */
static void host(double *w, double g, double *s, const double *c, void *variant) {
    CLOPT__RULE_SCALARS(SGD, c);
    const int v = *(const int *)variant;
    if (v) {
        s[0] = momentum * s[0] - lr * g;
        *w += v == 2 ? momentum * s[0] - lr * g : s[0];
    } else {
        *w -= lr * g;
    }
}

static int variants[] = {0, 1, 2};
#define RULE(kname, defs, n, i)                                                          \
    {.rule = {kname, defs, n, slot_names, CLOPT__COUNTOF(scalar_names), scalar_names, body, \
              host, &variants[i]}}
static clopt__builtin_update updates[] = {
    RULE("sgd", "#define MOMENTUM 0\n#define NESTEROV 0\n", 0, 0),
    RULE("sgd_momentum", "#define MOMENTUM 1\n#define NESTEROV 0\n", 1, 1),
    RULE("sgd_nesterov", "#define MOMENTUM 1\n#define NESTEROV 1\n", 1, 2),
};

static int slots(const clopt_optimizer *o, clopt__slot_kind *k) {
    if (clopt__hp(o, MOMENTUM) == 0.0) return 0;
    k[0] = (clopt__slot_kind){"momentum", 0, 0.0};
    return 1;
}

static void launch(const clopt_optimizer *o, const clopt__step_info *s, clopt__launch *l) {
    const int momentum = clopt__hp(o, MOMENTUM) != 0.0;
    clopt__launch_rule(l, &updates[momentum ? 1 + (clopt__hp(o, NESTEROV) != 0.0) : 0].kernel);
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
    .updates = updates,
    .nupdates = CLOPT__COUNTOF(updates),
};
