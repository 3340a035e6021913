/* Adam reference. Defines: AMSGRAD. Scalars: CLOPT_SCALARS_ADAM (cl/scalars.cl). Slots: 0 m, 1
 * v, 2 vhat. */
#include <math.h>
#include "host_internal.h"

void clopt__host_adam(const clopt__host_update *u, size_t w, size_t g, size_t s, uint32_t seg) {
    HOST_SCALARS(ADAM);
    const double gv = GRAD(), wv = WEIGHT();
    double m, v;
    clopt__host_adam_moments(u, s, gv, one_minus_beta_1, one_minus_beta_2, &m, &v);
    if (clopt__launch_define(u->launch, "AMSGRAD", 0)) {
        double vh = fmax(HL(u->slot, SLOT(2)), v);
        HS(u->slot, SLOT(2), vh);
        v = vh;
    }
    HS(u->var, w, wv - alpha * m / (sqrt(v) + epsilon));
}
