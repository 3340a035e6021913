/* Durable replacement of a file: temporary file in the same directory, write, fsync, close,
 * rename over the target, fsync the directory. See io_internal.h for the contract and the test
 * hooks. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/core_internal.h"
#include "io_internal.h"

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static clopt_status io_fail(char *err, size_t errn, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (err && errn) vsnprintf(err, errn, fmt, ap);
    va_end(ap);
    return CLOPT_ERR_IO;
}

/* Test hooks: CLOPT_TEST_SAVE_CRASH=<stage> kills the process at that stage, and
 * CLOPT_TEST_SAVE_FAIL=<step> makes that step fail with EIO. */
static void crash_point(const char *stage) {
    const char *v = getenv("CLOPT_TEST_SAVE_CRASH");
    if (v && strcmp(v, stage) == 0) raise(SIGKILL);
}

static int injected_failure(const char *step) {
    const char *v = getenv("CLOPT_TEST_SAVE_FAIL");
    if (v && strcmp(v, step) == 0) {
        errno = EIO;
        return 1;
    }
    return 0;
}

static atomic_uint tmp_counter;

/* Whether `name` is "<base>.tmp-<pid>-<n>" of a process that no longer exists (kill(pid, 0)
 * says ESRCH; a live process, or one of another user, keeps its file). */
static int stale_tmp(const char *name, const char *base) {
    size_t bl = strlen(base);
    if (strncmp(name, base, bl) != 0 || strncmp(name + bl, ".tmp-", 5) != 0) return 0;
    const char *p = name + bl + 5;
    char *end;
    errno = 0;
    long pid = strtol(p, &end, 10);
    if (end == p || *end != '-' || errno || pid <= 0 || pid == (long)getpid()) return 0;
    p = end + 1;
    (void)strtoul(p, &end, 10);
    if (end == p || *end || !(*p >= '0' && *p <= '9')) return 0;
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

/* Removes the temporary files that saves to `path` killed before their rename left behind. */
static void remove_stale_tmps(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? clopt__format("%.*s", slash == path ? 1 : (int)(slash - path), path)
                      : clopt__strdup(".");
    const char *base = slash ? slash + 1 : path;
    DIR *d = dir && *base ? opendir(dir) : NULL;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (!stale_tmp(e->d_name, base)) continue;
        char *p = clopt__format("%s/%s", dir, e->d_name);
        if (p) (void)unlink(p);
        free(p);
    }
    if (d) closedir(d);
    free(dir);
}

/* `path` with its symbolic links followed (up to 40, as the kernel), so that a save replaces
 * the link's target and keeps the link; a relative target is taken from the link's directory.
 * A dangling link gives its target's path (the save creates it). NULL when out of memory. */
static char *follow_links(const char *path) {
    char *p = clopt__strdup(path);
    for (int i = 0; p && i < 40; i++) {
        struct stat sb;
        char target[PATH_MAX];
        ssize_t n;
        if (lstat(p, &sb) != 0 || !S_ISLNK(sb.st_mode) ||
            (n = readlink(p, target, sizeof target - 1)) <= 0)
            break;
        target[n] = '\0';
        const char *slash = strrchr(p, '/');
        char *next = target[0] == '/' || !slash
                         ? clopt__strdup(target)
                         : clopt__format("%.*s/%s", (int)(slash - p), p, target);
        free(p);
        p = next;
    }
    return p;
}

clopt_status clopt__atomic_begin(clopt__atomic_file *af, const char *path, char *err,
                                 size_t errn) {
    af->fd = -1;
    af->tmp = af->path = NULL;
    if (!*path) return io_fail(err, errn, "the path is empty");
    af->path = follow_links(path);
    if (!af->path) return io_fail(err, errn, "%s: out of host memory", path);
    path = af->path;
    remove_stale_tmps(path);
    for (int tries = 0; tries < 100; tries++) {
        free(af->tmp);
        af->tmp = clopt__format("%s.tmp-%ld-%u", path, (long)getpid(),
                                atomic_fetch_add(&tmp_counter, 1u));
        if (!af->tmp) break;
        af->fd = open(af->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (af->fd >= 0 || errno != EEXIST) break;
    }
    if (af->fd < 0) {
        int e = errno;
        clopt_status st = io_fail(err, errn, "%s: cannot create the temporary file '%s': %s",
                                  path, af->tmp ? af->tmp : "?", af->tmp ? strerror(e)
                                                                         : "out of memory");
        free(af->tmp);
        free(af->path);
        af->tmp = af->path = NULL;
        return st;
    }
    /* Keep the permissions of the file being replaced. */
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) (void)fchmod(af->fd, sb.st_mode & 07777);
    crash_point("after_open");
    return CLOPT_OK;
}

/* Writes n bytes at the file offset `off`, or at the current position when off is -1. */
static clopt_status write_all(clopt__atomic_file *af, int64_t off, const void *p, size_t n,
                              char *err, size_t errn) {
    const unsigned char *b = p;
    while (n) {
        ssize_t w = injected_failure("write") ? -1
                    : off < 0                 ? write(af->fd, b, n)
                                              : pwrite(af->fd, b, n, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            return io_fail(err, errn, "%s: writing the temporary file '%s' failed: %s",
                           af->path, af->tmp, w < 0 ? strerror(errno) : "wrote nothing");
        b += w;
        if (off >= 0) off += w;
        n -= (size_t)w;
    }
    return CLOPT_OK;
}

clopt_status clopt__atomic_write(clopt__atomic_file *af, const void *p, size_t n, char *err,
                                 size_t errn) {
    return write_all(af, -1, p, n, err, errn);
}

clopt_status clopt__atomic_pwrite(clopt__atomic_file *af, uint64_t off, const void *p, size_t n,
                                  char *err, size_t errn) {
    return write_all(af, (int64_t)off, p, n, err, errn);
}

void clopt__atomic_abort(clopt__atomic_file *af) {
    if (af->fd >= 0) close(af->fd);
    if (af->tmp) unlink(af->tmp);
    free(af->tmp);
    free(af->path);
    af->fd = -1;
    af->tmp = af->path = NULL;
}

/* Syncs the directory holding `path`, so that the rename itself is durable. */
static int sync_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? clopt__format("%.*s", slash == path ? 1 : (int)(slash - path), path)
                      : clopt__strdup(".");
    if (!dir) {
        errno = ENOMEM;
        return -1;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd < 0) return -1;
    int r = injected_failure("dirsync") ? -1 : fsync(fd);
    int e = errno;
    close(fd);
    /* File systems that cannot sync a directory say EINVAL: nothing more can be done there. */
    if (r != 0 && e == EINVAL) r = 0;
    errno = e;
    return r;
}

clopt_status clopt__atomic_commit(clopt__atomic_file *af, char *err, size_t errn) {
    crash_point("after_write");
    if (injected_failure("fsync") || fsync(af->fd) != 0) {
        clopt_status st = io_fail(err, errn, "%s: syncing the temporary file '%s' failed: %s",
                                  af->path, af->tmp, strerror(errno));
        clopt__atomic_abort(af);
        return st;
    }
    int r = close(af->fd);
    af->fd = -1;
    if (r != 0) {
        clopt_status st = io_fail(err, errn, "%s: closing the temporary file '%s' failed: %s",
                                  af->path, af->tmp, strerror(errno));
        clopt__atomic_abort(af);
        return st;
    }
    crash_point("after_fsync");
    if (injected_failure("rename") || rename(af->tmp, af->path) != 0) {
        clopt_status st = io_fail(err, errn, "%s: renaming the temporary file '%s' over it "
                                  "failed: %s", af->path, af->tmp, strerror(errno));
        clopt__atomic_abort(af);
        return st;
    }
    crash_point("after_rename");
    clopt_status st = CLOPT_OK;
    if (sync_dir(af->path) != 0)
        st = io_fail(err, errn,
                     "%s: the new file is in place, but syncing its directory failed, so the "
                     "rename may not survive a power loss: %s",
                     af->path, strerror(errno));
    free(af->tmp);
    free(af->path);
    af->tmp = af->path = NULL;
    return st;
}
