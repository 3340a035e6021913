/* Helpers of the checkpoint tests (test_io_*.c): temporary directories, whole files, a fixed
 * model of five variables of all four dtypes, deterministic gradients, and the optimizer variants
 * the resume tests run (every class of the registry, generated from its hyperparameter table, plus
 * hand-picked ones). Not a test source itself. */
#ifndef CLOPT_TEST_IO_UTIL_H
#define CLOPT_TEST_IO_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>
#include "optim/optim_internal.h"
#include "test_util.h"

/* ---- files ---- */

/* A fresh directory under $TMPDIR (or /tmp); caller frees the string (after io_rmdir). */
static inline char *io_tmpdir(void) {
    const char *base = getenv("TMPDIR");
    char *t = malloc(4096);
    cr_assert(t);
    snprintf(t, 4096, "%s/clopt-io-XXXXXX", base && *base ? base : "/tmp");
    cr_assert(mkdtemp(t), "mkdtemp(%s): %s", t, strerror(errno));
    return t;
}

/* Removes every file in dir, then dir. */
static inline void io_rmdir(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[4096];
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* Number of entries in dir (without . and ..). */
static inline int io_count_files(const char *dir) {
    DIR *d = opendir(dir);
    cr_assert(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static inline char *io_path(const char *dir, const char *name) {
    char *p = malloc(4096);
    cr_assert(p);
    snprintf(p, 4096, "%s/%s", dir, name);
    return p;
}

/* Reads a whole file (caller frees); *n gets its size. */
static inline unsigned char *io_read(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(sz > 0 ? (size_t)sz : 1);
    cr_assert(b);
    cr_assert_eq(fread(b, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return b;
}

static inline void io_write(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot create %s: %s", path, strerror(errno));
    cr_assert_eq(fwrite(data, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

/* Asserts two files have the same bytes. */
static inline void io_assert_same_file(const char *a, const char *b, const char *what) {
    size_t na, nb;
    unsigned char *x = io_read(a, &na), *y = io_read(b, &nb);
    cr_assert_eq(na, nb, "%s: %s is %zu bytes, %s is %zu", what, a, na, b, nb);
    tu_assert_same_bytes(x, y, na, what);
    free(x);
    free(y);
}

/* ---- the model: five variables, every dtype ---- */

#define IO_NVARS 5

typedef struct io_model {
    clopt_variable *vars[IO_NVARS];
    clopt_variable *grads[IO_NVARS];
} io_model;

static const struct {
    const char *name;
    clopt_dtype dtype;
    int ndim;
    int64_t shape[2];
} io_var_specs[IO_NVARS] = {
    {"dense/kernel", CLOPT_FLOAT32, 2, {3, 4}}, {"dense/bias", CLOPT_FLOAT32, 1, {4, 0}},
    {"head/w", CLOPT_FLOAT64, 1, {5, 0}},      {"half/w", CLOPT_FLOAT16, 1, {6, 0}},
    {"bf/w", CLOPT_BFLOAT16, 2, {2, 3}},
};

static inline size_t io_spec_size(int j) {
    size_t n = 1;
    for (int d = 0; d < io_var_specs[j].ndim; d++) n *= (size_t)io_var_specs[j].shape[d];
    return n;
}

/* Fills buf (of variable j's dtype) with deterministic values in [lo, hi) from seed. */
static inline void io_fill(void *buf, int j, uint64_t seed, double lo, double hi) {
    uint64_t s = seed;
    for (size_t i = 0; i < io_spec_size(j); i++)
        clopt__elem_store(buf, io_var_specs[j].dtype, i, tu_rand_uniform(&s, lo, hi));
}

/* The model's variables; `seed` 0 means zeros (a fresh process about to load them). */
static inline void io_model_make(io_model *m, clopt_context *ctx, uint64_t seed) {
    for (int j = 0; j < IO_NVARS; j++) {
        unsigned char buf[256] = {0};
        if (seed) io_fill(buf, j, seed * 1000 + (uint64_t)j, -1.0, 1.0);
        m->vars[j] = tu_var(ctx, io_var_specs[j].name, io_var_specs[j].dtype,
                            io_var_specs[j].ndim, io_var_specs[j].shape, buf);
        char gname[64];
        snprintf(gname, sizeof gname, "grad_%d", j);
        m->grads[j] = tu_var(ctx, gname, io_var_specs[j].dtype, io_var_specs[j].ndim,
                             io_var_specs[j].shape, NULL);
    }
}

/* Applies steps [from, to): gradients depend only on the step and the variable; some are
 * missing (NULL); with `nonfinite`, step 4 has an infinite gradient (a LossScaleOptimizer
 * skips it and halves its scale). */
static inline void io_train(clopt_optimizer *o, io_model *m, int from, int to, int nonfinite) {
    clopt_context *ctx = clopt_variable_context(m->vars[0]);
    for (int s = from; s < to; s++) {
        clopt_variable *g[IO_NVARS];
        for (int j = 0; j < IO_NVARS; j++) {
            unsigned char buf[256];
            io_fill(buf, j, 7919u * (uint64_t)(s + 1) + (uint64_t)j, -1.0, 1.0);
            if (nonfinite && s == 4 && j == 0) clopt__elem_store(buf, io_var_specs[j].dtype, 0, INFINITY);
            TU_OK(ctx, clopt_variable_write(m->grads[j], buf,
                                            io_spec_size(j) * clopt_dtype_size(io_var_specs[j].dtype)));
            g[j] = ((s * 7 + j) % 6 == 5) ? NULL : m->grads[j];
        }
        TU_OK(ctx, clopt_optimizer_apply(o, g, NULL, IO_NVARS));
    }
}

/* Asserts that two optimizers (any contexts) have bitwise-equal variable lists and that two
 * models have bitwise-equal variables. */
static inline void io_assert_same_state(const clopt_optimizer *a, const io_model *ma,
                                        const clopt_optimizer *b, const io_model *mb,
                                        const char *what) {
    char msg[512];
    for (int j = 0; j < IO_NVARS; j++) {
        size_t na, nb;
        unsigned char *x = tu_read_bytes(ma->vars[j], &na), *y = tu_read_bytes(mb->vars[j], &nb);
        cr_assert_eq(na, nb);
        snprintf(msg, sizeof msg, "%s: variable '%s'", what, io_var_specs[j].name);
        tu_assert_same_bytes(x, y, na, msg);
        free(x);
        free(y);
    }
    size_t n = clopt_optimizer_variable_count(a);
    cr_assert_eq(n, clopt_optimizer_variable_count(b), "%s: variable counts differ", what);
    for (size_t i = 0; i < n; i++) {
        const char *path;
        clopt_variable *va, *vb;
        cr_assert(clopt_optimizer_variable(a, i, NULL, &path, &va) == CLOPT_OK);
        cr_assert(clopt_optimizer_variable(b, i, NULL, NULL, &vb) == CLOPT_OK);
        snprintf(msg, sizeof msg, "%s: optimizer variable %zu (%s)", what, i, path);
        if (va) {
            size_t na, nb;
            unsigned char *x = tu_read_bytes(va, &na), *y = tu_read_bytes(vb, &nb);
            cr_assert_eq(na, nb, "%s", msg);
            tu_assert_same_bytes(x, y, na, msg);
            free(x);
            free(y);
        } else {
            double x, y;
            cr_assert(clopt_optimizer_variable_read(a, i, &x, 1) == CLOPT_OK);
            cr_assert(clopt_optimizer_variable_read(b, i, &y, 1) == CLOPT_OK);
            tu_assert_same_bytes(&x, &y, sizeof x, msg);
        }
    }
    cr_assert_eq(clopt_optimizer_iterations(a), clopt_optimizer_iterations(b), "%s: iterations",
                 what);
}

/* ---- optimizer variants ---- */

typedef struct io_variant {
    char label[96];
    char json[2048];
    int nonfinite;
} io_variant;

#define IO_MAX_VARIANTS 64

/* Every registered class with its defaults; every class again with every boolean hyperparameter
 * on, every float hyperparameter whose default is 0 (and whose range allows it) at 0.5, weight
 * decay, EMA with overwrites and gradient accumulation (so a save falls mid-accumulation); a
 * LossScaleOptimizer around Adam with a skipped step; and the hand-picked SGD (momentum,
 * Nesterov), Adam (amsgrad) and a learning-rate schedule (no learning_rate variable). */
static inline size_t io_variants(io_variant *v) {
    memset(v, 0, IO_MAX_VARIANTS * sizeof *v); /* nonfinite is set only where it is 1 */
    size_t n = 0;
    const clopt__optimizer_class *k;
    for (size_t ci = 0; (k = clopt__builtin_class_at(ci)) != NULL; ci++) {
        if (strcmp(k->class_name, "LossScaleOptimizer") == 0) {
            snprintf(v[n].label, sizeof v[n].label, "LossScaleOptimizer(Adam)");
            snprintf(v[n].json, sizeof v[n].json,
                     "{\"class_name\": \"LossScaleOptimizer\", \"config\": {\"inner_optimizer\": "
                     "{\"class_name\": \"Adam\", \"config\": {\"learning_rate\": 0.01}}, "
                     "\"initial_scale\": 8.0, \"dynamic_growth_steps\": 2}}");
            v[n++].nonfinite = 1;
            continue;
        }
        snprintf(v[n].label, sizeof v[n].label, "%s(defaults)", k->class_name);
        snprintf(v[n].json, sizeof v[n].json, "{\"class_name\": \"%s\", \"config\": {}}",
                 k->class_name);
        n++;
        char cfg[1536] = "";
        size_t used = 0;
        for (int p = 0; p < k->nparams; p++) {
            const clopt__param *q = &k->params[p];
            if (q->type == CLOPT__P_BOOL)
                used += (size_t)snprintf(cfg + used, sizeof cfg - used, "\"%s\": true, ", q->key);
            else if (q->type == CLOPT__P_FLOAT && q->def == 0.0 && q->lo <= 0.5 && q->hi >= 0.5)
                used += (size_t)snprintf(cfg + used, sizeof cfg - used, "\"%s\": 0.5, ", q->key);
        }
        snprintf(v[n].label, sizeof v[n].label, "%s(all options)", k->class_name);
        snprintf(v[n].json, sizeof v[n].json,
                 "{\"class_name\": \"%s\", \"config\": {%s\"weight_decay\": 0.01, \"use_ema\": "
                 "true, \"ema_overwrite_frequency\": 3, \"gradient_accumulation_steps\": 2}}",
                 k->class_name, cfg);
        n++;
        cr_assert(n + 4 < IO_MAX_VARIANTS);
    }
    snprintf(v[n].label, sizeof v[n].label, "SGD(momentum, nesterov)");
    snprintf(v[n].json, sizeof v[n].json,
             "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.05, \"momentum\": 0.9, "
             "\"nesterov\": true}}");
    n++;
    snprintf(v[n].label, sizeof v[n].label, "Adam(amsgrad)");
    snprintf(v[n].json, sizeof v[n].json,
             "{\"class_name\": \"Adam\", \"config\": {\"learning_rate\": 0.01, \"amsgrad\": true}}");
    n++;
    snprintf(v[n].label, sizeof v[n].label, "Adam(ExponentialDecay schedule)");
    snprintf(v[n].json, sizeof v[n].json,
             "{\"class_name\": \"Adam\", \"config\": {\"learning_rate\": {\"module\": "
             "\"keras.optimizers.schedules\", \"class_name\": \"ExponentialDecay\", \"config\": "
             "{\"initial_learning_rate\": 0.05, \"decay_steps\": 2, \"decay_rate\": 0.5, "
             "\"staircase\": false, \"name\": \"ExponentialDecay\"}, \"registered_name\": null}}}");
    n++;
    return n;
}

/* The resume scenario's steps: save after IO_STEP_K, compare after IO_STEP_N. K is odd so that
 * the save falls between the two halves of a gradient accumulation. */
#define IO_STEP_K 3
#define IO_STEP_N 8

#endif
