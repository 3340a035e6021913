/* Adam reference. Defines: AMSGRAD. Scalars: 0 alpha = lr*sqrt(1-beta2^t)/(1-beta1^t),
 * 1 (1 - beta1), 2 (1 - beta2), 3 epsilon. Slots: 0 m, 1 v, 2 vhat. */
#include <math.h>
#include "host_internal.h"

void clopt__host_adam(const clopt__host_update *u, size_t w, size_t g, size_t s, uint32_t seg) {
    const double *c = u->launch->scalars;
    const double gv = GRAD(), wv = WEIGHT();
    double m = HL(u->slot, SLOT(0)), v = HL(u->slot, SLOT(1));
    m += (gv - m) * c[1];
    v += (gv * gv - v) * c[2];
    HS(u->slot, SLOT(0), m);
    HS(u->slot, SLOT(1), v);
    if (clopt__launch_define(u->launch, "AMSGRAD", 0)) {
        double vh = fmax(HL(u->slot, SLOT(2)), v);
        HS(u->slot, SLOT(2), vh);
        v = vh;
    }
    HS(u->var, w, wv - c[0] * m / (sqrt(v) + c[3]));
}
