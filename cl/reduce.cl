/* Reductions for gradient clipping. sumsq: one work-group per chunk (local size CHUNK) writes the
 * chunk's sum of squares of the gradient as the pipeline sees it before clipping (unscaled, plus
 * the accumulator on an accumulation update step) to out[(tbase + chunk) * PSTRIDE], 8 bytes
 * per table entry whatever the dtype. */
#define PSTRIDE (8 / sizeof(real))

#if CLOPT_CPU
/* A CPU device: one work-item per chunk (common.cl, CHUNK_KERNEL), the same sum. */
CHUNK_KERNEL void sumsq(global const store_t *w, global const store_t *g, global store_t *s,
                        ulong ss, global const uint4 *restrict table, uint tbase,
                        global real *out, UPDATE_SCALAR_ARGS) {
    const global real *seg = out; /* for CHUNK_INDEX */
    CHUNK_INDEX;
    real part[CHUNK];
    for (size_t i = 0; i < CHUNK; i++) {
        CHUNK_LANE(i);
        real x = LOAD(g, gi) * q0;
#if ACCUM
        x = (x + LOAD(s, SLOT_ABS(SLOT_ACC))) * q1;
#endif
        part[i] = x * x;
    }
    out[(tbase + gid_) * PSTRIDE] = clopt_tree_sum(part);
}
#else
kernel void sumsq(global const store_t *w, global const store_t *g, global store_t *s, ulong ss,
                  global const uint4 *restrict table, uint tbase, global real *out,
                  UPDATE_SCALAR_ARGS) {
    local real part[CHUNK];
    STEP_LOAD_;
    /* The work-group is the chunk, as in UPDATE_INDEX (common.cl). */
    const size_t lid = get_local_id(0), chunk = get_group_id(0);
    const uint4 ch_ = table[tbase + chunk];
    const size_t gi = (size_t)ch_.y * CHUNK + lid, si = (size_t)ch_.z * CHUNK + lid;
    real x = LOAD(g, gi) * q0;
#if ACCUM
    x = (x + LOAD(s, SLOT_ABS(SLOT_ACC))) * q1;
#endif
    part[lid] = x * x;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (size_t h = CHUNK / 2; h > 0; h /= 2) {
        if (lid < h) part[lid] += part[lid + h];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) out[(tbase + chunk) * PSTRIDE] = part[0];
}
#endif

/* The norm of one range's chunks. */
inline real range_sum(global const real *partials, uint4 r) {
    real sum = 0;
    for (uint c = 0; c < r.z; c++) sum += partials[(size_t)(r.y + c) * PSTRIDE];
    return sum;
}

/* clipnorm: one work-item per range. */
kernel void clip_seg(global const uint4 *ranges, uint rbase, uint nranges,
                     global const real *partials, global real *seg, real clipnorm) {
    const size_t i = get_global_id(0);
    if (i >= nranges) return;
    const uint4 r = ranges[rbase + i];
    const real s = range_sum(partials, r);
    const real n = s > 0 ? sqrt(s) : 0;
    seg[2 * r.x] = clipnorm / fmax(n, clipnorm);
}

/* global_clipnorm: one work-group of CHUNK work-items. */
kernel void clip_global(global const uint4 *ranges, uint rbase, uint nranges,
                        global const real *partials, global real *seg, real clipnorm) {
    local real part[CHUNK];
    const size_t lid = get_local_id(0);
    real sum = 0;
    for (size_t i = lid; i < nranges; i += CHUNK) sum += range_sum(partials, ranges[rbase + i]);
    part[lid] = sum;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (size_t h = CHUNK / 2; h > 0; h /= 2) {
        if (lid < h) part[lid] += part[lid + h];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const real n = sqrt(part[0]);
    const real f = clipnorm * fmin(1 / n, 1 / clipnorm) + (n - n);
    for (size_t i = lid; i < nranges; i += CHUNK) seg[2 * ranges[rbase + i].x] = f;
}
