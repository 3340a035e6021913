/* Arena storage: variables are first-fit sub-allocations of large backend buffers, so variables
 * created one after another are contiguous and one kernel launch can cover many of them. */
#include <stdlib.h>
#include <string.h>
#include "core_internal.h"

static clopt_status block_new(clopt_context *ctx, size_t bytes, int dedicated,
                              clopt__arena_block **out) {
    clopt__arena_block *b = calloc(1, sizeof *b);
    if (!b) return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "arena: out of host memory");
    clopt_status st = ctx->ops->buffer_create(ctx, bytes, &b->buf);
    if (st != CLOPT_OK) {
        free(b);
        return st;
    }
    b->bytes = bytes;
    b->dedicated = dedicated;
    if (dedicated) {
        /* A dedicated block (an optimizer's slots) is used whole from the first step on: write
         * it now, at build, so that a device that hands out large buffers as fresh pages (POCL:
         * ocl_buffer_create) faults them in here rather than in step 1. */
        st = ctx->ops->fill(ctx, b->buf, CLOPT_FLOAT32, 0, bytes / 4, 0.0);
        if (st != CLOPT_OK) {
            ctx->ops->buffer_release(ctx, b->buf);
            free(b);
            return st;
        }
    } else {
        b->free = malloc(sizeof *b->free);
        if (!b->free) {
            ctx->ops->buffer_release(ctx, b->buf);
            free(b);
            return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "arena: out of host memory");
        }
        b->free[0] = (struct clopt__free_range){0, bytes};
        b->nfree = b->capfree = 1;
    }
    b->next = ctx->blocks;
    ctx->blocks = b;
    *out = b;
    return CLOPT_OK;
}

static int take_first_fit(clopt__arena_block *b, size_t bytes, size_t *off) {
    for (size_t i = 0; i < b->nfree; i++) {
        if (b->free[i].bytes < bytes) continue;
        *off = b->free[i].off;
        b->free[i].off += bytes;
        b->free[i].bytes -= bytes;
        if (b->free[i].bytes == 0) {
            memmove(&b->free[i], &b->free[i + 1], (b->nfree - i - 1) * sizeof *b->free);
            b->nfree--;
        }
        return 1;
    }
    return 0;
}

clopt_status clopt__arena_alloc(clopt_context *ctx, size_t bytes, int dedicated,
                                clopt__arena_block **block, size_t *off_bytes) {
    clopt__arena_block *b = NULL;
    size_t off = 0;
    clopt_status st;
    if (dedicated) {
        if ((st = block_new(ctx, bytes, 1, &b)) != CLOPT_OK) return st;
    } else {
        /* Oldest block first: blocks are pushed at the head, so walk to find the first fit in
         * creation order by preferring the block with the lowest address in the list tail. */
        clopt__arena_block *fit = NULL;
        for (clopt__arena_block *c = ctx->blocks; c; c = c->next) {
            if (c->dedicated) continue;
            for (size_t i = 0; i < c->nfree; i++)
                if (c->free[i].bytes >= bytes) fit = c; /* keep the oldest */
        }
        if (!fit) {
            size_t sz = bytes > ctx->block_bytes ? bytes : ctx->block_bytes;
            if ((st = block_new(ctx, sz, 0, &fit)) != CLOPT_OK) return st;
        }
        b = fit;
        take_first_fit(b, bytes, &off);
        st = ctx->ops->fill(ctx, b->buf, CLOPT_FLOAT32, off / 4, bytes / 4, 0.0);
        if (st != CLOPT_OK) {
            clopt__arena_free(ctx, b, off, bytes);
            return st;
        }
    }
    b->live++;
    *block = b;
    *off_bytes = off;
    return CLOPT_OK;
}

static void block_unlink(clopt_context *ctx, clopt__arena_block *b) {
    for (clopt__arena_block **p = &ctx->blocks; *p; p = &(*p)->next)
        if (*p == b) {
            *p = b->next;
            break;
        }
    ctx->ops->buffer_release(ctx, b->buf);
    free(b->free);
    free(b);
}

void clopt__arena_free(clopt_context *ctx, clopt__arena_block *b, size_t off, size_t bytes) {
    if (b->live) b->live--;
    if (b->dedicated) {
        if (b->live == 0) block_unlink(ctx, b);
        return;
    }
    size_t i = 0;
    while (i < b->nfree && b->free[i].off < off) i++;
    if (b->nfree == b->capfree) {
        size_t cap = b->capfree ? 2 * b->capfree : 4;
        struct clopt__free_range *f = realloc(b->free, cap * sizeof *f);
        if (!f) return; /* the range leaks inside the block until the context goes */
        b->free = f;
        b->capfree = cap;
    }
    memmove(&b->free[i + 1], &b->free[i], (b->nfree - i) * sizeof *b->free);
    b->free[i] = (struct clopt__free_range){off, bytes};
    b->nfree++;
    /* Coalesce with the next, then the previous range. */
    if (i + 1 < b->nfree && b->free[i].off + b->free[i].bytes == b->free[i + 1].off) {
        b->free[i].bytes += b->free[i + 1].bytes;
        memmove(&b->free[i + 1], &b->free[i + 2], (b->nfree - i - 2) * sizeof *b->free);
        b->nfree--;
    }
    if (i > 0 && b->free[i - 1].off + b->free[i - 1].bytes == b->free[i].off) {
        b->free[i - 1].bytes += b->free[i].bytes;
        memmove(&b->free[i], &b->free[i + 1], (b->nfree - i - 1) * sizeof *b->free);
        b->nfree--;
    }
}
