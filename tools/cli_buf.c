/* A growable text buffer, and reading whole files. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli_internal.h"

static int reserve(cli_buf *b, size_t more) {
    if (b->oom) return 0;
    if (b->n + more + 1 <= b->cap) return 1;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + more + 1) cap *= 2;
    char *p = realloc(b->s, cap);
    if (!p) {
        b->oom = 1;
        return 0;
    }
    b->s = p;
    b->cap = cap;
    return 1;
}

void cli_buf_put(cli_buf *b, const char *s, size_t n) {
    if (!reserve(b, n)) return;
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

void cli_buf_puts(cli_buf *b, const char *s) { cli_buf_put(b, s, strlen(s)); }

void cli_buf_printf(cli_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)n;
}

void cli_buf_put_jstring(cli_buf *b, const char *s) {
    cli_buf_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            cli_buf_put(b, esc, 2);
        } else if (c < 0x20) {
            cli_buf_printf(b, "\\u%04x", c);
        } else {
            cli_buf_put(b, (const char *)&c, 1);
        }
    }
    cli_buf_put(b, "\"", 1);
}

void cli_buf_free(cli_buf *b) {
    free(b->s);
    memset(b, 0, sizeof *b);
}

int cli_read_file(const char *path, char **data, size_t *len) {
    int is_stdin = strcmp(path, "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) return -1;
    size_t cap = 1 << 16, n = 0;
    char *s = malloc(cap);
    int err = s ? 0 : ENOMEM;
    while (!err) {
        if (n + 1 == cap) {
            char *p = cap > ((size_t)-1) / 2 ? NULL : realloc(s, cap * 2);
            if (!p) {
                err = ENOMEM;
                break;
            }
            s = p;
            cap *= 2;
        }
        size_t got = fread(s + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) err = errno ? errno : EIO;
            break;
        }
    }
    if (!is_stdin) fclose(f);
    if (err) {
        free(s);
        errno = err;
        return -1;
    }
    s[n] = '\0';
    *data = s;
    *len = n;
    return 0;
}
