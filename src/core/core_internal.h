/* The core's internals: contexts, the arena, variables; for the core and the layers above it
 * (src/optim, src/io). Backends see only the backend interface (backend_internal.h), which this
 * header includes. Never installed. */
#ifndef CLOPT_CORE_INTERNAL_H
#define CLOPT_CORE_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include "clopt/context.h"
#include "clopt/experimental.h"
#include "clopt/variable.h"
#include "../backend/backend_internal.h"

/* A free range of an arena block, in bytes. */
struct clopt__free_range {
    size_t off, bytes;
};

/* One large device buffer that variables are carved from (first fit, coalescing free list). */
typedef struct clopt__arena_block {
    void *buf;               /* backend buffer */
    size_t bytes;
    struct clopt__free_range *free; /* sorted by offset */
    size_t nfree, capfree;
    size_t live;             /* live sub-allocations */
    int dedicated;           /* owned by one owner (an optimizer's slots), freed with it */
    struct clopt__arena_block *next;
} clopt__arena_block;

/* A layer above the core that keeps objects per context (the optimizer layer: its optimizers)
 * registers hooks, which the core calls and through which alone it reaches the layer. */
typedef struct clopt__context_hooks {
    /* The name of the layer's object that still uses variable `v` (an optimizer built with it),
     * or NULL: such a variable is not destroyed (clopt_variable_release). */
    const char *(*variable_user)(const clopt_context *ctx, void *data, const clopt_variable *v);
    /* Variable `v` is being destroyed (its handle address may come back for another). */
    void (*forget_variable)(clopt_context *ctx, void *data, const clopt_variable *v);
    /* The context is being destroyed: free what the layer made in it (the variables and arena
     * blocks are still there). */
    void (*destroy)(clopt_context *ctx, void *data);
} clopt__context_hooks;

#define CLOPT__MAX_LAYERS 4

struct clopt_context {
    const clopt__backend_ops *ops;
    void *state;               /* the backend's */
    clopt__arena_block *blocks;
    size_t block_bytes;        /* default size of a shared arena block */
    char *error;               /* last error message, owned */
    int cl_error;
    struct clopt_variable *vars;    /* live variables (intrusive list) */
    struct {
        const clopt__context_hooks *hooks;
        void *data; /* the layer's own (the optimizer layer's: its list of optimizers) */
    } layers[CLOPT__MAX_LAYERS];
    int nlayers;
    /* Device memory accounting (clopt_context_memory_stats in clopt/experimental.h), kept by
     * the backends through clopt__mem_created/_released/_read (memory.c). */
    size_t mem_bytes, mem_peak_bytes, mem_buffers;
    uint64_t mem_creates;
    uint64_t mem_reads; /* backend reads (device to host), counted by the backends' read */
    /* Kernel parameters (clopt_kernel_params, tuning.c): 0 not looked up yet, 1 from the tuning
     * database or the defaults, 2 set by clopt_context_set_kernel_params. */
    int kparams_state;
    clopt_kernel_params kparams;
    char *kparams_origin;
    /* CLBlast's GEMM parameters from the tuning database (tuning_gemm.c): 0 not looked up yet,
     * 1 looked up and handed to the backend, 2 skipped (clopt_context_gemm_keep_defaults). gemm_params: "Kernel/precision: NAME=V ...; ..."
     * ("" when none); gemm_origin: the entry, or why none. */
    int gemm_state;
    char *gemm_params, *gemm_origin;
};

/* The tuning database (tuning.c): one kind of entry's reader returns 1 when it read `e` into
 * `out`, 0 when `e` is of another kind (skipped silently), -1 with the reason in `why` when `e` is
 * bad (skipped, noted in the origin line). */
struct json_t;
typedef int (*clopt__tuning_parse)(struct json_t *e, void *out, char *why, size_t n);
char *clopt__tuning_lookup(clopt_context *ctx, clopt__tuning_parse parse, void *out,
                           const char *fallback, int *found);
/* Looks the context's device up for CLBlast GEMM parameters (once per context) and hands them
 * to the backend (tuning_gemm.c). Called when an optimizer that multiplies matrices is built. */
void clopt__gemm_tuning_apply(clopt_context *ctx);

/* Clears the context's last error message. */
void clopt__clear_error(clopt_context *ctx);

struct clopt_variable {
    clopt_context *ctx;
    char *name;
    clopt_dtype dtype;
    int ndim;
    int64_t shape[CLOPT_MAX_NDIM];
    int64_t size;             /* elements */
    clopt__arena_block *block;
    size_t offset;            /* elements from the block start; a multiple of CLOPT__CHUNK */
    size_t padded;            /* elements reserved: size rounded up to CLOPT__CHUNK */
    int owned_by_optimizer;   /* slot views: not destroyable by the user */
    struct clopt_variable *prev, *next;
};

/* The most elements a variable may have (2^40). */
#define CLOPT__MAX_ELEMENTS ((int64_t)1 << 40)

/* Live handles (handles.c): contexts, variables and optimizers are added when handed out and
 * removed when freed, so that a destroy or call on one that is gone is refused without reading
 * freed memory. add returns 0, or -1 when out of memory. Thread-safe. */
int clopt__handle_add(const void *h);
void clopt__handle_remove(const void *h);
int clopt__handle_live(const void *h);
/* The index of the first of h[0..n) that is neither NULL nor live, or n if none (one lock: a
 * step checks its gradients with it). */
size_t clopt__handles_first_dead(const void *const *h, size_t n);
/* How many handles were removed so far. While it stays the same no handle was freed, so no
 * address checked earlier can have been reused by another object: a step whose handles are
 * those an earlier step checked need not check them again (apply.c). */
uint64_t clopt__handles_epoch(void);

/* Arena: reserves `bytes` (zero-filled) at an offset that is a multiple of `align` (a shared
 * block's first fit; a dedicated block is made for one owner, at offset 0, and freed when its
 * last range is). */
clopt_status clopt__arena_alloc(clopt_context *ctx, size_t bytes, size_t align, int dedicated,
                                clopt__arena_block **block, size_t *off_bytes);
void clopt__arena_free(clopt_context *ctx, clopt__arena_block *block, size_t off_bytes,
                       size_t bytes);

/* A variable's arena range: whole chunks of its dtype, at an offset of whole chunks of its
 * dtype, so that its element offset is a multiple of CLOPT__CHUNK and variables of one dtype
 * created one after another lie end to end (a plan's runs, src/optim/plan.c). */
static inline size_t clopt__chunk_bytes(size_t esize) { return (size_t)CLOPT__CHUNK * esize; }
static inline size_t clopt__pad_bytes(size_t n, size_t esize) {
    const size_t b = n * esize, c = clopt__chunk_bytes(esize);
    return (b + c - 1) / c * c;
}

/* Makes a variable that views `count` elements at `offset` (elements) of an existing block
 * (used for optimizer slots). */
clopt_status clopt__variable_view(clopt_context *ctx, const char *name, clopt_dtype dtype,
                                  int ndim, const int64_t *shape, clopt__arena_block *block,
                                  size_t offset, clopt_variable **out);
/* Frees a variable handle (and its arena range unless it is a view). */
void clopt__variable_free(clopt_variable *v, int release_memory);

/* Leaves the message clopt_last_create_error returns (a layer that opens several contexts: the
 * strategy, src/dist). */
void clopt__create_fail(const char *fmt, ...) CLOPT__PRINTF(1, 2);

int clopt__same_shape(const clopt_variable *a, const clopt_variable *b);
/* "[2, 3]" into buf. */
const char *clopt__shape_str(const clopt_variable *v, char *buf, size_t n);

/* The data slot of the layer with `hooks` on ctx, registering it on first use (its data starts
 * NULL). NULL only if CLOPT__MAX_LAYERS layers are registered already. */
void **clopt__context_layer(clopt_context *ctx, const clopt__context_hooks *hooks);

/* CRC-32C (Castagnoli, as iSCSI and ext4 use it) of n bytes, continuing from `crc` (0 to
 * start): clopt__crc32c(0, "123456789", 9) == 0xe3069283. Thread-safe. */
uint32_t clopt__crc32c(uint32_t crc, const void *data, size_t n);

#endif
