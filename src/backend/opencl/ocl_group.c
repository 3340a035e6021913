/* A replica group on one OpenCL platform (src/dist/device_reduce.c): contexts that share one
 * cl_context, each with its own device and queue, so that a buffer of one is an argument of
 * another's copies and kernels; the queues ordered by events; and the all-reduce's sum kernels
 * (cl/allreduce.cl). */
#include <stdlib.h>
#include "ocl_internal.h"

clopt_status clopt__ocl_group_share(clopt_context *const *ctx, size_t n) {
    if (n < 2 || n > 64) return CLOPT_OK;
    cl_device_id dev[64];
    cl_command_queue q[64] = {0};
    clopt__ocl_state *s0 = clopt__ocl(ctx[0]);
    for (size_t r = 0; r < n; r++) {
        clopt__ocl_state *s = clopt__ocl(ctx[r]);
        if (clopt__backend_of(ctx[r]) != &clopt__opencl_backend || s->platform != s0->platform ||
            s->nprograms)
            return clopt__fail(ctx[r], CLOPT_ERR_INVALID_ARGUMENT,
                               "sharing a cl_context: not a fresh OpenCL context on the "
                               "platform of the first");
        dev[r] = s->device;
    }
    cl_int err;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)s0->platform, 0};
    cl_context c = clCreateContext(props, (cl_uint)n, dev, NULL, NULL, &err);
    if (err != CL_SUCCESS)
        return clopt__cl_fail(ctx[0], err, "clCreateContext", "sharing a context over devices");
    for (size_t r = 0; r < n && err == CL_SUCCESS; r++)
        q[r] = clCreateCommandQueue(c, dev[r], 0, &err);
    if (err != CL_SUCCESS) {
        for (size_t r = 0; r < n; r++)
            if (q[r]) clReleaseCommandQueue(q[r]);
        clReleaseContext(c);
        return clopt__cl_fail(ctx[0], err, "clCreateCommandQueue", "sharing a context");
    }
    for (size_t r = 0; r < n; r++) { /* nothing of the old context is alive: swap */
        clopt__ocl_state *s = clopt__ocl(ctx[r]);
        clReleaseCommandQueue(s->queue);
        clReleaseContext(s->context);
        s->queue = q[r];
        s->context = c;
        if (r) clRetainContext(c);
    }
    return CLOPT_OK;
}

int clopt__ocl_group_same(const clopt_context *a, const clopt_context *b) {
    if (clopt__backend_of(a) != &clopt__opencl_backend ||
        clopt__backend_of(b) != &clopt__opencl_backend)
        return 0;
    return clopt__ocl((clopt_context *)a)->context == clopt__ocl((clopt_context *)b)->context;
}

clopt_status clopt__ocl_group_wait(clopt_context *on, clopt_context *after) {
    cl_event e;
    cl_int err = clEnqueueMarkerWithWaitList(clopt__ocl(after)->queue, 0, NULL, &e);
    if (err != CL_SUCCESS) return clopt__cl_fail(after, err, "clEnqueueMarkerWithWaitList", "all-reduce");
    err = clEnqueueBarrierWithWaitList(clopt__ocl(on)->queue, 1, &e, NULL);
    clReleaseEvent(e);
    return err == CL_SUCCESS ? CLOPT_OK
                             : clopt__cl_fail(on, err, "clEnqueueBarrierWithWaitList", "all-reduce");
}

clopt_status clopt__ocl_group_copy(clopt_context *on, const void *src, size_t soff, void *dst,
                                   size_t doff, size_t bytes) {
    cl_int err = clEnqueueCopyBuffer(clopt__ocl(on)->queue, (cl_mem)src, (cl_mem)dst, soff, doff,
                                     bytes, 0, NULL, NULL);
    return err == CL_SUCCESS ? CLOPT_OK
                             : clopt__cl_fail(on, err, "clEnqueueCopyBuffer", "all-reduce");
}

/* Sets the kernel's arguments (sizes and values in pairs) and runs it over n elements. */
static clopt_status run(clopt_context *ctx, clopt__ocl_program *p, size_t n, int nargs,
                        const size_t *size, const void *const *val) {
    for (int i = 0; i < nargs; i++) {
        cl_int err = clSetKernelArg(p->kernel, (cl_uint)i, size[i], val[i]);
        if (err != CL_SUCCESS) return clopt__cl_fail(ctx, err, "clSetKernelArg", p->kernel_name);
    }
    size_t local = CLOPT__CHUNK, global = (n + local - 1) / local * local;
    cl_int err = clEnqueueNDRangeKernel(clopt__ocl(ctx)->queue, p->kernel, 1, NULL, &global,
                                        &local, 0, NULL, NULL);
    return err == CL_SUCCESS ? CLOPT_OK
                             : clopt__cl_fail(ctx, err, "clEnqueueNDRangeKernel", p->kernel_name);
}

clopt_status clopt__ocl_group_add(clopt_context *ctx, clopt_dtype dtype, void *acc,
                                  const void *src, size_t soff, size_t n, int first) {
    clopt__ocl_program *p;
    clopt_status st = clopt__ocl_get_kernel(ctx, "allreduce.allreduce_add", dtype, NULL, 0, &p);
    if (st != CLOPT_OK || n == 0) return st;
    cl_mem a = acc, s = (cl_mem)src;
    cl_ulong o = soff, c = n;
    cl_uint f = first != 0;
    const size_t size[] = {sizeof a, sizeof s, sizeof o, sizeof c, sizeof f};
    const void *const val[] = {&a, &s, &o, &c, &f};
    return run(ctx, p, n, 5, size, val);
}

clopt_status clopt__ocl_group_store(clopt_context *ctx, clopt_dtype dtype, void *dst, size_t doff,
                                    const void *acc, size_t n, size_t replicas, int mean) {
    clopt__ocl_program *p;
    clopt_status st = clopt__ocl_get_kernel(ctx, "allreduce.allreduce_store", dtype, NULL, 0, &p);
    if (st != CLOPT_OK || n == 0) return st;
    cl_mem d = dst, a = (cl_mem)acc;
    cl_ulong o = doff, c = n;
    cl_uint r = (cl_uint)replicas, m = mean != 0;
    const size_t size[] = {sizeof d, sizeof o, sizeof a, sizeof c, sizeof r, sizeof m};
    const void *const val[] = {&d, &o, &a, &c, &r, &m};
    return run(ctx, p, n, 6, size, val);
}

clopt_status clopt__ocl_group_add_into(clopt_context *ctx, clopt_dtype dtype, void *dst,
                                       size_t doff, const void *src, size_t soff, size_t n,
                                       int first, int last, size_t replicas, int mean) {
    clopt__ocl_program *p;
    clopt_status st =
        clopt__ocl_get_kernel(ctx, "allreduce.allreduce_add_into", dtype, NULL, 0, &p);
    if (st != CLOPT_OK || n == 0) return st;
    cl_mem d = dst, s = (cl_mem)src;
    cl_ulong o1 = doff, o2 = soff, c = n;
    cl_uint f = first != 0, l = last != 0, r = (cl_uint)replicas, m = mean != 0;
    const size_t size[] = {sizeof d, sizeof o1, sizeof s, sizeof o2, sizeof c,
                           sizeof f, sizeof l,  sizeof r, sizeof m};
    const void *const val[] = {&d, &o1, &s, &o2, &c, &f, &l, &r, &m};
    return run(ctx, p, n, 9, size, val);
}
