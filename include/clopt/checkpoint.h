/* clopt: checkpoints. An optimizer's state (Keras's save_own_variables / load_own_variables) and
 * model variables in safetensors files, written durably and validated whole before anything
 * changes.
 *
 * The file format (README.md, "Checkpoints"): a safetensors file whose tensors are named by Keras
 * paths. Optimizer variable i (in the order of clopt_optimizer_variable, which is Keras's
 * `optimizer.variables` order) is "optimizer/vars/<i>": "optimizer/vars/0" is the raw iteration
 * counter (I64, shape []), "optimizer/vars/1" the learning rate (F32, shape []) when it is a float
 * rather than a schedule, then every slot with its variable's dtype (F32, F64, F16, BF16) and
 * shape, then class scalars (Nadam's u_product). Model variable "dense/kernel" is
 * "model/dense/kernel". "__metadata__" holds "format" ("clopt"), "format_version" ("1"),
 * "clopt_version", and with an optimizer "optimizer_config" (the JSON of
 * clopt_optimizer_get_config) and "optimizer_variables" (a JSON array of the variables' Keras
 * paths, for people and `clopt inspect`), and "crc32c:<tensor name>" for every tensor: the
 * CRC-32C of its bytes as 8 lowercase hex digits, verified by every load (a mismatch is
 * CLOPT_ERR_CORRUPT_FILE naming the tensor); files without these entries load as before. */
#ifndef CLOPT_CHECKPOINT_H
#define CLOPT_CHECKPOINT_H

#include <stddef.h>
#include "clopt/export.h"
#include "clopt/status.h"
#include "clopt/variable.h"
#include "clopt/optimizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The checkpoint format version clopt writes ("format_version" in the metadata). Files with a
 * larger version are refused with CLOPT_ERR_FILE_MISMATCH. */
#define CLOPT_CHECKPOINT_FORMAT_VERSION 1

/* Saves the optimizer's own variables (Keras's save_own_variables) and its config to a
 * safetensors file at `path`. The file is written to a temporary file in the same directory,
 * flushed to disk (fsync), renamed over `path`, and the directory is synced: a crash at any point
 * leaves either the old file or the new one, whole (a crash before the rename may leave a
 * "<path>.tmp-<pid>-<n>" file behind, which the next save to `path` removes once process <pid> is
 * gone). When `path` is a symbolic link it is followed: the link's target is replaced (the
 * temporary file is made beside the target) and the link stays. Waits for the work queued on
 * the optimizer's variables.
 *   opt: the optimizer; it must be built (Keras would save only the iteration counter and the
 *     learning rate of an unbuilt one, which no build can load back). path: borrowed, not empty.
 * Returns CLOPT_OK, CLOPT_ERR_INVALID_ARGUMENT (NULL argument, empty path), CLOPT_ERR_NOT_BUILT,
 * CLOPT_ERR_IO (the message names the path, the failing step and the system's error text; the
 * file at `path` is untouched and the temporary file removed; one exception: when only the final
 * directory sync fails, the new file is in place but its rename may not survive a power loss),
 * CLOPT_ERR_OUT_OF_MEMORY or CLOPT_ERR_OPENCL.
 * Thread-safety: as for the optimizer's context (one thread at a time); distinct paths may be
 * written concurrently from different contexts. Since v0.1. */
CLOPT_API clopt_status clopt_optimizer_save(const clopt_optimizer *opt, const char *path);

/* Loads the optimizer's own variables (Keras's load_own_variables) from a file that
 * clopt_optimizer_save or clopt_checkpoint_save wrote (or any safetensors file of that layout).
 * The whole file is read and validated first: its safetensors structure (header length cap and
 * bounds, JSON, dtype names, shapes, data offsets in range, contiguous, non-overlapping and
 * covering the data exactly), then that it fits the optimizer: when the metadata holds an
 * optimizer config its class must be the optimizer's (a LossScaleOptimizer's inner class too);
 * the "optimizer/vars/<i>" tensors must be exactly the optimizer's variables (count, names,
 * dtypes, shapes; the iteration counter may be I64 or I32); the iteration counter must be
 * non-negative and the learning rate finite. Only then are the slots written and the iteration
 * counter, learning rate and class scalars set; tensors outside "optimizer/" are ignored.
 * Hyperparameters are not taken from the file (as in Keras); the learning rate is, since it is a
 * variable. On any failure the optimizer is exactly as it was, and clopt_context_last_error names
 * the file and the tensor or byte offset at fault.
 *   opt: a built optimizer. Deliberate difference from Keras: Keras warns and loads nothing into
 *     an unbuilt optimizer; clopt returns CLOPT_ERR_NOT_BUILT. path: borrowed.
 * Returns CLOPT_OK, CLOPT_ERR_INVALID_ARGUMENT, CLOPT_ERR_NOT_BUILT, CLOPT_ERR_IO (cannot open
 * or read, or not a regular file: a FIFO, socket or device is refused at once, never waited on),
 * CLOPT_ERR_CORRUPT_FILE (malformed, truncated, or a recorded checksum that does not match),
 * CLOPT_ERR_FILE_MISMATCH (well formed
 * but not for this optimizer), CLOPT_ERR_OUT_OF_MEMORY or CLOPT_ERR_OPENCL (a device write
 * failed after validation; only then may some slots hold the file's values).
 * Thread-safety: as for the optimizer's context. Since v0.1. */
CLOPT_API clopt_status clopt_optimizer_load(clopt_optimizer *opt, const char *path);

/* Saves a whole training state to one file: model variables (tensor "model/<variable name>")
 * and, if opt is not NULL, the optimizer's variables and config as clopt_optimizer_save does.
 * Written as durably as clopt_optimizer_save.
 *   opt: NULL, or a built optimizer. vars: n variables (borrowed), with distinct names, of the
 *     optimizer's context; n may be 0 when opt is given. path: borrowed.
 * Returns CLOPT_OK, CLOPT_ERR_INVALID_ARGUMENT (NULL arguments, NULL or duplicate variables or
 * names, nothing to save), CLOPT_ERR_CONTEXT_MISMATCH, CLOPT_ERR_NOT_BUILT, CLOPT_ERR_IO,
 * CLOPT_ERR_OUT_OF_MEMORY or CLOPT_ERR_OPENCL.
 * Thread-safety: as for the context. Since v0.1. */
CLOPT_API clopt_status clopt_checkpoint_save(const clopt_optimizer *opt,
                                             clopt_variable *const *vars, size_t n,
                                             const char *path);

/* Loads a file written by clopt_checkpoint_save into model variables and, if opt is not NULL,
 * the optimizer, with every check of clopt_optimizer_load before anything changes. For each
 * variable the file must hold "model/<its name>" with its dtype and shape, and no other "model/"
 * tensor; the optimizer part is checked as by clopt_optimizer_load (with opt NULL, optimizer
 * tensors in the file are ignored, so a training checkpoint serves inference too).
 *   opt, vars, n, path: as for clopt_checkpoint_save.
 * Returns the statuses of clopt_optimizer_load and CLOPT_ERR_CONTEXT_MISMATCH. On failure no
 * variable, slot or counter has changed. Thread-safety: as for the context. Since v0.1. */
CLOPT_API clopt_status clopt_checkpoint_load(clopt_optimizer *opt, clopt_variable *const *vars,
                                             size_t n, const char *path);

/* Whether this build reads and writes Keras .weights.h5 files: 1 when clopt was built with
 * libhdf5 (CLOPT_WITH_HDF5), else 0 (then the two calls below return CLOPT_ERR_UNSUPPORTED).
 * Thread-safe. Since v0.1. */
CLOPT_API int clopt_checkpoint_has_h5(void);

/* Keras interop: writes the optimizer's variables into the optimizer part of a Keras
 * .weights.h5 file (what model.save_weights writes, and model.weights.h5 inside a .keras
 * archive): datasets "0", "1", ... in the group /optimizer/vars, in Keras's order and dtypes
 * (the iteration counter int64, float16 as h5py writes it, bfloat16 as a 2-byte opaque type with
 * the attribute dtype = "bfloat16"), the group carrying the attribute name = the optimizer's
 * name. If `path` is an HDF5 file, everything else in it (the model's layers) is kept and only
 * /optimizer/vars is replaced (HDF5 does not reclaim the old group's space; h5repack does); if
 * it does not exist, a file holding only /optimizer/vars is made. Durable as
 * clopt_optimizer_save: the new content is written to a copy, synced and renamed over `path`.
 *   opt: a built optimizer. path: borrowed.
 * Returns CLOPT_OK, CLOPT_ERR_INVALID_ARGUMENT, CLOPT_ERR_NOT_BUILT, CLOPT_ERR_UNSUPPORTED
 * (built without libhdf5), CLOPT_ERR_FILE_MISMATCH (path exists but is not an HDF5 file),
 * CLOPT_ERR_CORRUPT_FILE (an HDF5 file libhdf5 cannot open), CLOPT_ERR_IO,
 * CLOPT_ERR_OUT_OF_MEMORY or CLOPT_ERR_OPENCL; on failure `path` is untouched.
 * Thread-safety: libhdf5 is not thread-safe in its usual builds: do not run two .weights.h5 calls
 * at once in a process. clopt turns libhdf5's error printing off. Since v0.1. */
CLOPT_API clopt_status clopt_optimizer_save_h5(const clopt_optimizer *opt, const char *path);

/* Keras interop: loads the optimizer's variables from the group /optimizer/vars of a Keras
 * .weights.h5 file (written by Keras, h5py, or clopt_optimizer_save_h5), with every check of
 * clopt_optimizer_load before anything changes: the datasets must be exactly the optimizer's
 * variables ("0".."N-1", the dtypes and shapes of clopt_optimizer_variable's list; the iteration
 * counter and integer scalars may be int64 or int32). Messages name the dataset as the tensor
 * "optimizer/vars/<i>". Everything else in the file is ignored. A .weights.h5 file has no
 * optimizer config, so the class cannot be checked beyond the variable list.
 *   opt: a built optimizer (as clopt_optimizer_load). path: borrowed.
 * Returns the statuses of clopt_optimizer_load, and CLOPT_ERR_UNSUPPORTED when built without
 * libhdf5. Thread-safety: as clopt_optimizer_save_h5. Since v0.1. */
CLOPT_API clopt_status clopt_optimizer_load_h5(clopt_optimizer *opt, const char *path);

#ifdef __cplusplus
}
#endif
#endif
