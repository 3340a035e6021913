/* The table of host kernels; each optimizer's reference math lives in kernels_<name>.c. The
 * element-wise updates come from the one list of them, CLOPT_ELEMENTWISE_UPDATES (cl/scalars.cl). */
#include "host_internal.h"

#define KERNEL(fn) void fn(const clopt__host_update *u, size_t w, size_t g, size_t s, uint32_t seg);
KERNEL(clopt__host_accumulate)
KERNEL(clopt__host_ema)
KERNEL(clopt__host_grad_out)
KERNEL(clopt__host_ema_overwrite)
KERNEL(clopt__host_finite)
#define ELEMENTWISE(name) KERNEL(clopt__host_##name)
CLOPT_ELEMENTWISE_UPDATES(ELEMENTWISE)
#undef ELEMENTWISE
#undef KERNEL
void clopt__host_lamb_stats(const clopt__host_update *u, const clopt__chunk *ch, size_t entry);
void clopt__host_lamb(const clopt__host_update *u, const clopt__chunk *ch, size_t entry);
void clopt__host_lamb_ratio(const clopt__segment_launch *l, const clopt__segment *range);
void clopt__host_loss_scale_finish(const clopt__segment_launch *l, const clopt__segment *range);
void clopt__host_adafactor_stats(const clopt__host_update *u, const clopt__chunk *ch, size_t entry);
void clopt__host_adafactor_reduce(const clopt__host_update *u, const clopt__chunk *ch, size_t entry);
void clopt__host_adafactor_velocity(const clopt__host_update *u, const clopt__chunk *ch,
                                    size_t entry);
void clopt__host_adafactor(const clopt__host_update *u, const clopt__chunk *ch, size_t entry);
void clopt__host_adafactor_scale(const clopt__segment_launch *l, const clopt__segment *range);
void clopt__host_muon_stats(const clopt__host_update *u, const clopt__chunk *ch, size_t entry);
void clopt__host_muon_load(const clopt__host_update *u, const clopt__chunk *ch, size_t entry);
void clopt__host_muon_apply(const clopt__host_update *u, const clopt__chunk *ch, size_t entry);
void clopt__host_muon_norm(const clopt__segment_launch *l, const clopt__segment *range);
void clopt__host_sumsq(const clopt__host_update *u, const clopt__chunk *ch, size_t entry);

#define ELEMENTWISE(name) {#name, clopt__host_##name, NULL},
const clopt__host_kernel clopt__host_kernels[] = {
    CLOPT_ELEMENTWISE_UPDATES(ELEMENTWISE)
    {"reduce.sumsq", NULL, clopt__host_sumsq},
    {"pipeline.accumulate", clopt__host_accumulate, NULL},
    {"pipeline.ema", clopt__host_ema, NULL},
    {"pipeline.grad", clopt__host_grad_out, NULL},
    {"pipeline.ema_overwrite", clopt__host_ema_overwrite, NULL},
    {"pipeline.finite", clopt__host_finite, NULL},
    {"lamb.stats", NULL, clopt__host_lamb_stats},
    {"lamb", NULL, clopt__host_lamb},
    {"adafactor.stats", NULL, clopt__host_adafactor_stats},
    {"adafactor.reduce", NULL, clopt__host_adafactor_reduce},
    {"adafactor.velocity", NULL, clopt__host_adafactor_velocity},
    {"adafactor", NULL, clopt__host_adafactor},
    {"muon.stats", NULL, clopt__host_muon_stats},
    {"muon.load", NULL, clopt__host_muon_load},
    {"muon.apply", NULL, clopt__host_muon_apply},
    {NULL, NULL, NULL},
};
#undef ELEMENTWISE

const clopt__host_segment_kernel clopt__host_segment_kernels[] = {
    {"lamb.ratio", clopt__host_lamb_ratio},
    {"loss_scale.finish", clopt__host_loss_scale_finish},
    {"adafactor.scale", clopt__host_adafactor_scale},
    {"muon.norm", clopt__host_muon_norm},
    {NULL, NULL},
};
