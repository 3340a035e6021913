/* The backend interface: a table of operations that the core and the optimizer layer use for
 * every byte of device memory and every launch (pocl's pocl_device_ops, BLIS's cntx_t), and what
 * a backend may ask of the core in return (the end of this file). It is the common ground of the
 * core (core_internal.h includes it) and the backends (which include it, and no core header).
 * The host backend is the numerical reference; the OpenCL backend runs the kernels of cl/. */
#ifndef CLOPT_BACKEND_INTERNAL_H
#define CLOPT_BACKEND_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "clopt/status.h"
#include "clopt/variable.h"

typedef struct clopt_context clopt_context;

/* Elements per chunk of a fused launch. Every arena sub-allocation is a whole number of chunks
 * (zero-filled padding), so a kernel needs no bounds check. Must match CHUNK in cl/common.cl. */
#define CLOPT__CHUNK 256

/* Blocks: a fused launch's unit of work (a CPU work-item or a work-group) is a block of
 * consecutive chunks of one variable, which owns one entry of per-block partial sums. A plan's
 * blocks have CLOPT__BLOCK_CHUNKS chunks, or more where that makes more than CLOPT__MAX_BLOCKS
 * blocks of whole chunks (then ceil(chunks / CLOPT__MAX_BLOCKS)); so a plan has at most
 * CLOPT__MAX_BLOCKS blocks plus one per variable (each variable's last block may be short).
 * These are the defaults of clopt_kernel_params (clopt/experimental.h), which a tuning database
 * or clopt_context_set_kernel_params may change per context. */
#define CLOPT__BLOCK_CHUNKS 16
#define CLOPT__MAX_BLOCKS 4096

/* One variable of a plan (a segment): `count` chunks, chunk k of it being chunk var + k of the
 * variable's buffer, grad + k of the gradient's and slot + k of the slot block's (chunk units);
 * they form ceil(count / bchunks) blocks, numbered from `block` on across the plan (a block
 * indexes per-block partial sums). index is the segment: the variable's built index
 * (per-segment reals, class info). A fused launch reads a table of these (`segment` in
 * cl/common.cl; 32 bytes): it grows with the number of variables, not with their sizes. */
typedef struct clopt__segment {
    uint32_t index, count, var, grad, slot, block, bchunks, unused;
} clopt__segment;

/* The blocks of a segment. */
static inline uint32_t clopt__segment_blocks(const clopt__segment *s) {
    return (s->count + s->bchunks - 1) / s->bchunks;
}

/* One chunk, as the host backend's per-chunk kernels see it: chunk offsets of the variable,
 * gradient and first slot, and the segment; also the entries of a class's own table
 * (clopt__launch.own_table: Adafactor's {variable, kind, first, count}). */
typedef struct clopt__chunk {
    uint32_t var, grad, slot, seg;
} clopt__chunk;

/* A structural switch of a kernel: a -D option for OpenCL, a flag for the host. */
typedef struct clopt__define {
    const char *name;
    int value;
} clopt__define;

#define CLOPT__MAX_DEFINES 8

/* The kernels' argument layout and each update's scalars (c0..c7), shared with cl/. */
#include "../../cl/scalars.cl"
#define CLOPT__ONE_(...) +1
#define CLOPT__NONE_()
/* The optimizer's per-step scalars (c0..c7) and the apply pipeline's (q0..q3). */
#define CLOPT__MAX_SCALARS (0 CLOPT_STEP_SCALAR_ARGS(CLOPT__ONE_, CLOPT__NONE_))
#define CLOPT__PIPE_SCALARS (0 CLOPT_PIPE_SCALAR_ARGS(CLOPT__ONE_, CLOPT__NONE_))
/* The buffer arguments before them, and all of UPDATE_ARGS (cl/common.cl): the OpenCL backend
 * passes a kernel's further arguments after these. */
#define CLOPT__UPDATE_BUFFER_NARGS (0 CLOPT_UPDATE_BUFFER_ARGS(CLOPT__ONE_, CLOPT__NONE_))
#define CLOPT__UPDATE_NARGS \
    (CLOPT__UPDATE_BUFFER_NARGS + CLOPT__MAX_SCALARS + CLOPT__PIPE_SCALARS)

/* A class's names for its scalars: enum { CLOPT_SCALARS_ADAM(CLOPT__SCALAR_INDEX) } gives
 * SC_alpha = 0, ..., the indices its launch fills (l->scalars[SC_alpha]). */
#define CLOPT__SCALAR_INDEX(i, name, doc) SC_##name = (i),
/* Each list's indices are below CLOPT__MAX_SCALARS and distinct (no two names share one). */
#define CLOPT__SCALAR_BIT_(i, name, doc) +(1u << (i))
#define CLOPT__SCALAR_OR_(i, name, doc) | (1u << (i))
#define CLOPT__SCALAR_BELOW_(i, name, doc) &&(i) < CLOPT__MAX_SCALARS
#define CLOPT__SCALAR_CHECK_(K)                                                               \
    _Static_assert(1 CLOPT_SCALARS_##K(CLOPT__SCALAR_BELOW_), #K ": a scalar past c7");       \
    _Static_assert((0u CLOPT_SCALARS_##K(CLOPT__SCALAR_BIT_)) ==                              \
                       (0u CLOPT_SCALARS_##K(CLOPT__SCALAR_OR_)),                             \
                   #K ": two scalars share an index");
CLOPT_SCALAR_LISTS(CLOPT__SCALAR_CHECK_)

/* A kernel a program supplies (an optimizer class it defined, src/optim/custom.c): the OpenCL
 * program text after scalars.cl and common.cl, defining kernel `name`, and the host backend's
 * per-element update (in double: variable, gradient, nslots slots in place, the scalars). */
#define CLOPT__USER_MAX_SLOTS 4
typedef struct clopt__user_kernel {
    const char *name;   /* unique per source ("custom_<source hash>") */
    const char *source;
    void (*host)(double *w, double g, double *slots, const double *scalars, void *user_data);
    void *user_data;
    int nslots;
} clopt__user_kernel;

/* A fused elementwise update over a plan's segment table (or a class's own table). Scalars are
 * per-step values (learning rate, bias corrections) passed as kernel arguments, never compiled
 * in. */
typedef struct clopt__launch {
    const char *kernel;   /* "lamb" (kernel lamb in cl/lamb.cl) or "file.kernel" */
    clopt_dtype dtype;    /* dtype of variable, gradient and slots */
    void *var_buf;        /* backend buffers */
    void *grad_buf;
    void *slot_buf;       /* slot kind k of a variable is at slot_stride*k + its slot offset */
    size_t slot_stride;   /* elements */
    void *table_buf;      /* clopt__segment entries (own_table: the class's clopt__chunk) */
    size_t table_base;    /* first entry of this launch */
    size_t ntable;        /* entries of this launch */
    size_t nunits;        /* units of work: the blocks of the segments (own_table: ntable) */
    int own_table;        /* table_buf is a class's own table of clopt__chunk entries, one
                           * work-group (or CPU work-item) each (OWN_TABLE in cl/common.cl) */
    void *seg_buf;        /* per-segment reals (clip factor, decay flag); NULL if unused */
    int ndefines;
    clopt__define defines[CLOPT__MAX_DEFINES];
    double scalars[CLOPT__MAX_SCALARS]; /* the optimizer's: c0..c7 in cl/ (cl/scalars.cl) */
    /* The apply pipeline's (q0..q3 in cl/): 1/loss_scale_factor, 1/accumulation steps,
     * clipvalue, weight_decay*lr; and its switches: ACCUM, CLIP (0 off, 1 by the segment's
     * factor, 2 by value), DECAY, the number of pipeline slot kinds before the optimizer's
     * (SLOT_BASE) and the accumulator's kind (SLOT_ACC). */
    double pipe[CLOPT__PIPE_SCALARS];
    int accum, clip, decay, slot_base, slot_acc, slot_ema;
    /* Per-block reals of a multi-pass step (Lamb's norms and trust ratios): 16 bytes per
     * block, two reals at block*16 bytes (doubles on the host backend whatever the
     * dtype). NULL for single-pass kernels; when set, the OpenCL kernel takes it as one more
     * argument after UPDATE_ARGS (UPDATE_ARGS_AUX in cl/common.cl). */
    void *aux_buf;
    /* A class's own buffer (Adafactor's per-variable shapes and slot offsets, uint32 words),
     * which its kernels read and write. NULL when unused; when set, aux_buf must be set too and
     * the OpenCL kernel takes it as one more argument after aux. */
    void *info_buf;
    /* A device-decided step (a LossScaleOptimizer's inner step, src/optim/loss_scale_device.c):
     * when step_state is set, the kernel (built with DEVICE_STEP=1) reads its scalars from
     * step_table and skips itself unless the device's finite flag says go; the OpenCL kernel
     * takes step_table, step_state and step_kind as three more arguments right after
     * UPDATE_ARGS' (before aux and info). Layout: CLOPT__STEP_* below. */
    void *step_table, *step_state;
    int step_kind;
    /* A program's kernel (clopt__launch_user): used when `kernel` is its name; a stage that
     * reuses the launch for another kernel only changes `kernel`. */
    const clopt__user_kernel *user;
} clopt__launch;

/* The program's kernel the launch runs, or NULL for a built-in one. */
static inline const clopt__user_kernel *clopt__launch_user(const struct clopt__launch *l) {
    return l->user && l->kernel == l->user->name ? l->user : NULL;
}

/* The device-decided step's state buffer (uint64 words; loss_scale_device.c keeps it):
 * word 0 the finite flag (its first float: 1 go, 0 skip; a float64 kernel clears the word),
 * word 1 the inner optimizer's iteration count, word 2 the loss scale's step counter, word 3
 * the dynamic scale (its first float), word 4 the count of table row 0 (row = count - word 4),
 * word 5 dynamic_growth_steps - 1. The table holds, per row, CLOPT__STEP_KINDS blocks of
 * CLOPT__STEP_REALS reals (the launch's real dtype; double on the host backend): c0..c7, q0..q3, then unused, and last a
 * go switch (0: this kind of launch skips this step: EMA's overwrite on other steps). */
#define CLOPT__STEP_WORDS 6
#define CLOPT__STEP_REALS 16
#define CLOPT__STEP_KINDS 3
enum { CLOPT__STEP_UPDATE = 0, CLOPT__STEP_EMA = 1, CLOPT__STEP_EMA_OVERWRITE = 2 };

/* Per-variable clip factors from per-block sums of squares (written by the "sumsq" kernel, at
 * 8 bytes per block). ranges_buf holds the plan's clopt__segment entries. Mode 0 (clipnorm):
 * seg[2*seg] = c / max(norm_seg, c). Mode 1 (global_clipnorm): one norm N over every range,
 * and seg[2*seg] = c * min(1/N, 1/c) + (N - N) for each range's segment. seg holds reals
 * (double for float64, else float). */
typedef struct clopt__clip_launch {
    clopt_dtype dtype;
    int mode;
    void *ranges_buf;
    size_t range_base, nranges;
    void *partials_buf;
    void *seg_buf;
    double clipnorm;
} clopt__clip_launch;

/* A per-variable pass over a plan's segments (ranges_buf holds clopt__segment entries): the
 * kernel `kernel` ("lamb.ratio") runs once per segment rbase .. rbase + nranges - 1, reading and
 * writing the segments' per-block reals in partials_buf (16 bytes per block, as
 * clopt__launch.aux_buf) and, if seg_buf is set, per-segment reals. One launch whatever the
 * number of variables. Kernels: SEGMENT_ARGS in cl/common.cl; host twins in
 * clopt__host_segment_kernels. */
typedef struct clopt__segment_launch {
    const char *kernel;
    clopt_dtype dtype;
    void *ranges_buf;
    size_t range_base, nranges;
    void *partials_buf;
    void *seg_buf; /* NULL if unused */
    double scalars[4];
} clopt__segment_launch;

/* A matrix product on row-major matrices (Muon's Newton-Schulz iteration, src/optim/muon.c):
 * C = alpha * op(A) * op(B) + beta * C, where op(X) is X, or X transposed when trans_a / trans_b
 * is set; op(A) is m x k, op(B) k x n and C m x n. Each matrix starts at an element offset of its
 * buffer and has a leading dimension (elements between the starts of two rows). dtype is
 * CLOPT_FLOAT32 or CLOPT_FLOAT64. With beta 0 the result does not depend on C as long as C is
 * finite (the OpenCL implementation may compute 0 * C); callers keep C finite.
 * Batched: with batch > 1, `batch` independent products of that same shape in one operation,
 * product i on the matrices starting at a_off + i*a_stride, b_off + i*b_stride and
 * c_off + i*c_stride (elements; the C matrices must not overlap). batch 0 or 1: the one product
 * (strides unused). OpenCL: CLBlast on the context's queue (CLBlastSgemm / CLBlastDgemm, batched
 * CLBlastSgemmStridedBatched / CLBlastDgemmStridedBatched: one call whatever the batch),
 * CLOPT_ERR_UNSUPPORTED when clopt was built without it; host: a plain triple loop accumulating
 * in double, per product (the numerical reference). */
typedef struct clopt__gemm_launch {
    clopt_dtype dtype;
    int trans_a, trans_b;
    size_t m, n, k;
    double alpha, beta;
    const void *a;
    size_t a_off, lda;
    const void *b;
    size_t b_off, ldb;
    void *c;
    size_t c_off, ldc;
    size_t batch, a_stride, b_stride, c_stride;
} clopt__gemm_launch;

typedef enum clopt__assign_op {
    CLOPT__ASSIGN = 0,
    CLOPT__ASSIGN_ADD = 1,
    CLOPT__ASSIGN_SUB = 2
} clopt__assign_op;

/* The operations a backend provides. Offsets and counts are in elements unless named *_bytes.
 * Every operation returns a status and leaves a message on the context when it fails. */
typedef struct clopt__backend_ops {
    const char *name;
    /* Opens the device chosen by `spec` (already resolved to a backend), stores state. */
    clopt_status (*open)(clopt_context *ctx, const char *spec, void **state);
    void (*close)(void *state);
    const char *(*device_name)(void *state);
    /* The device as the tuning database matches it: vendor, type, name, driver (owned by the
     * state). NULL: the host backend ("clopt", "host", "host", version). */
    void (*device_identity)(void *state, const char *out[4]);
    /* A zero-filled buffer of `bytes`. */
    clopt_status (*buffer_create)(clopt_context *ctx, size_t bytes, void **buf);
    void (*buffer_release)(clopt_context *ctx, void *buf);
    clopt_status (*write)(clopt_context *ctx, void *buf, size_t off_bytes, const void *src,
                          size_t nbytes);
    clopt_status (*read)(clopt_context *ctx, void *buf, size_t off_bytes, void *dst,
                         size_t nbytes);
    /* Fills `count` elements of `dtype` from element `off` with `value`. */
    clopt_status (*fill)(clopt_context *ctx, void *buf, clopt_dtype dtype, size_t off,
                         size_t count, double value);
    /* dst[dst_off + i] (op)= src[src_off + i] for i < count. */
    clopt_status (*assign)(clopt_context *ctx, clopt__assign_op op, clopt_dtype dtype, void *dst,
                           size_t dst_off, const void *src, size_t src_off, size_t count);
    /* Compiles (or loads from cache) and warms the kernel a launch will use. */
    clopt_status (*prepare)(clopt_context *ctx, const clopt__launch *launch);
    clopt_status (*update)(clopt_context *ctx, const clopt__launch *launch);
    clopt_status (*clip_factors)(clopt_context *ctx, const clopt__clip_launch *launch);
    /* Runs a segment pass; with nranges 0 it only compiles (or loads) the kernel. */
    clopt_status (*segments)(clopt_context *ctx, const clopt__segment_launch *launch);
    clopt_status (*gemm)(clopt_context *ctx, const clopt__gemm_launch *launch);
    /* Sets CLBlast's parameters of one of its kernels ("Xgemm", "XgemmDirect", "GemmRoutine")
     * in one precision (32, 64) for the context's device: CLBlastOverrideParameters, which holds
     * for the whole process and recompiles on the next call. NULL: no such parameters (host). */
    clopt_status (*gemm_override)(clopt_context *ctx, const char *kernel, int precision,
                                  size_t n, const char *const *names, const size_t *values);
    clopt_status (*finish)(clopt_context *ctx);
} clopt__backend_ops;

extern const clopt__backend_ops clopt__host_backend;
extern const clopt__backend_ops clopt__opencl_backend;

/* The dtype of per-segment scalars and partial sums for variables of `d`. */
static inline clopt_dtype clopt__real_dtype(clopt_dtype d) {
    return d == CLOPT_FLOAT64 ? CLOPT_FLOAT64 : CLOPT_FLOAT32;
}

/* The define's value in a launch, `fallback` when absent. */
static inline int clopt__launch_define(const clopt__launch *launch, const char *name,
                                       int fallback) {
    for (int i = 0; i < launch->ndefines; i++)
        if (strcmp(launch->defines[i].name, name) == 0) return launch->defines[i].value;
    return fallback;
}

/* ---- What the core gives a backend (src/core) ---- */

#if defined(__GNUC__)
#define CLOPT__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CLOPT__PRINTF(f, a)
#endif

/* Errors: record the message on the context and return the status (util.c). */
clopt_status clopt__fail(clopt_context *ctx, clopt_status st, const char *fmt, ...)
    CLOPT__PRINTF(3, 4);
char *clopt__strdup(const char *s);
char *clopt__vformat(const char *fmt, va_list ap);
char *clopt__format(const char *fmt, ...) CLOPT__PRINTF(1, 2);

/* Element i of an array of `dtype` as a double, and the reverse (rounding to nearest even;
 * dtype.c). */
double clopt__elem_load(const void *base, clopt_dtype dtype, size_t i);
void clopt__elem_store(void *base, clopt_dtype dtype, size_t i, double x);

/* A kernel source embedded at build time (generated kernels_embedded.c): the cl/ sources and
 * the shipped tuning database tuning/clopt_tuning.json (stem "clopt_tuning"). */
typedef struct clopt__kernel_source {
    const char *name; /* file stem: "lamb" for cl/lamb.cl */
    const char *text;
    size_t length;
} clopt__kernel_source;
extern const clopt__kernel_source clopt__kernel_sources[]; /* NULL-terminated */

/* The cache directory (CLOPT_CACHE_DIR, "off": "", XDG_CACHE_HOME/clopt, ~/.cache/clopt), for
 * compiled kernels and the user tuning database; malloc'd (util.c). */
char *clopt__cache_dir(void);

/* Whether kernels take the loop form (CLOPT_CPU=1, cl/common.cl) on this context: its kernel
 * parameters' form, AUTO meaning `cpu_default` (tuning.c). */
int clopt__kernel_form_loop(clopt_context *ctx, int cpu_default);

/* Blocks per unit of work of a block launch (ITEM_BLOCKS, cl/common.cl): the context's kernel
 * parameters' item_blocks, at least 1 (tuning.c). */
int clopt__kernel_item_blocks(clopt_context *ctx);

/* 64-bit FNV-1a, for cache keys (util.c). */
uint64_t clopt__hash64(uint64_t h, const void *data, size_t n);
#define CLOPT__HASH_INIT 1469598103934665603ULL

/* A context as its backend sees it (memory.c): the backend's table and the state `open` made
 * (open may set it early, so that its own failures can be reported), the last OpenCL error
 * (clopt_context_last_cl_error), and device memory accounting: a buffer made, one released, a
 * read from the device. */
const clopt__backend_ops *clopt__backend_of(const clopt_context *ctx);
void *clopt__backend_state(const clopt_context *ctx);
void clopt__backend_set_state(clopt_context *ctx, void *state);
void clopt__set_cl_error(clopt_context *ctx, int err);
void clopt__mem_created(clopt_context *ctx, size_t bytes);
void clopt__mem_released(clopt_context *ctx, size_t bytes);
void clopt__mem_read(clopt_context *ctx);
/* Where a variable lives: its context, its arena buffer and its byte offset in it (interop). */
clopt_context *clopt__variable_place(const clopt_variable *v, void **buf, size_t *off_bytes);

/* ---- A replica group on one OpenCL platform (ocl_group.c; used by src/dist/device_reduce.c) ---- */

/* Makes the n OpenCL contexts ctx[] (fresh: no buffer or program made yet; one platform,
 * distinct devices) share one cl_context over their devices, each with its own device and a new
 * in-order queue. n < 2: nothing to do. On failure nothing changes (message on ctx[0] or the
 * culprit). */
clopt_status clopt__ocl_group_share(clopt_context *const *ctx, size_t n);
/* Whether a and b are OpenCL contexts over one cl_context. */
int clopt__ocl_group_same(const clopt_context *a, const clopt_context *b);
/* What `on`'s queue runs next waits for everything enqueued on `after`'s so far. */
clopt_status clopt__ocl_group_wait(clopt_context *on, clopt_context *after);
/* A copy of bytes from src (at soff bytes) to dst (at doff), buffers of the shared context,
 * enqueued on `on`'s queue. */
clopt_status clopt__ocl_group_copy(clopt_context *on, const void *src, size_t soff, void *dst,
                                   size_t doff, size_t bytes);
/* acc[i] = (first ? 0 : acc[i]) + src[soff + i], i < n, acc in the dtype's real
 * (cl/allreduce.cl), on ctx's queue. */
clopt_status clopt__ocl_group_add(clopt_context *ctx, clopt_dtype dtype, void *acc,
                                  const void *src, size_t soff, size_t n, int first);
/* float32 and float64 only: dst[doff + i] = (first ? 0 + dst[doff + i] : dst[doff + i]) +
 * src[soff + i], divided by replicas after the last source when mean: the sum in place. */
clopt_status clopt__ocl_group_add_into(clopt_context *ctx, clopt_dtype dtype, void *dst,
                                       size_t doff, const void *src, size_t soff, size_t n,
                                       int first, int last, size_t replicas, int mean);
/* dst[doff + i] = acc[i] (divided by replicas when mean), i < n, on ctx's queue. */
clopt_status clopt__ocl_group_store(clopt_context *ctx, clopt_dtype dtype, void *dst, size_t doff,
                                    const void *acc, size_t n, size_t replicas, int mean);

#endif
