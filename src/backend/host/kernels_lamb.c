/* Lamb reference, the three passes of cl/lamb.cl. Scalars: CLOPT_SCALARS_LAMB
 * (cl/scalars.cl). Slots: 0 m, 1 v. Per block (AUX_AT, AUX_ADD, doubles): the block's sums of
 * w^2 and r^2, then its variable's trust ratio. */
#include <math.h>
#include "host_internal.h"

/* r from the stored m and v. */
static double lamb_r(const clopt__host_update *u, size_t s) {
    HOST_SCALARS(LAMB);
    const double m = HL(u->slot, SLOT(0)), v = HL(u->slot, SLOT(1));
    return (m / m_corr) / (sqrt(v / v_corr) + epsilon);
}

void clopt__host_lamb_stats(const clopt__host_update *u, const clopt__chunk *ch, size_t entry) {
    HOST_SCALARS(LAMB);
    const uint32_t seg = ch->seg;
    double sw = 0, sr = 0;
    for (size_t i = 0; i < CLOPT__CHUNK; i++) {
        const size_t w = (size_t)ch->var * CLOPT__CHUNK + i, g = (size_t)ch->grad * CLOPT__CHUNK + i,
                     s = (size_t)ch->slot * CLOPT__CHUNK + i;
        const double gv = GRAD(), wv = WEIGHT();
        double m, v;
        clopt__host_adam_moments(u, s, gv, one_minus_beta_1, one_minus_beta_2, &m, &v);
        const double r = lamb_r(u, s);
        sw += wv * wv;
        sr += r * r;
    }
    AUX_ADD(entry, 0, sw);
    AUX_ADD(entry, 1, sr);
}

void clopt__host_lamb_ratio(const clopt__segment_launch *l, const clopt__segment *range) {
    double *p = l->partials_buf;
    double sw = 0, sr = 0;
    for (uint32_t c = 0; c < clopt__segment_blocks(range); c++) {
        sw += p[2 * ((size_t)range->block + c)];
        sr += p[2 * ((size_t)range->block + c) + 1];
    }
    const double wn = sqrt(sw), rn = sqrt(sr);
    const double ratio = wn > 0 ? (rn > 0 ? wn / rn : 1.0) : 1.0;
    for (uint32_t c = 0; c < clopt__segment_blocks(range); c++)
        p[2 * ((size_t)range->block + c)] = ratio;
}

void clopt__host_lamb(const clopt__host_update *u, const clopt__chunk *ch, size_t entry) {
    HOST_SCALARS(LAMB);
    const double ratio = AUX_AT(entry, 0);
    const uint32_t seg = ch->seg;
    for (size_t i = 0; i < CLOPT__CHUNK; i++) {
        const size_t w = (size_t)ch->var * CLOPT__CHUNK + i, s = (size_t)ch->slot * CLOPT__CHUNK + i;
        HS(u->var, w, WEIGHT() - ratio * lr * lamb_r(u, s));
    }
}
