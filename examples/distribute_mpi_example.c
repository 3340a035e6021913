#include <stdio.h>
#include <mpi.h>
#include <clopt.h>
#include <clopt/distribute_mpi.h>

/* Data parallel over MPI ranks: Keras's distributed golden test, one replica per rank.
 * Run: mpiexec -n 2 ./build/distribute_mpi_example host   (or pocl:cpu:0, each rank its own) */
int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    /* Collective: every rank opens its own device; a failure on any rank fails them all. */
    clopt_strategy *s = NULL;
    clopt_status st = clopt_strategy_create_mpi(MPI_COMM_WORLD, argc > 1 ? argv[1] : "host", &s);
    if (st != CLOPT_OK) {
        fprintf(stderr, "%s: %s\n", clopt_status_name(st), clopt_last_create_error());
        MPI_Finalize();
        return 1;
    }
    const int64_t shape[1] = {4};
    const float init[4] = {1, 2, 3, 4}, grad[4] = {1, 6, 7, 2};
    clopt_variable *w, *g; /* this rank's copy of w (rank 0's values), and its gradient */
    clopt_mirrored_optimizer *sgd = NULL;
    if ((st = clopt_strategy_variable_create(s, "w", CLOPT_FLOAT32, 1, shape, init, &w)) ||
        (st = clopt_variable_create(clopt_strategy_context(s, 0), "g", CLOPT_FLOAT32, 1, shape,
                                    grad, &g)) ||
        (st = clopt_strategy_optimizer_from_config(
             s, "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.5, "
                "\"momentum\": 0.06}}", &sgd)))
        goto fail;
    /* SUM contract: each rank scales its loss by 1/ranks (here the gradient is given). */
    if (rank == 0)
        printf("%zu ranks, loss scale %g\n", clopt_strategy_num_replicas_in_sync(s),
               clopt_strategy_loss_scale(s));
    /* One row of one gradient on each rank; the ranks' gradients are summed in rank order. */
    if ((st = clopt_mirrored_optimizer_apply(sgd, &g, 1, &w, 1))) goto fail;
    float out[4];
    if ((st = clopt_variable_read(w, out, sizeof out))) goto fail;
    printf("rank %d: %g %g %g %g\n", rank, out[0], out[1], out[2], out[3]);
    clopt_strategy_destroy(s); /* collective too: before MPI_Finalize */
    MPI_Finalize();
    return 0;
fail: /* every rank gets the same status and message, naming the rank at fault */
    fprintf(stderr, "rank %d: %s: %s\n", rank, clopt_status_name(st), clopt_strategy_last_error(s));
    clopt_strategy_destroy(s);
    MPI_Finalize();
    return 1;
}
