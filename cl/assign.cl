/* dst[doff + i] (OP)= src[soff + i]: OP 0 assign, 1 add, 2 subtract. */
#ifndef OP
#define OP 0
#endif
kernel void assign(global store_t *d, ulong doff, global const store_t *src, ulong soff,
                   ulong n) {
    const size_t i = get_global_id(0);
    if (i >= n) return;
    real x = LOAD(src, soff + i);
#if OP == 1
    x = LOAD(d, doff + i) + x;
#elif OP == 2
    x = LOAD(d, doff + i) - x;
#endif
    STORE(d, doff + i, x);
}
