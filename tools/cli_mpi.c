/* The tool's MPI helpers (`clopt replay --mpi`, `clopt bench --mpi`): the only tool file that
 * sees mpi.h besides bench_mpi.c. Built with MPI when CMake found it (CLOPT_TOOL_MPI); without,
 * every call reports that clopt was built without MPI. */
#include <stdio.h>
#include "cli_internal.h"
#ifdef CLOPT_TOOL_MPI
#include <mpi.h>
#include "clopt/distribute_mpi.h"

static int started; /* MPI_Init was ours: MPI_Finalize is too */

int cli_mpi_init(int *rank, int *size) {
    int init = 0;
    MPI_Initialized(&init);
    if (!init) {
        if (MPI_Init(NULL, NULL) != MPI_SUCCESS) {
            fprintf(stderr, "clopt: MPI_Init failed\n");
            return -1;
        }
        started = 1;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, size);
    return 0;
}

void cli_mpi_finalize(void) {
    if (started) MPI_Finalize();
    started = 0;
}

clopt_status cli_mpi_strategy(const char *device, clopt_strategy **out) {
    return clopt_strategy_create_mpi(MPI_COMM_WORLD, device, out);
}

size_t cli_mpi_replicas_in_sync(const clopt_strategy *s) {
    return clopt_strategy_num_replicas_in_sync(s);
}

size_t cli_mpi_first_replica(const clopt_strategy *s) { return clopt_strategy_first_replica(s); }

#else

int cli_mpi_init(int *rank, int *size) {
    *rank = 0;
    *size = 1;
    fprintf(stderr, "clopt: --mpi: this clopt was built without MPI (install libopenmpi-dev "
                    "and rebuild: CMake's CLOPT_WITH_MPI)\n");
    return -1;
}

void cli_mpi_finalize(void) {}

clopt_status cli_mpi_strategy(const char *device, clopt_strategy **out) {
    (void)device;
    (void)out;
    return CLOPT_ERR_UNSUPPORTED;
}

size_t cli_mpi_replicas_in_sync(const clopt_strategy *s) { return clopt_strategy_num_replicas(s); }

size_t cli_mpi_first_replica(const clopt_strategy *s) {
    (void)s;
    return 0;
}

#endif
