/* ScheduleFreeAdamW reference. Scalars: CLOPT_SCALARS_SFADAMW (cl/scalars.cl). Slots: 0 z
 * (Keras's "momentum"), 1 v. x_old from the updated z, as tf.keras
 * (src/optim/schedule_free_adamw.c). */
#include <math.h>
#include "host_internal.h"

void clopt__host_schedule_free_adamw(const clopt__host_update *u, size_t w, size_t g, size_t s,
                                     uint32_t seg) {
    HOST_SCALARS(SFADAMW);
    const double gv = GRAD(), y = WEIGHT();
    double v = HL(u->slot, SLOT(1));
    HS(u->slot, SLOT(1), v + (gv * gv - v) * one_minus_beta_2);
    v = HL(u->slot, SLOT(1));
    const double den = sqrt(v / v_corr) + epsilon;
    HS(u->slot, SLOT(0), HL(u->slot, SLOT(0)) - lr * gv / den);
    const double z = HL(u->slot, SLOT(0));
    const double x_old = (y - one_minus_beta_1 * z) / beta_1;
    const double x_new = one_minus_weight * x_old + weight * z;
    HS(u->var, w, one_minus_beta_1 * z + beta_1 * x_new);
}
