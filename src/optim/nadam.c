/* Nadam (keras.optimizers.Nadam). Its update: an element-wise rule.
 *
 * Keras keeps u_product, the running product of the momentum schedule
 * u_t = beta_1 * (1 - 0.5 * 0.96^t), in a scalar variable of the first variable's dtype, updated
 * once per update step before the per-variable updates (its _backend_update_step override).
 * Here it is o->state[0] on the host, computed and rounded as Keras stores it, and listed last in
 * the variable list. Keras creates it as backend.Variable(1.0, dtype=...) without a name, so it
 * gets the auto-generated name "variable" (snake case of the class name Variable; Keras makes it
 * unique per Python process: "variable_1" when other unnamed variables came first). */
#include <math.h>
#include "optim_internal.h"

enum { CLOPT_SCALARS_NADAM(CLOPT__SCALAR_INDEX) };

enum { BETA_1, BETA_2, EPSILON };

static const clopt__param params[] = {
    [BETA_1] = {"beta_1", CLOPT__P_FLOAT, 0.9, 0, 0.0, 1.0, 0, 0},
    [BETA_2] = {"beta_2", CLOPT__P_FLOAT, 0.999, 0, 0.0, 1.0, 0, 0},
    [EPSILON] = {"epsilon", CLOPT__P_FLOAT, 1e-7, 0, 0.0, HUGE_VAL, 0, 0},
};

#define U_PRODUCT 0 /* o->state[U_PRODUCT] */

static int slots(const clopt_optimizer *o, clopt__slot_kind *k) {
    (void)o;
    k[0] = (clopt__slot_kind){"momentum", 0, 0.0};
    k[1] = (clopt__slot_kind){"velocity", 0, 0.0};
    return 2;
}

static void init(clopt_optimizer *o) { o->state[U_PRODUCT] = 1.0; }

/* u_product := u_product * beta_1 * (1 - 0.5 * 0.96^t), op by op in the scalar's dtype (float32
 * arithmetic, rounded to the dtype, unless it is float64), as Keras computes and stores it. */
static void before_step(clopt_optimizer *o, const clopt__step_info *s) {
    const clopt_dtype d = o->vars[0]->dtype;
    if (d == CLOPT_FLOAT64) {
        o->state[U_PRODUCT] *= clopt__hp(o, BETA_1) * (1.0 - 0.5 * pow(0.96, (double)s->t));
        return;
    }
    const float sched = 1.0f - 0.5f * powf(0.96f, (float)s->t);
    const float u = (float)o->state[U_PRODUCT] * (float)clopt__hp(o, BETA_1) * sched;
    unsigned char cell[8];
    clopt__elem_store(cell, d, 0, (double)u);
    o->state[U_PRODUCT] = clopt__elem_load(cell, d, 0);
}

static const char *const slot_names[] = {"m", "v"};
static const char *const scalar_names[] = {CLOPT_SCALARS_NADAM(CLOPT__RULE_NAME_)};
static const char body[] = "m += (g - m) * one_minus_beta_1;\n"
                           "v += (g * g - v) * one_minus_beta_2;\n"
                           "const real mhat = m_coef * m + g_coef * g;\n"
                           "const real vhat = v * v_coef;\n"
                           "w -= mhat * lr / (sqrt(vhat) + epsilon);";

static void host(double *w, double g, double *s, const double *c, void *user_data) {
    CLOPT__RULE_SCALARS(NADAM, c);
    (void)user_data;
    s[0] += (g - s[0]) * one_minus_beta_1;
    s[1] += (g * g - s[1]) * one_minus_beta_2;
    const double mhat = m_coef * s[0] + g_coef * g, vhat = s[1] * v_coef;
    *w -= mhat * lr / (sqrt(vhat) + epsilon);
}

static clopt__builtin_update updates[] = {
    {.rule = {"nadam", NULL, 2, slot_names, CLOPT__COUNTOF(scalar_names), scalar_names, body,
              host, NULL}},
};

static void launch(const clopt_optimizer *o, const clopt__step_info *s, clopt__launch *l) {
    const double b1 = clopt__hp(o, BETA_1), b2 = clopt__hp(o, BETA_2);
    const double t = (double)s->t;
    const clopt_dtype d = l->dtype;
#define R(x) clopt__in_dtype((x), d)
    const double u_t = R(R(b1) * R(1.0 - R(0.5 * clopt__pow_dtype(0.96, t, d))));
    const double u_t1 = R(R(b1) * R(1.0 - R(0.5 * clopt__pow_dtype(0.96, t + 1.0, d))));
    const double p_t = R(o->state[U_PRODUCT]); /* already updated for this step */
    const double p_t1 = R(p_t * u_t1);
    clopt__launch_rule(l, &updates[0].kernel);
    l->scalars[SC_lr] = s->lr;
    l->scalars[SC_one_minus_beta_1] = 1.0 - b1;
    l->scalars[SC_one_minus_beta_2] = 1.0 - b2;
    l->scalars[SC_epsilon] = clopt__hp(o, EPSILON);
    l->scalars[SC_m_coef] = R(u_t1 / R(1.0 - p_t1));
    l->scalars[SC_g_coef] = R(R(1.0 - u_t) / R(1.0 - p_t));
    l->scalars[SC_v_coef] = R(1.0 / R(1.0 - clopt__pow_dtype(b2, t, d)));
#undef R
}

const clopt__optimizer_class clopt__nadam_class = {
    .class_name = "Nadam",
    .default_name = "nadam",
    .default_lr = 0.001,
    CLOPT__PARAMS(params),
    .slots = slots,
    .launch = launch,
    .updates = updates,
    .nupdates = CLOPT__COUNTOF(updates),
    .before_step = before_step,
    .scalar_name = "variable",
    .init = init,
};
