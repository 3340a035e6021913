/* clopt: status codes and their text. */
#ifndef CLOPT_STATUS_H
#define CLOPT_STATUS_H

#include "clopt/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Every fallible call returns a clopt_status. CLOPT_OK is zero; errors are negative and grouped in
 * bands: argument (-1..-19), configuration (-20..-39), resource and device (-40..-59), OpenCL
 * (-60..-79), file (-80..-99). Values are stable across releases. */
typedef enum clopt_status {
    CLOPT_OK = 0,

    CLOPT_ERR_INVALID_ARGUMENT = -1,  /* NULL handle or pointer, bad size, bad enum value */
    CLOPT_ERR_SHAPE_MISMATCH = -2,    /* tensors whose shapes or sizes must agree do not */
    CLOPT_ERR_DTYPE_MISMATCH = -3,    /* tensors whose dtypes must agree do not */
    CLOPT_ERR_LENGTH_MISMATCH = -4,   /* two lists that must have one length do not */
    CLOPT_ERR_UNKNOWN_VARIABLE = -5,  /* a variable the optimizer was not built with */
    CLOPT_ERR_NOT_BUILT = -6,         /* the call needs a built optimizer */
    CLOPT_ERR_NO_GRADIENTS = -7,      /* every gradient passed to apply was NULL */
    CLOPT_ERR_BAD_VALUE = -8,         /* a hyperparameter or argument out of its range */
    CLOPT_ERR_UNSUPPORTED = -9,       /* valid, but not possible on this backend or build */
    CLOPT_ERR_CONTEXT_MISMATCH = -10, /* objects from different contexts used together */
    CLOPT_ERR_BAD_STATE = -11,        /* the call is not allowed in the object's current state */

    CLOPT_ERR_JSON = -20,              /* malformed JSON text */
    CLOPT_ERR_UNKNOWN_OPTIMIZER = -21, /* a class_name that names no optimizer */
    CLOPT_ERR_UNKNOWN_KEY = -22,       /* a config key the class does not take */
    CLOPT_ERR_BAD_TYPE = -23,          /* a config value of the wrong JSON type */
    CLOPT_ERR_UNKNOWN_SCHEDULE = -24,  /* a learning-rate schedule class that does not exist */

    CLOPT_ERR_OUT_OF_MEMORY = -40,    /* host or device allocation failed */
    CLOPT_ERR_DEVICE_NOT_FOUND = -41, /* no device matches the spec, or none exists */

    CLOPT_ERR_OPENCL = -60,       /* an OpenCL call failed; the raw cl_int is kept */
    CLOPT_ERR_BUILD_FAILED = -61, /* a kernel failed to compile; the build log is kept */

    CLOPT_ERR_IO = -80,           /* a file could not be opened, read, written or renamed */
    CLOPT_ERR_CORRUPT_FILE = -81, /* a file's contents are malformed or truncated */
    CLOPT_ERR_FILE_MISMATCH = -82, /* a well-formed file that does not fit the target */

    CLOPT_ERR_REPLICAS_DIVERGED = -100, /* a strategy's replicas no longer hold the same values */
    CLOPT_ERR_REPLICAS_MISMATCH = -101  /* processes of a strategy disagree (config, variables) */
} clopt_status;

/* A static English sentence describing `status` ("shape mismatch"). Never NULL; unknown values
 * give "unknown status". Thread-safe. Since v0.1. */
CLOPT_API const char *clopt_status_string(clopt_status status);

/* The enumerator's name as a static string ("CLOPT_ERR_SHAPE_MISMATCH"); unknown values give
 * "CLOPT_ERR_UNKNOWN". Thread-safe. Since v0.1. */
CLOPT_API const char *clopt_status_name(clopt_status status);

#ifdef __cplusplus
}
#endif
#endif
