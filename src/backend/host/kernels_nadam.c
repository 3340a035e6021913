/* Nadam reference. Scalars: 0 lr, 1 (1 - beta1), 2 (1 - beta2), 3 epsilon,
 * 4 u_{t+1}/(1-P_{t+1}), 5 (1-u_t)/(1-P_t), 6 1/(1-beta2^t). Slots: 0 m, 1 v. */
#include <math.h>
#include "host_internal.h"

void clopt__host_nadam(const clopt__host_update *u, size_t w, size_t g, size_t s, uint32_t seg) {
    const double *c = u->launch->scalars;
    const double gv = GRAD(), wv = WEIGHT();
    double m = HL(u->slot, SLOT(0)), v = HL(u->slot, SLOT(1));
    m += (gv - m) * c[1];
    v += (gv * gv - v) * c[2];
    HS(u->slot, SLOT(0), m);
    HS(u->slot, SLOT(1), v);
    const double mhat = c[4] * m + c[5] * gv, vhat = v * c[6];
    HS(u->var, w, wv - mhat * c[0] / (sqrt(vhat) + c[3]));
}
