/* The strategy across processes (include/clopt/distribute_mpi.h), run by CTest under
 * `mpiexec -n N` (tests/mpi/CMakeLists.txt: N = 2 and 3, the parity test 1 to 4): Keras's
 * distributed golden test, every optimizer against the same replicas replayed in one process
 * (clopt_strategy_create_replicated over N replicas of the same device: bitwise), every rank bitwise
 * identical, the cases where Keras's order matters, and bad input failing on every rank at
 * once. Each CTest runs one Criterion test: its worker process initializes MPI (a process may do
 * so once, so one mpiexec runs one test). The device is CLOPT_MPI_TEST_DEVICE (default host). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "clopt/distribute_mpi.h"
#include "clopt/checkpoint.h"
#include "test_util.h"

static int rank_, size_;

static void mpi_up(void) {
    MPI_Init(NULL, NULL);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
}

static void mpi_down(void) { MPI_Finalize(); }

TestSuite(mpi, .init = mpi_up, .fini = mpi_down);

static const char *device(void) {
    const char *d = getenv("CLOPT_MPI_TEST_DEVICE");
    return d && *d ? d : "host";
}

#define S_OK(s, expr)                                                                          \
    do {                                                                                       \
        clopt_status st_ = (expr);                                                             \
        cr_assert(st_ == CLOPT_OK, "rank %d: %s: %s: %s", rank_, #expr, clopt_status_name(st_), \
                  clopt_strategy_last_error(s));                                               \
    } while (0)

static clopt_strategy *mpi_strategy(void) {
    clopt_strategy *s = NULL;
    clopt_status st = clopt_strategy_create_mpi(MPI_COMM_WORLD, device(), &s);
    cr_assert(st == CLOPT_OK, "rank %d: create_mpi: %s: %s", rank_, clopt_status_name(st),
              clopt_last_create_error());
    return s;
}

static clopt_mirrored_optimizer *mirrored(clopt_strategy *s, const char *json) {
    clopt_mirrored_optimizer *m = NULL;
    S_OK(s, clopt_strategy_optimizer_from_config(s, json, &m));
    return m;
}

static void read_all(const clopt_variable *v, float *x) {
    cr_assert(clopt_variable_read(v, x, (size_t)clopt_variable_size(v) * sizeof *x) == CLOPT_OK);
}

/* Every rank's value of h equals rank 0's. */
static void assert_same_on_every_rank(uint64_t h, const char *what) {
    uint64_t all[64];
    cr_assert(size_ <= 64);
    MPI_Allgather(&h, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, MPI_COMM_WORLD);
    for (int k = 1; k < size_; k++)
        cr_assert(all[k] == all[0], "rank %d's %s differs from rank 0's", k, what);
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* Every rank's error message names `needle` and every rank returned `st` alike. */
static void assert_failed_alike(clopt_strategy *s, clopt_status st, clopt_status want,
                                const char *needle) {
    cr_assert(st == want, "rank %d: %s, want %s: %s", rank_, clopt_status_name(st),
              clopt_status_name(want), clopt_strategy_last_error(s));
    cr_assert(strstr(clopt_strategy_last_error(s), needle), "rank %d: '%s' does not name '%s'",
              rank_, clopt_strategy_last_error(s), needle);
    const char *e = clopt_strategy_last_error(s);
    assert_same_on_every_rank(fnv(14695981039346656037ull, e, strlen(e)), "error message");
}

/* ---- Keras's golden test (optimizer_distribute_test.py, test_single_step) ---- */

Test(mpi, keras_golden) {
    clopt_strategy *s = mpi_strategy();
    cr_assert_eq(clopt_strategy_num_replicas(s), 1);
    cr_assert_eq(clopt_strategy_num_replicas_in_sync(s), (size_t)size_);
    cr_assert_eq(clopt_strategy_first_replica(s), (size_t)rank_);
    cr_assert_float_eq(clopt_strategy_loss_scale(s), 1.0 / size_, 0);
    const float init[4] = {1, 2, 3, 4}, grad[4] = {1, 6, 7, 2};
    const int64_t n = 4;
    clopt_variable *v, *g;
    S_OK(s, clopt_strategy_variable_create(s, "v", CLOPT_FLOAT32, 1, &n, init, &v));
    g = tu_var_f32(clopt_strategy_context(s, 0), "g", 4, grad);
    clopt_mirrored_optimizer *m = mirrored(
        s, "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.5, \"momentum\": 0.06}}");
    S_OK(s, clopt_mirrored_optimizer_apply(m, &g, 1, &v, 1));
    float x[4];
    read_all(v, x);
    for (int i = 0; i < 4; i++) {
        /* size_ replicas: v - 0.5 * size_ * g; Keras's case (2 replicas): [0, -4, -4, 2]. */
        const float want = init[i] - 0.5f * (float)size_ * grad[i];
        cr_assert_eq(x[i], want, "rank %d [%d]: %g, want %g", rank_, i, x[i], want);
    }
    if (size_ == 2) {
        const float keras[4] = {0, -4, -4, 2};
        cr_assert(memcmp(x, keras, sizeof x) == 0, "rank %d: not Keras's [0, -4, -4, 2]", rank_);
    }
    cr_assert_eq(clopt_mirrored_optimizer_iterations(m), 1);
    assert_same_on_every_rank(fnv(14695981039346656037ull, x, sizeof x), "variable");
    clopt_strategy_destroy(s);
}

/* ---- every optimizer and the order cases, against one process's replicas ----
 *
 * The reference: the same N replicas in one process (clopt_strategy_create_replicated on the
 * same kind of device), replica r fed what rank r is fed. Rank r's variables and slots must equal the reference's bit
 * for bit, its gradient accumulators those of reference replica r, and every rank rank 0's. */

#define NV 2
static const int64_t sizes[NV] = {5, 300};

static float grad_at(int step, size_t r, size_t i, int64_t e) {
    const unsigned h = (unsigned)(step * 7919 + (int)r * 104729 + (int)i * 1299709 + (int)e * 31);
    const float x = (float)((h * 2654435761u) >> 8) / (float)(1u << 24) - 0.5f;
    return x * (r == 1 ? 8.0f : 1.0f) * (step == 2 && r == 0 && i == 1 ? 0.0f : 1.0f);
}

static float init_at(size_t i, int64_t e) {
    return 0.25f * (float)((e + 3 * (int64_t)i) % 9) - 1.0f;
}

static void fill_grad(clopt_variable *g, int step, size_t r, size_t i, int inf) {
    float x[300];
    for (int64_t e = 0; e < sizes[i]; e++) x[e] = grad_at(step, r, i, e);
    if (inf) x[3] = INFINITY;
    cr_assert(clopt_variable_write(g, x, (size_t)sizes[i] * sizeof *x) == CLOPT_OK);
}

/* Mirrored variables a and b, made through s (one row per local replica). */
static void make_vars(clopt_strategy *s, clopt_variable **v) {
    const size_t n = clopt_strategy_num_replicas(s);
    for (size_t i = 0; i < NV; i++) {
        float x[300];
        for (int64_t e = 0; e < sizes[i]; e++) x[e] = init_at(i, e);
        clopt_variable *row[64];
        S_OK(s, clopt_strategy_variable_create(s, i ? "b" : "a", CLOPT_FLOAT32, 1, &sizes[i], x,
                                               row));
        for (size_t r = 0; r < n; r++) v[r * NV + i] = row[r];
    }
}

/* Optimizer variable k of a and b, bit for bit (doubles read from their storage). */
static void assert_optvars_equal(const clopt_optimizer *a, const clopt_optimizer *b,
                                 const char *cfg, int step, int accumulators) {
    const size_t n = clopt_optimizer_variable_count(a);
    cr_assert_eq(n, clopt_optimizer_variable_count(b));
    for (size_t k = 0; k < n; k++) {
        const char *name;
        clopt_variable *v;
        cr_assert(clopt_optimizer_variable(a, k, &name, NULL, &v) == CLOPT_OK);
        if ((strstr(name, "_gradient_accumulator") != NULL) != accumulators) continue;
        const size_t len = v ? (size_t)clopt_variable_size(v) : 1;
        double *x = malloc(len * sizeof *x), *y = malloc(len * sizeof *y);
        cr_assert(x && y);
        cr_assert(clopt_optimizer_variable_read(a, k, x, len) == CLOPT_OK);
        cr_assert(clopt_optimizer_variable_read(b, k, y, len) == CLOPT_OK);
        cr_assert(memcmp(x, y, len * sizeof *x) == 0, "rank %d, %s, step %d: '%s' differs",
                  rank_, cfg, step, name);
        free(x);
        free(y);
    }
}

/* The state every rank must share: variables, then optimizer variables but accumulators. */
static uint64_t shared_state(const clopt_mirrored_optimizer *m, clopt_variable *const *v) {
    uint64_t h = 14695981039346656037ull;
    float x[300];
    for (size_t i = 0; i < NV; i++) {
        read_all(v[i], x);
        h = fnv(h, x, (size_t)sizes[i] * sizeof *x);
    }
    const clopt_optimizer *o = clopt_mirrored_optimizer_replica(m, 0);
    for (size_t k = 0; k < clopt_optimizer_variable_count(o); k++) {
        const char *name;
        clopt_variable *var;
        cr_assert(clopt_optimizer_variable(o, k, &name, NULL, &var) == CLOPT_OK);
        if (strstr(name, "_gradient_accumulator")) continue;
        const size_t len = var ? (size_t)clopt_variable_size(var) : 1;
        double *d = malloc(len * sizeof *d);
        cr_assert(d && clopt_optimizer_variable_read(o, k, d, len) == CLOPT_OK);
        h = fnv(h, d, len * sizeof *d);
        free(d);
    }
    return h;
}

/* Runs `steps` steps of config `cfg` over the ranks and over size_ replicas in this process
 * (an inf on the last replica at step `inf_step`, -1 for none), comparing after every step. */
static void parity(const char *cfg, int steps, int inf_step) {
    clopt_strategy *s = mpi_strategy(), *one = NULL;
    cr_assert(clopt_strategy_create_replicated(device(), (size_t)size_, &one) == CLOPT_OK);
    const size_t N = (size_t)size_;
    clopt_variable *v[NV], *rv[64 * NV], *g[NV], *rg[64 * NV];
    make_vars(s, v);
    make_vars(one, rv);
    clopt_mirrored_optimizer *m = mirrored(s, cfg), *ref = mirrored(one, cfg);
    for (size_t i = 0; i < NV; i++) {
        g[i] = tu_var_f32(clopt_strategy_context(s, 0), "g", sizes[i], NULL);
        for (size_t r = 0; r < N; r++)
            rg[r * NV + i] = tu_var_f32(clopt_strategy_context(one, 0), "g", sizes[i], NULL);
    }
    for (int t = 0; t < steps; t++) {
        for (size_t i = 0; i < NV; i++) {
            fill_grad(g[i], t, (size_t)rank_, i, t == inf_step && rank_ == size_ - 1);
            for (size_t r = 0; r < N; r++)
                fill_grad(rg[r * NV + i], t, r, i, t == inf_step && r == N - 1);
        }
        S_OK(s, clopt_mirrored_optimizer_apply(m, g, 1, v, NV));
        S_OK(one, clopt_mirrored_optimizer_apply(ref, rg, N, rv, NV));
        cr_assert_eq(clopt_mirrored_optimizer_iterations(m),
                     clopt_mirrored_optimizer_iterations(ref));
        float x[300], y[300];
        for (size_t i = 0; i < NV; i++) {
            read_all(v[i], x);
            read_all(rv[i], y);
            cr_assert(memcmp(x, y, (size_t)sizes[i] * sizeof *x) == 0,
                      "rank %d of %d, %s, step %d: variable %zu differs from one process's", rank_,
                      size_, cfg, t, i);
        }
        assert_optvars_equal(clopt_mirrored_optimizer_replica(m, 0),
                             clopt_mirrored_optimizer_replica(ref, 0), cfg, t, 0);
        assert_optvars_equal(clopt_mirrored_optimizer_replica(m, 0),
                             clopt_mirrored_optimizer_replica(ref, (size_t)rank_), cfg, t, 1);
        assert_same_on_every_rank(shared_state(m, v), "variables and slots");
    }
    clopt_strategy_destroy(one);
    clopt_strategy_destroy(s);
}

#define LR "\"learning_rate\": 0.01"
static const char *const every_optimizer[] = {
    "{\"class_name\": \"SGD\", \"config\": {" LR ", \"momentum\": 0.9, \"nesterov\": true}}",
    "{\"class_name\": \"Adam\", \"config\": {" LR ", \"amsgrad\": true}}",
    "{\"class_name\": \"AdamW\", \"config\": {" LR ", \"weight_decay\": 0.1}}",
    "{\"class_name\": \"Adamax\", \"config\": {" LR "}}",
    "{\"class_name\": \"Nadam\", \"config\": {" LR "}}",
    "{\"class_name\": \"RMSprop\", \"config\": {" LR ", \"momentum\": 0.5, \"centered\": true}}",
    "{\"class_name\": \"Adagrad\", \"config\": {" LR "}}",
    "{\"class_name\": \"Adadelta\", \"config\": {\"learning_rate\": 1.0}}",
    "{\"class_name\": \"Ftrl\", \"config\": {" LR ", \"l1_regularization_strength\": 0.01}}",
    "{\"class_name\": \"Lion\", \"config\": {" LR "}}",
    "{\"class_name\": \"Lamb\", \"config\": {" LR "}}",
    "{\"class_name\": \"Adafactor\", \"config\": {" LR "}}",
    "{\"class_name\": \"Muon\", \"config\": {" LR "}}",
    "{\"class_name\": \"ScheduleFreeAdamW\", \"config\": {" LR "}}",
    "{\"class_name\": \"LossScaleOptimizer\", \"config\": {\"inner_optimizer\": {\"class_name\": "
    "\"Adam\", \"config\": {" LR "}}, \"initial_scale\": 8.0}}",
};

Test(mpi, every_optimizer_bitwise) {
    for (size_t k = 0; k < sizeof every_optimizer / sizeof *every_optimizer; k++)
        parity(every_optimizer[k], 4, -1);
}

/* Keras's order: each replica's pipeline before the sum (clipping a replica's own gradients
 * differs from clipping the sum), one accumulator per replica, a LossScaleOptimizer that skips
 * on every rank for an inf on the last rank only. */
static const char *const order_cases[] = {
    "{\"class_name\": \"SGD\", \"config\": {" LR ", \"momentum\": 0.9, \"clipnorm\": 0.5}}",
    "{\"class_name\": \"Adam\", \"config\": {" LR ", \"global_clipnorm\": 0.7}}",
    "{\"class_name\": \"Adam\", \"config\": {" LR ", \"clipvalue\": 0.05}}",
    "{\"class_name\": \"Adam\", \"config\": {" LR ", \"gradient_accumulation_steps\": 2}}",
    "{\"class_name\": \"RMSprop\", \"config\": {" LR ", \"loss_scale_factor\": 4.0}}",
    "{\"class_name\": \"Adam\", \"config\": {" LR ", \"clipnorm\": 0.4, "
    "\"gradient_accumulation_steps\": 2, \"loss_scale_factor\": 2.0}}",
};

Test(mpi, keras_order_cases_bitwise) {
    for (size_t k = 0; k < sizeof order_cases / sizeof *order_cases; k++)
        parity(order_cases[k], 4, -1);
}

Test(mpi, loss_scale_inf_on_last_rank_only) {
    const char *cfg = "{\"class_name\": \"LossScaleOptimizer\", \"config\": {\"inner_optimizer\": "
                      "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.5}}, "
                      "\"initial_scale\": 4.0, \"dynamic_growth_steps\": 1000}}";
    parity(cfg, 4, 1);
    /* The skipped step: iterations 3 after 4 steps, and the scale halved on every rank. */
    clopt_strategy *s = mpi_strategy();
    clopt_variable *v[NV], *g[NV];
    make_vars(s, v);
    clopt_mirrored_optimizer *m = mirrored(s, cfg);
    for (size_t i = 0; i < NV; i++) {
        g[i] = tu_var_f32(clopt_strategy_context(s, 0), "g", sizes[i], NULL);
        fill_grad(g[i], 0, (size_t)rank_, i, rank_ == size_ - 1);
    }
    S_OK(s, clopt_mirrored_optimizer_apply(m, g, 1, v, NV));
    cr_assert_eq(clopt_mirrored_optimizer_iterations(m), 0, "rank %d stepped", rank_);
    double scale = 0;
    cr_assert(clopt_optimizer_scale_loss(clopt_mirrored_optimizer_replica(m, 0), 1.0, &scale) ==
              CLOPT_OK);
    cr_assert_eq(scale, 2.0, "rank %d's scale is %g", rank_, scale);
    float x[5];
    read_all(v[0], x);
    for (int e = 0; e < 5; e++) cr_assert_eq(x[e], init_at(0, e));
    clopt_strategy_destroy(s);
}

Test(mpi, mean_divides_the_sum) {
    clopt_strategy *s = mpi_strategy();
    const float init[2] = {0, 0};
    const int64_t n = 2;
    clopt_variable *v, *g;
    S_OK(s, clopt_strategy_variable_create(s, "v", CLOPT_FLOAT32, 1, &n, init, &v));
    const float grad[2] = {(float)(rank_ + 1), 2.0f * (float)(rank_ + 1)};
    g = tu_var_f32(clopt_strategy_context(s, 0), "g", 2, grad);
    clopt_mirrored_optimizer *m =
        mirrored(s, "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 1.0}}");
    S_OK(s, clopt_mirrored_optimizer_set_reduction(m, CLOPT_REDUCE_MEAN));
    S_OK(s, clopt_mirrored_optimizer_apply(m, &g, 1, &v, 1));
    float x[2];
    read_all(v, x);
    float sum = 0;
    for (int k = 0; k < size_; k++) sum += (float)(k + 1);
    cr_assert_eq(x[0], -(sum / (float)size_), "rank %d: %g", rank_, x[0]);
    cr_assert_eq(x[1], -(2 * sum / (float)size_), "rank %d: %g", rank_, x[1]);
    clopt_strategy_destroy(s);
}

/* ---- rank 0's state on every rank ---- */

Test(mpi, variables_start_as_rank_0s) {
    clopt_strategy *s = mpi_strategy();
    const float mine[3] = {(float)rank_, 1.0f + (float)rank_, 7};
    const int64_t n = 3;
    clopt_variable *v;
    S_OK(s, clopt_strategy_variable_create(s, "v", CLOPT_FLOAT32, 1, &n, mine, &v));
    float x[3];
    read_all(v, x);
    cr_assert(x[0] == 0 && x[1] == 1 && x[2] == 7, "rank %d: [%g, %g, %g], not rank 0's", rank_,
              x[0], x[1], x[2]);
    clopt_strategy_destroy(s);
}

Test(mpi, broadcast_and_rank0_checkpoint) {
    clopt_strategy *s = mpi_strategy();
    clopt_variable *v[NV], *g[NV];
    make_vars(s, v);
    clopt_mirrored_optimizer *m =
        mirrored(s, "{\"class_name\": \"Adam\", \"config\": {\"learning_rate\": 0.01}}");
    for (size_t i = 0; i < NV; i++) {
        g[i] = tu_var_f32(clopt_strategy_context(s, 0), "g", sizes[i], NULL);
        fill_grad(g[i], 0, (size_t)rank_, i, 0);
    }
    S_OK(s, clopt_mirrored_optimizer_apply(m, g, 1, v, NV));
    const uint64_t after1 = shared_state(m, v);
    /* Rank 0 saves (one file, written by rank 0 only). */
    char path[512];
    int pid = (int)getpid();
    MPI_Bcast(&pid, 1, MPI_INT, 0, MPI_COMM_WORLD); /* one name: rank 0's */
    snprintf(path, sizeof path, "%s/ckpt_%d.clopt", CLOPT_MPI_TEST_TMP, pid);
    if (rank_ == 0) unlink(path);
    MPI_Barrier(MPI_COMM_WORLD);
    S_OK(s, clopt_mirrored_optimizer_checkpoint_save_mpi(m, v, NV, path));
    /* Two more steps, then a load on rank 0 broadcast to all: back to after1 everywhere. */
    S_OK(s, clopt_mirrored_optimizer_apply(m, g, 1, v, NV));
    S_OK(s, clopt_mirrored_optimizer_apply(m, g, 1, v, NV));
    cr_assert_neq(shared_state(m, v), after1);
    S_OK(s, clopt_mirrored_optimizer_checkpoint_load_mpi(m, v, NV, path));
    cr_assert_eq(shared_state(m, v), after1, "rank %d: not the saved state", rank_);
    cr_assert_eq(clopt_mirrored_optimizer_iterations(m), 1);
    /* A change on one rank, broadcast: rank 0's state everywhere. */
    float x[5] = {9, 9, 9, 9, 9};
    if (rank_ == size_ - 1 && size_ > 1)
        cr_assert(clopt_variable_write(v[0], x, sizeof x) == CLOPT_OK);
    S_OK(s, clopt_mirrored_optimizer_broadcast(m));
    cr_assert_eq(shared_state(m, v), after1);
    /* A load that fails on rank 0 (no such file) fails on every rank, changing nothing. */
    clopt_status st = clopt_mirrored_optimizer_checkpoint_load_mpi(m, v, NV, "/nonexistent/x");
    assert_failed_alike(s, st, CLOPT_ERR_IO, "rank 0");
    cr_assert_eq(shared_state(m, v), after1);
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank_ == 0) unlink(path);
    clopt_strategy_destroy(s);
}

/* ---- no hangs: every rank fails alike, quickly ---- */

Test(mpi, mismatched_configs_fail_on_every_rank) {
    clopt_strategy *s = mpi_strategy();
    clopt_variable *v[NV], *g[NV];
    make_vars(s, v);
    char cfg[128];
    snprintf(cfg, sizeof cfg, "{\"class_name\": \"Adam\", \"config\": {\"learning_rate\": %s}}",
             rank_ == size_ - 1 && size_ > 1 ? "0.02" : "0.01");
    clopt_mirrored_optimizer *m = mirrored(s, cfg);
    for (size_t i = 0; i < NV; i++) g[i] = tu_var_f32(clopt_strategy_context(s, 0), "g", sizes[i], NULL);
    clopt_status st = clopt_mirrored_optimizer_build(m, v, NV);
    if (size_ == 1) {
        cr_assert_eq(st, CLOPT_OK);
    } else {
        char who[32];
        snprintf(who, sizeof who, "rank %d", size_ - 1);
        assert_failed_alike(s, st, CLOPT_ERR_REPLICAS_MISMATCH, who);
        cr_assert(strstr(clopt_strategy_last_error(s), "\"learning_rate\": 0.0199"), "%s", clopt_strategy_last_error(s));
        /* apply then refuses on every rank too, nothing moved. */
        st = clopt_mirrored_optimizer_apply(m, g, 1, NULL, NV);
        cr_assert_neq(st, CLOPT_OK);
        cr_assert_eq(clopt_mirrored_optimizer_iterations(m), 0);
    }
    clopt_strategy_destroy(s);
}

Test(mpi, mismatched_variable_lists_fail_on_every_rank) {
    clopt_strategy *s = mpi_strategy();
    clopt_context *ctx = clopt_strategy_context(s, 0);
    /* Local variables (not through the strategy): the last rank names its second one "c". */
    const int last = rank_ == size_ - 1 && size_ > 1;
    clopt_variable *v[2] = {tu_var_f32(ctx, "a", 4, NULL), tu_var_f32(ctx, last ? "c" : "b", 4, NULL)};
    clopt_mirrored_optimizer *m =
        mirrored(s, "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.1}}");
    clopt_status st = clopt_mirrored_optimizer_build(m, v, 2);
    if (size_ > 1) {
        assert_failed_alike(s, st, CLOPT_ERR_REPLICAS_MISMATCH, "variable 1: 'c'");
    } else {
        cr_assert_eq(st, CLOPT_OK);
    }
    /* Through the strategy: a shape that differs on the last rank fails at creation. */
    const int64_t n = last ? 5 : 4;
    clopt_variable *w = NULL;
    st = clopt_strategy_variable_create(s, "w", CLOPT_FLOAT32, 1, &n, NULL, &w);
    if (size_ > 1) assert_failed_alike(s, st, CLOPT_ERR_REPLICAS_MISMATCH, "'w'");
    else cr_assert_eq(st, CLOPT_OK);
    /* A local failure on one rank (a bad dtype there) fails every rank, naming it. */
    clopt_variable *u = NULL;
    st = clopt_strategy_variable_create(s, "u", last ? (clopt_dtype)99 : CLOPT_FLOAT32, 1, &n,
                                        NULL, &u);
    if (size_ > 1) {
        char who[32];
        snprintf(who, sizeof who, "rank %d", size_ - 1);
        cr_assert_neq(st, CLOPT_OK);
        assert_failed_alike(s, st, st, who);
    }
    clopt_strategy_destroy(s);
}

Test(mpi, missing_gradient_on_one_rank) {
    clopt_strategy *s = mpi_strategy();
    clopt_variable *v[NV], *g[NV], *step[NV];
    make_vars(s, v);
    clopt_mirrored_optimizer *m =
        mirrored(s, "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.1}}");
    for (size_t i = 0; i < NV; i++) {
        g[i] = tu_var_f32(clopt_strategy_context(s, 0), "g", sizes[i], NULL);
        fill_grad(g[i], 0, (size_t)rank_, i, 0);
        step[i] = g[i];
    }
    S_OK(s, clopt_mirrored_optimizer_build(m, v, NV));
    const uint64_t before = shared_state(m, v);
    if (rank_ == size_ - 1) step[1] = NULL;
    clopt_status st = clopt_mirrored_optimizer_apply(m, step, 1, v, NV);
    if (size_ > 1) {
        assert_failed_alike(s, st, CLOPT_ERR_INVALID_ARGUMENT, "gradient 1 is missing on rank");
        cr_assert_eq(clopt_mirrored_optimizer_iterations(m), 0);
        cr_assert_eq(shared_state(m, v), before, "rank %d changed", rank_);
    }
    /* Missing on every rank is fine: b does not move. */
    step[1] = NULL;
    S_OK(s, clopt_mirrored_optimizer_apply(m, step, 1, v, NV));
    /* A bad input on one rank only (a wrong replica count) fails every rank. */
    step[1] = g[1];
    st = clopt_mirrored_optimizer_apply(m, step, rank_ == 0 ? 2 : 1, v, NV);
    assert_failed_alike(s, st, CLOPT_ERR_LENGTH_MISMATCH, "rank 0");
    /* Different gradient counts. */
    st = clopt_mirrored_optimizer_apply(m, step, 1, v, rank_ == size_ - 1 && size_ > 1 ? 1 : NV);
    if (size_ > 1) assert_failed_alike(s, st, CLOPT_ERR_REPLICAS_MISMATCH, "gradients");
    cr_assert_eq(clopt_mirrored_optimizer_iterations(m), 1);
    clopt_strategy_destroy(s);
}

Test(mpi, bad_device_on_one_rank_fails_every_rank) {
    clopt_strategy *s = NULL;
    const char *dev = rank_ == size_ - 1 ? "nosuchplatform:gpu:9" : device();
    clopt_status st = clopt_strategy_create_mpi(MPI_COMM_WORLD, dev, &s);
    cr_assert_eq(st, CLOPT_ERR_DEVICE_NOT_FOUND, "rank %d: %s", rank_, clopt_status_name(st));
    cr_assert_null(s);
    char who[32];
    snprintf(who, sizeof who, "rank %d", size_ - 1);
    cr_assert(strstr(clopt_last_create_error(), who), "%s", clopt_last_create_error());
    cr_assert_eq(clopt_strategy_create_mpi(MPI_COMM_NULL, "host", &s), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(clopt_strategy_create_mpi(MPI_COMM_WORLD, "host", NULL),
                 CLOPT_ERR_INVALID_ARGUMENT);
}

/* ---- several local replicas per rank: global replicas rank-major ---- */

static size_t two_each(int r) {
    (void)r;
    return 2;
}

static size_t one_or_two(int r) { return 1 + (size_t)(r % 2); }

/* This rank's device list of k replicas: the test device k times (POCL's CPU devices 0..k-1:
 * one device may hold one replica). */
static void local_spec(size_t k, char *spec, size_t cap) {
    const int pocl = strncmp(device(), "pocl:cpu:", 9) == 0;
    size_t len = 0;
    spec[0] = '\0';
    for (size_t l = 0; l < k; l++) {
        if (pocl) len += (size_t)snprintf(spec + len, cap - len, "%spocl:cpu:%zu", l ? "," : "", l);
        else len += (size_t)snprintf(spec + len, cap - len, "%s%s", l ? "," : "", device());
    }
}

static clopt_strategy *local_strategy(size_t k) {
    char spec[512];
    local_spec(k, spec, sizeof spec);
    clopt_strategy *s = NULL;
    clopt_status st = clopt_strategy_create_mpi(MPI_COMM_WORLD, spec, &s);
    cr_assert(st == CLOPT_OK, "rank %d: create_mpi('%s'): %s: %s", rank_, spec,
              clopt_status_name(st), clopt_last_create_error());
    return s;
}

/* This rank's first global replica and the world's count under layout kof. */
static size_t layout(size_t (*kof)(int), size_t *world) {
    size_t first = 0, w = 0;
    for (int r = 0; r < size_; r++) {
        if (r == rank_) first = w;
        w += kof(r);
    }
    *world = w;
    return first;
}

/* parity() with kof(rank) local replicas on each rank, against the world's replicas in one
 * process: every local replica bitwise equal to the reference's. */
static void parity_local(const char *cfg, int steps, int inf_step, size_t (*kof)(int)) {
    size_t W;
    const size_t first = layout(kof, &W), L = kof(rank_);
    clopt_strategy *s = local_strategy(L), *one = NULL;
    cr_assert(clopt_strategy_create_replicated(device(), W, &one) == CLOPT_OK);
    cr_assert_eq(clopt_strategy_num_replicas(s), L);
    cr_assert_eq(clopt_strategy_num_replicas_in_sync(s), W);
    cr_assert_eq(clopt_strategy_first_replica(s), first);
    cr_assert_float_eq(clopt_strategy_loss_scale(s), 1.0 / (double)W, 0);
    clopt_variable *v[64 * NV], *rv[64 * NV], *g[64 * NV], *rg[64 * NV];
    make_vars(s, v);
    make_vars(one, rv);
    clopt_mirrored_optimizer *m = mirrored(s, cfg), *ref = mirrored(one, cfg);
    for (size_t i = 0; i < NV; i++) {
        for (size_t l = 0; l < L; l++)
            g[l * NV + i] = tu_var_f32(clopt_strategy_context(s, l), "g", sizes[i], NULL);
        for (size_t r = 0; r < W; r++)
            rg[r * NV + i] = tu_var_f32(clopt_strategy_context(one, 0), "g", sizes[i], NULL);
    }
    for (int t = 0; t < steps; t++) {
        for (size_t i = 0; i < NV; i++) {
            for (size_t l = 0; l < L; l++)
                fill_grad(g[l * NV + i], t, first + l, i, t == inf_step && first + l == W - 1);
            for (size_t r = 0; r < W; r++)
                fill_grad(rg[r * NV + i], t, r, i, t == inf_step && r == W - 1);
        }
        S_OK(s, clopt_mirrored_optimizer_apply(m, g, L, v, NV));
        S_OK(one, clopt_mirrored_optimizer_apply(ref, rg, W, rv, NV));
        cr_assert_eq(clopt_mirrored_optimizer_iterations(m),
                     clopt_mirrored_optimizer_iterations(ref));
        float x[300], y[300];
        for (size_t l = 0; l < L; l++) {
            for (size_t i = 0; i < NV; i++) {
                read_all(v[l * NV + i], x);
                read_all(rv[i], y);
                cr_assert(memcmp(x, y, (size_t)sizes[i] * sizeof *x) == 0,
                          "rank %d replica %zu of %zu, %s, step %d: variable %zu differs from one "
                          "process's", rank_, first + l, W, cfg, t, i);
            }
            const clopt_optimizer *o = clopt_mirrored_optimizer_replica(m, l);
            assert_optvars_equal(o, clopt_mirrored_optimizer_replica(ref, 0), cfg, t, 0);
            assert_optvars_equal(o, clopt_mirrored_optimizer_replica(ref, first + l), cfg, t, 1);
        }
        assert_same_on_every_rank(shared_state(m, v), "variables and slots");
    }
    clopt_strategy_destroy(one);
    clopt_strategy_destroy(s);
}

static const char *const lso_inf =
    "{\"class_name\": \"LossScaleOptimizer\", \"config\": {\"inner_optimizer\": "
    "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.5}}, "
    "\"initial_scale\": 4.0, \"dynamic_growth_steps\": 1000}}";

Test(mpi, several_local_replicas_bitwise) {
    size_t (*const layouts[])(int) = {two_each, one_or_two};
    for (size_t k = 0; k < 2; k++) {
        for (size_t c = 0; c < sizeof order_cases / sizeof *order_cases; c++)
            parity_local(order_cases[c], 4, -1, layouts[k]);
        parity_local(every_optimizer[1], 3, -1, layouts[k]); /* Adam, amsgrad */
        parity_local(lso_inf, 4, 1, layouts[k]);              /* an inf on the last replica */
    }
}

/* Keras's golden test with two replicas on each rank: Keras's numbers on one rank (2
 * replicas), v - 0.5 * W * g over W replicas in general. */
Test(mpi, several_local_keras_golden) {
    size_t W;
    const size_t first = layout(two_each, &W);
    clopt_strategy *s = local_strategy(2);
    const float init[4] = {1, 2, 3, 4}, grad[4] = {1, 6, 7, 2};
    const int64_t n = 4;
    clopt_variable *v[2], *g[2];
    S_OK(s, clopt_strategy_variable_create(s, "v", CLOPT_FLOAT32, 1, &n, init, v));
    for (size_t l = 0; l < 2; l++) g[l] = tu_var_f32(clopt_strategy_context(s, l), "g", 4, grad);
    clopt_mirrored_optimizer *m = mirrored(
        s, "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.5, \"momentum\": 0.06}}");
    S_OK(s, clopt_mirrored_optimizer_apply(m, g, 2, v, 1));
    cr_assert_eq(first, 2 * (size_t)rank_);
    for (size_t l = 0; l < 2; l++) {
        float x[4];
        read_all(v[l], x);
        for (int i = 0; i < 4; i++) {
            const float want = init[i] - 0.5f * (float)W * grad[i];
            cr_assert_eq(x[i], want, "rank %d replica %zu [%d]: %g, want %g", rank_, l, i, x[i],
                         want);
        }
        if (W == 2) {
            const float keras[4] = {0, -4, -4, 2};
            cr_assert(memcmp(x, keras, sizeof x) == 0, "not Keras's [0, -4, -4, 2]");
        }
        if (l == 0) assert_same_on_every_rank(fnv(14695981039346656037ull, x, sizeof x), "v");
    }
    clopt_strategy_destroy(s);
}

Test(mpi, several_local_replicas_bad_input) {
    const int last = rank_ == size_ - 1;
    char who[32];
    snprintf(who, sizeof who, "rank %d", size_ - 1);
    /* The same device twice within the last rank: refused on every rank. */
    clopt_strategy *s = NULL;
    clopt_status st = clopt_strategy_create_mpi(
        MPI_COMM_WORLD, last ? "pocl:cpu:0,pocl:cpu:0" : "host", &s);
    cr_assert_eq(st, CLOPT_ERR_INVALID_ARGUMENT, "rank %d: %s: %s", rank_, clopt_status_name(st),
                 clopt_last_create_error());
    cr_assert_null(s);
    cr_assert(strstr(clopt_last_create_error(), who) &&
                  strstr(clopt_last_create_error(), "same device"),
              "rank %d: %s", rank_, clopt_last_create_error());
    /* A gradient of another local replica's device (the last rank's rows swapped). */
    s = local_strategy(2);
    clopt_variable *v[2 * NV], *g[2 * NV], *step[2 * NV];
    make_vars(s, v);
    clopt_mirrored_optimizer *m =
        mirrored(s, "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.1}}");
    for (size_t l = 0; l < 2; l++)
        for (size_t i = 0; i < NV; i++) {
            g[l * NV + i] = tu_var_f32(clopt_strategy_context(s, l), "g", sizes[i], NULL);
            fill_grad(g[l * NV + i], 0, l, i, 0);
            step[l * NV + i] = g[l * NV + i];
        }
    S_OK(s, clopt_mirrored_optimizer_build(m, v, NV));
    const uint64_t before = shared_state(m, v);
    if (last) step[NV + 1] = g[1]; /* replica 1's gradient 1 lives on replica 0's context */
    st = clopt_mirrored_optimizer_apply(m, step, 2, v, NV);
    assert_failed_alike(s, st, CLOPT_ERR_CONTEXT_MISMATCH, who);
    cr_assert(strstr(clopt_strategy_last_error(s), "belongs to replica 0"), "%s",
              clopt_strategy_last_error(s));
    /* One row only where the rank holds two. */
    st = clopt_mirrored_optimizer_apply(m, g, last ? 1 : 2, v, NV);
    assert_failed_alike(s, st, CLOPT_ERR_LENGTH_MISMATCH, who);
    cr_assert_eq(clopt_mirrored_optimizer_iterations(m), 0);
    cr_assert_eq(shared_state(m, v), before, "rank %d changed", rank_);
    float x[5], y[5];
    read_all(v[0], x);
    read_all(v[NV], y);
    cr_assert(memcmp(x, y, sizeof x) == 0, "rank %d: local replicas differ", rank_);
    clopt_strategy_destroy(s);
}

/* ---- a device failure in the middle of a step (CLOPT__DIST_FAULT_TEST, tests only) ---- */

/* A strategy whose last global replica fails at `stage`; SGD with momentum built on a and b,
 * one step taken; *before is the shared state then. */
static clopt_strategy *faulty(const char *stage, clopt_mirrored_optimizer **m, clopt_variable **v,
                              clopt_variable **g, uint64_t *before) {
    char f[64];
    snprintf(f, sizeof f, "%s:%d", stage, size_ - 1);
    setenv("CLOPT__DIST_FAULT_TEST", f, 1);
    clopt_strategy *s = mpi_strategy();
    unsetenv("CLOPT__DIST_FAULT_TEST");
    make_vars(s, v);
    *m = mirrored(s, "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.1, "
                     "\"momentum\": 0.5}}");
    for (size_t i = 0; i < NV; i++) {
        g[i] = tu_var_f32(clopt_strategy_context(s, 0), "g", sizes[i], NULL);
        fill_grad(g[i], 0, (size_t)rank_, i, 0);
    }
    S_OK(s, clopt_mirrored_optimizer_build(*m, v, NV));
    *before = shared_state(*m, v);
    return s;
}

/* Before the exchange (the local stages, reading the gradients back): every rank fails with the
 * failing rank's status, no variable, slot or counter moved anywhere. */
Test(mpi, device_failure_before_exchange_fails_every_rank) {
    const char *const stages[] = {"local", "read"};
    char who[32];
    snprintf(who, sizeof who, "rank %d", size_ - 1);
    for (size_t k = 0; k < 2; k++) {
        clopt_mirrored_optimizer *m;
        clopt_variable *v[NV], *g[NV];
        uint64_t before;
        clopt_strategy *s = faulty(stages[k], &m, v, g, &before);
        clopt_status st = clopt_mirrored_optimizer_apply(m, g, 1, v, NV);
        assert_failed_alike(s, st, CLOPT_ERR_OPENCL, who);
        cr_assert(strstr(clopt_strategy_last_error(s), "fault injected"), "%s",
                  clopt_strategy_last_error(s));
        cr_assert_eq(clopt_mirrored_optimizer_iterations(m), 0, "rank %d, %s", rank_, stages[k]);
        cr_assert_eq(shared_state(m, v), before, "rank %d changed (%s)", rank_, stages[k]);
        clopt_strategy_destroy(s);
    }
}

/* After the exchange (writing the sums back, the update): every rank returns
 * CLOPT_ERR_REPLICAS_DIVERGED naming the rank; the failing rank did not step, the others did;
 * a broadcast from rank 0 makes them one again. */
Test(mpi, device_failure_after_exchange_reports_divergence) {
    const char *const stages[] = {"write", "shared"};
    char who[32];
    snprintf(who, sizeof who, "rank %d", size_ - 1);
    for (size_t k = 0; k < 2; k++) {
        clopt_mirrored_optimizer *m;
        clopt_variable *v[NV], *g[NV];
        uint64_t before;
        clopt_strategy *s = faulty(stages[k], &m, v, g, &before);
        clopt_status st = clopt_mirrored_optimizer_apply(m, g, 1, v, NV);
        assert_failed_alike(s, st, CLOPT_ERR_REPLICAS_DIVERGED, who);
        cr_assert(strstr(clopt_strategy_last_error(s), "after the all-reduce's exchange"), "%s",
                  clopt_strategy_last_error(s));
        const int failed = rank_ == size_ - 1;
        if (!strcmp(stages[k], "write")) /* "shared" fails after its own update ran */
            cr_assert_eq(clopt_mirrored_optimizer_iterations(m), failed ? 0 : 1, "rank %d",
                         rank_);
        if (size_ > 1) {
            S_OK(s, clopt_mirrored_optimizer_broadcast(m));
            assert_same_on_every_rank(shared_state(m, v), "state after the broadcast");
            cr_assert_eq(clopt_mirrored_optimizer_iterations(m), 1);
        }
        clopt_strategy_destroy(s);
    }
}

/* ---- CLOPT_DIST_CHECK across ranks ---- */

Test(mpi, dist_check_compares_ranks) {
    if (rank_ == 0) setenv("CLOPT_DIST_CHECK", "1", 1); /* one rank's setting is every rank's */
    clopt_strategy *s = local_strategy(2);
    unsetenv("CLOPT_DIST_CHECK");
    clopt_variable *v[2 * NV], *g[2 * NV];
    make_vars(s, v);
    clopt_mirrored_optimizer *m =
        mirrored(s, "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.1}}");
    for (size_t l = 0; l < 2; l++)
        for (size_t i = 0; i < NV; i++) {
            g[l * NV + i] = tu_var_f32(clopt_strategy_context(s, l), "g", sizes[i], NULL);
            fill_grad(g[l * NV + i], 0, l, i, 0);
        }
    S_OK(s, clopt_mirrored_optimizer_apply(m, g, 2, v, NV));
    /* The last rank's variable b changes behind the strategy's back (both its replicas, so
     * that only the ranks differ): the next step fails on every rank, naming it. */
    float x[300];
    for (int e = 0; e < 300; e++) x[e] = 3.0f;
    if (rank_ == size_ - 1 && size_ > 1)
        for (size_t l = 0; l < 2; l++)
            cr_assert(clopt_variable_write(v[l * NV + 1], x, sizeof x) == CLOPT_OK);
    clopt_status st = clopt_mirrored_optimizer_apply(m, g, 2, v, NV);
    if (size_ > 1) {
        char who[64];
        snprintf(who, sizeof who, "rank %d's 'b' differs from rank 0's", size_ - 1);
        assert_failed_alike(s, st, CLOPT_ERR_REPLICAS_DIVERGED, who);
    } else {
        cr_assert_eq(st, CLOPT_OK);
    }
    /* Within one rank: its second replica's a changed: named as that rank's replica. */
    if (rank_ == 0) cr_assert(clopt_variable_write(v[NV], x, 5 * sizeof *x) == CLOPT_OK);
    st = clopt_mirrored_optimizer_apply(m, g, 2, v, NV);
    assert_failed_alike(s, st, CLOPT_ERR_REPLICAS_DIVERGED, "rank 0: apply: replica 1's");
    clopt_strategy_destroy(s);
}
