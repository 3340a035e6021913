/* Lion reference. Scalars: CLOPT_SCALARS_LION (cl/scalars.cl). Slots: 0 momentum. The sign is
 * Keras's ops.sign: 0 at 0, NaN at NaN. */
#include <math.h>
#include "host_internal.h"

void clopt__host_lion(const clopt__host_update *u, size_t w, size_t g, size_t s, uint32_t seg) {
    HOST_SCALARS(LION);
    const double gv = GRAD(), wv = WEIGHT();
    const double m = HL(u->slot, SLOT(0));
    const double x = m * beta_1 + gv * one_minus_beta_1;
    HS(u->var, w, wv - lr * (isnan(x) ? x : (double)((x > 0) - (x < 0))));
    HS(u->slot, SLOT(0), m * beta_2 + gv * one_minus_beta_2);
}
