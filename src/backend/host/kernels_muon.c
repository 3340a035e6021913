/* Muon reference, the passes of cl/muon.cl (see there for the scalars). stats: per chunk, Adam on
 * the AdamW path, momentum and G (into slot 1) and the chunk's sum of G^2 (added into its
 * block's) on the Muon path (launch.info_buf: one uint32 per built variable, 1 for the Muon
 * path). norm: per variable, ||G||_F over its blocks. load and apply: over every chunk of the
 * launch, with launch.info_buf the scratch (a header of 12 uint32 words per built variable,
 * then the matrices as reals: double for float64 variables, else float; zero-padded where shapes
 * were merged). */
#include <math.h>
#include "host_internal.h"

void clopt__host_muon_stats(const clopt__host_update *u, const clopt__chunk *ch, size_t entry) {
    HOST_SCALARS(MUON);
    const uint32_t seg = ch->seg;
    const int muon = ((const uint32_t *)u->launch->info_buf)[seg] != 0;
    const int nesterov = clopt__launch_define(u->launch, "NESTEROV", 1);
    double sq = 0;
    for (size_t i = 0; i < CLOPT__CHUNK; i++) {
        const size_t w = (size_t)ch->var * CLOPT__CHUNK + i, g = (size_t)ch->grad * CLOPT__CHUNK + i,
                     s = (size_t)ch->slot * CLOPT__CHUNK + i;
        const double gv = GRAD();
        if (muon) {
            double m = HL(u->slot, SLOT(0));
            HS(u->slot, SLOT(0), m + (gv + m * momentum_minus_1));
            m = HL(u->slot, SLOT(0));
            HS(u->slot, SLOT(1), nesterov ? gv + momentum * m : m);
            const double G = HL(u->slot, SLOT(1));
            sq += G * G;
        } else {
            const double wv = WEIGHT();
            double m, v;
            clopt__host_adam_moments(u, s, gv, one_minus_beta_1, one_minus_beta_2, &m, &v);
            HS(u->var, w, wv - alpha * m / (sqrt(v) + epsilon));
        }
    }
    AUX_ADD(entry, 0, sq);
}

void clopt__host_muon_norm(const clopt__segment_launch *l, const clopt__segment *range) {
    double *p = l->partials_buf, sum = 0;
    for (uint32_t c = 0; c < clopt__segment_blocks(range); c++)
        sum += p[2 * ((size_t)range->block + c)];
    const double n = sqrt(sum);
    for (uint32_t c = 0; c < clopt__segment_blocks(range); c++)
        p[2 * ((size_t)range->block + c)] = n;
}

/* The variable's entry in the scratch header (cl/muon.cl: 12 uint32 words per built variable). */
static const uint32_t *muon_header(const clopt__host_update *u, const clopt__chunk *ch) {
    return (const uint32_t *)u->launch->info_buf + 12 * (size_t)ch->seg;
}

/* As cl/muon.cl's load: lane i of the chunk writes the stored positions p = e, e + lanes, ...
 * below the group's stride (word 9): the variable's element there, or 0 (padding, chunk tail). */
void clopt__host_muon_load(const clopt__host_update *u, const clopt__chunk *ch, size_t entry) {
    const clopt_dtype rd = clopt__real_dtype(u->launch->dtype);
    const uint32_t *h = muon_header(u, ch);
    if (!h[0]) return;
    const double norm = AUX_AT(entry, 0);
    const size_t n = h[2], lanes = (n + CLOPT__CHUNK - 1) / CLOPT__CHUNK * CLOPT__CHUNK;
    const size_t cols = h[6], ld = h[7], tr = h[8], span = h[9];
    const size_t rb = tr ? cols : n / cols, cb = tr ? n / cols : cols;
    for (size_t i = 0; i < CLOPT__CHUNK; i++) {
        const size_t e = (size_t)(ch->slot - h[1]) * CLOPT__CHUNK + i;
        if (e >= lanes) return;
        for (size_t p = e; p < span; p += lanes) {
            const size_t a = p / ld, b = p - a * ld;
            double v = 0.0;
            if (a < rb && b < cb) {
                const size_t s = (size_t)h[1] * CLOPT__CHUNK + (tr ? b * cols + a : a * cols + b);
                v = HL(u->slot, SLOT(1)) / (norm + 1e-7);
            }
            clopt__elem_store(u->launch->info_buf, rd, h[0] + p, v);
        }
    }
}

void clopt__host_muon_apply(const clopt__host_update *u, const clopt__chunk *ch, size_t entry) {
    (void)entry;
    HOST_SCALARS(MUON_APPLY);
    const clopt_dtype rd = clopt__real_dtype(u->launch->dtype);
    const uint32_t seg = ch->seg;
    const uint32_t *h = muon_header(u, ch);
    if (!h[0]) return;
    const double sc = lr_adjust != 0 ? sqrt((double)h[3]) : 1.0;
    const size_t cols = h[6], ld = h[7];
    for (size_t i = 0; i < CLOPT__CHUNK; i++) {
        const size_t w = (size_t)ch->var * CLOPT__CHUNK + i;
        const size_t e = (size_t)(ch->slot - h[1]) * CLOPT__CHUNK + i;
        if (e >= h[2]) continue;
        const size_t r = e / cols, q = e - r * cols, p = h[8] ? q * ld + r : r * ld + q;
        const double x = clopt__elem_load(u->launch->info_buf, rd, h[0] + p);
        HS(u->var, w, WEIGHT() - ((lr * x) * sc) * rms_rate);
    }
}
