/* Device memory accounting for clopt_context_memory_stats (clopt/experimental.h): the backends
 * count their buffers (clopt__mem_created/_released); the arena's share is read off its blocks. */
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
