/* Adagrad reference. Scalars: CLOPT_SCALARS_ADAGRAD (cl/scalars.cl). Slots: 0 accumulator. */
#include <math.h>
#include "host_internal.h"

void clopt__host_adagrad(const clopt__host_update *u, size_t w, size_t g, size_t s,
                         uint32_t seg) {
    HOST_SCALARS(ADAGRAD);
    const double gv = GRAD(), wv = WEIGHT();
    const double a = HL(u->slot, SLOT(0)) + gv * gv;
    HS(u->slot, SLOT(0), a);
    HS(u->var, w, wv - lr * gv / sqrt(a + epsilon));
}
