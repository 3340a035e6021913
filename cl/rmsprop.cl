/* RMSprop. Defines: MOMENTUM, CENTERED. Scalars: CLOPT_SCALARS_RMSPROP (cl/scalars.cl). Slots: 0
 * velocity, then momentum (MOMENTUM), then average_gradient (CENTERED). */
#ifndef MOMENTUM
#define MOMENTUM 0
#endif
#ifndef CENTERED
#define CENTERED 0
#endif
UPDATE_KERNEL void rmsprop(UPDATE_ARGS) {
    UPDATE_BEGIN;
    SCALARS(RMSPROP);
    const real gv = GRAD();
    const real wv = WEIGHT();
    const real v = rho * LOAD(s, SLOT(0)) + one_minus_rho * (gv * gv);
    STORE(s, SLOT(0), v);
#if CENTERED
    const real mg = rho * LOAD(s, SLOT(1 + MOMENTUM)) + one_minus_rho * gv;
    STORE(s, SLOT(1 + MOMENTUM), mg);
    const real den = v - mg * mg + epsilon;
#else
    const real den = v + epsilon;
#endif
    const real inc = lr * gv / sqrt(den);
#if MOMENTUM
    const real mom = momentum * LOAD(s, SLOT(1)) + inc;
    STORE(s, SLOT(1), mom);
    STORE(w, wi, wv - mom);
#else
    STORE(w, wi, wv - inc);
#endif
    UPDATE_END;
}
