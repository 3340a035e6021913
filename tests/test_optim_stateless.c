/* stateless_apply (Keras's JAX-style base stateless_apply, semantics doc section 1.3): one step
 * computed from given optimizer and trainable values into given outputs.
 *
 * Checked bitwise: the outputs are exactly what a normal apply gives from the same state, for SGD
 * with Nesterov momentum, Adam with amsgrad, Nadam (its host scalar u_product), SGD with gradient
 * accumulation, Adam with EMA and its periodic overwrite, and a LossScaleOptimizer; and the
 * optimizer's variables, slots, counters and the trainable variables are exactly as before.
 * The state fed in may be another optimizer's (stateless_apply must use the given values, not its
 * own). Refused calls (unbuilt, wrong lengths, shapes, dtypes, contexts, NULL buffers, a bad
 * counter, a bad gradient) change nothing, the output buffers included. The trainable variables
 * hold a -0.0 and gradients of zero at some elements, so a copy that loses the sign of zero
 * shows. */
#include "optim_state.h"

#define SGD_NESTEROV                                                                             \
    "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.05, \"momentum\": 0.9, "        \
    "\"nesterov\": true}}"
#define ADAM_AMSGRAD                                                                             \
    "{\"class_name\": \"Adam\", \"config\": {\"learning_rate\": 0.01, \"amsgrad\": true}}"
#define NADAM "{\"class_name\": \"Nadam\", \"config\": {\"learning_rate\": 0.01}}"
#define SGD_ACCUM                                                                                \
    "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.05, \"momentum\": 0.5, "        \
    "\"gradient_accumulation_steps\": 3}}"
#define ADAM_EMA                                                                                 \
    "{\"class_name\": \"Adam\", \"config\": {\"learning_rate\": 0.01, \"use_ema\": true, "        \
    "\"ema_momentum\": 0.9, \"ema_overwrite_frequency\": 2}}"
#define LSO_ADAM                                                                                 \
    "{\"class_name\": \"LossScaleOptimizer\", \"config\": {\"inner_optimizer\": " ADAM_AMSGRAD  \
    ", \"initial_scale\": 4.0, \"dynamic_growth_steps\": 2}}"

#define NSTEPS 6

/* A model: kernel [3, 4] float32 and bias [5] float64, and their gradients. */
typedef struct model {
    clopt_context *ctx;
    clopt_optimizer *o;
    clopt_variable *v[2], *g[2];
} model;

static const int64_t KSHAPE[2] = {3, 4}, BSHAPE = 5;
static const size_t SIZE[2] = {12, 5};

static void model_open(model *m, clopt_context *ctx, const char *json, const char *prefix,
                       uint64_t seed) {
    m->ctx = ctx;
    m->o = tu_optimizer(ctx, json);
    double k[12], b[5];
    uint64_t rng = seed;
    tu_rand_fill(&rng, k, 12, -1, 1);
    tu_rand_fill(&rng, b, 5, -1, 1);
    k[5] = -0.0; /* with a zero gradient below: Adam keeps -0.0 - 0 = -0.0 */
    b[2] = -0.0;
    char kn[32], bn[32];
    snprintf(kn, sizeof kn, "%s/kernel", prefix);
    snprintf(bn, sizeof bn, "%s/bias", prefix);
    m->v[0] = tu_var_from_f64(ctx, kn, CLOPT_FLOAT32, 2, KSHAPE, k);
    m->v[1] = tu_var_from_f64(ctx, bn, CLOPT_FLOAT64, 1, &BSHAPE, b);
    m->g[0] = tu_var(ctx, "grad_kernel", CLOPT_FLOAT32, 2, KSHAPE, NULL);
    m->g[1] = tu_var(ctx, "grad_bias", CLOPT_FLOAT64, 1, &BSHAPE, NULL);
    TU_OK(ctx, clopt_optimizer_build(m->o, m->v, 2));
}

/* Step k's gradients (the same for every model), scaled; element 5 / 2 are zero. */
static void write_grads(model *m, int k, double scale) {
    uint64_t rng = 1000 + (uint64_t)k;
    double g[2][12];
    for (int i = 0; i < 2; i++) tu_rand_fill(&rng, g[i], SIZE[i], -1, 1);
    g[0][5] = 0;
    g[1][2] = 0;
    for (int i = 0; i < 2; i++) {
        for (size_t j = 0; j < SIZE[i]; j++) g[i][j] *= scale;
        tu_write_f64(m->g[i], g[i]);
    }
}

/* Step k's gradient list: at step 3 the bias has none. */
static void grad_list(const model *m, int k, clopt_variable **out) {
    out[0] = m->g[0];
    out[1] = k == 3 ? NULL : m->g[1];
}

static double scale_for(const clopt_optimizer *o) {
    double s = 1;
    cr_assert(clopt_optimizer_scale_loss(o, 1.0, &s) == CLOPT_OK);
    return s;
}

/* Copies of a variable's bytes into a new variable (raw bytes, not through assign). */
static clopt_variable *copy_of(clopt_context *ctx, const clopt_variable *v, const char *name) {
    clopt_variable *c = tu_var(ctx, name, clopt_variable_dtype(v), clopt_variable_ndim(v),
                               clopt_variable_shape(v), NULL);
    size_t n;
    unsigned char *b = tu_read_bytes(v, &n);
    TU_OK(ctx, clopt_variable_write(c, b, n));
    free(b);
    return c;
}

/* Fills a variable with NaN bytes (0xff...), the "untouched output" sentinel. */
static void poison(clopt_variable *v) {
    size_t n = (size_t)clopt_variable_size(v) * clopt_dtype_size(clopt_variable_dtype(v));
    unsigned char *b = malloc(n);
    cr_assert(b);
    memset(b, 0xff, n);
    TU_OK(clopt_variable_context(v), clopt_variable_write(v, b, n));
    free(b);
}

/* Over NSTEPS steps of one optimizer: stateless_apply from its current state, then the normal
 * apply; the stateless outputs must equal the apply's results bit for bit, and the stateless
 * call must leave everything as it was. */
static void matches_apply(const char *dev, const char *json) {
    clopt_context *ctx = tu_context(dev);
    model m;
    model_open(&m, ctx, json, "dense", 5);
    for (int k = 0; k < NSTEPS; k++) {
        char what[256];
        snprintf(what, sizeof what, "%s %s, step %d", dev, json, k);
        write_grads(&m, k, scale_for(m.o));
        clopt_variable *grads[2];
        grad_list(&m, k, grads);
        os_state in, out, now;
        os_read(&in, m.o);
        os_alloc(&out, m.o, NAN);
        clopt_variable *vin[2] = {copy_of(ctx, m.v[0], "in0"), copy_of(ctx, m.v[1], "in1")};
        clopt_variable *vout[2] = {copy_of(ctx, m.v[0], "out0"), copy_of(ctx, m.v[1], "out1")};
        poison(vout[0]);
        poison(vout[1]);
        tu_snapshot before;
        clopt_variable *all[6] = {m.v[0], m.v[1], m.g[0], m.g[1], vin[0], vin[1]};
        tu_snapshot_take(&before, NULL, all, 6);
        TU_OK(ctx, clopt_optimizer_stateless_apply(m.o, (const double *const *)in.vals, grads, vin,
                                                   2, out.vals, vout));
        /* Nothing changed. */
        tu_snapshot_assert_same(&before, NULL, what);
        os_read(&now, m.o);
        os_assert_same(&now, &in, m.o, what);
        os_free(&now);
        /* The normal step gives the stateless outputs. */
        TU_OK(ctx, clopt_optimizer_apply(m.o, grads, m.v, 2));
        os_read(&now, m.o);
        os_assert_same(&now, &out, m.o, what);
        for (int i = 0; i < 2; i++) os_assert_vars_same(vout[i], m.v[i], what);
        os_free(&now);
        os_free(&in);
        os_free(&out);
        tu_snapshot_free(&before);
        for (int i = 0; i < 2; i++) {
            clopt_variable_destroy(vin[i]);
            clopt_variable_destroy(vout[i]);
        }
    }
    clopt_context_destroy(ctx);
}
Test(stateless_host, sgd_nesterov_matches_apply) { matches_apply(TU_HOST, SGD_NESTEROV); }
Test(stateless_pocl, sgd_nesterov_matches_apply) { matches_apply(TU_POCL, SGD_NESTEROV); }
Test(stateless_host, adam_amsgrad_matches_apply) { matches_apply(TU_HOST, ADAM_AMSGRAD); }
Test(stateless_pocl, adam_amsgrad_matches_apply) { matches_apply(TU_POCL, ADAM_AMSGRAD); }
Test(stateless_host, nadam_matches_apply) { matches_apply(TU_HOST, NADAM); }
Test(stateless_pocl, nadam_matches_apply) { matches_apply(TU_POCL, NADAM); }
Test(stateless_host, accumulation_matches_apply) { matches_apply(TU_HOST, SGD_ACCUM); }
Test(stateless_pocl, accumulation_matches_apply) { matches_apply(TU_POCL, SGD_ACCUM); }
Test(stateless_host, ema_matches_apply) { matches_apply(TU_HOST, ADAM_EMA); }
Test(stateless_pocl, ema_matches_apply) { matches_apply(TU_POCL, ADAM_EMA); }
Test(stateless_host, loss_scale_matches_apply) { matches_apply(TU_HOST, LSO_ADAM); }
Test(stateless_pocl, loss_scale_matches_apply) { matches_apply(TU_POCL, LSO_ADAM); }

/* The state given is another optimizer's: a fresh optimizer A computes, from B's state after
 * three steps and B's variables, exactly B's fourth step; A stays fresh. */
static void foreign_state(const char *dev, const char *json) {
    clopt_context *ctx = tu_context(dev);
    model a, b;
    model_open(&a, ctx, json, "a", 5);
    model_open(&b, ctx, json, "b", 6);
    for (int k = 0; k < 3; k++) {
        write_grads(&b, k, scale_for(b.o));
        clopt_variable *grads[2];
        grad_list(&b, k, grads);
        TU_OK(ctx, clopt_optimizer_apply(b.o, grads, b.v, 2));
    }
    os_state fresh, in, out, now;
    os_read(&fresh, a.o);
    os_read(&in, b.o);
    os_alloc(&out, b.o, NAN);
    clopt_variable *vout[2] = {copy_of(ctx, a.v[0], "out0"), copy_of(ctx, a.v[1], "out1")};
    tu_snapshot abytes;
    tu_snapshot_take(&abytes, NULL, a.v, 2);
    write_grads(&a, 3, scale_for(b.o));
    write_grads(&b, 3, scale_for(b.o));
    clopt_variable *grads[2];
    grad_list(&a, 3, grads);
    TU_OK(ctx, clopt_optimizer_stateless_apply(a.o, (const double *const *)in.vals, grads, b.v, 2,
                                               out.vals, vout));
    char what[256];
    snprintf(what, sizeof what, "%s %s: A after a stateless step from B's state", dev, json);
    os_read(&now, a.o);
    os_assert_same(&now, &fresh, a.o, what);
    tu_snapshot_assert_same(&abytes, NULL, what);
    os_free(&now);
    grad_list(&b, 3, grads);
    TU_OK(ctx, clopt_optimizer_apply(b.o, grads, b.v, 2));
    snprintf(what, sizeof what, "%s %s: A's stateless outputs against B's step", dev, json);
    os_read(&now, b.o);
    os_assert_same(&now, &out, b.o, what);
    for (int i = 0; i < 2; i++) os_assert_vars_same(vout[i], b.v[i], what);
    os_free(&now);
    os_free(&fresh);
    os_free(&in);
    os_free(&out);
    tu_snapshot_free(&abytes);
    clopt_context_destroy(ctx);
}
Test(stateless_host, uses_the_given_state) {
    foreign_state(TU_HOST, ADAM_AMSGRAD);
    foreign_state(TU_HOST, NADAM);
    foreign_state(TU_HOST, SGD_ACCUM);
    foreign_state(TU_HOST, ADAM_EMA);
    foreign_state(TU_HOST, LSO_ADAM);
}
Test(stateless_pocl, uses_the_given_state) {
    foreign_state(TU_POCL, ADAM_AMSGRAD);
    foreign_state(TU_POCL, NADAM);
    foreign_state(TU_POCL, SGD_ACCUM);
    foreign_state(TU_POCL, ADAM_EMA);
    foreign_state(TU_POCL, LSO_ADAM);
}

/* A LossScaleOptimizer's stateless step with a non-finite gradient: the trainable values come
 * back as given, the optimizer values too except step_counter (0) and dynamic_scale (halved). */
static void lso_nonfinite(const char *dev) {
    clopt_context *ctx = tu_context(dev);
    model m;
    model_open(&m, ctx, LSO_ADAM, "dense", 5);
    write_grads(&m, 0, scale_for(m.o));
    TU_OK(ctx, clopt_optimizer_apply(m.o, m.g, m.v, 2));
    double g[5] = {1, 2, NAN, 4, 5};
    tu_write_f64(m.g[1], g);
    os_state in, out, now;
    os_read(&in, m.o);
    os_alloc(&out, m.o, 0);
    clopt_variable *vout[2] = {copy_of(ctx, m.v[0], "out0"), copy_of(ctx, m.v[1], "out1")};
    poison(vout[0]);
    poison(vout[1]);
    TU_OK(ctx, clopt_optimizer_stateless_apply(m.o, (const double *const *)in.vals, m.g, m.v, 2,
                                               out.vals, vout));
    cr_assert_eq(out.vals[2][0], 0.0, "step_counter");
    cr_assert_eq(out.vals[3][0], in.vals[3][0] / 2, "dynamic_scale");
    out.vals[2][0] = in.vals[2][0];
    out.vals[3][0] = in.vals[3][0];
    os_assert_same(&out, &in, m.o, "the other optimizer values");
    for (int i = 0; i < 2; i++) os_assert_vars_same(vout[i], m.v[i], "trainable values");
    os_read(&now, m.o);
    os_assert_same(&now, &in, m.o, "the optimizer itself");
    os_free(&in);
    os_free(&out);
    os_free(&now);
    clopt_context_destroy(ctx);
}
Test(stateless_host, loss_scale_nonfinite_step) { lso_nonfinite(TU_HOST); }
Test(stateless_pocl, loss_scale_nonfinite_step) { lso_nonfinite(TU_POCL); }

/* ---- refusals ---- */

typedef struct fixture {
    clopt_context *ctx, *other;
    model m;
    os_state in, out, state;   /* given values (not the optimizer's), outputs, the optimizer's */
    clopt_variable *vin[2], *vout[2];
    tu_snapshot bytes;         /* model variables, gradients, vin, vout */
    os_state out_copy;
} fixture;

static void fixture_init(fixture *f, const char *dev) {
    memset(f, 0, sizeof *f);
    f->ctx = tu_context(dev);
    f->other = tu_context(TU_HOST);
    model_open(&f->m, f->ctx, ADAM_AMSGRAD, "dense", 5);
    write_grads(&f->m, 0, 1.0);
    TU_OK(f->ctx, clopt_optimizer_apply(f->m.o, f->m.g, f->m.v, 2));
    TU_OK(f->ctx, clopt_optimizer_apply(f->m.o, f->m.g, f->m.v, 2));
    os_read(&f->state, f->m.o);
    /* Given values: another state (iteration 7, every other value 0.5). */
    os_alloc(&f->in, f->m.o, 0.5);
    f->in.vals[0][0] = 7;
    os_alloc(&f->out, f->m.o, -1.0);
    os_alloc(&f->out_copy, f->m.o, -1.0);
    for (int i = 0; i < 2; i++) {
        f->vin[i] = copy_of(f->ctx, f->m.v[i], i ? "in1" : "in0");
        f->vout[i] = copy_of(f->ctx, f->m.v[i], i ? "out1" : "out0");
        poison(f->vout[i]);
    }
    TU_OK(f->ctx, clopt_optimizer_assign_add(f->m.o, f->vin[0], f->vin[0])); /* differ from v */
    clopt_variable *all[8] = {f->m.v[0], f->m.v[1], f->m.g[0], f->m.g[1],
                              f->vin[0], f->vin[1], f->vout[0], f->vout[1]};
    tu_snapshot_take(&f->bytes, NULL, all, 8);
}

static clopt_status call(fixture *f, const double *const *in, clopt_variable *const *grads,
                         clopt_variable *const *vin, size_t n, double *const *out,
                         clopt_variable *const *vout) {
    return clopt_optimizer_stateless_apply(f->m.o, in, grads, vin, n, out, vout);
}

/* Everything as before: the optimizer, every variable, the output buffers. */
static void fixture_check(fixture *f, const char *what) {
    os_state now;
    os_read(&now, f->m.o);
    os_assert_same(&now, &f->state, f->m.o, what);
    os_free(&now);
    tu_snapshot_assert_same(&f->bytes, NULL, what);
    os_assert_same(&f->out, &f->out_copy, NULL, what);
}

static void fixture_free(fixture *f) {
    /* The optimizer still works. */
    TU_OK(f->ctx, clopt_optimizer_apply(f->m.o, f->m.g, f->m.v, 2));
    cr_assert_eq(clopt_optimizer_iterations(f->m.o), 3);
    os_free(&f->in);
    os_free(&f->out);
    os_free(&f->state);
    os_free(&f->out_copy);
    tu_snapshot_free(&f->bytes);
    clopt_context_destroy(f->other);
    clopt_context_destroy(f->ctx);
}

#define IN ((const double *const *)f.in.vals)
#define OUT (f.out.vals)

static void refusals(const char *dev) {
    fixture f;
    fixture_init(&f, dev);
    clopt_context *ctx = f.ctx;
    /* Lengths: n must be the built count (Keras: "must be a list of tensors corresponding 1:1"). */
    TU_ASSERT_STATUS(ctx, call(&f, IN, f.m.g, f.vin, 1, OUT, f.vout), CLOPT_ERR_LENGTH_MISMATCH);
    tu_assert_error_mentions(ctx, "built on 2");
    clopt_variable *g3[3] = {f.m.g[0], f.m.g[1], NULL}, *v3[3] = {f.vin[0], f.vin[1], f.vin[1]},
                   *o3[3] = {f.vout[0], f.vout[1], f.vout[1]};
    TU_ASSERT_STATUS(ctx, call(&f, IN, g3, v3, 3, OUT, o3), CLOPT_ERR_LENGTH_MISMATCH);
    fixture_check(&f, "wrong n");
    /* NULL lists and buffers. */
    TU_ASSERT_STATUS(ctx, call(&f, NULL, f.m.g, f.vin, 2, OUT, f.vout), CLOPT_ERR_INVALID_ARGUMENT);
    TU_ASSERT_STATUS(ctx, call(&f, IN, NULL, f.vin, 2, OUT, f.vout), CLOPT_ERR_INVALID_ARGUMENT);
    TU_ASSERT_STATUS(ctx, call(&f, IN, f.m.g, NULL, 2, OUT, f.vout), CLOPT_ERR_INVALID_ARGUMENT);
    TU_ASSERT_STATUS(ctx, call(&f, IN, f.m.g, f.vin, 2, NULL, f.vout), CLOPT_ERR_INVALID_ARGUMENT);
    TU_ASSERT_STATUS(ctx, call(&f, IN, f.m.g, f.vin, 2, OUT, NULL), CLOPT_ERR_INVALID_ARGUMENT);
    const size_t islot = 3;
    double *keep = f.in.vals[islot];
    f.in.vals[islot] = NULL;
    TU_ASSERT_STATUS(ctx, call(&f, IN, f.m.g, f.vin, 2, OUT, f.vout), CLOPT_ERR_INVALID_ARGUMENT);
    tu_assert_error_mentions(ctx, "input");
    f.in.vals[islot] = keep;
    keep = f.out.vals[islot];
    f.out.vals[islot] = NULL;
    TU_ASSERT_STATUS(ctx, call(&f, IN, f.m.g, f.vin, 2, OUT, f.vout), CLOPT_ERR_INVALID_ARGUMENT);
    tu_assert_error_mentions(ctx, "output");
    f.out.vals[islot] = keep;
    clopt_variable *vnull[2] = {f.vin[0], NULL};
    TU_ASSERT_STATUS(ctx, call(&f, IN, f.m.g, vnull, 2, OUT, f.vout), CLOPT_ERR_INVALID_ARGUMENT);
    TU_ASSERT_STATUS(ctx, call(&f, IN, f.m.g, f.vin, 2, OUT, vnull), CLOPT_ERR_INVALID_ARGUMENT);
    TU_ASSERT_STATUS(ctx, clopt_optimizer_stateless_apply(NULL, IN, f.m.g, f.vin, 2, OUT, f.vout),
                     CLOPT_ERR_INVALID_ARGUMENT);
    fixture_check(&f, "NULL arguments");
    /* Shapes, dtypes and contexts of vars_in and vars_out, naming the culprit. */
    const int64_t s43[2] = {4, 3}, five = 5;
    clopt_variable *transposed = tu_var(ctx, "transposed", CLOPT_FLOAT32, 2, s43, NULL);
    clopt_variable *b32 = tu_var(ctx, "bias_f32", CLOPT_FLOAT32, 1, &five, NULL);
    clopt_variable *foreign = tu_var(f.other, "foreign", CLOPT_FLOAT32, 2, KSHAPE, NULL);
    clopt_variable *bad_shape[2] = {transposed, f.vin[1]}, *bad_dtype[2] = {f.vin[0], b32},
                   *bad_ctx[2] = {foreign, f.vin[1]};
    TU_ASSERT_STATUS(ctx, call(&f, IN, f.m.g, bad_shape, 2, OUT, f.vout),
                     CLOPT_ERR_SHAPE_MISMATCH);
    tu_assert_error_mentions(ctx, "transposed");
    TU_ASSERT_STATUS(ctx, call(&f, IN, f.m.g, f.vin, 2, OUT, bad_shape), CLOPT_ERR_SHAPE_MISMATCH);
    tu_assert_error_mentions(ctx, "transposed");
    TU_ASSERT_STATUS(ctx, call(&f, IN, f.m.g, bad_dtype, 2, OUT, f.vout),
                     CLOPT_ERR_DTYPE_MISMATCH);
    tu_assert_error_mentions(ctx, "bias_f32");
    TU_ASSERT_STATUS(ctx, call(&f, IN, f.m.g, f.vin, 2, OUT, bad_dtype), CLOPT_ERR_DTYPE_MISMATCH);
    TU_ASSERT_STATUS(ctx, call(&f, IN, f.m.g, bad_ctx, 2, OUT, f.vout),
                     CLOPT_ERR_CONTEXT_MISMATCH);
    TU_ASSERT_STATUS(ctx, call(&f, IN, f.m.g, f.vin, 2, OUT, bad_ctx), CLOPT_ERR_CONTEXT_MISMATCH);
    fixture_check(&f, "wrong variables");
    /* Checked while stepping, after the given values were loaded: they must be undone. */
    f.in.vals[0][0] = 1.5; /* iteration */
    TU_ASSERT_STATUS(ctx, call(&f, IN, f.m.g, f.vin, 2, OUT, f.vout), CLOPT_ERR_BAD_VALUE);
    tu_assert_error_mentions(ctx, "iteration");
    f.in.vals[0][0] = 7;
    clopt_variable *gbad[2] = {transposed, f.m.g[1]}, *gnone[2] = {NULL, NULL};
    TU_ASSERT_STATUS(ctx, call(&f, IN, gbad, f.vin, 2, OUT, f.vout), CLOPT_ERR_SHAPE_MISMATCH);
    tu_assert_error_mentions(ctx, "transposed");
    TU_ASSERT_STATUS(ctx, call(&f, IN, gnone, f.vin, 2, OUT, f.vout), CLOPT_ERR_NO_GRADIENTS);
    fixture_check(&f, "refused while stepping");
    /* An unbuilt optimizer. */
    clopt_optimizer *u = tu_optimizer(ctx, ADAM_AMSGRAD);
    TU_ASSERT_STATUS(ctx, clopt_optimizer_stateless_apply(u, IN, f.m.g, f.vin, 2, OUT, f.vout),
                     CLOPT_ERR_NOT_BUILT);
    tu_assert_error_mentions(ctx, "built");
    fixture_check(&f, "unbuilt");
    /* And the given values work. */
    TU_OK(ctx, call(&f, IN, f.m.g, f.vin, 2, OUT, f.vout));
    cr_assert_eq(f.out.vals[0][0], 8.0, "the iteration given plus one");
    os_state now;
    os_read(&now, f.m.o);
    os_assert_same(&now, &f.state, f.m.o, "after the good call");
    os_free(&now);
    fixture_free(&f);
}
Test(stateless_host, refusals_change_nothing) { refusals(TU_HOST); }
Test(stateless_pocl, refusals_change_nothing) { refusals(TU_POCL); }
