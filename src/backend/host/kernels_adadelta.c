/* Adadelta reference. Scalars: 0 lr, 1 rho, 2 (1 - rho), 3 epsilon. Slots: 0 accumulated_grad,
 * 1 accumulated_delta_var. */
#include <math.h>
#include "host_internal.h"

void clopt__host_adadelta(const clopt__host_update *u, size_t w, size_t g, size_t s,
                          uint32_t seg) {
    const double *c = u->launch->scalars;
    const double gv = GRAD(), wv = WEIGHT();
    const double eg = c[1] * HL(u->slot, SLOT(0)) + c[2] * (gv * gv);
    HS(u->slot, SLOT(0), eg);
    const double ex = HL(u->slot, SLOT(1));
    const double d = -(sqrt(ex + c[3]) * gv) / sqrt(eg + c[3]);
    HS(u->slot, SLOT(1), c[1] * ex + c[2] * (d * d));
    HS(u->var, w, wv + c[0] * d);
}
