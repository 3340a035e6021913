/* Prepended to every clopt kernel source. Build options set DTYPE (0 float32, 1 float64,
 * 2 float16, 3 bfloat16: the last two are storage formats with float arithmetic) and CHUNK (the
 * elements of one chunk of a fused launch; the host sets it from CLOPT__CHUNK). */
#ifndef DTYPE
#define DTYPE 0
#endif
#ifndef CHUNK
#define CHUNK 256
#endif

#if DTYPE == 1
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double real;
typedef double store_t;
#define LOAD(p, i) ((p)[i])
#define STORE(p, i, x) ((p)[i] = (x))
#elif DTYPE == 2
typedef float real;
typedef half store_t;
#define LOAD(p, i) vload_half((i), (p))
#define STORE(p, i, x) vstore_half_rte((x), (i), (p))
#elif DTYPE == 3
typedef float real;
typedef ushort store_t;
#define LOAD(p, i) as_float((uint)(p)[i] << 16)
/* Round to nearest even; NaN stays a quiet NaN. */
inline ushort clopt_bf16(float x) {
    uint u = as_uint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (ushort)((u >> 16) | 0x40u);
    return (ushort)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
#define STORE(p, i, x) ((p)[i] = clopt_bf16(x))
#else
typedef float real;
typedef float store_t;
#define LOAD(p, i) ((p)[i])
#define STORE(p, i, x) ((p)[i] = (x))
#endif

/* Kernel names: "file.kernel" names a kernel in cl/file.cl; a plain "name" is in cl/name.cl. */

/* The arguments every fused update kernel takes: variable, gradient and slot buffers, the slot
 * stride (slot kind k is at s + k*ss), the chunk table (uint4: variable, gradient and slot
 * chunk, segment) and its first entry, per-segment float scalars (seg[2*sg] the gradient's clip
 * factor, seg[2*sg+1] the weight-decay multiplier: 1 where weight decay applies, else 0), eight
 * per-step scalars of the optimizer (c0..c7) and four of the apply pipeline (q0
 * 1/loss_scale_factor, q1 1/accumulation steps, q2 clipvalue, q3 weight_decay*lr). */
#define UPDATE_ARGS                                                                           \
    global store_t *w, global const store_t *g, global store_t *s, ulong ss,                  \
        global const uint4 *restrict table, uint tbase, global const real *seg, real c0,      \
        real c1, real c2, real c3, real c4, real c5, real c6, real c7, real q0, real q1,      \
        real q2, real q3

/* Work-item gid handles element gid % CHUNK of chunk table[tbase + gid / CHUNK]: wi, gi and si
 * index the variable, gradient and first slot; sg is the segment. Arena padding makes every
 * chunk whole, so there is no bounds check. The backend launches these kernels with work-groups
 * of exactly CHUNK work-items, so the chunk is the work-group and the lane the local id: written
 * so (and with the table `restrict`: no kernel writes it), the compiler sees one table entry per
 * work-group and consecutive elements across work-items, and POCL vectorizes the work-group
 * with plain vector loads and stores; with gid / CHUNK it gathered every element (3x to 10x
 * more instructions). */
#define UPDATE_INDEX                                                                 \
    const size_t gid_ = get_global_id(0);                                            \
    const uint4 ch_ = table[tbase + get_group_id(0)];                                \
    const size_t lane_ = get_local_id(0);                                            \
    const size_t wi = (size_t)ch_.x * CHUNK + lane_, gi = (size_t)ch_.y * CHUNK + lane_, \
                 si = (size_t)ch_.z * CHUNK + lane_;                                 \
    const uint sg = ch_.w;                                                           \
    (void)gid_; (void)sg; (void)seg; (void)ss;                                       \
    (void)c0; (void)c1; (void)c2; (void)c3; (void)c4; (void)c5; (void)c6; (void)c7;  \
    (void)q0; (void)q1; (void)q2; (void)q3

/* Reductions over a chunk on a CPU device (CLOPT_CPU, set by the backend). POCL runs a
 * work-group's tree reduction through local memory as one loop over the work-items per barrier:
 * reducing the gradient's squares for norm clipping that way took 5 to 40 times as long as
 * reading it. There such kernels are declared CHUNK_KERNEL, which the backend sees
 * (CL_KERNEL_COMPILE_WORK_GROUP_SIZE 1) and launches as one work-item per chunk; CHUNK_INDEX
 * reads the chunk's table entry and CHUNK_LANE(i) makes wi, gi and si index element i of it,
 * in a loop over the chunk that the compiler vectorizes; clopt_tree_sum adds the chunk's
 * values in the order of the work-group tree (so the same bits) from registers. Elsewhere
 * (GPUs) the work-group form is kept. */
#ifndef CLOPT_CPU
#define CLOPT_CPU 0
#endif
#define CHUNK_KERNEL __attribute__((reqd_work_group_size(1, 1, 1))) kernel
#define CHUNK_INDEX                                                                  \
    const size_t gid_ = get_global_id(0);                                            \
    const uint4 ch_ = table[tbase + gid_];                                           \
    const uint sg = ch_.w;                                                           \
    (void)sg; (void)seg; (void)ss;                                                   \
    (void)c0; (void)c1; (void)c2; (void)c3; (void)c4; (void)c5; (void)c6; (void)c7;  \
    (void)q0; (void)q1; (void)q2; (void)q3
#define CHUNK_LANE(i)                                                                \
    const size_t wi = (size_t)ch_.x * CHUNK + (i), gi = (size_t)ch_.y * CHUNK + (i), \
                 si = (size_t)ch_.z * CHUNK + (i);                                   \
    (void)wi; (void)gi; (void)si

/* p[0] + ... + p[CHUNK - 1] as the work-group reductions add it: first p[i] + p[i + CHUNK/2]
 * for i < CHUNK/2, then pairs at CHUNK/4, ... 1. In vectors of 8, that is vector k plus vector
 * k + CHUNK/16, then halving the vectors, then the halves of the last vector. Each sum is a
 * separate statement: nothing for the compiler to contract into an fma. */
#if DTYPE == 1
typedef double2 real2;
typedef double4 real4;
typedef double8 real8;
#else
typedef float2 real2;
typedef float4 real4;
typedef float8 real8;
#endif
inline real clopt_tree_sum(const real *p) {
    real8 a[CHUNK / 16];
    for (int k = 0; k < CHUNK / 16; k++) {
        const real8 x = vload8(k, p), y = vload8(k + CHUNK / 16, p);
        a[k] = x + y;
    }
    for (int h = CHUNK / 32; h > 0; h /= 2)
        for (int k = 0; k < h; k++) a[k] += a[k + h];
    const real4 f = a[0].lo + a[0].hi;
    const real2 q = f.lo + f.hi;
    return q.x + q.y;
}

/* Multi-pass steps (Lamb): a kernel that reads or writes per-chunk reals takes UPDATE_ARGS_AUX
 * (the backend passes clopt__launch.aux_buf after the usual arguments). Each chunk-table entry
 * owns 16 bytes, AUX_STRIDE reals; AUX_AT(k) is real k of the work-item's entry (k < 2). */
#define UPDATE_ARGS_AUX UPDATE_ARGS, global real *aux
#define AUX_STRIDE (16 / sizeof(real))
#define AUX_AT(k) aux[((size_t)tbase + get_group_id(0)) * AUX_STRIDE + (k)] /* a CHUNK_KERNEL's
                                                                             * group is its chunk */

/* Segment passes (clopt__segment_launch): one work-item per range ranges[rbase + i], i <
 * nranges, read as {segment, first chunk-table entry, chunk count, unused}; partials holds
 * AUX_STRIDE reals per chunk-table entry, seg per-segment reals, c0..c3 scalars. */
#define SEGMENT_ARGS                                                                          \
    global const uint4 *ranges, uint rbase, uint nranges, global real *partials,              \
        global real *seg, real c0, real c1, real c2, real c3

/* Slot kinds: the pipeline's own (EMA average, gradient accumulator) come first, SLOT_BASE of
 * them; SLOT(k) is the optimizer's k-th kind, SLOT_ABS(k) any kind. */
#ifndef SLOT_BASE
#define SLOT_BASE 0
#endif
#ifndef SLOT_ACC
#define SLOT_ACC 0
#endif
#define SLOT_ABS(k) (si + (size_t)(k) * ss)
#define SLOT(k) SLOT_ABS((k) + SLOT_BASE)

/* The apply pipeline's gradient stages, in Keras's order (semantics doc 1.4, 1.5): unscale by the
 * loss scale factor; on an accumulation update step add the accumulator (slot SLOT_ACC) and
 * divide by the steps, zeroing the accumulator; clip by the segment's norm factor (CLIP 1) or
 * by value (CLIP 2). Every update kernel reads its gradient through GRAD(). */
#ifndef ACCUM
#define ACCUM 0
#endif
#ifndef CLIP
#define CLIP 0
#endif
#ifndef DECAY
#define DECAY 0
#endif
inline real clopt_grad(global const store_t *g, size_t gi, global store_t *s, size_t acc_i,
                       global const real *seg, uint sg, real q0, real q1, real q2) {
    real x = LOAD(g, gi) * q0;
#if ACCUM
    x = (x + LOAD(s, acc_i)) * q1;
    STORE(s, acc_i, (real)0);
#endif
#if CLIP == 1
    x *= seg[2 * sg];
#elif CLIP == 2
    x = clamp(x, -q2, q2);
#endif
    return x;
}
#if ACCUM
#define GRAD() clopt_grad(g, gi, s, SLOT_ABS(SLOT_ACC), seg, sg, q0, q1, q2)
#else
#define GRAD() clopt_grad(g, gi, s, 0, seg, sg, q0, q1, q2)
#endif

/* The variable after Keras's decoupled weight decay w - w*wd*lr (before the update step). The
 * segment's decay real multiplies q3: 1 where the pipeline's weight_decay*lr applies as is, 0
 * where the variable is excluded, or a class's per-variable rate with q3 the learning rate
 * (Muon). Every update kernel reads its variable through WEIGHT(). */
#if DECAY
#define WEIGHT() clopt_decay(LOAD(w, wi), q3, seg[2 * sg + 1])
inline real clopt_decay(real x, real d, real on) { return on != 0 ? x - x * on * d : x; }
#else
#define WEIGHT() LOAD(w, wi)
#endif
