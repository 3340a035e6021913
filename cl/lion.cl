/* Lion. Scalars: c0 lr, c1 beta1, c2 1-beta1, c3 beta2, c4 1-beta2. Slots: 0 momentum. sign()
 * is 0 at 0 (and at NaN), as Keras's ops.sign at 0. */
kernel void lion(UPDATE_ARGS) {
    UPDATE_INDEX;
    const real gv = GRAD();
    const real wv = WEIGHT();
    const real m = LOAD(s, SLOT(0));
    STORE(w, wi, wv - c0 * sign(m * c1 + gv * c2));
    STORE(s, SLOT(0), m * c3 + gv * c4);
}
