/* The table of host kernels; each optimizer's reference math lives in kernels_<name>.c. */
#include "host_internal.h"

void clopt__host_sgd(const clopt__host_update *u, size_t w, size_t g, size_t s, uint32_t seg);
void clopt__host_adam(const clopt__host_update *u, size_t w, size_t g, size_t s, uint32_t seg);

const clopt__host_kernel clopt__host_kernels[] = {
    {"sgd", clopt__host_sgd},
    {"adam", clopt__host_adam},
    {NULL, NULL},
};
