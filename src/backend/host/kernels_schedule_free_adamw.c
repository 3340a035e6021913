/* ScheduleFreeAdamW reference. Scalars: 0 lr (after warmup), 1 (1 - beta2), 2 (1 - beta2^t),
 * 3 epsilon, 4 (1 - beta1), 5 beta1, 6 1/t, 7 (1 - 1/t). Slots: 0 z (Keras's "momentum"), 1 v.
 * x_old from the updated z, as tf.keras (src/optim/schedule_free_adamw.c). */
#include <math.h>
#include "host_internal.h"

void clopt__host_schedule_free_adamw(const clopt__host_update *u, size_t w, size_t g, size_t s,
                                     uint32_t seg) {
    const double *c = u->launch->scalars;
    const double gv = GRAD(), y = WEIGHT();
    double v = HL(u->slot, SLOT(1));
    HS(u->slot, SLOT(1), v + (gv * gv - v) * c[1]);
    v = HL(u->slot, SLOT(1));
    const double den = sqrt(v / c[2]) + c[3];
    HS(u->slot, SLOT(0), HL(u->slot, SLOT(0)) - c[0] * gv / den);
    const double z = HL(u->slot, SLOT(0));
    const double x_old = (y - c[4] * z) / c[5];
    const double x_new = c[7] * x_old + c[6] * z;
    HS(u->var, w, c[4] * z + c[5] * x_new);
}
