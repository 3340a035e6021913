/* `clopt bench`: the hand-written OpenMP C loops that clopt's steps are compared with. Included
 * by cmd_bench.c once per element type, with
 *   BT     the element type (float or double), BT_ID 0 or 1,
 *   BS(x)  x with the type's suffix (x##_f32, x##_f64).
 * <tgmath.h> makes sqrt, fmax, fmin and fabs the functions of BT.
 *
 * Each optimizer's step is the math of its kernel (cl/, or its element-wise rule in
 * src/optim/<class>.c) (same operations, same order, same
 * per-step scalars computed in double and rounded to BT as the OpenCL backend passes them), over
 * flat host arrays of the same total size, written as a C programmer would for speed: one
 * parallel loop over contiguous blocks of elements (omp parallel for, static schedule), a plain
 * inner loop that GCC vectorizes (-O3, -fno-math-errno). Clipping by norm adds one reduction pass
 * over the gradients first (omp simd reductions per block, then per tensor or over all), as clopt
 * does; clipping by value clamps inline. The element layout is clopt's: variable k's elements
 * are [toff[k], toff[k+1]) of every array, a row-major rows x cols matrix.
 *
 * cN below is the kernel's scalar N: its meaning is CLOPT_SCALARS_<optimizer> in cl/scalars.cl.
 * The loops are kept apart from the host kernels (src/backend/host) for speed; the tests
 * tool_bench_loops_match_host_* (tools/CMakeLists.txt) check them against those kernels. */

/* max and clamp as comparisons, which GCC turns into vector max/min instructions (fmax and
 * fmin, with their NaN rules, stay scalar calls): the same values for the finite data the
 * benchmark uses. (Defined once: the file is included once per element type.) */
#ifndef CB_MAX
#define CB_MAX(a, b) ((a) > (b) ? (a) : (b))
#define CB_CLAMP(x, lo, hi) ((x) < (lo) ? (lo) : (x) > (hi) ? (hi) : (x))
#endif

/* The gradient of element i as the pipeline sees it: clamped, scaled by the block's clip factor,
 * or as is. BODY (the rest of the macro arguments) uses gv, i and the caller's arrays. The
 * clip branch is outside the inner loops. */
#define CB_FOR(b, ...)                                                                          \
    _Pragma("omp parallel for schedule(runtime)") for (size_t k_ = 0; k_ < (b)->nblocks; k_++) { \
        const size_t lo_ = (b)->blk[k_].lo, hi_ = (b)->blk[k_].hi;                              \
        if ((b)->clip == CB_CLIP_VALUE) {                                                       \
            const BT cv_ = (BT)(b)->clipv;                                                      \
            for (size_t i = lo_; i < hi_; i++) {                                                \
                const BT gv = CB_CLAMP(G[i], -cv_, cv_);                                        \
                __VA_ARGS__                                                                     \
            }                                                                                   \
        } else if ((b)->clip == CB_CLIP_NORM || (b)->clip == CB_CLIP_GLOBAL) {                  \
            const BT f_ = (BT)(b)->tfac[(b)->blk[k_].tensor];                                   \
            for (size_t i = lo_; i < hi_; i++) {                                                \
                const BT gv = G[i] * f_;                                                        \
                __VA_ARGS__                                                                     \
            }                                                                                   \
        } else {                                                                                \
            for (size_t i = lo_; i < hi_; i++) {                                                \
                const BT gv = G[i];                                                             \
                __VA_ARGS__                                                                     \
            }                                                                                   \
        }                                                                                       \
    }

/* Norm clipping's factors (clopt's reduce.sumsq, clip_seg, clip_global): one extra read of the
 * gradients. Factors go to tfac[k] (both modes; global writes the same factor everywhere). */
static void BS(cb_clip)(cbench *b) {
    if (b->clip != CB_CLIP_NORM && b->clip != CB_CLIP_GLOBAL) return;
    const BT *restrict G = b->g;
#pragma omp parallel for schedule(runtime)
    for (size_t k = 0; k < b->nblocks; k++) {
        BT s = 0;
#pragma omp simd reduction(+ : s)
        for (size_t i = b->blk[k].lo; i < b->blk[k].hi; i++) s += G[i] * G[i];
        b->bpart[2 * k] = (double)s;
    }
    BT all = 0;
    for (size_t t = 0; t < b->ntensors; t++) {
        BT s = 0;
        for (size_t k = b->tblk[t]; k < b->tblk[t + 1]; k++) s += (BT)b->bpart[2 * k];
        all += s;
        const BT n = s > 0 ? sqrt(s) : 0, c = (BT)b->clipv;
        b->tfac[t] = (double)(c / fmax(n, c));
    }
    if (b->clip == CB_CLIP_GLOBAL) {
        const BT n = sqrt(all), c = (BT)b->clipv;
        const BT f = c * fmin(1 / n, 1 / c);
        for (size_t t = 0; t < b->ntensors; t++) b->tfac[t] = (double)f;
    }
}

/* The arrays, as BT. */
#define CB_ARRAYS(b)                                                                  \
    BT *restrict W = (b)->w;                                                          \
    const BT *restrict G = (b)->g;                                                    \
    BT *restrict S0 = (b)->s[0], *restrict S1 = (b)->s[1], *restrict S2 = (b)->s[2]; \
    (void)S0;                                                                         \
    (void)S1;                                                                         \
    (void)S2

/* SGD with momentum (src/optim/sgd.c, rule sgd_momentum). */
static void BS(c_sgd)(cbench *b) {
    CB_ARRAYS(b);
    const BT c0 = (BT)b->lr, c1 = (BT)0.9;
    BS(cb_clip)(b);
    CB_FOR(b, {
        const BT m = c1 * S0[i] - c0 * gv;
        S0[i] = m;
        W[i] = W[i] + m;
    })
}

/* Adam (src/optim/adam.c) and AdamW (the same with the pipeline's decoupled decay w - w*wd*lr). */
static void BS(adam_step)(cbench *b, int decay) {
    CB_ARRAYS(b);
    const double b1 = 0.9, b2 = 0.999, t = (double)b->t;
    const BT c0 = (BT)(b->lr * sqrt(1.0 - pow(b2, t)) / (1.0 - pow(b1, t)));
    const BT c1 = (BT)(1.0 - b1), c2 = (BT)(1.0 - b2), c3 = (BT)1e-7;
    const BT q3 = (BT)(0.004 * (BT_ID ? b->lr : (double)(float)b->lr));
    BS(cb_clip)(b);
    if (decay) {
        CB_FOR(b, {
            const BT w0 = W[i];
            const BT wv = w0 - w0 * q3;
            BT m = S0[i], v = S1[i];
            m += (gv - m) * c1;
            v += (gv * gv - v) * c2;
            S0[i] = m;
            S1[i] = v;
            W[i] = wv - c0 * m / (sqrt(v) + c3);
        })
    } else {
        CB_FOR(b, {
            BT m = S0[i], v = S1[i];
            m += (gv - m) * c1;
            v += (gv * gv - v) * c2;
            S0[i] = m;
            S1[i] = v;
            W[i] = W[i] - c0 * m / (sqrt(v) + c3);
        })
    }
}
static void BS(c_adam)(cbench *b) { BS(adam_step)(b, 0); }
static void BS(c_adamw)(cbench *b) { BS(adam_step)(b, 1); }

/* AdaBelief, a registered class (examples/adabelief.h): its scalars as its callback gives
 * them. */
static void BS(c_adabelief)(cbench *b) {
    CB_ARRAYS(b);
    const clopt_dtype d = BT_ID ? CLOPT_FLOAT64 : CLOPT_FLOAT32;
    const double t = (double)b->t;
    const BT lr = (BT)adabelief_round(b->lr, d), b1 = (BT)0.9, b2 = (BT)0.999,
             eps = (BT)1e-16, m_corr = (BT)adabelief_corr(0.9, t, d),
             s_corr = (BT)adabelief_corr(0.999, t, d);
    BS(cb_clip)(b);
    CB_FOR(b, {
        const BT m = b1 * S0[i] + (1 - b1) * gv;
        const BT dv = gv - m;
        const BT s = b2 * S1[i] + (1 - b2) * dv * dv + eps;
        S0[i] = m;
        S1[i] = s;
        W[i] = W[i] - lr * (m * m_corr) / (sqrt(s * s_corr) + eps);
    })
}

/* RMSprop (src/optim/rmsprop.c, rule rmsprop). */
static void BS(c_rmsprop)(cbench *b) {
    CB_ARRAYS(b);
    const BT c0 = (BT)b->lr, c1 = (BT)0.9, c2 = (BT)(1.0 - 0.9), c4 = (BT)1e-7;
    BS(cb_clip)(b);
    CB_FOR(b, {
        const BT v = c1 * S0[i] + c2 * (gv * gv);
        S0[i] = v;
        W[i] = W[i] - c0 * gv / sqrt(v + c4);
    })
}

/* Adagrad (src/optim/adagrad.c): the accumulator starts at 0.1. */
static void BS(c_adagrad)(cbench *b) {
    CB_ARRAYS(b);
    const BT c0 = (BT)b->lr, c1 = (BT)1e-7;
    BS(cb_clip)(b);
    CB_FOR(b, {
        const BT a = S0[i] + gv * gv;
        S0[i] = a;
        W[i] = W[i] - c0 * gv / sqrt(a + c1);
    })
}

/* Adadelta (src/optim/adadelta.c). */
static void BS(c_adadelta)(cbench *b) {
    CB_ARRAYS(b);
    const BT c0 = (BT)b->lr, c1 = (BT)0.95, c2 = (BT)(1.0 - 0.95), c3 = (BT)1e-7;
    BS(cb_clip)(b);
    CB_FOR(b, {
        const BT eg = c1 * S0[i] + c2 * (gv * gv);
        S0[i] = eg;
        const BT ex = S1[i];
        const BT d = -(sqrt(ex + c3) * gv) / sqrt(eg + c3);
        S1[i] = c1 * ex + c2 * (d * d);
        W[i] = W[i] + c0 * d;
    })
}

/* Adamax (src/optim/adamax.c). */
static void BS(c_adamax)(cbench *b) {
    CB_ARRAYS(b);
    const BT c0 = (BT)(b->lr / (1.0 - pow(0.9, (double)b->t)));
    const BT c1 = (BT)(1.0 - 0.9), c2 = (BT)0.999, c3 = (BT)1e-7;
    BS(cb_clip)(b);
    CB_FOR(b, {
        BT m = S0[i];
        m += (gv - m) * c1;
        const BT u = CB_MAX(c2 * S1[i], fabs(gv));
        S0[i] = m;
        S1[i] = u;
        W[i] = W[i] - c0 * m / (u + c3);
    })
}

/* Nadam (src/optim/nadam.c): u_product kept on the host as clopt keeps it. */
static void BS(c_nadam)(cbench *b) {
    CB_ARRAYS(b);
    const double b1 = 0.9, b2 = 0.999, t = (double)b->t;
    if (BT_ID) {
        b->u_product *= b1 * (1.0 - 0.5 * pow(0.96, t));
    } else {
        const float sched = 1.0f - 0.5f * powf(0.96f, (float)t);
        b->u_product = (double)((float)b->u_product * (float)b1 * sched);
    }
    const double u_t = b1 * (1.0 - 0.5 * pow(0.96, t));
    const double u_t1 = b1 * (1.0 - 0.5 * pow(0.96, t + 1.0));
    const double p_t = b->u_product, p_t1 = p_t * u_t1;
    const BT c0 = (BT)b->lr, c1 = (BT)(1.0 - b1), c2 = (BT)(1.0 - b2), c3 = (BT)1e-7;
    const BT c4 = (BT)(u_t1 / (1.0 - p_t1)), c5 = (BT)((1.0 - u_t) / (1.0 - p_t));
    const BT c6 = (BT)(1.0 / (1.0 - pow(b2, t)));
    BS(cb_clip)(b);
    CB_FOR(b, {
        BT m = S0[i], v = S1[i];
        m += (gv - m) * c1;
        v += (gv * gv - v) * c2;
        S0[i] = m;
        S1[i] = v;
        const BT mhat = c4 * m + c5 * gv;
        const BT vhat = v * c6;
        W[i] = W[i] - mhat * c0 / (sqrt(vhat) + c3);
    })
}

/* Ftrl (src/optim/ftrl.c, defaults: learning_rate_power -0.5, so sqrt; l1 = l2 = shrinkage = beta =
 * 0): c0 lr, c2 2*(l2 + beta/(2*lr)), c3 l1, c4 2*l2_shrinkage; the accumulator starts at 0.1. */
static void BS(c_ftrl)(cbench *b) {
    CB_ARRAYS(b);
    const BT c0 = (BT)b->lr, c2 = (BT)0.0, c3 = (BT)0.0, c4 = (BT)0.0;
    BS(cb_clip)(b);
    CB_FOR(b, {
        const BT wv = W[i];
        const BT n = S0[i];
        BT z = S1[i];
        const BT gs = gv + c4 * wv;
        const BT n1 = n + gv * gv;
        const BT p1 = sqrt(n1);
        z += gs - (p1 - sqrt(n)) / c0 * wv;
        const BT q = p1 / c0 + c2;
        S1[i] = z;
        W[i] = (CB_CLAMP(z, -c3, c3) - z) / q;
        S0[i] = n1;
    })
}

/* Lion (src/optim/lion.c): Keras's sign (0 at 0, NaN at NaN). */
static void BS(c_lion)(cbench *b) {
    CB_ARRAYS(b);
    const BT c0 = (BT)b->lr, c1 = (BT)0.9, c2 = (BT)(1.0 - 0.9), c3 = (BT)0.99,
             c4 = (BT)(1.0 - 0.99);
    BS(cb_clip)(b);
    CB_FOR(b, {
        const BT m = S0[i];
        const BT x = m * c1 + gv * c2;
        BT sg = copysign((BT)1, x); /* written so that GCC vectorizes it */
        sg = x == 0 ? x : sg;
        sg = x != x ? x : sg;
        W[i] = W[i] - c0 * sg;
        S0[i] = m * c3 + gv * c4;
    })
}

/* Lamb (cl/lamb.cl): pass 1 updates m and v and sums w^2 and r^2 per block; then each tensor's
 * trust ratio; pass 2 w -= ratio*lr*r from the stored m and v. c0 1-beta1, c1 1-beta2,
 * c2 1-beta1^t, c3 1-beta2^t, c4 epsilon, c5 lr. */
static void BS(c_lamb)(cbench *b) {
    CB_ARRAYS(b);
    const double t = (double)b->t;
    const BT c0 = (BT)(1.0 - 0.9), c1 = (BT)(1.0 - 0.999), c2 = (BT)(1.0 - pow(0.9, t)),
             c3 = (BT)(1.0 - pow(0.999, t)), c4 = (BT)1e-7, c5 = (BT)b->lr;
    BS(cb_clip)(b);
    /* Pass 1 (one loop for every clip mode: clamping to +-infinity and scaling by 1 change
     * nothing, and cost nothing next to the memory traffic). */
#pragma omp parallel for schedule(runtime)
    for (size_t k = 0; k < b->nblocks; k++) {
        const size_t lo = b->blk[k].lo, hi = b->blk[k].hi;
        const BT f = (b->clip == CB_CLIP_NORM || b->clip == CB_CLIP_GLOBAL)
                         ? (BT)b->tfac[b->blk[k].tensor]
                         : (BT)1;
        const BT cv = b->clip == CB_CLIP_VALUE ? (BT)b->clipv : (BT)INFINITY;
        BT sw = 0, sr = 0;
#pragma omp simd reduction(+ : sw, sr)
        for (size_t i = lo; i < hi; i++) {
            const BT gv = CB_CLAMP(G[i] * f, -cv, cv);
            const BT wv = W[i];
            BT m = S0[i], v = S1[i];
            m += (gv - m) * c0;
            v += (gv * gv - v) * c1;
            S0[i] = m;
            S1[i] = v;
            const BT r = (m / c2) / (sqrt(v / c3) + c4);
            sw += wv * wv;
            sr += r * r;
        }
        b->bpart[2 * k] = (double)sw;
        b->bpart[2 * k + 1] = (double)sr;
    }
    for (size_t t2 = 0; t2 < b->ntensors; t2++) {
        BT sw = 0, sr = 0;
        for (size_t k = b->tblk[t2]; k < b->tblk[t2 + 1]; k++) {
            sw += (BT)b->bpart[2 * k];
            sr += (BT)b->bpart[2 * k + 1];
        }
        const BT wn = sqrt(sw), rn = sqrt(sr);
        b->tfac2[t2] = (double)(wn > 0 ? (rn > 0 ? wn / rn : (BT)1) : (BT)1);
    }
#pragma omp parallel for schedule(runtime)
    for (size_t k = 0; k < b->nblocks; k++) {
        const BT ratio = (BT)b->tfac2[b->blk[k].tensor];
        for (size_t i = b->blk[k].lo; i < b->blk[k].hi; i++) {
            const BT r = (S0[i] / c2) / (sqrt(S1[i] / c3) + c4);
            W[i] = W[i] - ratio * c5 * r;
        }
    }
}

/* ScheduleFreeAdamW (cl/schedule_free_adamw.cl): slot 0 z (a copy of w at build), slot 1 v. */
static void BS(c_sfadamw)(cbench *b) {
    CB_ARRAYS(b);
    const double t = (double)b->t;
    const BT c0 = (BT)b->lr, c1 = (BT)(1.0 - 0.999), c2 = (BT)(1.0 - pow(0.999, t)),
             c3 = (BT)1e-8, c4 = (BT)(1.0 - 0.9), c5 = (BT)0.9, c6 = (BT)(1.0 / t),
             c7 = (BT)(1.0 - 1.0 / t);
    BS(cb_clip)(b);
    CB_FOR(b, {
        const BT y = W[i];
        BT v = S1[i];
        v += (gv * gv - v) * c1;
        S1[i] = v;
        const BT den = sqrt(v / c2) + c3;
        const BT z = S0[i] - c0 * gv / den;
        S0[i] = z;
        const BT x_old = (y - c4 * z) / c5;
        const BT x_new = c7 * x_old + c6 * z;
        W[i] = c4 * z + c5 * x_new;
    })
}

/* Adafactor (cl/adafactor.cl; every benchmark variable is a rows x cols matrix, so factored),
 * in the three passes the math needs: (1) read g and w: row sums and per-block column sums of
 * G = g^2 + eps1, sum of w^2; then r, c and mean(r) per tensor; (2) read g: sum of u^2 with
 * u = g / sqrt(r_i/mean(r) * c_j); (3) read w and g: w -= alpha * u / max(1, RMS(u)/clip), write
 * v. Scalars: beta_2_t = 1 - t^-0.8, eps1 1e-30, rho = min(lr, 1/sqrt(t)), eps2 1e-3, clip 1.
 * Slot 0 holds v; r and c live in cbench (per row, per column). */
static void BS(c_adafactor)(cbench *b) {
    CB_ARRAYS(b);
    const double t = (double)b->t, inv_sqrt_t = 1.0 / sqrt(t);
    const double beta_2_t = 1.0 - pow(t, -0.8);
    const BT bt = (BT)beta_2_t, bt1 = (BT)(1.0 - beta_2_t), e1 = (BT)1e-30;
    const BT rho = (BT)fmin(fmin(b->lr, inv_sqrt_t), inv_sqrt_t), e2 = (BT)1e-3, clip = (BT)1;
    BT *restrict R = b->af_r, *restrict Cc = b->af_c, *restrict CP = b->af_colpart;
    BS(cb_clip)(b);
    const BT cv = b->clip == CB_CLIP_VALUE ? (BT)b->clipv : (BT)INFINITY;
    const int scaled = b->clip == CB_CLIP_NORM || b->clip == CB_CLIP_GLOBAL;
    /* (1) Blocks are whole rows of one tensor: row sums to R (as the new r after the loop),
     * column sums to the block's part of CP, sum of w^2 to bpart. */
#pragma omp parallel for schedule(runtime)
    for (size_t k = 0; k < b->nblocks; k++) {
        const size_t tn = b->blk[k].tensor, cols = b->tcols[tn];
        const size_t row0 = (b->blk[k].lo - b->toff[tn]) / cols;
        const BT f = scaled ? (BT)b->tfac[tn] : (BT)1;
        BT *cp = CP + b->colpart_off[k];
        for (size_t j = 0; j < cols; j++) cp[j] = 0;
        BT sw = 0;
        for (size_t i = b->blk[k].lo, row = row0; i < b->blk[k].hi; i += cols, row++) {
            BT rs = 0;
#pragma omp simd reduction(+ : rs, sw)
            for (size_t j = 0; j < cols; j++) {
                const BT gv = CB_CLAMP(G[i + j] * f, -cv, cv);
                const BT gg = gv * gv + e1;
                rs += gg;
                cp[j] += gg;
                sw += W[i + j] * W[i + j];
            }
            const size_t ri = b->row_off[tn] + row;
            R[ri] = bt * R[ri] + bt1 * (rs / (BT)cols);
        }
        b->bpart[2 * k] = (double)sw;
    }
    /* r's mean and c, per tensor (columns summed over the tensor's blocks). */
#pragma omp parallel for schedule(runtime)
    for (size_t tn = 0; tn < b->ntensors; tn++) {
        const size_t rows = b->trows[tn], cols = b->tcols[tn];
        BT rm = 0;
        for (size_t i = 0; i < rows; i++) rm += R[b->row_off[tn] + i];
        b->tfac2[tn] = (double)(rm / (BT)rows);
        if (rows == 1) b->tfac2[tn] = (double)R[b->row_off[tn]];
        BT *c = Cc + b->col_off[tn];
        for (size_t j = 0; j < cols; j++) {
            BT s = 0;
            for (size_t k = b->tblk[tn]; k < b->tblk[tn + 1]; k++) s += CP[b->colpart_off[k] + j];
            c[j] = bt * c[j] + bt1 * (s / (BT)rows);
        }
    }
    /* (2) sum of u^2 per block. */
#pragma omp parallel for schedule(runtime)
    for (size_t k = 0; k < b->nblocks; k++) {
        const size_t tn = b->blk[k].tensor, cols = b->tcols[tn];
        const size_t row0 = (b->blk[k].lo - b->toff[tn]) / cols;
        const BT f = scaled ? (BT)b->tfac[tn] : (BT)1, rm = (BT)b->tfac2[tn];
        const BT *c = Cc + b->col_off[tn];
        BT su = 0;
        for (size_t i = b->blk[k].lo, row = row0; i < b->blk[k].hi; i += cols, row++) {
            const BT rr = R[b->row_off[tn] + row] / rm;
#pragma omp simd reduction(+ : su)
            for (size_t j = 0; j < cols; j++) {
                const BT gv = CB_CLAMP(G[i + j] * f, -cv, cv);
                const BT u = gv / sqrt(rr * c[j]);
                su += u * u;
            }
        }
        b->bpart[2 * k + 1] = (double)su;
    }
    for (size_t tn = 0; tn < b->ntensors; tn++) {
        BT sw = 0, su = 0;
        for (size_t k = b->tblk[tn]; k < b->tblk[tn + 1]; k++) {
            sw += (BT)b->bpart[2 * k];
            su += (BT)b->bpart[2 * k + 1];
        }
        const BT n = (BT)(b->toff[tn + 1] - b->toff[tn]);
        const BT alpha = fmax(e2, sqrt(sw / n)) * rho;
        b->tfac3[tn] = (double)alpha;
        b->tfac4[tn] = (double)fmax((BT)1, sqrt(su / n) / clip);
    }
    /* (3) the update, and v. */
#pragma omp parallel for schedule(runtime)
    for (size_t k = 0; k < b->nblocks; k++) {
        const size_t tn = b->blk[k].tensor, cols = b->tcols[tn];
        const size_t row0 = (b->blk[k].lo - b->toff[tn]) / cols;
        const BT f = scaled ? (BT)b->tfac[tn] : (BT)1, rm = (BT)b->tfac2[tn];
        const BT a = (BT)b->tfac3[tn], d = (BT)b->tfac4[tn];
        const BT *c = Cc + b->col_off[tn];
        for (size_t i = b->blk[k].lo, row = row0; i < b->blk[k].hi; i += cols, row++) {
            const BT rr = R[b->row_off[tn] + row] / rm;
            for (size_t j = 0; j < cols; j++) {
                const BT gv = CB_CLAMP(G[i + j] * f, -cv, cv);
                const BT v = rr * c[j];
                S0[i + j] = v;
                W[i + j] = W[i + j] - a * ((gv / sqrt(v)) / d);
            }
        }
    }
}

#undef CB_ARRAYS
#undef CB_FOR
