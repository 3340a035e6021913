/* Adafactor, in six launches per plan launch (src/optim/adafactor.c describes the passes).
 * Scalars of the fused kernels: c0 beta_2_t, c1 1-beta_2_t, c2 epsilon_1. Slots: 0 r, 1 c,
 * 2 v, each stored at the variable's size (adafactor.c: r and c views at the start, the rest
 * scratch). info: AF_WORDS uint words per built variable, the layout of adafactor.c's AF_*
 * enum. Per chunk-table entry (AUX_AT): the chunk's sums of w^2 and u^2, then (pass 5) its
 * variable's alpha and max(1, RMS(u)/clip_threshold). */

#define AF_FACTORED 0
#define AF_B 1
#define AF_R 2
#define AF_C 3
#define AF_SLOT 4
#define AF_ACTIVE 5
#define AF_N_LO 6
#define AF_N_HI 7
#define AF_WORDS 8

/* Row/column table entry kinds {variable, kind, first, count} (adafactor.c). */
#define AF_ROWS 0
#define AF_ROW_GROUP 1
#define AF_COLS 2
#define AF_ROW_MEANS 3

#define AF_ARGS UPDATE_ARGS_AUX, global uint *info

/* For the fused kernels over the plan's chunks: the variable's words, its slot storage's first
 * element, the work-item's element index e in the variable and the element count n. */
#define AF_ELEMENT                                                      \
    global uint *in = info + (size_t)sg * AF_WORDS;                     \
    const size_t base_ = (size_t)in[AF_SLOT] * CHUNK;                   \
    const ulong e = si - base_;                                         \
    const ulong n = (ulong)in[AF_N_LO] | ((ulong)in[AF_N_HI] << 32)

/* Element idx of slot kind k's storage of the variable whose storage starts at base_. */
#define AF_AT(k, idx) (base_ + (size_t)(idx) + (size_t)((k) + SLOT_BASE) * ss)

/* The sum of x over the work-group (local size CHUNK); p is CHUNK local reals. */
inline real af_group_sum(local real *p, real x) {
    const size_t lid = get_local_id(0);
    barrier(CLK_LOCAL_MEM_FENCE); /* p may still be read from a previous call */
    p[lid] = x;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (size_t h = CHUNK / 2; h > 0; h /= 2) {
        if (lid < h) p[lid] += p[lid + h];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    return p[0];
}

/* Keras's ops.maximum(a, x) for a constant a: NaN in x stays NaN. */
inline real af_max(real a, real x) { return isnan(x) ? x : fmax(a, x); }

/* v at element e of a factored variable: (r / mean(r, axis=-1))[..., :, None] * c[..., None, :]. */
inline real af_v(global const store_t *s, ulong ss, size_t base_, ulong e,
                 global const uint *in) {
    const ulong B = in[AF_B], R = in[AF_R], C = in[AF_C];
    const ulong b = e / (R * C), i = (e / C) % R, j = e % C;
    const real r = LOAD(s, AF_AT(0, b * R + i));
    const real rm = R == 1 ? r : LOAD(s, AF_AT(1, B * C + b)); /* the mean of one row is r */
    return r / rm * LOAD(s, AF_AT(1, b * C + j));
}

/* Pass 1, plan chunks: the gradient (read once), w after decay; rank < 2: v and u. */
kernel void stats(AF_ARGS) {
    local real part[CHUNK];
    UPDATE_INDEX;
    AF_ELEMENT;
    const real gv = GRAD();
    const real wv = WEIGHT();
    real u = 0;
    if (in[AF_FACTORED]) {
        STORE(s, SLOT(2), gv); /* until pass 4 */
    } else if (e < n) {
        STORE(s, SLOT(2), c0 * LOAD(s, SLOT(2)) + c1 * (gv * gv + c2));
        STORE(s, SLOT(0), gv / sqrt(LOAD(s, SLOT(2)))); /* u, in r's storage (scratch) */
        u = LOAD(s, SLOT(0));
    }
    if (e == 0) in[AF_ACTIVE] = 1;
    const real sw = af_group_sum(part, wv * wv);
    const real su = af_group_sum(part, u * u);
    if (get_local_id(0) == 0) {
        AUX_AT(0) = sw;
        AUX_AT(1) = su;
    }
}

/* Passes 2 and 3, over adafactor.c's table: r and c from the row and column means of
 * G = g^2 + epsilon_1 (g in the velocity slot), then the per-batch means of r. Variables
 * without a gradient in this step (not active) are skipped. */
kernel void reduce(AF_ARGS) {
    local real part[CHUNK];
    const size_t gid = get_global_id(0), lid = get_local_id(0);
    const uint4 en = table[tbase + gid / CHUNK];
    global const uint *in = info + (size_t)en.x * AF_WORDS;
    if (!in[AF_ACTIVE]) return; /* the whole work-group shares the entry */
    const size_t base_ = (size_t)in[AF_SLOT] * CHUNK;
    const ulong B = in[AF_B], R = in[AF_R], C = in[AF_C];
    if (en.y == AF_ROW_GROUP) { /* one row of at least CHUNK elements per work-group */
        const ulong k = en.z;
        real sum = 0;
        for (ulong j = lid; j < C; j += CHUNK) {
            const real x = LOAD(s, AF_AT(2, k * C + j));
            sum += x * x + c2;
        }
        sum = af_group_sum(part, sum);
        if (lid == 0) STORE(s, AF_AT(0, k), c0 * LOAD(s, AF_AT(0, k)) + c1 * (sum / (real)C));
        return;
    }
    if (lid >= en.w) return;
    const ulong k = en.z + lid;
    real sum = 0;
    if (en.y == AF_ROWS) {
        for (ulong j = 0; j < C; j++) {
            const real x = LOAD(s, AF_AT(2, k * C + j));
            sum += x * x + c2;
        }
        STORE(s, AF_AT(0, k), c0 * LOAD(s, AF_AT(0, k)) + c1 * (sum / (real)C));
    } else if (en.y == AF_COLS) {
        const ulong b = k / C, j = k % C;
        for (ulong i = 0; i < R; i++) {
            const real x = LOAD(s, AF_AT(2, (b * R + i) * C + j));
            sum += x * x + c2;
        }
        STORE(s, AF_AT(1, k), c0 * LOAD(s, AF_AT(1, k)) + c1 * (sum / (real)R));
    } else { /* AF_ROW_MEANS: k is a batch index; the mean goes after c, in c's storage */
        for (ulong i = 0; i < R; i++) sum += LOAD(s, AF_AT(0, k * R + i));
        STORE(s, AF_AT(1, B * C + k), sum / (real)R);
    }
}

/* Pass 4, plan chunks of factored variables: u = g / sqrt(v) over g in the velocity slot. */
kernel void velocity(AF_ARGS) {
    local real part[CHUNK];
    UPDATE_INDEX;
    AF_ELEMENT;
    if (!in[AF_FACTORED]) return; /* the whole work-group is one chunk of one variable */
    real u = 0;
    if (e < n) {
        STORE(s, SLOT(2), LOAD(s, SLOT(2)) / sqrt(af_v(s, ss, base_, e, in)));
        u = LOAD(s, SLOT(2));
    }
    const real su = af_group_sum(part, u * u);
    if (get_local_id(0) == 0) AUX_AT(1) = su;
}

/* Pass 5, one work-item per variable (segment pass; scalars c0 rho, c1 epsilon_2,
 * c2 clip_threshold): alpha = max(epsilon_2, RMS(w)) * rho and max(1, RMS(u)/clip_threshold)
 * over the variable's chunk partials. */
kernel void scale(global const uint4 *ranges, uint rbase, uint nranges, global real *partials,
                  global const uint *info, real c0, real c1, real c2, real c3) {
    (void)c3;
    const size_t i = get_global_id(0);
    if (i >= nranges) return;
    const uint4 rg = ranges[rbase + i];
    global const uint *in = info + (size_t)rg.x * AF_WORDS;
    const real n = (real)((ulong)in[AF_N_LO] | ((ulong)in[AF_N_HI] << 32));
    real sw = 0, su = 0;
    for (uint c = 0; c < rg.z; c++) {
        sw += partials[(size_t)(rg.y + c) * AUX_STRIDE];
        su += partials[(size_t)(rg.y + c) * AUX_STRIDE + 1];
    }
    const real alpha = af_max(c1, sqrt(sw / n)) * c0;
    const real d = af_max((real)1, sqrt(su / n) / c2);
    for (uint c = 0; c < rg.z; c++) {
        partials[(size_t)(rg.y + c) * AUX_STRIDE] = alpha;
        partials[(size_t)(rg.y + c) * AUX_STRIDE + 1] = d;
    }
}

/* Pass 6, plan chunks: w := w - alpha * (u / max(1, RMS(u)/clip)), w after decay (WEIGHT() as
 * pass 1 read it; the gradient is not read again); factored: v into the velocity slot. */
kernel void adafactor(AF_ARGS) {
    UPDATE_INDEX;
    AF_ELEMENT;
    const real wv = WEIGHT();
    real u = 0;
    if (e < n) {
        if (in[AF_FACTORED]) {
            u = LOAD(s, SLOT(2));
            STORE(s, SLOT(2), af_v(s, ss, base_, e, in));
        } else {
            u = LOAD(s, SLOT(0));
        }
    }
    STORE(w, wi, wv - AUX_AT(0) * (u / AUX_AT(1)));
    if (e == 0) in[AF_ACTIVE] = 0;
}
