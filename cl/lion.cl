/* Lion. Scalars: c0 lr, c1 beta1, c2 1-beta1, c3 beta2, c4 1-beta2. Slots: 0 momentum. The sign
 * is Keras's ops.sign: 0 at 0, NaN at NaN (OpenCL's sign() gives 0 there). */
UPDATE_KERNEL void lion(UPDATE_ARGS) {
    UPDATE_BEGIN;
    const real gv = GRAD();
    const real wv = WEIGHT();
    const real m = LOAD(s, SLOT(0));
    const real x = m * c1 + gv * c2;
    STORE(w, wi, wv - c0 * (isnan(x) ? x : sign(x)));
    STORE(s, SLOT(0), m * c3 + gv * c4);
    UPDATE_END;
}
