/* `clopt bench`: clopt's optimizer steps against hand-written OpenMP C loops of the same math
 * (bench_loops.h), in one process, interleaved round by round so that the machine's noise hits
 * both sides alike; medians of many rounds. Also `--steps N` (device memory does not grow, no
 * step allocates) and `--startup` (new process: context through the first finished step, with a
 * cold and a warm kernel cache). BENCHMARKS.md at the repository root shows the results. */
#define _XOPEN_SOURCE 700 /* nftw, mkdtemp, readlink, setenv */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "clopt/experimental.h"
#include "cli_internal.h"

/* ---- the C side's state ---- */

enum { CB_CLIP_NONE, CB_CLIP_VALUE, CB_CLIP_NORM, CB_CLIP_GLOBAL };

/* A contiguous run of elements of one tensor: the unit of the C loops' parallel for. */
typedef struct cb_block {
    size_t lo, hi, tensor;
} cb_block;

/* Elements per block (whole rows, at least one): large enough that the loop overhead vanishes,
 * small enough that a static schedule splits one large tensor evenly. */
#define CB_BLOCK_ELEMS 65536

typedef struct cbench {
    size_t n, ntensors, nblocks;
    size_t *toff;        /* ntensors + 1 element offsets */
    size_t *trows, *tcols;
    size_t *tblk;        /* ntensors + 1: each tensor's blocks */
    cb_block *blk;
    int clip;
    double clipv;
    double lr;           /* the float learning rate, as a double */
    int64_t t;           /* 1-based step of the step being run */
    double u_product;    /* Nadam's */
    void *w, *g, *s[3];  /* arrays of n elements of the dtype */
    double *tfac, *tfac2, *tfac3, *tfac4; /* per tensor */
    double *bpart;       /* 2 per block */
    /* Adafactor: r (rows of every tensor), c (columns), per-block column partial sums. */
    void *af_r, *af_c, *af_colpart;
    size_t *row_off, *col_off, *colpart_off;
} cbench;

#include <tgmath.h>
#define BT float
#define BT_ID 0
#define BS(x) x##_f32
#include "bench_loops.h"
#undef BT
#undef BT_ID
#undef BS
#define BT double
#define BT_ID 1
#define BS(x) x##_f64
#include "bench_loops.h"
#undef BT
#undef BT_ID
#undef BS

typedef void (*cb_fn)(cbench *);

/* ---- the optimizers ----
 *
 * Traffic: the arrays of the variables' size that one step must read or write, counted once per
 * read and once per write (a read-modify-write array counts 2). It is the least any
 * implementation moves through memory; GB/s below is that many bytes per element divided by the
 * step time. Norm clipping (clipnorm, global_clipnorm) adds one read of the gradient (the norm
 * must be known before the first update), clipping by value nothing.
 *
 *   optimizer          reads             writes     arrays
 *   SGD (momentum)     w g m             w m        5
 *   Adam, AdamW        w g m v           w m v      7   (AdamW's decay is arithmetic)
 *   RMSprop            w g v             w v        5   (rho 0.9, no momentum, not centered)
 *   Adagrad            w g a             w a        5
 *   Adadelta           w g Eg Ex         w Eg Ex    7
 *   Adamax             w g m u           w m u      7
 *   Nadam              w g m v           w m v      7
 *   Ftrl               w g n z           w n z      7
 *   Lion               w g m             w m        5
 *   Lamb               w g m v, w m v    m v, w     10  (two passes: the trust ratio needs the
 *                                                        norms of w and r over the variable)
 *   ScheduleFreeAdamW  w g z v           w z v      7
 *   Adafactor          g w, g, w g       v w        7   (factored matrices: three passes over g,
 *                                                        row and column statistics are small)
 */
typedef struct bench_opt {
    const char *name;   /* Keras class name */
    const char *config; /* keys of the "config" object besides clipping */
    double lr;          /* the learning rate the config sets */
    int nslots;         /* C arrays of the variables' size besides w and g */
    double slot_init;   /* slot 0's initial value (Adagrad's, Ftrl's accumulator) */
    int slot0_copy;     /* slot 0 starts as a copy of w (ScheduleFreeAdamW's z) */
    int factored;       /* Adafactor: row and column statistics */
    int arrays;         /* traffic, in arrays of the variables' size (table above) */
    double target;      /* the bound on clopt / C */
    cb_fn f32, f64;
} bench_opt;

static const bench_opt bench_opts[] = {
    {"SGD", "\"learning_rate\": 0.01, \"momentum\": 0.9", 0.01, 1, 0, 0, 0, 5, 1.15, c_sgd_f32,
     c_sgd_f64},
    {"Adam", "\"learning_rate\": 0.001", 0.001, 2, 0, 0, 0, 7, 1.15, c_adam_f32, c_adam_f64},
    {"AdamW", "\"learning_rate\": 0.001", 0.001, 2, 0, 0, 0, 7, 1.3, c_adamw_f32, c_adamw_f64},
    {"RMSprop", "\"learning_rate\": 0.001", 0.001, 1, 0, 0, 0, 5, 1.3, c_rmsprop_f32,
     c_rmsprop_f64},
    {"Adagrad", "\"learning_rate\": 0.001", 0.001, 1, 0.1, 0, 0, 5, 1.3, c_adagrad_f32,
     c_adagrad_f64},
    {"Adadelta", "\"learning_rate\": 0.001", 0.001, 2, 0, 0, 0, 7, 1.3, c_adadelta_f32,
     c_adadelta_f64},
    {"Adamax", "\"learning_rate\": 0.001", 0.001, 2, 0, 0, 0, 7, 1.3, c_adamax_f32,
     c_adamax_f64},
    {"Nadam", "\"learning_rate\": 0.001", 0.001, 2, 0, 0, 0, 7, 1.3, c_nadam_f32, c_nadam_f64},
    {"Ftrl", "\"learning_rate\": 0.001", 0.001, 2, 0.1, 0, 0, 7, 1.3, c_ftrl_f32, c_ftrl_f64},
    {"Lion", "\"learning_rate\": 0.001", 0.001, 1, 0, 0, 0, 5, 1.3, c_lion_f32, c_lion_f64},
    {"Lamb", "\"learning_rate\": 0.001", 0.001, 2, 0, 0, 0, 10, 1.3, c_lamb_f32, c_lamb_f64},
    {"ScheduleFreeAdamW", "\"learning_rate\": 0.0025", 0.0025, 2, 0, 1, 0, 7, 1.3,
     c_sfadamw_f32, c_sfadamw_f64},
    {"Adafactor", "\"learning_rate\": 0.001", 0.001, 1, 0, 0, 1, 7, 1.3, c_adafactor_f32,
     c_adafactor_f64},
    /* No C loop: Muon's step on a matrix is a Newton-Schulz iteration, matrix products of about
     * 30*R*C*min(R, C) flops, so its limit is the matrix-multiply rate, not memory:
     * `--optimizer Muon` alone measures it against the device's GEMM instead (bench_muon.c). */
    {"Muon", "\"learning_rate\": 0.001", 0.001, 0, 0, 0, 0, 0, 0, NULL, NULL},
};
#define NOPTS (sizeof bench_opts / sizeof *bench_opts)

/* ---- options ---- */

typedef struct bench_args {
    const char *device;
    const char *optimizer; /* NULL: all */
    size_t size, tensors;  /* 0: the two default shapes */
    int rounds;
    clopt_dtype dtype;
    int json, quiet;
    int clip;
    long steps;            /* > 0: the memory check instead of timing */
    int startup, startup_runs;
    int startup_child;
    double load_before; /* the 1-minute load average when the timing started */
} bench_args;

void cli_help_bench(FILE *out) {
    fputs("usage: clopt bench [--device SPEC] [--optimizer NAME|all] [--size N] [--tensors K]\n"
          "                   [--rounds R] [--dtype float32|float64]\n"
          "                   [--clip none|value|norm|global] [--json] [--quiet]\n"
          "       clopt bench --steps N [...]      (memory check)\n"
          "       clopt bench --startup [--startup-runs N] [--device SPEC] [--size N] [--tensors K]\n"
          "\n"
          "Times clopt's optimizer steps (clopt_optimizer_apply + clopt_finish) against a\n"
          "hand-written OpenMP C loop of the same math on host arrays of the same size, in one\n"
          "process, interleaved round by round; prints the median ns per element of each, the\n"
          "ratio clopt/C, and GB/s of useful traffic (the bytes a step must read and write).\n"
          "\n"
          "options:\n"
          "  --device SPEC       the device (default: CLOPT_DEVICE, else the default device)\n"
          "  --optimizer NAME    one optimizer (Keras class name, any case), or all (default)\n"
          "  --size N            total elements (default: two shapes, one tensor of 2^24\n"
          "                      elements and 2000 tensors of 4096)\n"
          "  --tensors K         split the N elements into K variables (default 1)\n"
          "  --rounds R          timed rounds per side (default 15)\n"
          "  --dtype D           float32 (default) or float64\n"
          "  --clip MODE         none (default), value (clipvalue 0.5), norm (clipnorm 1),\n"
          "                      global (global_clipnorm 1)\n"
          "  --json              one JSON document on stdout instead of the table\n"
          "  --quiet             no progress line on stderr\n"
          "  --steps N           instead of timing: run N clopt steps and check that device\n"
          "                      memory and the number of buffers do not change (no step\n"
          "                      allocates); reports memory after build against variables +\n"
          "                      gradients + slots\n"
          "  --startup           instead of timing: new processes, each timing\n"
          "                      clopt_context_create through the first finished Adam step\n"
          "                      (--optimizer to change), first with empty kernel caches\n"
          "                      (CLOPT_CACHE_DIR and POCL_CACHE_DIR in a new temporary\n"
          "                      directory), then warm (default 5 runs, --startup-runs)\n"
          "\n"
          "Variables are rows x cols matrices (2^24: 4096 x 4096; 4096: 64 x 64) of random\n"
          "values in [-1, 1], gradients too; the C loops use OpenMP's default thread count\n"
          "(OMP_NUM_THREADS). Exit status 1 when a step fails or clopt's result differs from\n"
          "the C loop's.\n"
          "\n"
          "--optimizer Muon (its step is matrix products, not a memory-speed update): times\n"
          "its step on --tensors K (default 64) variables of --size/K elements (default\n"
          "256 x 256) against one Newton-Schulz iteration's three products as single GEMMs\n"
          "and as batched GEMMs on the same device (CLBlast on OpenCL), interleaved; prints\n"
          "ns per element and GFLOP/s (per iteration 4*m*m*n + 2*m^3 for m x n, m <= n).\n",
          out);
}

static int parse_count(const char *opt, const char *v, long lo, long *out) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || *end || x < lo) {
        fprintf(stderr, "clopt bench: option '%s' needs an integer >= %ld, got '%s'\n", opt, lo, v);
        return -1;
    }
    *out = x;
    return 0;
}

static int parse_args(int argc, char **argv, bench_args *a) {
    memset(a, 0, sizeof *a);
    a->rounds = 15;
    a->dtype = CLOPT_FLOAT32;
    a->startup_runs = 5;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (cli_is_help(o)) {
            cli_help_bench(stdout);
            return 1;
        }
        if (!strcmp(o, "--json")) {
            a->json = 1;
            continue;
        }
        if (!strcmp(o, "--quiet")) {
            a->quiet = 1;
            continue;
        }
        if (!strcmp(o, "--startup")) {
            a->startup = 1;
            continue;
        }
        if (!strcmp(o, "--startup-child")) { /* internal: one timed start-up, a JSON line */
            a->startup_child = 1;
            continue;
        }
        static const char *const valued[] = {"--device", "--optimizer", "--size",
                                             "--tensors", "--rounds", "--dtype",
                                             "--clip", "--steps", "--startup-runs"};
        int known = 0;
        for (size_t k = 0; k < sizeof valued / sizeof *valued; k++) known |= !strcmp(o, valued[k]);
        if (!known) {
            fprintf(stderr, "clopt bench: unknown option '%s' (see clopt bench --help)\n", o);
            return -1;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "clopt bench: option '%s' needs a value\n", o);
            return -1;
        }
        const char *v = argv[++i];
        long x = 0;
        if (!strcmp(o, "--device")) {
            a->device = v;
        } else if (!strcmp(o, "--optimizer")) {
            a->optimizer = strcasecmp(v, "all") ? v : NULL;
        } else if (!strcmp(o, "--size")) {
            if (parse_count(o, v, 1, &x)) return -1;
            a->size = (size_t)x;
        } else if (!strcmp(o, "--tensors")) {
            if (parse_count(o, v, 1, &x)) return -1;
            a->tensors = (size_t)x;
        } else if (!strcmp(o, "--rounds")) {
            if (parse_count(o, v, 1, &x)) return -1;
            a->rounds = (int)x;
        } else if (!strcmp(o, "--steps")) {
            if (parse_count(o, v, 1, &x)) return -1;
            a->steps = x;
        } else if (!strcmp(o, "--startup-runs")) {
            if (parse_count(o, v, 1, &x)) return -1;
            a->startup_runs = (int)x;
        } else if (!strcmp(o, "--dtype")) {
            if (!strcmp(v, "float32")) {
                a->dtype = CLOPT_FLOAT32;
            } else if (!strcmp(v, "float64")) {
                a->dtype = CLOPT_FLOAT64;
            } else {
                fprintf(stderr, "clopt bench: --dtype must be float32 or float64, got '%s'\n", v);
                return -1;
            }
        } else if (!strcmp(o, "--clip")) {
            static const char *const modes[] = {"none", "value", "norm", "global"};
            a->clip = -1;
            for (int k = 0; k < 4; k++)
                if (!strcmp(v, modes[k])) a->clip = k;
            if (a->clip < 0) {
                fprintf(stderr, "clopt bench: --clip must be none, value, norm or global, got '%s'\n",
                        v);
                return -1;
            }
        }
    }
    if (a->size && a->tensors > a->size) {
        fprintf(stderr, "clopt bench: --tensors %zu is more than --size %zu elements\n",
                a->tensors, a->size);
        return -1;
    }
    return 0;
}

/* ---- helpers ---- */

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n) {
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* A deterministic value in [-1, 1) for element i of stream `seed` (splitmix64). */
static double rnd(uint64_t seed, uint64_t i) {
    uint64_t z = seed * 0x9e3779b97f4a7c15ULL + i + 0x632be59bd9b4e019ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (double)(z >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

/* The matrix shape of a variable of n elements: rows the largest divisor of n not above sqrt(n). */
static void matrix_shape(size_t n, size_t *rows, size_t *cols) {
    size_t r = (size_t)sqrt((double)n);
    while (r > 1 && n % r) r--;
    *rows = r ? r : 1;
    *cols = n / *rows;
}

static const bench_opt *find_opt(const char *name) {
    for (size_t i = 0; i < NOPTS; i++)
        if (!strcasecmp(bench_opts[i].name, name)) return &bench_opts[i];
    return NULL;
}

static const char *clip_name(int clip) {
    static const char *const names[] = {"none", "value", "norm", "global"};
    return names[clip];
}

/* The optimizer's Keras config with the clipping mode's key. */
static char *config_json(const bench_opt *o, int clip) {
    static const char *const keys[] = {"", ", \"clipvalue\": 0.5", ", \"clipnorm\": 1.0",
                                       ", \"global_clipnorm\": 1.0"};
    size_t n = strlen(o->name) + strlen(o->config) + 128;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "{\"class_name\": \"%s\", \"config\": {%s%s}}", o->name, o->config,
                 keys[clip]);
    return s;
}

/* ---- the C side ---- */

static void cbench_free(cbench *b) {
    free(b->toff);
    free(b->trows);
    free(b->tcols);
    free(b->tblk);
    free(b->blk);
    free(b->w);
    free(b->g);
    for (int k = 0; k < 3; k++) free(b->s[k]);
    free(b->tfac);
    free(b->tfac2);
    free(b->tfac3);
    free(b->tfac4);
    free(b->bpart);
    free(b->af_r);
    free(b->af_c);
    free(b->af_colpart);
    free(b->row_off);
    free(b->col_off);
    free(b->colpart_off);
    memset(b, 0, sizeof *b);
}

static void *big_alloc(size_t bytes) {
    void *p = NULL;
    return posix_memalign(&p, 64, bytes ? bytes : 64) == 0 ? p : NULL;
}

/* The C side's arrays for `tensors` variables over n elements, filled (in parallel: first touch
 * by the threads that will use them) with the same values as clopt's variables. */
static int cbench_init(cbench *b, const bench_opt *o, clopt_dtype dt, size_t n, size_t tensors,
                       int clip) {
    memset(b, 0, sizeof *b);
    const size_t es = clopt_dtype_size(dt), K = tensors;
    b->n = n;
    b->ntensors = K;
    b->clip = clip;
    b->clipv = clip == CB_CLIP_VALUE ? 0.5 : 1.0;
    b->lr = (double)(float)o->lr;
    b->u_product = 1.0;
    b->toff = malloc((K + 1) * sizeof *b->toff);
    b->trows = malloc(K * sizeof *b->trows);
    b->tcols = malloc(K * sizeof *b->tcols);
    b->tblk = malloc((K + 1) * sizeof *b->tblk);
    b->row_off = malloc((K + 1) * sizeof *b->row_off);
    b->col_off = malloc((K + 1) * sizeof *b->col_off);
    if (!b->toff || !b->trows || !b->tcols || !b->tblk || !b->row_off || !b->col_off) return -1;
    size_t nb = 0;
    b->row_off[0] = b->col_off[0] = 0;
    for (size_t k = 0; k < K; k++) {
        b->toff[k] = k * (n / K);
        const size_t sz = (k + 1 < K ? (k + 1) * (n / K) : n) - b->toff[k];
        matrix_shape(sz, &b->trows[k], &b->tcols[k]);
        const size_t rows_per = b->tcols[k] >= CB_BLOCK_ELEMS ? 1 : CB_BLOCK_ELEMS / b->tcols[k];
        nb += (b->trows[k] + rows_per - 1) / rows_per;
        b->row_off[k + 1] = b->row_off[k] + b->trows[k];
        b->col_off[k + 1] = b->col_off[k] + b->tcols[k];
    }
    b->toff[K] = n;
    b->blk = malloc(nb * sizeof *b->blk);
    b->colpart_off = malloc((nb + 1) * sizeof *b->colpart_off);
    b->bpart = malloc(2 * nb * sizeof *b->bpart);
    if (!b->blk || !b->colpart_off || !b->bpart) return -1;
    nb = 0;
    b->colpart_off[0] = 0;
    for (size_t k = 0; k < K; k++) {
        const size_t cols = b->tcols[k];
        const size_t rows_per = cols >= CB_BLOCK_ELEMS ? 1 : CB_BLOCK_ELEMS / cols;
        b->tblk[k] = nb;
        for (size_t r = 0; r < b->trows[k]; r += rows_per) {
            const size_t r1 = r + rows_per < b->trows[k] ? r + rows_per : b->trows[k];
            b->blk[nb] = (cb_block){b->toff[k] + r * cols, b->toff[k] + r1 * cols, k};
            b->colpart_off[nb + 1] = b->colpart_off[nb] + (o->factored ? cols : 0);
            nb++;
        }
    }
    b->tblk[K] = nb;
    b->nblocks = nb;
    b->tfac = calloc(K, sizeof *b->tfac);
    b->tfac2 = calloc(K, sizeof *b->tfac2);
    b->tfac3 = calloc(K, sizeof *b->tfac3);
    b->tfac4 = calloc(K, sizeof *b->tfac4);
    b->w = big_alloc(n * es);
    b->g = big_alloc(n * es);
    if (!b->tfac || !b->tfac2 || !b->tfac3 || !b->tfac4 || !b->w || !b->g) return -1;
    for (int k = 0; k < o->nslots; k++)
        if (!(b->s[k] = big_alloc(n * es))) return -1;
    if (o->factored) {
        b->af_r = calloc(b->row_off[K] ? b->row_off[K] : 1, es);
        b->af_c = calloc(b->col_off[K] ? b->col_off[K] : 1, es);
        b->af_colpart = big_alloc(b->colpart_off[nb] * es);
        if (!b->af_r || !b->af_c || !b->af_colpart) return -1;
    }
    const double s0 = o->slot_init;
    const int copy = o->slot0_copy, nslots = o->nslots;
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < nb; k++)
        for (size_t i = b->blk[k].lo; i < b->blk[k].hi; i++) {
            const double w = rnd(1, i), g = rnd(2, i);
            cli_store(b->w, dt, i, w);
            cli_store(b->g, dt, i, g);
            for (int j = 0; j < nslots; j++) cli_store(b->s[j], dt, i, j == 0 && copy ? w : j ? 0 : s0);
        }
    return 0;
}

static void cbench_step(cbench *b, const bench_opt *o, clopt_dtype dt) {
    b->t++;
    (dt == CLOPT_FLOAT64 ? o->f64 : o->f32)(b);
}

/* ---- the clopt side ---- */

typedef struct cside {
    clopt_variable **vars, **grads;
    size_t n;
    clopt_optimizer *opt;
} cside;

static void cside_free(cside *c) {
    clopt_optimizer_destroy(c->opt);
    for (size_t i = 0; i < c->n; i++) {
        clopt_variable_destroy(c->vars ? c->vars[i] : NULL);
        clopt_variable_destroy(c->grads ? c->grads[i] : NULL);
    }
    free(c->vars);
    free(c->grads);
    memset(c, 0, sizeof *c);
}

static int fail_clopt(clopt_context *ctx, const char *what, clopt_status st) {
    fprintf(stderr, "clopt bench: %s failed: %s\n%s\n", what, clopt_status_name(st),
            clopt_context_last_error(ctx));
    return -1;
}

/* The variables and gradients of the C side's layout, with its initial values. */
static int cside_vars(clopt_context *ctx, cside *c, const cbench *b, clopt_dtype dt) {
    const size_t es = clopt_dtype_size(dt);
    c->n = b->ntensors;
    c->vars = calloc(c->n, sizeof *c->vars);
    c->grads = calloc(c->n, sizeof *c->grads);
    if (!c->vars || !c->grads) return -1;
    char name[64];
    clopt_status st;
    for (int pass = 0; pass < 2; pass++) /* the variables, then the gradients (contiguous) */
        for (size_t k = 0; k < c->n; k++) {
            const int64_t shape[2] = {(int64_t)b->trows[k], (int64_t)b->tcols[k]};
            snprintf(name, sizeof name, "%s%zu", pass ? "grad" : "var", k);
            const char *init = (const char *)(pass ? b->g : b->w) + b->toff[k] * es;
            if ((st = clopt_variable_create(ctx, name, dt, 2, shape, init,
                                            pass ? &c->grads[k] : &c->vars[k])) != CLOPT_OK)
                return fail_clopt(ctx, "clopt_variable_create", st);
        }
    return 0;
}

/* The optimizer of `json`, built on the clopt side's variables. Returns 0; 1 when this library
 * does not have it (*skipped and `note` say why: a note, not a failure); -1 on a failure. */
static int cside_optimizer(clopt_context *ctx, cside *c, const char *json, int *skipped,
                           char *note, size_t nnote) {
    clopt_status st = clopt_optimizer_from_config(ctx, json, &c->opt);
    if (st != CLOPT_OK) {
        *skipped = 1;
        snprintf(note, nnote, "%s: %s", clopt_status_name(st), clopt_context_last_error(ctx));
        return 1;
    }
    if ((st = clopt_optimizer_build(c->opt, c->vars, c->n)) != CLOPT_OK)
        return fail_clopt(ctx, "clopt_optimizer_build", st);
    return 0;
}

static int clopt_step(clopt_context *ctx, cside *c) {
    clopt_status st = clopt_optimizer_apply(c->opt, c->grads, c->vars, c->n);
    if (st == CLOPT_OK) st = clopt_finish(ctx);
    return st == CLOPT_OK ? 0 : fail_clopt(ctx, "clopt_optimizer_apply", st);
}

/* Compares clopt's variables with the C side's: elements farther apart than 1e-4 (absolute, or
 * relative above 1) after the same steps from the same values. A few are allowed (at most one in
 * 10^5): float rounding differs (OpenCL may contract a*b+c into fma) and Lion's sign can flip
 * where its argument is within rounding of 0. */
static int check_result(clopt_context *ctx, const cside *c, const cbench *b, clopt_dtype dt,
                        double *max_diff, size_t *bad) {
    const size_t es = clopt_dtype_size(dt);
    size_t maxsz = 0;
    for (size_t k = 0; k < b->ntensors; k++)
        if (b->toff[k + 1] - b->toff[k] > maxsz) maxsz = b->toff[k + 1] - b->toff[k];
    void *buf = malloc(maxsz * es);
    if (!buf) return -1;
    *max_diff = 0;
    *bad = 0;
    for (size_t k = 0; k < b->ntensors; k++) {
        const size_t sz = b->toff[k + 1] - b->toff[k];
        clopt_status st = clopt_variable_read(c->vars[k], buf, sz * es);
        if (st != CLOPT_OK) {
            free(buf);
            return fail_clopt(ctx, "clopt_variable_read", st);
        }
        for (size_t i = 0; i < sz; i++) {
            const double x = cli_load(buf, dt, i), y = cli_load(b->w, dt, b->toff[k] + i);
            const double d = fabs(x - y);
            if (!(d <= *max_diff)) *max_diff = d; /* NaN sticks */
            if (!(d <= 1e-4 * fmax(1.0, fabs(y)))) (*bad)++;
        }
    }
    free(buf);
    return 0;
}

/* ---- progress ---- */

/* A progress line on stderr: rewritten in place on a terminal; elsewhere (a log) only the
 * lines with `first` set, one per run. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void progress(const bench_args *a, int first, const char *fmt, ...);
static void progress(const bench_args *a, int first, const char *fmt, ...) {
    if (a->quiet || (!first && !isatty(STDERR_FILENO))) return;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (isatty(STDERR_FILENO))
        fprintf(stderr, "\r\033[K%s", line);
    else
        fprintf(stderr, "%s\n", line);
    fflush(stderr);
}

static void progress_done(const bench_args *a) {
    if (!a->quiet && isatty(STDERR_FILENO)) fputs("\r\033[K", stderr);
}

/* ---- one timed run ---- */

typedef struct bench_result {
    const bench_opt *opt;
    size_t n, tensors;
    int skipped;
    char note[256];
    double build_ms;
    double clopt_ns, c_ns; /* medians, per step */
    double paired;         /* the median of the rounds' clopt/C ratios */
    double clopt_min, c_min;
    double max_diff;
    size_t bad;
    uint64_t device_bytes; /* after build: total, and the arena's reserved part */
    uint64_t arena_used;
} bench_result;

static int run_timed(clopt_context *ctx, const bench_args *a, const bench_opt *o, size_t n,
                     size_t tensors, bench_result *r) {
    memset(r, 0, sizeof *r);
    r->opt = o;
    r->n = n;
    r->tensors = tensors;
    if (!o->f32) {
        r->skipped = 1;
        snprintf(r->note, sizeof r->note,
                 "no C loop: its step is matrix products (Newton-Schulz), compute-bound, not a "
                 "memory-speed update");
        return 0;
    }
    cbench b;
    memset(&b, 0, sizeof b);
    cside c = {0};
    int rc = -1;
    double *tc = calloc((size_t)a->rounds, sizeof *tc), *tC = calloc((size_t)a->rounds, sizeof *tC);
    char *json = config_json(o, a->clip);
    if (!tc || !tC || !json || cbench_init(&b, o, a->dtype, n, tensors, a->clip)) {
        fprintf(stderr, "clopt bench: out of memory for %zu elements\n", n);
        goto out;
    }
    if (cside_vars(ctx, &c, &b, a->dtype)) goto out;
    const double t0 = now_ns();
    const int made = cside_optimizer(ctx, &c, json, &r->skipped, r->note, sizeof r->note);
    if (made != 0) {
        rc = made > 0 ? 0 : -1;
        goto out;
    }
    r->build_ms = (now_ns() - t0) / 1e6;
    clopt_memory_stats ms;
    if (clopt_context_memory_stats(ctx, &ms) == CLOPT_OK) {
        r->device_bytes = ms.device_bytes;
        r->arena_used = ms.arena_used_bytes;
    }
    /* Warm both sides: one untimed step each. */
    if (clopt_step(ctx, &c)) goto out;
    cbench_step(&b, o, a->dtype);
    for (int k = 0; k < a->rounds; k++) {
        progress(a, k == 0, "clopt bench: %s, %zu x %zu, round %d/%d", o->name, tensors,
                 n / tensors, k + 1, a->rounds);
        /* Alternate which side goes first, so neither always follows the other. */
        for (int side = 0; side < 2; side++) {
            const int clopt_side = (side == 0) == (k % 2 == 0);
            const double s = now_ns();
            if (clopt_side) {
                if (clopt_step(ctx, &c)) goto out;
                tc[k] = now_ns() - s;
            } else {
                cbench_step(&b, o, a->dtype);
                tC[k] = now_ns() - s;
            }
        }
    }
    if (a->rounds < 1) goto out; /* checked when parsed; says so to the compiler too */
    double *pr = calloc((size_t)a->rounds, sizeof *pr);
    if (!pr) goto out;
    for (int k = 0; k < a->rounds; k++) pr[k] = tc[k] / tC[k];
    r->paired = median(pr, (size_t)a->rounds);
    free(pr);
    r->clopt_ns = median(tc, (size_t)a->rounds); /* sorts */
    r->c_ns = median(tC, (size_t)a->rounds);
    r->clopt_min = tc[0];
    r->c_min = tC[0];
    if (check_result(ctx, &c, &b, a->dtype, &r->max_diff, &r->bad)) goto out;
    rc = 0;
out:
    cside_free(&c);
    cbench_free(&b);
    free(tc);
    free(tC);
    free(json);
    return rc;
}

/* ---- output ---- */

static double loadavg(void);

static int result_ok(const bench_result *r) { return r->bad * 100000 <= r->n; }

static double bytes_per_elem(const bench_result *r, const bench_args *a) {
    const int extra = a->clip == CB_CLIP_NORM || a->clip == CB_CLIP_GLOBAL;
    return (double)((r->opt->arrays + extra) * (int)clopt_dtype_size(a->dtype));
}

static void print_table(clopt_context *ctx, const bench_args *a, const bench_result *rs,
                        size_t nr) {
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    printf("clopt bench: %s\n", clopt_context_device_name(ctx));
    printf("dtype %s, clip %s, median of %d interleaved rounds; C loop: OpenMP, %d threads, "
           "OMP_WAIT_POLICY=%s, OMP_SCHEDULE=%s\nload average (1 min) before %.2f, after "
           "%.2f\n\n",
           clopt_dtype_name(a->dtype), clip_name(a->clip), a->rounds, threads,
           getenv("OMP_WAIT_POLICY") ? getenv("OMP_WAIT_POLICY") : "(default)",
           getenv("OMP_SCHEDULE") ? getenv("OMP_SCHEDULE") : "(default)", a->load_before,
           loadavg());
    printf("%-18s %-13s %9s %11s %9s %7s %7s %10s %8s %5s  %s\n", "optimizer", "shape",
           "build ms", "clopt ns/el", "C ns/el", "ratio", "paired", "clopt GB/s", "C GB/s", "B/el",
           "target");
    for (size_t i = 0; i < nr; i++) {
        const bench_result *r = &rs[i];
        char shape[40];
        snprintf(shape, sizeof shape, "%zu x %zu", r->tensors, r->n / r->tensors);
        if (r->skipped) {
            printf("%-18s %-13s skipped: %s\n", r->opt->name, shape, r->note);
            continue;
        }
        const double bpe = bytes_per_elem(r, a), n = (double)r->n;
        const double ratio = r->clopt_ns / r->c_ns;
        printf("%-18s %-13s %9.1f %11.3f %9.3f %6.2fx %6.2fx %10.1f %8.1f %5.0f  %.2fx %s%s\n",
               r->opt->name, shape, r->build_ms, r->clopt_ns / n, r->c_ns / n, ratio, r->paired,
               bpe * n / r->clopt_ns, bpe * n / r->c_ns, bpe, r->opt->target,
               ratio <= r->opt->target ? "met" : "MISSED",
               result_ok(r) ? "" : "  RESULTS DIFFER");
    }
    printf("\nns/el: median step time / elements; ratio: of the medians; paired: median of "
           "each round's ratio\n(the two steps of a round ran back to back). GB/s: B/el (bytes "
           "a step must read and write per\nelement) / ns/el. target: the bound on the ratio.\n");
}

static void print_json(clopt_context *ctx, const bench_args *a, const bench_result *rs,
                       size_t nr) {
    json_t *root = json_object(), *arr = json_array(), *skipped = json_array();
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    json_object_set_new(root, "device", json_string(clopt_context_device_name(ctx)));
    json_object_set_new(root, "dtype", json_string(clopt_dtype_name(a->dtype)));
    json_object_set_new(root, "clip", json_string(clip_name(a->clip)));
    json_object_set_new(root, "rounds", json_integer(a->rounds));
    json_object_set_new(root, "c_threads", json_integer(threads));
    json_object_set_new(root, "omp_wait_policy",
                        json_string(getenv("OMP_WAIT_POLICY") ? getenv("OMP_WAIT_POLICY") : ""));
    json_object_set_new(root, "omp_schedule",
                        json_string(getenv("OMP_SCHEDULE") ? getenv("OMP_SCHEDULE") : ""));
    json_object_set_new(root, "load_average_before", json_real(a->load_before));
    json_object_set_new(root, "load_average_after", json_real(loadavg()));
    for (size_t i = 0; i < nr; i++) {
        const bench_result *r = &rs[i];
        json_t *e = json_object();
        json_object_set_new(e, "optimizer", json_string(r->opt->name));
        json_object_set_new(e, "tensors", json_integer((json_int_t)r->tensors));
        json_object_set_new(e, "elements", json_integer((json_int_t)r->n));
        if (r->skipped) {
            json_object_set_new(e, "reason", json_string(r->note));
            json_array_append_new(skipped, e);
            continue;
        }
        const double bpe = bytes_per_elem(r, a), n = (double)r->n;
        json_object_set_new(e, "bytes_per_element", json_real(bpe));
        json_object_set_new(e, "build_ms", json_real(r->build_ms));
        json_object_set_new(e, "clopt_ns_per_element", json_real(r->clopt_ns / n));
        json_object_set_new(e, "c_ns_per_element", json_real(r->c_ns / n));
        json_object_set_new(e, "ratio", json_real(r->clopt_ns / r->c_ns));
        json_object_set_new(e, "paired_ratio", json_real(r->paired));
        json_object_set_new(e, "clopt_min_ns_per_element", json_real(r->clopt_min / n));
        json_object_set_new(e, "c_min_ns_per_element", json_real(r->c_min / n));
        json_object_set_new(e, "clopt_gb_per_s", json_real(bpe * n / r->clopt_ns));
        json_object_set_new(e, "c_gb_per_s", json_real(bpe * n / r->c_ns));
        json_object_set_new(e, "target_ratio", json_real(r->opt->target));
        json_object_set_new(e, "meets_target", json_boolean(r->clopt_ns / r->c_ns <= r->opt->target));
        json_object_set_new(e, "device_bytes_after_build", json_integer((json_int_t)r->device_bytes));
        json_object_set_new(e, "max_abs_difference", json_real(r->max_diff));
        json_object_set_new(e, "results_agree", json_boolean(result_ok(r)));
        json_array_append_new(arr, e);
    }
    json_object_set_new(root, "results", arr);
    json_object_set_new(root, "skipped", skipped);
    char *s = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
    if (s) puts(s);
    free(s);
    json_decref(root);
}

/* ---- --steps: memory over many steps ---- */

typedef struct mem_result {
    const bench_opt *opt;
    size_t n, tensors;
    int skipped;
    char note[256];
    uint64_t var_bytes, grad_bytes, slot_bytes; /* arena reservations after build */
    clopt_memory_stats before, after;            /* after build and one step; after N steps */
} mem_result;

static int run_steps(const bench_args *a, const bench_opt *o, size_t n, size_t tensors,
                     mem_result *r) {
    memset(r, 0, sizeof *r);
    r->opt = o;
    r->n = n;
    r->tensors = tensors;
    if (!o->f32 && !a->optimizer) { /* Muon: thousands of matrix-product steps take hours */
        r->skipped = 1;
        snprintf(r->note, sizeof r->note, "compute-bound steps; run it alone with --optimizer");
        return 0;
    }
    clopt_context *ctx = NULL;
    clopt_status st = clopt_context_create(a->device, &ctx);
    if (st != CLOPT_OK) {
        fprintf(stderr, "clopt bench: device '%s': %s\n", a->device ? a->device : "(default)",
                clopt_last_create_error());
        return -1;
    }
    cbench b;
    memset(&b, 0, sizeof b);
    cside c = {0};
    int rc = -1;
    char *json = config_json(o, a->clip);
    /* The C side only provides the layout and initial values here. */
    bench_opt layout = *o;
    layout.nslots = 0;
    layout.factored = 0;
    if (!json || cbench_init(&b, &layout, a->dtype, n, tensors, a->clip)) goto out;
    clopt_memory_stats m0, m1, m2;
    clopt_context_memory_stats(ctx, &m0);
    if (cside_vars(ctx, &c, &b, a->dtype)) goto out;
    clopt_context_memory_stats(ctx, &m1);
    const int made = cside_optimizer(ctx, &c, json, &r->skipped, r->note, sizeof r->note);
    if (made != 0) {
        rc = made > 0 ? 0 : -1;
        goto out;
    }
    clopt_context_memory_stats(ctx, &m2);
    const uint64_t vg = m1.arena_used_bytes - m0.arena_used_bytes;
    r->var_bytes = r->grad_bytes = vg / 2;
    r->slot_bytes = m2.arena_used_bytes - m1.arena_used_bytes;
    if (clopt_step(ctx, &c)) goto out;
    clopt_context_memory_stats(ctx, &r->before);
    for (long k = 1; k < a->steps; k++) {
        if (k % 100 == 0)
            progress(a, k == 100, "clopt bench --steps: %s, %zu x %zu, step %ld/%ld", o->name,
                     tensors, n / tensors, k, a->steps);
        if (clopt_step(ctx, &c)) goto out;
    }
    clopt_context_memory_stats(ctx, &r->after);
    rc = 0;
out:
    cside_free(&c);
    cbench_free(&b);
    free(json);
    clopt_context_destroy(ctx);
    return rc;
}

static int steps_ok(const mem_result *r) {
    return r->after.device_bytes == r->before.device_bytes &&
           r->after.device_buffers == r->before.device_buffers &&
           r->after.buffer_creates == r->before.buffer_creates;
}

static void print_steps(const bench_args *a, const mem_result *rs, size_t nr) {
    if (a->json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < nr; i++) {
            const mem_result *r = &rs[i];
            json_t *e = json_object();
            json_object_set_new(e, "optimizer", json_string(r->opt->name));
            json_object_set_new(e, "tensors", json_integer((json_int_t)r->tensors));
            json_object_set_new(e, "elements", json_integer((json_int_t)r->n));
            if (r->skipped) {
                json_object_set_new(e, "skipped", json_string(r->note));
            } else {
                json_object_set_new(e, "steps", json_integer(a->steps));
                json_object_set_new(e, "variable_bytes", json_integer((json_int_t)r->var_bytes));
                json_object_set_new(e, "gradient_bytes", json_integer((json_int_t)r->grad_bytes));
                json_object_set_new(e, "slot_bytes", json_integer((json_int_t)r->slot_bytes));
                json_object_set_new(e, "device_bytes", json_integer((json_int_t)r->before.device_bytes));
                json_object_set_new(e, "device_bytes_after_steps",
                                    json_integer((json_int_t)r->after.device_bytes));
                json_object_set_new(e, "buffers", json_integer((json_int_t)r->before.device_buffers));
                json_object_set_new(e, "buffer_creates_during_steps",
                                    json_integer((json_int_t)(r->after.buffer_creates -
                                                              r->before.buffer_creates)));
                json_object_set_new(e, "ok", json_boolean(steps_ok(r)));
            }
            json_array_append_new(arr, e);
        }
        char *s = json_dumps(arr, JSON_INDENT(2));
        if (s) puts(s);
        free(s);
        json_decref(arr);
        return;
    }
    printf("memory over %ld steps (%s, clip %s); MiB = 2^20 bytes\n\n", a->steps,
           clopt_dtype_name(a->dtype), clip_name(a->clip));
    printf("%-18s %-13s %8s %8s %8s %9s %10s %9s %8s %7s  %s\n", "optimizer", "shape", "vars",
           "grads", "slots", "other", "device", "after N", "buffers", "allocs", "");
    for (size_t i = 0; i < nr; i++) {
        const mem_result *r = &rs[i];
        char shape[40];
        snprintf(shape, sizeof shape, "%zu x %zu", r->tensors, r->n / r->tensors);
        if (r->skipped) {
            printf("%-18s %-13s skipped: %s\n", r->opt->name, shape, r->note);
            continue;
        }
        const double M = 1048576.0;
        const uint64_t vgs = r->var_bytes + r->grad_bytes + r->slot_bytes;
        printf("%-18s %-13s %8.2f %8.2f %8.2f %9.3f %10.2f %9.2f %8llu %7llu  %s\n",
               r->opt->name, shape, r->var_bytes / M, r->grad_bytes / M, r->slot_bytes / M,
               ((double)r->before.device_bytes - (double)vgs) / M, r->before.device_bytes / M,
               r->after.device_bytes / M, (unsigned long long)r->before.device_buffers,
               (unsigned long long)(r->after.buffer_creates - r->before.buffer_creates),
               steps_ok(r) ? "ok" : "GREW");
    }
    printf("\nvars, grads, slots: arena reservations (sizes rounded up to whole chunks); other: "
           "everything else\n(launch tables, per-variable scalars, partial sums, and arena space "
           "not yet handed out);\nallocs: buffers created during the steps (must be 0).\n");
}

/* ---- --startup ---- */

/* In a new process (the parent runs it as a child): context, variables, optimizer from config
 * and build (kernels compiled or loaded and warmed), first step finished; one JSON line. */
static int startup_child(const bench_args *a, const bench_opt *o, size_t n, size_t tensors) {
    cbench b;
    bench_opt layout = *o;
    layout.nslots = 0;
    layout.factored = 0;
    if (cbench_init(&b, &layout, a->dtype, n, tensors, a->clip)) return CLI_EXIT_FAIL;
    char *json = config_json(o, a->clip);
    cside c = {0};
    clopt_context *ctx = NULL;
    int rc = CLI_EXIT_FAIL;
    const double t0 = now_ns();
    clopt_status st = clopt_context_create(a->device, &ctx);
    if (st != CLOPT_OK) {
        fprintf(stderr, "clopt bench: %s\n", clopt_last_create_error());
        goto out;
    }
    const double t1 = now_ns();
    if (cside_vars(ctx, &c, &b, a->dtype)) goto out;
    const double t2 = now_ns();
    if ((st = clopt_optimizer_from_config(ctx, json, &c.opt)) != CLOPT_OK ||
        (st = clopt_optimizer_build(c.opt, c.vars, c.n)) != CLOPT_OK) {
        fail_clopt(ctx, "building the optimizer", st);
        goto out;
    }
    const double t3 = now_ns();
    if (clopt_step(ctx, &c)) goto out;
    const double t4 = now_ns();
    printf("{\"total_ms\": %.3f, \"context_ms\": %.3f, \"variables_ms\": %.3f, "
           "\"build_ms\": %.3f, \"first_step_ms\": %.3f}\n",
           (t4 - t0) / 1e6, (t1 - t0) / 1e6, (t2 - t1) / 1e6, (t3 - t2) / 1e6, (t4 - t3) / 1e6);
    fflush(stdout);
    rc = CLI_EXIT_OK;
out:
    cside_free(&c);
    clopt_context_destroy(ctx);
    cbench_free(&b);
    free(json);
    return rc;
}

typedef struct startup_run {
    double total, context, variables, build, first_step; /* ms, in the child */
    double process;                                      /* ms, exec to exit */
} startup_run;

/* Runs this program as `clopt bench --startup-child ...` with the given cache directories and
 * reads its JSON line. */
static int spawn_child(const bench_args *a, const char *opt_name, size_t n, size_t tensors,
                       const char *clopt_cache, const char *pocl_cache, startup_run *out) {
    char exe[4096];
    const ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) {
        fprintf(stderr, "clopt bench: cannot find this program (/proc/self/exe)\n");
        return -1;
    }
    exe[len] = '\0';
    char sn[32], st[32];
    snprintf(sn, sizeof sn, "%zu", n);
    snprintf(st, sizeof st, "%zu", tensors);
    const char *argv[16] = {"clopt", "bench", "--startup-child", "--optimizer", opt_name,
                            "--size", sn, "--tensors", st, "--dtype",
                            clopt_dtype_name(a->dtype)};
    int k = 11;
    if (a->device) {
        argv[k++] = "--device";
        argv[k++] = a->device;
    }
    argv[k] = NULL;
    int fd[2];
    if (pipe(fd) != 0) return -1;
    fflush(stdout);
    fflush(stderr);
    const double t0 = now_ns();
    const pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(fd[1], STDOUT_FILENO);
        close(fd[0]);
        close(fd[1]);
        setenv("CLOPT_CACHE_DIR", clopt_cache, 1);
        setenv("POCL_CACHE_DIR", pocl_cache, 1);
        execv(exe, (char *const *)argv);
        _exit(127);
    }
    close(fd[1]);
    char line[1024];
    size_t got = 0;
    ssize_t r;
    while (got < sizeof line - 1 && (r = read(fd[0], line + got, sizeof line - 1 - got)) > 0)
        got += (size_t)r;
    line[got] = '\0';
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    out->process = (now_ns() - t0) / 1e6;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
        sscanf(line,
               "{\"total_ms\": %lf, \"context_ms\": %lf, \"variables_ms\": %lf, "
               "\"build_ms\": %lf, \"first_step_ms\": %lf}",
               &out->total, &out->context, &out->variables, &out->build, &out->first_step) != 5) {
        fprintf(stderr, "clopt bench: the start-up child failed\n");
        return -1;
    }
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int cmp_run(const void *x, const void *y) {
    const double a = ((const startup_run *)x)->total, b = ((const startup_run *)y)->total;
    return (a > b) - (a < b);
}

static void put_run(const char *label, const startup_run *r) {
    printf("%-34s %8.1f %9.1f %9.1f %9.1f %10.1f %9.1f\n", label, r->total, r->context,
           r->variables, r->build, r->first_step, r->process);
}

static json_t *run_json(const startup_run *r) {
    json_t *e = json_object();
    json_object_set_new(e, "total_ms", json_real(r->total));
    json_object_set_new(e, "context_ms", json_real(r->context));
    json_object_set_new(e, "variables_ms", json_real(r->variables));
    json_object_set_new(e, "build_ms", json_real(r->build));
    json_object_set_new(e, "first_step_ms", json_real(r->first_step));
    json_object_set_new(e, "process_ms", json_real(r->process));
    return e;
}

static int run_startup(const bench_args *a, const bench_opt *o, size_t n, size_t tensors) {
    char dir[] = "/tmp/clopt-bench-startup-XXXXXX";
    if (!mkdtemp(dir)) {
        fprintf(stderr, "clopt bench: cannot make a temporary directory: %s\n", strerror(errno));
        return CLI_EXIT_FAIL;
    }
    char cc[64], pc[64];
    snprintf(cc, sizeof cc, "%s/clopt", dir);
    snprintf(pc, sizeof pc, "%s/pocl", dir);
    startup_run cold, *warm = calloc((size_t)a->startup_runs, sizeof *warm);
    int rc = CLI_EXIT_FAIL;
    progress(a, 1, "clopt bench --startup: cold run");
    if (!warm || spawn_child(a, o->name, n, tensors, cc, pc, &cold)) goto out;
    for (int k = 0; k < a->startup_runs; k++) {
        progress(a, k == 0, "clopt bench --startup: warm run %d/%d", k + 1, a->startup_runs);
        if (spawn_child(a, o->name, n, tensors, cc, pc, &warm[k])) goto out;
    }
    progress_done(a);
    qsort(warm, (size_t)a->startup_runs, sizeof *warm, cmp_run);
    const startup_run *med = &warm[a->startup_runs / 2];
    if (a->json) {
        json_t *root = json_object(), *runs = json_array();
        json_object_set_new(root, "optimizer", json_string(o->name));
        json_object_set_new(root, "tensors", json_integer((json_int_t)tensors));
        json_object_set_new(root, "elements", json_integer((json_int_t)n));
        json_object_set_new(root, "cold", run_json(&cold));
        json_object_set_new(root, "warm_median", run_json(med));
        for (int k = 0; k < a->startup_runs; k++) json_array_append_new(runs, run_json(&warm[k]));
        json_object_set_new(root, "warm_runs", runs);
        char *s = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
        if (s) puts(s);
        free(s);
        json_decref(root);
    } else {
        printf("start-up: new process, clopt_context_create through the first finished %s step\n"
               "(%zu x %zu %s elements); ms\n\n",
               o->name, tensors, n / tensors, clopt_dtype_name(a->dtype));
        printf("%-34s %8s %9s %9s %9s %10s %9s\n", "", "total", "context", "variables", "build",
               "1st step", "process");
        put_run("cold (empty kernel caches)", &cold);
        char label[64];
        snprintf(label, sizeof label, "warm (median of %d)", a->startup_runs);
        put_run(label, med);
        printf("\ntotal = context + variables + build (from_config, slots, kernels compiled or "
               "loaded\nand warmed) + 1st step (apply + finish); process: fork to exit, including "
               "loading\nthe libraries and tearing down.\n");
    }
    rc = CLI_EXIT_OK;
out:
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(warm);
    return rc;
}

/* ---- the command ---- */

/* The 1-minute load average (other processes competing for the cores), or -1. */
static double loadavg(void) {
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1;
        fclose(f);
    }
    return l;
}

/* OpenMP threads that spin after a loop (libgomp's default wait policy) would take the cores
 * from clopt's step that follows, and POCL's worker threads sleep when idle: the C loops run
 * with OMP_WAIT_POLICY=passive unless the caller chose a policy. libgomp reads its variables
 * when it loads, so the tool runs itself again with them set. */
static void exec_with_passive_omp(char **argv) {
#ifdef _OPENMP
    if (getenv("OMP_WAIT_POLICY") && getenv("OMP_SCHEDULE")) return;
    char exe[4096];
    const ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) return;
    exe[len] = '\0';
    setenv("OMP_WAIT_POLICY", "passive", 0);
    /* The loops are schedule(runtime): static (each thread one contiguous half, what a plain
     * `omp parallel for` does) unless the caller sets OMP_SCHEDULE (dynamic copes better with
     * a busy machine, as POCL's own work-group scheduling does). */
    setenv("OMP_SCHEDULE", "static", 0);
    /* argv is the command's (argv[0] "bench"); the tool's argv[0] comes just before it. */
    execv(exe, argv - 1);
    /* could not: go on with libgomp's defaults */
#else
    (void)argv;
#endif
}

int cli_cmd_bench(int argc, char **argv) {
    bench_args a;
    const int p = parse_args(argc, argv, &a);
    if (p) return p > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    exec_with_passive_omp(argv);
    const bench_opt *only = NULL;
    if (a.optimizer && !(only = find_opt(a.optimizer))) {
        fprintf(stderr, "clopt bench: unknown optimizer '%s'; one of:", a.optimizer);
        for (size_t i = 0; i < NOPTS; i++) fprintf(stderr, " %s", bench_opts[i].name);
        fputs(", all\n", stderr);
        return CLI_EXIT_USAGE;
    }
    /* Shapes: --size/--tensors, else the two. */
    size_t shapes[2][2] = {{(size_t)1 << 24, 1}, {2000 * 4096, 2000}};
    size_t nshapes = 2;
    if (a.size || a.tensors) {
        shapes[0][1] = a.tensors ? a.tensors : 1;
        shapes[0][0] = a.size ? a.size : shapes[0][1] * 4096;
        nshapes = 1;
    }
    if (a.startup_child || a.startup) {
        const bench_opt *o = only ? only : find_opt("Adam");
        size_t n = 16 * 4096, k = 16; /* a small model: compilation, not traffic */
        if (a.size || a.tensors) {
            n = shapes[0][0];
            k = shapes[0][1];
        }
        return a.startup_child ? startup_child(&a, o, n, k) : run_startup(&a, o, n, k);
    }
    if (only && !only->f32 && a.steps <= 0) { /* Muon: against the GEMM rate (bench_muon.c) */
        if (a.json || a.clip) {
            fputs("clopt bench: --optimizer Muon takes --device, --size, --tensors, --rounds, "
                  "--dtype and --quiet (no --json or --clip)\n",
                  stderr);
            return CLI_EXIT_USAGE;
        }
        int cli_bench_muon(const char *device, size_t size, size_t tensors, int rounds,
                           clopt_dtype dtype, int quiet);
        return cli_bench_muon(a.device, a.size, a.tensors, a.rounds, a.dtype, a.quiet);
    }
    const size_t nopts = only ? 1 : NOPTS;
    int rc = CLI_EXIT_OK;
    if (a.steps > 0) {
        mem_result *ms = calloc(nopts * nshapes, sizeof *ms);
        size_t nr = 0;
        if (!ms) return CLI_EXIT_FAIL;
        for (size_t i = 0; i < nopts && rc == CLI_EXIT_OK; i++)
            for (size_t s = 0; s < nshapes && rc == CLI_EXIT_OK; s++)
                if (run_steps(&a, only ? only : &bench_opts[i], shapes[s][0], shapes[s][1],
                              &ms[nr++]))
                    rc = CLI_EXIT_FAIL;
        progress_done(&a);
        print_steps(&a, ms, nr);
        for (size_t i = 0; i < nr; i++)
            if (!ms[i].skipped && !steps_ok(&ms[i])) rc = CLI_EXIT_FAIL;
        free(ms);
        return rc;
    }
    a.load_before = loadavg();
    clopt_context *ctx = NULL;
    if (clopt_context_create(a.device, &ctx) != CLOPT_OK) {
        fprintf(stderr, "clopt bench: device '%s': %s\n", a.device ? a.device : "(default)",
                clopt_last_create_error());
        return CLI_EXIT_FAIL;
    }
    bench_result *rs = calloc(nopts * nshapes, sizeof *rs);
    size_t nr = 0;
    if (!rs) rc = CLI_EXIT_FAIL;
    for (size_t i = 0; i < nopts && rc == CLI_EXIT_OK; i++)
        for (size_t s = 0; s < nshapes && rc == CLI_EXIT_OK; s++)
            if (run_timed(ctx, &a, only ? only : &bench_opts[i], shapes[s][0], shapes[s][1],
                          &rs[nr++]))
                rc = CLI_EXIT_FAIL;
    progress_done(&a);
    if (rc == CLI_EXIT_OK) {
        if (a.json)
            print_json(ctx, &a, rs, nr);
        else
            print_table(ctx, &a, rs, nr);
        for (size_t i = 0; i < nr; i++)
            if (!rs[i].skipped && !result_ok(&rs[i])) {
                fprintf(stderr, "clopt bench: %s (%zu x %zu): clopt's result differs from the C "
                        "loop's in %zu elements (largest difference %g)\n",
                        rs[i].opt->name, rs[i].tensors, rs[i].n / rs[i].tensors, rs[i].bad,
                        rs[i].max_diff);
                rc = CLI_EXIT_FAIL;
            }
    }
    free(rs);
    clopt_context_destroy(ctx);
    return rc;
}
