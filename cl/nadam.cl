/* Nadam. Scalars: CLOPT_SCALARS_NADAM (cl/scalars.cl). Slots: 0 m, 1 v. */
UPDATE_KERNEL void nadam(UPDATE_ARGS) {
    UPDATE_BEGIN;
    SCALARS(NADAM);
    const real gv = GRAD();
    const real wv = WEIGHT();
    ADAM_MOMENTS(m, v, gv, one_minus_beta_1, one_minus_beta_2);
    const real mhat = m_coef * m + g_coef * gv;
    const real vhat = v * v_coef;
    STORE(w, wi, wv - mhat * lr / (sqrt(vhat) + epsilon));
    UPDATE_END;
}
