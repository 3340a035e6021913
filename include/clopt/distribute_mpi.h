/* clopt: data-parallel training across processes over Open MPI (or any MPI-3 library): one
 * replica per rank, the strategy of clopt/distribute.h with its all-reduce between processes.
 * Present when clopt was built with MPI (CMake finds it: CLOPT_WITH_MPI); link the program
 * against MPI too (find_package(MPI) and MPI::MPI_C, or build it with mpicc). */
#ifndef CLOPT_DISTRIBUTE_MPI_H
#define CLOPT_DISTRIBUTE_MPI_H

#include <mpi.h>
#include "clopt/distribute.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Every call below is collective: every rank of the strategy's communicator makes it, in the
 * same order, and every rank returns the same status. A failure on one rank (bad input, a
 * device that cannot be opened, a variable list that differs) is reported on every rank,
 * naming the rank, instead of leaving the others waiting in a collective. The same holds for
 * clopt_strategy_variable_create, clopt_mirrored_optimizer_build and
 * clopt_mirrored_optimizer_apply on an MPI strategy: they are collective too. */

/* Opens this rank's replicas on `local_device` (as clopt_context_create takes it: "host",
 * "pocl:cpu:0", NULL for the default; or a comma-separated list as clopt_strategy_create takes
 * it, "pocl:cpu:0,pocl:cpu:1": one replica per device, the same device twice refused). Global
 * replicas are numbered rank-major over the ranks of `comm`: rank 0's in list order, then rank
 * 1's...; ranks may hold different counts (the strategy works on its own duplicate of comm, so
 * its messages never meet the caller's). On this strategy, clopt_strategy_num_replicas is this
 * rank's replicas (the apply and build lists have one row each); clopt_strategy_num_replicas_in_sync
 * counts every rank's, and clopt_strategy_loss_scale is 1/that. Variables made with
 * clopt_strategy_variable_create take rank 0's first replica's contents on every replica
 * (Horovod's broadcast_variables). The all-reduce sums the replicas' gradients in global replica
 * order (a reduce-scatter by hand with MPI_Alltoallv, each rank summing its share of the elements
 * over every replica in order, then MPI_Allgatherv), through host memory, so that every replica
 * gets the same bits whatever the timing, and the bits a single process gets from
 * clopt_strategy_create_replicated over as many host replicas. A device failure during apply
 * before the exchange fails every rank alike with nothing changed; one after it returns
 * CLOPT_ERR_REPLICAS_DIVERGED on every rank (clopt_mirrored_optimizer_broadcast restores rank
 * 0's state). CLOPT_DIST_CHECK set on any rank compares every rank's replicas.
 *   comm: an intra-communicator; MPI must be initialized (MPI_Init or MPI_Init_thread; the
 *     strategy calls MPI from the thread that calls clopt, MPI_THREAD_FUNNELED is enough).
 *   out: written only on success.
 * Returns CLOPT_OK, CLOPT_ERR_INVALID_ARGUMENT (out NULL, MPI not initialized, comm
 * MPI_COMM_NULL, a bad or repeated device in a list), what clopt_context_create returns on the
 * rank that failed, or CLOPT_ERR_OUT_OF_MEMORY; clopt_last_create_error names the rank. Destroy
 * with clopt_strategy_destroy (collective too: before MPI_Finalize). Since v0.2. */
CLOPT_API clopt_status clopt_strategy_create_mpi(MPI_Comm comm, const char *local_device,
                                                 clopt_strategy **out);

/* The replicas in sync over every process: the number of ranks for an MPI strategy, else the
 * strategy's replicas (0 for NULL). Not collective. Since v0.2. */
CLOPT_API size_t clopt_strategy_num_replicas_in_sync(const clopt_strategy *s);

/* The global index of this process's first replica: for an MPI strategy, the replicas of the
 * ranks before it (its rank with one device per rank), else 0
 * (0 for NULL). Not collective. Since v0.2. */
CLOPT_API size_t clopt_strategy_first_replica(const clopt_strategy *s);

/* What the all-reduce cost this rank since the strategy was made: seconds inside it (reading
 * the gradients back, MPI, summing, writing them) and the bytes of gradients reduced (this
 * rank's share of the traffic is about twice that). For `clopt bench --mpi`. Not collective.
 * Returns CLOPT_OK or CLOPT_ERR_INVALID_ARGUMENT (NULL, or not an MPI strategy). Since v0.2. */
CLOPT_API clopt_status clopt_strategy_mpi_reduce_stats(const clopt_strategy *s, double *seconds,
                                                       uint64_t *bytes);

/* Copies rank 0's optimizer state to every rank: every optimizer variable (iteration counter,
 * learning rate, slots, a LossScaleOptimizer's scale and counter, gradient accumulators) and
 * the variables it was built on. Use it after restoring on rank 0 only, or after changing
 * state on one rank. Collective; a one-process strategy returns CLOPT_OK at once.
 * Returns CLOPT_OK, CLOPT_ERR_INVALID_ARGUMENT, CLOPT_ERR_NOT_BUILT (on some rank),
 * CLOPT_ERR_REPLICAS_MISMATCH (ranks built differently) or a device error. Since v0.2. */
CLOPT_API clopt_status clopt_mirrored_optimizer_broadcast(clopt_mirrored_optimizer *m);

/* A checkpoint of an MPI strategy's training state: rank 0 writes it with
 * clopt_checkpoint_save (atomically, as that does) from its replica; the others write nothing.
 *   vars: this rank's n model variables (its first replica's row; borrowed). path: read on rank 0 only.
 * Returns CLOPT_OK or rank 0's status (every rank returns it). Since v0.2. */
CLOPT_API clopt_status clopt_mirrored_optimizer_checkpoint_save_mpi(clopt_mirrored_optimizer *m,
                                                                    clopt_variable *const *vars,
                                                                    size_t n, const char *path);

/* Loads a checkpoint on rank 0 (clopt_checkpoint_load, with all its checks) and gives every
 * rank its state (clopt_mirrored_optimizer_broadcast): a file only rank 0 can read is enough.
 * On failure nothing has changed on any rank (but a device error while broadcasting).
 * Returns CLOPT_OK or the status of the failing step (every rank returns it). Since v0.2. */
CLOPT_API clopt_status clopt_mirrored_optimizer_checkpoint_load_mpi(clopt_mirrored_optimizer *m,
                                                                    clopt_variable *const *vars,
                                                                    size_t n, const char *path);

#ifdef __cplusplus
}
#endif

#endif
