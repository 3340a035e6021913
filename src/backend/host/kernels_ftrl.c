/* Ftrl reference. Defines: POWER_HALF. Scalars: CLOPT_SCALARS_FTRL (cl/scalars.cl). Slots: 0
 * accumulator n, 1 linear z. */
#include <math.h>
#include "host_internal.h"

void clopt__host_ftrl(const clopt__host_update *u, size_t w, size_t g, size_t s, uint32_t seg) {
    HOST_SCALARS(FTRL);
    const int half = clopt__launch_define(u->launch, "POWER_HALF", 0);
    const double gv = GRAD(), wv = WEIGHT();
    const double n = HL(u->slot, SLOT(0));
    double z = HL(u->slot, SLOT(1));
    const double gs = gv + shrinkage_twice * wv, n1 = n + gv * gv;
    const double p1 = half ? sqrt(n1) : pow(n1, neg_power), p0 = half ? sqrt(n) : pow(n, neg_power);
    z += gs - (p1 - p0) / lr * wv;
    const double q = p1 / lr + l2_twice;
    HS(u->slot, SLOT(1), z);
    HS(u->var, w, (fmin(fmax(z, -l1), l1) - z) / q);
    HS(u->slot, SLOT(0), n1);
}
