/* ScheduleFreeAdamW (src/optim/schedule_free_adamw.c). Scalars: c0 lr (after warmup),
 * c1 1-beta2, c2 1-beta2^t, c3 epsilon, c4 1-beta1, c5 beta1, c6 1/t, c7 1-1/t. Slots: 0 z
 * (Keras's "momentum"), 1 v. The model variable holds y. As tf.keras, x_old is recovered from
 * the UPDATED z (semantics doc section 6, quirk 1). Stored slots are read back, as Keras reads
 * the variables it has just assigned. */
UPDATE_KERNEL void schedule_free_adamw(UPDATE_ARGS) {
    UPDATE_BEGIN;
    const real gv = GRAD();
    const real y = WEIGHT();
    real v = LOAD(s, SLOT(1));
    v += (gv * gv - v) * c1;
    STORE(s, SLOT(1), v);
    v = LOAD(s, SLOT(1));
    const real den = sqrt(v / c2) + c3;
    STORE(s, SLOT(0), LOAD(s, SLOT(0)) - c0 * gv / den);
    const real z = LOAD(s, SLOT(0));
    const real x_old = (y - c4 * z) / c5;
    const real x_new = c7 * x_old + c6 * z;
    STORE(w, wi, c4 * z + c5 * x_new);
    UPDATE_END;
}
