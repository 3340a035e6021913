/* The clopt command-line tool: what its files share.
 *
 *   clopt.c        dispatch, global --help and --version
 *   cmd_devices.c  `clopt devices`
 *   cmd_replay.c   `clopt replay`: options, running the case, writing the result
 *   replay_case.c  reading and validating a replay case file (docs/replay.md)
 *   cmd_inspect.c  `clopt inspect`: a checkpoint's tensors, checksums and config (src/io)
 *   cmd_bench.c    `clopt bench`: clopt's steps against OpenMP C loops (bench_loops.h)
 *   cli_json.c     JSON text in and out: NaN/Infinity tokens, numbers that round-trip
 *   cli_buf.c      a growable text buffer
 *   cli_dtype.c    conversions between doubles and the four element types
 *   tune_db.c      writing the tuning database (cmd_tune.c, tune_gemm.c)
 *
 * Exit statuses: 0 success, 1 bad input or a failure while running, 2 bad usage. */
#ifndef CLOPT_CLI_INTERNAL_H
#define CLOPT_CLI_INTERNAL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "clopt.h"

#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2

/* ---- commands (each returns an exit status) ---- */

int cli_cmd_devices(int argc, char **argv);
int cli_cmd_replay(int argc, char **argv);
void cli_help_devices(FILE *out);
void cli_help_replay(FILE *out);
int cli_cmd_inspect(int argc, char **argv); /* cmd_inspect.c */
void cli_help_inspect(FILE *out);
int cli_cmd_bench(int argc, char **argv); /* cmd_bench.c (+ bench_loops.h) */
void cli_help_bench(FILE *out);
int cli_cmd_tune(int argc, char **argv); /* cmd_tune.c (with bench's helpers) */
void cli_help_tune(FILE *out);

/* ---- MPI (cli_mpi.c; without MPI, each fails saying so) ---- */

/* Initializes MPI unless the program did (0, or -1 with a message on stderr). */
int cli_mpi_init(int *rank, int *size);
/* Finalizes MPI if cli_mpi_init initialized it. */
void cli_mpi_finalize(void);
/* clopt_strategy_create_mpi over MPI_COMM_WORLD. */
clopt_status cli_mpi_strategy(const char *device, clopt_strategy **out);
size_t cli_mpi_replicas_in_sync(const clopt_strategy *s);
/* The global index of this rank's first replica (0 without MPI). */
size_t cli_mpi_first_replica(const clopt_strategy *s);
/* `clopt bench --mpi` (bench_mpi.c). */
int cli_bench_mpi(int argc, char **argv);

/* Is `arg` one of the help flags (-h, --help)? */
int cli_is_help(const char *arg);

/* ---- a growable text buffer (cli_buf.c) ---- */

typedef struct cli_buf {
    char *s;
    size_t n, cap;
    int oom; /* an allocation failed: the contents are incomplete */
} cli_buf;

void cli_buf_put(cli_buf *b, const char *s, size_t n);
void cli_buf_puts(cli_buf *b, const char *s);
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void cli_buf_printf(cli_buf *b, const char *fmt, ...);
/* Writes `s` as a JSON string, quotes included. */
void cli_buf_put_jstring(cli_buf *b, const char *s);
void cli_buf_free(cli_buf *b);

/* Reads a whole file ("-" means standard input) into a NUL-terminated buffer. Returns 0 on
 * success; on failure returns -1 with errno set. */
int cli_read_file(const char *path, char **data, size_t *len);

/* ---- JSON (cli_json.c) ---- */

/* Parses JSON text as Python's json module writes it: standard JSON plus the tokens NaN,
 * Infinity and -Infinity (which become marker strings that cli_json_number understands).
 * Duplicate object keys are rejected. On failure returns NULL and writes a one-line message
 * (line and column in the original text) to err. */
json_t *cli_json_parse(const char *text, size_t len, char *err, size_t errn);

/* If `v` is a JSON number, a NaN/Infinity/-Infinity token or one of the strings "NaN",
 * "Infinity", "-Infinity", stores its value and returns 1; else returns 0. */
int cli_json_number(const json_t *v, double *out);

/* "an object", "an array", "a string", "a number", ... for messages. */
const char *cli_json_type_name(const json_t *v);

/* Number text: the strings "NaN", "Infinity" and "-Infinity" (quotes included: strict JSON has
 * no tokens for them) for the non-finite values.
 * f64: 17 significant digits; f32: 9; f32_short: the shortest text that reads back to the
 * same float. All round-trip exactly. `out` needs 32 bytes. */
void cli_format_f64(double x, char *out);
void cli_format_f32(float x, char *out);
void cli_format_f32_short(float x, char *out);
/* A FLOAT16/BFLOAT16 value as the shortest text that reads back to the same float32 (every
 * 16-bit value is exactly a float32). */
void cli_format_16(uint16_t bits, clopt_dtype dtype, char *out);

/* ---- element types (cli_dtype.c) ---- */

/* Stores `x` as element i of a buffer of `dtype`, rounding to nearest even: float16 directly
 * from the double (as NumPy does), bfloat16 through float32 (as ml_dtypes/Eigen do). */
void cli_store(void *buf, clopt_dtype dtype, size_t i, double x);
/* Element i of a buffer of `dtype`, exactly, as a double. */
double cli_load(const void *buf, clopt_dtype dtype, size_t i);
/* Appends element i as JSON number text in the dtype's round-trip format. */
void cli_put_element(cli_buf *b, const void *buf, clopt_dtype dtype, size_t i);

/* ---- the tuning database (tune_db.c) ---- */

struct clopt_device_identity; /* clopt/experimental.h */

/* mkdir -p of the file's directory; a failure shows when the file is written. */
void cli_make_parents(const char *path);
/* Adds the entry of the device + driver `id` ("vendor", "type", "device", "driver", then the
 * keys of `fields`) to the tuning database at `path`, or starts one, and writes it through a
 * temporary file renamed over `path`. It replaces that device + driver's entry of the same
 * kind: a GEMM entry when `fields` has a "gemm" key, else a kernel-parameter entry; the other
 * kind's stays. An existing file that is not a database is not overwritten. Takes `fields`'s
 * reference. 0, or -1 after a message on stderr. */
int cli_tune_db_put(const char *path, const struct clopt_device_identity *id, json_t *fields);

/* ---- replay cases (replay_case.c) ---- */

typedef struct cli_var {
    const char *name; /* borrowed from the parsed JSON */
    clopt_dtype dtype;
    int ndim;
    int64_t shape[CLOPT_MAX_NDIM];
    size_t size;         /* elements */
    const json_t *value; /* the flat row-major array */
} cli_var;

typedef struct cli_case {
    const char *file; /* the name used in messages */
    json_t *root;
    char *optimizer_json; /* the "optimizer" object as JSON text for clopt_optimizer_from_config */
    cli_var *vars;
    size_t nvars;
    const json_t *steps; /* the validated "steps" array */
    size_t nsteps;
    int replicas; /* 0 when the case has no "replicas" key, else N >= 1 */
} cli_case;

/* Parses and validates the whole case (every path, count and number) before anything runs.
 * Returns 0, or -1 after printing a one-line error naming the file and JSON path to stderr. */
int cli_case_load(cli_case *c, const char *file, const char *text, size_t len);
void cli_case_free(cli_case *c);

/* The gradient of variable j in replica r (r = 0 when the case has no replicas) at step i:
 * an array of numbers, or NULL for "no gradient". */
const json_t *cli_case_grad(const cli_case *c, size_t i, size_t r, size_t j);

/* Writes the shape as "[2, 3]" into out. */
void cli_shape_str(const cli_var *v, char *out, size_t n);

#endif
