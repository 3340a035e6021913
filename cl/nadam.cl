/* Nadam. Scalars: CLOPT_SCALARS_NADAM (cl/scalars.cl). Slots: 0 m, 1 v. */
UPDATE_KERNEL void nadam(UPDATE_ARGS) {
    UPDATE_BEGIN;
    SCALARS(NADAM);
    const real gv = GRAD();
    const real wv = WEIGHT();
    real m = LOAD(s, SLOT(0)), v = LOAD(s, SLOT(1));
    m += (gv - m) * one_minus_beta_1;
    v += (gv * gv - v) * one_minus_beta_2;
    STORE(s, SLOT(0), m);
    STORE(s, SLOT(1), v);
    const real mhat = m_coef * m + g_coef * gv;
    const real vhat = v * v_coef;
    STORE(w, wi, wv - mhat * lr / (sqrt(vhat) + epsilon));
    UPDATE_END;
}
