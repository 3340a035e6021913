/* Error messages, strings, hashing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core_internal.h"

char *clopt__strdup(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

char *clopt__vformat(const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) return NULL;
    char *s = malloc((size_t)n + 1);
    if (s) vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

char *clopt__format(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = clopt__vformat(fmt, ap);
    va_end(ap);
    return s;
}

clopt_status clopt__fail(clopt_context *ctx, clopt_status st, const char *fmt, ...) {
    if (!ctx) return st;
    va_list ap;
    va_start(ap, fmt);
    char *msg = clopt__vformat(fmt, ap);
    va_end(ap);
    free(ctx->error);
    ctx->error = msg;
    if (st != CLOPT_ERR_OPENCL && st != CLOPT_ERR_BUILD_FAILED) ctx->cl_error = 0;
    return st;
}

void clopt__clear_error(clopt_context *ctx) {
    free(ctx->error);
    ctx->error = NULL;
    ctx->cl_error = 0;
}

uint64_t clopt__hash64(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

void clopt_free(void *ptr) { free(ptr); }

char *clopt__cache_dir(void) {
    const char *d = getenv("CLOPT_CACHE_DIR");
    if (d && *d) return clopt__strdup(strcmp(d, "off") == 0 ? "" : d);
    const char *x = getenv("XDG_CACHE_HOME");
    if (x && *x) return clopt__format("%s/clopt", x);
    const char *h = getenv("HOME");
    if (h && *h) return clopt__format("%s/.cache/clopt", h);
    return clopt__strdup("");
}
