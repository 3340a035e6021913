/* Keras .weights.h5 files: the optimizer's datasets /optimizer/vars/<i> (Keras's
 * saving_lib layout, docs: keras-optimizer-semantics.md section 5), read and written through
 * libhdf5 when clopt is built with CLOPT_WITH_HDF5, presented to checkpoint.c as a safetensors
 * image so that loading goes through the same matching and validation.
 *
 * dtypes as h5py and Keras write them: int64 (TensorFlow) or int32 (JAX, torch) integers, IEEE
 * float32 and float64, float16 as h5py's 2-byte IEEE type, and bfloat16 as a 2-byte dataset
 * carrying the attribute dtype = "bfloat16" (clopt writes it as an opaque 2-byte type). libhdf5
 * error printing is switched off (H5Eset_auto2) while clopt calls it; libhdf5 is not thread-safe
 * in its usual builds, so these calls must not run concurrently. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "clopt/checkpoint.h"
#include "core/core_internal.h"
#include "io_internal.h"

int clopt__is_hdf5_file(const char *path) {
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    unsigned char head[8];
    int fd = clopt__open_regular(path, NULL, NULL, 0);
    if (fd < 0) return 0;
    ssize_t n = read(fd, head, sizeof head);
    close(fd);
    return n == (ssize_t)sizeof head && memcmp(head, sig, sizeof sig) == 0;
}

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static clopt_status h5_fail(clopt_status st, char *err, size_t errn, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (err && errn) vsnprintf(err, errn, fmt, ap);
    va_end(ap);
    return st;
}

#ifndef CLOPT_WITH_HDF5

#define NO_H5 "this clopt was built without libhdf5 (CLOPT_WITH_HDF5 off): .weights.h5 files are " \
              "not supported"

int clopt_checkpoint_has_h5(void) { return 0; }

clopt_status clopt__h5_read(const char *path, clopt__st_file *f, char *err, size_t errn) {
    memset(f, 0, sizeof *f);
    return h5_fail(CLOPT_ERR_UNSUPPORTED, err, errn, "%s: %s", path, NO_H5);
}

clopt_status clopt__h5_write(const char *path, const clopt__st_out *t, size_t n,
                             const char *const *meta, size_t nmeta, clopt__st_fill_fn fill,
                             void *user, char *err, size_t errn) {
    (void)t, (void)n, (void)meta, (void)nmeta, (void)fill, (void)user;
    return h5_fail(CLOPT_ERR_UNSUPPORTED, err, errn, "%s: %s", path, NO_H5);
}

clopt_status clopt__inspect_h5(const char *path, FILE *out, char *err, size_t errn) {
    (void)out;
    return h5_fail(CLOPT_ERR_UNSUPPORTED, err, errn, "%s: %s", path, NO_H5);
}

#else /* CLOPT_WITH_HDF5 */

#include <hdf5.h>

int clopt_checkpoint_has_h5(void) { return 1; }

/* The innermost message of libhdf5's error stack. */
static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *data) {
    char *buf = data;
    if (n == 0 && e->desc && e->desc[0]) snprintf(buf, 256, "%s", e->desc);
    return 0;
}

static const char *h5_msg(char *buf) {
    buf[0] = '\0';
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_cb, buf);
    if (!buf[0]) snprintf(buf, 256, "libhdf5 error");
    return buf;
}

static void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/* ---- string attributes ----
 *
 * A variable-length string lives in a global heap collection ("GCOL"), which libhdf5 1.10 parses
 * whole when it reads the string (H5HG__cache_heap_deserialize) and never leaves when an object
 * in it claims size 0: a crafted or damaged file hangs the reader (found by fuzz_h5). So before
 * the first such string of a file, every collection in it is walked here as libhdf5 walks it, and
 * a walk that would not advance, or would leave its collection, makes the file corrupt. */

#define MAX_FIXED_STR 4096 /* bytes of a fixed-length string attribute clopt reads */

typedef struct h5_strings {
    const char *path;
    int checked; /* 0: not yet; 1: every collection sane; -1: one is not (why) */
    char why[192];
} h5_strings;

static uint64_t le_get(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static int pread_all(int fd, void *buf, size_t n, off_t at) {
    for (size_t got = 0; got < n;) {
        ssize_t r = pread(fd, (unsigned char *)buf + got, n - got, at + (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

/* Walks the collection at `at` (lengths of `ls` bytes) as libhdf5 does; 0 if it ends. */
static int heap_walk(int fd, uint64_t at, uint64_t fsize, int ls, char *why, size_t n) {
    unsigned char h[8 + 8];
    if (pread_all(fd, h, (size_t)(8 + ls), (off_t)at) != 0) return 0; /* runs off the file */
    uint64_t size = le_get(h + 8, ls), hdr = (uint64_t)(8 + ls), ohdr = (uint64_t)(8 + ls);
    if (size < hdr || size > fsize - at) {
        snprintf(why, n, "the global heap collection at byte %" PRIu64 " claims %" PRIu64
                 " bytes (the file has %" PRIu64 " from there)", at, size, fsize - at);
        return -1;
    }
    for (uint64_t p = hdr; p < size;) {
        if (p + ohdr > size) break; /* a tail too small for an object: free space */
        if (pread_all(fd, h, (size_t)ohdr, (off_t)(at + p)) != 0) return 0;
        unsigned idx = (unsigned)le_get(h, 2);
        uint64_t osize = le_get(h + 8, ls);
        uint64_t need = idx ? (osize > size ? size : ohdr + (osize + 7) / 8 * 8) : osize;
        if (need == 0 || need > size - p) {
            snprintf(why, n, "object %u of the global heap collection at byte %" PRIu64
                     " claims %" PRIu64 " bytes (%" PRIu64 " are left in it)", idx, at, osize,
                     size - p);
            return -1;
        }
        p += need;
    }
    return 0;
}

/* Finds every collection signature ("GCOL", version 1, 3 zero bytes) in the file and walks it. */
static int heaps_sane(const char *path, char *why, size_t n) {
    off_t fsize;
    int fd = clopt__open_regular(path, &fsize, NULL, 0);
    if (fd < 0) return 1; /* libhdf5 has it open: nothing of it to judge */
    static const unsigned char sig[8] = {'G', 'C', 'O', 'L', 1, 0, 0, 0};
    enum { CHUNK = 1 << 20 };
    unsigned char *b = malloc(CHUNK + sizeof sig);
    unsigned char sb[16];
    int ls = 8, rc = 1; /* the superblock's "size of lengths" (h5py: 8) */
    if (pread_all(fd, sb, sizeof sb, 0) == 0) ls = sb[8] < 2 ? sb[14] : sb[10];
    if (ls != 2 && ls != 4 && ls != 8) ls = 8;
    size_t keep = 0;
    for (uint64_t base = 0; b && rc == 1 && base < (uint64_t)fsize;) {
        size_t want = (uint64_t)fsize - base < CHUNK ? (size_t)((uint64_t)fsize - base) : CHUNK;
        if (pread_all(fd, b + keep, want, (off_t)base) != 0) break;
        size_t have = keep + want;
        uint64_t b0 = base - keep; /* file offset of b[0] */
        for (size_t i = 0; rc == 1 && i + sizeof sig <= have; i++)
            if (b[i] == 'G' && memcmp(b + i, sig, sizeof sig) == 0 &&
                heap_walk(fd, b0 + i, (uint64_t)fsize, ls, why, n) != 0)
                rc = 0;
        keep = have < sizeof sig - 1 ? have : sizeof sig - 1;
        memmove(b, b + have - keep, keep);
        base += want;
    }
    free(b);
    close(fd);
    return rc;
}

/* 1 if the file's heap collections are sane, -1 if not (hs->why): judged once per file. */
static int heaps_checked(h5_strings *hs) {
    if (!hs->checked) hs->checked = heaps_sane(hs->path, hs->why, sizeof hs->why) ? 1 : -1;
    return hs->checked;
}

/* Reads the string attribute `name` of obj (`where` in messages) into buf. 0: read; 1: absent
 * or not a string; otherwise a (negative) status, with the message in err: more than one string, a
 * fixed-length string above MAX_FIXED_STR bytes, a malformed heap, or a failed read. */
static int read_str_attr(h5_strings *hs, hid_t obj, const char *name, const char *where,
                         char *buf, size_t n, char *err, size_t errn) {
    char msg[256];
    if (H5Aexists(obj, name) <= 0) return 1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t t = a >= 0 ? H5Aget_type(a) : -1, s = a >= 0 ? H5Aget_space(a) : -1, mt = -1;
    int rc = 1;
    hssize_t npoints = s >= 0 ? H5Sget_simple_extent_npoints(s) : -1;
    int vlen = t >= 0 ? H5Tis_variable_str(t) > 0 : 0;
    size_t sz = t >= 0 ? H5Tget_size(t) : 0;
    if (t < 0 || s < 0) {
        rc = h5_fail(CLOPT_ERR_CORRUPT_FILE, err, errn, "%s: attribute '%s' of %s: %s", hs->path,
                     name, where, h5_msg(msg));
    } else if (H5Tget_class(t) != H5T_STRING) {
        rc = 1;
    } else if (npoints != 1) {
        rc = h5_fail(CLOPT_ERR_CORRUPT_FILE, err, errn,
                     "%s: attribute '%s' of %s holds %lld strings (clopt reads one)", hs->path,
                     name, where, (long long)npoints);
    } else if (!vlen && sz > MAX_FIXED_STR) {
        rc = h5_fail(CLOPT_ERR_CORRUPT_FILE, err, errn,
                     "%s: attribute '%s' of %s is a string of %zu bytes (clopt reads at most %d)",
                     hs->path, name, where, sz, MAX_FIXED_STR);
    } else if (vlen && heaps_checked(hs) < 0) {
        rc = h5_fail(CLOPT_ERR_CORRUPT_FILE, err, errn,
                     "%s: attribute '%s' of %s is not read: %s", hs->path, name, where, hs->why);
    } else {
        mt = H5Tcopy(H5T_C_S1);
        H5Tset_cset(mt, H5Tget_cset(t));
        char *v = NULL, *fixed = vlen ? NULL : calloc(sz + 1, 1);
        if (!vlen) H5Tset_strpad(mt, H5T_STR_NULLTERM);
        if (H5Tset_size(mt, vlen ? H5T_VARIABLE : sz + 1) < 0 || (!vlen && !fixed) ||
            H5Aread(a, mt, vlen ? (void *)&v : (void *)fixed) < 0 || (vlen && !v)) {
            rc = h5_fail(CLOPT_ERR_CORRUPT_FILE, err, errn,
                         "%s: reading attribute '%s' of %s failed: %s", hs->path, name, where,
                         h5_msg(msg));
        } else {
            snprintf(buf, n, "%s", vlen ? v : fixed);
            rc = 0;
        }
        if (v) H5free_memory(v);
        free(fixed);
    }
    if (mt >= 0) H5Tclose(mt);
    if (t >= 0) H5Tclose(t);
    if (s >= 0) H5Sclose(s);
    if (a >= 0) H5Aclose(a);
    return rc;
}

/* The safetensors dtype of a dataset's type into *d (CLOPT__ST_NDTYPES if clopt has none);
 * fails only on a "dtype" attribute read_str_attr refuses. */
static clopt_status st_dtype_of(h5_strings *hs, hid_t dset, hid_t t, const char *where,
                                clopt__st_dtype *d, char *err, size_t errn) {
    char tag[32];
    size_t size = H5Tget_size(t);
    *d = CLOPT__ST_NDTYPES;
    if (size == 2) {
        int rc = read_str_attr(hs, dset, "dtype", where, tag, sizeof tag, err, errn);
        if (rc < 0) return (clopt_status)rc;
        if (rc == 0 && strcmp(tag, "bfloat16") == 0) {
            *d = CLOPT__ST_BF16;
            return CLOPT_OK;
        }
    }
    switch (H5Tget_class(t)) {
    case H5T_INTEGER: {
        int sgn = H5Tget_sign(t) == H5T_SGN_2;
        if (size == 8) *d = sgn ? CLOPT__ST_I64 : CLOPT__ST_U64;
        if (size == 4) *d = sgn ? CLOPT__ST_I32 : CLOPT__ST_U32;
        if (size == 2) *d = sgn ? CLOPT__ST_I16 : CLOPT__ST_U16;
        if (size == 1) *d = sgn ? CLOPT__ST_I8 : CLOPT__ST_U8;
        break;
    }
    case H5T_FLOAT:
        if (size == 8) *d = CLOPT__ST_F64;
        if (size == 4) *d = CLOPT__ST_F32;
        if (size == 2) *d = H5Tget_ebias(t) == 15 ? CLOPT__ST_F16 : CLOPT__ST_BF16;
        break;
    default: break;
    }
    return CLOPT_OK;
}

/* The memory type to read or write `d` as little-endian bytes (a new id the caller closes). */
static hid_t mem_type(clopt__st_dtype d, hid_t file_type) {
    switch (d) {
    case CLOPT__ST_I64: return H5Tcopy(H5T_STD_I64LE);
    case CLOPT__ST_U64: return H5Tcopy(H5T_STD_U64LE);
    case CLOPT__ST_I32: return H5Tcopy(H5T_STD_I32LE);
    case CLOPT__ST_U32: return H5Tcopy(H5T_STD_U32LE);
    case CLOPT__ST_I16: return H5Tcopy(H5T_STD_I16LE);
    case CLOPT__ST_U16: return H5Tcopy(H5T_STD_U16LE);
    case CLOPT__ST_I8: return H5Tcopy(H5T_STD_I8LE);
    case CLOPT__ST_U8: return H5Tcopy(H5T_STD_U8LE);
    case CLOPT__ST_F64: return H5Tcopy(H5T_IEEE_F64LE);
    case CLOPT__ST_F32: return H5Tcopy(H5T_IEEE_F32LE);
    default: return H5Tcopy(file_type); /* 2-byte floats: the bytes as stored */
    }
}

/* h5py's float16: IEEE half precision, little-endian. */
static hid_t f16_type(void) {
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    H5Tset_fields(t, 15, 10, 5, 0, 10);
    H5Tset_size(t, 2);
    H5Tset_ebias(t, 15);
    return t;
}

typedef struct h5_img {
    json_t *header;
    unsigned char *data;
    size_t size, cap;
} h5_img;

static int img_append(h5_img *m, size_t n, unsigned char **dst) {
    if (m->size + n > m->cap) {
        size_t c = m->cap ? m->cap : 4096;
        while (c < m->size + n) c *= 2;
        unsigned char *d = realloc(m->data, c);
        if (!d) return -1;
        m->data = d;
        m->cap = c;
    }
    *dst = m->data + m->size;
    m->size += n;
    return 0;
}

/* Whether an unfiltered dataset holds fewer bytes in the file than its shape needs (storage
 * never written, read back as fill values): reading it would make a small file allocate and fill
 * any size up to the cap. Keras (h5py) writes every dataset whole. Compressed datasets are not
 * judged. */
static int not_stored(hid_t obj, uint64_t bytes) {
    hid_t dcpl = H5Dget_create_plist(obj);
    int nfilters = dcpl >= 0 ? H5Pget_nfilters(dcpl) : -1;
    if (dcpl >= 0) H5Pclose(dcpl);
    return nfilters == 0 && (uint64_t)H5Dget_storage_size(obj) < bytes;
}

/* Adds dataset `name` of group g to the image as "optimizer/vars/<name>". */
static clopt_status add_dataset(h5_img *m, h5_strings *hs, hid_t g, const char *name,
                                const char *path, char *err, size_t errn) {
    char msg[256];
    hid_t obj = H5Oopen(g, name, H5P_DEFAULT);
    if (obj < 0)
        return h5_fail(CLOPT_ERR_CORRUPT_FILE, err, errn, "%s: /optimizer/vars/%s: %s", path,
                       name, h5_msg(msg));
    if (H5Iget_type(obj) != H5I_DATASET) {
        H5Oclose(obj);
        return h5_fail(CLOPT_ERR_CORRUPT_FILE, err, errn,
                       "%s: /optimizer/vars/%s is not a dataset", path, name);
    }
    hid_t t = H5Dget_type(obj), s = H5Dget_space(obj), mt = -1;
    clopt_status st = CLOPT_OK;
    int64_t shape[CLOPT__ST_MAX_NDIM];
    int ndim = 0;
    clopt__st_dtype d = CLOPT__ST_NDTYPES;
    uint64_t bytes = 0;
    if (t < 0 || s < 0) {
        st = h5_fail(CLOPT_ERR_CORRUPT_FILE, err, errn, "%s: /optimizer/vars/%s: %s", path, name,
                     h5_msg(msg));
        goto out;
    }
    char where[300];
    snprintf(where, sizeof where, "/optimizer/vars/%s", name);
    if ((st = st_dtype_of(hs, obj, t, where, &d, err, errn)) != CLOPT_OK) goto out;
    if (d == CLOPT__ST_NDTYPES) {
        st = h5_fail(CLOPT_ERR_FILE_MISMATCH, err, errn,
                     "%s: /optimizer/vars/%s has an HDF5 type clopt does not read (class %d, %zu "
                     "bytes)",
                     path, name, (int)H5Tget_class(t), H5Tget_size(t));
        goto out;
    }
    H5S_class_t sc = H5Sget_simple_extent_type(s);
    int nd = sc == H5S_SCALAR ? 0 : H5Sget_simple_extent_ndims(s);
    if (sc == H5S_NULL || nd < 0 || nd > CLOPT__ST_MAX_NDIM) {
        st = h5_fail(CLOPT_ERR_CORRUPT_FILE, err, errn,
                     "%s: /optimizer/vars/%s has no data or a rank above %d", path, name,
                     CLOPT__ST_MAX_NDIM);
        goto out;
    }
    ndim = nd;
    hsize_t dims[CLOPT__ST_MAX_NDIM];
    if (ndim) H5Sget_simple_extent_dims(s, dims, NULL);
    bytes = clopt__st_dtype_size(d);
    for (int i = 0; i < ndim; i++) {
        shape[i] = (int64_t)dims[i];
        if (dims[i] && bytes > ((uint64_t)1 << 40) / dims[i]) {
            st = h5_fail(CLOPT_ERR_CORRUPT_FILE, err, errn,
                         "%s: /optimizer/vars/%s is larger than clopt accepts", path, name);
            goto out;
        }
        bytes *= dims[i];
    }
    if (not_stored(obj, bytes)) {
        st = h5_fail(CLOPT_ERR_CORRUPT_FILE, err, errn,
                     "%s: /optimizer/vars/%s: its shape needs %llu bytes but the file holds %llu "
                     "of them",
                     path, name, (unsigned long long)bytes,
                     (unsigned long long)H5Dget_storage_size(obj));
        goto out;
    }
    unsigned char *dst;
    size_t at = m->size;
    if (img_append(m, (size_t)bytes, &dst) != 0) {
        st = h5_fail(CLOPT_ERR_OUT_OF_MEMORY, err, errn, "%s: out of host memory", path);
        goto out;
    }
    mt = mem_type(d, t);
    if (bytes && H5Dread(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0) {
        st = h5_fail(CLOPT_ERR_CORRUPT_FILE, err, errn,
                     "%s: reading /optimizer/vars/%s failed: %s", path, name, h5_msg(msg));
        goto out;
    }
    json_t *sh = json_array();
    for (int i = 0; i < ndim; i++) json_array_append_new(sh, json_integer(shape[i]));
    char *tname = clopt__format("optimizer/vars/%s", name);
    json_t *e = json_pack("{s:s, s:o, s:[I,I]}", "dtype", clopt__st_dtype_name(d), "shape", sh,
                          "data_offsets", (json_int_t)at, (json_int_t)(at + bytes));
    if (!tname || !e || json_object_set_new(m->header, tname, e) != 0)
        st = h5_fail(CLOPT_ERR_OUT_OF_MEMORY, err, errn, "%s: out of host memory", path);
    free(tname);
out:
    if (mt >= 0) H5Tclose(mt);
    if (t >= 0) H5Tclose(t);
    if (s >= 0) H5Sclose(s);
    H5Oclose(obj);
    return st;
}

clopt_status clopt__h5_read(const char *path, clopt__st_file *f, char *err, size_t errn) {
    memset(f, 0, sizeof *f);
    char msg[256];
    int fd = clopt__open_regular(path, NULL, err, errn);
    if (fd < 0) return CLOPT_ERR_IO;
    close(fd);
    if (!clopt__is_hdf5_file(path))
        return h5_fail(CLOPT_ERR_CORRUPT_FILE, err, errn,
                       "%s: not an HDF5 file (no HDF5 signature at byte offset 0)", path);
    h5_quiet();
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0)
        return h5_fail(CLOPT_ERR_CORRUPT_FILE, err, errn, "%s: libhdf5 cannot open it: %s", path,
                       h5_msg(msg));
    clopt_status st = CLOPT_OK;
    hid_t g = -1;
    if (H5Lexists(file, "optimizer", H5P_DEFAULT) <= 0 ||
        H5Lexists(file, "optimizer/vars", H5P_DEFAULT) <= 0 ||
        (g = H5Gopen2(file, "optimizer/vars", H5P_DEFAULT)) < 0) {
        H5Fclose(file);
        return h5_fail(CLOPT_ERR_FILE_MISMATCH, err, errn,
                       "%s: the file has no group /optimizer/vars (no optimizer state: Keras "
                       "saves it for a compiled model whose optimizer is built)",
                       path);
    }
    H5G_info_t info;
    h5_img m = {json_object(), NULL, 0, 0};
    h5_strings hs = {path, 0, ""};
    if (!m.header || H5Gget_info(g, &info) < 0)
        st = h5_fail(CLOPT_ERR_CORRUPT_FILE, err, errn, "%s: /optimizer/vars: %s", path,
                     h5_msg(msg));
    for (hsize_t i = 0; st == CLOPT_OK && i < info.nlinks; i++) {
        char name[256];
        ssize_t len = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name,
                                         H5P_DEFAULT);
        if (len < 0 || (size_t)len >= sizeof name)
            st = h5_fail(CLOPT_ERR_CORRUPT_FILE, err, errn,
                         "%s: /optimizer/vars: link %llu has no usable name", path,
                         (unsigned long long)i);
        else
            st = add_dataset(&m, &hs, g, name, path, err, errn);
    }
    H5Gclose(g);
    H5Fclose(file);
    if (st == CLOPT_OK) {
        /* the image: 8-byte length, header, data; then the usual validation */
        char *text = json_dumps(m.header, JSON_COMPACT | JSON_PRESERVE_ORDER);
        size_t hl = text ? strlen(text) : 0;
        unsigned char *img = text ? malloc(8 + hl + m.size + 1) : NULL;
        if (!img) {
            st = h5_fail(CLOPT_ERR_OUT_OF_MEMORY, err, errn, "%s: out of host memory", path);
        } else {
            for (int k = 0; k < 8; k++) img[k] = (unsigned char)((uint64_t)hl >> (8 * k));
            memcpy(img + 8, text, hl);
            if (m.size) memcpy(img + 8 + hl, m.data, m.size);
            st = clopt__st_parse(img, 8 + hl + m.size, path, f, err, errn);
        }
        free(text);
    }
    json_decref(m.header);
    free(m.data);
    return st;
}

/* Writes a variable-length UTF-8 string attribute, as h5py writes a Python str. */
static int write_str_attr(hid_t obj, const char *name, const char *value) {
    hid_t t = H5Tcopy(H5T_C_S1), s = H5Screate(H5S_SCALAR), a = -1;
    int rc = -1;
    if (t >= 0 && s >= 0 && H5Tset_size(t, H5T_VARIABLE) >= 0 &&
        H5Tset_cset(t, H5T_CSET_UTF8) >= 0 &&
        (a = H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
        H5Awrite(a, t, &value) >= 0)
        rc = 0;
    if (a >= 0) H5Aclose(a);
    if (s >= 0) H5Sclose(s);
    if (t >= 0) H5Tclose(t);
    return rc;
}

/* The optimizer's name from the "optimizer_config" metadata (config.name), or NULL. */
static char *optimizer_name(const char *const *meta, size_t nmeta) {
    for (size_t i = 0; i < nmeta; i++) {
        if (strcmp(meta[2 * i], "optimizer_config") != 0) continue;
        json_t *c = json_loads(meta[2 * i + 1], 0, NULL);
        const char *n = json_string_value(json_object_get(json_object_get(c, "config"), "name"));
        char *r = n ? clopt__strdup(n) : NULL;
        json_decref(c);
        return r;
    }
    return NULL;
}

/* Copies the file at `path` into the temporary file. */
static clopt_status copy_into(clopt__atomic_file *af, const char *path, char *err, size_t errn) {
    int fd = clopt__open_regular(path, NULL, err, errn);
    if (fd < 0) return CLOPT_ERR_IO;
    unsigned char buf[65536];
    clopt_status st = CLOPT_OK;
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            st = h5_fail(CLOPT_ERR_IO, err, errn, "%s: read failed: %s", path, strerror(errno));
            break;
        }
        if (r == 0) break;
        if ((st = clopt__atomic_write(af, buf, (size_t)r, err, errn)) != CLOPT_OK) break;
    }
    close(fd);
    return st;
}

/* The creation properties of a dataset: HDF5's Fletcher32 checksum filter, which libhdf5 (and so
 * h5py and Keras) verifies on every read, needs a chunked layout: chunks of at most 16 MiB,
 * halving the leading dimensions first. A scalar or empty dataset cannot be chunked and is
 * written contiguous, without a checksum. */
static hid_t checksummed_layout(int ndim, const hsize_t *dims, size_t bytes) {
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (dcpl < 0 || ndim == 0 || bytes == 0) return dcpl;
    hsize_t chunk[CLOPT__ST_MAX_NDIM];
    memcpy(chunk, dims, (size_t)ndim * sizeof *chunk);
    size_t esize = bytes, cb = bytes;
    for (int d = 0; d < ndim; d++) esize /= (size_t)dims[d];
    for (int d = 0; d < ndim && cb > ((size_t)16 << 20); d++)
        while (chunk[d] > 1 && cb > ((size_t)16 << 20)) {
            chunk[d] = (chunk[d] + 1) / 2;
            cb = esize;
            for (int k = 0; k < ndim; k++) cb *= (size_t)chunk[k];
        }
    if (H5Pset_chunk(dcpl, ndim, chunk) < 0 || H5Pset_fletcher32(dcpl) < 0) {
        H5Pclose(dcpl);
        return -1;
    }
    return dcpl;
}

/* Writes the tensors named "optimizer/vars/<i>" into group g. */
static clopt_status write_datasets(hid_t g, const clopt__st_out *t, size_t n,
                                   clopt__st_fill_fn fill, void *user, const char *path,
                                   char *err, size_t errn) {
    const char *prefix = "optimizer/vars/";
    size_t maxb = 0;
    for (size_t i = 0; i < n; i++) {
        size_t b = clopt__st_dtype_size(t[i].dtype);
        for (int d = 0; d < t[i].ndim; d++) b *= (size_t)t[i].shape[d];
        if (b > maxb) maxb = b;
    }
    unsigned char *buf = malloc(maxb ? maxb : 1);
    if (!buf) return h5_fail(CLOPT_ERR_OUT_OF_MEMORY, err, errn, "%s: out of host memory", path);
    clopt_status st = CLOPT_OK;
    char msg[256];
    for (size_t i = 0; st == CLOPT_OK && i < n; i++) {
        if (strncmp(t[i].name, prefix, strlen(prefix)) != 0) continue;
        const char *dname = t[i].name + strlen(prefix);
        size_t b = clopt__st_dtype_size(t[i].dtype);
        hsize_t dims[CLOPT__ST_MAX_NDIM];
        for (int d = 0; d < t[i].ndim; d++) {
            dims[d] = (hsize_t)t[i].shape[d];
            b *= (size_t)t[i].shape[d];
        }
        if ((st = fill(user, i, buf, b, err, errn)) != CLOPT_OK) break;
        int bf16 = t[i].dtype == CLOPT__ST_BF16;
        hid_t ft = t[i].dtype == CLOPT__ST_F16 ? f16_type()
                   : bf16                      ? H5Tcreate(H5T_OPAQUE, 2)
                                               : mem_type(t[i].dtype, -1);
        if (bf16 && ft >= 0) H5Tset_tag(ft, "bfloat16");
        hid_t s = t[i].ndim ? H5Screate_simple(t[i].ndim, dims, NULL) : H5Screate(H5S_SCALAR);
        hid_t dcpl = checksummed_layout(t[i].ndim, dims, b);
        hid_t ds = (ft >= 0 && s >= 0 && dcpl >= 0)
                       ? H5Dcreate2(g, dname, ft, s, H5P_DEFAULT, dcpl, H5P_DEFAULT)
                       : -1;
        if (dcpl >= 0) H5Pclose(dcpl);
        if (ds < 0 || H5Dwrite(ds, ft, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0 ||
            (bf16 && write_str_attr(ds, "dtype", "bfloat16") != 0))
            st = h5_fail(CLOPT_ERR_IO, err, errn, "%s: writing dataset /optimizer/vars/%s failed: %s",
                         path, dname, h5_msg(msg));
        if (ds >= 0) H5Dclose(ds);
        if (s >= 0) H5Sclose(s);
        if (ft >= 0) H5Tclose(ft);
    }
    free(buf);
    return st;
}

clopt_status clopt__h5_write(const char *path, const clopt__st_out *t, size_t n,
                             const char *const *meta, size_t nmeta, clopt__st_fill_fn fill,
                             void *user, char *err, size_t errn) {
    char msg[256];
    int exists = access(path, F_OK) == 0;
    if (exists && !clopt__is_hdf5_file(path))
        return h5_fail(CLOPT_ERR_FILE_MISMATCH, err, errn,
                       "%s: the file exists and is not an HDF5 file; not replacing it", path);
    h5_quiet();
    clopt__atomic_file af;
    clopt_status st = clopt__atomic_begin(&af, path, err, errn);
    if (st != CLOPT_OK) return st;
    if (exists) st = copy_into(&af, path, err, errn);
    hid_t file = -1, og = -1, g = -1;
    if (st == CLOPT_OK) {
        file = exists ? H5Fopen(af.tmp, H5F_ACC_RDWR, H5P_DEFAULT)
                      : H5Fcreate(af.tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        if (file < 0)
            st = h5_fail(exists ? CLOPT_ERR_CORRUPT_FILE : CLOPT_ERR_IO, err, errn,
                         "%s: libhdf5 cannot %s it: %s", path, exists ? "open" : "create",
                         h5_msg(msg));
    }
    if (st == CLOPT_OK) {
        og = H5Lexists(file, "optimizer", H5P_DEFAULT) > 0
                 ? H5Gopen2(file, "optimizer", H5P_DEFAULT)
                 : H5Gcreate2(file, "optimizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (og >= 0 && H5Lexists(og, "vars", H5P_DEFAULT) > 0 &&
            H5Ldelete(og, "vars", H5P_DEFAULT) < 0) {
            H5Gclose(og);
            og = -1;
        }
        if (og >= 0) g = H5Gcreate2(og, "vars", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        char *name = optimizer_name(meta, nmeta);
        if (g < 0 || (name && write_str_attr(g, "name", name) != 0))
            st = h5_fail(CLOPT_ERR_IO, err, errn, "%s: making the group /optimizer/vars failed: %s",
                         path, h5_msg(msg));
        free(name);
    }
    if (st == CLOPT_OK) st = write_datasets(g, t, n, fill, user, path, err, errn);
    if (g >= 0) H5Gclose(g);
    if (og >= 0) H5Gclose(og);
    if (file >= 0 && H5Fclose(file) < 0 && st == CLOPT_OK)
        st = h5_fail(CLOPT_ERR_IO, err, errn, "%s: closing the HDF5 file failed: %s", path,
                     h5_msg(msg));
    if (st == CLOPT_OK) return clopt__atomic_commit(&af, err, errn);
    clopt__atomic_abort(&af);
    return st;
}

typedef struct visit {
    FILE *out;
    clopt_status st;
    char *err;
    size_t errn;
    h5_strings hs;
} visit;

static const char *h5_dtype_text(clopt__st_dtype d, hid_t t, char *buf, size_t n) {
    static const char *const names[CLOPT__ST_NDTYPES] = {
        [CLOPT__ST_U8] = "uint8",     [CLOPT__ST_I8] = "int8",       [CLOPT__ST_I16] = "int16",
        [CLOPT__ST_U16] = "uint16",   [CLOPT__ST_F16] = "float16",   [CLOPT__ST_BF16] = "bfloat16",
        [CLOPT__ST_I32] = "int32",    [CLOPT__ST_U32] = "uint32",    [CLOPT__ST_F32] = "float32",
        [CLOPT__ST_F64] = "float64",  [CLOPT__ST_I64] = "int64",     [CLOPT__ST_U64] = "uint64"};
    if (d < CLOPT__ST_NDTYPES && names[d]) return names[d];
    snprintf(buf, n, "class%d/%zu", (int)H5Tget_class(t), H5Tget_size(t));
    return buf;
}

static herr_t visit_cb(hid_t root, const char *name, const H5L_info_t *info, void *data) {
    (void)info;
    visit *v = data;
    hid_t obj = H5Oopen(root, name, H5P_DEFAULT);
    if (obj < 0) return 0;
    char attr[256], where[4200];
    snprintf(where, sizeof where, "/%s", name);
    if (H5Iget_type(obj) == H5I_GROUP) {
        int rc = read_str_attr(&v->hs, obj, "name", where, attr, sizeof attr, v->err, v->errn);
        if (rc == 0) fprintf(v->out, "  /%s/  (name: %s)\n", name, attr);
        H5Oclose(obj);
        if (rc < 0) v->st = (clopt_status)rc;
        return rc < 0; /* a refused attribute ends the listing */
    }
    if (H5Iget_type(obj) != H5I_DATASET) {
        H5Oclose(obj);
        return 0;
    }
    hid_t t = H5Dget_type(obj), s = H5Dget_space(obj);
    clopt__st_dtype d;
    clopt_status dst = st_dtype_of(&v->hs, obj, t, where, &d, v->err, v->errn);
    if (dst != CLOPT_OK) {
        v->st = dst;
        H5Tclose(t), H5Sclose(s), H5Oclose(obj);
        return 1;
    }
    int nd = H5Sget_simple_extent_type(s) == H5S_SCALAR ? 0 : H5Sget_simple_extent_ndims(s);
    hsize_t dims[CLOPT__ST_MAX_NDIM];
    int64_t shape[CLOPT__ST_MAX_NDIM];
    char sh[64 + 24 * CLOPT__ST_MAX_NDIM], dt[32];
    if (nd < 0 || nd > CLOPT__ST_MAX_NDIM) nd = 0;
    if (nd) H5Sget_simple_extent_dims(s, dims, NULL);
    /* The size, with the reader's cap (add_dataset): a corrupt or crafted file may claim any
     * dimensions, and an unchecked product could wrap around to a small buffer. */
    uint64_t bytes = H5Tget_size(t);
    int too_big = 0;
    for (int i = 0; i < nd; i++) {
        shape[i] = (int64_t)dims[i];
        if (dims[i] && bytes > ((uint64_t)1 << 40) / dims[i]) too_big = 1;
        else bytes *= dims[i];
    }
    int absent = !too_big && not_stored(obj, bytes);
    unsigned char *buf = too_big || absent ? NULL : malloc(bytes ? (size_t)bytes : 1);
    hid_t mt = d < CLOPT__ST_NDTYPES ? mem_type(d, t) : H5Tcopy(t);
    uint64_t h = 0;
    int ok = buf && (!bytes || H5Dread(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    if (ok) h = clopt__hash64(CLOPT__HASH_INIT, buf, (size_t)bytes);
    fprintf(v->out, "  /%-40s  %-9s  %-16s  ", name, h5_dtype_text(d, t, dt, sizeof dt),
            clopt__st_shape_str(nd, shape, sh, sizeof sh));
    if (too_big) fprintf(v->out, "%10s  (larger than clopt reads)\n", "> 2^40");
    else if (absent) fprintf(v->out, "%10" PRIu64 "  (not stored in the file)\n", bytes);
    else if (ok) fprintf(v->out, "%10" PRIu64 "  %016" PRIx64 "\n", bytes, h);
    else fprintf(v->out, "%10" PRIu64 "  (unreadable)\n", bytes);
    free(buf);
    H5Tclose(mt);
    H5Tclose(t);
    H5Sclose(s);
    H5Oclose(obj);
    return 0;
}

clopt_status clopt__inspect_h5(const char *path, FILE *out, char *err, size_t errn) {
    char msg[256];
    if (!clopt__is_hdf5_file(path)) {
        if (access(path, R_OK) != 0)
            return h5_fail(CLOPT_ERR_IO, err, errn, "%s: cannot open: %s", path, strerror(errno));
        return h5_fail(CLOPT_ERR_CORRUPT_FILE, err, errn, "%s: not an HDF5 file", path);
    }
    h5_quiet();
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0)
        return h5_fail(CLOPT_ERR_CORRUPT_FILE, err, errn, "%s: libhdf5 cannot open it: %s", path,
                       h5_msg(msg));
    fprintf(out, "%s: HDF5 (Keras .weights.h5 layout: optimizer state in /optimizer/vars)\n",
            path);
    fprintf(out, "datasets:\n  %-41s  %-9s  %-16s  %10s  %s\n", "path", "dtype", "shape", "bytes",
            "fnv1a64");
    visit v = {out, CLOPT_OK, err, errn, {path, 0, ""}};
    H5Lvisit(file, H5_INDEX_NAME, H5_ITER_INC, visit_cb, &v);
    H5Fclose(file);
    return ferror(out) ? CLOPT_ERR_IO : v.st;
}

#endif /* CLOPT_WITH_HDF5 */
