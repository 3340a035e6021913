/* A context's device side as its backend sees it (backend_internal.h, the end): the backend's
 * state and last OpenCL error, and device memory accounting for clopt_context_memory_stats
 * (clopt/experimental.h): the backends count their buffers and reads; the arena's share is read
 * off its blocks. */
#include "clopt/experimental.h"
#include "core_internal.h"

clopt_status clopt_context_memory_stats(const clopt_context *ctx, clopt_memory_stats *out) {
    if (!ctx || !out) return CLOPT_ERR_INVALID_ARGUMENT;
    clopt_memory_stats m = {0};
    m.device_bytes = ctx->mem_bytes;
    m.device_buffers = ctx->mem_buffers;
    m.peak_device_bytes = ctx->mem_peak_bytes;
    m.buffer_creates = ctx->mem_creates;
    m.host_reads = ctx->mem_reads;
    for (const clopt__arena_block *b = ctx->blocks; b; b = b->next) {
        size_t free_bytes = 0;
        for (size_t i = 0; !b->dedicated && i < b->nfree; i++) free_bytes += b->free[i].bytes;
        m.arena_blocks++;
        m.arena_bytes += b->bytes;
        m.arena_used_bytes += b->bytes - free_bytes;
    }
    *out = m;
    return CLOPT_OK;
}

const clopt__backend_ops *clopt__backend_of(const clopt_context *ctx) { return ctx->ops; }
void *clopt__backend_state(const clopt_context *ctx) { return ctx->state; }
void clopt__backend_set_state(clopt_context *ctx, void *state) { ctx->state = state; }
void clopt__set_cl_error(clopt_context *ctx, int err) { ctx->cl_error = err; }

void clopt__mem_created(clopt_context *ctx, size_t bytes) {
    ctx->mem_bytes += bytes;
    ctx->mem_buffers++;
    ctx->mem_creates++;
    if (ctx->mem_bytes > ctx->mem_peak_bytes) ctx->mem_peak_bytes = ctx->mem_bytes;
}

void clopt__mem_released(clopt_context *ctx, size_t bytes) {
    ctx->mem_bytes -= bytes < ctx->mem_bytes ? bytes : ctx->mem_bytes;
    if (ctx->mem_buffers) ctx->mem_buffers--;
}

void clopt__mem_read(clopt_context *ctx) { ctx->mem_reads++; }

clopt_context *clopt__variable_place(const clopt_variable *v, void **buf, size_t *off_bytes) {
    *buf = v->block->buf;
    *off_bytes = v->offset * clopt_dtype_size(v->dtype);
    return v->ctx;
}
