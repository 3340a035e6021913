/* Lamb, in three passes (src/optim/lamb.c). Scalars: CLOPT_SCALARS_LAMB (cl/scalars.cl). Slots:
 * 0 m, 1 v. Per block (AUX_AT, AUX_ADD): the block's sums of w^2 and r^2, then its variable's
 * trust ratio.
 *
 * Arena padding holds zeros in w, g, m and v, and every pass keeps it so (r = 0 there), so whole
 * chunks can be summed. */

/* r = m_hat / (sqrt(v_hat) + epsilon), from the stored m and v. */
#define LAMB_R(m, v) (((m) / m_corr) / (sqrt((v) / v_corr) + epsilon))

#if CLOPT_CPU
/* Pass 1 on a CPU device: a work-item's loop over its chunks (common.cl, CHUNK_KERNEL), the
 * same values. */
CHUNK_KERNEL void stats(UPDATE_ARGS_AUX) {
    CHUNK_BEGIN;
    SCALARS(LAMB);
    real pw[CHUNK], pr[CHUNK];
    for (size_t i = 0; i < CHUNK; i++) {
        CHUNK_LANE(i);
        const real gv = GRAD();
        const real wv = WEIGHT();
        ADAM_MOMENTS(m, v, gv, one_minus_beta_1, one_minus_beta_2);
        const real r = LAMB_R(LOAD(s, SLOT(0)), LOAD(s, SLOT(1)));
        pw[i] = wv * wv;
        pr[i] = r * r;
    }
    AUX_ADD(0, clopt_tree_sum(pw));
    AUX_ADD(1, clopt_tree_sum(pr));
    CHUNK_END;
}
#else
/* Pass 1, in work-groups of CHUNK work-items, a chunk at a time: m and v, and the chunk's
 * sums. */
kernel void stats(UPDATE_ARGS_AUX) {
    local real pw[CHUNK], pr[CHUNK];
    GROUP_BEGIN;
    SCALARS(LAMB);
    const size_t lid = lane_;
    const real gv = GRAD();
    const real wv = WEIGHT();
    ADAM_MOMENTS(m, v, gv, one_minus_beta_1, one_minus_beta_2);
    const real r = LAMB_R(LOAD(s, SLOT(0)), LOAD(s, SLOT(1)));
    pw[lid] = wv * wv;
    pr[lid] = r * r;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (size_t h = CHUNK / 2; h > 0; h /= 2) {
        if (lid < h) {
            pw[lid] += pw[lid + h];
            pr[lid] += pr[lid + h];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) {
        AUX_ADD(0, pw[0]);
        AUX_ADD(1, pr[0]);
    }
    GROUP_END;
}
#endif

/* Pass 2, one work-item per variable: ratio = ||w|| / ||r|| if both are > 0, else 1 (as Keras's
 * nested where: a NaN norm gives 1), written over the first real of each of its blocks. */
kernel void ratio(SEGMENT_ARGS) {
    const size_t i = get_global_id(0);
    if (i >= nranges) return;
    const segment rg = ranges[rbase + i];
    real sw = 0, sr = 0;
    for (uint c = 0; c < SEGMENT_BLOCKS(rg); c++) {
        sw += partials[(size_t)(rg.block + c) * AUX_STRIDE];
        sr += partials[(size_t)(rg.block + c) * AUX_STRIDE + 1];
    }
    const real wn = sqrt(sw), rn = sqrt(sr);
    const real ratio = wn > 0 ? (rn > 0 ? wn / rn : (real)1) : (real)1;
    for (uint c = 0; c < SEGMENT_BLOCKS(rg); c++)
        partials[(size_t)(rg.block + c) * AUX_STRIDE] = ratio;
}

/* Pass 3: w := w - ratio*lr*r (w after weight decay: WEIGHT() reads the variable as pass 1 did;
 * the gradient is not read again). */
UPDATE_KERNEL void lamb(UPDATE_ARGS_AUX) {
    UPDATE_BEGIN;
    SCALARS(LAMB);
    const real wv = WEIGHT();
    const real r = LAMB_R(LOAD(s, SLOT(0)), LOAD(s, SLOT(1)));
    STORE(w, wi, wv - AUX_AT(0) * lr * r);
    UPDATE_END;
}
