/* Ftrl. Defines: POWER_HALF (-learning_rate_power is 0.5: sqrt instead of pow). Scalars:
 * CLOPT_SCALARS_FTRL (cl/scalars.cl). Slots: 0 accumulator n, 1 linear z. */
#ifndef POWER_HALF
#define POWER_HALF 0
#endif
#if POWER_HALF
#define NPOW(x) sqrt(x)
#else
#define NPOW(x) pow((x), neg_power)
#endif
UPDATE_KERNEL void ftrl(UPDATE_ARGS) {
    UPDATE_BEGIN;
    SCALARS(FTRL);
    const real gv = GRAD();
    const real wv = WEIGHT();
    const real n = LOAD(s, SLOT(0));
    real z = LOAD(s, SLOT(1));
    const real gs = gv + shrinkage_twice * wv;
    const real n1 = n + gv * gv;
    const real p1 = NPOW(n1);
    z += gs - (p1 - NPOW(n)) / lr * wv;
    const real q = p1 / lr + l2_twice;
    STORE(s, SLOT(1), z);
    STORE(w, wi, (clamp(z, -l1, l1) - z) / q);
    STORE(s, SLOT(0), n1);
    UPDATE_END;
}
