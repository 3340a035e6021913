/* Ftrl reference. Defines: POWER_HALF. Scalars: 0 lr, 1 -learning_rate_power,
 * 2 2*(l2 + beta/(2*lr)), 3 l1, 4 2*l2_shrinkage. Slots: 0 accumulator n, 1 linear z. */
#include <math.h>
#include "host_internal.h"

void clopt__host_ftrl(const clopt__host_update *u, size_t w, size_t g, size_t s, uint32_t seg) {
    const double *c = u->launch->scalars;
    const int half = clopt__launch_define(u->launch, "POWER_HALF", 0);
    const double gv = GRAD(), wv = WEIGHT();
    const double n = HL(u->slot, SLOT(0));
    double z = HL(u->slot, SLOT(1));
    const double gs = gv + c[4] * wv, n1 = n + gv * gv;
    const double p1 = half ? sqrt(n1) : pow(n1, c[1]), p0 = half ? sqrt(n) : pow(n, c[1]);
    z += gs - (p1 - p0) / c[0] * wv;
    const double q = p1 / c[0] + c[2];
    HS(u->slot, SLOT(1), z);
    HS(u->var, w, (fmin(fmax(z, -c[3]), c[3]) - z) / q);
    HS(u->slot, SLOT(0), n1);
}
