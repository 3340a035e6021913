/* Ftrl. Defines: POWER_HALF (-learning_rate_power is 0.5: sqrt instead of pow). Scalars: c0 lr,
 * c1 -learning_rate_power, c2 2*(l2 + beta/(2*lr)), c3 l1, c4 2*l2_shrinkage. Slots:
 * 0 accumulator n, 1 linear z. */
#ifndef POWER_HALF
#define POWER_HALF 0
#endif
#if POWER_HALF
#define NPOW(x) sqrt(x)
#else
#define NPOW(x) pow((x), c1)
#endif
UPDATE_KERNEL void ftrl(UPDATE_ARGS) {
    UPDATE_BEGIN;
    const real gv = GRAD();
    const real wv = WEIGHT();
    const real n = LOAD(s, SLOT(0));
    real z = LOAD(s, SLOT(1));
    const real gs = gv + c4 * wv;
    const real n1 = n + gv * gv;
    const real p1 = NPOW(n1);
    z += gs - (p1 - NPOW(n)) / c0 * wv;
    const real q = p1 / c0 + c2;
    STORE(s, SLOT(1), z);
    STORE(w, wi, (clamp(z, -c3, c3) - z) / q);
    STORE(s, SLOT(0), n1);
    UPDATE_END;
}
