/* Adadelta reference. Scalars: CLOPT_SCALARS_ADADELTA (cl/scalars.cl). Slots: 0
 * accumulated_grad, 1 accumulated_delta_var. */
#include <math.h>
#include "host_internal.h"

void clopt__host_adadelta(const clopt__host_update *u, size_t w, size_t g, size_t s,
                          uint32_t seg) {
    HOST_SCALARS(ADADELTA);
    const double gv = GRAD(), wv = WEIGHT();
    const double eg = rho * HL(u->slot, SLOT(0)) + one_minus_rho * (gv * gv);
    HS(u->slot, SLOT(0), eg);
    const double ex = HL(u->slot, SLOT(1));
    const double d = -(sqrt(ex + epsilon) * gv) / sqrt(eg + epsilon);
    HS(u->slot, SLOT(1), rho * ex + one_minus_rho * (d * d));
    HS(u->var, w, wv + lr * d);
}
