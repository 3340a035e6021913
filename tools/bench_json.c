/* `clopt bench --json`: the one writer of its documents. Every mode lists its runs as entries
 * that begin {"optimizer", "tensors", "elements"}; a run that did not happen says why in
 * "reason". */
#include <stdlib.h>
#include "bench_internal.h"

json_t *bench_json_entry(const char *optimizer, size_t tensors, size_t elements) {
    json_t *e = json_object();
    json_object_set_new(e, "optimizer", json_string(optimizer));
    json_object_set_new(e, "tensors", json_integer((json_int_t)tensors));
    json_object_set_new(e, "elements", json_integer((json_int_t)elements));
    return e;
}

json_t *bench_json_skipped(const char *optimizer, size_t tensors, size_t elements,
                           const char *reason) {
    json_t *e = bench_json_entry(optimizer, tensors, elements);
    json_object_set_new(e, "reason", json_string(reason));
    return e;
}

static json_t *env_string(const char *name) {
    const char *v = getenv(name);
    return json_string(v ? v : "");
}

json_t *bench_json_run(clopt_context *ctx, const bench_args *a) {
    json_t *root = json_object();
    if (ctx) {
        char tuning[1024];
        bench_tuning_line(ctx, tuning, sizeof tuning);
        json_object_set_new(root, "device", json_string(clopt_context_device_name(ctx)));
        json_object_set_new(root, "kernel_parameters", json_string(tuning));
    }
    json_object_set_new(root, "dtype", json_string(clopt_dtype_name(a->dtype)));
    json_object_set_new(root, "clip", json_string(bench_clip_name(a->clip)));
    json_object_set_new(root, "rounds", json_integer(a->rounds));
    json_object_set_new(root, "c_threads", json_integer(bench_c_threads()));
    json_object_set_new(root, "c_baseline", json_string(bench_c_baseline()));
    json_object_set_new(root, "omp_wait_policy", env_string("OMP_WAIT_POLICY"));
    json_object_set_new(root, "omp_schedule", env_string("OMP_SCHEDULE"));
    json_object_set_new(root, "load_average_before", json_real(a->load_before));
    json_object_set_new(root, "load_average_after", json_real(bench_loadavg()));
    return root;
}

void bench_json_print(json_t *doc) {
    char *s = json_dumps(doc, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
    if (s) puts(s);
    free(s);
    json_decref(doc);
}
