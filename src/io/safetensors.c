/* safetensors files: reading with full validation, and writing.
 *
 * Layout (https://github.com/huggingface/safetensors): 8 bytes, the header length N as an
 * unsigned little-endian integer; N bytes of a JSON object (optionally padded with spaces) mapping
 * each tensor name to {"dtype", "shape", "data_offsets": [begin, end]}, plus an optional
 * "__metadata__" object of string values; then the data, every tensor's little-endian row-major
 * bytes, offsets relative to the start of the data. The reader enforces every rule of the
 * reference implementation (header cap, offsets contiguous and covering the data exactly) and
 * rejects duplicate keys, so a file it accepts has exactly one meaning. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/core_internal.h"
#include "io_internal.h"

static const struct {
    const char *name;
    size_t size;
} st_dtypes[CLOPT__ST_NDTYPES] = {
    [CLOPT__ST_BOOL] = {"BOOL", 1},       [CLOPT__ST_U8] = {"U8", 1},
    [CLOPT__ST_I8] = {"I8", 1},           [CLOPT__ST_F8_E5M2] = {"F8_E5M2", 1},
    [CLOPT__ST_F8_E4M3] = {"F8_E4M3", 1}, [CLOPT__ST_I16] = {"I16", 2},
    [CLOPT__ST_U16] = {"U16", 2},         [CLOPT__ST_F16] = {"F16", 2},
    [CLOPT__ST_BF16] = {"BF16", 2},       [CLOPT__ST_I32] = {"I32", 4},
    [CLOPT__ST_U32] = {"U32", 4},         [CLOPT__ST_F32] = {"F32", 4},
    [CLOPT__ST_F64] = {"F64", 8},         [CLOPT__ST_I64] = {"I64", 8},
    [CLOPT__ST_U64] = {"U64", 8},
};

const char *clopt__st_dtype_name(clopt__st_dtype d) {
    return (unsigned)d < CLOPT__ST_NDTYPES ? st_dtypes[d].name : "?";
}

size_t clopt__st_dtype_size(clopt__st_dtype d) {
    return (unsigned)d < CLOPT__ST_NDTYPES ? st_dtypes[d].size : 0;
}

int clopt__st_dtype_parse(const char *name, clopt__st_dtype *out) {
    for (int i = 0; i < CLOPT__ST_NDTYPES; i++)
        if (strcmp(name, st_dtypes[i].name) == 0) {
            *out = (clopt__st_dtype)i;
            return 0;
        }
    return -1;
}

clopt__st_dtype clopt__st_from_clopt(clopt_dtype d) {
    switch (d) {
    case CLOPT_FLOAT32: return CLOPT__ST_F32;
    case CLOPT_FLOAT64: return CLOPT__ST_F64;
    case CLOPT_FLOAT16: return CLOPT__ST_F16;
    case CLOPT_BFLOAT16: return CLOPT__ST_BF16;
    }
    return CLOPT__ST_NDTYPES;
}

void clopt__to_le(void *p, size_t esize, size_t count) {
    const uint16_t one = 1;
    unsigned char first;
    memcpy(&first, &one, 1);
    if (first == 1 || esize < 2) return; /* little-endian host */
    unsigned char *b = p;
    for (size_t i = 0; i < count; i++, b += esize)
        for (size_t j = 0; j < esize / 2; j++) {
            unsigned char t = b[j];
            b[j] = b[esize - 1 - j];
            b[esize - 1 - j] = t;
        }
}

const char *clopt__st_shape_str(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t used = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%lld", i ? ", " : "",
                                 (long long)shape[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
    return buf;
}

uint64_t clopt__st_elements(const clopt__st_tensor *t) {
    uint64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (uint64_t)t->shape[i];
    return n;
}

clopt_status clopt__io_fail(clopt_status st, char *err, size_t errn, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (err && errn) vsnprintf(err, errn, fmt, ap);
    va_end(ap);
    return st;
}

void clopt__st_free(clopt__st_file *f) {
    free(f->bytes);
    json_decref(f->header);
    free(f->tensors);
    memset(f, 0, sizeof *f);
}

const clopt__st_tensor *clopt__st_find(const clopt__st_file *f, const char *name) {
    for (size_t i = 0; i < f->ntensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *clopt__st_meta(const clopt__st_file *f, const char *key) {
    if (!f->metadata) return NULL;
    return json_string_value(json_object_get(f->metadata, key));
}

static uint64_t load_le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* A JSON integer in [0, max] (jansson keeps integers as long long). */
static int get_uint(const json_t *v, uint64_t max, uint64_t *out) {
    if (!json_is_integer(v)) return -1;
    json_int_t x = json_integer_value(v);
    if (x < 0 || (uint64_t)x > max) return -1;
    *out = (uint64_t)x;
    return 0;
}

#define CORRUPT(...) clopt__io_fail(CLOPT_ERR_CORRUPT_FILE, err, errn, __VA_ARGS__)

/* Validates one tensor entry of the header. */
static clopt_status parse_tensor(const char *what, const char *name, json_t *e, uint64_t base,
                                 uint64_t data_size, clopt__st_tensor *t, char *err,
                                 size_t errn) {
    t->name = name;
    if (!json_is_object(e)) return CORRUPT("%s: tensor '%s': header entry is not an object", what, name);
    const char *key;
    json_t *val;
    json_object_foreach(e, key, val) {
        if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets"))
            return CORRUPT("%s: tensor '%s': unknown key '%s' (expected dtype, shape, "
                           "data_offsets)",
                           what, name, key);
    }
    json_t *dt = json_object_get(e, "dtype"), *sh = json_object_get(e, "shape"),
           *off = json_object_get(e, "data_offsets");
    if (!dt || !sh || !off)
        return CORRUPT("%s: tensor '%s': missing '%s'", what, name,
                       !dt ? "dtype" : !sh ? "shape" : "data_offsets");
    if (!json_is_string(dt) || clopt__st_dtype_parse(json_string_value(dt), &t->dtype) != 0)
        return CORRUPT("%s: tensor '%s': unknown dtype %s%s%s", what, name,
                       json_is_string(dt) ? "'" : "(not a string)",
                       json_is_string(dt) ? json_string_value(dt) : "",
                       json_is_string(dt) ? "'" : "");
    if (!json_is_array(sh) || json_array_size(sh) > CLOPT__ST_MAX_NDIM)
        return CORRUPT("%s: tensor '%s': shape is not an array of at most %d integers", what, name,
                       CLOPT__ST_MAX_NDIM);
    t->ndim = (int)json_array_size(sh);
    /* Elements x dtype size, stopping as soon as it exceeds the data: no overflow. */
    uint64_t bytes = clopt__st_dtype_size(t->dtype);
    int too_big = 0;
    for (int i = 0; i < t->ndim; i++) {
        uint64_t d;
        if (get_uint(json_array_get(sh, (size_t)i), (uint64_t)INT64_MAX, &d) != 0)
            return CORRUPT("%s: tensor '%s': shape dimension %d is not a non-negative integer",
                           what, name, i);
        t->shape[i] = (int64_t)d;
        if (d && bytes > data_size / d) too_big = 1;
        else bytes *= d;
    }
    uint64_t b, en;
    if (!json_is_array(off) || json_array_size(off) != 2 ||
        get_uint(json_array_get(off, 0), (uint64_t)INT64_MAX, &b) != 0 ||
        get_uint(json_array_get(off, 1), (uint64_t)INT64_MAX, &en) != 0)
        return CORRUPT("%s: tensor '%s': data_offsets is not [begin, end] of non-negative "
                       "integers",
                       what, name);
    if (b > en)
        return CORRUPT("%s: tensor '%s': data_offsets [%llu, %llu] begin after end", what, name,
                       (unsigned long long)b, (unsigned long long)en);
    if (en > data_size)
        return CORRUPT("%s: tensor '%s': data_offsets [%llu, %llu] end beyond the data (%llu "
                       "bytes): file offset %llu is past the end of the file (%llu bytes)",
                       what, name, (unsigned long long)b, (unsigned long long)en,
                       (unsigned long long)data_size, (unsigned long long)(base + en),
                       (unsigned long long)(base + data_size));
    char s[64 + 24 * CLOPT__ST_MAX_NDIM];
    if (too_big || bytes != en - b)
        return CORRUPT("%s: tensor '%s': %s %s needs %s%llu bytes but data_offsets [%llu, %llu] "
                       "hold %llu",
                       what, name, clopt__st_dtype_name(t->dtype),
                       clopt__st_shape_str(t->ndim, t->shape, s, sizeof s), too_big ? "more than " : "",
                       (unsigned long long)(too_big ? data_size : bytes), (unsigned long long)b,
                       (unsigned long long)en, (unsigned long long)(en - b));
    t->begin = b;
    t->end = en;
    return CLOPT_OK;
}

static int by_offset(const void *a, const void *b) {
    const clopt__st_tensor *x = *(const clopt__st_tensor *const *)a,
                           *y = *(const clopt__st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

int clopt__st_checksum(const clopt__st_file *f, const clopt__st_tensor *t, uint32_t *crc) {
    char key[512];
    if (!f->metadata || snprintf(key, sizeof key, "%s%s", CLOPT__ST_CRC_PREFIX, t->name) >=
                            (int)sizeof key)
        return 0;
    const char *v = json_string_value(json_object_get(f->metadata, key));
    if (!v || strlen(v) != 8 || strspn(v, "0123456789abcdef") != 8) return v ? -1 : 0;
    *crc = (uint32_t)strtoul(v, NULL, 16);
    return 1;
}

/* Every "crc32c:<name>" of the metadata must name a tensor, be 8 lowercase hex digits and match
 * the CRC-32C of the tensor's bytes. */
static clopt_status verify_checksums(const clopt__st_file *f, const char *what, char *err,
                                     size_t errn) {
    const char *key;
    json_t *val;
    const size_t np = strlen(CLOPT__ST_CRC_PREFIX);
    if (!f->metadata) return CLOPT_OK;
    json_object_foreach(f->metadata, key, val) {
        if (strncmp(key, CLOPT__ST_CRC_PREFIX, np) != 0) continue;
        const clopt__st_tensor *t = clopt__st_find(f, key + np);
        uint32_t want = 0;
        if (!t)
            return CORRUPT("%s: __metadata__ '%s' is the checksum of no tensor", what, key);
        if (clopt__st_checksum(f, t, &want) != 1)
            return CORRUPT("%s: tensor '%s': its checksum '%s' is not 8 hex digits", what,
                           t->name, json_string_value(val));
        uint32_t got = clopt__crc32c(0, f->data + t->begin, (size_t)(t->end - t->begin));
        if (got != want)
            return CORRUPT("%s: tensor '%s': its data (file offsets %llu to %llu) have CRC-32C "
                           "%08x but the file says %08x: the data are corrupted",
                           what, t->name, (unsigned long long)(8 + f->header_len + t->begin),
                           (unsigned long long)(8 + f->header_len + t->end), (unsigned)got,
                           (unsigned)want);
    }
    return CLOPT_OK;
}

clopt_status clopt__st_parse(unsigned char *bytes, size_t size, const char *what,
                             clopt__st_file *f, char *err, size_t errn) {
    memset(f, 0, sizeof *f);
    f->bytes = bytes;
    f->size = size;
    clopt_status st = CLOPT_OK;
    if (size < 8) {
        st = CORRUPT("%s: the file is %zu bytes, too short for the 8-byte header length", what,
                     size);
        goto out;
    }
    uint64_t n = load_le64(bytes);
    if (n > CLOPT__ST_MAX_HEADER) {
        st = CORRUPT("%s: header length %llu (bytes 0-7) exceeds the cap of %llu bytes", what,
                     (unsigned long long)n, (unsigned long long)CLOPT__ST_MAX_HEADER);
        goto out;
    }
    if (n > size - 8) {
        st = CORRUPT("%s: header length %llu (bytes 0-7) runs past the end of the file (%zu "
                     "bytes: the header would end at byte offset %llu)",
                     what, (unsigned long long)n, size, (unsigned long long)(8 + n));
        goto out;
    }
    if (n < 2 || bytes[8] != '{') {
        st = CORRUPT("%s: the header (byte offset 8) does not start with '{'", what);
        goto out;
    }
    f->header_len = n;
    f->data = bytes + 8 + n;
    f->data_size = size - 8 - n;
    json_error_t je;
    f->header = json_loadb((const char *)bytes + 8, (size_t)n, JSON_REJECT_DUPLICATES, &je);
    if (!f->header) {
        st = CORRUPT("%s: the header is not valid JSON: %s (byte offset %llu)", what, je.text,
                     (unsigned long long)(8 + (je.position > 0 ? (uint64_t)je.position : 0)));
        goto out;
    }
    if (!json_is_object(f->header)) {
        st = CORRUPT("%s: the header is not a JSON object", what);
        goto out;
    }
    size_t count = json_object_size(f->header);
    f->tensors = calloc(count ? count : 1, sizeof *f->tensors);
    if (!f->tensors) {
        st = clopt__io_fail(CLOPT_ERR_OUT_OF_MEMORY, err, errn, "%s: out of host memory", what);
        goto out;
    }
    const char *key;
    json_t *val;
    json_object_foreach(f->header, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(val)) {
                st = CORRUPT("%s: __metadata__ is not an object", what);
                goto out;
            }
            const char *mk;
            json_t *mv;
            json_object_foreach(val, mk, mv) {
                if (!json_is_string(mv)) {
                    st = CORRUPT("%s: __metadata__ value '%s' is not a string", what, mk);
                    goto out;
                }
            }
            f->metadata = val;
            continue;
        }
        st = parse_tensor(what, key, val, 8 + n, f->data_size, &f->tensors[f->ntensors], err, errn);
        if (st != CLOPT_OK) goto out;
        f->ntensors++;
    }
    /* Sorted by offset, the tensors must tile the data exactly. */
    const clopt__st_tensor **sorted = malloc((f->ntensors ? f->ntensors : 1) * sizeof *sorted);
    if (!sorted) {
        st = clopt__io_fail(CLOPT_ERR_OUT_OF_MEMORY, err, errn, "%s: out of host memory", what);
        goto out;
    }
    for (size_t i = 0; i < f->ntensors; i++) sorted[i] = &f->tensors[i];
    qsort(sorted, f->ntensors, sizeof *sorted, by_offset);
    uint64_t pos = 0;
    for (size_t i = 0; i < f->ntensors && st == CLOPT_OK; i++) {
        const clopt__st_tensor *t = sorted[i];
        if (t->begin < pos)
            st = CORRUPT("%s: tensor '%s' (data_offsets [%llu, %llu]) overlaps tensor '%s', "
                         "which ends at %llu (file offset %llu)",
                         what, t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
                         sorted[i - 1]->name, (unsigned long long)pos,
                         (unsigned long long)(8 + n + t->begin));
        else if (t->begin > pos)
            st = CORRUPT("%s: data bytes [%llu, %llu) before tensor '%s' belong to no tensor "
                         "(file offset %llu)",
                         what, (unsigned long long)pos, (unsigned long long)t->begin, t->name,
                         (unsigned long long)(8 + n + pos));
        pos = t->end;
    }
    free(sorted);
    if (st == CLOPT_OK && pos != f->data_size)
        st = CORRUPT("%s: the tensors cover %llu data bytes but the file has %llu (%s from file "
                     "offset %llu)",
                     what, (unsigned long long)pos, (unsigned long long)f->data_size,
                     pos < f->data_size ? "trailing bytes" : "missing bytes",
                     (unsigned long long)(8 + n + pos));
    if (st == CLOPT_OK) st = verify_checksums(f, what, err, errn);
out:
    if (st != CLOPT_OK) clopt__st_free(f);
    return st;
}

clopt_status clopt__st_read(const char *path, clopt__st_file *f, char *err, size_t errn) {
    memset(f, 0, sizeof *f);
    off_t fsize = 0;
    int fd = clopt__open_regular(path, &fsize, err, errn);
    if (fd < 0) return CLOPT_ERR_IO;
    size_t size = (size_t)fsize;
    unsigned char *bytes = malloc(size ? size : 1);
    if (!bytes) {
        close(fd);
        return clopt__io_fail(CLOPT_ERR_OUT_OF_MEMORY, err, errn,
                              "%s: cannot hold %zu bytes in host memory", path, size);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, bytes + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = errno;
            free(bytes);
            close(fd);
            if (r == 0)
                return clopt__io_fail(CLOPT_ERR_IO, err, errn,
                                      "%s: the file shrank while being read (%zu of %zu bytes)",
                                      path, got, size);
            return clopt__io_fail(CLOPT_ERR_IO, err, errn,
                                  "%s: read failed at byte offset %zu: %s", path, got,
                                  strerror(e));
        }
        got += (size_t)r;
    }
    close(fd);
    return clopt__st_parse(bytes, size, path, f, err, errn);
}

/* The bytes of tensor i. */
static uint64_t out_bytes(const clopt__st_out *t) {
    uint64_t bytes = clopt__st_dtype_size(t->dtype);
    for (int d = 0; d < t->ndim; d++) bytes *= (uint64_t)t->shape[d];
    return bytes;
}

/* The header JSON: "__metadata__" (meta, then "crc32c:<name>" for each tensor: crc[i] as 8 hex
 * digits, or zeros when crc is NULL, so both forms have one length), then the tensors. */
static char *header_text(const clopt__st_out *t, size_t n, const char *const *meta, size_t nmeta,
                         const uint32_t *crc) {
    json_t *h = json_object(), *m = json_object();
    int bad = !h || !m;
    for (size_t i = 0; !bad && i < nmeta; i++)
        bad |= json_object_set_new(m, meta[2 * i], json_string(meta[2 * i + 1])) != 0;
    for (size_t i = 0; !bad && i < n; i++) {
        char *key = clopt__format("%s%s", CLOPT__ST_CRC_PREFIX, t[i].name);
        char val[9];
        snprintf(val, sizeof val, "%08x", crc ? (unsigned)crc[i] : 0u);
        bad |= !key || json_object_set_new(m, key, json_string(val)) != 0;
        free(key);
    }
    if (!bad && (nmeta || n)) bad |= json_object_set(h, "__metadata__", m) != 0;
    uint64_t pos = 0;
    for (size_t i = 0; !bad && i < n; i++) {
        json_t *e = json_object(), *sh = json_array();
        uint64_t bytes = out_bytes(&t[i]);
        for (int d = 0; sh && d < t[i].ndim; d++)
            bad |= json_array_append_new(sh, json_integer(t[i].shape[d])) != 0;
        bad |= !e || !sh;
        if (!bad) {
            bad |= json_object_set_new(e, "dtype", json_string(clopt__st_dtype_name(t[i].dtype)));
            bad |= json_object_set(e, "shape", sh);
            bad |= json_object_set_new(e, "data_offsets",
                                       json_pack("[II]", (json_int_t)pos,
                                                 (json_int_t)(pos + bytes)));
            bad |= json_object_set(h, t[i].name, e);
        }
        json_decref(e);
        json_decref(sh);
        pos += bytes;
    }
    json_decref(m);
    char *text = bad ? NULL : json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(h);
    return text;
}

/* The 8-byte length and the header padded with spaces so the data start 8-byte aligned, as the
 * reference writer does. *len gets its size. */
static unsigned char *header_bytes(const char *text, size_t *len) {
    size_t tl = strlen(text), padded = (tl + 7) / 8 * 8;
    unsigned char *head = malloc(8 + padded);
    if (!head) return NULL;
    for (int i = 0; i < 8; i++) head[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(head + 8, text, tl);
    memset(head + 8 + tl, ' ', padded - tl);
    *len = 8 + padded;
    return head;
}

clopt_status clopt__st_write(const char *path, const clopt__st_out *t, size_t n,
                             const char *const *meta, size_t nmeta, clopt__st_fill_fn fill,
                             void *user, char *err, size_t errn) {
    /* The checksums are known only once the data are written: the header goes first with zeros
     * in their place and is written again over itself, at the same length, at the end. */
    uint64_t maxbytes = 0;
    for (size_t i = 0; i < n; i++)
        if (out_bytes(&t[i]) > maxbytes) maxbytes = out_bytes(&t[i]);
    char *text = header_text(t, n, meta, nmeta, NULL);
    size_t hlen = 0;
    unsigned char *head = text ? header_bytes(text, &hlen) : NULL;
    free(text);
    unsigned char *buf = malloc(maxbytes ? (size_t)maxbytes : 1);
    uint32_t *crc = calloc(n ? n : 1, sizeof *crc);
    if (!head || !buf || !crc) {
        free(head);
        free(buf);
        free(crc);
        return clopt__io_fail(CLOPT_ERR_OUT_OF_MEMORY, err, errn, "%s: out of host memory", path);
    }
    clopt__atomic_file af;
    clopt_status st = clopt__atomic_begin(&af, path, err, errn);
    if (st == CLOPT_OK) {
        st = clopt__atomic_write(&af, head, hlen, err, errn);
        for (size_t i = 0; st == CLOPT_OK && i < n; i++) {
            size_t bytes = (size_t)out_bytes(&t[i]);
            st = fill(user, i, buf, bytes, err, errn);
            crc[i] = clopt__crc32c(0, buf, bytes);
            if (st == CLOPT_OK) st = clopt__atomic_write(&af, buf, bytes, err, errn);
        }
        if (st == CLOPT_OK) {
            free(head);
            size_t again = 0;
            text = header_text(t, n, meta, nmeta, crc);
            head = text ? header_bytes(text, &again) : NULL;
            free(text);
            if (!head || again != hlen)
                st = clopt__io_fail(CLOPT_ERR_OUT_OF_MEMORY, err, errn, "%s: out of host memory",
                                    path);
            else
                st = clopt__atomic_pwrite(&af, 0, head, hlen, err, errn);
        }
        if (st == CLOPT_OK) st = clopt__atomic_commit(&af, err, errn);
        else clopt__atomic_abort(&af);
    }
    free(head);
    free(buf);
    free(crc);
    return st;
}
