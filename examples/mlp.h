/* mlp: a multilayer perceptron (dense layers, ReLU, softmax cross-entropy) whose forward and
 * backward passes run where its clopt context is: on an OpenCL device, GEMMs are CLBlast calls
 * and the element-wise work small kernels (mlp.c), all on one in-order queue; on the "host"
 * context, the same operations are plain C loops (the reference). Weights, biases and their
 * gradients are clopt variables; activations, the data set and the metric sums are device
 * buffers of the context. Part of the train_digits example. */
#ifndef MLP_H
#define MLP_H

#include <stdint.h>
#include "clopt.h"
#include "clopt/clopt_cl.h"

enum { MLP_MAX_LAYERS = 8 };

/* The metric sums the device accumulates (train/metrics): for the training batches of the
 * current epoch, then for the last held-out evaluation: loss sum, correct count, rows. */
enum { MLP_TRAIN = 0, MLP_EVAL = 3, MLP_NMETRICS = 6 };

/* Where the time of the profiled steps went (mlp_profile_begin). */
enum { MLP_T_GEMM, MLP_T_KERNEL, MLP_T_COUNT };

/* A float or int array on the device (mem + off elements) or on the host (host). */
typedef struct mlp_mem {
    cl_mem mem;
    size_t off;
    void *host;
} mlp_mem;

typedef struct mlp_gemm_call mlp_gemm_call;

/* A profiling marker: its end time closes the operation before it (category, GEMM call index
 * or -1); category -1 opens an interval without counting the time before it. */
typedef struct mlp_mark {
    cl_event ev;
    int category, call;
} mlp_mark;

typedef struct mlp {
    clopt_context *ctx;
    int on_device;
    int nlayers;                 /* dense layers: dims[0] -> dims[1] -> ... -> dims[nlayers] */
    int dims[MLP_MAX_LAYERS + 1];
    int rows_cap;                /* rows the activation buffers hold */
    int nrows, ntrain;           /* data set rows; the first ntrain train, the rest are held out */
    /* Model variables in Keras's order (dense/kernel, dense/bias, dense_1/kernel, ...), their
     * gradients, and the metric sums (saved in checkpoints with the model). */
    clopt_variable *vars[2 * MLP_MAX_LAYERS], *grads[2 * MLP_MAX_LAYERS], *metrics_var;
    mlp_mem w[MLP_MAX_LAYERS], b[MLP_MAX_LAYERS], gw[MLP_MAX_LAYERS], gb[MLP_MAX_LAYERS];
    mlp_mem act[MLP_MAX_LAYERS + 1]; /* act[0]: the gathered batch; act[l]: layer l's output */
    mlp_mem delta[MLP_MAX_LAYERS + 1]; /* dloss/d(pre-activation) of layer l */
    mlp_mem x, y, ybatch, perm, metrics;
    /* OpenCL */
    cl_context clctx;
    cl_command_queue queue; /* the context's, or the example's profiling queue */
    int own_queue;
    cl_device_id device;
    cl_program program;
    cl_kernel k_gather, k_bias_act, k_xent, k_relu_back;
    /* Profiling (mlp_create's `profile`): per-category device seconds and GEMM flops so far. */
    int profiling;
    mlp_mark *marks;
    int nmarks, cap_marks;
    double seconds[MLP_T_COUNT], gemm_flops;
    mlp_gemm_call *calls; /* the GEMMs of one step, for mlp_gemm_alone */
    int ncalls, record_calls;
} mlp;

/* Creates the model's variables (Glorot-uniform kernels from `seed`, zero biases), their
 * gradients and the buffers, and uploads the data set: x (nrows x dims[0], row-major) and labels
 * y. rows_cap: the most rows one forward pass takes. profile: run on a profiling queue of the
 * context's cl_context (OpenCL only). Returns 0, or -1 after printing why. */
int mlp_create(mlp *m, clopt_context *ctx, int nlayers, const int *dims, int rows_cap,
               const float *x, const int *y, int nrows, int ntrain, uint64_t seed, int profile);
void mlp_destroy(mlp *m);

/* Sets the training order of the coming epoch: rows perm[0..ntrain) of the data set. */
int mlp_set_order(mlp *m, const int *perm);

/* One training step's forward and backward passes on order[first .. first + rows), a share of
 * a global batch of global_rows rows (all of it on one device; under data parallelism each
 * replica's share): the gradients of the share's summed loss divided by global_rows (Keras's
 * contract: summed over the replicas, the global batch's mean) land in m->grads, the share's
 * sums in the train metrics. rows may be 0 (a replica with no share): zero gradients. */
int mlp_forward_backward(mlp *m, int first, int rows, int global_rows);

/* After an optimizer step: the host path reads the new weights back (no-op on a device). */
int mlp_after_step(mlp *m);

/* Evaluates the held-out rows, adding to the eval metric sums (zero them before). */
int mlp_evaluate(mlp *m);

/* mlp_read_metrics reads the metric sums (one blocking read); mlp_zero_metrics zeroes them. */
int mlp_read_metrics(mlp *m, float out[MLP_NMETRICS]);
int mlp_zero_metrics(mlp *m);

/* The host path keeps its metric sums, and a copy of the weights, in host memory: before a
 * checkpoint save mlp_sync_to_vars writes the sums into their variable; after a load
 * mlp_sync_from_vars reads the sums and the weights back. No-ops on a device. */
int mlp_sync_to_vars(mlp *m);
int mlp_sync_from_vars(mlp *m);

/* Waits for the queued work. */
int mlp_finish(mlp *m);

/* Profiling (a profiling queue only): mlp_profile_reset zeroes the sums; mlp_profile_collect
 * waits for the queued work and adds each operation's device time to m->seconds by category
 * (and to its GEMM call's). */
void mlp_profile_reset(mlp *m);
int mlp_profile_collect(mlp *m);

/* Runs each GEMM of the first step alone `reps` times, back to back, and prints its shape, its
 * rate within the profiled steps (`steps` of them) and CLBlast's rate alone; *flops and
 * *seconds receive the totals alone. Profiling queue only (else does nothing). */
int mlp_gemm_alone(mlp *m, int steps, int reps, double *flops, double *seconds);

/* The example's random numbers (splitmix64), and a float uniform in [lo, hi). */
uint64_t mlp_rng_next(uint64_t *state);
float mlp_rng_uniform(uint64_t *state, float lo, float hi);

/* FNV-1a 64 of the model variables' bytes, in order (a blocking read). */
int mlp_weights_hash(mlp *m, uint64_t *out);

/* Number of trainable parameters. */
int64_t mlp_param_count(const mlp *m);

#endif
