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

/* A fused launch runs over a plan's segment table: one entry per variable (the host's
 * clopt__segment, src/backend/backend_internal.h). The variable's `count` chunks of CHUNK
 * elements are chunk var + k of the variable's buffer, grad + k of the gradient's and slot + k
 * of the slot block's; they form ceil(count / bchunks) blocks of bchunks chunks (the last one
 * shorter), numbered from `block` on across the plan: a block is one unit of work (a CPU
 * work-item, or a work-group) and owns one entry of per-block partial sums. index is the
 * segment (the variable's built index: seg[] and class info). The table grows with the number
 * of variables, not with their sizes; the host makes bchunks large enough that a plan has at
 * most a fixed number of blocks beyond one per variable. */
typedef struct {
    uint index, count, var, grad, slot, block, bchunks, unused;
} segment;

/* The arguments every fused update kernel takes (CLOPT_UPDATE_BUFFER_ARGS and the scalar lists
 * in cl/scalars.cl): variable, gradient and slot buffers, the slot stride (slot kind k is at s +
 * k*ss), the segment table with the launch's first entry and its number of entries,
 * per-segment float scalars (seg[2*sg] the gradient's clip factor, seg[2*sg+1] the weight-decay
 * multiplier: 1 where weight decay applies, else 0), eight per-step scalars of the optimizer
 * (c0..c7: SCALARS below names them) and four of the apply pipeline (q0 1/loss_scale_factor, q1
 * 1/accumulation steps, q2 clipvalue, q3 weight_decay*lr). A class's pass over a table of its
 * own (clopt__launch.own_table: Adafactor's rows and columns) gets that table as `table`, read
 * through OWN_TABLE, with ntable its entries. */
#define ARG_(type, name) type name
#define STEP_ARG_DECL_(type, name) type STEP_ARG_(name)
#define COMMA_() ,
#define UPDATE_ARGS CLOPT_UPDATE_BUFFER_ARGS(ARG_, COMMA_), UPDATE_SCALAR_ARGS
#define OWN_TABLE ((global const uint4 *)table)
/* The per-step scalars of UPDATE_ARGS (and a device-decided step's arguments after them), for
 * kernels that spell out the arguments before them (reduce.cl's sumsq). */
#define UPDATE_SCALAR_ARGS                                                                    \
    CLOPT_STEP_SCALAR_ARGS(STEP_ARG_DECL_, COMMA_), CLOPT_PIPE_SCALAR_ARGS(STEP_ARG_DECL_, COMMA_) \
        STEP_ARGS_

/* SCALARS(K) (after UPDATE_BEGIN or another walk's start, where c0..c7 are defined): the
 * kernel's names for its scalars, from CLOPT_SCALARS_K in cl/scalars.cl (const real lr = c0). */
#define SCALAR_LOCAL_(i, name, doc) const real name = c##i; (void)name;
#define SCALARS(K) CLOPT_SCALARS_##K(SCALAR_LOCAL_)

/* A device-decided step (DEVICE_STEP=1: a LossScaleOptimizer's inner step; clopt__launch's
 * step_* fields and CLOPT__STEP_* in src/backend/backend_internal.h). The host cannot know
 * whether the device found the gradients finite, nor so the inner iteration count, without
 * waiting for it; so such a kernel takes three more arguments: a table of the per-step scalars
 * for every count the step may be at, the state (finite flag, count, scale, the table's first
 * count) and which kind of block of a row it reads. STEP_LOAD_ (first in UPDATE_BEGIN and the
 * other walks) returns unless the flag is 1 and the row's go switch is set, and defines
 * c0..c7, q1..q3 from the row and q0 = 1 / the dynamic scale: the host's arguments are
 * ignored. The condition is the same for every work-item, so an early return cannot split a
 * work-group at a barrier. */
#ifndef DEVICE_STEP
#define DEVICE_STEP 0
#endif
#define STEP_REALS 16
#define STEP_KINDS 3
#if DEVICE_STEP
#define STEP_ARG_(x) x##_in_
#define STEP_ARGS_ , global const real *step_table, global const ulong *step_state, uint step_kind
#define STEP_LOAD_                                                                            \
    if (((global const float *)step_state)[0] != 1.0f) return;                               \
    global const real *row_ = step_table +                                                   \
        (size_t)(step_state[1] - step_state[4]) * (STEP_KINDS * STEP_REALS) +                 \
        (size_t)step_kind * STEP_REALS;                                                       \
    if (row_[STEP_REALS - 1] == 0) return;                                                    \
    const real c0 = row_[0], c1 = row_[1], c2 = row_[2], c3 = row_[3], c4 = row_[4],         \
               c5 = row_[5], c6 = row_[6], c7 = row_[7], q1 = row_[9], q2 = row_[10],         \
               q3 = row_[11];                                                                 \
    const real q0 = (real)1 / (real)((global const float *)step_state)[6];                   \
    (void)c0_in_; (void)c1_in_; (void)c2_in_; (void)c3_in_; (void)c4_in_; (void)c5_in_;      \
    (void)c6_in_; (void)c7_in_; (void)q0_in_; (void)q1_in_; (void)q2_in_; (void)q3_in_
#else
#define STEP_ARG_(x) x
#define STEP_ARGS_
#define STEP_LOAD_ (void)0
#endif

/* CLOPT_CPU: 1 on a CPU device (the backend sets it). A CHUNK_KERNEL runs in work-groups of
 * one work-item (CL_KERNEL_COMPILE_WORK_GROUP_SIZE 1, which the backend reads). */
#ifndef CLOPT_CPU
#define CLOPT_CPU 0
#endif
#define CHUNK_KERNEL __attribute__((reqd_work_group_size(1, 1, 1))) kernel

/* The last segment r in [lo, lo + n) with table[r].block <= u (n > 0): the segment of block
 * u (empty segments before it share its `block` and come earlier). */
inline uint clopt_segment_find(global const segment *table, uint lo, uint n, uint u) {
    uint a = lo, b = lo + n;
    while (b - a > 1) {
        const uint m = a + (b - a) / 2;
        if (table[m].block <= u) a = m;
        else b = m;
    }
    return a;
}

/* From segment r (of block u - 1, or earlier), the segment of block u: the next ones while they
 * start at or before u (a unit's consecutive blocks: no search after its first). */
inline uint clopt_segment_next(global const segment *table, uint r, uint end, uint u) {
    while (r + 1 < end && table[r + 1].block <= u) r++;
    return r;
}

/* ITEM_BLOCKS (a -D option: clopt_kernel_params.item_blocks; default 1): blocks per unit of
 * work. ITEM_LOOP(unit) runs the unit's ITEM_BLOCKS consecutive blocks one after another, each
 * as a unit of one block would (the same chunks, the same per-block partials, the same order),
 * so any value gives the same bits; the backend launches ceil(blocks / ITEM_BLOCKS) units. It
 * spreads a unit's fixed costs (POCL's call of the work-group function, the search for the
 * segment, the loop's set-up) over more elements when blocks are small (many small variables:
 * one block each). The segment of each later block is found by walking on from the last one.
 * BLOCK_START opens the loop and every *_END closes it. */
#ifndef ITEM_BLOCKS
#define ITEM_BLOCKS 1
#endif
#define ITEM_LOOP(unit)                                                                       \
    uint r_ = tbase;                                                                          \
    for (uint ib_ = 0; ib_ < ITEM_BLOCKS; ib_++) {                                            \
        const uint u_ = ub_ + (uint)(unit) * ITEM_BLOCKS + ib_;                               \
        if (u_ >= ue_) return;                                                                \
        r_ = ib_ == 0 ? clopt_segment_find(table, tbase, ntable, u_)                          \
                      : clopt_segment_next(table, r_, tbase + ntable, u_)

/* The unit's blocks u_ (returning past the launch's last block), each one's segment sgm_ and
 * chunks k0_ .. kn_ - 1 of it, in ITEM_LOOP. */
#define BLOCK_START(unit)                                                                     \
    STEP_LOAD_;                                                                               \
    const segment sl_ = table[tbase + ntable - 1];                                            \
    const uint ub_ = table[tbase].block;                                                      \
    const uint ue_ = sl_.block + (sl_.count + sl_.bchunks - 1) / sl_.bchunks;                \
    ITEM_LOOP(unit);                                                                          \
    const segment sgm_ = table[r_];                                                           \
    const uint k0_ = (u_ - sgm_.block) * sgm_.bchunks;                                        \
    const uint kn_ = k0_ + sgm_.bchunks < sgm_.count ? k0_ + sgm_.bchunks : sgm_.count;       \
    const uint sg = sgm_.index;                                                               \
    (void)sg; (void)seg; (void)ss;                                                            \
    (void)c0; (void)c1; (void)c2; (void)c3; (void)c4; (void)c5; (void)c6; (void)c7;           \
    (void)q0; (void)q1; (void)q2; (void)q3

/* An element-wise fused kernel is written
 *     UPDATE_KERNEL void name(UPDATE_ARGS) { UPDATE_BEGIN; ...body...; UPDATE_END; }
 * where the body handles one element: wi, gi and si index the variable, gradient and first
 * slot, sg is the segment, lane_ the element's place in its chunk. Arena padding makes every
 * chunk whole, so there is no bounds check. `continue` skips the element. The body must not
 * return (it runs in loops).
 *
 * On a CPU device (CLOPT_CPU) the kernel is a CHUNK_KERNEL: one work-item runs its block as one
 * loop over the block's contiguous elements, which the compiler vectorizes (POCL vectorizes a
 * work-group's work-items only when the kernel body has no loop; a search for the segment in
 * that form made POCL run it once per work-item and stop vectorizing: 11 to 14 times slower).
 * Elsewhere (GPUs) a work-group of CHUNK work-items runs its block a chunk at a time,
 * lane = local id (GROUP_BEGIN). */
#if CLOPT_CPU
#define UPDATE_KERNEL CHUNK_KERNEL
#define UPDATE_BEGIN                                                                          \
    BLOCK_START(get_global_id(0));                                                            \
    const size_t w0_ = ((size_t)sgm_.var + k0_) * CHUNK, g0_ = ((size_t)sgm_.grad + k0_) * CHUNK, \
                 s0_ = ((size_t)sgm_.slot + k0_) * CHUNK, n_ = (size_t)(kn_ - k0_) * CHUNK;   \
    for (size_t i_ = 0; i_ < n_; i_++) {                                                      \
        const size_t wi = w0_ + i_, gi = g0_ + i_, si = s0_ + i_, lane_ = i_ % CHUNK;         \
        (void)wi; (void)gi; (void)si; (void)lane_
#define UPDATE_END } }
#else
#define UPDATE_KERNEL kernel
#define UPDATE_BEGIN GROUP_BEGIN
#define UPDATE_END GROUP_END
#endif

/* The work-group form: a work-group of CHUNK work-items runs its block a chunk (k_) at a time.
 * The loop is uniform across the group, so barriers inside it are reached by every work-item
 * (reductions through local memory). A body with barriers must reach them on every chunk: no
 * `continue` before them (POCL 3.1 then ran the loop's first chunk over and over). */
#define GROUP_BEGIN                                                                           \
    BLOCK_START(get_group_id(0));                                                             \
    for (uint k_ = k0_; k_ < kn_; k_++) {                                                     \
        const size_t lane_ = get_local_id(0);                                                 \
        const size_t wi = ((size_t)sgm_.var + k_) * CHUNK + lane_,                            \
                     gi = ((size_t)sgm_.grad + k_) * CHUNK + lane_,                           \
                     si = ((size_t)sgm_.slot + k_) * CHUNK + lane_;                           \
        (void)wi; (void)gi; (void)si
#define GROUP_END } }

/* Reductions over a chunk on a CPU device (CLOPT_CPU, set by the backend). POCL runs a
 * work-group's tree reduction through local memory as one loop over the work-items per barrier:
 * reducing the gradient's squares for norm clipping that way took 5 to 40 times as long as
 * reading it. There such kernels are CHUNK_KERNELs, launched as one work-item per block;
 * CHUNK_BEGIN .. CHUNK_END loop over the block's chunks, with ch_ the chunk's (variable,
 * gradient, slot) chunk offsets and segment; CHUNK_LANE(i) makes wi, gi and si index element i
 * of it, in a loop over the chunk that the compiler vectorizes; clopt_tree_sum adds the chunk's
 * values in the order of the work-group tree (so the same bits) from registers. Elsewhere
 * (GPUs) the work-group form is kept. */
#define CHUNK_BEGIN                                                                  \
    BLOCK_START(get_global_id(0));                                                   \
    for (uint k_ = k0_; k_ < kn_; k_++) {                                            \
        const uint4 ch_ = (uint4)(sgm_.var + k_, sgm_.grad + k_, sgm_.slot + k_, sg)
#define CHUNK_END } }
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

/* Multi-pass steps (Lamb): a kernel that reads or writes per-block reals takes UPDATE_ARGS_AUX
 * (the backend passes clopt__launch.aux_buf after the usual arguments). Each block owns 16
 * bytes, AUX_STRIDE reals; AUX_AT(k) is real k of the current block's (k < 2). A reduction adds
 * its chunks' sums into the block's with AUX_ADD(k, x) inside a chunk loop (CHUNK_BEGIN,
 * GROUP_BEGIN): the block's first chunk stores x, the others add theirs, in chunk order; a
 * segment pass then adds a segment's blocks in order and writes its per-variable results over
 * each of them (so AUX_AT reads them back from any block of the variable). */
#define UPDATE_ARGS_AUX UPDATE_ARGS, global real *aux
#define AUX_STRIDE (16 / sizeof(real))
#define AUX_AT(k) aux[(size_t)u_ * AUX_STRIDE + (k)]
#define AUX_ADD(k, x) BLOCK_ADD(&AUX_AT(k), x)
/* *p := x on the block's first chunk, *p + x on the others: a chunk's sum into its block's. */
#define BLOCK_ADD(p, x)                                                                       \
    do {                                                                                      \
        global real *p_ = (p);                                                                \
        const real x_ = (x);                                                                  \
        *p_ = k_ == k0_ ? x_ : *p_ + x_;                                                      \
    } while (0)

/* Segment passes (clopt__segment_launch): one work-item per segment ranges[rbase + i], i <
 * nranges; partials holds AUX_STRIDE reals per block (SEGMENT_BLOCKS(r): a segment's number of
 * blocks), seg per-segment reals, c0..c3 scalars. */
#define SEGMENT_BLOCKS(r) (((r).count + (r).bchunks - 1) / (r).bchunks)
#define SEGMENT_ARGS                                                                          \
    global const segment *ranges, uint rbase, uint nranges, global real *partials,            \
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

/* Adam's moment estimates (Adam, Nadam, Lamb, Muon's AdamW path): declares m and v, the slots 0
 * and 1 after m += (g - m)*(1 - beta_1), v += (g^2 - v)*(1 - beta_2), and stores them. The host
 * twin: clopt__host_adam_moments (src/backend/host/host_internal.h). */
#define ADAM_MOMENTS(m, v, gv, one_minus_b1, one_minus_b2)                                    \
    real m = LOAD(s, SLOT(0)), v = LOAD(s, SLOT(1));                                          \
    m += ((gv) - m) * (one_minus_b1);                                                         \
    v += ((gv) * (gv) - v) * (one_minus_b2);                                                  \
    STORE(s, SLOT(0), m);                                                                     \
    STORE(s, SLOT(1), v)
