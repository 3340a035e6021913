/* Tool-internal: the little of clopt's internals that the `clopt` command (tools/) uses beyond
 * the public API (include/). NOT public: no stability promise, not installed, for tools/ only.
 * tools/ see src/tool/ and include/ only (tools/CMakeLists.txt), so they reach nothing else of
 * src/. The declarations repeat
 * the internal ones they stand for; src/tool/tool_internal.c includes both, so the compiler checks
 * that they agree. */
#ifndef CLOPT_TOOL_INTERNAL_H
#define CLOPT_TOOL_INTERNAL_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>
#include "clopt.h"

/* ---- `clopt inspect` (src/io) ---- */

/* Whether `path` starts with the HDF5 signature. */
int clopt__is_hdf5_file(const char *path);
/* Prints a summary of a safetensors file, or of every dataset of an HDF5 file, to `out`; on
 * failure the message (naming the file and what is at fault) is in err. */
clopt_status clopt__inspect_file(const char *path, FILE *out, char *err, size_t errn);
clopt_status clopt__inspect_h5(const char *path, FILE *out, char *err, size_t errn);

/* ---- `clopt replay`'s input (src/io/files.c) ---- */

/* Opens `path` read-only, refusing at once what is not a regular file (a FIFO, socket, device
 * or directory); *size (if not NULL) gets its size. The descriptor, or -1 with the message
 * (naming the path) in err. */
int clopt__open_regular(const char *path, off_t *size, char *err, size_t errn);
/* Reads `fd` to its end into a NUL-terminated malloc'd buffer, refusing more than `max` bytes;
 * `what` names the input in messages. CLOPT_OK, CLOPT_ERR_IO or CLOPT_ERR_OUT_OF_MEMORY. */
clopt_status clopt__read_capped(int fd, const char *what, size_t max, unsigned char **bytes,
                                size_t *len, char *err, size_t errn);

/* ---- `clopt replay` (src/optim/json_write.c) ---- */

/* `v` compactly with Python-style reals, as clopt writes configs; caller frees. NULL when out
 * of memory. */
char *clopt__json_dump(const json_t *v);

/* ---- `clopt bench --optimizer Muon` (the device's matrix products) ---- */

/* A zero-filled device buffer of `bytes` on ctx's device; release it before the context. */
clopt_status clopt__tool_buffer_create(clopt_context *ctx, size_t bytes, void **buf);
void clopt__tool_buffer_release(clopt_context *ctx, void *buf);
/* One Newton-Schulz iteration's three products through the backend's gemm, finished: for each
 * of k matrices of m x n (m <= n) at stride m*n in x and y and m x m blocks in a and b,
 * A = X X^T, B = 2.0315 A A - 4.7750 A (B starting as A), X = B Y + 3.4445 X (Y a copy of X);
 * as three batched products over the k matrices (batched) or 3k single ones. rd: the real
 * dtype (float32 or float64) of the buffers. */
clopt_status clopt__tool_ns_products(clopt_context *ctx, clopt_dtype rd, void *x, void *y,
                                     void *a, void *b, size_t m, size_t n, size_t k,
                                     int batched);

#endif
