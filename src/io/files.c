/* Opening files to read without ever blocking on what is not a regular file, and reading a
 * stream with a cap. See io_internal.h. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "io_internal.h"

static const char *file_kind(mode_t m) {
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISSOCK(m)) return "a socket";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    return "not a plain file";
}

int clopt__open_regular(const char *path, off_t *size, char *err, size_t errn) {
    /* O_NONBLOCK: opening a FIFO that has no writer would otherwise wait for one. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat sb;
    if (fd < 0) {
        int e = errno;
        /* A socket cannot be opened at all (ENXIO): say what it is. */
        if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
            clopt__io_fail(CLOPT_ERR_IO, err, errn, "%s: not a regular file (%s)", path,
                 file_kind(sb.st_mode));
        else
            clopt__io_fail(CLOPT_ERR_IO, err, errn, "%s: cannot open: %s", path, strerror(e));
        return -1;
    }
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        clopt__io_fail(CLOPT_ERR_IO, err, errn, "%s: %s", path, strerror(e));
        return -1;
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        clopt__io_fail(CLOPT_ERR_IO, err, errn, "%s: not a regular file (%s)", path, file_kind(sb.st_mode));
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl != -1) (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    if (size) *size = sb.st_size;
    return fd;
}

clopt_status clopt__read_capped(int fd, const char *what, size_t max, unsigned char **bytes,
                                size_t *len, char *err, size_t errn) {
    size_t cap = 1 << 16, n = 0;
    unsigned char *s = malloc(cap);
    if (!s) return clopt__io_fail(CLOPT_ERR_OUT_OF_MEMORY, err, errn, "%s: out of host memory", what);
    for (;;) {
        if (n + 1 == cap) {
            if (n >= max + 1) break;
            size_t want = cap > max / 2 + 1 ? max + 2 : cap * 2; /* room to see one byte more */
            unsigned char *p = want > cap ? realloc(s, want) : NULL;
            if (!p) {
                free(s);
                return clopt__io_fail(CLOPT_ERR_OUT_OF_MEMORY, err, errn,
                            "%s: cannot hold %zu bytes in host memory", what, want);
            }
            s = p;
            cap = want;
        }
        ssize_t r = read(fd, s + n, cap - n - 1);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            free(s);
            return clopt__io_fail(CLOPT_ERR_IO, err, errn, "%s: read failed at byte offset %zu: %s", what,
                        n, strerror(e));
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    if (n > max) {
        free(s);
        return clopt__io_fail(CLOPT_ERR_IO, err, errn,
                    "%s: more than %zu bytes, the input limit", what, max);
    }
    s[n] = '\0';
    *bytes = s;
    *len = n;
    return CLOPT_OK;
}
