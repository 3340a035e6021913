/* SGD. Defines: MOMENTUM, NESTEROV. Scalars: c0 lr, c1 momentum. Slots: 0 momentum. */
#ifndef MOMENTUM
#define MOMENTUM 0
#endif
#ifndef NESTEROV
#define NESTEROV 0
#endif
UPDATE_KERNEL void sgd(UPDATE_ARGS) {
    UPDATE_BEGIN;
    const real gv = GRAD();
    real wv = WEIGHT();
#if MOMENTUM
    const real m = c1 * LOAD(s, SLOT(0)) - c0 * gv;
    STORE(s, SLOT(0), m);
#if NESTEROV
    wv += c1 * m - c0 * gv;
#else
    wv += m;
#endif
#else
    wv -= c0 * gv;
#endif
    STORE(w, wi, wv);
    UPDATE_END;
}
