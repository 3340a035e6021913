/* `clopt bench --startup`: new processes, each timing clopt_context_create through the first
 * finished step, first with empty kernel caches, then warm. */
#define _XOPEN_SOURCE 700 /* nftw, mkdtemp, readlink, setenv */
#include <errno.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "bench_internal.h"

/* In a new process (the parent runs it as a child): context, variables, optimizer from config
 * and build (kernels compiled or loaded and warmed), first step finished; one JSON line. */
int bench_startup_child(const bench_args *a, const bench_opt *o, size_t n, size_t tensors) {
    cbench b;
    bench_opt layout = *o;
    layout.nslots = 0;
    layout.factored = 0;
    if (cbench_init(&b, &layout, a->dtype, n, tensors, a->clip)) return CLI_EXIT_FAIL;
    char *json = bench_config_json(o, a->clip);
    cside c = {0};
    clopt_context *ctx = NULL;
    int rc = CLI_EXIT_FAIL;
    const double t0 = bench_now_ns();
    clopt_status st = clopt_context_create(a->device, &ctx);
    if (st != CLOPT_OK) {
        fprintf(stderr, "clopt bench: %s\n", clopt_last_create_error());
        goto out;
    }
    const double t1 = bench_now_ns();
    if (cside_vars(ctx, &c, &b, a->dtype)) goto out;
    const double t2 = bench_now_ns();
    if ((st = clopt_optimizer_from_config(ctx, json, &c.opt)) != CLOPT_OK ||
        (st = clopt_optimizer_build(c.opt, c.vars, c.n)) != CLOPT_OK) {
        bench_fail(ctx, "building the optimizer", st);
        goto out;
    }
    const double t3 = bench_now_ns();
    if (bench_clopt_step(ctx, &c)) goto out;
    const double t4 = bench_now_ns();
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
    const double t0 = bench_now_ns();
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
    out->process = (bench_now_ns() - t0) / 1e6;
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

int bench_run_startup(const bench_args *a, const bench_opt *o, size_t n, size_t tensors) {
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
    bench_progress(a, 1, "clopt bench --startup: cold run");
    if (!warm || spawn_child(a, o->name, n, tensors, cc, pc, &cold)) goto out;
    for (int k = 0; k < a->startup_runs; k++) {
        bench_progress(a, k == 0, "clopt bench --startup: warm run %d/%d", k + 1, a->startup_runs);
        if (spawn_child(a, o->name, n, tensors, cc, pc, &warm[k])) goto out;
    }
    bench_progress_done(a);
    qsort(warm, (size_t)a->startup_runs, sizeof *warm, cmp_run);
    const startup_run *med = &warm[a->startup_runs / 2];
    if (a->json) {
        json_t *root = bench_json_entry(o->name, tensors, n), *runs = json_array();
        json_object_set_new(root, "cold", run_json(&cold));
        json_object_set_new(root, "warm_median", run_json(med));
        for (int k = 0; k < a->startup_runs; k++) json_array_append_new(runs, run_json(&warm[k]));
        json_object_set_new(root, "warm_runs", runs);
        bench_json_print(root);
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
