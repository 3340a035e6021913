/* `clopt bench --devices SPEC,SPEC,...`: an optimizer's step (Adam by default) with N replicas
 * through the strategy (include/clopt/distribute.h) against the same step on one device without
 * it, interleaved round by round; the all-reduce's share of the step (steps timed with every
 * queue finished around the reduce); and its bytes/s against a plain device copy of the same
 * bytes (clEnqueueCopyBuffer between two replicas' devices in their shared cl_context, or a
 * device read plus a write through host memory when they do not share one) in the same run. */
#include <stdlib.h>
#include <string.h>
#include "clopt/clopt_cl.h"
#include "clopt/distribute.h"
#include "bench_internal.h"

typedef struct dside {
    clopt_strategy *s;
    clopt_mirrored_optimizer *m;
    clopt_variable **v, **g; /* replica-major, k per replica */
    size_t nrep, k;
} dside;

static void dside_free(dside *d) {
    clopt_strategy_destroy(d->s);
    free(d->v);
    free(d->g);
    memset(d, 0, sizeof *d);
}

static float value_at(size_t i, size_t e, size_t r) {
    return (float)((e * 2654435761u + i * 40503u + r * 977u) % 2001u) / 1000.0f - 1.0f;
}

/* Mirrored variables of n elements in k tensors, each replica's own gradients, the optimizer. */
static int dside_make(dside *d, const char *devices, const char *json, size_t n, size_t k) {
    memset(d, 0, sizeof *d);
    clopt_status st = clopt_strategy_create(devices, &d->s);
    if (st != CLOPT_OK) {
        fprintf(stderr, "clopt bench: --devices '%s': %s\n", devices, clopt_last_create_error());
        return -1;
    }
    d->nrep = clopt_strategy_num_replicas(d->s);
    d->k = k;
    d->v = calloc(d->nrep * k, sizeof *d->v);
    d->g = calloc(d->nrep * k, sizeof *d->g);
    const int64_t len = (int64_t)(n / k);
    float *x = malloc((size_t)len * sizeof *x);
    if (!d->v || !d->g || !x) {
        free(x);
        fputs("clopt bench: out of memory\n", stderr);
        return -1;
    }
    for (size_t i = 0; i < k && st == CLOPT_OK; i++) { /* the variables, then the gradients */
        clopt_variable *mv[64];
        char name[32];
        snprintf(name, sizeof name, "w%zu", i);
        for (int64_t e = 0; e < len; e++) x[e] = value_at(i, (size_t)e, 0);
        st = clopt_strategy_variable_create(d->s, name, CLOPT_FLOAT32, 1, &len, x, mv);
        for (size_t r = 0; st == CLOPT_OK && r < d->nrep; r++) d->v[r * k + i] = mv[r];
    }
    for (size_t r = 0; r < d->nrep; r++)
        for (size_t i = 0; i < k && st == CLOPT_OK; i++) {
            for (int64_t e = 0; e < len; e++) x[e] = 0.01f * value_at(i, (size_t)e, r + 1);
            st = clopt_variable_create(clopt_strategy_context(d->s, r), "g", CLOPT_FLOAT32, 1,
                                       &len, x, &d->g[r * k + i]);
        }
    free(x);
    if (st == CLOPT_OK) st = clopt_strategy_optimizer_from_config(d->s, json, &d->m);
    if (st == CLOPT_OK) st = clopt_mirrored_optimizer_build(d->m, d->v, k);
    if (st != CLOPT_OK) {
        fprintf(stderr, "clopt bench: setting up %zu replicas: %s: %s\n", d->nrep,
                clopt_status_name(st), clopt_strategy_last_error(d->s));
        return -1;
    }
    return 0;
}

/* One mirrored step, every replica finished; its wall time in ns, or -1. */
static double dside_step(dside *d) {
    const double t0 = bench_now_ns();
    clopt_status st = clopt_mirrored_optimizer_apply(d->m, d->g, d->nrep, d->v, d->k);
    for (size_t r = 0; st == CLOPT_OK && r < d->nrep; r++)
        st = clopt_finish(clopt_strategy_context(d->s, r));
    if (st != CLOPT_OK) {
        fprintf(stderr, "clopt bench: mirrored step: %s: %s\n", clopt_status_name(st),
                clopt_strategy_last_error(d->s));
        return -1;
    }
    return bench_now_ns() - t0;
}

/* One plain device copy of `bytes` from replica 1's device to replica 0's (shared context), or
 * a read from replica 1 and a write to replica 0 through host memory; ns, or -1. */
typedef struct copier {
    cl_mem a, b;
    cl_command_queue q0, q1;
    void *host;
    size_t bytes;
    int shared;
} copier;

static int copier_make(copier *c, dside *d, size_t bytes) {
    memset(c, 0, sizeof *c);
    c->bytes = bytes;
    cl_context c0, c1;
    clopt_context *x0 = clopt_strategy_context(d->s, 0), *x1 = clopt_strategy_context(d->s, 1);
    if (clopt_context_cl_context(x0, &c0) != CLOPT_OK ||
        clopt_context_cl_context(x1, &c1) != CLOPT_OK ||
        clopt_context_cl_queue(x0, &c->q0) != CLOPT_OK ||
        clopt_context_cl_queue(x1, &c->q1) != CLOPT_OK) {
        fputs("clopt bench: --devices: the copy baseline needs OpenCL replicas\n", stderr);
        return -1;
    }
    c->shared = c0 == c1;
    cl_int e0, e1 = CL_SUCCESS;
    c->a = clCreateBuffer(c1, CL_MEM_READ_WRITE, bytes, NULL, &e0);
    c->b = clCreateBuffer(c0, CL_MEM_READ_WRITE, bytes, NULL, &e1);
    c->host = c->shared ? NULL : malloc(bytes);
    const unsigned char one = 1;
    if (e0 == CL_SUCCESS && e1 == CL_SUCCESS) {
        e0 = clEnqueueFillBuffer(c->q1, c->a, &one, 1, 0, bytes, 0, NULL, NULL);
        e1 = clEnqueueFillBuffer(c->q0, c->b, &one, 1, 0, bytes, 0, NULL, NULL);
        clFinish(c->q0);
        clFinish(c->q1);
    }
    if (e0 != CL_SUCCESS || e1 != CL_SUCCESS || (!c->shared && !c->host)) {
        fprintf(stderr, "clopt bench: the copy baseline's buffers: OpenCL error %d/%d\n", e0, e1);
        return -1;
    }
    return 0;
}

static void copier_free(copier *c) {
    if (c->a) clReleaseMemObject(c->a);
    if (c->b) clReleaseMemObject(c->b);
    free(c->host);
}

static double copier_run(copier *c) {
    const double t0 = bench_now_ns();
    cl_int e;
    if (c->shared) {
        e = clEnqueueCopyBuffer(c->q0, c->a, c->b, 0, 0, c->bytes, 0, NULL, NULL);
        if (e == CL_SUCCESS) e = clFinish(c->q0);
    } else {
        e = clEnqueueReadBuffer(c->q1, c->a, CL_TRUE, 0, c->bytes, c->host, 0, NULL, NULL);
        if (e == CL_SUCCESS)
            e = clEnqueueWriteBuffer(c->q0, c->b, CL_TRUE, 0, c->bytes, c->host, 0, NULL, NULL);
    }
    if (e != CL_SUCCESS) {
        fprintf(stderr, "clopt bench: the plain copy failed: OpenCL error %d\n", e);
        return -1;
    }
    return bench_now_ns() - t0;
}

/* The first spec of a list (the 1-device side). */
static void first_spec(const char *devices, char *out, size_t n) {
    const size_t len = strcspn(devices, ",");
    snprintf(out, n, "%.*s", (int)(len < n ? len : n - 1), devices);
}

typedef struct dresult {
    double one_ms, n_ms, timed_ms, reduce_ms, reduce_gbs, copy_gbs, mb, host_ms;
} dresult;

static int run_shape(const bench_args *a, const char *json, size_t n, size_t k, dresult *out) {
    char spec[256];
    first_spec(a->devices, spec, sizeof spec);
    clopt_context *ctx = NULL;
    cside one = {0};
    cbench b = {0};
    dside d = {0};
    copier c = {0};
    int rc = -1, skipped = 0;
    char note[256];
    const int rounds = a->rounds;
    double *t1 = calloc((size_t)rounds, sizeof *t1), *tn = calloc((size_t)rounds, sizeof *tn),
           *tc = calloc((size_t)rounds, sizeof *tc);
    if (!t1 || !tn || !tc) goto done;
    if (clopt_context_create(spec, &ctx) != CLOPT_OK) {
        fprintf(stderr, "clopt bench: '%s': %s\n", spec, clopt_last_create_error());
        goto done;
    }
    if (cbench_init(&b, bench_find_opt("SGD"), CLOPT_FLOAT32, n, k, 0) != 0 ||
        cside_vars(ctx, &one, &b, CLOPT_FLOAT32) != 0 ||
        cside_optimizer(ctx, &one, json, &skipped, note, sizeof note) != 0)
        goto done;
    if (dside_make(&d, a->devices, json, n, k) != 0) goto done;
    for (int w = 0; w < 2; w++) /* warm: kernels compiled, buffers made */
        if (bench_clopt_step(ctx, &one) != 0 || dside_step(&d) < 0) goto done;
    for (int r = 0; r < rounds; r++) {
        bench_progress(a, r == 0, "devices: %zu x %zu, round %d/%d", k, n / k, r + 1, rounds);
        double t0 = bench_now_ns();
        if (bench_clopt_step(ctx, &one) != 0) goto done;
        t1[r] = bench_now_ns() - t0;
        if ((tn[r] = dside_step(&d)) < 0) goto done;
    }
    out->one_ms = bench_median(t1, (size_t)rounds) / 1e6;
    out->n_ms = bench_median(tn, (size_t)rounds) / 1e6;
    /* The reduce's share: the same steps with every queue finished around the reduce. */
    clopt_mirrored_optimizer_set_all_reduce_timing(d.m, 1);
    for (int r = 0; r < rounds; r++)
        if ((tn[r] = dside_step(&d)) < 0) goto done;
    clopt_all_reduce_stats st;
    clopt_mirrored_optimizer_all_reduce_stats(d.m, &st);
    out->timed_ms = bench_median(tn, (size_t)rounds) / 1e6;
    out->reduce_ms = st.steps ? 1e3 * st.seconds / (double)st.steps : 0;
    out->reduce_gbs = st.seconds > 0 ? (double)st.bytes / st.seconds / 1e9 : 0;
    const size_t bytes = st.steps ? (size_t)(st.bytes / st.steps) : 0;
    /* The same reduce through host memory, for comparison. */
    if (clopt_mirrored_optimizer_set_all_reduce(d.m, "host") == CLOPT_OK) {
        clopt_mirrored_optimizer_set_all_reduce_timing(d.m, 1);
        for (int r = 0; r < rounds; r++)
            if (dside_step(&d) < 0) goto done;
        clopt_mirrored_optimizer_all_reduce_stats(d.m, &st);
        out->host_ms = st.steps ? 1e3 * st.seconds / (double)st.steps : 0;
    }
    out->mb = (double)bytes / (1 << 20);
    if (d.nrep > 1 && bytes) {
        if (copier_make(&c, &d, bytes) != 0 || copier_run(&c) < 0) goto done;
        for (int r = 0; r < rounds; r++)
            if ((tc[r] = copier_run(&c)) < 0) goto done;
        out->copy_gbs = (double)bytes / bench_median(tc, (size_t)rounds);
    }
    rc = 0;
done:
    bench_progress_done(a);
    copier_free(&c);
    dside_free(&d);
    cside_free(&one);
    cbench_free(&b);
    clopt_context_destroy(ctx);
    free(t1);
    free(tn);
    free(tc);
    return rc;
}

int bench_run_devices(const bench_args *a, const bench_opt *only, size_t shapes[][2],
                      size_t nshapes) {
    const bench_opt *o = only ? only : bench_find_opt("Adam");
    char *json = bench_config_json(o, a->clip);
    if (!json) return CLI_EXIT_FAIL;
    const double load = bench_loadavg();
    dside probe;
    if (dside_make(&probe, a->devices, json, 256, 1) != 0) {
        dside_free(&probe);
        free(json);
        return CLI_EXIT_FAIL;
    }
    const size_t nrep = probe.nrep;
    printf("clopt bench --devices %s: %s float32, clip %s, %d rounds (medians), %zu replicas, "
           "all-reduce: %s; load average %.2f\n",
           a->devices, o->name, bench_clip_name(a->clip), a->rounds, nrep,
           clopt_mirrored_optimizer_all_reduce(probe.m), load);
    dside_free(&probe);
    printf("%-14s %9s %11s %6s %9s %10s %7s %10s %10s %10s %12s\n", "shape", "1 dev ms",
           "N repl. ms", "N/1", "timed ms", "reduce ms", "share", "reduce MB", "red. GB/s",
           "copy GB/s", "host red. ms");
    int rc = CLI_EXIT_OK;
    for (size_t i = 0; i < nshapes; i++) {
        dresult r = {0};
        char shape[64];
        snprintf(shape, sizeof shape, "%zu x %zu", shapes[i][1], shapes[i][0] / shapes[i][1]);
        if (run_shape(a, json, shapes[i][0], shapes[i][1], &r) != 0) {
            rc = CLI_EXIT_FAIL;
            continue;
        }
        printf("%-14s %9.2f %11.2f %6.2f %9.2f %10.2f %6.1f%% %10.1f %10.2f %10.2f %12.2f\n",
               shape, r.one_ms, r.n_ms, r.n_ms / r.one_ms, r.timed_ms, r.reduce_ms,
               r.timed_ms > 0 ? 100 * r.reduce_ms / r.timed_ms : 0, r.mb, r.reduce_gbs,
               r.copy_gbs, r.host_ms);
        fflush(stdout);
    }
    printf("load average after: %.2f\n", bench_loadavg());
    free(json);
    return rc;
}
