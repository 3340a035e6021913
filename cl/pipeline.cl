/* The apply pipeline's own passes, over a segment table with the fused-update arguments.
 * accumulate: the gradient accumulator (slot SLOT_ACC) += gradient * q0 (unscaled), on
 * accumulation steps that do not update. ema: the EMA average (slot SLOT_EMA) := c0 * average +
 * (1 - c0) * variable. ema_overwrite: variable := average. */
#ifndef SLOT_EMA
#define SLOT_EMA 0
#endif
UPDATE_KERNEL void accumulate(UPDATE_ARGS) {
    UPDATE_BEGIN;
    STORE(s, SLOT_ABS(SLOT_ACC), LOAD(s, SLOT_ABS(SLOT_ACC)) + LOAD(g, gi) * q0);
    UPDATE_END;
}

UPDATE_KERNEL void ema(UPDATE_ARGS) {
    UPDATE_BEGIN;
    const real a = LOAD(s, SLOT_ABS(SLOT_EMA));
    STORE(s, SLOT_ABS(SLOT_EMA), c0 * a + (1 - c0) * LOAD(w, wi));
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
