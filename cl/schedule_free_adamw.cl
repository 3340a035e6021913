/* ScheduleFreeAdamW (src/optim/schedule_free_adamw.c). Scalars: CLOPT_SCALARS_SFADAMW
 * (cl/scalars.cl). Slots: 0 z (Keras's "momentum"), 1 v. The model variable holds y. As
 * tf.keras, x_old is recovered from the UPDATED z (semantics doc section 6, quirk 1). Stored
 * slots are read back, as Keras reads the variables it has just assigned. */
UPDATE_KERNEL void schedule_free_adamw(UPDATE_ARGS) {
    UPDATE_BEGIN;
    SCALARS(SFADAMW);
    const real gv = GRAD();
    const real y = WEIGHT();
    real v = LOAD(s, SLOT(1));
    v += (gv * gv - v) * one_minus_beta_2;
    STORE(s, SLOT(1), v);
    v = LOAD(s, SLOT(1));
    const real den = sqrt(v / v_corr) + epsilon;
    STORE(s, SLOT(0), LOAD(s, SLOT(0)) - lr * gv / den);
    const real z = LOAD(s, SLOT(0));
    const real x_old = (y - one_minus_beta_1 * z) / beta_1;
    const real x_new = one_minus_weight * x_old + weight * z;
    STORE(w, wi, one_minus_beta_1 * z + beta_1 * x_new);
    UPDATE_END;
}
