/* clopt: experimental API. Everything here may change or disappear in any release, minor ones
 * included; it is not part of the stable API that the version numbers promise. It exists for
 * clopt's own tools and tests (`clopt bench`) and for the curious. Not included by clopt.h. */
#ifndef CLOPT_EXPERIMENTAL_H
#define CLOPT_EXPERIMENTAL_H

#include <stdint.h>
#include "clopt/context.h"
#include "clopt/export.h"
#include "clopt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Device memory a context holds, as its backend's buffers (on the host backend, host memory
 * standing in for device memory). */
typedef struct clopt_memory_stats {
    uint64_t device_bytes;      /* bytes of every buffer the context holds now */
    uint64_t device_buffers;    /* how many buffers that is */
    uint64_t peak_device_bytes; /* the largest device_bytes so far */
    uint64_t buffer_creates;    /* buffers created since the context was (ever growing: a step
                                 * that allocates shows here) */
    uint64_t arena_bytes;       /* of device_bytes: arena blocks (variables, gradients, slots) */
    uint64_t arena_blocks;
    uint64_t arena_used_bytes;  /* of arena_bytes: reserved by live variables and slots (sizes
                                 * rounded up to whole chunks), the rest is free for new ones */
    uint64_t host_reads;        /* reads from device memory to the host since the context was
                                 * (each one waits for the device: a step that reads shows here) */
} clopt_memory_stats;

/* Fills *out with the context's current memory accounting. Returns CLOPT_OK, or
 * CLOPT_ERR_INVALID_ARGUMENT when ctx or out is NULL. Not thread-safe with other calls on the
 * context. Experimental. */
CLOPT_API clopt_status clopt_context_memory_stats(const clopt_context *ctx,
                                                  clopt_memory_stats *out);

#ifdef __cplusplus
}
#endif
#endif
