/* RMSprop. Defines: MOMENTUM, CENTERED. Scalars: c0 lr, c1 rho, c2 1-rho, c3 momentum,
 * c4 epsilon. Slots: 0 velocity, then momentum (MOMENTUM), then average_gradient (CENTERED). */
#ifndef MOMENTUM
#define MOMENTUM 0
#endif
#ifndef CENTERED
#define CENTERED 0
#endif
UPDATE_KERNEL void rmsprop(UPDATE_ARGS) {
    UPDATE_BEGIN;
    const real gv = GRAD();
    const real wv = WEIGHT();
    const real v = c1 * LOAD(s, SLOT(0)) + c2 * (gv * gv);
    STORE(s, SLOT(0), v);
#if CENTERED
    const real mg = c1 * LOAD(s, SLOT(1 + MOMENTUM)) + c2 * gv;
    STORE(s, SLOT(1 + MOMENTUM), mg);
    const real den = v - mg * mg + c4;
#else
    const real den = v + c4;
#endif
    const real inc = c0 * gv / sqrt(den);
#if MOMENTUM
    const real mom = c3 * LOAD(s, SLOT(1)) + inc;
    STORE(s, SLOT(1), mom);
    STORE(w, wi, wv - mom);
#else
    STORE(w, wi, wv - inc);
#endif
    UPDATE_END;
}
