/* Adadelta. Scalars: c0 lr, c1 rho, c2 1-rho, c3 epsilon. Slots: 0 accumulated_grad (Eg),
 * 1 accumulated_delta_var (Ex). The step uses the old Ex. */
UPDATE_KERNEL void adadelta(UPDATE_ARGS) {
    UPDATE_BEGIN;
    const real gv = GRAD();
    const real wv = WEIGHT();
    const real eg = c1 * LOAD(s, SLOT(0)) + c2 * (gv * gv);
    STORE(s, SLOT(0), eg);
    const real ex = LOAD(s, SLOT(1));
    const real d = -(sqrt(ex + c3) * gv) / sqrt(eg + c3);
    STORE(s, SLOT(1), c1 * ex + c2 * (d * d));
    STORE(w, wi, wv + c0 * d);
    UPDATE_END;
}
