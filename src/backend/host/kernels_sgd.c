/* SGD reference. Defines: MOMENTUM, NESTEROV. Scalars: CLOPT_SCALARS_SGD (cl/scalars.cl). Slots:
 * 0 momentum. */
#include "host_internal.h"

void clopt__host_sgd(const clopt__host_update *u, size_t w, size_t g, size_t s, uint32_t seg) {
    HOST_SCALARS(SGD);
    const double gv = GRAD();
    double wv = WEIGHT();
    if (clopt__launch_define(u->launch, "MOMENTUM", 0)) {
        double m = momentum * HL(u->slot, SLOT(0)) - lr * gv;
        HS(u->slot, SLOT(0), m);
        wv += clopt__launch_define(u->launch, "NESTEROV", 0) ? momentum * m - lr * gv : m;
    } else {
        wv -= lr * gv;
    }
    HS(u->var, w, wv);
}
