/* Adafactor, in six launches per plan launch (src/optim/adafactor.c describes the passes).
 * Scalars: CLOPT_SCALARS_ADAFACTOR (cl/scalars.cl; the fused kernels read the first three).
 * Slots: 0 r, 1 c, 2 v, each stored at the variable's size (adafactor.c: r and c views at the
 * start, the rest scratch). info: AF_WORDS uint words per built variable, the layout of
 * adafactor.c's AF_* enum. Per block (AUX_AT, AUX_ADD): the block's sums of w^2 and u^2, then
 * (pass 5) its variable's alpha and max(1, RMS(u)/clip_threshold). */

#define AF_FACTORED 0
#define AF_B 1
#define AF_R 2
#define AF_C 3
#define AF_SLOT 4
#define AF_ACTIVE 5
#define AF_N_LO 6
#define AF_N_HI 7
#define AF_GCHUNK 8
#define AF_RPB 9
#define AF_WORDS 10

/* Row/column table entry kinds {variable, kind, first, count} (adafactor.c). */
#define AF_ROWS 0
#define AF_ROW_GROUP 1
#define AF_COLS 2
#define AF_ROW_MEANS 3
#define AF_ROW_BLOCK 4
#define AF_COL_SUM 5

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

/* Column j's partial sum of row block p of batch b (AF_ROW_BLOCK: adafactor.c's
 * rows_per_block), in the scratch of r's storage after r; nbb blocks per batch. */
#define AF_PART(b, p, j) AF_AT(0, B * R + ((b) * nbb + (p)) * C + (j))

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

/* beta_2_t * old + (1 - beta_2_t) * x: a statistic's decayed update (c0, c1). */
#define AF_DECAY(old, x) (beta_2_t * (old) + one_minus_beta_2_t * (x))

/* sum = the sum of x^2 + epsilon_1 over a row of C < CHUNK elements (table kind AF_ROWS),
 * x = X(j) its element j: eight running sums (element j into sum j % 8), added as
 * clopt_tree_sum's last steps ((s0 + s4) + (s2 + s6)) + ((s1 + s5) + (s3 + s7)), then the last
 * C % 8 elements in order. Both forms sum so: eight independent sums let a CPU vectorize the
 * row, where one running sum is a chain of dependent adds. */
#define AF_ROW_SUM(sum, X)                                                                  \
    do {                                                                                    \
        real8 a_ = 0;                                                                       \
        ulong j_ = 0;                                                                       \
        for (; j_ + 8 <= C; j_ += 8) {                                                      \
            const real8 x_ = (real8)(X(j_), X(j_ + 1), X(j_ + 2), X(j_ + 3), X(j_ + 4),     \
                                     X(j_ + 5), X(j_ + 6), X(j_ + 7));                      \
            a_ += x_ * x_ + epsilon_1;                                                      \
        }                                                                                   \
        const real4 f_ = a_.lo + a_.hi;                                                     \
        const real2 h_ = f_.lo + f_.hi;                                                     \
        sum = h_.x + h_.y;                                                                  \
        for (; j_ < C; j_++) {                                                              \
            const real x_ = X(j_);                                                          \
            sum += x_ * x_ + epsilon_1;                                                     \
        }                                                                                   \
    } while (0)

#if CLOPT_CPU
/* On a CPU device (CLOPT_CPU, common.cl's CHUNK_KERNEL): every kernel but scale runs one
 * work-item per table entry, looping over the entry's elements, so that the loops vectorize and
 * no reduction runs through barriers (POCL runs a barrier tree as a loop over the work-items per
 * level: the work-group forms below took 5 to 10 ns per element and pass on POCL). The values
 * are bit for bit those of the work-group forms: the same expressions, sums in the same order
 * (clopt_tree_sum is af_group_sum's tree; row, column and mean sums run in the same sequence per
 * lane; AF_ROW_SUM for short rows). Differences in shape only: row, column and batch of the
 * chunk's first element are found with one set of divisions per chunk, not per element
 * (af_v_chunk); and the gradient of
 * a factored variable is not copied to the velocity slot: pass 1 only notes where it starts
 * (AF_GCHUNK), and passes 2, 4 and 6 read it from the gradient buffer (af_grad: GRAD()'s value,
 * rounded as the copy's store would round it; pass 6 empties an accumulator, through GRAD()).
 * Pass 4 sums w^2 as it reads g, and stores nothing: pass 6 recomputes u to the same bits
 * (storing u instead measured slower: the passes are bound by memory, not by sqrt and divide).
 * So a factored variable's step reads g three times (row blocks) or four (rows and columns
 * apart), w twice, and writes w and v, where the work-group forms also write and read back the
 * copy of g and u. */

#define AF_CHUNK                                                      \
    global uint *in = info + (size_t)sg * AF_WORDS;                   \
    const size_t base_ = (size_t)in[AF_SLOT] * CHUNK;                 \
    const ulong e0 = (ulong)ch_.z * CHUNK - base_;                    \
    const ulong n = (ulong)in[AF_N_LO] | ((ulong)in[AF_N_HI] << 32); \
    const size_t lim = e0 >= n ? 0 : n - e0 < CHUNK ? (size_t)(n - e0) : CHUNK /* in range */

/* x rounded to the storage type, as a STORE then LOAD of it would (float16, bfloat16). */
#if DTYPE == 2
inline real af_round(real x) {
    ushort t[1]; /* a private half needs cl_khr_fp16; a half pointer does not */
    vstore_half_rte(x, 0, (private half *)t);
    return vload_half(0, (private const half *)t);
}
#elif DTYPE == 3
inline real af_round(real x) { return as_float((uint)clopt_bf16(x) << 16); }
#else
#define af_round(x) (x)
#endif

/* The gradient as GRAD() (common.cl's clopt_grad) sees it, without emptying the accumulator
 * (at acc_i), rounded to the storage type as the work-group forms' copy of it in the velocity
 * slot is. */
inline real af_grad(global const store_t *g, size_t gi, global const store_t *s, size_t acc_i,
                    global const real *seg, uint sg, real q0, real q1, real q2) {
    real x = LOAD(g, gi) * q0;
#if ACCUM
    x = (x + LOAD(s, acc_i)) * q1;
#else
    (void)s, (void)acc_i, (void)q1;
#endif
#if CLIP == 1
    x *= seg[2 * sg];
#elif CLIP == 2
    x = clamp(x, -q2, q2);
#else
    (void)seg, (void)sg, (void)q2;
#endif
    return af_round(x);
}

/* vv[l] = v at element e0 + l of a factored variable (af_v), l < lim; one row segment at a
 * time: r / mean(r) once per row, c contiguous. */
inline void af_v_chunk(global const store_t *s, ulong ss, size_t base_, ulong e0, size_t lim,
                       global const uint *in, real *vv) {
    if (!lim) return;
    const ulong B = in[AF_B], R = in[AF_R], C = in[AF_C];
    ulong q = e0 / C; /* the row b * R + i */
    ulong j = e0 - q * C, b = q / R, i = q - b * R;
    for (size_t l = 0; l < lim;) {
        const size_t len = C - j < lim - l ? (size_t)(C - j) : lim - l;
        const real r = LOAD(s, AF_AT(0, q));
        const real rm = R == 1 ? r : LOAD(s, AF_AT(1, B * C + b));
        const real rr = r / rm;
        const size_t cb = AF_AT(1, b * C + j);
        for (size_t k = 0; k < len; k++) vv[l + k] = rr * LOAD(s, cb + k);
        l += len;
        j = 0;
        q++;
        if (++i == R) {
            i = 0;
            b++;
        }
    }
}

/* Pass 1, over the plan's chunks (a work-item's loop over its chunks). */
CHUNK_KERNEL void stats(AF_ARGS) {
    CHUNK_BEGIN;
    SCALARS(ADAFACTOR);
    AF_CHUNK;
    if (in[AF_FACTORED]) { /* passes 2, 4 and 6 read the gradient from here; 4 sums w^2 */
        if (e0 == 0) {
            in[AF_GCHUNK] = ch_.y;
            in[AF_ACTIVE] = 1;
        }
        continue;
    }
    real pw[CHUNK], pu[CHUNK];
    for (size_t l = 0; l < CHUNK; l++) {
        CHUNK_LANE(l);
        const real gv = GRAD();
        const real wv = WEIGHT();
        real u = 0;
        if (l < lim) {
            STORE(s, SLOT(2), AF_DECAY(LOAD(s, SLOT(2)), gv * gv + epsilon_1));
            STORE(s, SLOT(0), gv / sqrt(LOAD(s, SLOT(2))));
            u = LOAD(s, SLOT(0));
        }
        pw[l] = wv * wv;
        pu[l] = u * u;
    }
    if (e0 == 0) in[AF_ACTIVE] = 1;
    AUX_ADD(0, clopt_tree_sum(pw));
    AUX_ADD(1, clopt_tree_sum(pu));
    CHUNK_END;
}

/* Passes 2 and 3, one work-item per entry of adafactor.c's table. */
CHUNK_KERNEL void reduce(AF_ARGS) {
    (void)ntable;
    SCALARS(ADAFACTOR);
    const uint4 en = OWN_TABLE[tbase + get_global_id(0)];
    global const uint *in = info + (size_t)en.x * AF_WORDS;
    if (!in[AF_ACTIVE]) return;
    const size_t base_ = (size_t)in[AF_SLOT] * CHUNK;
    const ulong B = in[AF_B], R = in[AF_R], C = in[AF_C];
    /* Element e's gradient (its accumulator is at the same element of slot kind SLOT_ACC). */
    const size_t gb_ = (size_t)in[AF_GCHUNK] * CHUNK, ab_ = base_ + (size_t)SLOT_ACC * ss;
#define AF_G(e) af_grad(g, gb_ + (size_t)(e), s, ab_ + (size_t)(e), seg, en.x, q0, q1, q2)
    real acc[CHUNK];
    if (en.y == AF_ROW_GROUP) { /* one row of C >= CHUNK: lane l sums j = l, l + CHUNK, ... */
        const ulong k = en.z;
        const size_t row = k * C;
        for (size_t l = 0; l < CHUNK; l++) acc[l] = 0;
        ulong j = 0;
        for (; j + CHUNK <= C; j += CHUNK)
            for (size_t l = 0; l < CHUNK; l++) {
                const real x = AF_G(row + j + l);
                acc[l] += x * x + epsilon_1;
            }
        for (size_t l = 0; j + l < C; l++) {
            const real x = AF_G(row + j + l);
            acc[l] += x * x + epsilon_1;
        }
        const real sum = clopt_tree_sum(acc);
        STORE(s, AF_AT(0, k), AF_DECAY(LOAD(s, AF_AT(0, k)), sum / (real)C));
        return;
    }
    if (en.y == AF_ROW_BLOCK) { /* whole rows of one batch: each row as AF_ROW_GROUP sums it,
                                 * and the block's column sums (rows in order) */
        const ulong qf = en.z, rpb = in[AF_RPB], nbb = (R + rpb - 1) / rpb;
        const ulong b = qf / R, p = (qf - b * R) / rpb; /* qf: the first row */
        const size_t cp = AF_PART(b, p, 0);
        for (uint qq = 0; qq < en.w; qq++) {
            const ulong q = qf + qq;
            const size_t row = q * C;
            for (size_t l = 0; l < CHUNK; l++) acc[l] = 0;
            ulong j = 0;
            for (; j + CHUNK <= C; j += CHUNK)
                for (size_t l = 0; l < CHUNK; l++) {
                    const real x = AF_G(row + j + l);
                    const real xx = x * x + epsilon_1;
                    acc[l] += xx;
                    STORE(s, cp + j + l, (qq ? LOAD(s, cp + j + l) : (real)0) + xx);
                }
            for (size_t l = 0; j + l < C; l++) {
                const real x = AF_G(row + j + l);
                const real xx = x * x + epsilon_1;
                acc[l] += xx;
                STORE(s, cp + j + l, (qq ? LOAD(s, cp + j + l) : (real)0) + xx);
            }
            const real sum = clopt_tree_sum(acc);
            STORE(s, AF_AT(0, q), AF_DECAY(LOAD(s, AF_AT(0, q)), sum / (real)C));
        }
        return;
    }
    const ulong k0 = en.z;
    const size_t count = en.w;
    for (size_t l = 0; l < count; l++) acc[l] = 0;
    if (en.y == AF_ROWS) { /* rows k0 .. k0 + count - 1 */
        for (size_t l = 0; l < count; l++) {
            const size_t row = (k0 + l) * C;
            real sum;
#define AF_X(j) AF_G(row + (j))
            AF_ROW_SUM(sum, AF_X);
#undef AF_X
            STORE(s, AF_AT(0, k0 + l), AF_DECAY(LOAD(s, AF_AT(0, k0 + l)), sum / (real)C));
        }
    } else if (en.y == AF_COLS) { /* columns k0 .. (of B * C), in segments of one batch */
        for (size_t l = 0; l < count;) {
            const ulong k = k0 + l, b = k / C, j = k - b * C;
            const size_t len = C - j < count - l ? (size_t)(C - j) : count - l;
            for (ulong i = 0; i < R; i++) {
                const size_t row = (b * R + i) * C + j;
                for (size_t m = 0; m < len; m++) {
                    const real x = AF_G(row + m);
                    acc[l + m] += x * x + epsilon_1;
                }
            }
            l += len;
        }
        for (size_t l = 0; l < count; l++)
            STORE(s, AF_AT(1, k0 + l),
                  AF_DECAY(LOAD(s, AF_AT(1, k0 + l)), acc[l] / (real)R));
    } else if (en.y == AF_COL_SUM) { /* columns k0 .. from the row blocks' partials, in order */
        const ulong rpb = in[AF_RPB], nbb = (R + rpb - 1) / rpb;
        for (size_t l = 0; l < count;) {
            const ulong k = k0 + l, b = k / C, j = k - b * C;
            const size_t len = C - j < count - l ? (size_t)(C - j) : count - l;
            for (ulong p = 0; p < nbb; p++) {
                const size_t cp = AF_PART(b, p, j);
                for (size_t m = 0; m < len; m++) acc[l + m] += LOAD(s, cp + m);
            }
            l += len;
        }
        for (size_t l = 0; l < count; l++)
            STORE(s, AF_AT(1, k0 + l),
                  AF_DECAY(LOAD(s, AF_AT(1, k0 + l)), acc[l] / (real)R));
    } else { /* AF_ROW_MEANS: batches k0 ..; the mean goes after c, in c's storage */
        for (ulong i = 0; i < R; i++)
            for (size_t l = 0; l < count; l++) acc[l] += LOAD(s, AF_AT(0, (k0 + l) * R + i));
        for (size_t l = 0; l < count; l++) STORE(s, AF_AT(1, B * C + k0 + l), acc[l] / (real)R);
    }
#undef AF_G
}

/* Pass 4, over the plan's chunks of factored variables: the chunk's sums of w^2 and of u^2,
 * u = g / sqrt(v). */
CHUNK_KERNEL void velocity(AF_ARGS) {
    CHUNK_BEGIN;
    SCALARS(ADAFACTOR);
    AF_CHUNK;
    if (!in[AF_FACTORED]) continue;
    real vv[CHUNK], pw[CHUNK], pu[CHUNK];
    af_v_chunk(s, ss, base_, e0, lim, in, vv);
    size_t l = 0;
    for (; l < lim; l++) {
        CHUNK_LANE(l);
        const real wv = WEIGHT();
        const real gv = af_grad(g, gi, s, SLOT_ABS(SLOT_ACC), seg, sg, q0, q1, q2);
        const real u = af_round(gv / sqrt(vv[l]));
        pw[l] = wv * wv;
        pu[l] = u * u;
    }
    for (; l < CHUNK; l++) { /* padding */
        CHUNK_LANE(l);
        const real wv = WEIGHT();
        pw[l] = wv * wv;
        pu[l] = 0;
    }
    AUX_ADD(0, clopt_tree_sum(pw));
    AUX_ADD(1, clopt_tree_sum(pu));
    CHUNK_END;
}

/* Pass 6, over the plan's chunks. */
CHUNK_KERNEL void adafactor(AF_ARGS) {
    CHUNK_BEGIN;
    SCALARS(ADAFACTOR);
    AF_CHUNK;
    const real a = AUX_AT(0), d = AUX_AT(1);
    size_t l = 0;
    if (in[AF_FACTORED]) {
        real vv[CHUNK];
        af_v_chunk(s, ss, base_, e0, lim, in, vv);
        for (; l < lim; l++) {
            CHUNK_LANE(l);
            const real gv = af_round(GRAD()); /* GRAD() empties an accumulator */
            const real wv = WEIGHT();
            const real u = af_round(gv / sqrt(vv[l]));
            STORE(s, SLOT(2), vv[l]);
            STORE(w, wi, wv - a * (u / d));
        }
        for (size_t m = lim; m < CHUNK; m++) { /* padding: as GRAD() leaves it */
            CHUNK_LANE(m);
            (void)GRAD();
        }
    } else {
        for (; l < lim; l++) {
            CHUNK_LANE(l);
            const real wv = WEIGHT();
            const real u = LOAD(s, SLOT(0));
            STORE(w, wi, wv - a * (u / d));
        }
    }
    for (; l < CHUNK; l++) { /* padding */
        CHUNK_LANE(l);
        const real wv = WEIGHT();
        const real u = 0;
        STORE(w, wi, wv - a * (u / d));
    }
    if (e0 == 0) in[AF_ACTIVE] = 0;
    CHUNK_END;
}

#else /* the work-group forms (GPUs): work-groups of CHUNK work-items, a chunk (or an entry of
       * adafactor.c's table) at a time */


/* Pass 1, plan chunks: the gradient (read once), w after decay; rank < 2: v and u. */
kernel void stats(AF_ARGS) {
    local real part[CHUNK];
    GROUP_BEGIN;
    SCALARS(ADAFACTOR);
    AF_ELEMENT;
    const real gv = GRAD();
    const real wv = WEIGHT();
    real u = 0;
    if (in[AF_FACTORED]) {
        STORE(s, SLOT(2), gv); /* until pass 4 */
    } else if (e < n) {
        STORE(s, SLOT(2), AF_DECAY(LOAD(s, SLOT(2)), gv * gv + epsilon_1));
        STORE(s, SLOT(0), gv / sqrt(LOAD(s, SLOT(2)))); /* u, in r's storage (scratch) */
        u = LOAD(s, SLOT(0));
    }
    if (e == 0) in[AF_ACTIVE] = 1;
    const real sw = af_group_sum(part, wv * wv);
    const real su = af_group_sum(part, u * u);
    if (get_local_id(0) == 0) {
        AUX_ADD(0, sw);
        AUX_ADD(1, su);
    }
    GROUP_END;
}

/* Passes 2 and 3, over adafactor.c's table: r and c from the row and column means of
 * G = g^2 + epsilon_1 (g in the velocity slot), then the per-batch means of r. Variables
 * without a gradient in this step (not active) are skipped. */
kernel void reduce(AF_ARGS) {
    local real part[CHUNK];
    const size_t lid = get_local_id(0);
    (void)ntable;
    SCALARS(ADAFACTOR);
    const uint4 en = OWN_TABLE[tbase + get_group_id(0)];
    global const uint *in = info + (size_t)en.x * AF_WORDS;
    if (!in[AF_ACTIVE]) return; /* the whole work-group shares the entry */
    const size_t base_ = (size_t)in[AF_SLOT] * CHUNK;
    const ulong B = in[AF_B], R = in[AF_R], C = in[AF_C];
    if (en.y == AF_ROW_GROUP) { /* one row of at least CHUNK elements per work-group */
        const ulong k = en.z;
        real sum = 0;
        for (ulong j = lid; j < C; j += CHUNK) {
            const real x = LOAD(s, AF_AT(2, k * C + j));
            sum += x * x + epsilon_1;
        }
        sum = af_group_sum(part, sum);
        if (lid == 0) STORE(s, AF_AT(0, k), AF_DECAY(LOAD(s, AF_AT(0, k)), sum / (real)C));
        return;
    }
    if (en.y == AF_ROW_BLOCK) { /* whole rows of one batch; lane l owns columns l, l + CHUNK.. */
        const ulong qf = en.z, rpb = in[AF_RPB], nbb = (R + rpb - 1) / rpb;
        const ulong b = qf / R, p = (qf - b * R) / rpb; /* qf: the first row */
        const size_t cp = AF_PART(b, p, 0);
        for (uint qq = 0; qq < en.w; qq++) {
            const ulong q = qf + qq;
            real sum = 0;
            for (ulong j = lid; j < C; j += CHUNK) {
                const real x = LOAD(s, AF_AT(2, q * C + j));
                const real xx = x * x + epsilon_1;
                sum += xx;
                STORE(s, cp + j, (qq ? LOAD(s, cp + j) : (real)0) + xx);
            }
            sum = af_group_sum(part, sum);
            if (lid == 0)
                STORE(s, AF_AT(0, q), AF_DECAY(LOAD(s, AF_AT(0, q)), sum / (real)C));
        }
        return;
    }
    if (lid >= en.w) return;
    const ulong k = en.z + lid;
    real sum = 0;
    if (en.y == AF_ROWS) {
#define AF_X(j) LOAD(s, AF_AT(2, k * C + (j)))
        AF_ROW_SUM(sum, AF_X);
#undef AF_X
        STORE(s, AF_AT(0, k), AF_DECAY(LOAD(s, AF_AT(0, k)), sum / (real)C));
    } else if (en.y == AF_COLS) {
        const ulong b = k / C, j = k % C;
        for (ulong i = 0; i < R; i++) {
            const real x = LOAD(s, AF_AT(2, (b * R + i) * C + j));
            sum += x * x + epsilon_1;
        }
        STORE(s, AF_AT(1, k), AF_DECAY(LOAD(s, AF_AT(1, k)), sum / (real)R));
    } else if (en.y == AF_COL_SUM) {
        const ulong rpb = in[AF_RPB], nbb = (R + rpb - 1) / rpb, b = k / C, j = k % C;
        for (ulong p = 0; p < nbb; p++) sum += LOAD(s, AF_PART(b, p, j));
        STORE(s, AF_AT(1, k), AF_DECAY(LOAD(s, AF_AT(1, k)), sum / (real)R));
    } else { /* AF_ROW_MEANS: k is a batch index; the mean goes after c, in c's storage */
        for (ulong i = 0; i < R; i++) sum += LOAD(s, AF_AT(0, k * R + i));
        STORE(s, AF_AT(1, B * C + k), sum / (real)R);
    }
}

/* Pass 4, plan chunks of factored variables: u = g / sqrt(v) over g in the velocity slot. */
kernel void velocity(AF_ARGS) {
    local real part[CHUNK];
    GROUP_BEGIN;
    SCALARS(ADAFACTOR);
    AF_ELEMENT;
    /* The whole work-group is on one block of one variable. No `continue` past the barriers
     * for other variables: POCL ran such a loop's first chunk over and over. */
    const int factored = in[AF_FACTORED];
    real u = 0;
    if (factored && e < n) {
        STORE(s, SLOT(2), LOAD(s, SLOT(2)) / sqrt(af_v(s, ss, base_, e, in)));
        u = LOAD(s, SLOT(2));
    }
    const real su = af_group_sum(part, u * u);
    if (factored && get_local_id(0) == 0) AUX_ADD(1, su);
    GROUP_END;
}

/* Pass 6, plan chunks: w := w - alpha * (u / max(1, RMS(u)/clip)), w after decay (WEIGHT() as
 * pass 1 read it; the gradient is not read again); factored: v into the velocity slot. */
kernel void adafactor(AF_ARGS) {
    GROUP_BEGIN;
    SCALARS(ADAFACTOR);
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
    GROUP_END;
}
#endif

/* Pass 5, one work-item per variable (segment pass; scalars CLOPT_SCALARS_ADAFACTOR_FINISH):
 * alpha = max(epsilon_2, RMS(w)) * rho and max(1, RMS(u)/clip_threshold)
 * over the variable's block partials (written back over each block). */
kernel void scale(global const segment *ranges, uint rbase, uint nranges, global real *partials,
                  global const uint *info, real c0, real c1, real c2, real c3) {
    (void)c3;
    SCALARS(ADAFACTOR_FINISH);
    const size_t i = get_global_id(0);
    if (i >= nranges) return;
    const segment rg = ranges[rbase + i];
    global const uint *in = info + (size_t)rg.index * AF_WORDS;
    const real n = (real)((ulong)in[AF_N_LO] | ((ulong)in[AF_N_HI] << 32));
    real sw = 0, su = 0;
    for (uint c = 0; c < SEGMENT_BLOCKS(rg); c++) {
        sw += partials[(size_t)(rg.block + c) * AUX_STRIDE];
        su += partials[(size_t)(rg.block + c) * AUX_STRIDE + 1];
    }
    const real alpha = af_max(epsilon_2, sqrt(sw / n)) * rho;
    const real d = af_max((real)1, sqrt(su / n) / clip_threshold);
    for (uint c = 0; c < SEGMENT_BLOCKS(rg); c++) {
        partials[(size_t)(rg.block + c) * AUX_STRIDE] = alpha;
        partials[(size_t)(rg.block + c) * AUX_STRIDE + 1] = d;
    }
}
