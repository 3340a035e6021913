/* replay_check: runs `clopt replay` and checks what it writes (CTest driver for tests/replay).
 *
 *   replay_check compare [--stdio] CLOPT DEVICE CASE.json EXPECTED.json
 *       Runs `CLOPT replay --device DEVICE --output TMP CASE.json` (with --stdio: the case on
 *       standard input as '-' and the result read from standard output), requires exit status
 *       0, and compares the result with every check of EXPECTED.json (see README.md).
 *
 *   replay_check fails CLOPT STATUS TEXT [--stdin FILE] -- ARGS...
 *       Runs `CLOPT ARGS...` and requires: exit status STATUS (a number, or "nonzero"), no
 *       crash, nothing on standard output, and a first line on standard error that contains
 *       TEXT.
 *
 *   replay_check prints CLOPT TEXT -- ARGS...
 *       Runs `CLOPT ARGS...` and requires exit status 0, nothing on standard error, and TEXT
 *       somewhere in standard output.
 *
 *   replay_check json CLOPT TEXT -- ARGS...
 *       As prints, and standard output must be strict JSON (jansson's parser, which refuses the
 *       NaN and Infinity tokens).
 *
 * In every mode a sanitizer report on the tool's standard error is a failure.
 *
 * Exit status 0 when every requirement holds, 1 otherwise (with the reasons on stderr). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include "cli_internal.h"

/* ---- running the tool ---- */

typedef struct child_result {
    int exited, status, signal;
    char *out, *err; /* standard output and error, NUL-terminated */
} child_result;

static int temp_file(char *path, size_t n, const char *what) {
    const char *dir = getenv("TMPDIR");
    snprintf(path, n, "%s/replay_check_%s_XXXXXX", dir && *dir ? dir : "/tmp", what);
    int fd = mkstemp(path);
    if (fd < 0) fprintf(stderr, "replay_check: mkstemp %s: %s\n", path, strerror(errno));
    return fd;
}

static char *slurp(const char *path) {
    char *s = NULL;
    size_t n = 0;
    if (cli_read_file(path, &s, &n) != 0) return NULL;
    return s;
}

/* Runs argv[0] with argv, standard input from `in` (NULL: /dev/null), and collects its
 * standard output and error. Returns 0 when it ran. */
static int run_child(char *const argv[], const char *in, child_result *r) {
    char outp[512], errp[512];
    int ofd = temp_file(outp, sizeof outp, "out"), efd = temp_file(errp, sizeof errp, "err");
    memset(r, 0, sizeof *r);
    if (ofd < 0 || efd < 0) {
        if (ofd >= 0) close(ofd), unlink(outp);
        if (efd >= 0) close(efd), unlink(errp);
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "replay_check: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        int ifd = open(in ? in : "/dev/null", O_RDONLY);
        if (ifd < 0) {
            fprintf(stderr, "replay_check: cannot open %s: %s\n", in, strerror(errno));
            _exit(126);
        }
        dup2(ifd, 0);
        dup2(ofd, 1);
        dup2(efd, 2);
        execv(argv[0], argv);
        fprintf(stderr, "replay_check: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    close(ofd);
    close(efd);
    r->exited = WIFEXITED(st);
    r->status = r->exited ? WEXITSTATUS(st) : -1;
    r->signal = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
    r->out = slurp(outp);
    r->err = slurp(errp);
    unlink(outp);
    unlink(errp);
    if (!r->out || !r->err) {
        fprintf(stderr, "replay_check: cannot read the child's output\n");
        return -1;
    }
    return 0;
}

/* A sanitizer's report in the child's stderr fails any test, whatever the exit status. */
static int sanitizer_report(const child_result *r) {
    if (!strstr(r->err, "Sanitizer") && !strstr(r->err, "runtime error:")) return 0;
    fprintf(stderr, "FAIL: sanitizer report:\n%s", r->err);
    return 1;
}

static void child_free(child_result *r) {
    free(r->out);
    free(r->err);
}

/* ---- comparing ---- */

typedef struct tol {
    double rtol, atol;
} tol;

typedef struct checker {
    const char *what; /* the current check's "what", for messages */
    tol by_dtype[4];
    int failures;
    size_t compared;
    double worst_rel; /* the largest |got - want| / (atol + rtol |want|) seen */
} checker;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void mismatch(checker *k, const char *fmt, ...) {
    va_list ap;
    if (k->failures < 20) {
        fprintf(stderr, "MISMATCH [%s] ", k->what);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
    }
    k->failures++;
}

static int close_enough(checker *k, double got, double want, tol t) {
    k->compared++;
    if (isnan(want) || isnan(got)) return isnan(want) && isnan(got);
    if (isinf(want) || isinf(got)) return got == want;
    double bound = t.atol + t.rtol * fabs(want), diff = fabs(got - want);
    double ratio = bound > 0 ? diff / bound : (diff > 0 ? INFINITY : 0);
    if (ratio > k->worst_rel) k->worst_rel = ratio;
    return diff <= bound;
}

/* Compares two arrays of numbers (got from the tool, want from the expected file). */
static void compare_array(checker *k, const json_t *got, const json_t *want, tol t,
                          const char *path) {
    if (!json_is_array(got)) {
        mismatch(k, "%s: the output has %s, expected an array", path, cli_json_type_name(got));
        return;
    }
    if (json_array_size(got) != json_array_size(want)) {
        mismatch(k, "%s: the output has %zu numbers, expected %zu", path, json_array_size(got),
                 json_array_size(want));
        return;
    }
    for (size_t i = 0; i < json_array_size(want); i++) {
        double g, w;
        if (!cli_json_number(json_array_get(got, i), &g) ||
            !cli_json_number(json_array_get(want, i), &w)) {
            mismatch(k, "%s[%zu]: not a number", path, i);
            continue;
        }
        if (!close_enough(k, g, w, t))
            mismatch(k, "%s[%zu]: got %.17g, expected %.17g (|diff| %.3g > %.3g + %.3g * "
                        "|expected|)",
                     path, i, g, w, fabs(g - w), t.atol, t.rtol);
    }
}

static int dtype_index(const char *name) {
    clopt_dtype d;
    if (!name || clopt_dtype_from_name(name, &d) != CLOPT_OK) return -1;
    return (int)d;
}

static void compare_steps(checker *k, const json_t *out, const json_t *want,
                          const clopt_dtype *dtypes, size_t nvars) {
    const json_t *steps = json_object_get(out, "steps");
    if (json_array_size(steps) != json_array_size(want)) {
        mismatch(k, "steps: the output has %zu steps, expected %zu", json_array_size(steps),
                 json_array_size(want));
        return;
    }
    for (size_t i = 0; i < json_array_size(want); i++) {
        const json_t *w = json_array_get(want, i), *g = json_array_get(steps, i);
        char path[128];
        if (json_is_null(w)) continue;
        const json_t *wi = json_object_get(w, "iterations");
        if (wi && json_integer_value(json_object_get(g, "iterations")) != json_integer_value(wi))
            mismatch(k, "steps[%zu].iterations: got %lld, expected %lld", i,
                     (long long)json_integer_value(json_object_get(g, "iterations")),
                     (long long)json_integer_value(wi));
        const json_t *wl = json_object_get(w, "learning_rate");
        double gl = NAN, wlv = NAN;
        if (wl && !(cli_json_number(json_object_get(g, "learning_rate"), &gl) &&
                    cli_json_number(wl, &wlv) && close_enough(k, gl, wlv, (tol){1e-6, 0})))
            mismatch(k, "steps[%zu].learning_rate: got %.9g, expected %.9g", i, gl, wlv);
        const json_t *wv = json_object_get(w, "variables"), *gv = json_object_get(g, "variables");
        if (!wv) continue;
        if (json_array_size(wv) != nvars || json_array_size(gv) != nvars) {
            mismatch(k, "steps[%zu].variables: %zu in the output, %zu expected, %zu in the case",
                     i, json_array_size(gv), json_array_size(wv), nvars);
            continue;
        }
        for (size_t j = 0; j < nvars; j++) {
            if (json_is_null(json_array_get(wv, j))) continue;
            snprintf(path, sizeof path, "steps[%zu].variables[%zu]", i, j);
            compare_array(k, json_array_get(gv, j), json_array_get(wv, j),
                          k->by_dtype[dtypes[j]], path);
        }
    }
}

static void compare_optimizer_variables(checker *k, const json_t *out, const json_t *want) {
    const json_t *ov = json_object_get(out, "optimizer_variables");
    if (json_array_size(ov) != json_array_size(want)) {
        mismatch(k, "optimizer_variables: the output has %zu, expected %zu",
                 json_array_size(ov), json_array_size(want));
        return;
    }
    for (size_t i = 0; i < json_array_size(want); i++) {
        const json_t *w = json_array_get(want, i), *g = json_array_get(ov, i);
        const char *wn = json_string_value(json_object_get(w, "name"));
        const char *gn = json_string_value(json_object_get(g, "name"));
        char path[160];
        snprintf(path, sizeof path, "optimizer_variables[%zu] ('%s')", i, wn ? wn : "?");
        if (wn && (!gn || strcmp(wn, gn) != 0)) {
            mismatch(k, "%s: the output names it '%s'", path, gn ? gn : "(nothing)");
            continue;
        }
        char want_path[48];
        snprintf(want_path, sizeof want_path, "optimizer/vars/%zu", i);
        const char *gp = json_string_value(json_object_get(g, "path"));
        if (!gp || strcmp(gp, want_path) != 0)
            mismatch(k, "%s: path '%s', expected '%s'", path, gp ? gp : "(none)", want_path);
        const json_t *ws = json_object_get(w, "shape");
        if (ws && !json_equal((json_t *)ws, json_object_get(g, "shape")))
            mismatch(k, "%s: the shape differs", path);
        const json_t *wv = json_object_get(w, "value");
        if (!wv) continue;
        const char *dt = json_string_value(json_object_get(g, "dtype"));
        int d = dtype_index(dt);
        /* int64 counters exactly; host scalars of unstated storage as float64 */
        tol t = d >= 0 ? k->by_dtype[d] : dt ? (tol){0, 0} : k->by_dtype[CLOPT_FLOAT64];
        compare_array(k, json_object_get(g, "value"), wv, t, path);
    }
}

/* The tolerances of a check: defaults, overridden by its "tolerance": {"float32": [rtol, atol]}. */
static int read_tolerance(checker *k, const json_t *check) {
    k->by_dtype[CLOPT_FLOAT32] = (tol){1e-5, 1e-6};
    k->by_dtype[CLOPT_FLOAT64] = (tol){1e-12, 1e-15};
    k->by_dtype[CLOPT_FLOAT16] = (tol){1e-3, 1e-3};
    k->by_dtype[CLOPT_BFLOAT16] = (tol){1e-2, 1e-2};
    const char *key;
    json_t *val;
    json_object_foreach(json_object_get(check, "tolerance"), key, val) {
        int d = dtype_index(key);
        double r, a;
        if (d < 0 || json_array_size(val) != 2 || !cli_json_number(json_array_get(val, 0), &r) ||
            !cli_json_number(json_array_get(val, 1), &a)) {
            fprintf(stderr, "replay_check: bad tolerance entry '%s'\n", key);
            return -1;
        }
        k->by_dtype[d] = (tol){r, a};
    }
    return 0;
}

static json_t *load_json(const char *path, const char *text) {
    char err[512];
    json_t *j = cli_json_parse(text, strlen(text), err, sizeof err);
    if (!j) fprintf(stderr, "replay_check: %s: %s\n", path, err);
    return j;
}

static json_t *load_json_file(const char *path) {
    char *text = slurp(path);
    if (!text) {
        fprintf(stderr, "replay_check: cannot read %s: %s\n", path, strerror(errno));
        return NULL;
    }
    json_t *j = load_json(path, text);
    free(text);
    return j;
}

/* --all-replicas: every step's "replica_variables" holds one entry per device of the list, each
 * exactly the step's "variables" (replica 0's): the replicas are bitwise identical. */
static void check_replicas(checker *k, const json_t *steps, const char *devices) {
    size_t nrep = 1;
    for (const char *c = devices; *c; c++) nrep += *c == ',';
    k->what = "replicas identical";
    for (size_t i = 0; i < json_array_size(steps); i++) {
        const json_t *st = json_array_get(steps, i);
        const json_t *rv = json_object_get(st, "replica_variables");
        if (json_array_size(rv) != nrep) {
            mismatch(k, "steps[%zu]: %zu replica_variables entries for %zu devices", i,
                     json_array_size(rv), nrep);
            continue;
        }
        for (size_t r = 0; r < nrep; r++) {
            k->compared++;
            if (!json_equal(json_array_get(rv, r), json_object_get(st, "variables")))
                mismatch(k, "steps[%zu]: replica %zu's variables differ from replica 0's", i, r);
        }
    }
}

static int cmd_compare(int argc, char **argv) {
    int stdio = 0, a = 0;
    if (argc > 0 && strcmp(argv[0], "--stdio") == 0) stdio = 1, a = 1;
    if (argc - a != 4) {
        fprintf(stderr, "usage: replay_check compare [--stdio] CLOPT DEVICE CASE EXPECTED\n");
        return 2;
    }
    char *clopt = argv[a], *device = argv[a + 1], *case_path = argv[a + 2];
    const char *expected_path = argv[a + 3];
    char outp[512];
    int fd = -1;
    if (!stdio && (fd = temp_file(outp, sizeof outp, "result")) < 0) return 1;
    if (fd >= 0) close(fd);
    char *dash = "-", *replay = "replay", *dev = "--device", *outopt = "--output";
    /* A list of devices runs the replicas on them and reads every replica back. */
    const int several = strchr(device, ',') != NULL;
    char *devs = "--devices", *all = "--all-replicas";
    char *args[10] = {clopt, replay, several ? devs : dev, device};
    int n = 4;
    if (several) args[n++] = all;
    if (!stdio) args[n++] = outopt, args[n++] = outp;
    args[n++] = stdio ? dash : case_path;
    args[n] = NULL;

    child_result r;
    int rc = 1;
    json_t *out = NULL, *want = NULL, *cas = NULL;
    if (run_child(args, stdio ? case_path : NULL, &r) != 0) goto done;
    if (!r.exited || r.status != 0) {
        fprintf(stderr, "FAIL: clopt replay %s on %s: %s %d\n%s", case_path, device,
                r.exited ? "exit status" : "killed by signal", r.exited ? r.status : r.signal,
                r.err);
        goto done;
    }
    if (sanitizer_report(&r)) goto done;
    if (r.err[0]) {
        fprintf(stderr, "FAIL: clopt replay succeeded but wrote to stderr:\n%s", r.err);
        goto done;
    }
    if (stdio) {
        out = load_json("<stdout>", r.out);
    } else {
        if (r.out[0]) fprintf(stderr, "FAIL: clopt replay --output also wrote to stdout\n");
        out = r.out[0] ? NULL : load_json_file(outp);
    }
    want = load_json_file(expected_path);
    cas = load_json_file(case_path);
    if (!out || !want || !cas) goto done;
    if (!json_is_string(json_object_get(out, "device"))) {
        fprintf(stderr, "FAIL: the output has no \"device\" string\n");
        goto done;
    }

    const json_t *vars = json_object_get(cas, "variables");
    size_t nvars = json_array_size(vars);
    clopt_dtype *dtypes = calloc(nvars ? nvars : 1, sizeof *dtypes);
    if (!dtypes) goto done;
    for (size_t j = 0; j < nvars; j++)
        dtypes[j] = (clopt_dtype)dtype_index(
            json_string_value(json_object_get(json_array_get(vars, j), "dtype")));

    checker k = {0};
    /* Every output, whatever the checks: one step per case step, counted 1, 2, ... */
    const json_t *steps = json_object_get(out, "steps");
    if (json_array_size(steps) != json_array_size(json_object_get(cas, "steps"))) {
        k.what = "structure";
        mismatch(&k, "the output has %zu steps, the case %zu", json_array_size(steps),
                 json_array_size(json_object_get(cas, "steps")));
    }
    if (several) check_replicas(&k, steps, device);
    const json_t *checks = json_object_get(want, "checks");
    cli_buf report = {0};
    for (size_t c = 0; c < json_array_size(checks); c++) {
        const json_t *check = json_array_get(checks, c);
        size_t before = k.compared;
        k.what = json_string_value(json_object_get(check, "what"));
        if (!k.what) k.what = "check";
        k.worst_rel = 0;
        if (read_tolerance(&k, check)) {
            k.failures++;
            continue;
        }
        if (json_object_get(check, "steps"))
            compare_steps(&k, out, json_object_get(check, "steps"), dtypes, nvars);
        if (json_object_get(check, "optimizer_variables"))
            compare_optimizer_variables(&k, out, json_object_get(check, "optimizer_variables"));
        cli_buf_printf(&report, "  %zu numbers, the worst at %.3g of its tolerance: %s\n",
                       k.compared - before, k.worst_rel, k.what);
    }
    free(dtypes);
    if (json_array_size(checks) == 0) {
        fprintf(stderr, "FAIL: %s has no checks\n", expected_path);
    } else if (k.failures) {
        fprintf(stderr, "FAIL: %s on %s (%s): %d of %zu numbers differ\n", case_path, device,
                json_string_value(json_object_get(out, "device")), k.failures, k.compared);
    } else {
        printf("OK: %s on %s (%s)\n%s", case_path, device,
               json_string_value(json_object_get(out, "device")), report.s ? report.s : "");
        rc = 0;
    }
    cli_buf_free(&report);
done:
    if (!stdio) unlink(outp);
    child_free(&r);
    json_decref(out);
    json_decref(want);
    json_decref(cas);
    return rc;
}

static int cmd_fails(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: replay_check fails CLOPT STATUS TEXT [--stdin FILE] -- ARGS...\n");
        return 2;
    }
    char *clopt = argv[0];
    const char *status = argv[1], *text = argv[2], *in = NULL;
    int a = 3;
    if (a + 1 < argc && strcmp(argv[a], "--stdin") == 0) in = argv[a + 1], a += 2;
    if (a >= argc || strcmp(argv[a], "--") != 0) {
        fprintf(stderr, "replay_check fails: expected '--' before the tool's arguments\n");
        return 2;
    }
    a++;
    char **args = calloc((size_t)(argc - a) + 2, sizeof *args);
    if (!args) return 1;
    args[0] = clopt;
    for (int i = a; i < argc; i++) args[i - a + 1] = argv[i];
    child_result r;
    int rc = 1;
    if (run_child(args, in, &r) != 0) goto done;
    char *nl = strchr(r.err, '\n');
    size_t first = nl ? (size_t)(nl - r.err) : strlen(r.err);
    printf("exit %d, stderr: %.*s\n", r.status, (int)first, r.err);
    if (sanitizer_report(&r)) {
    } else if (!r.exited) {
        fprintf(stderr, "FAIL: killed by signal %d\n%s", r.signal, r.err);
    } else if (strcmp(status, "nonzero") == 0 ? r.status == 0 : r.status != atoi(status)) {
        fprintf(stderr, "FAIL: exit status %d, expected %s\n", r.status, status);
    } else if (r.out[0]) {
        fprintf(stderr, "FAIL: wrote to stdout:\n%s", r.out);
    } else if (!first) {
        fprintf(stderr, "FAIL: nothing on stderr\n");
    } else {
        char *line = strndup(r.err, first);
        int found = line && strstr(line, text) != NULL;
        if (!found)
            fprintf(stderr, "FAIL: the first line of stderr lacks \"%s\"\n", text);
        free(line);
        rc = found ? 0 : 1;
    }
done:
    child_free(&r);
    free(args);
    return rc;
}

static int strict_json_ok(const char *text) {
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    if (!j) fprintf(stderr, "FAIL: stdout is not strict JSON: line %d: %s\n", e.line, e.text);
    json_decref(j);
    return j != NULL;
}

static int cmd_prints(int argc, char **argv, int strict_json) {
    if (argc < 3 || strcmp(argv[2], "--") != 0) {
        fprintf(stderr, "usage: replay_check prints CLOPT TEXT -- ARGS...\n");
        return 2;
    }
    char **args = calloc((size_t)argc, sizeof *args);
    if (!args) return 1;
    args[0] = argv[0];
    for (int i = 3; i < argc; i++) args[i - 2] = argv[i];
    child_result r;
    int rc = 1;
    if (run_child(args, NULL, &r) != 0) goto done;
    if (sanitizer_report(&r)) {
    } else if (!r.exited || r.status != 0) {
        fprintf(stderr, "FAIL: exit status %d (signal %d), expected 0\n%s", r.status, r.signal,
                r.err);
    } else if (r.err[0]) {
        fprintf(stderr, "FAIL: wrote to stderr:\n%s", r.err);
    } else if (!strstr(r.out, argv[1])) {
        fprintf(stderr, "FAIL: stdout lacks \"%s\":\n%s", argv[1], r.out);
    } else if (strict_json && !strict_json_ok(r.out)) {
    } else {
        fputs(r.out, stdout);
        rc = 0;
    }
done:
    child_free(&r);
    free(args);
    return rc;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "compare") == 0) return cmd_compare(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "fails") == 0) return cmd_fails(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "prints") == 0) return cmd_prints(argc - 2, argv + 2, 0);
    if (argc >= 2 && strcmp(argv[1], "json") == 0) return cmd_prints(argc - 2, argv + 2, 1);
    fprintf(stderr, "usage: replay_check compare [--stdio] CLOPT DEVICE CASE EXPECTED\n"
                    "       replay_check fails CLOPT STATUS TEXT [--stdin FILE] -- ARGS...\n"
                    "       replay_check prints CLOPT TEXT -- ARGS...\n"
                    "       replay_check json CLOPT TEXT -- ARGS...\n");
    return 2;
}
