/* Lamb (keras.optimizers.Lamb). Kernels: cl/lamb.cl.
 *
 * Keras exports the class as keras.optimizers.Lamb but leaves it out of the name lookup of
 * keras.optimizers.get / deserialize, so Keras itself cannot rebuild a Lamb from its serialized
 * form (semantics doc, section 6, item 5). clopt resolves it by class name like every other
 * class: a config that Keras's get() rejects is accepted here, deliberately.
 *
 * The trust ratio needs the norms of w (after the base decoupled weight decay, which Keras
 * applies before update_step) and of r = m_hat / (sqrt(v_hat) + epsilon) over each whole
 * variable, so a step is three launches per plan launch whatever the number of variables
 * (clopt__optimizer_class.stats_kernel): lamb.stats updates m and v and writes per-block sums
 * of w^2 and r^2; lamb.ratio turns each variable's sums into its ratio ||w||/||r|| (1 when either
 * is 0); lamb applies w -= ratio*lr*r. */
#include <math.h>
#include "optim_internal.h"

enum { CLOPT_SCALARS_LAMB(CLOPT__SCALAR_INDEX) };

enum { BETA_1, BETA_2, EPSILON };

static const clopt__param params[] = {
    [BETA_1] = {"beta_1", CLOPT__P_FLOAT, 0.9, 0, 0.0, 1.0, 0, 0},
    [BETA_2] = {"beta_2", CLOPT__P_FLOAT, 0.999, 0, 0.0, 1.0, 0, 0},
    [EPSILON] = {"epsilon", CLOPT__P_FLOAT, 1e-7, 0, 0.0, HUGE_VAL, 0, 0},
};

static int slots(const clopt_optimizer *o, clopt__slot_kind *k) {
    (void)o;
    k[0] = (clopt__slot_kind){"momentum", 0, 0.0};
    k[1] = (clopt__slot_kind){"velocity", 0, 0.0};
    return 2;
}

static void launch(const clopt_optimizer *o, const clopt__step_info *s, clopt__launch *l) {
    const double b1 = clopt__hp(o, BETA_1), b2 = clopt__hp(o, BETA_2);
    const double t = (double)s->t;
    l->kernel = "lamb";
    l->ndefines = 0;
    l->scalars[SC_one_minus_beta_1] = 1.0 - b1;
    l->scalars[SC_one_minus_beta_2] = 1.0 - b2;
    l->scalars[SC_m_corr] = clopt__in_dtype(1.0 - clopt__pow_dtype(b1, t, l->dtype), l->dtype);
    l->scalars[SC_v_corr] = clopt__in_dtype(1.0 - clopt__pow_dtype(b2, t, l->dtype), l->dtype);
    l->scalars[SC_epsilon] = clopt__hp(o, EPSILON);
    l->scalars[SC_lr] = s->lr;
}

const clopt__optimizer_class clopt__lamb_class = {
    .class_name = "Lamb",
    .default_name = "lamb",
    .default_lr = 0.001,
    CLOPT__PARAMS(params),
    .slots = slots,
    .launch = launch,
    .stats_kernel = "lamb.stats",
    .segment_kernel = "lamb.ratio",
};
