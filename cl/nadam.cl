/* Nadam. Scalars: c0 lr, c1 1-beta1, c2 1-beta2, c3 epsilon, c4 u_{t+1}/(1-P_{t+1}),
 * c5 (1-u_t)/(1-P_t), c6 1/(1-beta2^t), where u_t = beta1*(1-0.5*0.96^t) and P_t is the
 * optimizer's u_product after this step's update. Slots: 0 m, 1 v. */
UPDATE_KERNEL void nadam(UPDATE_ARGS) {
    UPDATE_BEGIN;
    const real gv = GRAD();
    const real wv = WEIGHT();
    real m = LOAD(s, SLOT(0)), v = LOAD(s, SLOT(1));
    m += (gv - m) * c1;
    v += (gv * gv - v) * c2;
    STORE(s, SLOT(0), m);
    STORE(s, SLOT(1), v);
    const real mhat = c4 * m + c5 * gv;
    const real vhat = v * c6;
    STORE(w, wi, wv - mhat * c0 / (sqrt(vhat) + c3));
    UPDATE_END;
}
