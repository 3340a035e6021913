/* train_digits: a multilayer perceptron (64 -> 256 -> 128 -> 10, ReLU, softmax cross-entropy)
 * trained on the UCI handwritten digits (8x8 images, 10 classes), everything on the device.
 *
 * The data set, the weights, the activations and the gradients live in device memory: weights,
 * biases and gradients as clopt variables, the rest as buffers of the clopt context
 * (clopt/clopt_cl.h). A step gathers its mini-batch, runs the forward and backward GEMMs as
 * CLBlast calls and the bias, ReLU and softmax-cross-entropy work as the example's own kernels
 * (mlp.c), all on the context's queue, then clopt_optimizer_apply updates the weights on the
 * device. Nothing comes back to the host per step: the device sums the loss and the correct
 * predictions, which are read once per epoch. "--device host" runs the same model with C loops
 * on clopt's host backend: the reference the OpenCL run agrees with to float32 round-off.
 * "--devices A,B" trains data-parallel through clopt's distribution strategy (clopt/distribute.h):
 * one replica of the model per device, each taking its share of every batch; the strategy sums
 * their gradients (through host memory: a read per replica and step) and steps every replica.
 *
 *   train_digits [--device SPEC | --devices SPEC,SPEC,...] [--hidden N,N,...] [--epochs N]
 *                [--batch N] [--config FILE] [--seed N] [--data FILE]
 *                [--checkpoint FILE [--resume]] [--steps N] [--plot FILE.svg] [--json FILE]
 *                [--target ACC] [--synthetic WIDTH]
 *
 * Exit status: 0 when training ran and reached the target held-out accuracy (default 0.97; 0
 * turns the check off); 1 on an error (clopt's, OpenCL's, CLBlast's, a bad file or config) or
 * when training failed (target missed, loss not finite); 2 on a usage error; 130 after Ctrl-C,
 * which stops after the current step and saves the checkpoint. See README.md, "The example". */
#define _XOPEN_SOURCE 700 /* clock_gettime, sigaction with SA_RESTART */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>
#include "clopt.h"
#include "clopt/experimental.h" /* clopt_context_memory_stats: the reads from the device */
#include "mlp.h"
#include "report.h"

#ifndef TRAIN_DIGITS_DATA
#define TRAIN_DIGITS_DATA "examples/data/digits.csv.gz"
#endif

enum {
    DIGITS_IN = 64,
    DIGITS_CLASSES = 10,
    MAX_EPOCHS = 1000,    /* the history saved in checkpoints has room for this many */
    MAX_WIDTH = 1 << 16,  /* the widest layer --hidden and --synthetic take */
    MAX_REPLICAS = 64,    /* clopt_strategy_create's limit */
    STATE_FIELDS = 4      /* train/state: seed, batch, training rows, steps done */
};

static const char DEFAULT_CONFIG[] =
    "{\"module\": \"keras.optimizers\", \"class_name\": \"Adam\", \"config\": {\"name\": "
    "\"adam\", \"learning_rate\": 0.001, \"beta_1\": 0.9, \"beta_2\": 0.999, \"epsilon\": "
    "1e-07, \"amsgrad\": false}, \"registered_name\": null}";

typedef struct options {
    const char *device, *devices, *config, *data, *checkpoint, *plot, *json;
    int hidden[MLP_MAX_LAYERS], nhidden;
    int epochs, batch, seed, resume, synthetic;
    long long steps; /* stop after this many optimizer steps in all (0: no limit) */
    double target;
} options;

typedef struct dataset {
    float *x;
    int *y;
    int n, ntrain, width, classes;
} dataset;

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

static double clock_s(clockid_t id) {
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}
static double now_s(void) { return clock_s(CLOCK_MONOTONIC); }

/* ---- arguments ---- */

static void usage(FILE *f) {
    fprintf(f,
            "usage: train_digits [--device SPEC | --devices SPEC,SPEC,...] [--hidden N,N,...]\n"
            "                    [--epochs N] [--batch N]\n"
            "                    [--config FILE] [--seed N] [--data FILE]\n"
            "                    [--checkpoint FILE [--resume]] [--steps N] [--plot FILE.svg]\n"
            "                    [--json FILE|-] [--target ACC] [--synthetic WIDTH]\n"
            "Trains a multilayer perceptron on the UCI digits on one device, or data-parallel\n"
            "with one replica per device of --devices (see README.md).\n");
}

static int parse_ll(const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int parse_int(const char *s, int lo, int hi, int *out) {
    long long v;
    if (parse_ll(s, lo, hi, &v)) return -1;
    *out = (int)v;
    return 0;
}

/* "256,128": 1 to MLP_MAX_LAYERS - 1 widths, each 1..MAX_WIDTH. */
static int parse_hidden(const char *s, options *o) {
    o->nhidden = 0;
    const char *p = s;
    for (;;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 1 || v > MAX_WIDTH || o->nhidden == MLP_MAX_LAYERS - 1 ||
            (*end != ',' && *end))
            return -1;
        o->hidden[o->nhidden++] = (int)v;
        if (!*end) return 0;
        p = end + 1;
    }
}

static int bad_arg(const char *arg, const char *val, const char *why) {
    fprintf(stderr, "train_digits: %s%s%s: %s\n", arg, val ? " " : "", val ? val : "", why);
    usage(stderr);
    return 2;
}

/* Returns -1 to go on, else the exit status (0 for --help). */
static int parse_args(int argc, char **argv, options *o) {
    *o = (options){.data = TRAIN_DIGITS_DATA, .hidden = {256, 128}, .nhidden = 2, .epochs = 20,
                   .batch = 0, .seed = 1, .target = -1};
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(arg, "--resume")) {
            o->resume = 1;
            continue;
        }
        static const char *const known[] = {"--device", "--hidden", "--epochs", "--batch",
                                            "--config", "--seed", "--data", "--checkpoint",
                                            "--steps", "--plot", "--json", "--target",
                                            "--synthetic", "--devices"};
        int k = 0;
        while (k < (int)(sizeof known / sizeof *known) && strcmp(arg, known[k])) k++;
        if (k == (int)(sizeof known / sizeof *known)) return bad_arg(arg, NULL, "unknown option");
        if (a + 1 == argc) return bad_arg(arg, NULL, "needs a value");
        const char *val = argv[++a];
        int bad = 0;
        switch (k) {
        case 0: o->device = val; break;
        case 1:
            if (parse_hidden(val, o))
                return bad_arg(arg, val, "expected 1 to 7 layer widths 1..65536, comma separated");
            break;
        case 2: bad = parse_int(val, 1, MAX_EPOCHS, &o->epochs); break;
        case 3: bad = parse_int(val, 1, 65536, &o->batch); break;
        case 4: o->config = val; break;
        case 5: bad = parse_int(val, 0, (1 << 24) - 1, &o->seed); break;
        case 6: o->data = val; break;
        case 7: o->checkpoint = val; break;
        case 8: bad = parse_ll(val, 1, 1 << 24, &o->steps); break;
        case 9: o->plot = val; break;
        case 10: o->json = val; break;
        case 11: {
            char *end;
            o->target = strtod(val, &end);
            bad = end == val || *end || !(o->target >= 0 && o->target <= 1);
            break;
        }
        case 12: bad = parse_int(val, 1, MAX_WIDTH, &o->synthetic); break;
        case 13: o->devices = val; break;
        }
        if (bad) return bad_arg(arg, val, "out of range or not a number");
    }
    if (o->resume && !o->checkpoint) return bad_arg("--resume", NULL, "needs --checkpoint FILE");
    if (o->devices && o->device)
        return bad_arg("--devices", o->devices, "cannot be combined with --device: give one "
                       "device, or one per replica");
    if (o->devices && o->synthetic)
        return bad_arg("--devices", o->devices, "--synthetic times one device: no --devices");
    if (o->synthetic && (o->checkpoint || o->plot))
        return bad_arg("--synthetic", NULL, "measures throughput: no --checkpoint or --plot");
    if (!o->batch) o->batch = o->synthetic ? 128 : 32;
    if (o->target < 0) o->target = o->synthetic ? 0 : 0.97;
    if (o->synthetic && !o->steps) o->steps = 10;
    return -1;
}

/* ---- data ---- */

/* Whether zlib failed on f (a corrupt or truncated gzip file); if so says why and closes f. */
static int gz_failed(gzFile f) {
    int err = 0;
    const char *msg = gzerror(f, &err);
    if (err == Z_OK || err == Z_STREAM_END) return 0;
    fprintf(stderr, "train_digits: not a readable gzip file: %s\n", msg); /* msg names it */
    gzclose(f);
    return 1;
}

/* Reads "p0,...,p63,label" lines (pixels 0..16, scaled to [0, 1]) from a gzip or plain file. */
static int load_digits(const char *path, dataset *d) {
    gzFile f = gzopen(path, "rb");
    if (!f) {
        fprintf(stderr, "train_digits: cannot open %s: %s\n", path,
                errno ? strerror(errno) : "out of memory");
        return -1;
    }
    char line[1024];
    int lineno = 0, cap = 0;
    d->width = DIGITS_IN;
    d->classes = DIGITS_CLASSES;
    while (gzgets(f, line, sizeof line)) {
        lineno++;
        if (line[0] == '\n' || line[0] == '\0') continue;
        if (d->n == cap) {
            cap = cap ? 2 * cap : 2048;
            float *x = realloc(d->x, (size_t)cap * DIGITS_IN * sizeof *x);
            int *y = x ? realloc(d->y, (size_t)cap * sizeof *y) : NULL;
            if (x) d->x = x;
            if (y) d->y = y;
            if (!x || !y || cap > (1 << 24)) {
                fprintf(stderr, "train_digits: %s: out of memory at row %d\n", path, d->n);
                gzclose(f);
                return -1;
            }
        }
        char *p = line;
        for (int i = 0; i <= DIGITS_IN; i++) {
            char *end;
            long v = strtol(p, &end, 10);
            const int last = i == DIGITS_IN;
            if (end == p || v < 0 || v > (last ? DIGITS_CLASSES - 1 : 16) ||
                (!last && *end != ',') || (last && *end != '\n' && *end != '\r' && *end)) {
                if (gz_failed(f)) return -1; /* a truncated file ends in half a line */
                fprintf(stderr, "train_digits: %s:%d: field %d: expected %s\n", path, lineno,
                        i + 1, last ? "a label 0..9 ending the line" : "a pixel 0..16 and ','");
                gzclose(f);
                return -1;
            }
            if (last)
                d->y[d->n] = (int)v;
            else
                d->x[(size_t)d->n * DIGITS_IN + i] = (float)v / 16.0f;
            p = end + 1;
        }
        d->n++;
    }
    if (gz_failed(f)) return -1;
    gzclose(f);
    if (d->n < 10) {
        fprintf(stderr, "train_digits: %s: only %d rows\n", path, d->n);
        return -1;
    }
    return 0;
}

/* Random inputs in [0, 1) of the given width; the label is the argmax of the first 10 inputs. */
static int make_synthetic(int width, int rows, uint64_t seed, dataset *d) {
    d->x = malloc((size_t)rows * (size_t)width * sizeof *d->x);
    d->y = malloc((size_t)rows * sizeof *d->y);
    if (!d->x || !d->y) {
        fprintf(stderr, "train_digits: out of host memory for %d x %d synthetic rows\n", rows,
                width);
        return -1;
    }
    d->n = d->ntrain = rows;
    d->width = width;
    d->classes = DIGITS_CLASSES;
    uint64_t rng = seed ^ 0x5717E71Cull;
    for (size_t i = 0; i < (size_t)rows * (size_t)width; i++) d->x[i] = mlp_rng_uniform(&rng, 0, 1);
    for (int r = 0; r < rows; r++) {
        const float *x = d->x + (size_t)r * width;
        int best = 0;
        for (int k = 1; k < DIGITS_CLASSES && k < width; k++)
            if (x[k] > x[best]) best = k;
        d->y[r] = best;
    }
    return 0;
}

static void shuffle(int *a, int n, uint64_t *rng) {
    for (int i = n - 1; i > 0; i--) {
        const int j = (int)(mlp_rng_next(rng) % (uint64_t)(i + 1));
        const int t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* Reorders the rows by a fixed shuffle (the same split for every seed): the first 80% train,
 * the last 20% are held out. */
static int split(dataset *d) {
    int *order = malloc((size_t)d->n * sizeof *order);
    float *x = malloc((size_t)d->n * d->width * sizeof *x);
    int *y = malloc((size_t)d->n * sizeof *y);
    if (!order || !x || !y) {
        free(order);
        free(x);
        free(y);
        fprintf(stderr, "train_digits: out of host memory\n");
        return -1;
    }
    uint64_t rng = 0x5D16175ull;
    for (int i = 0; i < d->n; i++) order[i] = i;
    shuffle(order, d->n, &rng);
    for (int i = 0; i < d->n; i++) {
        memcpy(x + (size_t)i * d->width, d->x + (size_t)order[i] * d->width,
               (size_t)d->width * sizeof *x);
        y[i] = d->y[order[i]];
    }
    free(order);
    free(d->x);
    free(d->y);
    d->x = x;
    d->y = y;
    d->ntrain = d->n - d->n / 5;
    return 0;
}

/* The training order of epoch `epoch` (from 0): a function of the seed and the epoch only, so a
 * resumed run shuffles as the uninterrupted one did. */
static void epoch_order(int *perm, int n, int seed, int epoch) {
    uint64_t rng = (uint64_t)seed * 0x9E3779B97F4A7C15ull + (uint64_t)epoch + 1;
    for (int i = 0; i < n; i++) perm[i] = i;
    shuffle(perm, n, &rng);
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "train_digits: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char *s = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 8192;
            char *t = cap > (1u << 24) ? NULL : realloc(s, cap);
            if (!t) {
                fprintf(stderr, "train_digits: %s: too large for a config\n", path);
                free(s);
                fclose(f);
                return NULL;
            }
            s = t;
        }
        size_t got = fread(s + n, 1, 4096, f);
        n += got;
        if (got < 4096) break;
    }
    const int bad = ferror(f);
    fclose(f);
    if (bad) {
        fprintf(stderr, "train_digits: reading %s failed\n", path);
        free(s);
        return NULL;
    }
    s[n] = '\0';
    return s;
}

/* ---- the training run ---- */

/* One device (--device), or one replica per device (--devices) through clopt's distribution
 * strategy. Every replica holds a whole copy of the model, the data set and the loop's
 * variables; the copies stay equal because every replica applies the same summed gradients. */
typedef struct trainer {
    options *o;
    dataset *d;
    clopt_strategy *strategy; /* --devices, else NULL */
    int nrep;                 /* replicas: 1 without --devices */
    int nmodels;              /* replicas whose mlp_create ran (to destroy) */
    clopt_context *ctx[MAX_REPLICAS]; /* replica r's; ctx[0] the one device's */
    mlp m[MAX_REPLICAS];
    clopt_optimizer *opt;               /* --device */
    clopt_mirrored_optimizer *mirrored; /* --devices */
    char *opt_json;
    /* train/state, train/history and (--devices) train/replica_metrics, per replica */
    clopt_variable *state_var[MAX_REPLICAS], *history_var[MAX_REPLICAS];
    clopt_variable *rmetrics_var[MAX_REPLICAS];
    clopt_variable *grads[MAX_REPLICAS * 2 * MLP_MAX_LAYERS]; /* replica-major, for apply */
    float rmetrics[MAX_REPLICAS * MLP_NMETRICS];
    epoch_stats history[MAX_EPOCHS];
    int epochs_done;
    long long steps;   /* optimizer steps done, resumed ones included */
    long long saved_steps; /* the steps the checkpoint file holds (-1: none saved yet) */
    int steps_per_epoch;
    int *perm;
    double setup_s;
} trainer;

/* Replica r's optimizer (the mirrored optimizer's copy, or the one device's). */
static clopt_optimizer *opt_of(const trainer *t, int r) {
    return t->mirrored ? clopt_mirrored_optimizer_replica(t->mirrored, (size_t)r) : t->opt;
}

/* A failed clopt call on replica r's context (or the strategy's, for r < 0). */
static int clopt_failed_on(trainer *t, int r, clopt_status st, const char *call) {
    if (st == CLOPT_OK) return 0;
    fprintf(stderr, "train_digits: %s: %s: %s\n", call, clopt_status_name(st),
            r < 0 ? clopt_strategy_last_error(t->strategy) : clopt_context_last_error(t->ctx[r]));
    return -1;
}

static int clopt_failed(trainer *t, clopt_status st, const char *call) {
    return clopt_failed_on(t, 0, st, call);
}

/* The variables saved with replica r's model: weights and biases, the metric sums, the loop
 * state, the history, and with --devices every replica's metric sums. */
static size_t saved_vars(trainer *t, int r, clopt_variable **vars) {
    size_t n = 0;
    for (int i = 0; i < 2 * t->m[r].nlayers; i++) vars[n++] = t->m[r].vars[i];
    vars[n++] = t->m[r].metrics_var;
    vars[n++] = t->state_var[r];
    vars[n++] = t->history_var[r];
    if (t->strategy) vars[n++] = t->rmetrics_var[r];
    return n;
}

/* Replica 0 saves: its model and optimizer (every replica's are equal), the loop's variables,
 * and the metric sums of every replica's share of the current epoch. */
static int save_checkpoint(trainer *t) {
    const float state[STATE_FIELDS] = {(float)t->o->seed, (float)t->o->batch,
                                       (float)t->d->ntrain, (float)t->steps};
    clopt_variable *vars[2 * MLP_MAX_LAYERS + 4];
    const size_t n = saved_vars(t, 0, vars);
    if (mlp_sync_to_vars(&t->m[0]) ||
        clopt_failed(t, clopt_variable_write(t->state_var[0], state, sizeof state),
                     "clopt_variable_write") ||
        clopt_failed(t, clopt_variable_write(t->history_var[0], t->history, sizeof t->history),
                     "clopt_variable_write"))
        return -1;
    if (t->strategy) {
        for (int r = 0; r < t->nrep; r++)
            if (mlp_read_metrics(&t->m[r], t->rmetrics + r * MLP_NMETRICS)) return -1;
        if (clopt_failed(t, clopt_variable_write(t->rmetrics_var[0], t->rmetrics,
                                                 (size_t)t->nrep * MLP_NMETRICS * sizeof(float)),
                         "clopt_variable_write"))
            return -1;
    }
    if (clopt_failed(t, clopt_checkpoint_save(opt_of(t, 0), vars, n, t->o->checkpoint),
                     "clopt_checkpoint_save"))
        return -1;
    t->saved_steps = t->steps;
    return 0;
}

/* Continues from the checkpoint: the model, the optimizer, the metric sums and the position,
 * loaded into every replica; each replica takes back its own metric sums. */
static int resume(trainer *t) {
    for (int r = 0; r < t->nrep; r++) {
        clopt_variable *vars[2 * MLP_MAX_LAYERS + 4];
        const size_t n = saved_vars(t, r, vars);
        if (clopt_failed_on(t, r, clopt_checkpoint_load(opt_of(t, r), vars, n, t->o->checkpoint),
                            "clopt_checkpoint_load"))
            return -1;
    }
    float state[STATE_FIELDS];
    if (clopt_failed(t, clopt_variable_read(t->state_var[0], state, sizeof state),
                     "clopt_variable_read") ||
        clopt_failed(t, clopt_variable_read(t->history_var[0], t->history, sizeof t->history),
                     "clopt_variable_read"))
        return -1;
    if (t->strategy) {
        if (clopt_failed(t, clopt_variable_read(t->rmetrics_var[0], t->rmetrics,
                                                (size_t)t->nrep * MLP_NMETRICS * sizeof(float)),
                         "clopt_variable_read"))
            return -1;
        for (int r = 0; r < t->nrep; r++)
            if (clopt_failed_on(t, r, clopt_variable_write(t->m[r].metrics_var,
                                                           t->rmetrics + r * MLP_NMETRICS,
                                                           MLP_NMETRICS * sizeof(float)),
                                "clopt_variable_write"))
                return -1;
    }
    for (int r = 0; r < t->nrep; r++)
        if (mlp_sync_from_vars(&t->m[r])) return -1;
    if (state[0] != (float)t->o->seed || state[1] != (float)t->o->batch ||
        state[2] != (float)t->d->ntrain) {
        fprintf(stderr, "train_digits: %s was made with --seed %.0f --batch %.0f on %.0f training "
                "rows; this run has --seed %d --batch %d and %d rows\n", t->o->checkpoint,
                state[0], state[1], state[2], t->o->seed, t->o->batch, t->d->ntrain);
        return -1;
    }
    t->saved_steps = t->steps = (long long)state[3];
    t->epochs_done = (int)(t->steps / t->steps_per_epoch);
    printf("resumed from %s: %lld steps done (epoch %d, step %lld of %d)\n", t->o->checkpoint,
           t->steps, t->epochs_done + 1, t->steps % t->steps_per_epoch, t->steps_per_epoch);
    return 0;
}

/* The one device's context, or the strategy's replicas. Returns 0, or the exit status: 2 when
 * clopt refuses the --devices list itself (an empty spec, a device named twice). */
static int open_devices(trainer *t) {
    const options *o = t->o;
    clopt_status st;
    if (o->devices) {
        st = clopt_strategy_create(o->devices, &t->strategy);
        if (st != CLOPT_OK) {
            fprintf(stderr, "train_digits: --devices %s: %s: %s\n", o->devices,
                    clopt_status_name(st), clopt_last_create_error());
            return st == CLOPT_ERR_INVALID_ARGUMENT ? 2 : 1;
        }
        t->nrep = (int)clopt_strategy_num_replicas(t->strategy);
        for (int r = 0; r < t->nrep; r++) t->ctx[r] = clopt_strategy_context(t->strategy, (size_t)r);
        return 0;
    }
    t->nrep = 1;
    st = clopt_context_create(o->device, &t->ctx[0]);
    if (st != CLOPT_OK) {
        fprintf(stderr, "train_digits: clopt_context_create(%s): %s: %s\n",
                o->device ? o->device : "default device", clopt_status_name(st),
                clopt_last_create_error());
        return 1;
    }
    return 0;
}

/* The optimizer from --config (or Adam): one, or a mirrored one over the replicas. */
static int make_optimizer(trainer *t) {
    const options *o = t->o;
    char *cfg_file = o->config ? read_file(o->config) : NULL;
    if (o->config && !cfg_file) return -1;
    const char *json = cfg_file ? cfg_file : DEFAULT_CONFIG;
    clopt_status st = t->strategy
                          ? clopt_strategy_optimizer_from_config(t->strategy, json, &t->mirrored)
                          : clopt_optimizer_from_config(t->ctx[0], json, &t->opt);
    free(cfg_file);
    if (st != CLOPT_OK) {
        fprintf(stderr, "train_digits: %s: %s: %s\n", o->config ? o->config : "default config",
                clopt_status_name(st),
                t->strategy ? clopt_strategy_last_error(t->strategy)
                            : clopt_context_last_error(t->ctx[0]));
        return -1;
    }
    if (!strcmp(clopt_optimizer_class_name(opt_of(t, 0)), "LossScaleOptimizer")) {
        fprintf(stderr, "train_digits: %s: a LossScaleOptimizer needs a scaled loss, which this "
                "example does not compute; use its inner optimizer\n", o->config);
        return -1;
    }
    return 0;
}

/* A variable of the loop on every replica (the same on each: mirrored). */
static int loop_var(trainer *t, const char *name, int ndim, const int64_t *shape,
                    clopt_variable **out) {
    if (t->strategy)
        return clopt_failed_on(t, -1, clopt_strategy_variable_create(t->strategy, name,
                                                                     CLOPT_FLOAT32, ndim, shape,
                                                                     NULL, out),
                               "clopt_strategy_variable_create");
    return clopt_failed(t, clopt_variable_create(t->ctx[0], name, CLOPT_FLOAT32, ndim, shape,
                                                 NULL, out), "clopt_variable_create");
}

/* Every replica's model, the loop's variables, and the optimizer built over the models. */
static int make_models(trainer *t, const int *dims) {
    const options *o = t->o;
    const int nheld = t->d->n - t->d->ntrain;
    const int rows_cap = o->batch > nheld ? o->batch : nheld;
    for (int r = 0; r < t->nrep; r++) {
        t->nmodels = r + 1;
        if (mlp_create(&t->m[r], t->ctx[r], o->nhidden + 1, dims, rows_cap, t->d->x, t->d->y,
                       t->d->n, t->d->ntrain, (uint64_t)o->seed, o->synthetic > 0))
            return -1;
    }
    const int64_t sshape[1] = {STATE_FIELDS}, hshape[2] = {MAX_EPOCHS, EPOCH_STATS_FIELDS};
    const int64_t rshape[2] = {t->nrep, MLP_NMETRICS};
    if (loop_var(t, "train/state", 1, sshape, t->state_var) ||
        loop_var(t, "train/history", 2, hshape, t->history_var) ||
        (t->strategy && loop_var(t, "train/replica_metrics", 2, rshape, t->rmetrics_var)))
        return -1;
    const size_t n = 2 * (size_t)t->m[0].nlayers;
    clopt_variable *vars[MAX_REPLICAS * 2 * MLP_MAX_LAYERS];
    for (int r = 0; r < t->nrep; r++)
        for (size_t i = 0; i < n; i++) {
            vars[(size_t)r * n + i] = t->m[r].vars[i];
            t->grads[(size_t)r * n + i] = t->m[r].grads[i];
        }
    if (t->strategy
            ? clopt_failed_on(t, -1, clopt_mirrored_optimizer_build(t->mirrored, vars, n),
                              "clopt_mirrored_optimizer_build")
            : clopt_failed(t, clopt_optimizer_build(t->opt, vars, n), "clopt_optimizer_build"))
        return -1;
    return clopt_failed(t, clopt_optimizer_get_config(opt_of(t, 0), &t->opt_json),
                        "clopt_optimizer_get_config");
}

/* Replica r's share of a batch of `rows` rows: the first rows % nrep replicas take one more. */
static int share_rows(const trainer *t, int rows, int r) {
    return rows / t->nrep + (r < rows % t->nrep);
}

static void print_setup(const trainer *t, const int *dims) {
    const options *o = t->o;
    if (!t->strategy)
        printf("clopt %s, device: %s [%s backend]\n", clopt_version_string(),
               clopt_context_device_name(t->ctx[0]), clopt_context_backend_name(t->ctx[0]));
    else
        printf("clopt %s, data-parallel over %d replicas (--devices %s):\n",
               clopt_version_string(), t->nrep, o->devices);
    for (int r = 0; t->strategy && r < t->nrep; r++)
        printf("  replica %d: %s [%s backend]\n", r, clopt_context_device_name(t->ctx[r]),
               clopt_context_backend_name(t->ctx[r]));
    printf("model: MLP ");
    for (int l = 0; l <= t->m[0].nlayers; l++) printf("%s%d", l ? " -> " : "", dims[l]);
    printf(" (ReLU, softmax cross-entropy), %lld parameters\n",
           (long long)mlp_param_count(&t->m[0]));
    printf("data: %d rows (%d for training, %d held out), batch %d", t->d->n, t->d->ntrain,
           t->d->n - t->d->ntrain, o->batch);
    if (t->strategy && o->batch % t->nrep)
        printf(" (%d or %d rows per replica)", share_rows(t, o->batch, 0),
               share_rows(t, o->batch, t->nrep - 1));
    else if (t->strategy)
        printf(" (%d rows per replica)", o->batch / t->nrep);
    printf(", %d steps per epoch\n", t->steps_per_epoch);
    printf("optimizer: %s\n", t->opt_json);
}

/* Returns 0, or the exit status. */
static int setup(trainer *t) {
    options *o = t->o;
    const double t0 = now_s();
    const int rc = open_devices(t);
    if (rc) return rc;
    if (o->synthetic && !strcmp(clopt_context_backend_name(t->ctx[0]), "host")) {
        fprintf(stderr, "train_digits: --synthetic times OpenCL work (profiling events): it needs "
                "an OpenCL device, not the host backend\n");
        return 1;
    }
    int dims[MLP_MAX_LAYERS + 1];
    dims[0] = t->d->width;
    for (int i = 0; i < o->nhidden; i++) dims[i + 1] = o->hidden[i];
    dims[o->nhidden + 1] = t->d->classes;
    if (make_optimizer(t) || make_models(t, dims)) return 1;
    t->steps_per_epoch = (t->d->ntrain + o->batch - 1) / o->batch;
    t->perm = malloc((size_t)t->d->ntrain * sizeof *t->perm);
    if (!t->perm) {
        fprintf(stderr, "train_digits: out of host memory\n");
        return 1;
    }
    /* A pass that changes no weight, so that CLBlast and the kernels compile now: setup time,
     * not the first epoch's. Before resume (below), which then restores the metric sums. */
    const int warm_rows = o->batch < t->d->ntrain ? o->batch : t->d->ntrain;
    epoch_order(t->perm, t->d->ntrain, o->seed, 0);
    for (int r = 0; r < t->nrep && !o->synthetic; r++)
        if (mlp_set_order(&t->m[r], t->perm) ||
            mlp_forward_backward(&t->m[r], 0, warm_rows, warm_rows) || mlp_evaluate(&t->m[r]) ||
            mlp_zero_metrics(&t->m[r]) || mlp_finish(&t->m[r]))
            return 1;
    print_setup(t, dims);
    if (o->resume && resume(t)) return 1;
    t->setup_s = now_s() - t0;
    return 0;
}

/* The rows of the batch at `first` of the epoch's order (the last one may be short). */
static int batch_rows(const trainer *t, int first) {
    return t->d->ntrain - first < t->o->batch ? t->d->ntrain - first : t->o->batch;
}

/* One optimizer step on the batch at `first` of the epoch's order. Each replica takes its share
 * of the batch, in replica order, and divides its loss by the whole batch's rows (Keras's
 * contract), so that the gradients the strategy sums are those of the batch's mean loss; all
 * replicas' passes are queued before the step waits on any. */
static int train_step(trainer *t, int first) {
    const int rows = batch_rows(t, first);
    const size_t n = 2 * (size_t)t->m[0].nlayers;
    for (int r = 0, at = first; r < t->nrep; at += share_rows(t, rows, r), r++)
        if (mlp_forward_backward(&t->m[r], at, share_rows(t, rows, r), rows)) return -1;
    if (t->strategy ? clopt_failed_on(t, -1,
                                      clopt_mirrored_optimizer_apply(t->mirrored, t->grads,
                                                                     (size_t)t->nrep, NULL, n),
                                      "clopt_mirrored_optimizer_apply")
                    : clopt_failed(t, clopt_optimizer_apply(t->opt, t->grads, NULL, n),
                                   "clopt_optimizer_apply"))
        return -1;
    for (int r = 0; r < t->nrep; r++)
        if (mlp_after_step(&t->m[r])) return -1;
    t->steps++;
    return 0;
}

/* The end of an epoch: held-out evaluation (replica 0: the replicas' weights are equal), the
 * one read of each replica's metric sums (the training sums added in replica order), the line. */
static int finish_epoch(trainer *t, double start, int rows_trained) {
    float met[MLP_NMETRICS], more[MLP_NMETRICS];
    if (mlp_evaluate(&t->m[0]) || mlp_read_metrics(&t->m[0], met)) return -1;
    for (int r = 1; r < t->nrep; r++) {
        if (mlp_read_metrics(&t->m[r], more)) return -1;
        for (int k = MLP_TRAIN; k < MLP_EVAL; k++) met[k] += more[k];
    }
    for (int r = 0; r < t->nrep; r++)
        if (mlp_zero_metrics(&t->m[r])) return -1;
    const double epoch_s = now_s() - start; /* the read waited for the epoch's work */
    epoch_stats *e = &t->history[t->epochs_done];
    const float prev = t->epochs_done ? t->history[t->epochs_done - 1].seconds : 0.0f;
    e->loss = met[MLP_TRAIN] / met[MLP_TRAIN + 2];
    e->acc = met[MLP_TRAIN + 1] / met[MLP_TRAIN + 2];
    e->val_loss = met[MLP_EVAL + 2] > 0 ? met[MLP_EVAL] / met[MLP_EVAL + 2] : NAN;
    e->val_acc = met[MLP_EVAL + 2] > 0 ? met[MLP_EVAL + 1] / met[MLP_EVAL + 2] : NAN;
    e->seconds = prev + (float)epoch_s;
    e->samples_per_s = (float)(rows_trained / epoch_s);
    t->epochs_done++;
    printf("epoch %3d/%d  loss %.4f  acc %.4f  held-out loss %.4f  acc %.4f  %7.0f samples/s"
           "  %6.2f s\n", t->epochs_done, t->o->epochs, e->loss, e->acc, e->val_loss, e->val_acc,
           e->samples_per_s, e->seconds);
    fflush(stdout);
    return 0;
}

/* Trains until the epochs are done, --steps is reached or Ctrl-C. Returns 0 or -1. */
static int train(trainer *t) {
    while (t->epochs_done < t->o->epochs && !interrupted) {
        const double e0 = now_s();
        epoch_order(t->perm, t->d->ntrain, t->o->seed, t->epochs_done);
        for (int r = 0; r < t->nrep; r++)
            if (mlp_set_order(&t->m[r], t->perm)) return -1;
        int rows = 0;
        for (int s = (int)(t->steps % t->steps_per_epoch); s < t->steps_per_epoch; s++) {
            if (interrupted || (t->o->steps && t->steps >= t->o->steps)) return 0;
            if (train_step(t, s * t->o->batch)) return -1;
            rows += batch_rows(t, s * t->o->batch);
        }
        if (finish_epoch(t, e0, rows)) return -1;
        if (!isfinite(t->history[t->epochs_done - 1].loss)) return 0;
        if (t->o->checkpoint && save_checkpoint(t)) return -1;
    }
    return 0;
}

/* --synthetic (one device): a warm-up step (CLBlast and the optimizer compile, the GEMMs are
 * recorded), then --steps profiled steps; prints where a step's time goes and the GEMMs'
 * rates. */
static int throughput(trainer *t) {
    mlp *m = &t->m[0];
    epoch_order(t->perm, t->d->ntrain, t->o->seed, 0);
    if (mlp_set_order(m, t->perm) || train_step(t, 0) ||
        clopt_failed(t, clopt_finish(t->ctx[0]), "clopt_finish") || mlp_profile_collect(m))
        return -1;
    mlp_profile_reset(m);
    int steps = 0;
    double opt_s = 0;
    const double t0 = now_s(), cpu0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    for (; steps < t->o->steps && !interrupted; steps++) {
        const int first = (steps % t->steps_per_epoch) * t->o->batch;
        const int rows = batch_rows(t, first);
        /* The example's queue and clopt's are ordered by waiting for each in turn. */
        if (mlp_forward_backward(m, first, rows, rows) || mlp_profile_collect(m)) return -1;
        const double o0 = now_s();
        if (clopt_failed(t, clopt_optimizer_apply(t->opt, m->grads, NULL, 2 * (size_t)m->nlayers),
                         "clopt_optimizer_apply") ||
            clopt_failed(t, clopt_finish(t->ctx[0]), "clopt_finish"))
            return -1;
        opt_s += now_s() - o0;
        t->steps++;
    }
    const double total = now_s() - t0, n = (double)steps;
    const double cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - cpu0; /* POCL's threads included */
    const double gemm = m->seconds[MLP_T_GEMM], other = m->seconds[MLP_T_KERNEL];
    const double rest = total - gemm - other - opt_s;
    printf("throughput: %d steps of batch %d in %.3f s: %.1f ms/step, %.0f samples/s\n", steps,
           t->o->batch, total, 1e3 * total / n, n * t->o->batch / total);
    printf("  CPU time of the process (all threads): %.3f s, %.2f cores on average\n", cpu,
           cpu / total);
    printf("  GEMMs (CLBlast)     %6.1f%%  %8.2f ms/step  %8.2f GFLOP/s\n", 100 * gemm / total,
           1e3 * gemm / n, gemm > 0 ? m->gemm_flops / gemm * 1e-9 : 0.0);
    printf("  optimizer (clopt)   %6.1f%%  %8.2f ms/step\n", 100 * opt_s / total, 1e3 * opt_s / n);
    printf("  other kernels       %6.1f%%  %8.2f ms/step\n", 100 * other / total, 1e3 * other / n);
    printf("  host and sync       %6.1f%%  %8.2f ms/step\n", 100 * rest / total, 1e3 * rest / n);
    const double in_steps = gemm > 0 ? m->gemm_flops / gemm : 0; /* FLOP/s */
    double aflops, asec;
    if (mlp_gemm_alone(m, steps, 3, &aflops, &asec)) return -1;
    const double alone = asec > 0 ? aflops / asec : 0;
    printf("  all GEMMs: %.2f GFLOP/s in the steps, %.2f GFLOP/s alone (%.0f%%)\n",
           in_steps * 1e-9, alone * 1e-9, alone > 0 ? 100 * in_steps / alone : 0.0);
    return 0;
}

/* The final weights' hash: replica 0's, after checking every replica holds the same. */
static int weights_hash(trainer *t, uint64_t *out) {
    if (mlp_weights_hash(&t->m[0], out)) return -1;
    for (int r = 1; r < t->nrep; r++) {
        uint64_t h;
        if (mlp_weights_hash(&t->m[r], &h)) return -1;
        if (h != *out) {
            fprintf(stderr, "train_digits: replica %d's weights (fnv1a %016llx) differ from "
                    "replica 0's (%016llx)\n", r, (unsigned long long)h,
                    (unsigned long long)*out);
            return -1;
        }
    }
    return 0;
}

/* The summary, --plot and --json; returns the exit status. */
static int finish(trainer *t, int failed) {
    const options *o = t->o;
    run_info run = {.device = clopt_context_device_name(t->ctx[0]),
                    .backend = clopt_context_backend_name(t->ctx[0]),
                    .devices = o->devices, .replicas = t->nrep,
                    .optimizer_json = t->opt_json,
                    .optimizer_class = clopt_optimizer_class_name(opt_of(t, 0)),
                    .dims = t->m[0].dims, .nlayers = t->m[0].nlayers, .batch = o->batch,
                    .ntrain = t->d->ntrain, .nheld = t->d->n - t->d->ntrain, .seed = o->seed,
                    .steps = t->steps, .target = o->target, .interrupted = interrupted != 0};
    for (int i = 0; i < t->epochs_done && !run.reached_epoch; i++)
        if (t->history[i].val_acc >= o->target) run.reached_epoch = i + 1;
    const epoch_stats *last = t->epochs_done ? &t->history[t->epochs_done - 1] : NULL;
    const int partial = interrupted || (o->steps && t->epochs_done < o->epochs);
    for (int r = 0; r < t->nrep; r++) { /* before the hash's own reads */
        clopt_memory_stats mem;
        if (clopt_context_memory_stats(t->ctx[r], &mem) == CLOPT_OK)
            run.host_reads += (long long)mem.host_reads;
    }
    if (!failed && weights_hash(t, &run.weights_hash)) failed = 1;
    if (!failed && o->synthetic == 0) {
        if (o->checkpoint && t->steps != t->saved_steps && save_checkpoint(t)) failed = 1;
        printf("%s after %lld steps (%d epochs)", interrupted ? "interrupted"
                                                  : partial ? "stopped (--steps)" : "trained",
               t->steps, t->epochs_done);
        if (t->strategy) printf(" on %d replica%s", t->nrep, t->nrep > 1 ? "s" : "");
        printf(" in %.2f s of training (setup %.2f s)\n", last ? last->seconds : 0.0f,
               t->setup_s);
        if (interrupted)
            printf("%s\n", o->checkpoint ? "checkpoint saved: continue with --resume"
                                         : "no --checkpoint: nothing saved");
        if (last && !isfinite(last->loss)) {
            fprintf(stderr, "train_digits: training failed: the loss is not finite\n");
            failed = 1;
        } else if (!partial && o->target > 0 && (!last || last->val_acc < o->target)) {
            fprintf(stderr, "train_digits: training failed: held-out accuracy %.4f is below the "
                    "target %.4f\n", last ? last->val_acc : 0.0f, o->target);
            failed = 1;
        } else if (last) {
            printf("held-out accuracy %.4f", last->val_acc);
            if (run.reached_epoch && o->target > 0)
                printf(" (target %.2f first reached at epoch %d, after %.2f s)", o->target,
                       run.reached_epoch, t->history[run.reached_epoch - 1].seconds);
            printf("\n");
        }
        printf("weights fnv1a %016llx%s\n", (unsigned long long)run.weights_hash,
               t->strategy ? " (equal on every replica)" : "");
    }
    run.ok = !failed;
    if (o->plot && report_svg(o->plot, &run, t->history, t->epochs_done)) failed = 1;
    if (o->json && report_json(o->json, &run, t->history, t->epochs_done)) failed = 1;
    if (failed) return 1;
    return interrupted ? 130 : 0;
}

int main(int argc, char **argv) {
    static options o;
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0) return rc;
    dataset d = {0};
    static trainer t;
    t.o = &o;
    t.d = &d;
    t.saved_steps = -1;
    if (o.synthetic ? make_synthetic(o.synthetic, 4 * o.batch, (uint64_t)o.seed, &d)
                    : load_digits(o.data, &d) || split(&d))
        rc = 1;
    if (rc < 0) {
        const int bad = setup(&t);
        if (bad) rc = bad;
    }
    if (rc < 0) {
        struct sigaction sa = {0};
        sa.sa_handler = on_sigint;
        sa.sa_flags = SA_RESTART; /* a second Ctrl-C must not fail the save's writes */
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        const int failed = o.synthetic ? throughput(&t) != 0 : train(&t) != 0;
        rc = finish(&t, failed);
    }
    for (int r = 0; r < t.nmodels; r++) mlp_destroy(&t.m[r]);
    free(t.perm);
    clopt_free(t.opt_json);
    clopt_optimizer_destroy(t.opt);
    clopt_mirrored_optimizer_destroy(t.mirrored);
    if (t.strategy)
        clopt_strategy_destroy(t.strategy); /* its contexts too */
    else
        clopt_context_destroy(t.ctx[0]);
    free(d.x);
    free(d.y);
    return rc;
}
