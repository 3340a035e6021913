/* Nadam reference. Scalars: CLOPT_SCALARS_NADAM (cl/scalars.cl). Slots: 0 m, 1 v. */
#include <math.h>
#include "host_internal.h"

void clopt__host_nadam(const clopt__host_update *u, size_t w, size_t g, size_t s, uint32_t seg) {
    HOST_SCALARS(NADAM);
    const double gv = GRAD(), wv = WEIGHT();
    double m, v;
    clopt__host_adam_moments(u, s, gv, one_minus_beta_1, one_minus_beta_2, &m, &v);
    const double mhat = m_coef * m + g_coef * gv, vhat = v * v_coef;
    HS(u->var, w, wv - mhat * lr / (sqrt(vhat) + epsilon));
}
