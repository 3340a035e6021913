/* Adamax. Scalars: CLOPT_SCALARS_ADAMAX (cl/scalars.cl). Slots: 0 momentum (m), 1 norm (u). */
UPDATE_KERNEL void adamax(UPDATE_ARGS) {
    UPDATE_BEGIN;
    SCALARS(ADAMAX);
    const real gv = GRAD();
    const real wv = WEIGHT();
    real m = LOAD(s, SLOT(0));
    m += (gv - m) * one_minus_beta_1;
    const real u = fmax(beta_2 * LOAD(s, SLOT(1)), fabs(gv));
    STORE(s, SLOT(0), m);
    STORE(s, SLOT(1), u);
    STORE(w, wi, wv - lr_t * m / (u + epsilon));
    UPDATE_END;
}
