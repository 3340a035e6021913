/* The OpenCL backend's internals. */
#ifndef CLOPT_OCL_INTERNAL_H
#define CLOPT_OCL_INTERNAL_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>
#include "../backend_internal.h"


/* A compiled program and its one kernel, keyed by kernel name and build options. */
typedef struct clopt__ocl_program {
    char *kernel_name;
    char *options;
    cl_program program;
    cl_kernel kernel;
    int warm;
    int per_chunk; /* declared reqd_work_group_size(1, 1, 1) (CHUNK_KERNEL in cl/common.cl):
                    * a unit of a launch is one work-item instead of CLOPT__CHUNK */
    int item_blocks; /* -DITEM_BLOCKS it was built with: a block launch runs that many blocks
                      * per unit (ITEM_LOOP in cl/common.cl) */
} clopt__ocl_program;

typedef struct clopt__ocl_state {
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
    char *description;       /* "device (platform)" */
    char *cache_key_prefix;  /* platform/device/driver identity for the program cache */
    char *ident[4];          /* platform vendor, device type, device name, driver version
                              * (the tuning database's keys) */
    int has_fp64;
    int host_memory; /* a CPU device: its buffers are host memory (ocl_buffer_create) */
    clopt__ocl_program *programs;
    size_t nprograms, capprograms;
} clopt__ocl_state;

const char *clopt__cl_error_name(cl_int err);

/* Records an OpenCL failure: the call, the raw code and its name, and what was being done. */
clopt_status clopt__cl_fail(clopt_context *ctx, cl_int err, const char *call, const char *what);

/* Resolves a device spec (NULL: first GPU, else first CPU) to a platform and device. */
clopt_status clopt__ocl_select(clopt_context *ctx, const char *spec, cl_platform_id *platform,
                               cl_device_id *device);

/* The program for `kernel` built with the launch's dtype and defines (compiled, or loaded from
 * the disk cache, once per context). */
clopt_status clopt__ocl_get_kernel(clopt_context *ctx, const char *kernel, clopt_dtype dtype,
                                   const clopt__define *defines, int ndefines,
                                   clopt__ocl_program **out);
/* The same for a program's kernel (clopt__user_kernel): `source` replaces cl/<file>.cl. */
clopt_status clopt__ocl_get_user_kernel(clopt_context *ctx, const char *kernel,
                                        const char *source, clopt_dtype dtype,
                                        const clopt__define *defines, int ndefines,
                                        clopt__ocl_program **out);
void clopt__ocl_programs_free(clopt__ocl_state *s);

static inline clopt__ocl_state *clopt__ocl(clopt_context *ctx) {
    return (clopt__ocl_state *)clopt__backend_state(ctx);
}

#endif
