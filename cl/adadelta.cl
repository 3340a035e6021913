/* Adadelta. Scalars: CLOPT_SCALARS_ADADELTA (cl/scalars.cl). Slots: 0 accumulated_grad (Eg), 1
 * accumulated_delta_var (Ex). The step uses the old Ex. */
UPDATE_KERNEL void adadelta(UPDATE_ARGS) {
    UPDATE_BEGIN;
    SCALARS(ADADELTA);
    const real gv = GRAD();
    const real wv = WEIGHT();
    const real eg = rho * LOAD(s, SLOT(0)) + one_minus_rho * (gv * gv);
    STORE(s, SLOT(0), eg);
    const real ex = LOAD(s, SLOT(1));
    const real d = -(sqrt(ex + epsilon) * gv) / sqrt(eg + epsilon);
    STORE(s, SLOT(1), rho * ex + one_minus_rho * (d * d));
    STORE(w, wi, wv + lr * d);
    UPDATE_END;
}
