/* clopt: variables (device tensors: model weights, gradients, optimizer slots). */
#ifndef CLOPT_VARIABLE_H
#define CLOPT_VARIABLE_H

#include <stddef.h>
#include <stdint.h>
#include "clopt/export.h"
#include "clopt/status.h"
#include "clopt/context.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Element types. FLOAT16 and BFLOAT16 are storage formats (arithmetic in float32). */
typedef enum clopt_dtype {
    CLOPT_FLOAT32 = 0,
    CLOPT_FLOAT64 = 1,
    CLOPT_FLOAT16 = 2,
    CLOPT_BFLOAT16 = 3
} clopt_dtype;

/* The largest rank a variable may have. */
#define CLOPT_MAX_NDIM 8

/* A tensor in a context's device memory. Opaque. Variables are sub-allocations of large arena
 * blocks; variables created one after another are contiguous, which is what lets an optimizer
 * update many of them in one kernel launch. Gradients are variables too. */
typedef struct clopt_variable clopt_variable;

/* Size in bytes of one element of `dtype`, 0 for an invalid value. Since v0.1. */
CLOPT_API size_t clopt_dtype_size(clopt_dtype dtype);

/* Keras's name of `dtype` ("float32", "float64", "float16", "bfloat16"), NULL if invalid. */
CLOPT_API const char *clopt_dtype_name(clopt_dtype dtype);

/* Parses a Keras dtype name into *out. Returns CLOPT_OK or CLOPT_ERR_INVALID_ARGUMENT. */
CLOPT_API clopt_status clopt_dtype_from_name(const char *name, clopt_dtype *out);

/* Creates a variable.
 *   ctx: the context that owns it.
 *   name: borrowed and copied; may be NULL (then "variable"). Keras uses it for slot names
 *     ("dense/kernel" gives the slot "dense_kernel_momentum").
 *   dtype: element type. ndim: 0 (a scalar) to CLOPT_MAX_NDIM. shape: ndim sizes, each >= 1
 *     (may be NULL when ndim is 0).
 *   init_or_NULL: borrowed; the initial contents, row-major, of the variable's dtype; NULL means
 *     zeros.
 *   out: receives the variable; written only on success.
 * Returns CLOPT_OK, CLOPT_ERR_INVALID_ARGUMENT, CLOPT_ERR_OUT_OF_MEMORY or CLOPT_ERR_OPENCL.
 * Since v0.1. */
CLOPT_API clopt_status clopt_variable_create(clopt_context *ctx, const char *name,
                                             clopt_dtype dtype, int ndim, const int64_t *shape,
                                             const void *init_or_NULL, clopt_variable **out);

/* Releases a variable's memory. NULL is allowed, and so is a handle already destroyed (itself,
 * or with its context): nothing happens. A variable that a live optimizer was built with is not
 * destroyed (its apply would read freed memory): it is kept, and the context's last error says
 * which optimizer uses it; destroy the optimizer first. clopt_variable_release says so with a
 * status. Since v0.1. */
CLOPT_API void clopt_variable_destroy(clopt_variable *var);

/* clopt_variable_destroy with a status: CLOPT_OK (released), CLOPT_ERR_INVALID_ARGUMENT (NULL,
 * or a handle already destroyed, itself or with its context), or CLOPT_ERR_BAD_STATE (the
 * variable is kept: a live optimizer was built with it, the message naming the optimizer; or it
 * is an optimizer's own variable, which goes with the optimizer). Handles are checked against
 * the library's list of live handles, never by reading freed memory; an address reused by a
 * later allocation looks live again. Since v0.2. */
CLOPT_API clopt_status clopt_variable_release(clopt_variable *var);

/* Copies `nbytes` from host memory `src` into the variable. nbytes must equal the variable's
 * size (elements x dtype size). Returns CLOPT_OK, CLOPT_ERR_INVALID_ARGUMENT,
 * CLOPT_ERR_SHAPE_MISMATCH (wrong size) or CLOPT_ERR_OPENCL. Returns when src may be reused. */
CLOPT_API clopt_status clopt_variable_write(clopt_variable *var, const void *src, size_t nbytes);

/* Copies the variable into `dst` (nbytes must equal its size). Blocking: waits for the work
 * queued on it. Returns as clopt_variable_write. Since v0.1. */
CLOPT_API clopt_status clopt_variable_read(const clopt_variable *var, void *dst, size_t nbytes);

/* dst := src, dst += src, dst -= src. Both variables must be of one context, one shape and one
 * dtype. Queued on the device; returns CLOPT_OK, CLOPT_ERR_INVALID_ARGUMENT,
 * CLOPT_ERR_CONTEXT_MISMATCH, CLOPT_ERR_SHAPE_MISMATCH, CLOPT_ERR_DTYPE_MISMATCH or
 * CLOPT_ERR_OPENCL, and changes nothing on failure. Since v0.1. */
CLOPT_API clopt_status clopt_variable_assign(clopt_variable *dst, const clopt_variable *src);
CLOPT_API clopt_status clopt_variable_assign_add(clopt_variable *dst, const clopt_variable *src);
CLOPT_API clopt_status clopt_variable_assign_sub(clopt_variable *dst, const clopt_variable *src);

/* Accessors. The strings and the shape array are owned by the variable. */
CLOPT_API const char *clopt_variable_name(const clopt_variable *var);
CLOPT_API clopt_dtype clopt_variable_dtype(const clopt_variable *var);
CLOPT_API int clopt_variable_ndim(const clopt_variable *var);
CLOPT_API const int64_t *clopt_variable_shape(const clopt_variable *var);
/* Number of elements (1 for a scalar). */
CLOPT_API int64_t clopt_variable_size(const clopt_variable *var);
CLOPT_API clopt_context *clopt_variable_context(const clopt_variable *var);

#ifdef __cplusplus
}
#endif
#endif
