/* RMSprop reference. Defines: MOMENTUM, CENTERED. Scalars: CLOPT_SCALARS_RMSPROP
 * (cl/scalars.cl). Slots: 0 velocity, then momentum (MOMENTUM), then average_gradient
 * (CENTERED). */
#include <math.h>
#include "host_internal.h"

void clopt__host_rmsprop(const clopt__host_update *u, size_t w, size_t g, size_t s,
                         uint32_t seg) {
    HOST_SCALARS(RMSPROP);
    const int has_momentum = clopt__launch_define(u->launch, "MOMENTUM", 0);
    const double gv = GRAD(), wv = WEIGHT();
    const double v = rho * HL(u->slot, SLOT(0)) + one_minus_rho * (gv * gv);
    HS(u->slot, SLOT(0), v);
    double den = v + epsilon;
    if (clopt__launch_define(u->launch, "CENTERED", 0)) {
        const double mg = rho * HL(u->slot, SLOT(1 + has_momentum)) + one_minus_rho * gv;
        HS(u->slot, SLOT(1 + has_momentum), mg);
        den = v - mg * mg + epsilon;
    }
    const double inc = lr * gv / sqrt(den);
    if (has_momentum) {
        const double mom = momentum * HL(u->slot, SLOT(1)) + inc;
        HS(u->slot, SLOT(1), mom);
        HS(u->var, w, wv - mom);
    } else {
        HS(u->var, w, wv - inc);
    }
}
