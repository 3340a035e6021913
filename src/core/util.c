/* Error messages, strings, hashing, checksums. */
#include <pthread.h>
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

/* CRC-32C (Castagnoli, reflected polynomial 0x82f63b78), eight bytes per step ("slicing by
 * 8"): table[k][b] is the CRC of byte b followed by k zero bytes. */
static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        crc_table[0][b] = c;
    }
    for (uint32_t b = 0; b < 256; b++)
        for (int k = 1; k < 8; k++)
            crc_table[k][b] = (crc_table[k - 1][b] >> 8) ^ crc_table[0][crc_table[k - 1][b] & 0xff];
}

uint32_t clopt__crc32c(uint32_t crc, const void *data, size_t n) {
    pthread_once(&crc_once, crc_init);
    const unsigned char *p = data;
    uint32_t c = ~crc;
    for (; n >= 8; n -= 8, p += 8) {
        /* bytes in stream order, so the result does not depend on the host's byte order */
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                           (uint32_t)p[3] << 24);
        c = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
            crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^ crc_table[3][p[4]] ^
            crc_table[2][p[5]] ^ crc_table[1][p[6]] ^ crc_table[0][p[7]];
    }
    for (; n; n--, p++) c = (c >> 8) ^ crc_table[0][(c ^ *p) & 0xff];
    return ~c;
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
