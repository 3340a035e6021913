/* Kernel programs: sources (embedded, or CLOPT_KERNEL_DIR), -D options, run-time compilation and
 * the on-disk binary cache. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "clopt/version.h"
#include "ocl_internal.h"

#define CACHE_MAGIC "CLOPTBIN"
#define CACHE_FORMAT 1u

typedef struct cache_header {
    char magic[8];
    uint32_t format;
    uint32_t reserved;
    uint64_t key;
    uint64_t size;
    uint64_t checksum;
} cache_header;

/* ---- sources ---- */

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    long n = (fseek(f, 0, SEEK_END) == 0) ? ftell(f) : -1;
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1))) {
        if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        } else {
            buf[n] = '\0';
            *len = (size_t)n;
        }
    }
    fclose(f);
    return buf;
}

/* The text of cl/<name>.cl: from CLOPT_KERNEL_DIR when it has the file, else embedded. */
static char *source_text(const char *name, size_t *len) {
    const char *dir = getenv("CLOPT_KERNEL_DIR");
    if (dir && *dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.cl", dir, name);
        char *t = read_file(path, len);
        if (t) return t;
    }
    for (const clopt__kernel_source *s = clopt__kernel_sources; s->name; s++)
        if (strcmp(s->name, name) == 0) {
            char *t = malloc(s->length + 1);
            if (t) {
                memcpy(t, s->text, s->length);
                t[s->length] = '\0';
                *len = s->length;
            }
            return t;
        }
    return NULL;
}

/* scalars.cl and common.cl (the prelude every kernel program shares) followed by the kernel's
 * file: "file.kernel" is in file.cl, "name" in name.cl; or by `text`, a program's kernel. */
static clopt_status program_source(clopt_context *ctx, const char *kernel, const char *text,
                                   char **out) {
    char file[128];
    const char *dot = strchr(kernel, '.');
    size_t flen = dot ? (size_t)(dot - kernel) : strlen(kernel);
    if (flen >= sizeof file) flen = sizeof file - 1;
    memcpy(file, kernel, flen);
    file[flen] = '\0';
    const char *names[3] = {"scalars", "common", file};
    char *part[3] = {NULL, NULL, NULL};
    size_t len[3] = {0, 0, 0}, total = 0;
    int missing = -1;
    for (int i = 0; i < 3; i++) {
        if (i == 2 && text) {
            len[i] = strlen(text);
            if ((part[i] = malloc(len[i] + 1))) memcpy(part[i], text, len[i] + 1);
        } else {
            part[i] = source_text(names[i], &len[i]);
        }
        if (!part[i] && missing < 0) missing = i;
        total += len[i] + 1;
    }
    char *s = missing < 0 ? malloc(total) : NULL;
    size_t at = 0;
    for (int i = 0; s && i < 3; i++) {
        memcpy(s + at, part[i], len[i]);
        at += len[i];
        s[at++] = i < 2 ? '\n' : '\0';
    }
    for (int i = 0; i < 3; i++) free(part[i]);
    if (missing >= 0)
        return clopt__fail(ctx, CLOPT_ERR_BUILD_FAILED, "no kernel source '%s.cl'%s", file,
                           missing < 2 ? (missing ? " (common.cl missing)" : " (scalars.cl missing)")
                                       : "");
    if (!s) return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "kernel '%s': out of memory", kernel);
    *out = s;
    return CLOPT_OK;
}

/* -DCLOPT_CPU=1 for the loop form (a CPU device's default, or the kernel parameters' form):
 * kernels may choose shapes that suit it (cl/common.cl). */
static void build_options(char *buf, size_t n, clopt_dtype dtype, const clopt__define *defs,
                          int ndefs, int cpu, int item_blocks) {
    size_t used = (size_t)snprintf(buf, n, "-cl-std=CL1.2 -DDTYPE=%d -DCHUNK=%d -DCLOPT_CPU=%d",
                                   (int)dtype, CLOPT__CHUNK, cpu);
    /* only when not the default, so that the default's options (and cache keys) stay as they
     * were */
    if (item_blocks > 1 && used < n)
        used += (size_t)snprintf(buf + used, n - used, " -DITEM_BLOCKS=%d", item_blocks);
    for (int i = 0; i < ndefs && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, " -D%s=%d", defs[i].name, defs[i].value);
}

/* ---- disk cache ---- */

static int mkdirs(const char *path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
            *p = '/';
        }
    return (mkdir(tmp, 0755) == 0 || errno == EEXIST) ? 0 : -1;
}

static uint64_t cache_key(const clopt__ocl_state *s, const char *src, const char *opts) {
    uint64_t h = CLOPT__HASH_INIT;
    uint32_t fmt = CACHE_FORMAT;
    h = clopt__hash64(h, src, strlen(src) + 1);
    h = clopt__hash64(h, opts, strlen(opts) + 1);
    h = clopt__hash64(h, s->cache_key_prefix, strlen(s->cache_key_prefix) + 1);
    h = clopt__hash64(h, CLOPT_VERSION_STRING, sizeof CLOPT_VERSION_STRING);
    return clopt__hash64(h, &fmt, sizeof fmt);
}

/* Loads a cached binary; NULL (and the entry is ignored) unless it is whole and for this key. */
static unsigned char *cache_load(const char *path, uint64_t key, size_t *size) {
    size_t len = 0;
    unsigned char *file = (unsigned char *)read_file(path, &len);
    if (!file) return NULL;
    cache_header h;
    if (len < sizeof h) goto bad;
    memcpy(&h, file, sizeof h);
    if (memcmp(h.magic, CACHE_MAGIC, 8) != 0 || h.format != CACHE_FORMAT || h.key != key ||
        h.size != len - sizeof h || h.size == 0 ||
        h.checksum != clopt__hash64(CLOPT__HASH_INIT, file + sizeof h, (size_t)h.size))
        goto bad;
    memmove(file, file + sizeof h, (size_t)h.size);
    *size = (size_t)h.size;
    return file;
bad:
    free(file);
    return NULL;
}

/* Writes the binary to a temporary file in the cache directory and renames it into place, so a
 * reader sees the old entry, or the new one whole. Failures only cost a rebuild next time. */
static void cache_store(const char *dir, const char *path, uint64_t key, const unsigned char *bin,
                        size_t size) {
    if (mkdirs(dir) != 0) return;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return;
    cache_header h;
    memcpy(h.magic, CACHE_MAGIC, 8);
    h.format = CACHE_FORMAT;
    h.reserved = 0;
    h.key = key;
    h.size = size;
    h.checksum = clopt__hash64(CLOPT__HASH_INIT, bin, size);
    int ok = fwrite(&h, sizeof h, 1, f) == 1 && fwrite(bin, 1, size, f) == size;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) remove(tmp);
}

/* The binary of p for dev; a program of a context shared by several devices (ocl_group.c) has
 * one entry per device of the context, of which only dev's is built. */
static unsigned char *program_binary(cl_program p, cl_device_id dev, size_t *size) {
    cl_uint n = 0;
    if (clGetProgramInfo(p, CL_PROGRAM_NUM_DEVICES, sizeof n, &n, NULL) != CL_SUCCESS || !n ||
        n > 64)
        return NULL;
    cl_device_id devs[64];
    size_t sz[64];
    unsigned char *bins[64] = {0};
    cl_uint at = 0;
    if (clGetProgramInfo(p, CL_PROGRAM_DEVICES, n * sizeof *devs, devs, NULL) != CL_SUCCESS ||
        clGetProgramInfo(p, CL_PROGRAM_BINARY_SIZES, n * sizeof *sz, sz, NULL) != CL_SUCCESS)
        return NULL;
    while (at < n && devs[at] != dev) at++;
    if (at == n || !sz[at]) return NULL;
    unsigned char *bin = bins[at] = malloc(sz[at]);
    if (bin && clGetProgramInfo(p, CL_PROGRAM_BINARIES, n * sizeof *bins, bins, NULL) != CL_SUCCESS) {
        free(bin);
        return NULL;
    }
    *size = sz[at];
    return bin;
}

static char *build_log(cl_program p, cl_device_id dev) {
    size_t n = 0;
    clGetProgramBuildInfo(p, dev, CL_PROGRAM_BUILD_LOG, 0, NULL, &n);
    char *log = malloc(n + 1);
    if (!log) return NULL;
    if (clGetProgramBuildInfo(p, dev, CL_PROGRAM_BUILD_LOG, n, log, NULL) != CL_SUCCESS) n = 0;
    log[n] = '\0';
    return log;
}

static cl_program build_from_binary(clopt__ocl_state *s, const unsigned char *bin, size_t size,
                                    const char *opts) {
    cl_int err, bstatus;
    cl_program p =
        clCreateProgramWithBinary(s->context, 1, &s->device, &size, &bin, &bstatus, &err);
    if (err != CL_SUCCESS || bstatus != CL_SUCCESS) {
        if (p) clReleaseProgram(p);
        return NULL;
    }
    if (clBuildProgram(p, 1, &s->device, opts, NULL, NULL) != CL_SUCCESS) {
        clReleaseProgram(p);
        return NULL;
    }
    return p;
}

static clopt_status build_from_source(clopt_context *ctx, const char *kernel, const char *src,
                                      const char *opts, cl_program *out) {
    clopt__ocl_state *s = clopt__ocl(ctx);
    cl_int err;
    cl_program p = clCreateProgramWithSource(s->context, 1, &src, NULL, &err);
    if (err != CL_SUCCESS) return clopt__cl_fail(ctx, err, "clCreateProgramWithSource", kernel);
    err = clBuildProgram(p, 1, &s->device, opts, NULL, NULL);
    if (err != CL_SUCCESS) {
        char *log = build_log(p, s->device);
        clopt__fail(ctx, CLOPT_ERR_BUILD_FAILED,
                    "building kernel '%s': clBuildProgram failed with %d (%s)\noptions: %s\n"
                    "build log:\n%s",
                    kernel, (int)err, clopt__cl_error_name(err), opts, log ? log : "(none)");
        clopt__set_cl_error(ctx, (int)err);
        free(log);
        clReleaseProgram(p);
        return CLOPT_ERR_BUILD_FAILED;
    }
    *out = p;
    return CLOPT_OK;
}

static clopt_status compile(clopt_context *ctx, const char *kernel, const char *text,
                            const char *opts, cl_program *out) {
    clopt__ocl_state *s = clopt__ocl(ctx);
    char *src = NULL;
    clopt_status st = program_source(ctx, kernel, text, &src);
    if (st != CLOPT_OK) return st;
    uint64_t key = cache_key(s, src, opts);
    char *dir = clopt__cache_dir(), *path = NULL;
    if (dir && *dir) path = clopt__format("%s/%016llx.clbin", dir, (unsigned long long)key);
    cl_program p = NULL;
    if (path) {
        size_t size;
        unsigned char *bin = cache_load(path, key, &size);
        if (bin) p = build_from_binary(s, bin, size, opts);
        free(bin);
    }
    if (!p && (st = build_from_source(ctx, kernel, src, opts, &p)) == CLOPT_OK && path) {
        size_t size;
        unsigned char *bin = program_binary(p, s->device, &size);
        if (bin) cache_store(dir, path, key, bin, size);
        free(bin);
    }
    free(path);
    free(dir);
    free(src);
    if (st == CLOPT_OK) *out = p;
    return st;
}

clopt_status clopt__ocl_get_kernel(clopt_context *ctx, const char *kernel, clopt_dtype dtype,
                                   const clopt__define *defines, int ndefines,
                                   clopt__ocl_program **out) {
    return clopt__ocl_get_user_kernel(ctx, kernel, NULL, dtype, defines, ndefines, out);
}

clopt_status clopt__ocl_get_user_kernel(clopt_context *ctx, const char *kernel,
                                        const char *source, clopt_dtype dtype,
                                        const clopt__define *defines, int ndefines,
                                        clopt__ocl_program **out) {
    clopt__ocl_state *s = clopt__ocl(ctx);
    char opts[512];
    const int item_blocks = clopt__kernel_item_blocks(ctx);
    build_options(opts, sizeof opts, dtype, defines, ndefines,
                  clopt__kernel_form_loop(ctx, s->host_memory), item_blocks);
    for (size_t i = 0; i < s->nprograms; i++)
        if (strcmp(s->programs[i].kernel_name, kernel) == 0 &&
            strcmp(s->programs[i].options, opts) == 0) {
            *out = &s->programs[i];
            return CLOPT_OK;
        }
    if (dtype == CLOPT_FLOAT64 && !s->has_fp64)
        return clopt__fail(ctx, CLOPT_ERR_UNSUPPORTED,
                           "kernel '%s': float64 needs cl_khr_fp64, which %s lacks", kernel,
                           s->description);
    if (s->nprograms == s->capprograms) {
        size_t cap = s->capprograms ? 2 * s->capprograms : 16;
        clopt__ocl_program *np = realloc(s->programs, cap * sizeof *np);
        if (!np) return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "kernel '%s': out of memory",
                                    kernel);
        s->programs = np;
        s->capprograms = cap;
    }
    cl_program p;
    clopt_status st = compile(ctx, kernel, source, opts, &p);
    if (st != CLOPT_OK) return st;
    cl_int err;
    const char *dot = strchr(kernel, '.');
    cl_kernel k = clCreateKernel(p, dot ? dot + 1 : kernel, &err);
    if (err != CL_SUCCESS) {
        clReleaseProgram(p);
        return clopt__cl_fail(ctx, err, "clCreateKernel", kernel);
    }
    clopt__ocl_program *e = &s->programs[s->nprograms];
    e->kernel_name = clopt__strdup(kernel);
    e->options = clopt__strdup(opts);
    if (!e->kernel_name || !e->options) {
        free(e->kernel_name);
        free(e->options);
        clReleaseKernel(k);
        clReleaseProgram(p);
        return clopt__fail(ctx, CLOPT_ERR_OUT_OF_MEMORY, "kernel '%s': out of memory", kernel);
    }
    e->program = p;
    e->kernel = k;
    e->warm = 0;
    e->item_blocks = item_blocks;
    size_t wg[3] = {0, 0, 0};
    e->per_chunk = clGetKernelWorkGroupInfo(k, s->device, CL_KERNEL_COMPILE_WORK_GROUP_SIZE,
                                            sizeof wg, wg, NULL) == CL_SUCCESS &&
                   wg[0] == 1 && wg[1] == 1 && wg[2] == 1;
    s->nprograms++;
    *out = e;
    return CLOPT_OK;
}

void clopt__ocl_programs_free(clopt__ocl_state *s) {
    for (size_t i = 0; i < s->nprograms; i++) {
        clReleaseKernel(s->programs[i].kernel);
        clReleaseProgram(s->programs[i].program);
        free(s->programs[i].kernel_name);
        free(s->programs[i].options);
    }
    free(s->programs);
    s->programs = NULL;
    s->nprograms = s->capprograms = 0;
}
