/* ScheduleFreeAdamW (keras.optimizers.ScheduleFreeAdamW, Keras 3.14 and later). Kernel:
 * cl/schedule_free_adamw.cl.
 *
 * Slots: Keras's "momentum" (the sequence z where the gradient steps land) and "velocity",
 * interleaved. z starts as a copy of its variable at build (clopt__optimizer_class.copy_slots:
 * one assign per variable, as Keras's build does with assign(momentum, ops.copy(var))). The model
 * variable holds y; x is never stored.
 *
 * Keras's update_step keeps `momentum_old = momentum.value` and then updates momentum in place.
 * On TensorFlow (and torch) `.value` is a live reference to the variable, so x_old is recovered
 * from the UPDATED z; on JAX and numpy it is the old z, as in the published algorithm (semantics
 * doc section 6, quirk 1). clopt follows tf.keras, the API it implements: x_old uses the updated
 * z. Then y_new = (1 - beta_1) z + beta_1 ((1 - 1/t) x_old + z/t) reduces to
 * (1 - 1/t) y + z/t. The first step (t = 1, where both give y = z) agrees with the published
 * algorithm; later steps differ (README, "Deliberate differences / choices").
 *
 * Default name: "schedule_free_adamw", the fixed name of the Keras source this follows (Keras
 * 3.15 replaced fixed names by auto-naming, "schedule_free_adam_w"; clopt keeps the fixed names
 * of every class, "adamw", "SGD", ...).
 *
 * Ranges beyond Keras (which checks nothing): beta_1 in (0, 1] (x_old divides by it),
 * warmup_steps an integer >= 0 (null, which Keras's `warmup_steps > 0` rejects with a TypeError,
 * is refused). */
#include <math.h>
#include "optim_internal.h"

enum { CLOPT_SCALARS_SFADAMW(CLOPT__SCALAR_INDEX) };

enum { BETA_1, BETA_2, EPSILON, WARMUP_STEPS };

static const clopt__param params[] = {
    [BETA_1] = {"beta_1", CLOPT__P_FLOAT, 0.9, 0, 0.0, 1.0, 1, 0},
    [BETA_2] = {"beta_2", CLOPT__P_FLOAT, 0.999, 0, 0.0, 1.0, 0, 0},
    [EPSILON] = {"epsilon", CLOPT__P_FLOAT, 1e-8, 0, 0.0, HUGE_VAL, 0, 0},
    [WARMUP_STEPS] = {"warmup_steps", CLOPT__P_INT_OR_NULL, 0, 0, 0.0, 9.2e18, 0, 0},
};

static clopt_status validate(clopt_optimizer *o) {
    if (o->hp[WARMUP_STEPS].null)
        return clopt__fail(o->ctx, CLOPT_ERR_BAD_TYPE,
                           "ScheduleFreeAdamW config: 'warmup_steps' must be an integer, got null");
    return CLOPT_OK;
}

static int slots(const clopt_optimizer *o, clopt__slot_kind *k) {
    (void)o;
    k[0] = (clopt__slot_kind){"momentum", 0, 0.0}; /* z: a copy of the variable at build */
    k[1] = (clopt__slot_kind){"velocity", 0, 0.0};
    return 2;
}

/* The per-step scalars op by op in the variable's dtype, as Keras's update_step computes them. */
static void launch(const clopt_optimizer *o, const clopt__step_info *s, clopt__launch *l) {
    const clopt_dtype d = l->dtype;
    const double b1 = clopt__in_dtype(clopt__hp(o, BETA_1), d);
    const double b2 = clopt__in_dtype(clopt__hp(o, BETA_2), d);
    const double t = (double)s->t, warmup = clopt__hp(o, WARMUP_STEPS);
    double lr = clopt__in_dtype(s->lr, d);
    if (warmup > 0) lr = clopt__in_dtype(lr * fmin(clopt__in_dtype(t / warmup, d), 1.0), d);
    const double weight = clopt__in_dtype(1.0 / t, d);
    l->kernel = "schedule_free_adamw";
    l->ndefines = 0;
    l->scalars[SC_lr] = lr;
    l->scalars[SC_one_minus_beta_2] = clopt__in_dtype(1.0 - b2, d);
    l->scalars[SC_v_corr] = clopt__in_dtype(1.0 - clopt__pow_dtype(b2, t, d), d);
    l->scalars[SC_epsilon] = clopt__in_dtype(clopt__hp(o, EPSILON), d);
    l->scalars[SC_one_minus_beta_1] = clopt__in_dtype(1.0 - b1, d);
    l->scalars[SC_beta_1] = b1;
    l->scalars[SC_weight] = weight;
    l->scalars[SC_one_minus_weight] = clopt__in_dtype(1.0 - weight, d);
}

const clopt__optimizer_class clopt__schedule_free_adamw_class = {
    .class_name = "ScheduleFreeAdamW",
    .default_name = "schedule_free_adamw",
    .default_lr = 0.0025,
    CLOPT__PARAMS(params),
    .slots = slots,
    .validate = validate,
    .launch = launch,
    .copy_slots = 1u, /* z */
};
