/* `clopt bench`'s clopt side (variables, optimizer, one step, the check against the C loop)
 * and the helpers its modes share. */
#define _XOPEN_SOURCE 700 /* isatty */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "clopt/experimental.h"
#include "bench_internal.h"

double bench_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, size_t n) {
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

const char *bench_clip_name(int clip) {
    static const char *const names[] = {"none", "value", "norm", "global"};
    return names[clip];
}

void bench_tuning_line(clopt_context *ctx, char *buf, size_t n) {
    static const char *const forms[] = {"auto", "group", "loop"};
    clopt_kernel_params p;
    const char *origin = "";
    clopt_context_kernel_params(ctx, &p, &origin);
    snprintf(buf, n, "block_chunks %d, max_blocks %d, form %s, item_blocks %d; from %s",
             p.block_chunks, p.max_blocks, forms[p.form], p.item_blocks, origin);
}

/* The optimizer's Keras config with the clipping mode's key. */
char *bench_config_json(const bench_opt *o, int clip) {
    static const char *const keys[] = {"", ", \"clipvalue\": 0.5", ", \"clipnorm\": 1.0",
                                       ", \"global_clipnorm\": 1.0"};
    size_t n = strlen(o->name) + strlen(o->config) + 128;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "{\"class_name\": \"%s\", \"config\": {%s%s}}", o->name, o->config,
                 keys[clip]);
    return s;
}

void cside_free(cside *c) {
    clopt_optimizer_destroy(c->opt);
    for (size_t i = 0; i < c->n; i++) {
        clopt_variable_destroy(c->vars ? c->vars[i] : NULL);
        clopt_variable_destroy(c->grads ? c->grads[i] : NULL);
    }
    free(c->vars);
    free(c->grads);
    memset(c, 0, sizeof *c);
}

int bench_fail(clopt_context *ctx, const char *what, clopt_status st) {
    fprintf(stderr, "clopt bench: %s failed: %s\n%s\n", what, clopt_status_name(st),
            clopt_context_last_error(ctx));
    return -1;
}

/* The variables and gradients of the C side's layout, with its initial values. */
int cside_vars(clopt_context *ctx, cside *c, const cbench *b, clopt_dtype dt) {
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
                return bench_fail(ctx, "clopt_variable_create", st);
        }
    return 0;
}

/* The optimizer of `json`, built on the clopt side's variables. Returns 0; 1 when this library
 * does not have it (*skipped and `note` say why: a note, not a failure); -1 on a failure. */
int cside_optimizer(clopt_context *ctx, cside *c, const char *json, int *skipped,
                           char *note, size_t nnote) {
    clopt_status st = clopt_optimizer_from_config(ctx, json, &c->opt);
    if (st != CLOPT_OK) {
        *skipped = 1;
        snprintf(note, nnote, "%s: %s", clopt_status_name(st), clopt_context_last_error(ctx));
        return 1;
    }
    if ((st = clopt_optimizer_build(c->opt, c->vars, c->n)) != CLOPT_OK)
        return bench_fail(ctx, "clopt_optimizer_build", st);
    return 0;
}

int bench_clopt_step(clopt_context *ctx, cside *c) {
    clopt_status st = clopt_optimizer_apply(c->opt, c->grads, c->vars, c->n);
    if (st == CLOPT_OK) st = clopt_finish(ctx);
    return st == CLOPT_OK ? 0 : bench_fail(ctx, "clopt_optimizer_apply", st);
}

/* Compares clopt's variables with the C side's: elements farther apart than 1e-4 (absolute, or
 * relative above 1) after the same steps from the same values. A few are allowed (at most one in
 * 10^5): float rounding differs (OpenCL may contract a*b+c into fma) and Lion's sign can flip
 * where its argument is within rounding of 0. */
int bench_check_result(clopt_context *ctx, const cside *c, const cbench *b, clopt_dtype dt,
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
            return bench_fail(ctx, "clopt_variable_read", st);
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

void bench_progress(const bench_args *a, int first, const char *fmt, ...) {
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

void bench_progress_done(const bench_args *a) {
    if (!a->quiet && isatty(STDERR_FILENO)) fputs("\r\033[K", stderr);
}

/* The 1-minute load average (other processes competing for the cores), or -1. */
double bench_loadavg(void) {
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1;
        fclose(f);
    }
    return l;
}

int bench_c_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
