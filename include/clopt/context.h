/* clopt: contexts (a device, its queue, its memory arenas and kernel cache). */
#ifndef CLOPT_CONTEXT_H
#define CLOPT_CONTEXT_H

#include <stddef.h>
#include "clopt/export.h"
#include "clopt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A device and everything clopt keeps for it. Opaque. Not internally locked: use one context
 * (and the objects made from it) from one thread at a time. */
typedef struct clopt_context clopt_context;

/* Creates a context on one device.
 *   device: borrowed, may be NULL. NULL means the environment variable CLOPT_DEVICE if set and
 *     not empty, else the first GPU of any OpenCL platform, else the first CPU device.
 *     "host" selects the plain C reference backend (no OpenCL needed). Otherwise a spec
 *     "platform[:type[:index]]": platform is a case-insensitive substring of the OpenCL platform
 *     name ("" or "*" match all), type is one of cpu, gpu, accelerator, any (default any), index
 *     counts the matching devices from 0 (default 0). Examples: "pocl:cpu:0", "nvidia:gpu:1".
 *     `clopt devices` prints the exact spec of every device.
 *   out: receives the context; written only on success.
 * Returns CLOPT_OK, CLOPT_ERR_INVALID_ARGUMENT (out NULL or a malformed spec),
 * CLOPT_ERR_BAD_VALUE (CLOPT_ARENA_MB set but not a whole number of MiB in [1, 1048576]),
 * CLOPT_ERR_DEVICE_NOT_FOUND, CLOPT_ERR_OPENCL or CLOPT_ERR_OUT_OF_MEMORY. On failure no context
 * exists to ask, so the reason is also kept per thread: see clopt_last_create_error.
 * Since v0.1. */
CLOPT_API clopt_status clopt_context_create(const char *device, clopt_context **out);

/* Releases the context and every variable and optimizer still alive in it. NULL is allowed, and
 * so is a context already destroyed: nothing happens. Destroying its variables or optimizers
 * afterwards does nothing either (their handles are gone); using them in other calls is
 * refused with CLOPT_ERR_INVALID_ARGUMENT where the call checks (variable read, write and
 * assign, optimizer apply). Since v0.1. */
CLOPT_API void clopt_context_destroy(clopt_context *ctx);

/* The whole story of the last failure of a call on this context or an object made from it: what
 * was being done, the culprit (variable, key, byte offset), and for OpenCL failures the call, its
 * raw error code and name, and for build failures the options and the build log. "" when nothing
 * failed yet. Owned by the context, valid until the next failing call. ctx NULL gives a static
 * message. Since v0.1. */
CLOPT_API const char *clopt_context_last_error(const clopt_context *ctx);

/* The message of the last clopt_context_create that failed on this thread ("" if none).
 * Thread-local storage, valid until the next failing create on this thread. Since v0.1. */
CLOPT_API const char *clopt_last_create_error(void);

/* The raw OpenCL error code (cl_int) of the last CLOPT_ERR_OPENCL or CLOPT_ERR_BUILD_FAILED on
 * this context, 0 if none. Since v0.1. */
CLOPT_API int clopt_context_last_cl_error(const clopt_context *ctx);

/* A human description of the context's device, e.g. "pthread-skylake (Portable Computing
 * Language)" or "host (C reference backend)". Owned by the context. Since v0.1. */
CLOPT_API const char *clopt_context_device_name(const clopt_context *ctx);

/* The backend's name: "host" or "opencl". Static string. Since v0.1. */
CLOPT_API const char *clopt_context_backend_name(const clopt_context *ctx);

/* Waits until all work queued on the context has finished. Returns CLOPT_OK,
 * CLOPT_ERR_INVALID_ARGUMENT or CLOPT_ERR_OPENCL. Since v0.1. */
CLOPT_API clopt_status clopt_finish(clopt_context *ctx);

/* One OpenCL device as clopt_device_list reports it. */
typedef struct clopt_device_info {
    char spec[96];           /* the exact string to pass to clopt_context_create */
    char platform[128];      /* OpenCL platform name */
    char name[128];          /* device name */
    char type[16];           /* "cpu", "gpu", "accelerator" or "other" */
    char driver_version[64];
    char opencl_version[64]; /* CL_DEVICE_VERSION */
    unsigned compute_units;
    unsigned long long global_mem_bytes;
    int fp64;                /* cl_khr_fp64 or a double fp config */
    int fp16;                /* cl_khr_fp16 */
} clopt_device_info;

/* Lists the OpenCL devices of every platform, in the order specs count them. Fills up to `cap`
 * entries of `infos` (which may be NULL when cap is 0) and sets *count to the number of devices.
 * No platform at all gives CLOPT_OK with *count 0. Returns CLOPT_OK, CLOPT_ERR_INVALID_ARGUMENT
 * or CLOPT_ERR_OPENCL. Thread-safe. Since v0.1. */
CLOPT_API clopt_status clopt_device_list(clopt_device_info *infos, size_t cap, size_t *count);

/* Frees memory that clopt returned to the caller (for example clopt_optimizer_get_config's
 * JSON). NULL is allowed. Since v0.1. */
CLOPT_API void clopt_free(void *ptr);

#ifdef __cplusplus
}
#endif
#endif
