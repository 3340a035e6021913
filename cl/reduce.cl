/* Reductions for gradient clipping. sumsq sums the squares of the gradient as the pipeline sees
 * it before clipping (unscaled, plus the accumulator on an accumulation update step) per chunk,
 * in the work-group tree's order, and adds the chunks of a block in order into out[block *
 * PSTRIDE] (common.cl's AUX_ADD), 8 bytes per block whatever the dtype. */
#define PSTRIDE (8 / sizeof(real))

#if CLOPT_CPU
/* A CPU device: one work-item per block (common.cl, CHUNK_KERNEL), the same sums, in vectors of
 * 8 kept in registers: squaring into a private array and summing it with clopt_tree_sum made
 * this pass cost about twice a streaming read of the gradient. LOAD8(p, k) is LOAD of elements
 * 8k .. 8k+7 (the same values); sumsq_sq8 their squares as GRAD() sees them before clipping. */
#if DTYPE == 2
#define LOAD8(p, k) vload_half8((k), (p))
#elif DTYPE == 3
#define LOAD8(p, k) as_float8(convert_uint8(vload8((k), (p))) << 16)
#else
#define LOAD8(p, k) vload8((k), (p))
#endif
inline real8 sumsq_sq8(global const store_t *g, global const store_t *acc, int k, real q0,
                       real q1) {
    real8 x = LOAD8(g, k) * q0;
#if ACCUM
    x = (x + LOAD8(acc, k)) * q1;
#else
    (void)acc;
    (void)q1;
#endif
    return x * x;
}
CHUNK_KERNEL void sumsq(global const store_t *w, global const store_t *g, global store_t *s,
                        ulong ss, global const segment *restrict table, uint tbase, uint ntable,
                        global real *out, UPDATE_SCALAR_ARGS) {
    const global real *seg = out; /* for CHUNK_BEGIN */
    CHUNK_BEGIN;
    /* clopt_tree_sum's order, from registers: vector k (elements 8k .. 8k+7) plus vector
     * k + CHUNK/16 first, then halving. */
    const size_t gb = (size_t)ch_.y * CHUNK, ab = (size_t)ch_.z * CHUNK + (size_t)SLOT_ACC * ss;
    real8 a[CHUNK / 16];
    for (int k = 0; k < CHUNK / 16; k++) {
        const real8 x = sumsq_sq8(g + gb, s + ab, k, q0, q1);
        const real8 y = sumsq_sq8(g + gb, s + ab, k + CHUNK / 16, q0, q1);
        a[k] = x + y;
    }
    for (int h = CHUNK / 32; h > 0; h /= 2)
        for (int k = 0; k < h; k++) a[k] += a[k + h];
    const real4 f = a[0].lo + a[0].hi;
    const real2 q = f.lo + f.hi;
    BLOCK_ADD(out + (size_t)u_ * PSTRIDE, q.x + q.y);
    CHUNK_END;
}
#else
kernel void sumsq(global const store_t *w, global const store_t *g, global store_t *s, ulong ss,
                  global const segment *restrict table, uint tbase, uint ntable,
                  global real *out, UPDATE_SCALAR_ARGS) {
    local real part[CHUNK];
    const global real *seg = out; /* for GROUP_BEGIN */
    GROUP_BEGIN;
    const size_t lid = lane_;
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
    if (lid == 0) BLOCK_ADD(out + (size_t)u_ * PSTRIDE, part[0]);
    GROUP_END;
}
#endif

/* The sum of one segment's block partials, in order. */
inline real range_sum(global const real *partials, segment r) {
    real sum = 0;
    for (uint c = 0; c < SEGMENT_BLOCKS(r); c++) sum += partials[(size_t)(r.block + c) * PSTRIDE];
    return sum;
}

/* clipnorm: one work-item per range. */
kernel void clip_seg(global const segment *ranges, uint rbase, uint nranges,
                     global const real *partials, global real *seg, real clipnorm) {
    const size_t i = get_global_id(0);
    if (i >= nranges) return;
    const segment r = ranges[rbase + i];
    const real s = range_sum(partials, r);
    const real n = s > 0 ? sqrt(s) : 0;
    seg[2 * r.index] = clipnorm / fmax(n, clipnorm);
}

/* global_clipnorm: one work-group of CHUNK work-items. */
kernel void clip_global(global const segment *ranges, uint rbase, uint nranges,
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
    for (size_t i = lid; i < nranges; i += CHUNK) seg[2 * ranges[rbase + i].index] = f;
}
