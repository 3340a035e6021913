/* Resuming from a checkpoint gives identical numbers: for every optimizer class of the registry
 * (and hand-picked variants), on the host backend and on pocl, train to step K and save a
 * checkpoint (model variables and optimizer state), keep training to step N; then a fresh context
 * (in this process) and a fresh process each load the step-K file, train from K to N, and must
 * end with variables and optimizer variables bitwise equal to the uninterrupted run. */
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include "io_util.h"

extern char **environ;

/* Trains an optimizer to step K and saves; returns it (and its model) at step K. */
static clopt_optimizer *run_to_k(clopt_context *ctx, const io_variant *v, io_model *m,
                                 const char *kpath) {
    io_model_make(m, ctx, 1);
    clopt_optimizer *o = tu_optimizer(ctx, v->json);
    TU_OK(ctx, clopt_optimizer_build(o, m->vars, IO_NVARS));
    io_train(o, m, 0, IO_STEP_K, v->nonfinite);
    TU_OK(ctx, clopt_checkpoint_save(o, m->vars, IO_NVARS, kpath));
    return o;
}

/* A fresh optimizer and zeroed model that load the step-K file. */
static clopt_optimizer *load_k(clopt_context *ctx, const io_variant *v, io_model *m,
                               const char *kpath) {
    io_model_make(m, ctx, 0);
    clopt_optimizer *o = tu_optimizer(ctx, v->json);
    TU_OK(ctx, clopt_optimizer_build(o, m->vars, IO_NVARS));
    TU_OK(ctx, clopt_checkpoint_load(o, m->vars, IO_NVARS, kpath));
    return o;
}

/* Runs the variants i with i % nparts == part (pocl's first compilation of every kernel variant
 * takes minutes in all: the pocl tests are split so each fits the per-test timeout). */
static void resume_fresh_context(const char *spec, size_t part, size_t nparts) {
    io_variant v[IO_MAX_VARIANTS];
    size_t nv = io_variants(v);
    char *dir = io_tmpdir();
    char *kpath = io_path(dir, "k.safetensors"), *apath = io_path(dir, "a.safetensors"),
         *bpath = io_path(dir, "b.safetensors");
    for (size_t i = part; i < nv; i += nparts) {
        clopt_context *ca = tu_context(spec), *cb = tu_context(spec);
        io_model ma, mb;
        clopt_optimizer *a = run_to_k(ca, &v[i], &ma, kpath);
        clopt_optimizer *b = load_k(cb, &v[i], &mb, kpath);
        char what[512];
        snprintf(what, sizeof what, "%.96s on %.64s, right after loading step %d", v[i].label, spec,
                 IO_STEP_K);
        io_assert_same_state(a, &ma, b, &mb, what);
        io_train(a, &ma, IO_STEP_K, IO_STEP_N, v[i].nonfinite);
        io_train(b, &mb, IO_STEP_K, IO_STEP_N, v[i].nonfinite);
        snprintf(what, sizeof what, "%.96s on %.64s, step %d after resuming at %d", v[i].label, spec,
                 IO_STEP_N, IO_STEP_K);
        io_assert_same_state(a, &ma, b, &mb, what);
        TU_OK(ca, clopt_checkpoint_save(a, ma.vars, IO_NVARS, apath));
        TU_OK(cb, clopt_checkpoint_save(b, mb.vars, IO_NVARS, bpath));
        io_assert_same_file(apath, bpath, what);
        cr_log_info("%s: %zu optimizer variables, bitwise equal", what,
                    clopt_optimizer_variable_count(a));
        clopt_context_destroy(ca);
        clopt_context_destroy(cb);
    }
    io_rmdir(dir);
    free(kpath), free(apath), free(bpath), free(dir);
}

Test(io_resume_host, every_optimizer_fresh_context) { resume_fresh_context(TU_HOST, 0, 1); }
Test(io_resume_pocl, every_optimizer_fresh_context_part0) { resume_fresh_context(TU_POCL, 0, 4); }
Test(io_resume_pocl, every_optimizer_fresh_context_part1) { resume_fresh_context(TU_POCL, 1, 4); }
Test(io_resume_pocl, every_optimizer_fresh_context_part2) { resume_fresh_context(TU_POCL, 2, 4); }
Test(io_resume_pocl, every_optimizer_fresh_context_part3) { resume_fresh_context(TU_POCL, 3, 4); }

/* ---- a fresh process ----
 * The test runs this executable again with the filter io_helper/resume and CLOPT_IO_HELPER set
 * to "<device>|<variant index>|<step-K file>|<output file>": that process loads the step-K file
 * into a fresh context, trains to N and saves its checkpoint, which must be byte-identical to the
 * uninterrupted run's. Without CLOPT_IO_HELPER the helper does nothing. */

Test(io_helper, resume) {
    const char *h = getenv("CLOPT_IO_HELPER");
    if (!h || !*h) return;
    char buf[8192], *fields[4];
    snprintf(buf, sizeof buf, "%s", h);
    char *save = NULL, *tok = strtok_r(buf, "|", &save);
    for (int i = 0; i < 4; i++, tok = strtok_r(NULL, "|", &save)) {
        cr_assert(tok, "CLOPT_IO_HELPER: expected 4 fields");
        fields[i] = tok;
    }
    io_variant v[IO_MAX_VARIANTS];
    size_t nv = io_variants(v), idx = (size_t)strtoul(fields[1], NULL, 10);
    cr_assert(idx < nv);
    clopt_context *ctx = tu_context(fields[0]);
    io_model m;
    clopt_optimizer *o = load_k(ctx, &v[idx], &m, fields[2]);
    io_train(o, &m, IO_STEP_K, IO_STEP_N, v[idx].nonfinite);
    TU_OK(ctx, clopt_checkpoint_save(o, m.vars, IO_NVARS, fields[3]));
    clopt_context_destroy(ctx);
}

/* Runs the helper in a new process; Criterion's and boxfort's own variables are not passed on, so
 * the child starts as a plain run of this executable. */
static void run_helper(const char *arg, const char *log) {
    size_t n = 0;
    while (environ[n]) n++;
    char **env = calloc(n + 2, sizeof *env);
    cr_assert(env);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "BXF", 3) && strncmp(environ[i], "CRITERION", 9) &&
            strncmp(environ[i], "CLOPT_IO_HELPER=", 16))
            env[k++] = environ[i];
    char *var = malloc(strlen(arg) + 32);
    cr_assert(var);
    sprintf(var, "CLOPT_IO_HELPER=%s", arg);
    env[k++] = var;
    env[k] = NULL;
    char exe[] = "/proc/self/exe", filter[] = "--filter", name[] = "io_helper/resume",
         jobs[] = "-j1";
    char *argv[] = {exe, filter, name, jobs, NULL};
    posix_spawn_file_actions_t fa;
    cr_assert_eq(posix_spawn_file_actions_init(&fa), 0);
    cr_assert_eq(posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0644), 0);
    cr_assert_eq(posix_spawn_file_actions_adddup2(&fa, 1, 2), 0);
    pid_t pid;
    int rc = posix_spawn(&pid, exe, &fa, NULL, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(rc, 0, "posix_spawn: %s", strerror(rc));
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) cr_assert_eq(errno, EINTR);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        size_t nout = 0;
        unsigned char *out = io_read(log, &nout);
        cr_assert_fail("the helper process (%s) failed: %s %d; its output:\n%.*s", arg,
                       WIFEXITED(status) ? "exit status" : "signal",
                       WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), (int)nout,
                       out);
    }
    free(var);
    free(env);
}

static void resume_fresh_process(const char *spec, size_t part, size_t nparts) {
    io_variant v[IO_MAX_VARIANTS];
    size_t nv = io_variants(v);
    char *dir = io_tmpdir();
    char *kpath = io_path(dir, "k.safetensors"), *apath = io_path(dir, "a.safetensors"),
         *bpath = io_path(dir, "b.safetensors"), *lpath = io_path(dir, "helper.log");
    for (size_t i = part; i < nv; i += nparts) {
        clopt_context *ca = tu_context(spec);
        io_model ma;
        clopt_optimizer *a = run_to_k(ca, &v[i], &ma, kpath);
        io_train(a, &ma, IO_STEP_K, IO_STEP_N, v[i].nonfinite);
        TU_OK(ca, clopt_checkpoint_save(a, ma.vars, IO_NVARS, apath));
        clopt_context_destroy(ca);
        char arg[8192], what[512];
        snprintf(arg, sizeof arg, "%s|%zu|%s|%s", spec, i, kpath, bpath);
        unlink(bpath);
        run_helper(arg, lpath);
        snprintf(what, sizeof what, "%.96s on %.64s, resumed at step %d in a fresh process", v[i].label,
                 spec, IO_STEP_K);
        io_assert_same_file(apath, bpath, what);
    }
    io_rmdir(dir);
    free(kpath), free(apath), free(bpath), free(lpath), free(dir);
}

Test(io_resume_host, every_optimizer_fresh_process) { resume_fresh_process(TU_HOST, 0, 1); }
Test(io_resume_pocl, every_optimizer_fresh_process_part0) { resume_fresh_process(TU_POCL, 0, 4); }
Test(io_resume_pocl, every_optimizer_fresh_process_part1) { resume_fresh_process(TU_POCL, 1, 4); }
Test(io_resume_pocl, every_optimizer_fresh_process_part2) { resume_fresh_process(TU_POCL, 2, 4); }
Test(io_resume_pocl, every_optimizer_fresh_process_part3) { resume_fresh_process(TU_POCL, 3, 4); }
