/* Adam. Defines: AMSGRAD. Scalars: CLOPT_SCALARS_ADAM (cl/scalars.cl). Slots: 0 m, 1 v, 2 vhat. */
#ifndef AMSGRAD
#define AMSGRAD 0
#endif
UPDATE_KERNEL void adam(UPDATE_ARGS) {
    UPDATE_BEGIN;
    SCALARS(ADAM);
    const real gv = GRAD();
    const real wv = WEIGHT();
    ADAM_MOMENTS(m, v, gv, one_minus_beta_1, one_minus_beta_2);
#if AMSGRAD
    v = fmax(LOAD(s, SLOT(2)), v);
    STORE(s, SLOT(2), v);
#endif
    STORE(w, wi, wv - alpha * m / (sqrt(v) + epsilon));
    UPDATE_END;
}
