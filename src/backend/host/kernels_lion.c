/* Lion reference. Scalars: 0 lr, 1 beta1, 2 (1 - beta1), 3 beta2, 4 (1 - beta2). Slots:
 * 0 momentum. The sign is Keras's ops.sign: 0 at 0, NaN at NaN. */
#include <math.h>
#include "host_internal.h"

void clopt__host_lion(const clopt__host_update *u, size_t w, size_t g, size_t s, uint32_t seg) {
    const double *c = u->launch->scalars;
    const double gv = GRAD(), wv = WEIGHT();
    const double m = HL(u->slot, SLOT(0));
    const double x = m * c[1] + gv * c[2];
    HS(u->var, w, wv - c[0] * (isnan(x) ? x : (double)((x > 0) - (x < 0))));
    HS(u->slot, SLOT(0), m * c[3] + gv * c[4]);
}
