/* The in-process device all-reduce (src/dist/device_reduce.c): replicas of one OpenCL platform
 * share a cl_context, the reduce runs on the devices and gives the host reducer's bits for every
 * optimizer and the order cases (clipping, accumulation, loss scaling, an inf on one replica)
 * on 2, 3 and 4 devices; the choice of reducer; the mirrored checkpoint helpers.
 * CTest runs these with POCL_DEVICES="pthread pthread pthread pthread": four OpenCL devices. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "clopt/checkpoint.h"
#include "clopt/clopt_cl.h"
#include "clopt/distribute.h"
#include "test_util.h"

TU_SUITE(dist_devices_pocl);

static const char *const DEVS[5] = {"", "pocl:cpu:0", "pocl:cpu:0,pocl:cpu:1",
                                    "pocl:cpu:0,pocl:cpu:1,pocl:cpu:2",
                                    "pocl:cpu:0,pocl:cpu:1,pocl:cpu:2,pocl:cpu:3"};

#define S_OK(s, expr)                                                                          \
    do {                                                                                       \
        clopt_status st_ = (expr);                                                             \
        cr_assert(st_ == CLOPT_OK, "%s: %s: %s", #expr, clopt_status_name(st_),                \
                  clopt_strategy_last_error(s));                                               \
    } while (0)

static clopt_strategy *strategy(const char *devices) {
    clopt_strategy *s = NULL;
    clopt_status st = clopt_strategy_create(devices, &s);
    cr_assert(st == CLOPT_OK && s, "clopt_strategy_create(%s): %s: %s", devices,
              clopt_status_name(st), clopt_last_create_error());
    return s;
}

#define NV 3
static const int64_t shape[NV][2] = {{5, 1}, {300, 1}, {8, 12}};
static const int ndim[NV] = {1, 1, 2};
static int64_t count(size_t i) { return shape[i][0] * shape[i][1]; }

/* Replica r's gradient element: magnitudes 1, 1e3, 1e-3, 7 by replica, so that the sum's bits
 * depend on its order; -0 on every replica at e % 11 == 3 (0 + -0 is +0: the host's sum starts
 * at 0); an inf on replica n-1 only at step `inf_step`. */
static float grad_at(int step, size_t r, size_t n, size_t i, int64_t e, int inf_step) {
    static const float mag[4] = {1.0f, 1e3f, 1e-3f, 7.0f};
    if (e % 11 == 3) return -0.0f;
    if (step == inf_step && r == n - 1 && e == 2) return INFINITY;
    const unsigned h = (unsigned)(step * 7919 + (int)r * 104729 + (int)i * 1299709 + (int)e * 31);
    const float x = (float)((h * 2654435761u) >> 8) / (float)(1u << 24) - 0.5f;
    return x * mag[r % 4];
}

typedef struct run {
    clopt_mirrored_optimizer *m;
    clopt_variable *v[4 * NV], *g[4 * NV];
} run;

/* Mirrored variables, per-replica gradients and an optimizer from `json` on the reducer `how`
 * (NULL: the strategy's choice), after `steps` steps. */
static void run_steps(clopt_strategy *s, run *x, const char *json, const char *how, int mean,
                      int steps, int inf_step) {
    const size_t n = clopt_strategy_num_replicas(s);
    for (size_t i = 0; i < NV; i++) {
        float init[96 * 4];
        for (int64_t e = 0; e < count(i); e++) init[e] = 0.125f * (float)((e + 3 * (int64_t)i) % 9) - 0.5f;
        float *big = NULL;
        if (count(i) > (int64_t)(sizeof init / sizeof *init)) {
            big = malloc((size_t)count(i) * sizeof *big);
            for (int64_t e = 0; e < count(i); e++) big[e] = 0.125f * (float)(e % 9) - 0.5f;
        }
        clopt_variable *mv[4];
        char name[8];
        snprintf(name, sizeof name, "w%zu", i);
        S_OK(s, clopt_strategy_variable_create(s, name, CLOPT_FLOAT32, ndim[i], shape[i],
                                               big ? big : init, mv));
        free(big);
        for (size_t r = 0; r < n; r++) {
            x->v[r * NV + i] = mv[r];
            TU_OK(clopt_strategy_context(s, r),
                  clopt_variable_create(clopt_strategy_context(s, r), "g", CLOPT_FLOAT32, ndim[i],
                                        shape[i], NULL, &x->g[r * NV + i]));
        }
    }
    clopt_status st = clopt_strategy_optimizer_from_config(s, json, &x->m);
    cr_assert(st == CLOPT_OK, "%s: %s", json, clopt_strategy_last_error(s));
    if (how) S_OK(s, clopt_mirrored_optimizer_set_all_reduce(x->m, how));
    if (mean) S_OK(s, clopt_mirrored_optimizer_set_reduction(x->m, CLOPT_REDUCE_MEAN));
    for (int t = 0; t < steps; t++) {
        for (size_t r = 0; r < n; r++)
            for (size_t i = 0; i < NV; i++) {
                float *gv = malloc((size_t)count(i) * sizeof *gv);
                for (int64_t e = 0; e < count(i); e++) gv[e] = grad_at(t, r, n, i, e, inf_step);
                cr_assert(clopt_variable_write(x->g[r * NV + i], gv,
                                               (size_t)count(i) * sizeof *gv) == CLOPT_OK);
                free(gv);
            }
        S_OK(s, clopt_mirrored_optimizer_apply(x->m, x->g, n, x->v, NV));
    }
}

static void assert_same_var(const clopt_variable *a, const clopt_variable *b, const char *what,
                            size_t r, const char *name) {
    size_t na, nb;
    unsigned char *p = tu_read_bytes(a, &na), *q = tu_read_bytes(b, &nb);
    cr_assert(na == nb && memcmp(p, q, na) == 0, "%s: replica %zu's '%s' differs", what, r, name);
    free(p);
    free(q);
}

/* Run a (replica r) equals run b (replica rb) bit for bit: variables and every optimizer
 * variable (with accumulators when `acc`), and the iteration count. */
static void assert_runs_equal(const run *a, size_t r, const run *b, size_t rb, int acc,
                              const char *what) {
    for (size_t i = 0; i < NV; i++) assert_same_var(a->v[r * NV + i], b->v[rb * NV + i], what, r, "variable");
    const clopt_optimizer *oa = clopt_mirrored_optimizer_replica(a->m, r),
                          *ob = clopt_mirrored_optimizer_replica(b->m, rb);
    cr_assert_eq(clopt_optimizer_iterations(oa), clopt_optimizer_iterations(ob), "%s", what);
    const size_t k = clopt_optimizer_variable_count(oa);
    cr_assert_eq(k, clopt_optimizer_variable_count(ob), "%s", what);
    for (size_t j = 0; j < k; j++) {
        clopt_variable *va, *vb;
        const char *name;
        cr_assert(clopt_optimizer_variable(oa, j, &name, NULL, &va) == CLOPT_OK);
        cr_assert(clopt_optimizer_variable(ob, j, NULL, NULL, &vb) == CLOPT_OK);
        if (!va || (!acc && strstr(name, "_gradient_accumulator"))) continue;
        assert_same_var(va, vb, what, r, name);
    }
}

/* Device reduce against host reduce on n = 2, 3, 4 devices: every replica equal to the host
 * reduce's, and to replica 0. */
static void device_equals_host(const char *json, int mean, int steps, int inf_step) {
    for (size_t n = 2; n <= 4; n++) {
        clopt_strategy *s = strategy(DEVS[n]);
        run d, h;
        run_steps(s, &d, json, NULL, mean, steps, inf_step);
        cr_assert_str_eq(clopt_mirrored_optimizer_all_reduce(d.m), "device");
        run_steps(s, &h, json, "host", mean, steps, inf_step);
        cr_assert_str_eq(clopt_mirrored_optimizer_all_reduce(h.m), "host");
        char what[512];
        for (size_t r = 0; r < n; r++) {
            snprintf(what, sizeof what, "%s on %zu devices, device vs host reduce", json, n);
            assert_runs_equal(&d, r, &h, r, 1, what);
            snprintf(what, sizeof what, "%s on %zu devices, replica vs replica 0", json, n);
            assert_runs_equal(&d, r, &d, 0, 0, what);
        }
        clopt_all_reduce_stats st;
        S_OK(s, clopt_mirrored_optimizer_all_reduce_stats(d.m, &st));
        cr_assert(st.bytes > 0 && st.launches >= st.steps && st.steps > 0);
        clopt_strategy_destroy(s);
    }
}

/* The data make the order visible: x0 + x1 + x2 in another order gives other bits somewhere. */
Test(dist_devices_pocl, the_data_are_order_sensitive) {
    int differs = 0;
    for (int64_t e = 0; e < 300 && !differs; e++) {
        const float a = grad_at(0, 0, 3, 1, e, -1), b = grad_at(0, 1, 3, 1, e, -1),
                    c = grad_at(0, 2, 3, 1, e, -1);
        differs = ((0.0f + a) + b) + c != ((0.0f + c) + b) + a;
    }
    cr_assert(differs);
}

#define CFG(cls, extra) "{\"class_name\": \"" cls "\", \"config\": {\"learning_rate\": 0.01" extra "}}"

Test(dist_devices_pocl, sgd_adam_adamw_nadam) {
    device_equals_host(CFG("SGD", ", \"momentum\": 0.9"), 0, 3, -1);
    device_equals_host(CFG("Adam", ""), 0, 3, -1);
    device_equals_host(CFG("AdamW", ", \"weight_decay\": 0.1"), 0, 3, -1);
    device_equals_host(CFG("Nadam", ""), 0, 3, -1);
}

Test(dist_devices_pocl, rmsprop_adagrad_adadelta_adamax_ftrl) {
    device_equals_host(CFG("RMSprop", ""), 0, 3, -1);
    device_equals_host(CFG("Adagrad", ""), 0, 3, -1);
    device_equals_host(CFG("Adadelta", ""), 0, 3, -1);
    device_equals_host(CFG("Adamax", ""), 0, 3, -1);
    device_equals_host(CFG("Ftrl", ""), 0, 3, -1);
}

Test(dist_devices_pocl, lion_lamb_adafactor_schedule_free_muon) {
    device_equals_host(CFG("Lion", ""), 0, 3, -1);
    device_equals_host(CFG("Lamb", ""), 0, 3, -1);
    device_equals_host(CFG("Adafactor", ""), 0, 3, -1);
    device_equals_host(CFG("ScheduleFreeAdamW", ""), 0, 3, -1);
    device_equals_host(CFG("Muon", ""), 0, 3, -1);
}

/* The cases where Keras's order (each replica's pipeline, then the sum) matters. */
Test(dist_devices_pocl, order_cases) {
    device_equals_host(CFG("SGD", ", \"clipnorm\": 0.5"), 0, 3, -1);
    device_equals_host(CFG("Adam", ", \"global_clipnorm\": 0.7"), 0, 3, -1);
    device_equals_host(CFG("Adam", ", \"clipvalue\": 0.05"), 0, 3, -1);
    device_equals_host(CFG("Adam", ", \"gradient_accumulation_steps\": 2"), 0, 4, -1);
    device_equals_host(CFG("RMSprop", ", \"loss_scale_factor\": 4.0"), 0, 3, -1);
    device_equals_host(CFG("SGD", ", \"momentum\": 0.5"), 1, 3, -1); /* MEAN */
}

/* LossScaleOptimizer: an inf on the last replica only at step 1 skips that step everywhere. */
Test(dist_devices_pocl, loss_scale_inf_on_one_replica) {
    const char *json = "{\"class_name\": \"LossScaleOptimizer\", \"config\": {\"inner_optimizer\": "
                       "{\"class_name\": \"Adam\", \"config\": {\"learning_rate\": 0.01}}, "
                       "\"initial_scale\": 4.0, \"dynamic_growth_steps\": 1000}}";
    device_equals_host(json, 0, 3, 1);
    clopt_strategy *s = strategy(DEVS[3]);
    run d;
    run_steps(s, &d, json, NULL, 0, 3, 1);
    cr_assert_eq(clopt_mirrored_optimizer_iterations(d.m), 2, "the inf step was skipped");
    clopt_strategy_destroy(s);
}

/* Replicas of one platform share a cl_context; CLOPT_DIST_SHARE=0 keeps them apart (host
 * reduce); "device" is refused there, and an unknown name anywhere, changing nothing. */
Test(dist_devices_pocl, shared_context_and_the_choice) {
    clopt_strategy *s = strategy(DEVS[2]);
    cl_context c0, c1;
    cr_assert(clopt_context_cl_context(clopt_strategy_context(s, 0), &c0) == CLOPT_OK);
    cr_assert(clopt_context_cl_context(clopt_strategy_context(s, 1), &c1) == CLOPT_OK);
    cr_assert(c0 == c1, "replicas of one platform share a cl_context");
    cl_command_queue q0, q1;
    cr_assert(clopt_context_cl_queue(clopt_strategy_context(s, 0), &q0) == CLOPT_OK);
    cr_assert(clopt_context_cl_queue(clopt_strategy_context(s, 1), &q1) == CLOPT_OK);
    cr_assert(q0 != q1, "each replica keeps its own queue");
    run d;
    run_steps(s, &d, CFG("SGD", ""), NULL, 0, 1, -1);
    cr_assert_str_eq(clopt_mirrored_optimizer_all_reduce(d.m), "device");
    cr_assert_eq(clopt_mirrored_optimizer_set_all_reduce(d.m, "ring"), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(clopt_strategy_last_error(s), "'ring'"));
    cr_assert_eq(clopt_mirrored_optimizer_set_all_reduce(d.m, NULL), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(clopt_mirrored_optimizer_all_reduce(d.m), "device");
    S_OK(s, clopt_mirrored_optimizer_set_all_reduce(d.m, "host"));
    cr_assert_str_eq(clopt_mirrored_optimizer_all_reduce(d.m), "host");
    S_OK(s, clopt_mirrored_optimizer_set_all_reduce(d.m, "auto"));
    cr_assert_str_eq(clopt_mirrored_optimizer_all_reduce(d.m), "device");
    clopt_strategy_destroy(s);

    setenv("CLOPT_DIST_SHARE", "0", 1);
    s = strategy(DEVS[2]);
    unsetenv("CLOPT_DIST_SHARE");
    cr_assert(clopt_context_cl_context(clopt_strategy_context(s, 0), &c0) == CLOPT_OK);
    cr_assert(clopt_context_cl_context(clopt_strategy_context(s, 1), &c1) == CLOPT_OK);
    cr_assert(c0 != c1, "CLOPT_DIST_SHARE=0: a context per replica");
    run_steps(s, &d, CFG("SGD", ""), NULL, 0, 1, -1);
    cr_assert_str_eq(clopt_mirrored_optimizer_all_reduce(d.m), "host");
    cr_assert_eq(clopt_mirrored_optimizer_set_all_reduce(d.m, "device"), CLOPT_ERR_UNSUPPORTED);
    cr_assert(strstr(clopt_strategy_last_error(s), "cl_context"));
    cr_assert_str_eq(clopt_mirrored_optimizer_all_reduce(d.m), "host");
    clopt_strategy_destroy(s);

    s = strategy("host,pocl:cpu:0"); /* across backends: host memory */
    run_steps(s, &d, CFG("SGD", ""), NULL, 0, 1, -1);
    cr_assert_str_eq(clopt_mirrored_optimizer_all_reduce(d.m), "host");
    clopt_strategy_destroy(s);
}

/* The counters: bytes per step are the launch groups' (padded) gradient bytes, once each;
 * timing adds wall time. */
Test(dist_devices_pocl, stats) {
    clopt_strategy *s = strategy(DEVS[2]);
    run d;
    run_steps(s, &d, CFG("SGD", ""), NULL, 0, 0, -1);
    clopt_all_reduce_stats st;
    cr_assert_eq(clopt_mirrored_optimizer_all_reduce_stats(NULL, &st), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(clopt_mirrored_optimizer_all_reduce_stats(d.m, NULL), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(clopt_mirrored_optimizer_set_all_reduce_timing(NULL, 1), CLOPT_ERR_INVALID_ARGUMENT);
    S_OK(s, clopt_mirrored_optimizer_set_all_reduce_timing(d.m, 1));
    S_OK(s, clopt_mirrored_optimizer_apply(d.m, d.g, 2, d.v, NV));
    S_OK(s, clopt_mirrored_optimizer_apply(d.m, d.g, 2, d.v, NV));
    S_OK(s, clopt_mirrored_optimizer_all_reduce_stats(d.m, &st));
    cr_assert_eq(st.steps, 2);
    /* 5 -> 256, 300 -> 512, 96 -> 256 padded float32 elements, at least, per step */
    cr_assert(st.bytes >= 2 * 4 * (256 + 512 + 256) && st.bytes % 2 == 0, "%llu",
              (unsigned long long)st.bytes);
    cr_assert(st.seconds > 0);
    S_OK(s, clopt_mirrored_optimizer_set_all_reduce_timing(d.m, 0));
    S_OK(s, clopt_mirrored_optimizer_all_reduce_stats(d.m, &st));
    cr_assert(st.steps == 0 && st.bytes == 0 && st.seconds == 0);
    clopt_strategy_destroy(s);
}

/* Bad input with the device reduce changes nothing on any replica. */
Test(dist_devices_pocl, bad_input_changes_nothing) {
    clopt_strategy *s = strategy(DEVS[3]);
    run d, e;
    run_steps(s, &d, CFG("Adam", ""), NULL, 0, 1, -1);
    run_steps(s, &e, CFG("Adam", ""), NULL, 0, 1, -1); /* the unchanged twin */
    clopt_variable *g[3 * NV];
    memcpy(g, d.g, sizeof g);
    g[2 * NV + 1] = d.g[1]; /* replica 2's gradient from replica 0's context */
    cr_assert_eq(clopt_mirrored_optimizer_apply(d.m, g, 3, d.v, NV), CLOPT_ERR_CONTEXT_MISMATCH);
    cr_assert(strstr(clopt_strategy_last_error(s), "replica 2"));
    memcpy(g, d.g, sizeof g);
    g[NV] = NULL; /* missing on replica 1 only */
    cr_assert_eq(clopt_mirrored_optimizer_apply(d.m, g, 3, d.v, NV), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(clopt_mirrored_optimizer_apply(d.m, d.g, 2, d.v, NV), CLOPT_ERR_LENGTH_MISMATCH);
    for (size_t r = 0; r < 3; r++) assert_runs_equal(&d, r, &e, r, 1, "after bad input");
    clopt_strategy_destroy(s);
}

/* Other dtypes: float64 sums in place in double, float16 and bfloat16 in float through the
 * accumulator and round once, as the host; and one replica (0 + x0) through "device". */
static void fill_dtype(clopt_variable *v, size_t r, int step) {
    const int64_t n = clopt_variable_size(v);
    const clopt_dtype dt = clopt_variable_dtype(v);
    unsigned char *b = malloc((size_t)n * 8);
    cr_assert(b);
    for (int64_t e = 0; e < n; e++) {
        const float x = grad_at(step, r, 4, 1, e, -1);
        if (dt == CLOPT_FLOAT64) {
            ((double *)b)[e] = (double)x * (1 + 1e-9 * (double)e);
        } else if (dt == CLOPT_FLOAT16) {
            ((_Float16 *)b)[e] = (_Float16)(x / (r == 1 ? 100.0f : 1.0f));
        } else if (dt == CLOPT_BFLOAT16) {
            uint32_t u;
            memcpy(&u, &x, 4);
            ((uint16_t *)b)[e] = (uint16_t)(u >> 16);
        } else {
            ((float *)b)[e] = x;
        }
    }
    cr_assert(clopt_variable_write(v, b, (size_t)n * clopt_dtype_size(dt)) == CLOPT_OK);
    free(b);
}

static void dtype_case(clopt_dtype dt, size_t n) {
    clopt_strategy *s = strategy(DEVS[n]);
    const int64_t len = 300;
    clopt_variable *v[2][4], *g[2][4];
    clopt_mirrored_optimizer *m[2];
    for (int k = 0; k < 2; k++) {
        S_OK(s, clopt_strategy_variable_create(s, "w", dt, 1, &len, NULL, v[k]));
        for (size_t r = 0; r < n; r++) {
            fill_dtype(v[k][r], 0, 9);
            TU_OK(clopt_strategy_context(s, r),
                  clopt_variable_create(clopt_strategy_context(s, r), "g", dt, 1, &len, NULL,
                                        &g[k][r]));
        }
        S_OK(s, clopt_strategy_optimizer_from_config(s, CFG("Adam", ""), &m[k]));
        S_OK(s, clopt_mirrored_optimizer_set_all_reduce(m[k], k ? "host" : "device"));
    }
    for (int t = 0; t < 3; t++)
        for (int k = 0; k < 2; k++) {
            for (size_t r = 0; r < n; r++) fill_dtype(g[k][r], r, t);
            S_OK(s, clopt_mirrored_optimizer_apply(m[k], g[k], n, v[k], 1));
        }
    for (size_t r = 0; r < n; r++) {
        assert_same_var(v[0][r], v[1][r], "device vs host reduce", r, clopt_dtype_name(dt));
        assert_same_var(v[0][r], v[0][0], "replica vs replica 0", r, clopt_dtype_name(dt));
        const clopt_optimizer *a = clopt_mirrored_optimizer_replica(m[0], r),
                              *b = clopt_mirrored_optimizer_replica(m[1], r);
        for (size_t j = 0; j < clopt_optimizer_variable_count(a); j++) {
            clopt_variable *x, *y;
            const char *name;
            cr_assert(clopt_optimizer_variable(a, j, &name, NULL, &x) == CLOPT_OK);
            cr_assert(clopt_optimizer_variable(b, j, NULL, NULL, &y) == CLOPT_OK);
            if (x) assert_same_var(x, y, clopt_dtype_name(dt), r, name);
        }
    }
    clopt_strategy_destroy(s);
}

Test(dist_devices_pocl, float64_float16_bfloat16_and_one_replica) {
    for (size_t n = 2; n <= 4; n += 2) {
        dtype_case(CLOPT_FLOAT64, n);
        dtype_case(CLOPT_FLOAT16, n);
        dtype_case(CLOPT_BFLOAT16, n);
    }
    dtype_case(CLOPT_FLOAT32, 1);
    dtype_case(CLOPT_FLOAT16, 1);
}

/* ---- checkpoints ---- */

static char *tmp_path(const char *name) {
    char *p = malloc(512);
    const char *dir = getenv("TMPDIR");
    snprintf(p, 512, "%s/clopt_dist_ckpt_%ld_%s", dir && *dir ? dir : "/tmp", (long)getpid(), name);
    return p;
}

/* Replica 0 saves; a fresh optimizer over fresh variables loads into every replica and then
 * equals the saved run bit for bit on every replica, and both step on alike. */
Test(dist_devices_pocl, checkpoint_round_trip) {
    const char *json = CFG("Adam", ", \"gradient_accumulation_steps\": 2");
    clopt_strategy *s = strategy(DEVS[3]);
    run a, b;
    run_steps(s, &a, json, NULL, 0, 4, -1); /* accumulators zero again: the same on all */
    char *path = tmp_path("rt.safetensors");
    S_OK(s, clopt_mirrored_optimizer_checkpoint_save(a.m, a.v, NV, path));
    run_steps(s, &b, json, NULL, 0, 0, -1);
    S_OK(s, clopt_mirrored_optimizer_build(b.m, b.v, NV));
    S_OK(s, clopt_mirrored_optimizer_checkpoint_load(b.m, b.v, NV, path));
    for (size_t r = 0; r < 3; r++) assert_runs_equal(&b, r, &a, 0, 1, "loaded vs saved replica 0");
    memcpy(b.g, a.g, sizeof b.g);
    S_OK(s, clopt_mirrored_optimizer_apply(a.m, a.g, 3, a.v, NV));
    S_OK(s, clopt_mirrored_optimizer_apply(b.m, b.g, 3, b.v, NV));
    for (size_t r = 0; r < 3; r++) assert_runs_equal(&b, r, &a, r, 0, "a step after the load");
    /* The optimizer part alone, and a plain clopt_checkpoint_load of the same file. */
    S_OK(s, clopt_mirrored_optimizer_checkpoint_save(a.m, NULL, 0, path));
    clopt_optimizer *o = clopt_mirrored_optimizer_replica(b.m, 1);
    TU_OK(clopt_strategy_context(s, 1), clopt_checkpoint_load(o, NULL, 0, path));
    remove(path);
    free(path);
    clopt_strategy_destroy(s);
}

/* A bad file, a file of another optimizer, and bad rows change no replica. */
Test(dist_devices_pocl, checkpoint_bad_input_changes_nothing) {
    clopt_strategy *s = strategy(DEVS[2]);
    run a, twin;
    run_steps(s, &a, CFG("Adam", ""), NULL, 0, 2, -1);
    run_steps(s, &twin, CFG("Adam", ""), NULL, 0, 2, -1);
    char *good = tmp_path("good.safetensors"), *bad = tmp_path("bad.safetensors"),
         *other = tmp_path("other.safetensors");
    S_OK(s, clopt_mirrored_optimizer_checkpoint_save(twin.m, twin.v, NV, good));
    run o;
    run_steps(s, &o, CFG("SGD", ", \"momentum\": 0.9"), NULL, 0, 1, -1);
    S_OK(s, clopt_mirrored_optimizer_checkpoint_save(o.m, o.v, NV, other));
    /* the good file truncated */
    FILE *f = fopen(good, "rb"), *w = fopen(bad, "wb");
    cr_assert(f && w);
    char buf[4096];
    size_t k = fread(buf, 1, sizeof buf, f);
    cr_assert(k > 100);
    fwrite(buf, 1, k / 2, w);
    fclose(f);
    fclose(w);
    /* move twin apart from a, so that a load that changed anything would show */
    S_OK(s, clopt_mirrored_optimizer_apply(twin.m, twin.g, 2, twin.v, NV));
    run ref;
    run_steps(s, &ref, CFG("Adam", ""), NULL, 0, 2, -1); /* a's twin: a must stay equal to it */

    cr_assert_eq(clopt_mirrored_optimizer_checkpoint_load(a.m, a.v, NV, bad), CLOPT_ERR_CORRUPT_FILE);
    cr_assert(strstr(clopt_strategy_last_error(s), "replica 0"));
    cr_assert_eq(clopt_mirrored_optimizer_checkpoint_load(a.m, a.v, NV, other),
                 CLOPT_ERR_FILE_MISMATCH);
    clopt_variable *rows[2 * NV];
    memcpy(rows, a.v, sizeof rows);
    rows[NV + 1] = a.v[1]; /* replica 1's row holds replica 0's variable */
    cr_assert_eq(clopt_mirrored_optimizer_checkpoint_load(a.m, rows, NV, good),
                 CLOPT_ERR_CONTEXT_MISMATCH);
    rows[NV + 1] = NULL;
    cr_assert_eq(clopt_mirrored_optimizer_checkpoint_load(a.m, rows, NV, good),
                 CLOPT_ERR_INVALID_ARGUMENT);
    rows[NV + 1] = a.v[NV + 2]; /* another variable of replica 1 */
    cr_assert_eq(clopt_mirrored_optimizer_checkpoint_load(a.m, rows, NV, good),
                 CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(clopt_strategy_last_error(s), "checkpoint_load: variable 1 is '"),
              "%s", clopt_strategy_last_error(s));
    cr_assert(strstr(clopt_strategy_last_error(s), "on replica 1 but '"));
    cr_assert_eq(clopt_mirrored_optimizer_checkpoint_load(a.m, a.v, NV, NULL),
                 CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(clopt_mirrored_optimizer_checkpoint_load(NULL, a.v, NV, good),
                 CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(clopt_mirrored_optimizer_checkpoint_save(a.m, rows, NV, bad),
                 CLOPT_ERR_INVALID_ARGUMENT);
    for (size_t r = 0; r < 2; r++) assert_runs_equal(&a, r, &ref, r, 1, "after refused loads");
    /* and the good file still loads */
    S_OK(s, clopt_mirrored_optimizer_checkpoint_load(a.m, a.v, NV, good));
    remove(good);
    remove(bad);
    remove(other);
    free(good);
    free(bad);
    free(other);
    clopt_strategy_destroy(s);
}
