/* Reference versions of cl/reduce.cl's sumsq and cl/pipeline.cl. */
#include <math.h>
#include <string.h>
#include "host_internal.h"

void clopt__host_sumsq(const clopt__host_update *u, const clopt__chunk *ch, size_t entry) {
    const clopt__launch *l = u->launch;
    double sum = 0;
    for (size_t i = 0; i < CLOPT__CHUNK; i++) {
        const size_t g = (size_t)ch->grad * CLOPT__CHUNK + i, s = (size_t)ch->slot * CLOPT__CHUNK + i;
        double x = HL(u->grad, g) * l->pipe[0];
        if (l->accum) x = (x + HL(u->slot, SLOT_ABS(l->slot_acc))) * l->pipe[1];
        sum += x * x;
    }
    /* Into the block's sum, in chunk order (cl/reduce.cl). */
    if (!u->block_first) sum = clopt__elem_load(u->seg, CLOPT_FLOAT64, entry) + sum;
    clopt__elem_store(u->seg, CLOPT_FLOAT64, entry, sum);
}

void clopt__host_accumulate(const clopt__host_update *u, size_t w, size_t g, size_t s,
                            uint32_t seg) {
    (void)w, (void)seg;
    const size_t a = SLOT_ABS(u->launch->slot_acc);
    HS(u->slot, a, HL(u->slot, a) + HL(u->grad, g) * u->launch->pipe[0]);
}

void clopt__host_grad_out(const clopt__host_update *u, size_t w, size_t g, size_t s,
                          uint32_t seg) {
    (void)w;
    HS(u->var, g, GRAD());
}

void clopt__host_ema(const clopt__host_update *u, size_t w, size_t g, size_t s, uint32_t seg) {
    (void)g, (void)seg;
    const size_t a = SLOT_ABS(u->launch->slot_ema);
    HOST_SCALARS(EMA);
    HS(u->slot, a, ema_momentum * HL(u->slot, a) + (1 - ema_momentum) * HL(u->var, w));
}

void clopt__host_finite(const clopt__host_update *u, size_t w, size_t g, size_t s,
                        uint32_t seg) {
    (void)w, (void)s, (void)seg;
    if (!isfinite(HL(u->grad, g)))
        clopt__elem_store(u->seg, clopt__real_dtype(u->launch->dtype), 0, 0.0);
}

void clopt__host_ema_overwrite(const clopt__host_update *u, size_t w, size_t g, size_t s,
                               uint32_t seg) {
    (void)g, (void)seg;
    HS(u->var, w, HL(u->slot, SLOT_ABS(u->launch->slot_ema)));
}

/* cl/loss_scale.cl's finish: the end of a device-decided LossScaleOptimizer step. */
void clopt__host_loss_scale_finish(const clopt__segment_launch *l, const clopt__segment *range) {
    (void)range;
    uint64_t *st = l->partials_buf;
    float flag, scale;
    memcpy(&flag, &st[0], sizeof flag);
    memcpy(&scale, &st[3], sizeof scale);
    if (flag == 1.0f) {
        st[1] += 1;
        if (st[2] == st[5]) {
            st[2] = 0;
            scale *= 2.0f;
        } else {
            st[2] += 1;
        }
    } else {
        st[2] = 0;
        scale *= 0.5f;
    }
    memcpy(&st[3], &scale, sizeof scale);
    const float go[2] = {1.0f, 1.0f};
    memcpy(&st[0], go, sizeof go);
}
