/* SGD. Defines: MOMENTUM, NESTEROV. Scalars: CLOPT_SCALARS_SGD (cl/scalars.cl). Slots: 0
 * momentum. */
#ifndef MOMENTUM
#define MOMENTUM 0
#endif
#ifndef NESTEROV
#define NESTEROV 0
#endif
UPDATE_KERNEL void sgd(UPDATE_ARGS) {
    UPDATE_BEGIN;
    SCALARS(SGD);
    const real gv = GRAD();
    real wv = WEIGHT();
#if MOMENTUM
    const real m = momentum * LOAD(s, SLOT(0)) - lr * gv;
    STORE(s, SLOT(0), m);
#if NESTEROV
    wv += momentum * m - lr * gv;
#else
    wv += m;
#endif
#else
    wv -= lr * gv;
#endif
    STORE(w, wi, wv);
    UPDATE_END;
}
