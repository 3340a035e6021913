/* Adagrad. Scalars: c0 lr, c1 epsilon. Slots: 0 accumulator. */
UPDATE_KERNEL void adagrad(UPDATE_ARGS) {
    UPDATE_BEGIN;
    const real gv = GRAD();
    const real wv = WEIGHT();
    const real a = LOAD(s, SLOT(0)) + gv * gv;
    STORE(s, SLOT(0), a);
    STORE(w, wi, wv - c0 * gv / sqrt(a + c1));
    UPDATE_END;
}
