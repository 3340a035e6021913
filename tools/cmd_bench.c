/* `clopt bench`: clopt's optimizer steps against hand-written OpenMP C loops of the same math
 * (bench_loops.h), in one process, interleaved round by round so that the machine's noise hits
 * both sides alike; medians of many rounds. Also `--steps N` (device memory does not grow, no
 * step allocates) and `--startup` (new process: context through the first finished step, with a
 * cold and a warm kernel cache). BENCHMARKS.md at the repository root shows the results.
 * This file: the options and the command; bench_internal.h lists the other parts. */
#define _XOPEN_SOURCE 700 /* readlink, setenv */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include "bench_internal.h"

/* ---- options ---- */

void cli_help_bench(FILE *out) {
    fputs("usage: clopt bench [--device SPEC] [--optimizer NAME|all] [--size N] [--tensors K]\n"
          "                   [--rounds R] [--dtype float32|float64]\n"
          "                   [--clip none|value|norm|global] [--json] [--quiet]\n"
          "       clopt bench --steps N [...]      (memory check)\n"
          "       clopt bench --startup [--startup-runs N] [--device SPEC] [--size N] [--tensors K]\n"
          "       mpiexec -n N clopt bench --mpi [--device SPEC] [--optimizer NAME] [--size N]\n"
          "                   [--tensors K] [--rounds R]   (N ranks against one process, the\n"
          "                   all-reduce's share and bytes/s against MPI_Allreduce; --device\n"
          "                   a list, \"host,host\": several replicas on each rank)\n"
          "       clopt bench --devices SPEC,SPEC,... [--optimizer NAME] [--size N] [--tensors K]\n"
          "       clopt bench --optimizer Muon --gemm-pair [--devices TUNED,DEFAULT] [--db FILE]\n"
          "                   [--size N] [--tensors K] [--rounds R] [--dtype D]\n"
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
          "  --db FILE           the tuning database to use (sets CLOPT_TUNING_DB; off: none)\n"
          "  --steps N           instead of timing: run N clopt steps and check that device\n"
          "                      memory and the number of buffers do not change (no step\n"
          "                      allocates); reports memory after build against variables +\n"
          "                      gradients + slots\n"
          "  --startup           instead of timing: new processes, each timing\n"
          "                      clopt_context_create through the first finished Adam step\n"
          "                      (--optimizer to change), first with empty kernel caches\n"
          "                      (CLOPT_CACHE_DIR and POCL_CACHE_DIR in a new temporary\n"
          "                      directory), then warm (default 5 runs, --startup-runs)\n"
          "  --devices SPECS     instead: the step with one replica per device of the\n"
          "                      comma-separated list (clopt_strategy_create) against the\n"
          "                      same step on the first device alone, interleaved (Adam by\n"
          "                      default, rounds default 5); then the all-reduce's share of\n"
          "                      the step (timed with every queue finished around it) and\n"
          "                      its GB/s (bytes reduced, once each) against a plain copy of\n"
          "                      the same bytes between the first two devices\n"
          "\n"
          "Variables are rows x cols matrices (2^24: 4096 x 4096; 4096: 64 x 64) of random\n"
          "values in [-1, 1], gradients too; the C loops use OpenMP's default thread count\n"
          "(OMP_NUM_THREADS). They are built with -O3 -march=native (the build option\n"
          "CLOPT_BENCH_NATIVE, default ON; OFF: the generic target); the output's 'baseline'\n"
          "line says which. Exit status 1 when a step fails or clopt's result differs from\n"
          "the C loop's.\n"
          "\n"
          "--optimizer Muon (its step is matrix products, not a memory-speed update): times\n"
          "its step on --tensors K (default 64) variables of --size/K elements (default\n"
          "256 x 256) against one Newton-Schulz iteration's three products as single GEMMs\n"
          "and as batched GEMMs on the same device (CLBlast on OpenCL), interleaved; prints\n"
          "ns per element and GFLOP/s (per iteration 4*m*m*n + 2*m^3 for m x n, m <= n).\n"
          "--gemm-pair instead: Muon's step with the tuning database's CLBlast GEMM\n"
          "parameters (clopt tune --gemm) on the first device of --devices against the same\n"
          "step with CLBlast's own on the second (default pocl:cpu:0,pocl:cpu:1, which needs\n"
          "POCL_DEVICES=\"pthread pthread\"; CLBlast keeps parameters per device for the\n"
          "whole process, so one device cannot run both), on the same values (checked to\n"
          "agree), alternating round by round (default 16 variables of 256 x 256, 5 rounds);\n"
          "prints both medians and the paired ratio. Exit status 1 when the first device has\n"
          "no tuned GEMM parameters in force or the results disagree.\n",
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
        if (!strcmp(o, "--gemm-pair")) {
            a->gemm_pair = 1;
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
                                             "--clip", "--steps", "--startup-runs",
                                             "--devices", "--db"};
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
        } else if (!strcmp(o, "--devices")) {
            a->devices = v;
        } else if (!strcmp(o, "--db")) {
            a->db = v;
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
            a->rounds_set = 1;
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

/* ---- the command ---- */

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
    for (int i = 1; i < argc; i++) /* under mpiexec: bench_mpi.c */
        if (!strcmp(argv[i], "--mpi")) return cli_bench_mpi(argc, argv);
    bench_args a;
    const int p = parse_args(argc, argv, &a);
    if (p) return p > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    if (a.db && setenv("CLOPT_TUNING_DB", a.db, 1) != 0) {
        fprintf(stderr, "clopt bench: --db: cannot set CLOPT_TUNING_DB\n");
        return CLI_EXIT_FAIL;
    }
    exec_with_passive_omp(argv);
    if (bench_register_adabelief() != 0) {
        fprintf(stderr, "clopt bench: registering AdaBelief: %s\n", clopt_class_last_error());
        return CLI_EXIT_FAIL;
    }
    const bench_opt *only = NULL;
    if (a.optimizer && !(only = bench_find_opt(a.optimizer))) {
        fprintf(stderr, "clopt bench: unknown optimizer '%s'; one of:", a.optimizer);
        for (size_t i = 0; i < bench_nopts; i++) fprintf(stderr, " %s", bench_opts[i].name);
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
        const bench_opt *o = only ? only : bench_find_opt("Adam");
        size_t n = 16 * 4096, k = 16; /* a small model: compilation, not traffic */
        if (a.size || a.tensors) {
            n = shapes[0][0];
            k = shapes[0][1];
        }
        return a.startup_child ? bench_startup_child(&a, o, n, k) : bench_run_startup(&a, o, n, k);
    }
    if (a.gemm_pair) { /* Muon, tuned GEMMs against CLBlast's own (bench_gemm_pair.c) */
        if (!only || strcasecmp(only->name, "Muon") || a.json || a.clip || a.steps > 0 ||
            a.startup || a.device) {
            fputs("clopt bench: --gemm-pair takes --optimizer Muon, --devices, --db, --size, "
                  "--tensors, --rounds, --dtype and --quiet\n",
                  stderr);
            return CLI_EXIT_USAGE;
        }
        if (!a.rounds_set) a.rounds = 5;
        return cli_bench_gemm_pair(a.devices, a.size, a.tensors, a.rounds, a.dtype, a.quiet);
    }
    if (a.devices) {
        if (a.json || a.steps > 0 || a.device || (only && !only->f32)) {
            fputs("clopt bench: --devices takes --optimizer (an element-wise one), --size, "
                  "--tensors, --rounds, --clip and --quiet\n",
                  stderr);
            return CLI_EXIT_USAGE;
        }
        if (!a.rounds_set) a.rounds = 5;
        return bench_run_devices(&a, only, shapes, nshapes);
    }
    if (only && !only->f32 && a.steps <= 0) { /* Muon: against the GEMM rate (bench_muon.c) */
        if (a.json || a.clip) {
            fputs("clopt bench: --optimizer Muon takes --device, --size, --tensors, --rounds, "
                  "--dtype and --quiet (no --json or --clip)\n",
                  stderr);
            return CLI_EXIT_USAGE;
        }
        return cli_bench_muon(a.device, a.size, a.tensors, a.rounds, a.dtype, a.quiet);
    }
    return a.steps > 0 ? bench_run_steps(&a, only, shapes, nshapes)
                       : bench_run_timed(&a, only, shapes, nshapes);
}

