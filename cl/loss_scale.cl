/* LossScaleOptimizer's end of a device-decided step (src/optim/loss_scale_device.c), a segment pass of
 * one range whose `partials` is the step state (CLOPT__STEP_* in src/backend/backend_internal.h).
 * Keras's LossScaleOptimizer.apply after the inner step: on finite gradients the inner step ran,
 * so its iteration count moves on, and the step counter either reaches dynamic_growth_steps
 * (counter := 0, scale := scale * 2) or grows by one; on non-finite ones the counter resets and
 * the scale halves. The flag is set back to go for the next step. */
kernel void finish(SEGMENT_ARGS) {
    (void)ranges, (void)rbase, (void)seg, (void)c0, (void)c1, (void)c2, (void)c3;
    if (get_global_id(0) >= nranges) return;
    global ulong *st = (global ulong *)partials;
    global float *f = (global float *)partials;
    if (f[0] == 1.0f) {
        st[1] += 1;
        if (st[2] == st[5]) {
            st[2] = 0;
            f[6] = f[6] * 2.0f;
        } else {
            st[2] += 1;
        }
    } else {
        st[2] = 0;
        f[6] = f[6] * 0.5f;
    }
    f[0] = 1.0f;
    f[1] = 1.0f;
}
