/* LossScaleOptimizer steps decided on the device (src/optim/loss_scale_device.c): no read from the
 * device inside a step, and the same numbers as the bare inner optimizer.
 *
 * Each test runs an LSO(inner) over many steps, some with a non-finite gradient, next to the bare
 * inner optimizer fed the unscaled gradients of the finite steps only. The scale stays a power of
 * two (initial 256, growth every 4 finite steps, a non-finite step every 5), so scaling and
 * unscaling are exact and the two must agree bitwise: variables, every optimizer variable
 * (slots, iterations, Nadam's u_product) and, by Keras's rule, the LSO's step_counter and
 * dynamic_scale. The loop itself never asks the LSO for anything, so the only reads from the
 * device are the table rewrites, one every CLOPT__STEP_ROWS steps: the tests count them through
 * clopt_context_memory_stats. Trajectories are longer than two tables, and the inner optimizers
 * chosen read the count every step (Adam's bias corrections, Nadam's host-side u_product, a
 * schedule, EMA's overwrite beat), so a wrong row or a wrong read-back shows. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "clopt/clopt_cl.h"
#include "clopt/experimental.h"
#include "optim/loss_scale_internal.h"
#include "optim_state.h"

TU_SUITE(lsodev_host);
TU_SUITE(lsodev_pocl);

#define N 7
#define GROWTH 4

typedef struct pair {
    clopt_context *ctx;
    clopt_optimizer *lso, *bare;
    clopt_variable *lv, *bv, *lg, *bg;
} pair;

static void pair_open(pair *p, const char *dev, clopt_dtype dt, const char *inner) {
    char json[1024];
    snprintf(json, sizeof json,
             "{\"class_name\": \"LossScaleOptimizer\", \"config\": {\"inner_optimizer\": %s, "
             "\"initial_scale\": 256.0, \"dynamic_growth_steps\": %d}}",
             inner, GROWTH);
    const double init[N] = {0.5, -1, 0.25, 2, -0.75, 1.5, -2};
    const int64_t n = N;
    p->ctx = tu_context(dev);
    p->lso = tu_optimizer(p->ctx, json);
    p->bare = tu_optimizer(p->ctx, inner);
    p->lv = tu_var_from_f64(p->ctx, "dense/kernel", dt, 1, &n, init);
    p->bv = tu_var_from_f64(p->ctx, "dense/kernel", dt, 1, &n, init);
    p->lg = tu_var(p->ctx, "g", dt, 1, &n, NULL);
    p->bg = tu_var(p->ctx, "g", dt, 1, &n, NULL);
    TU_OK(p->ctx, clopt_optimizer_build(p->lso, &p->lv, 1));
    TU_OK(p->ctx, clopt_optimizer_build(p->bare, &p->bv, 1));
}

static uint64_t reads(const pair *p) {
    clopt_memory_stats m;
    cr_assert_eq(clopt_context_memory_stats(p->ctx, &m), CLOPT_OK);
    return m.host_reads;
}

/* One step on both sides; the LSO gets the gradients times `scale`, and a NaN or an infinity on
 * every fifth step, which the bare optimizer does not see. Returns whether it was finite. */
static int pair_step(pair *p, int k, double scale) {
    double g[N], gs[N];
    for (int i = 0; i < N; i++) {
        g[i] = sin(0.37 * k + 1.3 * i) * (1 + (i % 3)); /* exact in binary after * 2^j */
        g[i] = (double)(float)g[i];
        gs[i] = g[i] * scale;
    }
    const int finite = k % 5 != 4;
    if (!finite) gs[k % N] = (k / 5) % 2 ? NAN : -INFINITY;
    tu_write_f64(p->lg, gs);
    TU_OK(p->ctx, clopt_optimizer_apply(p->lso, &p->lg, &p->lv, 1));
    if (finite) {
        tu_write_f64(p->bg, g);
        TU_OK(p->ctx, clopt_optimizer_apply(p->bare, &p->bg, &p->bv, 1));
    }
    return finite;
}

static void scale_rule(int finite, double *scale, double *counter) {
    if (!finite) {
        *counter = 0;
        *scale *= 0.5;
    } else if (*counter == GROWTH - 1) {
        *counter = 0;
        *scale *= 2;
    } else {
        *counter += 1;
    }
}

static void pair_assert_same(pair *p, double scale, double counter, const char *what) {
    /* Asking syncs: the first request reads the device's state back. */
    cr_assert_eq(clopt_optimizer_iterations(p->lso), clopt_optimizer_iterations(p->bare), "%s",
                 what);
    cr_assert_eq(os_scalar(p->lso, 2), counter, "%s: step_counter", what);
    cr_assert_eq(os_scalar(p->lso, 3), scale, "%s: dynamic_scale", what);
    double s = 0;
    TU_OK(p->ctx, clopt_optimizer_scale_loss(p->lso, 1.0, &s));
    cr_assert_eq(s, scale, "%s: scale_loss", what);
    os_assert_vars_same(p->lv, p->bv, what);
    os_state a, b;
    os_read(&a, p->lso);
    os_read(&b, p->bare);
    os_assert_same_from(&a, 4, &b, p->lso, what);
    os_free(&a);
    os_free(&b);
}

/* `steps` steps with no request in between (but for `poke`: every poke steps, the loop asks for
 * the iteration count, and at step poke_lr sets the learning rate on both). */
static void run(const char *dev, clopt_dtype dt, const char *inner, int steps, int poke,
                int poke_lr) {
    pair p;
    pair_open(&p, dev, dt, inner);
    char what[256];
    snprintf(what, sizeof what, "%s %s %s", dev, clopt_dtype_name(dt), inner);
    double scale = 256, counter = 0;
    const uint64_t r0 = reads(&p);
    int asked = 0;
    for (int k = 0; k < steps; k++) {
        scale_rule(pair_step(&p, k, scale), &scale, &counter);
        if (poke && k % poke == poke - 1) {
            cr_assert_eq(clopt_optimizer_iterations(p.lso), clopt_optimizer_iterations(p.bare),
                         "%s: step %d", what, k);
            asked++;
        }
        if (poke_lr && k == poke_lr) {
            TU_OK(p.ctx, clopt_optimizer_set_learning_rate(p.lso, 0.003));
            TU_OK(p.ctx, clopt_optimizer_set_learning_rate(p.bare, 0.003));
            asked++;
        }
    }
    /* Reads of the bare optimizer's side: none (it reads nothing in a step either). */
    const uint64_t got = reads(&p) - r0, bound = (uint64_t)(steps / CLOPT__STEP_ROWS + asked);
    cr_assert(got <= bound, "%s: %llu reads from the device in %d steps, at most %llu expected",
              what, (unsigned long long)got, steps, (unsigned long long)bound);
    if (!poke) cr_assert(steps <= CLOPT__STEP_ROWS || got > 0, "%s: the table never ran out", what);
    pair_assert_same(&p, scale, counter, what);
    clopt_context_destroy(p.ctx);
}

#define ADAM "{\"class_name\": \"Adam\", \"config\": {\"learning_rate\": 0.01, \"amsgrad\": true}}"
#define NADAM_SCHEDULE                                                                           \
    "{\"class_name\": \"Nadam\", \"config\": {\"learning_rate\": {\"module\": "                  \
    "\"keras.optimizers.schedules\", \"class_name\": \"ExponentialDecay\", \"config\": "         \
    "{\"initial_learning_rate\": 0.01, \"decay_steps\": 7, \"decay_rate\": 0.9}}}}"
#define ADAMW_EMA_CLIP                                                                           \
    "{\"class_name\": \"AdamW\", \"config\": {\"learning_rate\": 0.01, \"use_ema\": true, "      \
    "\"ema_momentum\": 0.8, \"ema_overwrite_frequency\": 6, \"global_clipnorm\": 0.5}}"
#define LAMB_CLIPNORM                                                                            \
    "{\"class_name\": \"Lamb\", \"config\": {\"learning_rate\": 0.01, \"clipnorm\": 0.3}}"

Test(lsodev_host, adam_two_tables) { run(TU_HOST, CLOPT_FLOAT32, ADAM, 600, 0, 0); }
Test(lsodev_pocl, adam_two_tables) { run(TU_POCL, CLOPT_FLOAT32, ADAM, 600, 0, 0); }
Test(lsodev_host, nadam_schedule) {
    run(TU_HOST, CLOPT_FLOAT32, NADAM_SCHEDULE, 300, 0, 0);
    run(TU_HOST, CLOPT_FLOAT64, NADAM_SCHEDULE, 300, 0, 0);
}
Test(lsodev_pocl, nadam_schedule) {
    run(TU_POCL, CLOPT_FLOAT32, NADAM_SCHEDULE, 300, 0, 0);
    run(TU_POCL, CLOPT_FLOAT64, NADAM_SCHEDULE, 300, 0, 0);
}
Test(lsodev_host, adamw_ema_global_clipnorm) {
    run(TU_HOST, CLOPT_FLOAT32, ADAMW_EMA_CLIP, 300, 0, 0);
}
Test(lsodev_pocl, adamw_ema_global_clipnorm) {
    run(TU_POCL, CLOPT_FLOAT32, ADAMW_EMA_CLIP, 300, 0, 0);
}
Test(lsodev_host, lamb_clipnorm) { run(TU_HOST, CLOPT_FLOAT64, LAMB_CLIPNORM, 300, 0, 0); }
Test(lsodev_pocl, lamb_clipnorm) { run(TU_POCL, CLOPT_FLOAT64, LAMB_CLIPNORM, 300, 0, 0); }
/* Requests in the middle (each reads the state back once) and a learning rate set at step 100
 * (the table is rewritten from the new rate). */
Test(lsodev_host, requests_and_a_new_learning_rate) {
    run(TU_HOST, CLOPT_FLOAT32, ADAM, 300, 37, 100);
}
Test(lsodev_pocl, requests_and_a_new_learning_rate) {
    run(TU_POCL, CLOPT_FLOAT32, ADAM, 300, 37, 100);
}

/* The inner optimizers the device cannot decide for (passes of their own, accumulation) still
 * step right, reading the flag back each step. */
static void fallback_reads(const char *dev) {
    pair p;
    pair_open(&p, dev, CLOPT_FLOAT32,
              "{\"class_name\": \"Adafactor\", \"config\": {\"learning_rate\": 0.01}}");
    cr_assert(!clopt__loss_scale_on_device(p.lso), "Adafactor cannot take device-decided steps");
    double scale = 256, counter = 0;
    const uint64_t r0 = reads(&p);
    for (int k = 0; k < 12; k++) scale_rule(pair_step(&p, k, scale), &scale, &counter);
    cr_assert_eq(reads(&p) - r0, 12, "one flag read per step");
    pair_assert_same(&p, scale, counter, "Adafactor");
    clopt_context_destroy(p.ctx);
}
Test(lsodev_host, adafactor_falls_back) { fallback_reads(TU_HOST); }
Test(lsodev_pocl, adafactor_falls_back) { fallback_reads(TU_POCL); }

/* A checkpoint saved between device-decided steps holds the device's count and scale, and a
 * fresh LSO loaded from it goes on exactly as the first. */
static void checkpoint_mid_run(const char *dev) {
    pair p;
    pair_open(&p, dev, CLOPT_FLOAT32, ADAM);
    double scale = 256, counter = 0;
    for (int k = 0; k < 13; k++) scale_rule(pair_step(&p, k, scale), &scale, &counter);
    char path[512];
    snprintf(path, sizeof path, "%s/lsodev-%d.safetensors", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (int)getpid());
    TU_OK(p.ctx, clopt_optimizer_save(p.lso, path));
    char json[1024];
    snprintf(json, sizeof json,
             "{\"class_name\": \"LossScaleOptimizer\", \"config\": {\"inner_optimizer\": %s, "
             "\"initial_scale\": 256.0, \"dynamic_growth_steps\": %d}}",
             ADAM, GROWTH);
    clopt_optimizer *again = tu_optimizer(p.ctx, json);
    TU_OK(p.ctx, clopt_optimizer_build(again, &p.lv, 1));
    TU_OK(p.ctx, clopt_optimizer_load(again, path));
    remove(path);
    clopt_optimizer_destroy(p.lso);
    p.lso = again;
    for (int k = 13; k < 40; k++) scale_rule(pair_step(&p, k, scale), &scale, &counter);
    pair_assert_same(&p, scale, counter, "after a checkpoint");
    clopt_context_destroy(p.ctx);
}
Test(lsodev_host, checkpoint_mid_run) { checkpoint_mid_run(TU_HOST); }
Test(lsodev_pocl, checkpoint_mid_run) { checkpoint_mid_run(TU_POCL); }

/* clopt_optimizer_cl_loss_scale: the device's float32 scale, current before the first step and
 * after each, without the host asking; its errors. */
Test(lsodev_pocl, cl_loss_scale) {
    pair p;
    pair_open(&p, TU_POCL, CLOPT_FLOAT32, ADAM);
    cl_mem mem = NULL;
    size_t off = 0;
    TU_OK(p.ctx, clopt_optimizer_cl_loss_scale(p.lso, &mem, &off));
    cl_command_queue q;
    TU_OK(p.ctx, clopt_context_cl_queue(p.ctx, &q));
    double scale = 256, counter = 0;
    for (int k = 0; k < 12; k++) {
        float dev = 0;
        cr_assert_eq(clEnqueueReadBuffer(q, mem, CL_TRUE, off, sizeof dev, &dev, 0, NULL, NULL),
                     CL_SUCCESS);
        cr_assert_eq((double)dev, scale, "before step %d: %g on the device, want %g", k, dev,
                     scale);
        scale_rule(pair_step(&p, k, scale), &scale, &counter);
    }
    pair_assert_same(&p, scale, counter, "cl_loss_scale");
    TU_ASSERT_STATUS(p.ctx, clopt_optimizer_cl_loss_scale(p.bare, &mem, &off),
                     CLOPT_ERR_INVALID_ARGUMENT);
    tu_assert_error_mentions(p.ctx, "not a LossScaleOptimizer");
    cr_assert_eq(clopt_optimizer_cl_loss_scale(p.lso, NULL, &off), CLOPT_ERR_INVALID_ARGUMENT);
    clopt_context_destroy(p.ctx);
}

static void cl_loss_scale_refused(const char *dev, const char *inner, clopt_status want,
                                  const char *needle) {
    clopt_context *ctx = tu_context(dev);
    char json[1024];
    snprintf(json, sizeof json,
             "{\"class_name\": \"LossScaleOptimizer\", \"config\": {\"inner_optimizer\": %s}}",
             inner);
    clopt_optimizer *o = tu_optimizer(ctx, json);
    cl_mem mem;
    size_t off;
    TU_ASSERT_STATUS(ctx, clopt_optimizer_cl_loss_scale(o, &mem, &off), CLOPT_ERR_NOT_BUILT);
    const int64_t n = 4;
    clopt_variable *v = tu_var(ctx, "v", CLOPT_FLOAT32, 1, &n, NULL);
    TU_OK(ctx, clopt_optimizer_build(o, &v, 1));
    TU_ASSERT_STATUS(ctx, clopt_optimizer_cl_loss_scale(o, &mem, &off), want);
    if (needle) tu_assert_error_mentions(ctx, needle);
    clopt_context_destroy(ctx);
}
Test(lsodev_host, cl_loss_scale_refused_on_host) {
    cl_loss_scale_refused(TU_HOST, ADAM, CLOPT_ERR_UNSUPPORTED, "a host context");
}
Test(lsodev_pocl, cl_loss_scale_refused_for_host_decided_steps) {
    cl_loss_scale_refused(TU_POCL,
                          "{\"class_name\": \"SGD\", \"config\": {\"gradient_accumulation_steps\": 2}}",
                          CLOPT_ERR_UNSUPPORTED, "decided on the host");
}
