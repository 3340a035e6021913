/* RMSprop reference. Defines: MOMENTUM, CENTERED. Scalars: 0 lr, 1 rho, 2 (1 - rho), 3 momentum,
 * 4 epsilon. Slots: 0 velocity, then momentum (MOMENTUM), then average_gradient (CENTERED). */
#include <math.h>
#include "host_internal.h"

void clopt__host_rmsprop(const clopt__host_update *u, size_t w, size_t g, size_t s,
                         uint32_t seg) {
    const double *c = u->launch->scalars;
    const int momentum = clopt__launch_define(u->launch, "MOMENTUM", 0);
    const double gv = GRAD(), wv = WEIGHT();
    const double v = c[1] * HL(u->slot, SLOT(0)) + c[2] * (gv * gv);
    HS(u->slot, SLOT(0), v);
    double den = v + c[4];
    if (clopt__launch_define(u->launch, "CENTERED", 0)) {
        const double mg = c[1] * HL(u->slot, SLOT(1 + momentum)) + c[2] * gv;
        HS(u->slot, SLOT(1 + momentum), mg);
        den = v - mg * mg + c[4];
    }
    const double inc = c[0] * gv / sqrt(den);
    if (momentum) {
        const double mom = c[3] * HL(u->slot, SLOT(1)) + inc;
        HS(u->slot, SLOT(1), mom);
        HS(u->var, w, wv - mom);
    } else {
        HS(u->var, w, wv - inc);
    }
}
