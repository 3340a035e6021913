/* SGD reference. Defines: MOMENTUM, NESTEROV. Scalars: 0 lr, 1 momentum. Slots: 0 momentum. */
#include "host_internal.h"

void clopt__host_sgd(const clopt__host_update *u, size_t w, size_t g, size_t s, uint32_t seg) {
    const double lr = u->launch->scalars[0], mu = u->launch->scalars[1];
    const double gv = GRAD();
    double wv = WEIGHT();
    if (clopt__launch_define(u->launch, "MOMENTUM", 0)) {
        double m = mu * HL(u->slot, SLOT(0)) - lr * gv;
        HS(u->slot, SLOT(0), m);
        wv += clopt__launch_define(u->launch, "NESTEROV", 0) ? mu * m - lr * gv : m;
    } else {
        wv -= lr * gv;
    }
    HS(u->var, w, wv);
}
