/* The in-process all-reduce of a replica group (src/dist/device_reduce.c, through
 * src/backend/opencl/ocl_group.c): on the root device, acc = ((0 + x0) + x1) + ... in replica
 * order, in `real` (float for 16-bit dtypes), then the sum (or the mean) stored in the dtype;
 * the same operations as the host reducer, so that every replica gets the same bits. */

/* acc[i] = (first ? 0 : acc[i]) + src[soff + i], i < n. */
kernel void allreduce_add(global real *acc, global const store_t *src, ulong soff, ulong n,
                          uint first) {
    const size_t i = get_global_id(0);
    if (i >= n) return;
    const real a = first ? (real)0 : acc[i];
    acc[i] = a + LOAD(src, soff + i);
}

/* dst[doff + i] = acc[i], or acc[i] / replicas when mean is set, in the dtype. */
kernel void allreduce_store(global store_t *dst, ulong doff, global const real *acc, ulong n,
                            uint replicas, uint mean) {
    const size_t i = get_global_id(0);
    if (i >= n) return;
    real x = acc[i];
    if (mean) x = x / (real)replicas;
    STORE(dst, doff + i, x);
}

/* For float32 and float64 (store_t is real, so dst holds the running sum exactly as `real`):
 * dst[doff + i] = (first ? 0 + dst[doff + i] : dst[doff + i]) + src[soff + i], divided by
 * replicas at the last one when mean is set: the sum in place, without the accumulator. */
kernel void allreduce_add_into(global store_t *dst, ulong doff, global const store_t *src,
                               ulong soff, ulong n, uint first, uint last, uint replicas,
                               uint mean) {
    const size_t i = get_global_id(0);
    if (i >= n) return;
    real a = LOAD(dst, doff + i);
    if (first) a = (real)0 + a;
    a = a + LOAD(src, soff + i);
    if (last && mean) a = a / (real)replicas;
    STORE(dst, doff + i, a);
}
