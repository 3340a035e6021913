/* Adam. Defines: AMSGRAD. Scalars: c0 alpha = lr*sqrt(1-beta2^t)/(1-beta1^t), c1 1-beta1,
 * c2 1-beta2, c3 epsilon. Slots: 0 m, 1 v, 2 vhat. */
#ifndef AMSGRAD
#define AMSGRAD 0
#endif
UPDATE_KERNEL void adam(UPDATE_ARGS) {
    UPDATE_BEGIN;
    const real gv = GRAD();
    const real wv = WEIGHT();
    real m = LOAD(s, SLOT(0)), v = LOAD(s, SLOT(1));
    m += (gv - m) * c1;
    v += (gv * gv - v) * c2;
    STORE(s, SLOT(0), m);
    STORE(s, SLOT(1), v);
#if AMSGRAD
    v = fmax(LOAD(s, SLOT(2)), v);
    STORE(s, SLOT(2), v);
#endif
    STORE(w, wi, wv - c0 * m / (sqrt(v) + c3));
    UPDATE_END;
}
