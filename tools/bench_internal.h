/* `clopt bench`'s parts (tool-internal): the options, the C loops' side (bench_cloop.c), the
 * clopt side and shared helpers (bench_common.c), one JSON writer (bench_json.c) and one file per
 * mode: timing (bench_timed.c), --steps (bench_steps.c), --startup (bench_startup.c), Muon
 * (bench_muon.c), Muon with tuned GEMMs against CLBlast's own (bench_gemm_pair.c). cmd_bench.c
 * parses the options and runs the mode. */
#ifndef CLOPT_BENCH_INTERNAL_H
#define CLOPT_BENCH_INTERNAL_H

#include "cli_internal.h"
#include "../examples/adabelief.h"

/* ---- the C side (bench_cloop.c) ---- */

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
    double target;      /* issue 15's bound on clopt / C (paired) for large variables: 1.15 for
                         * element-wise classes; bench_target() for the shape in hand */
    cb_fn f32, f64;
} bench_opt;

/* The bound on the paired ratio for `tensors` variables of `n` elements in all: the class's
 * target, and at least 1.3 for variables under 1024 elements on average (issue 15: 10,000 x 256). */
double bench_target(const bench_opt *o, size_t tensors, size_t n);

/* The optimizers, in the order `--optimizer all` runs them (bench_cloop.c). */
extern const bench_opt bench_opts[];
extern const size_t bench_nopts;
/* The optimizer of that class name (any case), or NULL. */
const bench_opt *bench_find_opt(const char *name);

/* A program's class in the bench (bench_adabelief.c, examples/adabelief.h): registers
 * AdaBelief once (0, or -1 when refused). */
int bench_register_adabelief(void);

/* The C side's arrays for `tensors` variables over n elements with the optimizer's slots (none
 * when o->nslots is 0: the layout and initial values only). Returns 0, or -1 out of memory. */
int cbench_init(cbench *b, const bench_opt *o, clopt_dtype dt, size_t n, size_t tensors,
                int clip);
void cbench_free(cbench *b);
/* One step of the C loop. */
void cbench_step(cbench *b, const bench_opt *o, clopt_dtype dt);

/* ---- options (cmd_bench.c) ---- */

typedef struct bench_args {
    const char *device;
    const char *optimizer; /* NULL: all */
    size_t size, tensors;  /* 0: the two default shapes */
    int rounds, rounds_set;
    clopt_dtype dtype;
    int json, quiet;
    int clip;
    long steps;            /* > 0: the memory check instead of timing */
    int startup, startup_runs;
    int startup_child;
    double load_before; /* the 1-minute load average when the timing started */
    const char *devices; /* --devices: the mirrored step over these (bench_devices.c) */
    int gemm_pair;       /* --gemm-pair: Muon, tuned GEMMs against CLBlast's own (bench_gemm_pair.c) */
    const char *db;      /* --db: the tuning database (sets CLOPT_TUNING_DB) */
} bench_args;

/* ---- the clopt side and shared helpers (bench_common.c) ---- */

typedef struct cside {
    clopt_variable **vars, **grads;
    size_t n;
    clopt_optimizer *opt;
} cside;

void cside_free(cside *c);
/* The variables and gradients of the C side's layout, with its initial values. */
int cside_vars(clopt_context *ctx, cside *c, const cbench *b, clopt_dtype dt);
/* The optimizer of `json`, built on the clopt side's variables. Returns 0; 1 when this library
 * does not have it (*skipped and `note` say why: a note, not a failure); -1 on a failure. */
int cside_optimizer(clopt_context *ctx, cside *c, const char *json, int *skipped, char *note,
                    size_t nnote);
/* One clopt step, finished. Returns 0 or -1 (said on stderr). */
int bench_clopt_step(clopt_context *ctx, cside *c);
/* Says on stderr that `what` failed; returns -1. */
int bench_fail(clopt_context *ctx, const char *what, clopt_status st);
/* Compares clopt's variables with the C side's (bench_common.c says how). */
int bench_check_result(clopt_context *ctx, const cside *c, const cbench *b, clopt_dtype dt,
                       double *max_diff, size_t *bad);

double bench_now_ns(void);
/* The C loops' OpenMP threads (1 without OpenMP). */
int bench_c_threads(void);
/* How the C loops were compiled (CLOPT_BENCH_NATIVE: "native: ... -march=native ..., AVX-512",
 * or "generic: ..."): the baseline the ratios are against. */
const char *bench_c_baseline(void);
/* The median of v[0..n) (sorts v). */
double bench_median(double *v, size_t n);
/* The 1-minute load average (other processes competing for the cores), or -1. */
double bench_loadavg(void);
const char *bench_clip_name(int clip);
/* The kernel parameters in force on ctx and the tuning entry they came from, as one line. */
void bench_tuning_line(clopt_context *ctx, char *buf, size_t n);
/* The optimizer's Keras config with the clipping mode's key (malloc'd), or NULL. */
char *bench_config_json(const bench_opt *o, int clip);
/* A progress line on stderr: rewritten in place on a terminal; elsewhere (a log) only the
 * lines with `first` set, one per run. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
void bench_progress(const bench_args *a, int first, const char *fmt, ...);
void bench_progress_done(const bench_args *a);

/* ---- the JSON writer (bench_json.c) ---- */

/* An entry of a result list: {"optimizer", "tensors", "elements"}. */
json_t *bench_json_entry(const char *optimizer, size_t tensors, size_t elements);
/* A skipped entry: the entry with "reason". */
json_t *bench_json_skipped(const char *optimizer, size_t tensors, size_t elements,
                           const char *reason);
/* The run's settings and machine: device (if ctx), dtype, clip, rounds, the C loops' threads
 * and OpenMP policy, load averages. */
json_t *bench_json_run(clopt_context *ctx, const bench_args *a);
/* Prints the document on stdout (reals with 6 significant digits) and frees it. */
void bench_json_print(json_t *doc);

/* ---- the modes ---- */

int bench_run_timed(const bench_args *a, const bench_opt *only, size_t shapes[][2],
                    size_t nshapes);                          /* bench_timed.c */
int bench_run_steps(const bench_args *a, const bench_opt *only, size_t shapes[][2],
                    size_t nshapes);                          /* bench_steps.c */
int bench_startup_child(const bench_args *a, const bench_opt *o, size_t n,
                        size_t tensors);                      /* bench_startup.c */
int bench_run_startup(const bench_args *a, const bench_opt *o, size_t n, size_t tensors);
int bench_run_devices(const bench_args *a, const bench_opt *only, size_t shapes[][2],
                      size_t nshapes);                        /* bench_devices.c */
int cli_bench_muon(const char *device, size_t size, size_t tensors, int rounds,
                   clopt_dtype dtype, int quiet);             /* bench_muon.c */
int cli_bench_gemm_pair(const char *devices, size_t size, size_t tensors, int rounds,
                        clopt_dtype dtype, int quiet);        /* bench_gemm_pair.c */

#endif
