/* `clopt bench --mpi` (run under mpiexec -n N): an optimizer's step over N ranks (the MPI
 * strategy) against the same step in one process on one device (rank 0, the others waiting),
 * the all-reduce's share of the distributed step (clopt_strategy_mpi_reduce_stats), and its
 * bytes/s against a plain MPI_Allreduce of the same bytes between the same ranks in the same
 * run: the limit an all-reduce through host memory can reach. Medians of --rounds rounds; a
 * round's time is the slowest rank's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli_internal.h"
#ifdef CLOPT_TOOL_MPI
#include <mpi.h>
#include "clopt/distribute_mpi.h"

typedef struct mpi_args {
    const char *device, *optimizer;
    long long size, tensors;
    int rounds;
} mpi_args;

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *x, int n) {
    qsort(x, (size_t)n, sizeof *x, cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* Deterministic values in [-1, 1). */
static void fill(float *x, size_t n, unsigned seed) {
    unsigned h = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        h = h * 1664525u + 1013904223u;
        x[i] = (float)(h >> 8) / (float)(1u << 23) - 1.0f;
    }
}

static int fail(const char *what, clopt_status st, const char *msg) {
    fprintf(stderr, "clopt bench --mpi: %s: %s (%s)\n", what, msg && *msg ? msg : "",
            clopt_status_name(st));
    return CLI_EXIT_FAIL;
}

static char *config(const char *cls) {
    static char j[256];
    snprintf(j, sizeof j, "{\"class_name\": \"%s\", \"config\": {\"learning_rate\": 0.001}}", cls);
    return j;
}

/* The slowest rank's time of each round, on rank 0. */
static void slowest(double *t, int n) {
    double *m = malloc((size_t)n * sizeof *m);
    MPI_Allreduce(t, m, n, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    memcpy(t, m, (size_t)n * sizeof *m);
    free(m);
}

/* One process, one device: rank 0 times the plain step (the others wait). */
static int single(const mpi_args *a, size_t per, float *buf, double *out) {
    clopt_context *ctx = NULL;
    char dev[256]; /* the first device of a --device list */
    if (a->device) snprintf(dev, sizeof dev, "%.*s", (int)strcspn(a->device, ","), a->device);
    clopt_status st = clopt_context_create(a->device ? dev : NULL, &ctx);
    if (st != CLOPT_OK) return fail("context", st, clopt_last_create_error());
    const size_t k = (size_t)a->tensors;
    clopt_variable **v = calloc(2 * k, sizeof *v), **g = v + k;
    clopt_optimizer *o = NULL;
    const int64_t shape = (int64_t)per;
    for (size_t i = 0; st == CLOPT_OK && i < k; i++) {
        fill(buf, per, (unsigned)i);
        st = clopt_variable_create(ctx, "v", CLOPT_FLOAT32, 1, &shape, buf, &v[i]);
        if (st == CLOPT_OK) fill(buf, per, (unsigned)(i + k));
        if (st == CLOPT_OK) st = clopt_variable_create(ctx, "g", CLOPT_FLOAT32, 1, &shape, buf, &g[i]);
    }
    if (st == CLOPT_OK) st = clopt_optimizer_from_config(ctx, config(a->optimizer), &o);
    double *t = malloc((size_t)a->rounds * sizeof *t);
    for (int r = -2; st == CLOPT_OK && r < a->rounds; r++) {
        const double t0 = MPI_Wtime();
        st = clopt_optimizer_apply(o, g, v, k);
        if (st == CLOPT_OK) st = clopt_finish(ctx);
        if (r >= 0) t[r] = MPI_Wtime() - t0;
    }
    if (st == CLOPT_OK) *out = median(t, a->rounds);
    else fail("one-process step", st, clopt_context_last_error(ctx));
    free(t);
    free(v);
    clopt_context_destroy(ctx);
    return st == CLOPT_OK ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

typedef struct dist_result {
    double step, reduce, bytes, allreduce;
} dist_result;

/* N ranks through the strategy; then MPI_Allreduce of as many bytes. */
static int distributed(const mpi_args *a, size_t per, float *buf, dist_result *res) {
    clopt_strategy *s = NULL;
    clopt_status st = clopt_strategy_create_mpi(MPI_COMM_WORLD, a->device, &s);
    if (st != CLOPT_OK) return fail("strategy", st, clopt_last_create_error());
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    /* L local replicas (a --device list): rows of k variables and gradients each. */
    const size_t k = (size_t)a->tensors, L = clopt_strategy_num_replicas(s);
    const size_t first = clopt_strategy_first_replica(s);
    clopt_variable **v = calloc(2 * L * k, sizeof *v), **g = v + L * k, *row[64];
    clopt_mirrored_optimizer *m = NULL;
    const int64_t shape = (int64_t)per;
    for (size_t i = 0; st == CLOPT_OK && i < k; i++) {
        fill(buf, per, (unsigned)i);
        st = clopt_strategy_variable_create(s, "v", CLOPT_FLOAT32, 1, &shape, buf, row);
        for (size_t l = 0; st == CLOPT_OK && l < L; l++) {
            v[l * k + i] = row[l];
            /* each replica its own gradients */
            fill(buf, per, (unsigned)(i + k + 7919 * (first + l)));
            st = clopt_variable_create(clopt_strategy_context(s, l), "g", CLOPT_FLOAT32, 1,
                                       &shape, buf, &g[l * k + i]);
        }
    }
    if (st == CLOPT_OK) st = clopt_strategy_optimizer_from_config(s, config(a->optimizer), &m);
    const int R = a->rounds;
    double *t = malloc(2 * (size_t)R * sizeof *t), *red = t + R, s0 = 0, s1 = 0;
    uint64_t b0 = 0, b1 = 0;
    for (int r = -2; st == CLOPT_OK && r < R; r++) {
        MPI_Barrier(MPI_COMM_WORLD);
        clopt_strategy_mpi_reduce_stats(s, &s0, &b0);
        const double t0 = MPI_Wtime();
        st = clopt_mirrored_optimizer_apply(m, g, L, v, k);
        for (size_t l = 0; st == CLOPT_OK && l < L; l++)
            st = clopt_finish(clopt_strategy_context(s, l));
        const double t1 = MPI_Wtime();
        clopt_strategy_mpi_reduce_stats(s, &s1, &b1);
        if (r >= 0) t[r] = t1 - t0, red[r] = s1 - s0;
    }
    if (st != CLOPT_OK) {
        fail("distributed step", st, clopt_strategy_last_error(s));
        MPI_Abort(MPI_COMM_WORLD, 1); /* a failed step may leave ranks apart */
    }
    slowest(t, R);
    slowest(red, R);
    res->step = median(t, R);
    res->reduce = median(red, R);
    res->bytes = (double)(b1 - b0);
    /* The plain MPI_Allreduce of the same bytes, host to host. */
    const size_t n = (size_t)(b1 - b0) / sizeof(float);
    float *in = malloc(n * sizeof *in), *out = malloc(n * sizeof *out);
    fill(in, n, (unsigned)rank);
    for (int r = -1; r < R; r++) {
        MPI_Barrier(MPI_COMM_WORLD);
        const double t0 = MPI_Wtime();
        MPI_Allreduce(in, out, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        if (r >= 0) t[r] = MPI_Wtime() - t0;
    }
    slowest(t, R);
    res->allreduce = median(t, R);
    free(in);
    free(out);
    free(t);
    free(v);
    clopt_strategy_destroy(s);
    return CLI_EXIT_OK;
}

static int one_shape(const mpi_args *a, int rank, int size) {
    const size_t per = (size_t)(a->size / a->tensors);
    float *buf = malloc(per * sizeof *buf);
    double one = 0;
    int rc = CLI_EXIT_OK;
    if (rank == 0) rc = single(a, per, buf, &one);
    MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
    dist_result d = {0};
    if (rc == CLI_EXIT_OK) rc = distributed(a, per, buf, &d);
    free(buf);
    if (rc != CLI_EXIT_OK || rank != 0) return rc;
    printf("%-10s %9lld x %-5lld %5d %10.2f %10.2f %6.2fx %10.2f %6.1f%% %9.2f %9.2f %6.2f\n",
           a->optimizer, a->size / a->tensors, a->tensors, size, one * 1e3, d.step * 1e3,
           d.step / one, d.reduce * 1e3, 100 * d.reduce / d.step, d.bytes / d.reduce / 1e9,
           d.bytes / d.allreduce / 1e9, d.allreduce / d.reduce);
    fflush(stdout);
    return CLI_EXIT_OK;
}

static int parse(int argc, char **argv, mpi_args *a) {
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--mpi")) continue;
        if (i + 1 >= argc) {
            fprintf(stderr, "clopt bench --mpi: unknown option or missing value '%s'\n", o);
            return -1;
        }
        const char *v = argv[++i];
        char *end = NULL;
        if (!strcmp(o, "--device")) a->device = v;
        else if (!strcmp(o, "--optimizer")) a->optimizer = v;
        else if (!strcmp(o, "--size")) a->size = strtoll(v, &end, 10);
        else if (!strcmp(o, "--tensors")) a->tensors = strtoll(v, &end, 10);
        else if (!strcmp(o, "--rounds")) a->rounds = (int)strtol(v, &end, 10);
        else {
            fprintf(stderr, "clopt bench --mpi: unknown option '%s'\n", o);
            return -1;
        }
        if (end && (*end || end == v)) {
            fprintf(stderr, "clopt bench --mpi: %s '%s' is not a number\n", o, v);
            return -1;
        }
    }
    if (a->size < 0 || a->tensors < 1 || a->rounds < 1 || (a->size && a->size < a->tensors)) {
        fprintf(stderr, "clopt bench --mpi: --size, --tensors and --rounds must be positive\n");
        return -1;
    }
    return 0;
}

int cli_bench_mpi(int argc, char **argv) {
    mpi_args a = {NULL, "Adam", 0, 1, 10};
    int tensors_given = 0;
    for (int i = 1; i < argc; i++) tensors_given |= !strcmp(argv[i], "--tensors");
    if (parse(argc, argv, &a) != 0) return CLI_EXIT_USAGE;
    int rank, size;
    if (cli_mpi_init(&rank, &size) != 0) return CLI_EXIT_FAIL;
    if (rank == 0) {
        printf("clopt bench --mpi: %d ranks, device %s, %d rounds (medians; a round is the "
               "slowest rank's)\n", size, a.device ? a.device : "(default)", a.rounds);
        printf("%-10s %-17s %5s %10s %10s %7s %10s %7s %9s %9s %6s\n", "optimizer", "shape",
               "ranks", "1 proc ms", "N ranks ms", "ratio", "reduce ms", "share", "ours GB/s",
               "MPI GB/s", "vs MPI");
    }
    int rc = CLI_EXIT_OK;
    if (a.size) {
        rc = one_shape(&a, rank, size);
    } else { /* BENCHMARKS.md's two shapes: one tensor of 2^24, 2000 tensors of 4096 */
        mpi_args one = a, many = a;
        one.size = 1LL << 24;
        one.tensors = tensors_given ? a.tensors : 1;
        many.size = 2000LL * 4096;
        many.tensors = 2000;
        rc = one_shape(&one, rank, size);
        if (rc == CLI_EXIT_OK) rc = one_shape(&many, rank, size);
    }
    cli_mpi_finalize();
    return rc;
}

#else

int cli_bench_mpi(int argc, char **argv) {
    (void)argc;
    (void)argv;
    int rank, size;
    return cli_mpi_init(&rank, &size) != 0 ? CLI_EXIT_FAIL : CLI_EXIT_FAIL;
}

#endif
