/* Nadam reference. Scalars: CLOPT_SCALARS_NADAM (cl/scalars.cl). Slots: 0 m, 1 v. */
#include <math.h>
#include "host_internal.h"

void clopt__host_nadam(const clopt__host_update *u, size_t w, size_t g, size_t s, uint32_t seg) {
    HOST_SCALARS(NADAM);
    const double gv = GRAD(), wv = WEIGHT();
    double m = HL(u->slot, SLOT(0)), v = HL(u->slot, SLOT(1));
    m += (gv - m) * one_minus_beta_1;
    v += (gv * gv - v) * one_minus_beta_2;
    HS(u->slot, SLOT(0), m);
    HS(u->slot, SLOT(1), v);
    const double mhat = m_coef * m + g_coef * gv, vhat = v * v_coef;
    HS(u->var, w, wv - mhat * lr / (sqrt(vhat) + epsilon));
}
