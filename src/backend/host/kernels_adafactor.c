/* Adafactor reference: the passes of cl/adafactor.cl (src/optim/adafactor.c describes them), in
 * double, storing what the work-group form stores between passes (the gradient, then u, in the
 * velocity slot; the CPU form recomputes them, to the same values). Scalars:
 * CLOPT_SCALARS_ADAFACTOR, of the segment pass CLOPT_SCALARS_ADAFACTOR_FINISH (cl/scalars.cl).
 * Slots: 0 r, 1 c, 2 v. The info buffer (clopt__launch.info_buf, or the segment pass's seg_buf)
 * holds AF_WORDS uint32 words per built variable; per block (AUX_AT, AUX_ADD, doubles): the sums
 * of w^2 and u^2, then alpha and max(1, RMS(u)/clip_threshold). */
#include <math.h>
#include "host_internal.h"

enum { CLOPT_SCALARS_ADAFACTOR_FINISH(CLOPT__SCALAR_INDEX) };

/* beta_2_t * old + (1 - beta_2_t) * x: a statistic's decayed update (AF_DECAY in the kernels). */
#define AF_DECAY(old, x) (beta_2_t * (old) + one_minus_beta_2_t * (x))

enum {
    AF_FACTORED, AF_B, AF_R, AF_C, AF_SLOT, AF_ACTIVE, AF_N_LO, AF_N_HI,
    AF_GCHUNK, AF_RPB, /* used by the OpenCL CPU form only (AF_RPB: cl/adafactor.cl's partials) */
    AF_WORDS
};
enum { AF_ROWS, AF_ROW_GROUP, AF_COLS, AF_ROW_MEANS, AF_ROW_BLOCK, AF_COL_SUM };

/* Element idx of slot kind k's storage starting at element `base`. */
#define AT(k, idx)                                                                          \
    (base + (size_t)(idx) + (size_t)((k) + u->launch->slot_base) * u->launch->slot_stride)

static uint32_t *info_of(const void *buf, uint32_t var) {
    return (uint32_t *)buf + (size_t)var * AF_WORDS;
}

static uint64_t count_of(const uint32_t *in) {
    return (uint64_t)in[AF_N_LO] | ((uint64_t)in[AF_N_HI] << 32);
}

/* v at element e of a factored variable (cl/adafactor.cl's af_v). */
static double velocity_at(const clopt__host_update *u, size_t base, uint64_t e,
                          const uint32_t *in) {
    const uint64_t B = in[AF_B], R = in[AF_R], C = in[AF_C];
    const uint64_t b = e / (R * C), i = (e / C) % R, j = e % C;
    const double r = HL(u->slot, AT(0, b * R + i));
    const double rm = R == 1 ? r : HL(u->slot, AT(1, B * C + b));
    return r / rm * HL(u->slot, AT(1, b * C + j));
}

void clopt__host_adafactor_stats(const clopt__host_update *u, const clopt__chunk *ch,
                                 size_t entry) {
    HOST_SCALARS(ADAFACTOR);
    const uint32_t seg = ch->seg;
    uint32_t *in = info_of(u->launch->info_buf, seg);
    const size_t base = (size_t)in[AF_SLOT] * CLOPT__CHUNK;
    const uint64_t n = count_of(in);
    double sw = 0, su = 0;
    for (size_t l = 0; l < CLOPT__CHUNK; l++) {
        const size_t w = (size_t)ch->var * CLOPT__CHUNK + l,
                     g = (size_t)ch->grad * CLOPT__CHUNK + l,
                     s = (size_t)ch->slot * CLOPT__CHUNK + l;
        const uint64_t e = s - base;
        const double gv = GRAD(), wv = WEIGHT();
        double uv = 0;
        if (in[AF_FACTORED]) {
            HS(u->slot, SLOT(2), gv);
        } else if (e < n) {
            HS(u->slot, SLOT(2), AF_DECAY(HL(u->slot, SLOT(2)), gv * gv + epsilon_1));
            HS(u->slot, SLOT(0), gv / sqrt(HL(u->slot, SLOT(2))));
            uv = HL(u->slot, SLOT(0));
        }
        if (e == 0) in[AF_ACTIVE] = 1;
        sw += wv * wv;
        su += uv * uv;
    }
    AUX_ADD(entry, 0, sw);
    AUX_ADD(entry, 1, su);
}

void clopt__host_adafactor_reduce(const clopt__host_update *u, const clopt__chunk *ch,
                                  size_t entry) {
    (void)entry;
    HOST_SCALARS(ADAFACTOR);
    /* The entry is {variable, kind, first, count}. */
    const uint32_t *in = info_of(u->launch->info_buf, ch->var);
    if (!in[AF_ACTIVE]) return;
    const size_t base = (size_t)in[AF_SLOT] * CLOPT__CHUNK;
    const uint64_t B = in[AF_B], R = in[AF_R], C = in[AF_C];
    const uint32_t kind = ch->grad, first = ch->slot, count = kind == AF_ROW_GROUP ? 1 : ch->seg;
    for (uint64_t k = first; k < (uint64_t)first + count; k++) {
        double sum = 0;
        /* AF_ROW_BLOCK's rows and AF_COL_SUM's columns are summed here as rows and columns,
         * straight from G in double (the kernels add per-block column partials). */
        if (kind == AF_ROWS || kind == AF_ROW_GROUP || kind == AF_ROW_BLOCK) {
            for (uint64_t j = 0; j < C; j++) {
                const double x = HL(u->slot, AT(2, k * C + j));
                sum += x * x + epsilon_1;
            }
            HS(u->slot, AT(0, k), AF_DECAY(HL(u->slot, AT(0, k)), sum / (double)C));
        } else if (kind == AF_COLS || kind == AF_COL_SUM) {
            const uint64_t b = k / C, j = k % C;
            for (uint64_t i = 0; i < R; i++) {
                const double x = HL(u->slot, AT(2, (b * R + i) * C + j));
                sum += x * x + epsilon_1;
            }
            HS(u->slot, AT(1, k), AF_DECAY(HL(u->slot, AT(1, k)), sum / (double)R));
        } else { /* AF_ROW_MEANS */
            for (uint64_t i = 0; i < R; i++) sum += HL(u->slot, AT(0, k * R + i));
            HS(u->slot, AT(1, B * C + k), sum / (double)R);
        }
    }
}

void clopt__host_adafactor_velocity(const clopt__host_update *u, const clopt__chunk *ch,
                                    size_t entry) {
    const uint32_t *in = info_of(u->launch->info_buf, ch->seg);
    if (!in[AF_FACTORED]) return;
    const size_t base = (size_t)in[AF_SLOT] * CLOPT__CHUNK;
    const uint64_t n = count_of(in);
    double su = 0;
    for (size_t l = 0; l < CLOPT__CHUNK; l++) {
        const size_t s = (size_t)ch->slot * CLOPT__CHUNK + l;
        const uint64_t e = s - base;
        if (e >= n) continue;
        HS(u->slot, SLOT(2), HL(u->slot, SLOT(2)) / sqrt(velocity_at(u, base, e, in)));
        const double uv = HL(u->slot, SLOT(2));
        su += uv * uv;
    }
    AUX_ADD(entry, 1, su);
}

void clopt__host_adafactor_scale(const clopt__segment_launch *l, const clopt__segment *range) {
    double *p = l->partials_buf;
    const uint32_t *in = info_of(l->seg_buf, range->index);
    const double n = (double)count_of(in);
    double sw = 0, su = 0;
    for (uint32_t c = 0; c < clopt__segment_blocks(range); c++) {
        sw += p[2 * ((size_t)range->block + c)];
        su += p[2 * ((size_t)range->block + c) + 1];
    }
    const double rms_w = sqrt(sw / n), rms_u = sqrt(su / n);
    /* Keras's ops.maximum keeps a NaN. */
    const double eps2 = l->scalars[SC_epsilon_2];
    const double alpha = (isnan(rms_w) ? rms_w : fmax(eps2, rms_w)) * l->scalars[SC_rho];
    const double q = rms_u / l->scalars[SC_clip_threshold];
    const double d = isnan(q) ? q : fmax(1.0, q);
    for (uint32_t c = 0; c < clopt__segment_blocks(range); c++) {
        p[2 * ((size_t)range->block + c)] = alpha;
        p[2 * ((size_t)range->block + c) + 1] = d;
    }
}

void clopt__host_adafactor(const clopt__host_update *u, const clopt__chunk *ch, size_t entry) {
    const uint32_t seg = ch->seg;
    uint32_t *in = info_of(u->launch->info_buf, seg);
    const size_t base = (size_t)in[AF_SLOT] * CLOPT__CHUNK;
    const uint64_t n = count_of(in);
    const double alpha = AUX_AT(entry, 0), d = AUX_AT(entry, 1);
    for (size_t l = 0; l < CLOPT__CHUNK; l++) {
        const size_t w = (size_t)ch->var * CLOPT__CHUNK + l,
                     s = (size_t)ch->slot * CLOPT__CHUNK + l;
        const uint64_t e = s - base;
        double uv = 0;
        if (e < n) {
            if (in[AF_FACTORED]) {
                uv = HL(u->slot, SLOT(2));
                HS(u->slot, SLOT(2), velocity_at(u, base, e, in));
            } else {
                uv = HL(u->slot, SLOT(0));
            }
        }
        HS(u->var, w, WEIGHT() - alpha * (uv / d));
        if (e == 0) in[AF_ACTIVE] = 0;
    }
}
