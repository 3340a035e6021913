/* `clopt bench` timing: clopt's step against the C loop's, interleaved round by round, medians
 * of the rounds; a table or one JSON document. */
#include <stdlib.h>
#include <string.h>
#include "clopt/experimental.h"
#include "bench_internal.h"

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
    char *json = bench_config_json(o, a->clip);
    if (!tc || !tC || !json || cbench_init(&b, o, a->dtype, n, tensors, a->clip)) {
        fprintf(stderr, "clopt bench: out of memory for %zu elements\n", n);
        goto out;
    }
    if (cside_vars(ctx, &c, &b, a->dtype)) goto out;
    const double t0 = bench_now_ns();
    const int made = cside_optimizer(ctx, &c, json, &r->skipped, r->note, sizeof r->note);
    if (made != 0) {
        rc = made > 0 ? 0 : -1;
        goto out;
    }
    r->build_ms = (bench_now_ns() - t0) / 1e6;
    clopt_memory_stats ms;
    if (clopt_context_memory_stats(ctx, &ms) == CLOPT_OK) {
        r->device_bytes = ms.device_bytes;
        r->arena_used = ms.arena_used_bytes;
    }
    /* Warm both sides: one untimed step each. */
    if (bench_clopt_step(ctx, &c)) goto out;
    cbench_step(&b, o, a->dtype);
    for (int k = 0; k < a->rounds; k++) {
        bench_progress(a, k == 0, "clopt bench: %s, %zu x %zu, round %d/%d", o->name, tensors,
                 n / tensors, k + 1, a->rounds);
        /* Alternate which side goes first, so neither always follows the other. */
        for (int side = 0; side < 2; side++) {
            const int clopt_side = (side == 0) == (k % 2 == 0);
            const double s = bench_now_ns();
            if (clopt_side) {
                if (bench_clopt_step(ctx, &c)) goto out;
                tc[k] = bench_now_ns() - s;
            } else {
                cbench_step(&b, o, a->dtype);
                tC[k] = bench_now_ns() - s;
            }
        }
    }
    if (a->rounds < 1) goto out; /* checked when parsed; says so to the compiler too */
    double *pr = calloc((size_t)a->rounds, sizeof *pr);
    if (!pr) goto out;
    for (int k = 0; k < a->rounds; k++) pr[k] = tc[k] / tC[k];
    r->paired = bench_median(pr, (size_t)a->rounds);
    free(pr);
    r->clopt_ns = bench_median(tc, (size_t)a->rounds); /* sorts */
    r->c_ns = bench_median(tC, (size_t)a->rounds);
    r->clopt_min = tc[0];
    r->c_min = tC[0];
    if (bench_check_result(ctx, &c, &b, a->dtype, &r->max_diff, &r->bad)) goto out;
    rc = 0;
out:
    cside_free(&c);
    cbench_free(&b);
    free(tc);
    free(tC);
    free(json);
    return rc;
}

static int bench_result_ok(const bench_result *r) { return r->bad * 100000 <= r->n; }

static double bytes_per_elem(const bench_result *r, const bench_args *a) {
    const int extra = a->clip == CB_CLIP_NORM || a->clip == CB_CLIP_GLOBAL;
    return (double)((r->opt->arrays + extra) * (int)clopt_dtype_size(a->dtype));
}

static void print_table(clopt_context *ctx, const bench_args *a, const bench_result *rs,
                        size_t nr) {
    char tuning[1024];
    bench_tuning_line(ctx, tuning, sizeof tuning);
    printf("clopt bench: %s\nkernel parameters: %s\n", clopt_context_device_name(ctx), tuning);
    printf("baseline: C loop %s\n", bench_c_baseline());
    printf("dtype %s, clip %s, median of %d interleaved rounds; C loop: OpenMP, %d threads, "
           "OMP_WAIT_POLICY=%s, OMP_SCHEDULE=%s\nload average (1 min) before %.2f, after "
           "%.2f\n\n",
           clopt_dtype_name(a->dtype), bench_clip_name(a->clip), a->rounds, bench_c_threads(),
           getenv("OMP_WAIT_POLICY") ? getenv("OMP_WAIT_POLICY") : "(default)",
           getenv("OMP_SCHEDULE") ? getenv("OMP_SCHEDULE") : "(default)", a->load_before,
           bench_loadavg());
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
        const double ratio = r->clopt_ns / r->c_ns, target = bench_target(r->opt, r->tensors, r->n);
        printf("%-18s %-13s %9.1f %11.3f %9.3f %6.2fx %6.2fx %10.1f %8.1f %5.0f  %.2fx %s%s\n",
               r->opt->name, shape, r->build_ms, r->clopt_ns / n, r->c_ns / n, ratio, r->paired,
               bpe * n / r->clopt_ns, bpe * n / r->c_ns, bpe, target,
               r->paired <= target ? "met" : "MISSED",
               bench_result_ok(r) ? "" : "  RESULTS DIFFER");
    }
    printf("\nns/el: median step time / elements; ratio: of the medians; paired: median of "
           "each round's ratio\n(the two steps of a round ran back to back). GB/s: B/el (bytes "
           "a step must read and write per\nelement) / ns/el. target: the bound on the paired ratio "
           "(issue 15).\n");
}

static void print_json(clopt_context *ctx, const bench_args *a, const bench_result *rs,
                       size_t nr) {
    json_t *root = bench_json_run(ctx, a), *arr = json_array(), *skipped = json_array();
    for (size_t i = 0; i < nr; i++) {
        const bench_result *r = &rs[i];
        if (r->skipped) {
            json_array_append_new(skipped,
                                  bench_json_skipped(r->opt->name, r->tensors, r->n, r->note));
            continue;
        }
        json_t *e = bench_json_entry(r->opt->name, r->tensors, r->n);
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
        const double target = bench_target(r->opt, r->tensors, r->n);
        json_object_set_new(e, "target_ratio", json_real(target));
        json_object_set_new(e, "meets_target",
                            json_boolean(r->paired <= target));
        json_object_set_new(e, "device_bytes_after_build",
                            json_integer((json_int_t)r->device_bytes));
        json_object_set_new(e, "max_abs_difference", json_real(r->max_diff));
        json_object_set_new(e, "results_agree", json_boolean(bench_result_ok(r)));
        json_array_append_new(arr, e);
    }
    json_object_set_new(root, "results", arr);
    json_object_set_new(root, "skipped", skipped);
    bench_json_print(root);
}

int bench_run_timed(const bench_args *args, const bench_opt *only, size_t shapes[][2],
                    size_t nshapes) {
    bench_args a = *args;
    const size_t nopts = only ? 1 : bench_nopts;
    int rc = CLI_EXIT_OK;
    a.load_before = bench_loadavg();
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
    bench_progress_done(&a);
    if (rc == CLI_EXIT_OK) {
        if (a.json)
            print_json(ctx, &a, rs, nr);
        else
            print_table(ctx, &a, rs, nr);
        for (size_t i = 0; i < nr; i++)
            if (!rs[i].skipped && !bench_result_ok(&rs[i])) {
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
