/* The apply pipeline's own passes, over a segment table with the fused-update arguments.
 * accumulate: the gradient accumulator (slot SLOT_ACC) += gradient * q0 (unscaled), on
 * accumulation steps that do not update. ema: the EMA average (slot SLOT_EMA) := m * average +
 * (1 - m) * variable, m = ema_momentum (CLOPT_SCALARS_EMA, cl/scalars.cl). ema_overwrite:
 * variable := average. */
#ifndef SLOT_EMA
#define SLOT_EMA 0
#endif
UPDATE_KERNEL void accumulate(UPDATE_ARGS) {
    UPDATE_BEGIN;
    STORE(s, SLOT_ABS(SLOT_ACC), LOAD(s, SLOT_ABS(SLOT_ACC)) + LOAD(g, gi) * q0);
    UPDATE_END;
}

/* grad: a distributed step's stages before the reduce seam (src/dist): the gradient after
 * GRAD() (unscaled, accumulated, clipped) into the launch's variable buffer, which for this
 * kernel is a scratch buffer laid out like the gradient block (so at the gradient's index). */
UPDATE_KERNEL void grad(UPDATE_ARGS) {
    UPDATE_BEGIN;
    STORE(w, gi, GRAD());
    UPDATE_END;
}

UPDATE_KERNEL void ema(UPDATE_ARGS) {
    UPDATE_BEGIN;
    SCALARS(EMA);
    const real a = LOAD(s, SLOT_ABS(SLOT_EMA));
    STORE(s, SLOT_ABS(SLOT_EMA), ema_momentum * a + (1 - ema_momentum) * LOAD(w, wi));
    UPDATE_END;
}

UPDATE_KERNEL void ema_overwrite(UPDATE_ARGS) {
    UPDATE_BEGIN;
    STORE(w, wi, LOAD(s, SLOT_ABS(SLOT_EMA)));
    UPDATE_END;
}

/* finite: seg[0] := 0 when any gradient element is not finite (seg is a one-real flag that the
 * host filled with 1). */
UPDATE_KERNEL void finite(UPDATE_ARGS) {
    UPDATE_BEGIN;
    if (!isfinite(LOAD(g, gi))) ((global real *)seg)[0] = 0;
    UPDATE_END;
}
