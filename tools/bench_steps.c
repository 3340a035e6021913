/* `clopt bench --steps N`: device memory over many steps (no step allocates). */
#include <stdlib.h>
#include <string.h>
#include "clopt/experimental.h"
#include "bench_internal.h"

typedef struct mem_result {
    const bench_opt *opt;
    size_t n, tensors;
    int skipped;
    char note[256];
    uint64_t var_bytes, grad_bytes, slot_bytes; /* arena reservations after build */
    clopt_memory_stats before, after;            /* after build and one step; after N steps */
} mem_result;

static int run_steps(const bench_args *a, const bench_opt *o, size_t n, size_t tensors,
                     mem_result *r) {
    memset(r, 0, sizeof *r);
    r->opt = o;
    r->n = n;
    r->tensors = tensors;
    if (!o->f32 && !a->optimizer) { /* Muon: thousands of matrix-product steps take hours */
        r->skipped = 1;
        snprintf(r->note, sizeof r->note, "compute-bound steps; run it alone with --optimizer");
        return 0;
    }
    clopt_context *ctx = NULL;
    clopt_status st = clopt_context_create(a->device, &ctx);
    if (st != CLOPT_OK) {
        fprintf(stderr, "clopt bench: device '%s': %s\n", a->device ? a->device : "(default)",
                clopt_last_create_error());
        return -1;
    }
    cbench b;
    memset(&b, 0, sizeof b);
    cside c = {0};
    int rc = -1;
    char *json = bench_config_json(o, a->clip);
    /* The C side only provides the layout and initial values here. */
    bench_opt layout = *o;
    layout.nslots = 0;
    layout.factored = 0;
    if (!json || cbench_init(&b, &layout, a->dtype, n, tensors, a->clip)) goto out;
    clopt_memory_stats m0, m1, m2;
    clopt_context_memory_stats(ctx, &m0);
    if (cside_vars(ctx, &c, &b, a->dtype)) goto out;
    clopt_context_memory_stats(ctx, &m1);
    const int made = cside_optimizer(ctx, &c, json, &r->skipped, r->note, sizeof r->note);
    if (made != 0) {
        rc = made > 0 ? 0 : -1;
        goto out;
    }
    clopt_context_memory_stats(ctx, &m2);
    const uint64_t vg = m1.arena_used_bytes - m0.arena_used_bytes;
    r->var_bytes = r->grad_bytes = vg / 2;
    r->slot_bytes = m2.arena_used_bytes - m1.arena_used_bytes;
    if (bench_clopt_step(ctx, &c)) goto out;
    clopt_context_memory_stats(ctx, &r->before);
    for (long k = 1; k < a->steps; k++) {
        if (k % 100 == 0)
            bench_progress(a, k == 100, "clopt bench --steps: %s, %zu x %zu, step %ld/%ld", o->name,
                     tensors, n / tensors, k, a->steps);
        if (bench_clopt_step(ctx, &c)) goto out;
    }
    clopt_context_memory_stats(ctx, &r->after);
    rc = 0;
out:
    cside_free(&c);
    cbench_free(&b);
    free(json);
    clopt_context_destroy(ctx);
    return rc;
}

static int steps_ok(const mem_result *r) {
    return r->after.device_bytes == r->before.device_bytes &&
           r->after.device_buffers == r->before.device_buffers &&
           r->after.buffer_creates == r->before.buffer_creates;
}

static void print_steps(const bench_args *a, const mem_result *rs, size_t nr) {
    if (a->json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < nr; i++) {
            const mem_result *r = &rs[i];
            if (r->skipped) {
                json_array_append_new(arr,
                                      bench_json_skipped(r->opt->name, r->tensors, r->n, r->note));
                continue;
            }
            json_t *e = bench_json_entry(r->opt->name, r->tensors, r->n);
            json_object_set_new(e, "steps", json_integer(a->steps));
            json_object_set_new(e, "variable_bytes", json_integer((json_int_t)r->var_bytes));
            json_object_set_new(e, "gradient_bytes", json_integer((json_int_t)r->grad_bytes));
            json_object_set_new(e, "slot_bytes", json_integer((json_int_t)r->slot_bytes));
            json_object_set_new(e, "device_bytes", json_integer((json_int_t)r->before.device_bytes));
            json_object_set_new(e, "device_bytes_after_steps",
                                json_integer((json_int_t)r->after.device_bytes));
            json_object_set_new(e, "buffers", json_integer((json_int_t)r->before.device_buffers));
            json_object_set_new(e, "buffer_creates_during_steps",
                                json_integer((json_int_t)(r->after.buffer_creates -
                                                          r->before.buffer_creates)));
            json_object_set_new(e, "ok", json_boolean(steps_ok(r)));
            json_array_append_new(arr, e);
        }
        bench_json_print(arr);
        return;
    }
    printf("memory over %ld steps (%s, clip %s); MiB = 2^20 bytes\n\n", a->steps,
           clopt_dtype_name(a->dtype), bench_clip_name(a->clip));
    printf("%-18s %-13s %8s %8s %8s %9s %10s %9s %8s %7s  %s\n", "optimizer", "shape", "vars",
           "grads", "slots", "other", "device", "after N", "buffers", "allocs", "");
    for (size_t i = 0; i < nr; i++) {
        const mem_result *r = &rs[i];
        char shape[40];
        snprintf(shape, sizeof shape, "%zu x %zu", r->tensors, r->n / r->tensors);
        if (r->skipped) {
            printf("%-18s %-13s skipped: %s\n", r->opt->name, shape, r->note);
            continue;
        }
        const double M = 1048576.0;
        const uint64_t vgs = r->var_bytes + r->grad_bytes + r->slot_bytes;
        printf("%-18s %-13s %8.2f %8.2f %8.2f %9.3f %10.2f %9.2f %8llu %7llu  %s\n",
               r->opt->name, shape, r->var_bytes / M, r->grad_bytes / M, r->slot_bytes / M,
               ((double)r->before.device_bytes - (double)vgs) / M, r->before.device_bytes / M,
               r->after.device_bytes / M, (unsigned long long)r->before.device_buffers,
               (unsigned long long)(r->after.buffer_creates - r->before.buffer_creates),
               steps_ok(r) ? "ok" : "GREW");
    }
    printf("\nvars, grads, slots: arena reservations (sizes rounded up to whole chunks); other: "
           "everything else\n(launch tables, per-variable scalars, partial sums, and arena space "
           "not yet handed out);\nallocs: buffers created during the steps (must be 0).\n");
}

int bench_run_steps(const bench_args *a, const bench_opt *only, size_t shapes[][2],
                    size_t nshapes) {
    const size_t nopts = only ? 1 : bench_nopts;
    int rc = CLI_EXIT_OK;
    mem_result *ms = calloc(nopts * nshapes, sizeof *ms);
    size_t nr = 0;
    if (!ms) return CLI_EXIT_FAIL;
    for (size_t i = 0; i < nopts && rc == CLI_EXIT_OK; i++)
        for (size_t s = 0; s < nshapes && rc == CLI_EXIT_OK; s++)
            if (run_steps(a, only ? only : &bench_opts[i], shapes[s][0], shapes[s][1], &ms[nr++]))
                rc = CLI_EXIT_FAIL;
    bench_progress_done(a);
    print_steps(a, ms, nr);
    for (size_t i = 0; i < nr; i++)
        if (!ms[i].skipped && !steps_ok(&ms[i])) rc = CLI_EXIT_FAIL;
    free(ms);
    return rc;
}
