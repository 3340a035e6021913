/* The table of host kernels; each optimizer's reference math lives in kernels_<name>.c. */
#include "host_internal.h"

#define KERNEL(fn) void fn(const clopt__host_update *u, size_t w, size_t g, size_t s, uint32_t seg);
KERNEL(clopt__host_sgd)
KERNEL(clopt__host_adam)
KERNEL(clopt__host_rmsprop)
KERNEL(clopt__host_adagrad)
KERNEL(clopt__host_adadelta)
KERNEL(clopt__host_adamax)
KERNEL(clopt__host_accumulate)
KERNEL(clopt__host_ema)
KERNEL(clopt__host_ema_overwrite)
#undef KERNEL
void clopt__host_sumsq(const clopt__host_update *u, const clopt__chunk *ch, size_t entry);

const clopt__host_kernel clopt__host_kernels[] = {
    {"sgd", clopt__host_sgd, NULL},
    {"adam", clopt__host_adam, NULL},
    {"rmsprop", clopt__host_rmsprop, NULL},
    {"adagrad", clopt__host_adagrad, NULL},
    {"adadelta", clopt__host_adadelta, NULL},
    {"adamax", clopt__host_adamax, NULL},
    {"reduce.sumsq", NULL, clopt__host_sumsq},
    {"pipeline.accumulate", clopt__host_accumulate, NULL},
    {"pipeline.ema", clopt__host_ema, NULL},
    {"pipeline.ema_overwrite", clopt__host_ema_overwrite, NULL},
    {NULL, NULL, NULL},
};
