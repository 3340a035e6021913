/* clopt: experimental API. Everything here may change or disappear in any release, minor ones
 * included; it is not part of the stable API that the version numbers promise. It exists for
 * clopt's own tools and tests (`clopt bench`) and for the curious. Not included by clopt.h. */
#ifndef CLOPT_EXPERIMENTAL_H
#define CLOPT_EXPERIMENTAL_H

#include <stdint.h>
#include "clopt/context.h"
#include "clopt/export.h"
#include "clopt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Device memory a context holds, as its backend's buffers (on the host backend, host memory
 * standing in for device memory). */
typedef struct clopt_memory_stats {
    uint64_t device_bytes;      /* bytes of every buffer the context holds now */
    uint64_t device_buffers;    /* how many buffers that is */
    uint64_t peak_device_bytes; /* the largest device_bytes so far */
    uint64_t buffer_creates;    /* buffers created since the context was (ever growing: a step
                                 * that allocates shows here) */
    uint64_t arena_bytes;       /* of device_bytes: arena blocks (variables, gradients, slots) */
    uint64_t arena_blocks;
    uint64_t arena_used_bytes;  /* of arena_bytes: reserved by live variables and slots (sizes
                                 * rounded up to whole chunks), the rest is free for new ones */
    uint64_t host_reads;        /* reads from device memory to the host since the context was
                                 * (each one waits for the device: a step that reads shows here) */
} clopt_memory_stats;

/* Fills *out with the context's current memory accounting. Returns CLOPT_OK, or
 * CLOPT_ERR_INVALID_ARGUMENT when ctx or out is NULL. Not thread-safe with other calls on the
 * context. Experimental. */
CLOPT_API clopt_status clopt_context_memory_stats(const clopt_context *ctx,
                                                  clopt_memory_stats *out);

/* ---- Kernel tuning (docs in README.md, "Tuning kernels") ----
 *
 * The shape of clopt's fused launches. A launch's unit of work (a CPU work-item or a work-group)
 * is a block of block_chunks chunks of 256 elements of one variable; a plan with more than
 * max_blocks * block_chunks chunks gets larger blocks (ceil(chunks / max_blocks) chunks). form
 * picks the kernels' form: one work-item looping over its block (CLOPT_KERNEL_FORM_LOOP, the
 * default on a CPU device) or a work-group of 256 work-items a chunk at a time
 * (CLOPT_KERNEL_FORM_GROUP, the default elsewhere); it is a -D build option (part of the kernel
 * cache key), the block shape is data of each launch's segment table. The chunk itself (256
 * elements, also the work-group size of the group form) is fixed: the arena's layout is in
 * chunks. Element-wise updates give the same bits for every valid set; a reduction (norm
 * clipping, Lamb's and Muon's norms) adds its chunks within a block, then the blocks in order,
 * so its sums depend on the block shape (not on the form). The host backend follows the same
 * block order, so it agrees with OpenCL for any set. */
enum {
    CLOPT_KERNEL_FORM_AUTO = 0,  /* LOOP on a CPU device whose memory is the host's, else GROUP */
    CLOPT_KERNEL_FORM_GROUP = 1,
    CLOPT_KERNEL_FORM_LOOP = 2
};
#define CLOPT_KERNEL_BLOCK_CHUNKS_MIN 1
#define CLOPT_KERNEL_BLOCK_CHUNKS_MAX 1024
#define CLOPT_KERNEL_MAX_BLOCKS_MIN 16
#define CLOPT_KERNEL_MAX_BLOCKS_MAX 1048576
/* item_blocks: blocks per unit of work (one CPU work-item or one work-group runs that many
 * consecutive blocks, one after another; ITEM_LOOP in cl/common.cl). Many small variables make
 * one block each; several per unit spread the per-unit costs (the unit's start, the segment
 * lookup) over more elements. A -D build option (part of the kernel cache key); it changes no
 * block and no sum order, so every value gives the same bits. 0 means the default, 1. */
#define CLOPT_KERNEL_ITEM_BLOCKS_MIN 0
#define CLOPT_KERNEL_ITEM_BLOCKS_MAX 64

typedef struct clopt_kernel_params {
    int block_chunks; /* 1..1024; default 16 */
    int max_blocks;   /* 16..1048576; default 4096 */
    int form;         /* CLOPT_KERNEL_FORM_*; default AUTO */
    int item_blocks;  /* 0..64 (0: 1); default 1 */
} clopt_kernel_params;

/* The built-in defaults (today's shapes). */
CLOPT_API void clopt_kernel_params_default(clopt_kernel_params *out);

/* Checks a parameter set: CLOPT_OK, or CLOPT_ERR_INVALID_ARGUMENT with a message naming the
 * field and its range (through ctx when ctx is not NULL). */
CLOPT_API clopt_status clopt_kernel_params_check(clopt_context *ctx,
                                                 const clopt_kernel_params *p);

/* Sets the context's parameters, overriding the tuning database. Optimizers built afterwards
 * use them (one built earlier keeps its block shape; kernels compiled later take the form).
 * Out of range: CLOPT_ERR_INVALID_ARGUMENT, nothing changes. */
CLOPT_API clopt_status clopt_context_set_kernel_params(clopt_context *ctx,
                                                       const clopt_kernel_params *p);

/* The context's parameters in force (looked up in the tuning database on first use) and, when
 * origin is not NULL, a line saying where they came from (the database file and entry, or
 * "built-in defaults" and why no entry was used); valid until the context's next call. */
CLOPT_API clopt_status clopt_context_kernel_params(clopt_context *ctx, clopt_kernel_params *out,
                                                   const char **origin);

/* Identity of the context's device as the tuning database matches it: vendor, device type
 * ("cpu", "gpu", "accelerator", "host"), device name, driver version. Strings owned by the
 * context. */
typedef struct clopt_device_identity {
    const char *vendor, *type, *device, *driver;
} clopt_device_identity;
CLOPT_API clopt_status clopt_context_device_identity(clopt_context *ctx,
                                                     clopt_device_identity *out);

/* The user tuning database's path: CLOPT_TUNING_DB when set ("off": none, returns ""), else
 * <cache directory>/tuning.json (CLOPT_CACHE_DIR, XDG_CACHE_HOME/clopt, ~/.cache/clopt).
 * Malloc'd; NULL out of memory. */
CLOPT_API char *clopt_tuning_db_path(void);

/* CLBlast's GEMM parameters (Muon's Newton-Schulz products on OpenCL) that the tuning database
 * gives for the context's device (`clopt tune --gemm`), looked up and handed to CLBlast
 * (CLBlastOverrideParameters) on the first call of this or when an optimizer that multiplies
 * matrices is built. *params: "Kernel/precision: NAME=VALUE ...; ..." ("" when the database has
 * none and CLBlast uses its own); *origin (when not NULL): the database entry, or why none was
 * used, followed by "; not applied: REASON" when they could not be handed to CLBlast (the host
 * backend, a CLBlast that refused them). CLBlast keeps such parameters per device for the whole process,
 * so they hold for every context on the device. Strings owned by the context. */
CLOPT_API clopt_status clopt_context_gemm_params(clopt_context *ctx, const char **params,
                                                 const char **origin);

/* Makes the context skip the tuning database's GEMM entries: it hands CLBlast nothing, so its
 * GEMMs run with the parameters CLBlast holds for the device (its own defaults, unless another
 * context on the same cl_device_id handed it an entry: CLBlast keys overrides by device, for the
 * whole process). Call before building an optimizer that multiplies matrices and before
 * clopt_context_gemm_params (which then reports "" and says why). `clopt bench --gemm-pair`
 * uses it for its untuned side, on a second device. Returns CLOPT_OK (also when called again),
 * CLOPT_ERR_INVALID_ARGUMENT (NULL), CLOPT_ERR_BAD_STATE (the entry was already looked up and
 * handed to CLBlast, which cannot take it back; nothing changes) or CLOPT_ERR_OUT_OF_MEMORY. */
CLOPT_API clopt_status clopt_context_gemm_keep_defaults(clopt_context *ctx);

#ifdef __cplusplus
}
#endif
#endif
