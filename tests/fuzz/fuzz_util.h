/* Shared by the fuzz harnesses: aborting checks (a failed check is a finding: libFuzzer and the
 * replay driver both stop on abort), the host context, the optimizer setups the checkpoint
 * harnesses load into (also used by fuzz_make_seeds.c to write the seed corpus), and the load
 * with its checks. */
#ifndef CLOPT_FUZZ_UTIL_H
#define CLOPT_FUZZ_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <clopt.h>
#include "io/io_internal.h"

#define FUZZ_CHECK(cond, ...)                                                                  \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);          \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fputc('\n', stderr);                                                               \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

/* A host-backend context with small arena blocks (every input makes a fresh one). */
static inline clopt_context *fuzz_context(void) {
    static int once;
    if (!once) {
        once = 1;
        setenv("CLOPT_ARENA_MB", "1", 1);
    }
    clopt_context *ctx = NULL;
    clopt_status st = clopt_context_create("host", &ctx);
    FUZZ_CHECK(st == CLOPT_OK, "clopt_context_create(host): %s", clopt_status_name(st));
    return ctx;
}

/* A status the API can return: CLOPT_OK or one of the named error codes. */
static inline int fuzz_known_status(clopt_status st) {
    return st == CLOPT_OK || strcmp(clopt_status_name(st), "CLOPT_ERR_UNKNOWN") != 0;
}

/* ---- optimizer setups for checkpoint loading ---- */

typedef struct fuzz_var_spec {
    const char *name;
    clopt_dtype dtype;
    int ndim;
    int64_t shape[2];
} fuzz_var_spec;

typedef struct fuzz_setup_spec {
    const char *label;
    const char *config;   /* NULL: model variables only (clopt_checkpoint_load(NULL, ...)) */
    int with_model;       /* load through clopt_checkpoint_load with the variables */
    int nvars;
    fuzz_var_spec vars[2];
} fuzz_setup_spec;

#define FUZZ_NSETUPS 6
static const fuzz_setup_spec fuzz_setups[FUZZ_NSETUPS] = {
    {"adam_model",
     "{\"class_name\": \"Adam\", \"config\": {\"learning_rate\": 0.01, \"amsgrad\": true}}", 1, 2,
     {{"dense/kernel", CLOPT_FLOAT32, 2, {2, 3}}, {"dense/bias", CLOPT_FLOAT32, 1, {3}}}},
    {"sgd_f64",
     "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.1, \"momentum\": 0.9, "
     "\"nesterov\": true}}",
     0, 1, {{"w64", CLOPT_FLOAT64, 1, {4}}}},
    {"nadam_f16", "{\"class_name\": \"Nadam\", \"config\": {\"learning_rate\": 0.002}}", 0, 1,
     {{"h", CLOPT_FLOAT16, 1, {3}}}},
    {"loss_scale_schedule",
     "{\"class_name\": \"LossScaleOptimizer\", \"config\": {\"inner_optimizer\": {\"class_name\": "
     "\"Adam\", \"config\": {\"learning_rate\": {\"class_name\": \"ExponentialDecay\", "
     "\"config\": {\"initial_learning_rate\": 0.1, \"decay_steps\": 10, \"decay_rate\": 0.5}}}}, "
     "\"initial_scale\": 1024.0}}",
     0, 1, {{"ls", CLOPT_BFLOAT16, 1, {2}}}},
    {"adafactor_2d", "{\"class_name\": \"Adafactor\", \"config\": {}}", 0, 1,
     {{"fac", CLOPT_FLOAT32, 2, {3, 4}}}},
    {"model_only", NULL, 1, 2,
     {{"dense/kernel", CLOPT_FLOAT32, 2, {2, 3}}, {"dense/bias", CLOPT_FLOAT32, 1, {3}}}},
};

typedef struct fuzz_setup {
    const fuzz_setup_spec *spec;
    clopt_optimizer *opt;
    clopt_variable *vars[2], *grads[2];
} fuzz_setup;

static inline int64_t fuzz_elements(const fuzz_var_spec *v) {
    int64_t n = 1;
    for (int d = 0; d < v->ndim; d++) n *= v->shape[d];
    return n;
}

/* Makes the variables (values j/8 - 0.3, gradients 0.05 - j/16, written in the variable's own
 * dtype) and the optimizer, and builds it. Then, so that the slots hold values other than their
 * initial ones: with `step`, applies one step; without (cheaper, for the fuzz loop), writes the
 * small integers i + j + 1 into element j of optimizer variable i. */
static inline void fuzz_setup_make(clopt_context *ctx, const fuzz_setup_spec *spec, int step,
                                   fuzz_setup *s) {
    memset(s, 0, sizeof *s);
    s->spec = spec;
    for (int i = 0; i < spec->nvars; i++) {
        const fuzz_var_spec *v = &spec->vars[i];
        int64_t n = fuzz_elements(v);
        double w[16], g[16];
        unsigned char wb[16 * 8], gb[16 * 8];
        for (int64_t j = 0; j < n; j++) {
            w[j] = (double)j / 8 - 0.3;
            g[j] = 0.05 - (double)j / 16;
        }
        size_t es = clopt_dtype_size(v->dtype);
        for (int64_t j = 0; j < n; j++) {
            float wf = (float)w[j], gf = (float)g[j];
            uint32_t wu, gu;
            memcpy(&wu, &wf, 4);
            memcpy(&gu, &gf, 4);
            switch (v->dtype) {
            case CLOPT_FLOAT32:
                memcpy(wb + 4 * j, &wf, 4);
                memcpy(gb + 4 * j, &gf, 4);
                break;
            case CLOPT_FLOAT64:
                memcpy(wb + 8 * j, &w[j], 8);
                memcpy(gb + 8 * j, &g[j], 8);
                break;
            case CLOPT_BFLOAT16: {
                uint16_t a = (uint16_t)(wu >> 16), b = (uint16_t)(gu >> 16);
                memcpy(wb + 2 * j, &a, 2);
                memcpy(gb + 2 * j, &b, 2);
                break;
            }
            case CLOPT_FLOAT16: {
                /* Values of a few bits: exact as float16 (sign, exponent, 10-bit mantissa). */
                uint16_t h[2];
                uint32_t u[2] = {wu, gu};
                for (int k = 0; k < 2; k++) {
                    uint32_t sign = (u[k] >> 16) & 0x8000u;
                    int e = (int)((u[k] >> 23) & 0xff) - 127 + 15;
                    uint32_t m = (u[k] >> 13) & 0x3ffu;
                    int zero = (u[k] & 0x7fffffffu) == 0 || e <= 0;
                    h[k] = (uint16_t)(zero ? sign : sign | (uint32_t)e << 10 | m);
                }
                memcpy(wb + 2 * j, &h[0], 2);
                memcpy(gb + 2 * j, &h[1], 2);
                break;
            }
            }
        }
        char gname[64];
        snprintf(gname, sizeof gname, "%s_grad", v->name);
        clopt_status st = clopt_variable_create(ctx, v->name, v->dtype, v->ndim, v->shape, NULL,
                                                &s->vars[i]);
        if (st == CLOPT_OK) st = clopt_variable_write(s->vars[i], wb, (size_t)n * es);
        if (st == CLOPT_OK)
            st = clopt_variable_create(ctx, gname, v->dtype, v->ndim, v->shape, NULL, &s->grads[i]);
        if (st == CLOPT_OK) st = clopt_variable_write(s->grads[i], gb, (size_t)n * es);
        FUZZ_CHECK(st == CLOPT_OK, "%s: variable '%s': %s: %s", spec->label, v->name,
                   clopt_status_name(st), clopt_context_last_error(ctx));
    }
    if (!spec->config) return;
    clopt_status st = clopt_optimizer_from_config(ctx, spec->config, &s->opt);
    if (st == CLOPT_OK) st = clopt_optimizer_build(s->opt, s->vars, (size_t)spec->nvars);
    if (st == CLOPT_OK && step)
        st = clopt_optimizer_apply(s->opt, s->grads, NULL, (size_t)spec->nvars);
    size_t nov = st == CLOPT_OK && !step ? clopt_optimizer_variable_count(s->opt) : 0;
    for (size_t i = 0; st == CLOPT_OK && i < nov; i++) {
        clopt_variable *v = NULL;
        double vals[16];
        st = clopt_optimizer_variable(s->opt, i, NULL, NULL, &v);
        size_t count = v ? (size_t)clopt_variable_size(v) : 1;
        FUZZ_CHECK(count <= 16, "%s: optimizer variable %zu too large", spec->label, i);
        for (size_t j = 0; j < count; j++) vals[j] = (double)(i + j + 1);
        if (st == CLOPT_OK) st = clopt_optimizer_variable_write(s->opt, i, vals, count);
    }
    FUZZ_CHECK(st == CLOPT_OK, "%s: optimizer: %s: %s", spec->label, clopt_status_name(st),
               clopt_context_last_error(ctx));
}

/* Everything a load may change, as bytes. */
typedef struct fuzz_snapshot {
    unsigned char *p;
    size_t n, cap;
} fuzz_snapshot;

static inline void fuzz_snap_put(fuzz_snapshot *s, const void *p, size_t n) {
    if (s->n + n > s->cap) {
        size_t cap = (s->n + n) * 2;
        unsigned char *q = realloc(s->p, cap);
        FUZZ_CHECK(q != NULL, "out of memory");
        s->p = q;
        s->cap = cap;
    }
    memcpy(s->p + s->n, p, n);
    s->n += n;
}

static inline void fuzz_snap_take(const fuzz_setup *su, fuzz_snapshot *s) {
    s->n = 0;
    unsigned char buf[16 * 8];
    for (int i = 0; i < su->spec->nvars; i++) {
        size_t nb = (size_t)clopt_variable_size(su->vars[i]) *
                    clopt_dtype_size(clopt_variable_dtype(su->vars[i]));
        FUZZ_CHECK(nb <= sizeof buf, "variable too large");
        FUZZ_CHECK(clopt_variable_read(su->vars[i], buf, nb) == CLOPT_OK, "read");
        fuzz_snap_put(s, buf, nb);
    }
    if (!su->opt) return;
    int64_t it = clopt_optimizer_iterations(su->opt);
    double lr = 0;
    fuzz_snap_put(s, &it, sizeof it);
    FUZZ_CHECK(clopt_optimizer_get_learning_rate(su->opt, &lr) == CLOPT_OK, "lr");
    fuzz_snap_put(s, &lr, sizeof lr);
    size_t nv = clopt_optimizer_variable_count(su->opt);
    for (size_t i = 0; i < nv; i++) {
        clopt_variable *v = NULL;
        FUZZ_CHECK(clopt_optimizer_variable(su->opt, i, NULL, NULL, &v) == CLOPT_OK, "var %zu", i);
        size_t count = v ? (size_t)clopt_variable_size(v) : 1;
        double vals[16];
        FUZZ_CHECK(count <= 16, "slot too large");
        clopt_status st = clopt_optimizer_variable_read(su->opt, i, vals, count);
        FUZZ_CHECK(st == CLOPT_OK, "variable_read %zu: %s", i, clopt_status_name(st));
        fuzz_snap_put(s, vals, count * sizeof *vals);
    }
}

/* Loads the file at `path` through `reader` (checkpoint.c's load path) into each setup, and
 * checks: success, or CLOPT_ERR_CORRUPT_FILE / CLOPT_ERR_FILE_MISMATCH (also CLOPT_ERR_IO for
 * .weights.h5, which libhdf5 reads itself) with a message and the state unchanged bit for bit;
 * after a success the optimizer still applies a step. With `h5`, the setups with an optimizer,
 * loaded without model variables as clopt_optimizer_load_h5 does. */
static inline void fuzz_load_everywhere(clopt__st_reader_fn reader, const char *path, int h5) {
    clopt_context *ctx = fuzz_context();
    fuzz_snapshot before = {0}, after = {0};
    for (int k = 0; k < FUZZ_NSETUPS; k++) {
        if (h5 && !fuzz_setups[k].config) continue;
        fuzz_setup su;
        fuzz_setup_make(ctx, &fuzz_setups[k], 0, &su);
        fuzz_snap_take(&su, &before);
        const char *fn = h5                   ? "clopt_optimizer_load_h5"
                         : su.spec->with_model ? "clopt_checkpoint_load"
                                               : "clopt_optimizer_load";
        size_t nmodel = su.spec->with_model && !h5 ? (size_t)su.spec->nvars : 0;
        clopt_status st = clopt__checkpoint_load(su.opt, su.vars, nmodel, path, fn, reader);
        if (st != CLOPT_OK) {
            const char *msg = clopt_context_last_error(ctx);
            FUZZ_CHECK(st == CLOPT_ERR_CORRUPT_FILE || st == CLOPT_ERR_FILE_MISMATCH ||
                           (h5 && st == CLOPT_ERR_IO),
                       "%s: load failed with %s: %s", su.spec->label, clopt_status_name(st), msg);
            FUZZ_CHECK(msg && *msg, "%s: load failed with no message", su.spec->label);
            fuzz_snap_take(&su, &after);
            FUZZ_CHECK(after.n == before.n && memcmp(after.p, before.p, before.n) == 0,
                       "%s: the failed load (%s: %s) changed the state", su.spec->label,
                       clopt_status_name(st), msg);
        } else if (su.opt) {
            st = clopt_optimizer_apply(su.opt, su.grads, NULL, (size_t)su.spec->nvars);
            FUZZ_CHECK(st == CLOPT_OK, "%s: apply after a load: %s: %s", su.spec->label,
                       clopt_status_name(st), clopt_context_last_error(ctx));
            fuzz_snap_take(&su, &after);
        }
        clopt_optimizer_destroy(su.opt);
        for (int i = 0; i < su.spec->nvars; i++) {
            clopt_variable_destroy(su.vars[i]);
            clopt_variable_destroy(su.grads[i]);
        }
    }
    free(before.p);
    free(after.p);
    clopt_context_destroy(ctx);
}

#endif
