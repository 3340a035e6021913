/* Internals shared by the core, the backends and the optimizer layer. Never installed. */
#ifndef CLOPT_CORE_INTERNAL_H
#define CLOPT_CORE_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include "clopt/context.h"
#include "clopt/variable.h"
#include "../backend/backend_internal.h"

#if defined(__GNUC__)
#define CLOPT__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CLOPT__PRINTF(f, a)
#endif

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
     * the backends' buffer_create and buffer_release through clopt__mem_created/_released. */
    size_t mem_bytes, mem_peak_bytes, mem_buffers;
    uint64_t mem_creates;
    uint64_t mem_reads; /* backend reads (device to host), counted by the backends' read */
};

static inline void clopt__mem_created(clopt_context *ctx, size_t bytes) {
    ctx->mem_bytes += bytes;
    ctx->mem_buffers++;
    ctx->mem_creates++;
    if (ctx->mem_bytes > ctx->mem_peak_bytes) ctx->mem_peak_bytes = ctx->mem_bytes;
}
static inline void clopt__mem_released(clopt_context *ctx, size_t bytes) {
    ctx->mem_bytes -= bytes < ctx->mem_bytes ? bytes : ctx->mem_bytes;
    if (ctx->mem_buffers) ctx->mem_buffers--;
}

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

/* Errors: record the message on the context and return the status. */
clopt_status clopt__fail(clopt_context *ctx, clopt_status st, const char *fmt, ...)
    CLOPT__PRINTF(3, 4);
void clopt__clear_error(clopt_context *ctx);
char *clopt__strdup(const char *s);
char *clopt__vformat(const char *fmt, va_list ap);
char *clopt__format(const char *fmt, ...) CLOPT__PRINTF(1, 2);

/* Arena: reserves `elems` elements of `dtype` (rounded to whole chunks, zero-filled). A dedicated
 * block is made for one owner and freed when its last range is. */
clopt_status clopt__arena_alloc(clopt_context *ctx, size_t bytes, int dedicated,
                                clopt__arena_block **block, size_t *off_bytes);
void clopt__arena_free(clopt_context *ctx, clopt__arena_block *block, size_t off_bytes,
                       size_t bytes);

/* Arena ranges are multiples of this many bytes: a whole number of chunks of the widest dtype,
 * so every variable's element offset is a multiple of CLOPT__CHUNK whatever its dtype. */
#define CLOPT__ALIGN_BYTES (CLOPT__CHUNK * 8)

/* Bytes reserved for `n` elements of `esize` bytes. */
static inline size_t clopt__pad_bytes(size_t n, size_t esize) {
    size_t b = n * esize;
    return (b + CLOPT__ALIGN_BYTES - 1) / CLOPT__ALIGN_BYTES * CLOPT__ALIGN_BYTES;
}

/* Makes a variable that views `count` elements at `offset` (elements) of an existing block
 * (used for optimizer slots). */
clopt_status clopt__variable_view(clopt_context *ctx, const char *name, clopt_dtype dtype,
                                  int ndim, const int64_t *shape, clopt__arena_block *block,
                                  size_t offset, clopt_variable **out);
/* Frees a variable handle (and its arena range unless it is a view). */
void clopt__variable_free(clopt_variable *v, int release_memory);

int clopt__same_shape(const clopt_variable *a, const clopt_variable *b);
/* "[2, 3]" into buf. */
const char *clopt__shape_str(const clopt_variable *v, char *buf, size_t n);

/* The data slot of the layer with `hooks` on ctx, registering it on first use (its data starts
 * NULL). NULL only if CLOPT__MAX_LAYERS layers are registered already. */
void **clopt__context_layer(clopt_context *ctx, const clopt__context_hooks *hooks);

/* Element i of an array of `dtype` as a double, and the reverse (rounding to nearest even). */
double clopt__elem_load(const void *base, clopt_dtype dtype, size_t i);
void clopt__elem_store(void *base, clopt_dtype dtype, size_t i, double x);

/* 64-bit FNV-1a, for cache keys. */
uint64_t clopt__hash64(uint64_t h, const void *data, size_t n);
#define CLOPT__HASH_INIT 1469598103934665603ULL

#endif
