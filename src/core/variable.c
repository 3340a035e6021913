/* Variables: named, shaped sub-allocations of the context's arenas. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core_internal.h"

size_t clopt_dtype_size(clopt_dtype dtype) {
    switch (dtype) {
    case CLOPT_FLOAT32: return 4;
    case CLOPT_FLOAT64: return 8;
    case CLOPT_FLOAT16:
    case CLOPT_BFLOAT16: return 2;
    }
    return 0;
}

static const char *const dtype_names[] = {"float32", "float64", "float16", "bfloat16"};

const char *clopt_dtype_name(clopt_dtype dtype) {
    return clopt_dtype_size(dtype) ? dtype_names[dtype] : NULL;
}

clopt_status clopt_dtype_from_name(const char *name, clopt_dtype *out) {
    if (!name || !out) return CLOPT_ERR_INVALID_ARGUMENT;
    for (int i = 0; i < 4; i++)
        if (strcmp(name, dtype_names[i]) == 0) {
            *out = (clopt_dtype)i;
            return CLOPT_OK;
        }
    return CLOPT_ERR_INVALID_ARGUMENT;
}

static clopt_status list_push(clopt_context *ctx, clopt_variable *v) {
    if (clopt__handle_add(v) != 0)
        return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "variable '%s': out of host memory",
                           v->name);
    v->next = ctx->vars;
    if (ctx->vars) ctx->vars->prev = v;
    ctx->vars = v;
    return CLOPT_OK;
}

static clopt_status check_shape(clopt_context *ctx, const char *name, int ndim,
                                const int64_t *shape, int64_t *size) {
    if (ndim < 0 || ndim > CLOPT_MAX_NDIM)
        return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT,
                           "variable '%s': ndim %d is outside [0, %d]", name, ndim,
                           CLOPT_MAX_NDIM);
    if (ndim > 0 && !shape)
        return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT, "variable '%s': shape is NULL",
                           name);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1)
            return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT,
                               "variable '%s': dimension %d has size %lld (must be >= 1)", name,
                               i, (long long)shape[i]);
        if (shape[i] > CLOPT__MAX_ELEMENTS / n)
            return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT,
                               "variable '%s': dimensions 0 to %d hold more than 2^40 elements "
                               "(the most a variable may have): dimension %d has size %lld after "
                               "%lld elements",
                               name, i, i, (long long)shape[i], (long long)n);
        n *= shape[i];
    }
    *size = n;
    return CLOPT_OK;
}

static clopt_status variable_new(clopt_context *ctx, const char *name, clopt_dtype dtype,
                                 int ndim, const int64_t *shape, clopt_variable **out) {
    if (!name) name = "variable";
    if (!clopt_dtype_size(dtype))
        return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT, "variable '%s': invalid dtype %d",
                           name, (int)dtype);
    int64_t size = 0;
    clopt_status st = check_shape(ctx, name, ndim, shape, &size);
    if (st != CLOPT_OK) return st;
    clopt_variable *v = calloc(1, sizeof *v);
    if (!v || !(v->name = clopt__strdup(name))) {
        free(v);
        return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "variable '%s': out of host memory",
                           name);
    }
    v->ctx = ctx;
    v->dtype = dtype;
    v->ndim = ndim;
    if (ndim) memcpy(v->shape, shape, (size_t)ndim * sizeof *shape);
    v->size = size;
    *out = v;
    return CLOPT_OK;
}

clopt_status clopt_variable_create(clopt_context *ctx, const char *name, clopt_dtype dtype,
                                   int ndim, const int64_t *shape, const void *init,
                                   clopt_variable **out) {
    if (!ctx) return CLOPT_ERR_INVALID_ARGUMENT;
    if (!out)
        return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT, "clopt_variable_create: out is NULL");
    clopt_variable *v;
    clopt_status st = variable_new(ctx, name, dtype, ndim, shape, &v);
    if (st != CLOPT_OK) return st;
    size_t esize = clopt_dtype_size(dtype);
    size_t bytes = clopt__pad_bytes((size_t)v->size, esize);
    size_t off = 0;
    st = clopt__arena_alloc(ctx, bytes, clopt__chunk_bytes(esize), 0, &v->block, &off);
    v->offset = off / esize;
    v->padded = bytes / esize;
    if (st == CLOPT_ERR_OUT_OF_MEMORY) /* the backend's message does not name the variable */
        clopt__fail(ctx, st, "variable '%s' (%lld elements of %s, %zu bytes): %s", v->name,
                    (long long)v->size, clopt_dtype_name(dtype), bytes,
                    clopt_context_last_error(ctx));
    if (st == CLOPT_OK && init)
        st = ctx->ops->write(ctx, v->block->buf, off, init, (size_t)v->size * esize);
    if (st == CLOPT_OK) st = list_push(ctx, v);
    if (st != CLOPT_OK) {
        if (v->block) clopt__arena_free(ctx, v->block, off, bytes);
        free(v->name);
        free(v);
        return st;
    }
    *out = v;
    return CLOPT_OK;
}

clopt_status clopt__variable_view(clopt_context *ctx, const char *name, clopt_dtype dtype,
                                  int ndim, const int64_t *shape, clopt__arena_block *block,
                                  size_t offset, clopt_variable **out) {
    clopt_variable *v;
    clopt_status st = variable_new(ctx, name, dtype, ndim, shape, &v);
    if (st != CLOPT_OK) return st;
    v->block = block;
    v->offset = offset;
    v->padded = clopt__pad_bytes((size_t)v->size, clopt_dtype_size(dtype)) /
                clopt_dtype_size(dtype);
    v->owned_by_optimizer = 1;
    if ((st = list_push(ctx, v)) != CLOPT_OK) {
        free(v->name);
        free(v);
        return st;
    }
    *out = v;
    return CLOPT_OK;
}

void clopt__variable_free(clopt_variable *v, int release_memory) {
    clopt_context *ctx = v->ctx;
    clopt__handle_remove(v);
    if (v->prev) v->prev->next = v->next;
    else ctx->vars = v->next;
    if (v->next) v->next->prev = v->prev;
    if (release_memory && !v->owned_by_optimizer) {
        size_t esize = clopt_dtype_size(v->dtype);
        clopt__arena_free(ctx, v->block, v->offset * esize, v->padded * esize);
    }
    free(v->name);
    free(v);
}

clopt_status clopt_variable_release(clopt_variable *v) {
    if (!clopt__handle_live(v)) return CLOPT_ERR_INVALID_ARGUMENT; /* NULL, or already gone */
    clopt_context *ctx = v->ctx;
    if (v->owned_by_optimizer)
        return clopt__fail(ctx, CLOPT_ERR_BAD_STATE,
                           "clopt_variable_release: '%s' is an optimizer's own variable; it goes "
                           "with the optimizer",
                           v->name);
    /* An optimizer built with it would read freed memory at its next step. */
    for (int i = 0; i < ctx->nlayers; i++) {
        const char *user = ctx->layers[i].hooks->variable_user(ctx, ctx->layers[i].data, v);
        if (user)
            return clopt__fail(ctx, CLOPT_ERR_BAD_STATE,
                               "clopt_variable_release: variable '%s' is in use by optimizer "
                               "'%s', which was built with it: destroy the optimizer first (the "
                               "variable is kept)",
                               v->name, user);
    }
    for (int i = 0; i < ctx->nlayers; i++)
        ctx->layers[i].hooks->forget_variable(ctx, ctx->layers[i].data, v);
    clopt__variable_free(v, 1);
    return CLOPT_OK;
}

void clopt_variable_destroy(clopt_variable *v) { (void)clopt_variable_release(v); }

static clopt_status check_io(const clopt_variable *v, const void *p, size_t nbytes,
                             const char *what) {
    if (!clopt__handle_live(v)) return CLOPT_ERR_INVALID_ARGUMENT; /* NULL or destroyed */
    if (!p)
        return clopt__fail(v->ctx, CLOPT_ERR_INVALID_ARGUMENT, "%s '%s': buffer is NULL", what,
                           v->name);
    size_t want = (size_t)v->size * clopt_dtype_size(v->dtype);
    if (nbytes != want)
        return clopt__fail(v->ctx, CLOPT_ERR_SHAPE_MISMATCH,
                           "%s '%s': %zu bytes given, the variable holds %zu (%lld x %s)", what,
                           v->name, nbytes, want, (long long)v->size, clopt_dtype_name(v->dtype));
    return CLOPT_OK;
}

clopt_status clopt_variable_write(clopt_variable *v, const void *src, size_t nbytes) {
    clopt_status st = check_io(v, src, nbytes, "clopt_variable_write");
    if (st != CLOPT_OK) return st;
    size_t esize = clopt_dtype_size(v->dtype);
    return v->ctx->ops->write(v->ctx, v->block->buf, v->offset * esize, src, nbytes);
}

clopt_status clopt_variable_read(const clopt_variable *v, void *dst, size_t nbytes) {
    clopt_status st = check_io(v, dst, nbytes, "clopt_variable_read");
    if (st != CLOPT_OK) return st;
    size_t esize = clopt_dtype_size(v->dtype);
    return v->ctx->ops->read(v->ctx, v->block->buf, v->offset * esize, dst, nbytes);
}

int clopt__same_shape(const clopt_variable *a, const clopt_variable *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

const char *clopt__shape_str(const clopt_variable *v, char *buf, size_t n) {
    size_t used = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < v->ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%lld", i ? ", " : "",
                                 (long long)v->shape[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
    return buf;
}

static clopt_status assign_op(clopt_variable *dst, const clopt_variable *src,
                              clopt__assign_op op, const char *fn) {
    if (!clopt__handle_live(dst)) return CLOPT_ERR_INVALID_ARGUMENT; /* NULL or destroyed */
    clopt_context *ctx = dst->ctx;
    if (!clopt__handle_live(src))
        return clopt__fail(ctx, CLOPT_ERR_INVALID_ARGUMENT, "%s: src is NULL or destroyed", fn);
    if (src->ctx != ctx)
        return clopt__fail(ctx, CLOPT_ERR_CONTEXT_MISMATCH,
                           "%s: '%s' and '%s' belong to different contexts", fn, dst->name,
                           src->name);
    char a[128], b[128];
    if (!clopt__same_shape(dst, src))
        return clopt__fail(ctx, CLOPT_ERR_SHAPE_MISMATCH, "%s: '%s' has shape %s, '%s' has %s",
                           fn, dst->name, clopt__shape_str(dst, a, sizeof a), src->name,
                           clopt__shape_str(src, b, sizeof b));
    if (dst->dtype != src->dtype)
        return clopt__fail(ctx, CLOPT_ERR_DTYPE_MISMATCH, "%s: '%s' is %s, '%s' is %s", fn,
                           dst->name, clopt_dtype_name(dst->dtype), src->name,
                           clopt_dtype_name(src->dtype));
    return ctx->ops->assign(ctx, op, dst->dtype, dst->block->buf, dst->offset, src->block->buf,
                            src->offset, (size_t)dst->size);
}

clopt_status clopt_variable_assign(clopt_variable *d, const clopt_variable *s) {
    return assign_op(d, s, CLOPT__ASSIGN, "clopt_variable_assign");
}
clopt_status clopt_variable_assign_add(clopt_variable *d, const clopt_variable *s) {
    return assign_op(d, s, CLOPT__ASSIGN_ADD, "clopt_variable_assign_add");
}
clopt_status clopt_variable_assign_sub(clopt_variable *d, const clopt_variable *s) {
    return assign_op(d, s, CLOPT__ASSIGN_SUB, "clopt_variable_assign_sub");
}

const char *clopt_variable_name(const clopt_variable *v) { return v ? v->name : NULL; }
clopt_dtype clopt_variable_dtype(const clopt_variable *v) { return v ? v->dtype : CLOPT_FLOAT32; }
int clopt_variable_ndim(const clopt_variable *v) { return v ? v->ndim : -1; }
const int64_t *clopt_variable_shape(const clopt_variable *v) { return v ? v->shape : NULL; }
int64_t clopt_variable_size(const clopt_variable *v) { return v ? v->size : -1; }
clopt_context *clopt_variable_context(const clopt_variable *v) { return v ? v->ctx : NULL; }
