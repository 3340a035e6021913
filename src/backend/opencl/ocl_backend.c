/* The OpenCL backend: buffers are cl_mem, operations are kernels of cl/ on one in-order queue. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "ocl_internal.h"
#ifdef CLOPT_WITH_CLBLAST
#include <clblast_c.h>
#endif

static char *device_text(cl_device_id d, cl_device_info what) {
    size_t n = 0;
    clGetDeviceInfo(d, what, 0, NULL, &n);
    char *s = calloc(1, n + 1);
    if (s && n) clGetDeviceInfo(d, what, n, s, NULL);
    return s;
}

static char *platform_name(cl_platform_id p, cl_platform_info what) {
    size_t n = 0;
    clGetPlatformInfo(p, what, 0, NULL, &n);
    char *s = calloc(1, n + 1);
    if (s && n) clGetPlatformInfo(p, what, n, s, NULL);
    return s;
}

static void ocl_close(void *state) {
    clopt__ocl_state *s = state;
    if (!s) return;
    clopt__ocl_programs_free(s);
    if (s->queue) clReleaseCommandQueue(s->queue);
    if (s->context) clReleaseContext(s->context);
    free(s->description);
    for (int i = 0; i < 4; i++) free(s->ident[i]);
    free(s->cache_key_prefix);
    free(s);
}

static clopt_status ocl_open(clopt_context *ctx, const char *spec, void **state) {
    clopt__ocl_state *s = calloc(1, sizeof *s);
    if (!s) return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "out of host memory");
    clopt__backend_set_state(ctx, s); /* so failures below can be reported through ctx */
    clopt_status st = clopt__ocl_select(ctx, spec, &s->platform, &s->device);
    if (st != CLOPT_OK) goto fail;
    cl_int err;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)s->platform, 0};
    s->context = clCreateContext(props, 1, &s->device, NULL, NULL, &err);
    if (err != CL_SUCCESS) {
        st = clopt__cl_fail(ctx, err, "clCreateContext", "opening the device");
        goto fail;
    }
    s->queue = clCreateCommandQueue(s->context, s->device, 0, &err);
    if (err != CL_SUCCESS) {
        st = clopt__cl_fail(ctx, err, "clCreateCommandQueue", "opening the device");
        goto fail;
    }
    char *dname = device_text(s->device, CL_DEVICE_NAME);
    char *dver = device_text(s->device, CL_DRIVER_VERSION);
    char *ext = device_text(s->device, CL_DEVICE_EXTENSIONS);
    char *pname = platform_name(s->platform, CL_PLATFORM_NAME);
    char *pver = platform_name(s->platform, CL_PLATFORM_VERSION);
    s->has_fp64 = ext && strstr(ext, "cl_khr_fp64") != NULL;
    cl_device_type type = 0;
    cl_bool unified = CL_FALSE;
    clGetDeviceInfo(s->device, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    clGetDeviceInfo(s->device, CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof unified, &unified, NULL);
    s->host_memory = (type & CL_DEVICE_TYPE_CPU) && unified;
    s->description = clopt__format("%s (%s)", dname ? dname : "?", pname ? pname : "?");
    char *pvendor = platform_name(s->platform, CL_PLATFORM_VENDOR);
    s->ident[0] = clopt__strdup(pvendor ? pvendor : "");
    s->ident[1] = clopt__strdup((type & CL_DEVICE_TYPE_CPU)   ? "cpu"
                                : (type & CL_DEVICE_TYPE_GPU) ? "gpu"
                                                              : "accelerator");
    s->ident[2] = clopt__strdup(dname ? dname : "");
    s->ident[3] = clopt__strdup(dver ? dver : "");
    free(pvendor);
    s->cache_key_prefix = clopt__format("%s|%s|%s|%s", pname ? pname : "", pver ? pver : "",
                                        dname ? dname : "", dver ? dver : "");
    free(dname);
    free(dver);
    free(ext);
    free(pname);
    free(pver);
    if (!s->description || !s->cache_key_prefix || !s->ident[0] || !s->ident[1] || !s->ident[2] ||
        !s->ident[3]) {
        st = clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "out of host memory");
        goto fail;
    }
    *state = s;
    return CLOPT_OK;
fail:
    ocl_close(s);
    clopt__backend_set_state(ctx, NULL);
    return st;
}

static const char *ocl_device_name(void *state) {
    return ((clopt__ocl_state *)state)->description;
}

static void ocl_device_identity(void *state, const char *out[4]) {
    for (int i = 0; i < 4; i++) out[i] = ((clopt__ocl_state *)state)->ident[i];
}

/* Buffers of at least this size on a device that works in host memory (a CPU device, POCL) are
 * anonymous memory maps given to OpenCL with CL_MEM_USE_HOST_PTR, which POCL uses in place: the
 * operating system zeroes each page when it is first touched, so a 64 MiB arena block of which a
 * small model uses a few pages costs neither the time nor the memory of zeroing it all
 * (clEnqueueFillBuffer over a new 64 MiB block took 20 to 170 ms on this machine's POCL,
 * most of a warm start). */
#define LAZY_ZERO_BYTES ((size_t)1 << 20)

typedef struct lazy_map {
    void *p;
    size_t bytes;
} lazy_map;

static void CL_CALLBACK lazy_unmap(cl_mem m, void *user) {
    (void)m;
    lazy_map *l = user;
    munmap(l->p, l->bytes);
    free(l);
}

/* A zero-filled buffer from fresh pages, or NULL (the caller then allocates and fills). */
static cl_mem lazy_zero_buffer(clopt__ocl_state *s, size_t bytes) {
#ifdef MAP_ANONYMOUS
    if (!s->host_memory || bytes < LAZY_ZERO_BYTES) return NULL;
    lazy_map *l = malloc(sizeof *l);
    if (!l) return NULL;
    l->bytes = bytes;
    l->p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (l->p == MAP_FAILED) {
        free(l);
        return NULL;
    }
    cl_int err;
    cl_mem m = clCreateBuffer(s->context, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR, bytes, l->p,
                              &err);
    if (err == CL_SUCCESS && clSetMemObjectDestructorCallback(m, lazy_unmap, l) == CL_SUCCESS)
        return m;
    if (err == CL_SUCCESS) clReleaseMemObject(m); /* no callback: the map would leak */
    munmap(l->p, bytes);
    free(l);
#else
    (void)s;
    (void)bytes;
#endif
    return NULL;
}

static clopt_status ocl_buffer_create(clopt_context *ctx, size_t bytes, void **buf) {
    clopt__ocl_state *s = clopt__ocl(ctx);
    cl_mem lazy = lazy_zero_buffer(s, bytes);
    if (lazy) {
        clopt__mem_created(ctx, bytes);
        *buf = lazy;
        return CLOPT_OK;
    }
    cl_int err;
    cl_mem m = clCreateBuffer(s->context, CL_MEM_READ_WRITE, bytes ? bytes : 4, NULL, &err);
    if (err == CL_INVALID_BUFFER_SIZE) { /* beyond the device's largest buffer */
        clopt__set_cl_error(ctx, (int)err);
        return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY,
                           "allocating %zu bytes: clCreateBuffer failed with %d "
                           "(CL_INVALID_BUFFER_SIZE: more than the device's largest buffer)",
                           bytes, (int)err);
    }
    if (err != CL_SUCCESS) return clopt__cl_fail(ctx, err, "clCreateBuffer", "allocating memory");
    const cl_uint zero = 0;
    err = clEnqueueFillBuffer(s->queue, m, &zero, sizeof zero, 0, (bytes + 3) / 4 * 4, 0, NULL,
                              NULL);
    if (err != CL_SUCCESS) {
        clReleaseMemObject(m);
        return clopt__cl_fail(ctx, err, "clEnqueueFillBuffer", "zeroing new memory");
    }
    clopt__mem_created(ctx, bytes ? bytes : 4);
    *buf = m;
    return CLOPT_OK;
}

static void ocl_buffer_release(clopt_context *ctx, void *buf) {
    if (!buf) return;
    size_t bytes = 0; /* for the memory accounting */
    if (clGetMemObjectInfo((cl_mem)buf, CL_MEM_SIZE, sizeof bytes, &bytes, NULL) == CL_SUCCESS)
        clopt__mem_released(ctx, bytes);
    clReleaseMemObject((cl_mem)buf);
}

static clopt_status ocl_write(clopt_context *ctx, void *buf, size_t off, const void *src,
                              size_t n) {
    cl_int err = clEnqueueWriteBuffer(clopt__ocl(ctx)->queue, (cl_mem)buf, CL_TRUE, off, n, src, 0,
                                      NULL, NULL);
    return err == CL_SUCCESS ? CLOPT_OK
                             : clopt__cl_fail(ctx, err, "clEnqueueWriteBuffer", "writing");
}

static clopt_status ocl_read(clopt_context *ctx, void *buf, size_t off, void *dst, size_t n) {
    clopt__mem_read(ctx);
    cl_int err = clEnqueueReadBuffer(clopt__ocl(ctx)->queue, (cl_mem)buf, CL_TRUE, off, n, dst, 0,
                                     NULL, NULL);
    return err == CL_SUCCESS ? CLOPT_OK : clopt__cl_fail(ctx, err, "clEnqueueReadBuffer", "reading");
}

static clopt_status ocl_fill(clopt_context *ctx, void *buf, clopt_dtype dtype, size_t off,
                             size_t count, double value) {
    unsigned char pattern[8];
    size_t esize = clopt_dtype_size(dtype);
    if (dtype == CLOPT_FLOAT32) {
        float f = (float)value;
        memcpy(pattern, &f, 4);
    } else if (dtype == CLOPT_FLOAT64) {
        memcpy(pattern, &value, 8);
    } else {
        /* 16-bit formats: the host backend's rounding, through a one-element conversion. */
        uint16_t h;
        clopt__host_backend.fill(ctx, &h, dtype, 0, 1, value);
        memcpy(pattern, &h, 2);
    }
    if (!count) return CLOPT_OK;
    cl_int err = clEnqueueFillBuffer(clopt__ocl(ctx)->queue, (cl_mem)buf, pattern, esize,
                                     off * esize, count * esize, 0, NULL, NULL);
    return err == CL_SUCCESS ? CLOPT_OK : clopt__cl_fail(ctx, err, "clEnqueueFillBuffer", "fill");
}

static clopt_status set_arg(clopt_context *ctx, cl_kernel k, cl_uint i, size_t size,
                            const void *v, const char *name) {
    cl_int err = clSetKernelArg(k, i, size, v);
    return err == CL_SUCCESS ? CLOPT_OK : clopt__cl_fail(ctx, err, "clSetKernelArg", name);
}

/* Enqueues `global` work-items in work-groups of `local` (0: the implementation's choice). */
static clopt_status enqueue_wg(clopt_context *ctx, cl_kernel k, size_t global, size_t local,
                               const char *name) {
    cl_int err = clEnqueueNDRangeKernel(clopt__ocl(ctx)->queue, k, 1, NULL, &global,
                                        local ? &local : NULL, 0, NULL, NULL);
    return err == CL_SUCCESS ? CLOPT_OK : clopt__cl_fail(ctx, err, "clEnqueueNDRangeKernel", name);
}

static clopt_status enqueue(clopt_context *ctx, cl_kernel k, size_t global, const char *name) {
    return enqueue_wg(ctx, k, global, global % CLOPT__CHUNK == 0 ? CLOPT__CHUNK : 0, name);
}

/* A launch of `units` units of work (clopt__launch.nunits): a CHUNK_KERNEL's (cl/common.cl)
 * unit is a work-group of one work-item, another kernel's a work-group of CLOPT__CHUNK. A block
 * launch's kernel runs p->item_blocks blocks per unit (ITEM_LOOP); a class's own-table pass
 * (clopt__launch.own_table) one table entry per unit. */
static clopt_status enqueue_units(clopt_context *ctx, const clopt__ocl_program *p, size_t units,
                                  int own_table, const char *name) {
    const size_t local = p->per_chunk ? 1 : CLOPT__CHUNK;
    const size_t per = own_table || p->item_blocks < 1 ? 1 : (size_t)p->item_blocks;
    return enqueue_wg(ctx, p->kernel, (units + per - 1) / per * local, local, name);
}

static clopt_status ocl_assign(clopt_context *ctx, clopt__assign_op op, clopt_dtype dtype,
                               void *dst, size_t doff, const void *src, size_t soff,
                               size_t count) {
    clopt__define def = {"OP", (int)op};
    clopt__ocl_program *p;
    clopt_status st = clopt__ocl_get_kernel(ctx, "assign", dtype, &def, 1, &p);
    if (st != CLOPT_OK) return st;
    cl_mem d = dst, s = (cl_mem)src;
    cl_ulong o1 = doff, o2 = soff, n = count;
    if ((st = set_arg(ctx, p->kernel, 0, sizeof d, &d, "assign")) ||
        (st = set_arg(ctx, p->kernel, 1, sizeof o1, &o1, "assign")) ||
        (st = set_arg(ctx, p->kernel, 2, sizeof s, &s, "assign")) ||
        (st = set_arg(ctx, p->kernel, 3, sizeof o2, &o2, "assign")) ||
        (st = set_arg(ctx, p->kernel, 4, sizeof n, &n, "assign")))
        return st;
    size_t global = (count + CLOPT__CHUNK - 1) / CLOPT__CHUNK * CLOPT__CHUNK;
    return enqueue(ctx, p->kernel, global, "assign");
}

/* Sets the fused-update arguments: w, g, s, slot stride, table, its first entry and entries,
 * seg, scalars (UPDATE_ARGS in cl/common.cl). */
static clopt_status set_update_args(clopt_context *ctx, cl_kernel k, const clopt__launch *l,
                                    cl_mem w, cl_mem g, cl_mem s, cl_ulong stride, cl_mem table,
                                    cl_uint tbase, cl_uint ntable, cl_mem seg) {
    clopt_status st;
    if ((st = set_arg(ctx, k, 0, sizeof w, &w, l->kernel)) ||
        (st = set_arg(ctx, k, 1, sizeof g, &g, l->kernel)) ||
        (st = set_arg(ctx, k, 2, sizeof s, &s, l->kernel)) ||
        (st = set_arg(ctx, k, 3, sizeof stride, &stride, l->kernel)) ||
        (st = set_arg(ctx, k, 4, sizeof table, &table, l->kernel)) ||
        (st = set_arg(ctx, k, 5, sizeof tbase, &tbase, l->kernel)) ||
        (st = set_arg(ctx, k, 6, sizeof ntable, &ntable, l->kernel)) ||
        (st = set_arg(ctx, k, 7, sizeof seg, &seg, l->kernel)))
        return st;
    _Static_assert(CLOPT__UPDATE_BUFFER_NARGS == 8, "CLOPT_UPDATE_BUFFER_ARGS: eight, set above");
    for (cl_uint i = 0; i < CLOPT__MAX_SCALARS + CLOPT__PIPE_SCALARS; i++) {
        const double x = i < CLOPT__MAX_SCALARS ? l->scalars[i] : l->pipe[i - CLOPT__MAX_SCALARS];
        const cl_uint at = CLOPT__UPDATE_BUFFER_NARGS + i;
        if (l->dtype == CLOPT_FLOAT64) {
            st = set_arg(ctx, k, at, sizeof x, &x, l->kernel);
        } else {
            float f = (float)x;
            st = set_arg(ctx, k, at, sizeof f, &f, l->kernel);
        }
        if (st) return st;
    }
    return CLOPT_OK;
}

/* The arguments after UPDATE_ARGS' scalars: a device-decided step's three (clopt__launch's
 * step_*; STEP_ARGS_ in cl/common.cl), then a multi-pass kernel's per-block reals
 * (UPDATE_ARGS_AUX), then a class's info buffer (clopt__launch.info_buf). */
#define UPDATE_NARGS CLOPT__UPDATE_NARGS
static cl_uint extra_arg(const clopt__launch *l, cl_uint k) {
    return UPDATE_NARGS + (l->step_state ? 3 : 0) + k;
}
static clopt_status set_step_args(clopt_context *ctx, cl_kernel k, const clopt__launch *l,
                                  cl_mem table, cl_mem state) {
    const cl_uint kind = (cl_uint)l->step_kind;
    clopt_status st;
    if ((st = set_arg(ctx, k, UPDATE_NARGS, sizeof table, &table, l->kernel)) ||
        (st = set_arg(ctx, k, UPDATE_NARGS + 1, sizeof state, &state, l->kernel)))
        return st;
    return set_arg(ctx, k, UPDATE_NARGS + 2, sizeof kind, &kind, l->kernel);
}
static clopt_status set_aux_arg(clopt_context *ctx, cl_kernel k, const clopt__launch *l,
                                cl_mem aux) {
    return set_arg(ctx, k, extra_arg(l, 0), sizeof aux, &aux, l->kernel);
}
static clopt_status set_info_arg(clopt_context *ctx, cl_kernel k, const clopt__launch *l,
                                 cl_mem info) {
    return set_arg(ctx, k, extra_arg(l, 1), sizeof info, &info, l->kernel);
}

/* The kernel of a fused update: the optimizer's defines plus the pipeline's switches. */
static clopt_status update_kernel(clopt_context *ctx, const clopt__launch *l,
                                  clopt__ocl_program **p) {
    clopt__define defs[CLOPT__MAX_DEFINES + 7];
    int n = l->ndefines;
    memcpy(defs, l->defines, (size_t)n * sizeof *defs);
    if (l->step_state) defs[n++] = (clopt__define){"DEVICE_STEP", 1};
    defs[n++] = (clopt__define){"ACCUM", l->accum};
    defs[n++] = (clopt__define){"CLIP", l->clip};
    defs[n++] = (clopt__define){"DECAY", l->decay};
    defs[n++] = (clopt__define){"SLOT_BASE", l->slot_base};
    defs[n++] = (clopt__define){"SLOT_ACC", l->slot_acc};
    defs[n++] = (clopt__define){"SLOT_EMA", l->slot_ema};
    const clopt__user_kernel *user = clopt__launch_user(l);
    return clopt__ocl_get_user_kernel(ctx, l->kernel, user ? user->source : NULL, l->dtype, defs,
                                      n, p);
}

/* Work-items of the largest warm-up launch: POCL compiles a kernel for each local size and,
 * separately, for grids of fewer than 65535 work-items ("smallgrid") and larger ones; warming
 * with as many chunks as the real launch, up to this many work-items, compiles the variant the
 * real launch uses (with one chunk, step 1 of a model of 65536 or more elements compiled the
 * large-grid variant, 60 to 250 ms). */
#define WARM_MAX_ITEMS 65536

/* Compiles the launch's kernel and runs it once on scratch memory, so that the device's
 * first-launch costs (POCL compiles per kernel, local size and grid class) are paid here, not
 * in step 1. */
static clopt_status ocl_prepare(clopt_context *ctx, const clopt__launch *l) {
    clopt__ocl_program *p;
    clopt_status st = update_kernel(ctx, l, &p);
    if (st != CLOPT_OK || p->warm) return st;
    /* ib blocks per unit (ITEM_LOOP): the real grid has ceil(nunits / ib) units */
    const size_t ib = l->own_table || p->item_blocks < 1 ? 1 : (size_t)p->item_blocks;
    const size_t per = p->per_chunk ? 1 : CLOPT__CHUNK, max = WARM_MAX_ITEMS / per * ib;
    const size_t nwarm = l->nunits < 1 ? 1 : l->nunits > max ? max : l->nunits;
    const size_t items = (nwarm + ib - 1) / ib;
    /* The same grid as the real launch (up to WARM_MAX_ITEMS work-items) over a table whose
     * one segment is one block of one chunk at offset 0 of a separate data buffer (the other
     * units return); a class's own table: nwarm zeroed entries. Scratch buffers cover the warm
     * grid at 8 bytes per work-item, for kernels that index by global id, and 16 bytes of aux
     * per unit. */
    void *data, *table = NULL;
    size_t data_bytes = items * per * 8;
    if (data_bytes < items * 16) data_bytes = items * 16;
    if (data_bytes < CLOPT__CHUNK * 8) data_bytes = CLOPT__CHUNK * 8;
    if ((st = ocl_buffer_create(ctx, data_bytes, &data))) return st;
    const clopt__segment one = {0, 1, 0, 0, 0, 0, 1, 0};
    if ((st = ocl_buffer_create(ctx, (l->own_table ? nwarm : 1) * sizeof(clopt__segment),
                                &table)) ||
        (!l->own_table && (st = ocl_write(ctx, table, 0, &one, sizeof one)))) {
        ocl_buffer_release(ctx, data);
        if (table) ocl_buffer_release(ctx, table);
        return st;
    }
    cl_mem m = data, t = table;
    /* A class's info buffer gets a zeroed chunk of its own: its kernels index memory by what it
     * holds, and the data chunk takes the kernel's stores. */
    void *info = NULL;
    if (l->info_buf && (st = ocl_buffer_create(ctx, data_bytes, &info))) {
        ocl_buffer_release(ctx, data);
        ocl_buffer_release(ctx, table);
        return st;
    }
    /* seg is the data buffer, not the table: sumsq writes it, and nothing may write the table
     * that other work-groups read offsets from. */
    st = set_update_args(ctx, p->kernel, l, m, m, m, 0, t, 0,
                         (cl_uint)(l->own_table ? nwarm : 1), m);
    /* A device-decided kernel sees a zero flag in the zeroed data, and returns at once. */
    if (st == CLOPT_OK && l->step_state) st = set_step_args(ctx, p->kernel, l, m, m);
    if (st == CLOPT_OK && l->aux_buf) st = set_aux_arg(ctx, p->kernel, l, m);
    if (st == CLOPT_OK && l->info_buf) st = set_info_arg(ctx, p->kernel, l, (cl_mem)info);
    if (st == CLOPT_OK) st = enqueue_units(ctx, p, nwarm, l->own_table, l->kernel);
    cl_int err = clFinish(clopt__ocl(ctx)->queue);
    if (st == CLOPT_OK && err != CL_SUCCESS) st = clopt__cl_fail(ctx, err, "clFinish", l->kernel);
    ocl_buffer_release(ctx, data);
    ocl_buffer_release(ctx, table);
    if (info) ocl_buffer_release(ctx, info);
    if (st == CLOPT_OK) p->warm = 1;
    return st;
}

static clopt_status ocl_update(clopt_context *ctx, const clopt__launch *l) {
    clopt__ocl_program *p;
    clopt_status st = update_kernel(ctx, l, &p);
    if (st != CLOPT_OK) return st;
    if (!l->nunits) return CLOPT_OK;
    cl_mem seg = l->seg_buf ? (cl_mem)l->seg_buf : (cl_mem)l->table_buf;
    cl_mem slot = l->slot_buf ? (cl_mem)l->slot_buf : (cl_mem)l->var_buf;
    st = set_update_args(ctx, p->kernel, l, l->var_buf, l->grad_buf, slot, l->slot_stride,
                         l->table_buf, (cl_uint)l->table_base, (cl_uint)l->ntable, seg);
    if (st == CLOPT_OK && l->step_state)
        st = set_step_args(ctx, p->kernel, l, (cl_mem)l->step_table, (cl_mem)l->step_state);
    if (st == CLOPT_OK && l->aux_buf) st = set_aux_arg(ctx, p->kernel, l, (cl_mem)l->aux_buf);
    if (st == CLOPT_OK && l->info_buf)
        st = set_info_arg(ctx, p->kernel, l, (cl_mem)l->info_buf);
    if (st != CLOPT_OK) return st;
    return enqueue_units(ctx, p, l->nunits, l->own_table, l->kernel);
}

/* Ends the warm-up launch of a per-range kernel (a launch over no ranges, which reads and writes
 * nothing: the kernels return for ranges past nranges): waits, so that POCL's compilation of the
 * work-group function happens now, at build, not in step 1. */
static clopt_status warm_done(clopt_context *ctx, clopt__ocl_program *p, clopt_status st,
                              const char *name) {
    if (st != CLOPT_OK) return st;
    cl_int err = clFinish(clopt__ocl(ctx)->queue);
    if (err != CL_SUCCESS) return clopt__cl_fail(ctx, err, "clFinish", name);
    p->warm = 1;
    return CLOPT_OK;
}

static clopt_status ocl_clip_factors(clopt_context *ctx, const clopt__clip_launch *l) {
    const char *name = l->mode == 0 ? "reduce.clip_seg" : "reduce.clip_global";
    clopt__ocl_program *p;
    clopt_status st = clopt__ocl_get_kernel(ctx, name, l->dtype, NULL, 0, &p);
    if (st != CLOPT_OK) return st;
    if (!l->nranges && p->warm) return CLOPT_OK; /* no ranges: only compile and warm */
    cl_mem r = l->ranges_buf, part = l->partials_buf, seg = l->seg_buf;
    cl_uint base = (cl_uint)l->range_base, n = (cl_uint)l->nranges;
    if ((st = set_arg(ctx, p->kernel, 0, sizeof r, &r, name)) ||
        (st = set_arg(ctx, p->kernel, 1, sizeof base, &base, name)) ||
        (st = set_arg(ctx, p->kernel, 2, sizeof n, &n, name)) ||
        (st = set_arg(ctx, p->kernel, 3, sizeof part, &part, name)) ||
        (st = set_arg(ctx, p->kernel, 4, sizeof seg, &seg, name)))
        return st;
    if (l->dtype == CLOPT_FLOAT64) {
        st = set_arg(ctx, p->kernel, 5, sizeof l->clipnorm, &l->clipnorm, name);
    } else {
        float c = (float)l->clipnorm;
        st = set_arg(ctx, p->kernel, 5, sizeof c, &c, name);
    }
    if (st) return st;
    size_t global = l->mode == 0 ? (l->nranges + CLOPT__CHUNK - 1) / CLOPT__CHUNK * CLOPT__CHUNK
                                 : CLOPT__CHUNK;
    if (!l->nranges) return warm_done(ctx, p, enqueue(ctx, p->kernel, CLOPT__CHUNK, name), name);
    return enqueue(ctx, p->kernel, global, name);
}

/* A segment pass (SEGMENT_ARGS in cl/common.cl): one work-item per range. */
static clopt_status ocl_segments(clopt_context *ctx, const clopt__segment_launch *l) {
    clopt__ocl_program *p;
    clopt_status st = clopt__ocl_get_kernel(ctx, l->kernel, l->dtype, NULL, 0, &p);
    if (st != CLOPT_OK || (!l->nranges && p->warm)) return st; /* no ranges: compile and warm */
    cl_mem r = l->ranges_buf, part = l->partials_buf;
    cl_mem seg = l->seg_buf ? (cl_mem)l->seg_buf : part;
    cl_uint base = (cl_uint)l->range_base, n = (cl_uint)l->nranges;
    if ((st = set_arg(ctx, p->kernel, 0, sizeof r, &r, l->kernel)) ||
        (st = set_arg(ctx, p->kernel, 1, sizeof base, &base, l->kernel)) ||
        (st = set_arg(ctx, p->kernel, 2, sizeof n, &n, l->kernel)) ||
        (st = set_arg(ctx, p->kernel, 3, sizeof part, &part, l->kernel)) ||
        (st = set_arg(ctx, p->kernel, 4, sizeof seg, &seg, l->kernel)))
        return st;
    for (cl_uint i = 0; i < 4; i++) {
        const double x = l->scalars[i];
        if (l->dtype == CLOPT_FLOAT64) {
            st = set_arg(ctx, p->kernel, 5 + i, sizeof x, &x, l->kernel);
        } else {
            float f = (float)x;
            st = set_arg(ctx, p->kernel, 5 + i, sizeof f, &f, l->kernel);
        }
        if (st) return st;
    }
    if (!l->nranges)
        return warm_done(ctx, p, enqueue(ctx, p->kernel, CLOPT__CHUNK, l->kernel), l->kernel);
    return enqueue(ctx, p->kernel, (l->nranges + CLOPT__CHUNK - 1) / CLOPT__CHUNK * CLOPT__CHUNK,
                   l->kernel);
}

/* Matrix products through CLBlast on the context's queue (clopt__gemm_launch). CLBlast compiles
 * its kernels on a context's first call per precision and keeps them in its own process-wide
 * cache; its status codes below -1000 are its own, the others are OpenCL's. */
static clopt_status ocl_gemm(clopt_context *ctx, const clopt__gemm_launch *l) {
#ifdef CLOPT_WITH_CLBLAST
    cl_command_queue q = clopt__ocl(ctx)->queue;
    cl_event ev = NULL;
    const CLBlastTranspose ta = l->trans_a ? CLBlastTransposeYes : CLBlastTransposeNo;
    const CLBlastTranspose tb = l->trans_b ? CLBlastTransposeYes : CLBlastTransposeNo;
    CLBlastStatusCode st;
    const char *call;
    if (l->batch > 1 && (l->dtype == CLOPT_FLOAT64 || l->dtype == CLOPT_FLOAT32)) {
        /* a batch of equal products in one call: the matrices at a fixed stride */
        if (l->dtype == CLOPT_FLOAT64) {
            call = "CLBlastDgemmStridedBatched";
            st = CLBlastDgemmStridedBatched(
                CLBlastLayoutRowMajor, ta, tb, l->m, l->n, l->k, l->alpha, (cl_mem)l->a,
                l->a_off, l->lda, l->a_stride, (cl_mem)l->b, l->b_off, l->ldb, l->b_stride,
                l->beta, (cl_mem)l->c, l->c_off, l->ldc, l->c_stride, l->batch, &q, &ev);
        } else {
            call = "CLBlastSgemmStridedBatched";
            st = CLBlastSgemmStridedBatched(
                CLBlastLayoutRowMajor, ta, tb, l->m, l->n, l->k, (float)l->alpha, (cl_mem)l->a,
                l->a_off, l->lda, l->a_stride, (cl_mem)l->b, l->b_off, l->ldb, l->b_stride,
                (float)l->beta, (cl_mem)l->c, l->c_off, l->ldc, l->c_stride, l->batch, &q, &ev);
        }
    } else if (l->dtype == CLOPT_FLOAT64) {
        call = "CLBlastDgemm";
        st = CLBlastDgemm(CLBlastLayoutRowMajor, ta, tb, l->m, l->n, l->k, l->alpha,
                          (cl_mem)l->a, l->a_off, l->lda, (cl_mem)l->b, l->b_off, l->ldb, l->beta,
                          (cl_mem)l->c, l->c_off, l->ldc, &q, &ev);
    } else if (l->dtype == CLOPT_FLOAT32) {
        call = "CLBlastSgemm";
        st = CLBlastSgemm(CLBlastLayoutRowMajor, ta, tb, l->m, l->n, l->k, (float)l->alpha,
                          (cl_mem)l->a, l->a_off, l->lda, (cl_mem)l->b, l->b_off, l->ldb,
                          (float)l->beta, (cl_mem)l->c, l->c_off, l->ldc, &q, &ev);
    } else {
        return clopt__fail(ctx, CLOPT_ERR_UNSUPPORTED, "gemm: %s matrices are not supported",
                           clopt_dtype_name(l->dtype));
    }
    if (ev) clReleaseEvent(ev); /* the queue is in order: nothing waits on it */
    if (st == CLBlastSuccess) return CLOPT_OK;
    if (st > -1000) return clopt__cl_fail(ctx, (cl_int)st, call, "matrix product (CLBlast)");
    clopt_status cs = st == CLBlastNoDoublePrecision || st == CLBlastNoHalfPrecision
                          ? CLOPT_ERR_UNSUPPORTED
                          : CLOPT_ERR_OPENCL;
    clopt__fail(ctx, cs,
                "matrix product: %s failed with CLBlast status %d (%zu x %zu x %zu, batch %zu)",
                call, (int)st, l->m, l->n, l->k, l->batch > 1 ? l->batch : 1);
    clopt__set_cl_error(ctx, (int)st);
    return cs;
#else
    return clopt__fail(ctx, CLOPT_ERR_UNSUPPORTED,
                       "matrix product (%zu x %zu x %zu) on OpenCL: this clopt was built without "
                       "CLBlast (CLOPT_WITH_CLBLAST off or CLBlast not found); Muon's "
                       "Newton-Schulz iteration needs it",
                       l->m, l->n, l->k);
#endif
}

/* CLBlast's parameters for one kernel and precision on this device (tuning_gemm.c reads them
 * from the tuning database). CLBlast keeps them per device for the whole process: every context
 * on the device gets them, and its next call of that kernel recompiles. */
static clopt_status ocl_gemm_override(clopt_context *ctx, const char *kernel, int precision,
                                      size_t n, const char *const *names, const size_t *values) {
#ifdef CLOPT_WITH_CLBLAST
    const CLBlastStatusCode st =
        CLBlastOverrideParameters(clopt__ocl(ctx)->device, kernel, (CLBlastPrecision)precision, n,
                                  (const char **)names, values);
    if (st == CLBlastSuccess) return CLOPT_OK;
    return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT,
                       "CLBlastOverrideParameters(%s, precision %d) failed with CLBlast status %d",
                       kernel, precision, (int)st);
#else
    (void)kernel, (void)precision, (void)n, (void)names, (void)values;
    return clopt__fail(ctx, CLOPT_ERR_UNSUPPORTED,
                       "GEMM parameters: this clopt was built without CLBlast");
#endif
}

static clopt_status ocl_finish(clopt_context *ctx) {
    cl_int err = clFinish(clopt__ocl(ctx)->queue);
    return err == CL_SUCCESS ? CLOPT_OK : clopt__cl_fail(ctx, err, "clFinish", "waiting");
}

const clopt__backend_ops clopt__opencl_backend = {
    .name = "opencl",
    .open = ocl_open,
    .close = ocl_close,
    .device_name = ocl_device_name,
    .device_identity = ocl_device_identity,
    .buffer_create = ocl_buffer_create,
    .buffer_release = ocl_buffer_release,
    .write = ocl_write,
    .read = ocl_read,
    .fill = ocl_fill,
    .assign = ocl_assign,
    .prepare = ocl_prepare,
    .update = ocl_update,
    .clip_factors = ocl_clip_factors,
    .segments = ocl_segments,
    .gemm = ocl_gemm,
    .gemm_override = ocl_gemm_override,
    .finish = ocl_finish,
};

/* ---- interop (clopt_cl.h) ---- */
#include "clopt/clopt_cl.h"

static clopt_status need_ocl(const clopt_context *ctx) {
    if (!ctx) return CLOPT_ERR_INVALID_ARGUMENT;
    if (clopt__backend_of(ctx) != &clopt__opencl_backend)
        return clopt__fail((clopt_context *)ctx, CLOPT_ERR_UNSUPPORTED,
                           "OpenCL interop: the context is on the '%s' backend",
                           clopt__backend_of(ctx)->name);
    return CLOPT_OK;
}

clopt_status clopt_context_cl_context(const clopt_context *ctx, cl_context *out) {
    clopt_status st = need_ocl(ctx);
    if (st == CLOPT_OK && !out) st = CLOPT_ERR_INVALID_ARGUMENT;
    if (st == CLOPT_OK) *out = ((clopt__ocl_state *)clopt__backend_state(ctx))->context;
    return st;
}

clopt_status clopt_context_cl_queue(const clopt_context *ctx, cl_command_queue *out) {
    clopt_status st = need_ocl(ctx);
    if (st == CLOPT_OK && !out) st = CLOPT_ERR_INVALID_ARGUMENT;
    if (st == CLOPT_OK) *out = ((clopt__ocl_state *)clopt__backend_state(ctx))->queue;
    return st;
}

clopt_status clopt_variable_cl_mem(const clopt_variable *var, cl_mem *mem, size_t *off) {
    if (!var) return CLOPT_ERR_INVALID_ARGUMENT;
    void *buf;
    size_t at;
    clopt_status st = need_ocl(clopt__variable_place(var, &buf, &at));
    if (st == CLOPT_OK && (!mem || !off)) st = CLOPT_ERR_INVALID_ARGUMENT;
    if (st == CLOPT_OK) {
        *mem = (cl_mem)buf;
        *off = at;
    }
    return st;
}
