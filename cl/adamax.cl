/* Adamax. Scalars: c0 lr/(1-beta1^t), c1 1-beta1, c2 beta2, c3 epsilon. Slots: 0 momentum (m),
 * 1 norm (u). */
UPDATE_KERNEL void adamax(UPDATE_ARGS) {
    UPDATE_BEGIN;
    const real gv = GRAD();
    const real wv = WEIGHT();
    real m = LOAD(s, SLOT(0));
    m += (gv - m) * c1;
    const real u = fmax(c2 * LOAD(s, SLOT(1)), fabs(gv));
    STORE(s, SLOT(0), m);
    STORE(s, SLOT(1), u);
    STORE(w, wi, wv - c0 * m / (u + c3));
    UPDATE_END;
}
