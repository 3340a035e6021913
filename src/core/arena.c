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

/* Where `bytes` aligned to `align` fit in free range r, or -1. */
static long fit_in(const struct clopt__free_range *r, size_t bytes, size_t align) {
    const size_t a = (r->off + align - 1) / align * align;
    return a - r->off + bytes <= r->bytes ? (long)a : -1;
}

/* Makes room for one more free range at index i (the ranges from i on move up). */
static int insert_range(clopt__arena_block *b, size_t i, size_t off, size_t bytes) {
    if (b->nfree == b->capfree) {
        size_t cap = b->capfree ? 2 * b->capfree : 4;
        struct clopt__free_range *f = realloc(b->free, cap * sizeof *f);
        if (!f) return -1;
        b->free = f;
        b->capfree = cap;
    }
    memmove(&b->free[i + 1], &b->free[i], (b->nfree - i) * sizeof *b->free);
    b->free[i] = (struct clopt__free_range){off, bytes};
    b->nfree++;
    return 0;
}

/* Takes `bytes` at an `align`ed offset from the first free range that holds them; a gap before
 * them stays free. 0 when none does (or no host memory to split a range). */
static int take_first_fit(clopt__arena_block *b, size_t bytes, size_t align, size_t *off) {
    for (size_t i = 0; i < b->nfree; i++) {
        const long a = fit_in(&b->free[i], bytes, align);
        if (a < 0) continue;
        struct clopt__free_range *r = &b->free[i];
        const size_t gap = (size_t)a - r->off, rest = r->bytes - gap - bytes;
        if (gap && rest) {
            if (insert_range(b, i + 1, (size_t)a + bytes, rest) != 0) return 0;
            b->free[i].bytes = gap;
        } else if (gap) {
            r->bytes = gap;
        } else if (rest) {
            r->off += bytes;
            r->bytes = rest;
        } else {
            memmove(&b->free[i], &b->free[i + 1], (b->nfree - i - 1) * sizeof *b->free);
            b->nfree--;
        }
        *off = (size_t)a;
        return 1;
    }
    return 0;
}

clopt_status clopt__arena_alloc(clopt_context *ctx, size_t bytes, size_t align, int dedicated,
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
                if (fit_in(&c->free[i], bytes, align) >= 0) fit = c; /* keep the oldest */
        }
        if (fit && !take_first_fit(fit, bytes, align, &off))
            return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "arena: out of host memory");
        if (!fit) {
            size_t sz = bytes > ctx->block_bytes ? bytes : ctx->block_bytes;
            if ((st = block_new(ctx, sz, 0, &fit)) != CLOPT_OK) return st;
            take_first_fit(fit, bytes, align, &off); /* offset 0 of a new block */
        }
        b = fit;
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
    if (insert_range(b, i, off, bytes) != 0) return; /* it leaks until the context goes */
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
