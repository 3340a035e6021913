/* Muon (src/optim/muon.c): the element-wise passes around the Newton-Schulz matrix products
 * (which are the backend's gemm: CLBlast).
 *
 * stats, over every chunk of a plan launch; info is one uint per built variable, 1 for the Muon
 * path. Scalars: CLOPT_SCALARS_MUON (cl/scalars.cl). Define NESTEROV.
 * Slots: 0 momentum, 1 velocity (AdamW path) or the Muon path's G (scratch: no Keras entry).
 * - AdamW path: Adam without amsgrad (weight decay through WEIGHT()), complete.
 * - Muon path: m := m + (g + m*(momentum-1)) (Keras's assign_add), G = g + momentum*m
 *   (NESTEROV) or m into slot 1, and the chunk's sum of G^2 added into its block's AUX_AT(0).
 *   The variable is not touched here (apply does it, weight decay included).
 * The segment pass norm then turns each variable's block sums into ||G||_F.
 *
 * load and apply run over every chunk of the plan launch (as stats) and do nothing on AdamW-path
 * chunks; x is the scratch of reals: a header of 12 uint words per built variable (sg), then the
 * Muon-path variables' matrices (row-major, grouped for the batched products; zero-padded to the
 * group's size where shapes were merged). Header words: 0 the element offset of the variable's
 * matrix in x (0: not on the Muon path), 1 its first slot chunk, 2 its size, 3 max(rows, cols), at
 * byte 16 the real sqrt(max(rows, cols)), 6 its cols, 7 the stored matrix's row length, 8 1 when
 * it is stored transposed, 9 the reals load writes (the group's stride). Element e = i*cols + j
 * of the variable is lane + (slot chunk - word 1) * CHUNK, stored at (i, j) (or (j, i)
 * transposed) of the stored matrix; lanes at e >= size are arena padding.
 * - load: x = G / (||G||_F + 1e-7), and 0 everywhere else in the variable's stride (the padding,
 *   which the products keep exactly 0, and the tail up to a whole chunk).
 * - apply: w := WEIGHT() - ((lr * x) * sqrt(max(rows, cols))) * rms_rate (Keras's lr_adjust;
 *   scalars: CLOPT_SCALARS_MUON_APPLY). */
#ifndef NESTEROV
#define NESTEROV 1
#endif

kernel void stats(UPDATE_ARGS_AUX, global const uint *info) {
    local real part[CHUNK];
    GROUP_BEGIN;
    SCALARS(MUON);
    const size_t lid = lane_;
    const real gv = GRAD();
    real sq = 0;
    if (info[sg]) {
        real m = LOAD(s, SLOT(0));
        STORE(s, SLOT(0), m + (gv + m * momentum_minus_1));
        m = LOAD(s, SLOT(0));
#if NESTEROV
        STORE(s, SLOT(1), gv + momentum * m);
#else
        STORE(s, SLOT(1), m);
#endif
        const real G = LOAD(s, SLOT(1));
        sq = G * G;
    } else {
        const real wv = WEIGHT();
        ADAM_MOMENTS(m, v, gv, one_minus_beta_1, one_minus_beta_2);
        STORE(w, wi, wv - alpha * m / (sqrt(v) + epsilon));
    }
    part[lid] = sq;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (size_t h = CHUNK / 2; h > 0; h /= 2) {
        if (lid < h) part[lid] += part[lid + h];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) AUX_ADD(0, part[0]);
    GROUP_END;
}

/* One work-item per variable: the Frobenius norm of G from its blocks' sums, written over the
 * first real of each of its blocks. */
kernel void norm(SEGMENT_ARGS) {
    const size_t i = get_global_id(0);
    if (i >= nranges) return;
    const segment rg = ranges[rbase + i];
    real sum = 0;
    for (uint c = 0; c < SEGMENT_BLOCKS(rg); c++)
        sum += partials[(size_t)(rg.block + c) * AUX_STRIDE];
    const real n = sqrt(sum);
    for (uint c = 0; c < SEGMENT_BLOCKS(rg); c++)
        partials[(size_t)(rg.block + c) * AUX_STRIDE] = n;
}

/* The variable's header entry in x, and the element index e of this element in it. */
#define MUON_HEADER(x)                                                   \
    global const uint *h_ = (global const uint *)(x) + 12 * (size_t)sg; \
    const uint pos_ = h_[0];                                             \
    const size_t e_ = si - (size_t)h_[1] * CHUNK

/* Each work-item writes the stored positions p = e, e + lanes, ... below the group's stride
 * (lanes: the variable's chunks' lanes): its element there (stored transposed or not), or 0 in
 * the padding. A group of one shape: one position, p = e. */
UPDATE_KERNEL void load(UPDATE_ARGS_AUX, global real *x) {
    UPDATE_BEGIN;
    MUON_HEADER(x);
    const size_t n = h_[2], lanes = (n + CHUNK - 1) / CHUNK * CHUNK;
    if (pos_ == 0 || e_ >= lanes) continue;
    const size_t cols = h_[6], ld = h_[7], tr = h_[8], span = h_[9];
    const size_t rb = tr ? cols : n / cols, cb = tr ? n / cols : cols; /* the stored block */
    const real d = AUX_AT(0) + (real)1e-7;
    if (span == lanes && ld == cols && !tr) { /* stored as it is, unpadded: p = e */
        x[pos_ + e_] = e_ >= n ? (real)0 : LOAD(s, SLOT(1)) / d;
        continue;
    }
    for (size_t p = e_; p < span; p += lanes) {
        const size_t a = p / ld, b = p - a * ld;
        real v = 0;
        if (a < rb && b < cb) {
            const size_t el = tr ? b * cols + a : a * cols + b; /* the variable's element */
            v = LOAD(s, SLOT(1) - e_ + el) / d;
        }
        x[pos_ + p] = v;
    }
    UPDATE_END;
}

UPDATE_KERNEL void apply(UPDATE_ARGS_AUX, global const real *x) {
    UPDATE_BEGIN;
    SCALARS(MUON_APPLY);
    MUON_HEADER(x);
    if (pos_ == 0 || e_ >= h_[2]) continue;
    const size_t cols = h_[6], ld = h_[7];
    size_t p = e_; /* stored as it is: p = e */
    if (ld != cols || h_[8]) {
        const size_t i = e_ / cols, j = e_ - i * cols;
        p = h_[8] ? j * ld + i : i * ld + j;
    }
    const real sc = lr_adjust != 0 ? *(global const real *)(h_ + 4) : (real)1;
    const real wv = WEIGHT();
    STORE(w, wi, wv - ((lr * x[pos_ + p]) * sc) * rms_rate);
    UPDATE_END;
}
