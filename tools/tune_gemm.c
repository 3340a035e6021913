/* `clopt tune --gemm`: clopt does not search GEMM parameters itself; it runs CLBlast's tuners
 * (clblast_tuner_xgemm_direct, clblast_tuner_xgemm from clblast-utils) on the context's OpenCL
 * device for Muon's product shape, within the budget (each run gets an equal share of what is
 * left and is stopped when it runs out; --fraction is the tuners' own random fraction), reads
 * their progress table as it comes (the best configuration whose results matched the reference,
 * so a run stopped early still gives one), and writes the winners as a "gemm" entry of the
 * tuning database (src/core/tuning_gemm.c reads it). Device + driver entries of the other kind
 * are left alone. The table format is CLBlast 1.5's. A tuner writes into a pseudo-terminal, so that
 * its stdio flushes each line (into a pipe it would hold them back until it is stopped). */
#define _XOPEN_SOURCE 700 /* fork, mkdtemp, setenv, kill, posix_openpt */
#include "tune_gemm.h"
#include <CL/cl.h>
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "clopt/experimental.h"
#include "cli_internal.h"

#define MAX_NAMES 32
#define MAX_RUNS 4

typedef struct gemm_args {
    const char *device, *db;
    double budget, fraction;
    unsigned long m, n, k;
    int prec[2], nprec;
    int json, quiet;
} gemm_args;

/* One tuner run: a CLBlast kernel in one precision, and the best configuration it reported. */
typedef struct gemm_run {
    const char *tuner, *kernel;
    size_t nparams; /* the kernel's parameter count (CLBlast 1.5) */
    int precision;
    int tried, matched, stopped;
    double best_ms, seconds;
    size_t nnames;
    char names[MAX_NAMES][32];
    long best[MAX_NAMES];
    char best_names[MAX_NAMES][32];
} gemm_run;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int tune_gemm_wanted(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--gemm") == 0) return 1;
    return 0;
}

void tune_gemm_help(FILE *out) {
    fprintf(out,
            "       clopt tune --gemm [--device SPEC] [--budget SECONDS] [--fraction F]\n"
            "                  [--gemm-shape MxNxK] [--precision 32[,64]] [--db FILE] [--json]\n"
            "\n"
            "--gemm runs CLBlast's own tuners (clblast_tuner_xgemm_direct, clblast_tuner_xgemm;\n"
            "Debian clblast-utils; CLOPT_CLBLAST_TUNERS names their directory, else PATH) on\n"
            "the device for Muon's product shape (default 256x256x256, float32), each within\n"
            "its share of the budget (default 120 s), trying the random fraction F of their\n"
            "configurations (default 0.05), and writes the best of each into the tuning\n"
            "database; Muon hands them to CLBlast (CLBlastOverrideParameters) when it is built.\n");
}

static int parse_args(int argc, char **argv, gemm_args *a) {
    *a = (gemm_args){NULL, NULL, 120, 0.05, 256, 256, 256, {32, 0}, 1, 0, 0};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (strcmp(o, "--gemm") == 0) continue;
        if (strcmp(o, "--json") == 0) a->json = 1;
        else if (strcmp(o, "--quiet") == 0) a->quiet = 1;
        else if (!v) {
            fprintf(stderr, "clopt tune: unknown option or missing value: '%s'\n", o);
            return -1;
        } else if (strcmp(o, "--device") == 0) a->device = argv[++i];
        else if (strcmp(o, "--db") == 0) a->db = argv[++i];
        else if (strcmp(o, "--budget") == 0 || strcmp(o, "--fraction") == 0) {
            const double x = strtod(argv[++i], &end);
            const int budget = o[2] == 'b';
            if (*end || !(x > 0) || (!budget && x > 1)) {
                fprintf(stderr, "clopt tune: %s wants %s, not '%s'\n", o,
                        budget ? "a positive number of seconds" : "a fraction in (0, 1]", v);
                return -1;
            }
            *(budget ? &a->budget : &a->fraction) = x;
        } else if (strcmp(o, "--gemm-shape") == 0) {
            i++;
            a->m = strtoul(v, &end, 10);
            a->n = *end == 'x' ? strtoul(end + 1, &end, 10) : 0;
            a->k = *end == 'x' ? strtoul(end + 1, &end, 10) : 0;
            if (*end || !a->m || !a->n || !a->k || a->m > 65536 || a->n > 65536 || a->k > 65536) {
                fprintf(stderr, "clopt tune: --gemm-shape wants MxNxK (1 to 65536 each), not "
                                "'%s'\n", v);
                return -1;
            }
        } else if (strcmp(o, "--precision") == 0) {
            i++;
            if (strcmp(v, "32") && strcmp(v, "64") && strcmp(v, "32,64") && strcmp(v, "64,32")) {
                fprintf(stderr, "clopt tune: --precision wants 32, 64 or 32,64, not '%s'\n", v);
                return -1;
            }
            a->nprec = strlen(v) > 2 ? 2 : 1;
            a->prec[0] = atoi(v);
            a->prec[1] = a->nprec > 1 ? atoi(v + 3) : 0;
        } else {
            fprintf(stderr, "clopt tune: unknown option '%s' (with --gemm)\n", o);
            return -1;
        }
    }
    return 0;
}

/* The OpenCL platform and device indices of the context's device, as CLBlast's tuners count
 * them (clGetPlatformIDs, then every device of the platform); -1 when not found. */
static int cl_indices(const clopt_device_identity *id, int *platform, int *device) {
    cl_platform_id p[16];
    cl_uint np = 0;
    if (clGetPlatformIDs(16, p, &np) != CL_SUCCESS) return -1;
    for (cl_uint i = 0; i < np && i < 16; i++) {
        cl_device_id d[64];
        cl_uint nd = 0;
        if (clGetDeviceIDs(p[i], CL_DEVICE_TYPE_ALL, 64, d, &nd) != CL_SUCCESS) continue;
        for (cl_uint j = 0; j < nd && j < 64; j++) {
            char name[512] = "", driver[512] = "";
            clGetDeviceInfo(d[j], CL_DEVICE_NAME, sizeof name - 1, name, NULL);
            clGetDeviceInfo(d[j], CL_DRIVER_VERSION, sizeof driver - 1, driver, NULL);
            if (strcmp(name, id->device) == 0 && strcmp(driver, id->driver) == 0) {
                *platform = (int)i;
                *device = (int)j;
                return 0;
            }
        }
    }
    return -1;
}

/* ---- reading a tuner's table ---- */

/* Removes the terminal's colour sequences in place. */
static void strip_ansi(char *s) {
    char *w = s;
    for (char *r = s; *r; r++) {
        if (*r == '\033') {
            while (*r && *r != 'm') r++;
            if (!*r) break;
            continue;
        }
        *w++ = *r;
    }
    *w = '\0';
}

static char *trim(char *s) {
    while (*s == ' ') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\r')) s[--n] = '\0';
    return s;
}

/* One line of the tuner's output: the explored parameters' names, a stage's count, or a row
 * "| ID | total | values | local | global | compiles | time | GFLOPS | status |". */
static void read_line(gemm_run *r, char *line, int *total) {
    strip_ansi(line);
    char *at;
    if ((at = strstr(line, "Parameters explored:"))) {
        r->nnames = 0;
        for (char *t = strtok(at + 20, " \r"); t && r->nnames < MAX_NAMES; t = strtok(NULL, " \r"))
            snprintf(r->names[r->nnames++], sizeof r->names[0], "%s", t);
        return;
    }
    if ((at = strstr(line, "Found ")) && strstr(line, "configuration")) {
        *total = atoi(at + 6);
        return;
    }
    char *f[12];
    int nf = 0;
    if (line[0] == '|') /* the fields between the bars (the last one, after the final bar, unused) */
        for (char *p = line + 1, *q; nf < 12 && (q = strchr(p, '|')); p = q + 1) {
            *q = '\0';
            f[nf++] = trim(p);
        }
    if (nf < 9 || !*f[0] || strspn(f[0], "0123456789") != strlen(f[0])) return;
    r->tried++;
    const double ms = atof(f[6]);
    if (!strstr(f[8], "results match") || !(ms > 0)) return;
    r->matched++;
    long v[MAX_NAMES];
    size_t nv = 0;
    for (char *t = strtok(f[2], " "); t && nv < MAX_NAMES; t = strtok(NULL, " ")) v[nv++] = atol(t);
    if (nv != r->nnames || nv != r->nparams || (r->best_ms > 0 && ms >= r->best_ms)) return;
    r->best_ms = ms;
    memcpy(r->best, v, sizeof v);
    memcpy(r->best_names, r->names, sizeof r->names);
}

/* ---- running a tuner ---- */

static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        remove(path);
    }
    if (d) closedir(d);
    rmdir(dir);
}

static void progress(const gemm_args *a, const gemm_run *r, int total, double left, int first) {
    if (a->quiet || a->json || (!first && !isatty(STDERR_FILENO))) return;
    char line[256];
    if (first)
        snprintf(line, sizeof line, "clopt tune --gemm: %s -precision %d, %lux%lux%lu, for up "
                 "to %.0f s", r->tuner, r->precision, a->m, a->n, a->k, left);
    else
        snprintf(line, sizeof line,
                 "clopt tune --gemm: %s/%d: %d configurations tried (this stage: %d), best "
                 "%.3f ms, %.0f s left",
                 r->kernel, r->precision, r->tried, total, r->best_ms, left);
    fprintf(stderr, isatty(STDERR_FILENO) ? "\r\033[K%s" : "%s\n", line);
    fflush(stderr);
}

/* Runs one tuner until it ends or `seconds` pass (then stops it: its best so far stands). */
static int run_tuner(const gemm_args *a, gemm_run *r, int platform, int device, double seconds) {
    char dir[] = "/tmp/clopt-tune-gemm-XXXXXX";
    if (!mkdtemp(dir)) return -1;
    const char *tdir = getenv("CLOPT_CLBLAST_TUNERS");
    char exe[1024], sp[16], sd[16], spr[16], sm[24], sn[24], sk[24], sf[32];
    snprintf(exe, sizeof exe, "%s%s%s", tdir && *tdir ? tdir : "", tdir && *tdir ? "/" : "",
             r->tuner);
    snprintf(sp, sizeof sp, "%d", platform);
    snprintf(sd, sizeof sd, "%d", device);
    snprintf(spr, sizeof spr, "%d", r->precision);
    snprintf(sm, sizeof sm, "%lu", a->m);
    snprintf(sn, sizeof sn, "%lu", a->n);
    snprintf(sk, sizeof sk, "%lu", a->k);
    snprintf(sf, sizeof sf, "%g", a->fraction);
    char *argv[] = {exe, "-platform", sp, "-device", sd, "-precision", spr, "-m", sm, "-n", sn,
                    "-k", sk, "-fraction", sf, NULL};
    const int master = posix_openpt(O_RDWR | O_NOCTTY);
    const char *slave = master >= 0 && grantpt(master) == 0 && unlockpt(master) == 0
                            ? ptsname(master)
                            : NULL;
    if (!slave) {
        if (master >= 0) close(master);
        remove_dir(dir);
        fprintf(stderr, "clopt tune: no pseudo-terminal for the tuner's output\n");
        return -1;
    }
    fflush(NULL);
    const pid_t pid = fork();
    if (pid == 0) { /* its own session: stopped with its children by kill(-pid) */
        setsid();
        const int s = open(slave, O_RDWR);
        dup2(s, STDOUT_FILENO);
        dup2(s, STDERR_FILENO);
        close(s);
        close(master);
        if (chdir(dir) == 0) execvp(exe, argv);
        printf("clopt: cannot run %s\n", exe);
        _exit(127);
    }
    int fd[1] = {master};
    const double start = now_s(), end = start + seconds;
    char buf[8192];
    size_t used = 0;
    int total = 0, status = 0;
    progress(a, r, total, seconds, 1);
    for (;;) {
        const double left = end - now_s();
        if (left <= 0 || pid < 0) {
            r->stopped = pid > 0;
            break;
        }
        struct pollfd pf = {fd[0], POLLIN, 0};
        const int ms = left > 0.5 ? 500 : (int)(left * 1000) + 1;
        if (poll(&pf, 1, ms) <= 0) continue;
        const ssize_t got = read(fd[0], buf + used, sizeof buf - 1 - used);
        if (got <= 0) break;
        used += (size_t)got;
        buf[used] = '\0';
        char *line = buf, *nl;
        while ((nl = strchr(line, '\n'))) {
            *nl = '\0';
            read_line(r, line, &total);
            line = nl + 1;
        }
        used = strlen(line);
        memmove(buf, line, used + 1);
        if (used == sizeof buf - 1) used = 0; /* a line longer than the buffer: dropped */
        progress(a, r, total, end - now_s(), 0);
    }
    if (pid > 0) {
        if (r->stopped) kill(-pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    close(fd[0]);
    remove_dir(dir);
    r->seconds = now_s() - start;
    if (!a->quiet && !a->json && isatty(STDERR_FILENO)) fputs("\r\033[K", stderr);
    if (pid > 0 && !r->stopped && WIFEXITED(status) && WEXITSTATUS(status) == 127) {
        fprintf(stderr, "clopt tune: cannot run %s (Debian: apt install clblast-utils; "
                        "CLOPT_CLBLAST_TUNERS names the tuners' directory)\n", exe);
        return -1;
    }
    return pid > 0 ? 0 : -1;
}

/* ---- the database ---- */

static json_t *run_params(const gemm_run *r) {
    json_t *p = json_object();
    for (size_t j = 0; j < r->nparams; j++)
        json_object_set_new(p, r->best_names[j], json_integer(r->best[j]));
    return p;
}

/* The summary table, or the --json document. */
static void report(const gemm_args *a, const gemm_run *runs, size_t nruns, const char *path,
                   const char *device, int written) {
    if (a->json) {
        json_t *doc = json_pack("{s:s, s:s, s:b, s:[]}", "device", device, "database", path,
                                "written", written, "runs");
        for (size_t i = 0; i < nruns; i++) {
            const gemm_run *r = &runs[i];
            json_array_append_new(
                json_object_get(doc, "runs"),
                json_pack("{s:s, s:i, s:I, s:I, s:I, s:i, s:i, s:b, s:f, s:f, s:o}", "kernel",
                          r->kernel, "precision", r->precision, "m", (json_int_t)a->m, "n",
                          (json_int_t)a->n, "k", (json_int_t)a->k, "tried", r->tried,
                          "matched", r->matched, "stopped", r->stopped, "seconds", r->seconds,
                          "best_ms", r->best_ms,
                          "params", r->best_ms > 0 ? run_params(r) : json_null()));
        }
        char *s = json_dumps(doc, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
        if (s) puts(s);
        free(s);
        json_decref(doc);
        return;
    }
    printf("clopt tune --gemm: %s, %lu x %lu x %lu (m x n x k), fraction %g\n\n", device, a->m,
           a->n, a->k, a->fraction);
    printf("%-12s %4s %7s %7s %8s %10s %8s  %s\n", "kernel", "prec", "tried", "matched",
           "seconds", "best ms", "GFLOPS", "parameters");
    for (size_t i = 0; i < nruns; i++) {
        const gemm_run *r = &runs[i];
        char params[640] = "-";
        size_t used = 0;
        for (size_t j = 0; r->best_ms > 0 && j < r->nparams && used < sizeof params; j++)
            used += (size_t)snprintf(params + used, sizeof params - used, "%s%s=%ld",
                                     j ? " " : "", r->best_names[j], r->best[j]);
        const double gf = r->best_ms > 0 ? 2.0 * (double)a->m * (double)a->n * (double)a->k /
                                               (r->best_ms * 1e6)
                                         : 0;
        printf("%-12s %4d %7d %7d %7.0f%s %10.3f %8.1f  %s\n", r->kernel, r->precision, r->tried,
               r->matched, r->seconds, r->stopped ? "*" : " ", r->best_ms, gf, params);
    }
    printf("\n(* stopped at its share of the budget: the best so far is kept)\n%s %s\n",
           written ? "written to" : "nothing written: no configuration matched the reference in "
                                    "time; a larger --budget or --fraction may help;",
           path);
}

static int tune(clopt_context *ctx, const gemm_args *a, const char *path) {
    clopt_device_identity id;
    int platform, device;
    clopt_context_device_identity(ctx, &id);
    if (strcmp(id.type, "host") == 0 || cl_indices(&id, &platform, &device)) {
        fprintf(stderr, "clopt tune: --gemm needs an OpenCL device (CLBlast's tuners run on "
                        "one); '%s' is not one\n", clopt_context_device_name(ctx));
        return 2;
    }
    static const struct {
        const char *tuner, *kernel;
        size_t nparams;
    } kinds[] = {{"clblast_tuner_xgemm_direct", "XgemmDirect", 10},
                 {"clblast_tuner_xgemm", "Xgemm", 16}};
    gemm_run runs[MAX_RUNS];
    size_t nruns = 0;
    for (int p = 0; p < a->nprec; p++)
        for (size_t k = 0; k < 2; k++)
            runs[nruns++] = (gemm_run){kinds[k].tuner, kinds[k].kernel, kinds[k].nparams,
                                       a->prec[p], 0, 0, 0, 0, 0, 0, {{0}}, {0}, {{0}}};
    const double end = now_s() + a->budget;
    for (size_t i = 0; i < nruns; i++)
        if (run_tuner(a, &runs[i], platform, device, (end - now_s()) / (double)(nruns - i)))
            return 1;
    json_t *gemm = json_array(), *measured = json_array();
    for (size_t i = 0; i < nruns; i++) {
        const gemm_run *r = &runs[i];
        if (r->best_ms <= 0) continue;
        json_array_append_new(gemm, json_pack("{s:s, s:i, s:o}", "kernel", r->kernel, "precision",
                                              r->precision, "params", run_params(r)));
        json_array_append_new(
            measured, json_pack("{s:s, s:i, s:s, s:I, s:I, s:I, s:f, s:i, s:f}", "kernel",
                                r->kernel, "precision", r->precision, "tuner", r->tuner, "m",
                                (json_int_t)a->m, "n", (json_int_t)a->n, "k", (json_int_t)a->k,
                                "fraction", a->fraction, "tried", r->tried, "best_ms",
                                r->best_ms));
    }
    int rc = 1;
    if (json_array_size(gemm)) {
        cli_make_parents(path);
        rc = cli_tune_db_put(path, &id,
                             json_pack("{s:o, s:o}", "gemm", gemm, "measured", measured)) ? 1 : 0;
    }
    else {
        json_decref(gemm);
        json_decref(measured);
    }
    report(a, runs, nruns, path, clopt_context_device_name(ctx), rc == 0);
    return rc;
}

int tune_gemm_main(int argc, char **argv) {
    gemm_args a;
    if (parse_args(argc, argv, &a)) return 2;
    if (a.db) setenv("CLOPT_TUNING_DB", a.db, 1);
    char *path = clopt_tuning_db_path();
    if (!path || !*path) {
        fprintf(stderr, "clopt tune: no database to write (CLOPT_TUNING_DB is off and no --db, "
                        "or no cache directory)\n");
        free(path);
        return 2;
    }
    clopt_context *ctx = NULL;
    if (clopt_context_create(a.device, &ctx) != CLOPT_OK) {
        fprintf(stderr, "clopt tune: %s\n", clopt_last_create_error());
        free(path);
        return 1;
    }
    const int rc = tune(ctx, &a, path);
    clopt_context_destroy(ctx);
    free(path);
    return rc;
}

void tune_gemm_show(clopt_context *ctx) {
    const char *params, *origin;
    clopt_context_gemm_params(ctx, &params, &origin);
    printf("GEMM (CLBlast): %s\nfrom: %s\n", *params ? params : "CLBlast's own parameters",
           origin);
}
