/* The I/O layer's internals: safetensors files (safetensors.c), durable file replacement
 * (atomic_file.c), and the mapping of optimizer and model state to tensors (checkpoint.c).
 *
 * safetensors.c and atomic_file.c know nothing of contexts or optimizers, so the command-line
 * tool (`clopt inspect`) uses them as they are. Their errors are written into a caller's buffer
 * (CLOPT__IO_ERRN bytes) and always name the file, and the tensor or byte offset at fault. */
#ifndef CLOPT_IO_INTERNAL_H
#define CLOPT_IO_INTERNAL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include "clopt/optimizer.h"
#include "clopt/status.h"
#include "clopt/variable.h"

#define CLOPT__IO_ERRN 1024

/* The safetensors header may be at most this long (the reference implementation's cap). */
#define CLOPT__ST_MAX_HEADER 100000000ULL
/* The largest tensor rank the reader accepts (clopt variables have at most CLOPT_MAX_NDIM). */
#define CLOPT__ST_MAX_NDIM 32

/* ---- safetensors dtypes (the byte-sized ones of the format) ---- */

typedef enum clopt__st_dtype {
    CLOPT__ST_BOOL,
    CLOPT__ST_U8,
    CLOPT__ST_I8,
    CLOPT__ST_F8_E5M2,
    CLOPT__ST_F8_E4M3,
    CLOPT__ST_I16,
    CLOPT__ST_U16,
    CLOPT__ST_F16,
    CLOPT__ST_BF16,
    CLOPT__ST_I32,
    CLOPT__ST_U32,
    CLOPT__ST_F32,
    CLOPT__ST_F64,
    CLOPT__ST_I64,
    CLOPT__ST_U64,
    CLOPT__ST_NDTYPES
} clopt__st_dtype;

const char *clopt__st_dtype_name(clopt__st_dtype d);
size_t clopt__st_dtype_size(clopt__st_dtype d);
/* Returns 0 and sets *out for a known name ("F32"), else -1. */
int clopt__st_dtype_parse(const char *name, clopt__st_dtype *out);
/* The safetensors dtype of a clopt dtype. */
clopt__st_dtype clopt__st_from_clopt(clopt_dtype d);

/* ---- reading ---- */

typedef struct clopt__st_tensor {
    const char *name; /* borrowed from the parsed header */
    clopt__st_dtype dtype;
    int ndim;
    int64_t shape[CLOPT__ST_MAX_NDIM];
    uint64_t begin, end; /* data_offsets, relative to the start of the data */
} clopt__st_tensor;

typedef struct clopt__st_file {
    unsigned char *bytes; /* the whole file, owned */
    size_t size;
    uint64_t header_len;       /* N, the header's length in bytes */
    const unsigned char *data; /* bytes + 8 + N */
    uint64_t data_size;
    json_t *header;   /* owned */
    json_t *metadata; /* "__metadata__" (borrowed from header), NULL if absent */
    clopt__st_tensor *tensors; /* in header order */
    size_t ntensors;
} clopt__st_file;

/* Reads the whole file at `path` and validates it (clopt__st_parse). On failure *f is empty.
 * Returns CLOPT_OK, CLOPT_ERR_IO, CLOPT_ERR_CORRUPT_FILE or CLOPT_ERR_OUT_OF_MEMORY. */
clopt_status clopt__st_read(const char *path, clopt__st_file *f, char *err, size_t errn);

/* Validates a whole safetensors image and indexes it: the 8-byte header length (at most
 * CLOPT__ST_MAX_HEADER and within the file), a JSON object header starting with '{' (no duplicate
 * keys), "__metadata__" an object of strings, each tensor an object of exactly "dtype" (a known
 * name), "shape" (non-negative integers) and "data_offsets" ([begin, end] with begin <= end <= the
 * data size, end - begin == elements x dtype size), and the tensors, sorted by offset, covering
 * the data exactly, contiguous and without overlap. Takes ownership of `bytes` (malloc'd), also on
 * failure. `what` names the file in messages. Returns CLOPT_OK, CLOPT_ERR_CORRUPT_FILE or
 * CLOPT_ERR_OUT_OF_MEMORY. */
clopt_status clopt__st_parse(unsigned char *bytes, size_t size, const char *what,
                             clopt__st_file *f, char *err, size_t errn);

void clopt__st_free(clopt__st_file *f);
/* Checksums: clopt__st_write puts "crc32c:<tensor name>": "<8 lowercase hex digits>", the
 * CRC-32C of the tensor's bytes, into __metadata__ for every tensor; clopt__st_parse verifies
 * every such entry (CLOPT_ERR_CORRUPT_FILE naming the tensor on a mismatch). Files without them
 * (other writers') are read as before. */
#define CLOPT__ST_CRC_PREFIX "crc32c:"
/* 1 and *crc when the file holds a valid checksum of tensor t, 0 when none, -1 when malformed. */
int clopt__st_checksum(const clopt__st_file *f, const clopt__st_tensor *t, uint32_t *crc);
/* The tensor named `name`, or NULL. */
const clopt__st_tensor *clopt__st_find(const clopt__st_file *f, const char *name);
/* The metadata string `key`, or NULL. */
const char *clopt__st_meta(const clopt__st_file *f, const char *key);
/* Elements of a tensor (1 for rank 0). */
uint64_t clopt__st_elements(const clopt__st_tensor *t);
/* "[2, 3]" into buf. */
const char *clopt__st_shape_str(int ndim, const int64_t *shape, char *buf, size_t n);

/* ---- writing ---- */

typedef struct clopt__st_out {
    const char *name;
    clopt__st_dtype dtype;
    int ndim;
    const int64_t *shape;
} clopt__st_out;

/* Produces the little-endian bytes of tensor `i` into dst (exactly nbytes). Returns CLOPT_OK or
 * an error status after writing a message into err. */
typedef clopt_status (*clopt__st_fill_fn)(void *user, size_t i, void *dst, size_t nbytes,
                                          char *err, size_t errn);

/* Writes a safetensors file durably (clopt__atomic_*): the header holds "__metadata__" (the
 * string pairs meta[0..2*nmeta), key then value, and each tensor's checksum, see
 * CLOPT__ST_CRC_PREFIX) and the tensors in the order given, whose data
 * follow in that order. The header is padded with spaces to a multiple of 8 bytes. The bytes of
 * each tensor come from fill, one tensor at a time. On failure the file at `path` is untouched.
 * Returns CLOPT_OK, CLOPT_ERR_IO, CLOPT_ERR_OUT_OF_MEMORY or fill's status. */
clopt_status clopt__st_write(const char *path, const clopt__st_out *t, size_t n,
                             const char *const *meta, size_t nmeta, clopt__st_fill_fn fill,
                             void *user, char *err, size_t errn);

/* ---- checkpoints (checkpoint.c) over any container ----
 * A reader fills a validated clopt__st_file from `path` (clopt__st_read; keras_h5.c's reader
 * presents a .weights.h5 file's optimizer/vars datasets as one); a writer has clopt__st_write's
 * contract. clopt__checkpoint_save and _load are the public save and load calls over them. */
typedef clopt_status (*clopt__st_reader_fn)(const char *path, clopt__st_file *f, char *err,
                                            size_t errn);
typedef clopt_status (*clopt__st_writer_fn)(const char *path, const clopt__st_out *t, size_t n,
                                            const char *const *meta, size_t nmeta,
                                            clopt__st_fill_fn fill, void *user, char *err,
                                            size_t errn);
clopt_status clopt__checkpoint_save(const clopt_optimizer *opt, clopt_variable *const *vars,
                                   size_t n, const char *path, const char *fn,
                                   clopt__st_writer_fn writer);
clopt_status clopt__checkpoint_load(clopt_optimizer *opt, clopt_variable *const *vars, size_t n,
                                   const char *path, const char *fn, clopt__st_reader_fn reader);

/* ---- Keras .weights.h5 files (keras_h5.c; real only with CLOPT_WITH_HDF5) ----
 * The reader presents the datasets of the group "/optimizer/vars" ("0", "1", ...) as tensors
 * "optimizer/vars/<i>" of a safetensors image (no metadata), so that loading goes through the
 * same matching and checks; the writer writes the "optimizer/vars/<i>" tensors as those datasets
 * into a copy of the existing file (or a new one), replacing the old group, and puts the copy in
 * place durably. Without CLOPT_WITH_HDF5 both return CLOPT_ERR_UNSUPPORTED. */
clopt_status clopt__h5_read(const char *path, clopt__st_file *f, char *err, size_t errn);
clopt_status clopt__h5_write(const char *path, const clopt__st_out *t, size_t n,
                             const char *const *meta, size_t nmeta, clopt__st_fill_fn fill,
                             void *user, char *err, size_t errn);
/* Prints every dataset of an HDF5 file (path, dtype, shape, bytes, FNV-1a 64 of its raw bytes)
 * and the groups' "name" attributes. */
clopt_status clopt__inspect_h5(const char *path, FILE *out, char *err, size_t errn);
/* Whether `path` starts with the HDF5 signature. */
int clopt__is_hdf5_file(const char *path);

/* ---- durable replacement of a file ----
 * begin creates a temporary file next to `path` (same directory, so the rename cannot cross
 * file systems), with the mode of the file it replaces or 0666 minus the umask; write appends;
 * commit flushes it to disk (fsync), closes it, renames it over `path` and syncs the directory;
 * abort (also after a failed write or commit) closes and removes the temporary file. A crash at
 * any point leaves either the old file or the new one, whole; a crash before the rename may leave
 * a "<path>.tmp-<pid>-<n>" file behind, which nothing reads, and which the next begin for the same
 * path removes once process <pid> is gone.
 *
 * Test hooks (for the crash tests): the environment variable CLOPT_TEST_SAVE_CRASH set to
 * "after_open", "after_write", "after_fsync" or "after_rename" makes the process raise SIGKILL at
 * that point; CLOPT_TEST_SAVE_FAIL set to "write", "fsync", "rename" or "dirsync" makes that step
 * fail with EIO as if the system call had. */
typedef struct clopt__atomic_file {
    int fd;
    char *path;
    char *tmp;
} clopt__atomic_file;

clopt_status clopt__atomic_begin(clopt__atomic_file *af, const char *path, char *err,
                                 size_t errn);
clopt_status clopt__atomic_write(clopt__atomic_file *af, const void *p, size_t n, char *err,
                                 size_t errn);
/* Overwrites n bytes at offset `off` of what was written (the file keeps its length). */
clopt_status clopt__atomic_pwrite(clopt__atomic_file *af, uint64_t off, const void *p, size_t n,
                                  char *err, size_t errn);
/* On failure the temporary file is removed (no abort needed). */
clopt_status clopt__atomic_commit(clopt__atomic_file *af, char *err, size_t errn);
void clopt__atomic_abort(clopt__atomic_file *af);

/* ---- opening and reading files (files.c) ---- */

/* Writes the message into err (when err and errn) and returns st. */
#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
clopt_status clopt__io_fail(clopt_status st, char *err, size_t errn, const char *fmt, ...);

/* Opens `path` read-only if it is a regular file: the open is non-blocking (a FIFO without a
 * writer would block the open itself), the descriptor is checked with fstat, so that a FIFO,
 * socket, device or directory is refused at once ("not a regular file (a FIFO)"), and set back
 * to blocking. *size (if not NULL) gets the file's size. Returns the descriptor, or -1 after
 * writing the message (naming the path) into err; the status is then CLOPT_ERR_IO. */
int clopt__open_regular(const char *path, off_t *size, char *err, size_t errn);

/* Reads `fd` to its end into a NUL-terminated malloc'd buffer, refusing more than `max` bytes
 * without holding more than max + 2 of them. `what` names the input in messages. Returns
 * CLOPT_OK, CLOPT_ERR_IO (a read failed, or the input is longer than max) or
 * CLOPT_ERR_OUT_OF_MEMORY. */
clopt_status clopt__read_capped(int fd, const char *what, size_t max, unsigned char **bytes,
                                size_t *len, char *err, size_t errn);

/* ---- byte order ---- */

/* Converts `count` elements of `esize` bytes between host and little-endian order in place
 * (nothing to do on a little-endian host). */
void clopt__to_le(void *p, size_t esize, size_t count);

/* ---- inspection (`clopt inspect`) ---- */

/* Prints a safetensors file's summary to `out`: every tensor (name, dtype, shape, bytes and the
 * 64-bit FNV-1a checksum of its bytes), the metadata, and the optimizer config pretty-printed.
 * Returns CLOPT_OK or the status of clopt__st_read, with the message in err. */
clopt_status clopt__inspect_file(const char *path, FILE *out, char *err, size_t errn);
/* The same for a safetensors image in memory (the fuzz harness's entry point): takes ownership of
 * `bytes` (malloc'd) as clopt__st_parse does; `what` names it in the summary and messages. */
clopt_status clopt__inspect_image(unsigned char *bytes, size_t size, const char *what, FILE *out,
                                  char *err, size_t errn);

#endif
