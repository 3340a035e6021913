/* Status codes: text and names. */
#include "clopt/status.h"
#include "clopt/version.h"

#define CLOPT__STATUS_LIST(X)                                                           \
    X(CLOPT_OK, "success")                                                              \
    X(CLOPT_ERR_INVALID_ARGUMENT, "invalid argument")                                   \
    X(CLOPT_ERR_SHAPE_MISMATCH, "shape mismatch")                                       \
    X(CLOPT_ERR_DTYPE_MISMATCH, "dtype mismatch")                                       \
    X(CLOPT_ERR_LENGTH_MISMATCH, "lists of different lengths")                          \
    X(CLOPT_ERR_UNKNOWN_VARIABLE, "variable not known to the optimizer")                \
    X(CLOPT_ERR_NOT_BUILT, "optimizer not built")                                       \
    X(CLOPT_ERR_NO_GRADIENTS, "no gradients provided for any variable")                 \
    X(CLOPT_ERR_BAD_VALUE, "value out of range")                                        \
    X(CLOPT_ERR_UNSUPPORTED, "not supported")                                           \
    X(CLOPT_ERR_CONTEXT_MISMATCH, "objects from different contexts")                    \
    X(CLOPT_ERR_BAD_STATE, "not allowed in the current state")                          \
    X(CLOPT_ERR_JSON, "malformed JSON")                                                 \
    X(CLOPT_ERR_UNKNOWN_OPTIMIZER, "unknown optimizer class")                           \
    X(CLOPT_ERR_UNKNOWN_KEY, "unknown configuration key")                               \
    X(CLOPT_ERR_BAD_TYPE, "configuration value of the wrong type")                      \
    X(CLOPT_ERR_UNKNOWN_SCHEDULE, "unknown learning-rate schedule")                     \
    X(CLOPT_ERR_OUT_OF_MEMORY, "out of memory")                                         \
    X(CLOPT_ERR_DEVICE_NOT_FOUND, "device not found")                                   \
    X(CLOPT_ERR_OPENCL, "OpenCL error")                                                 \
    X(CLOPT_ERR_BUILD_FAILED, "kernel build failed")                                    \
    X(CLOPT_ERR_IO, "input/output error")                                               \
    X(CLOPT_ERR_CORRUPT_FILE, "corrupt or truncated file")                              \
    X(CLOPT_ERR_FILE_MISMATCH, "file does not match the target")                        \
    X(CLOPT_ERR_REPLICAS_DIVERGED, "replicas diverged")                                 \
    X(CLOPT_ERR_REPLICAS_MISMATCH, "replicas disagree")

const char *clopt_status_string(clopt_status status) {
    switch (status) {
#define X(code, text) \
    case code:        \
        return text;
        CLOPT__STATUS_LIST(X)
#undef X
    }
    return "unknown status";
}

const char *clopt_status_name(clopt_status status) {
    switch (status) {
#define X(code, text) \
    case code:        \
        return #code;
        CLOPT__STATUS_LIST(X)
#undef X
    }
    return "CLOPT_ERR_UNKNOWN";
}

unsigned clopt_version_number(void) { return CLOPT_VERSION_NUMBER; }
const char *clopt_version_string(void) { return CLOPT_VERSION_STRING; }
