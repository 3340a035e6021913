/* Adamax reference. Scalars: CLOPT_SCALARS_ADAMAX (cl/scalars.cl). Slots: 0 momentum, 1 norm. */
#include <math.h>
#include "host_internal.h"

void clopt__host_adamax(const clopt__host_update *u, size_t w, size_t g, size_t s,
                        uint32_t seg) {
    HOST_SCALARS(ADAMAX);
    const double gv = GRAD(), wv = WEIGHT();
    double m = HL(u->slot, SLOT(0));
    m += (gv - m) * one_minus_beta_1;
    const double un = fmax(beta_2 * HL(u->slot, SLOT(1)), fabs(gv));
    HS(u->slot, SLOT(0), m);
    HS(u->slot, SLOT(1), un);
    HS(u->var, w, wv - lr_t * m / (un + epsilon));
}
