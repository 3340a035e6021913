/* Lion. Scalars: CLOPT_SCALARS_LION (cl/scalars.cl). Slots: 0 momentum. The sign is Keras's
 * ops.sign: 0 at 0, NaN at NaN (OpenCL's sign() gives 0 there). */
UPDATE_KERNEL void lion(UPDATE_ARGS) {
    UPDATE_BEGIN;
    SCALARS(LION);
    const real gv = GRAD();
    const real wv = WEIGHT();
    const real m = LOAD(s, SLOT(0));
    const real x = m * beta_1 + gv * one_minus_beta_1;
    STORE(w, wi, wv - lr * (isnan(x) ? x : sign(x)));
    STORE(s, SLOT(0), m * beta_2 + gv * one_minus_beta_2);
    UPDATE_END;
}
