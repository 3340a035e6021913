/* Adamax reference. Scalars: 0 lr/(1-beta1^t), 1 (1 - beta1), 2 beta2, 3 epsilon. Slots:
 * 0 momentum, 1 norm. */
#include <math.h>
#include "host_internal.h"

void clopt__host_adamax(const clopt__host_update *u, size_t w, size_t g, size_t s,
                        uint32_t seg) {
    const double *c = u->launch->scalars;
    const double gv = GRAD(), wv = WEIGHT();
    double m = HL(u->slot, SLOT(0));
    m += (gv - m) * c[1];
    const double un = fmax(c[2] * HL(u->slot, SLOT(1)), fabs(gv));
    HS(u->slot, SLOT(0), m);
    HS(u->slot, SLOT(1), un);
    HS(u->var, w, wv - c[0] * m / (un + c[3]));
}
