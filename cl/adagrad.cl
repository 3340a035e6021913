/* Adagrad. Scalars: CLOPT_SCALARS_ADAGRAD (cl/scalars.cl). Slots: 0 accumulator. */
UPDATE_KERNEL void adagrad(UPDATE_ARGS) {
    UPDATE_BEGIN;
    SCALARS(ADAGRAD);
    const real gv = GRAD();
    const real wv = WEIGHT();
    const real a = LOAD(s, SLOT(0)) + gv * gv;
    STORE(s, SLOT(0), a);
    STORE(w, wi, wv - lr * gv / sqrt(a + epsilon));
    UPDATE_END;
}
