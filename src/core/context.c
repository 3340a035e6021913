/* Contexts: backend choice, error state, lifetime of everything made in them. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "core_internal.h"

static _Thread_local char create_error[1024];

const char *clopt_last_create_error(void) { return create_error; }

void clopt__create_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(create_error, sizeof create_error, fmt, ap);
    va_end(ap);
}

/* The arena block size: CLOPT_ARENA_MB (a whole number of MiB in [1, 1048576]) or 64 MiB.
 * Returns 0 after writing the message when the variable is set to anything else. */
static size_t arena_block_bytes(void) {
    const char *s = getenv("CLOPT_ARENA_MB");
    if (!s || !*s) return (size_t)64 << 20;
    char *end;
    long long mb = strtoll(s, &end, 10);
    if (*end || end == s || mb < 1 || mb > 1048576 || (size_t)mb > SIZE_MAX >> 20) {
        clopt__create_fail("CLOPT_ARENA_MB='%s' is not a whole number of MiB in [1, 1048576]", s);
        return 0;
    }
    return (size_t)mb << 20;
}

clopt_status clopt_context_create(const char *device, clopt_context **out) {
    create_error[0] = '\0';
    if (!out) {
        snprintf(create_error, sizeof create_error, "clopt_context_create: out is NULL");
        return CLOPT_ERR_INVALID_ARGUMENT;
    }
    if (!device) {
        const char *env = getenv("CLOPT_DEVICE");
        if (env && *env) device = env;
    }
    size_t block_bytes = arena_block_bytes();
    if (!block_bytes) return CLOPT_ERR_BAD_VALUE;
    clopt_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return CLOPT_ERR_OUT_OF_MEMORY;
    ctx->block_bytes = block_bytes;
    ctx->ops = (device && strcasecmp(device, "host") == 0) ? &clopt__host_backend
                                                             : &clopt__opencl_backend;
    clopt_status st = ctx->ops->open(ctx, device, &ctx->state);
    if (st != CLOPT_OK) {
        snprintf(create_error, sizeof create_error, "%s",
                 ctx->error ? ctx->error : clopt_status_string(st));
        free(ctx->error);
        free(ctx);
        return st;
    }
    clopt__clear_error(ctx);
    if (clopt__handle_add(ctx) != 0) {
        ctx->ops->close(ctx->state);
        free(ctx);
        return CLOPT_ERR_OUT_OF_MEMORY;
    }
    *out = ctx;
    return CLOPT_OK;
}

void clopt_context_destroy(clopt_context *ctx) {
    if (!clopt__handle_live(ctx)) return; /* NULL, or destroyed already */
    clopt__handle_remove(ctx);
    if (ctx->ops->finish) ctx->ops->finish(ctx);
    for (int i = ctx->nlayers; i-- > 0;) ctx->layers[i].hooks->destroy(ctx, ctx->layers[i].data);
    while (ctx->vars) clopt__variable_free(ctx->vars, 0);
    for (clopt__arena_block *b = ctx->blocks, *next; b; b = next) {
        next = b->next;
        ctx->ops->buffer_release(ctx, b->buf);
        free(b->free);
        free(b);
    }
    ctx->ops->close(ctx->state);
    free(ctx->error);
    free(ctx->kparams_origin);
    free(ctx->gemm_params);
    free(ctx->gemm_origin);
    free(ctx);
}

void **clopt__context_layer(clopt_context *ctx, const clopt__context_hooks *hooks) {
    for (int i = 0; i < ctx->nlayers; i++)
        if (ctx->layers[i].hooks == hooks) return &ctx->layers[i].data;
    if (ctx->nlayers == CLOPT__MAX_LAYERS) return NULL;
    ctx->layers[ctx->nlayers].hooks = hooks;
    ctx->layers[ctx->nlayers].data = NULL;
    return &ctx->layers[ctx->nlayers++].data;
}

const char *clopt_context_last_error(const clopt_context *ctx) {
    if (!ctx) return "clopt_context_last_error: ctx is NULL";
    return ctx->error ? ctx->error : "";
}

int clopt_context_last_cl_error(const clopt_context *ctx) { return ctx ? ctx->cl_error : 0; }

const char *clopt_context_device_name(const clopt_context *ctx) {
    return ctx ? ctx->ops->device_name(ctx->state) : "";
}

const char *clopt_context_backend_name(const clopt_context *ctx) {
    return ctx ? ctx->ops->name : "";
}

clopt_status clopt_finish(clopt_context *ctx) {
    if (!ctx) return CLOPT_ERR_INVALID_ARGUMENT;
    return ctx->ops->finish(ctx);
}
