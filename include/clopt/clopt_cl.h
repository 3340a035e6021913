/* clopt: OpenCL interop. Lets a framework run its own kernels (or CLBlast) on clopt's buffers,
 * without copies. Only meaningful for contexts on the OpenCL backend. */
#ifndef CLOPT_CL_H
#define CLOPT_CL_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>
#include <stddef.h>
#include "clopt/export.h"
#include "clopt/status.h"
#include "clopt/context.h"
#include "clopt/optimizer.h"
#include "clopt/variable.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The context's cl_context and its in-order cl_command_queue (borrowed: do not release them;
 * retain them if they must outlive the context). Returns CLOPT_OK, CLOPT_ERR_INVALID_ARGUMENT,
 * or CLOPT_ERR_UNSUPPORTED for a "host" context. Since v0.1. */
CLOPT_API clopt_status clopt_context_cl_context(const clopt_context *ctx, cl_context *out);
CLOPT_API clopt_status clopt_context_cl_queue(const clopt_context *ctx, cl_command_queue *out);

/* The cl_mem holding a variable and the variable's byte offset in it (variables are
 * sub-allocations of arena buffers). The buffer is borrowed. Work enqueued on another queue must
 * be ordered against clopt's queue by the caller. Returns as above. Since v0.1. */
CLOPT_API clopt_status clopt_variable_cl_mem(const clopt_variable *var, cl_mem *mem,
                                             size_t *offset_bytes);

/* Where a built LossScaleOptimizer keeps its dynamic scale on the device: a float32 at
 * `offset_bytes` in `mem` (borrowed), for a training loop that scales its loss on the device
 * (clopt_optimizer_scale_loss answers on the host, so it waits for the device's last decision).
 * Each apply updates it in the order of clopt's queue; it stays valid until the optimizer is
 * destroyed. Only for an inner optimizer whose steps the device decides (README, "Loss
 * scaling"); the host's view is made current first (a write, once, before the first step).
 * Returns CLOPT_OK; CLOPT_ERR_INVALID_ARGUMENT (NULL, or not a LossScaleOptimizer);
 * CLOPT_ERR_NOT_BUILT; CLOPT_ERR_UNSUPPORTED (a "host" context, or an inner optimizer the host
 * decides for: Adafactor, Muon, gradient accumulation). Since v0.2. */
CLOPT_API clopt_status clopt_optimizer_cl_loss_scale(const clopt_optimizer *opt, cl_mem *mem,
                                                     size_t *offset_bytes);

#ifdef __cplusplus
}
#endif
#endif
