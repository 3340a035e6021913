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
KERNEL(clopt__host_grad_out)
KERNEL(clopt__host_ema_overwrite)
KERNEL(clopt__host_finite)
KERNEL(clopt__host_nadam)
KERNEL(clopt__host_ftrl)
KERNEL(clopt__host_lion)
KERNEL(clopt__host_schedule_free_adamw)
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
    {"pipeline.grad", clopt__host_grad_out, NULL},
    {"pipeline.ema_overwrite", clopt__host_ema_overwrite, NULL},
    {"pipeline.finite", clopt__host_finite, NULL},
    {"nadam", clopt__host_nadam, NULL},
    {"ftrl", clopt__host_ftrl, NULL},
    {"lion", clopt__host_lion, NULL},
    {"lamb.stats", NULL, clopt__host_lamb_stats},
    {"lamb", NULL, clopt__host_lamb},
    {"schedule_free_adamw", clopt__host_schedule_free_adamw, NULL},
    {"adafactor.stats", NULL, clopt__host_adafactor_stats},
    {"adafactor.reduce", NULL, clopt__host_adafactor_reduce},
    {"adafactor.velocity", NULL, clopt__host_adafactor_velocity},
    {"adafactor", NULL, clopt__host_adafactor},
    {"muon.stats", NULL, clopt__host_muon_stats},
    {"muon.load", NULL, clopt__host_muon_load},
    {"muon.apply", NULL, clopt__host_muon_apply},
    {NULL, NULL, NULL},
};

const clopt__host_segment_kernel clopt__host_segment_kernels[] = {
    {"lamb.ratio", clopt__host_lamb_ratio},
    {"loss_scale.finish", clopt__host_loss_scale_finish},
    {"adafactor.scale", clopt__host_adafactor_scale},
    {"muon.norm", clopt__host_muon_norm},
    {NULL, NULL},
};
