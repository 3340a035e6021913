/* train_digits: softmax (multinomial logistic) regression on the UCI handwritten digits, 8x8
 * images -> 10 classes, trained with a clopt optimizer.
 *
 * The model is tiny (a 64x10 kernel and a bias of 10), so the forward pass and the gradients are
 * computed on the host in C; clopt owns the weights and runs the optimizer on the device: each
 * step writes the gradients into clopt gradient variables, calls clopt_optimizer_apply and reads
 * the updated weights back.
 *
 *   train_digits [--device SPEC] [--optimizer adam|sgd] [--epochs N] [--batch N] [--data FILE]
 *
 * --device takes what clopt_context_create takes ("host", "pocl:cpu:0", ...); without it the
 * default device is used (CLOPT_DEVICE, else the first GPU, else the first CPU). The program
 * prints the device, then per epoch the mean training loss and the accuracy on the training set
 * and on a held-out 20%. It exits 0 when training ran and the loss fell, 1 on any error (with
 * clopt's message) or when the final loss is not below the first epoch's, 2 on a usage error. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>
#include "clopt.h"

#ifndef TRAIN_DIGITS_DATA
#define TRAIN_DIGITS_DATA "examples/data/digits.csv.gz"
#endif

enum { NIN = 64, NOUT = 10, MAXROWS = 4096 };

typedef struct {
    float x[MAXROWS][NIN]; /* pixels scaled to [0, 1] */
    int y[MAXROWS];
    int n;
} dataset;

/* Reads "p0,...,p63,label" lines from a gzip (or plain) file. Returns 0 or -1 with a message. */
static int load_digits(const char *path, dataset *d) {
    gzFile f = gzopen(path, "rb");
    if (!f) {
        fprintf(stderr, "train_digits: cannot open %s\n", path);
        return -1;
    }
    char line[1024];
    int lineno = 0;
    d->n = 0;
    while (gzgets(f, line, sizeof line)) {
        lineno++;
        if (line[0] == '\n' || line[0] == '\0') continue;
        if (d->n == MAXROWS) {
            fprintf(stderr, "train_digits: %s: more than %d rows\n", path, MAXROWS);
            gzclose(f);
            return -1;
        }
        char *p = line;
        int v[NIN + 1];
        for (int i = 0; i <= NIN; i++) {
            char *end;
            long x = strtol(p, &end, 10);
            int last = i == NIN;
            if (end == p || x < 0 || x > (last ? NOUT - 1 : 16) ||
                (!last && *end != ',') || (last && *end != '\n' && *end != '\r' && *end)) {
                fprintf(stderr, "train_digits: %s:%d: field %d: expected %s\n", path, lineno,
                        i + 1, last ? "a label 0..9 ending the line" : "a pixel 0..16 and ','");
                gzclose(f);
                return -1;
            }
            v[i] = (int)x;
            p = end + 1;
        }
        for (int i = 0; i < NIN; i++) d->x[d->n][i] = (float)v[i] / 16.0f;
        d->y[d->n] = v[NIN];
        d->n++;
    }
    int err = 0;
    const char *msg = gzerror(f, &err);
    gzclose(f);
    if (err != Z_OK && err != Z_STREAM_END) {
        fprintf(stderr, "train_digits: %s: %s\n", path, msg);
        return -1;
    }
    if (d->n < 10) {
        fprintf(stderr, "train_digits: %s: only %d rows\n", path, d->n);
        return -1;
    }
    return 0;
}

/* A small deterministic generator (xorshift64*), so every run splits and shuffles alike. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rng_next(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}
static void shuffle(int *a, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rng_next() % (uint32_t)(i + 1));
        int t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* Softmax probabilities of one row; returns the predicted class. */
static int forward(const float *x, const float *w, const float *b, double *p) {
    int best = 0;
    for (int k = 0; k < NOUT; k++) {
        double z = b[k];
        for (int i = 0; i < NIN; i++) z += (double)x[i] * w[i * NOUT + k];
        p[k] = z;
        if (z > p[best]) best = k;
    }
    const double m = p[best];
    double s = 0;
    for (int k = 0; k < NOUT; k++) {
        p[k] = exp(p[k] - m);
        s += p[k];
    }
    for (int k = 0; k < NOUT; k++) p[k] /= s;
    return best;
}

/* Mean cross-entropy and accuracy over rows idx[0..n). */
static void evaluate(const dataset *d, const int *idx, int n, const float *w, const float *b,
                     double *loss, double *acc) {
    double l = 0, p[NOUT];
    int right = 0;
    for (int r = 0; r < n; r++) {
        int i = idx[r];
        right += forward(d->x[i], w, b, p) == d->y[i];
        l -= log(p[d->y[i]] > 1e-300 ? p[d->y[i]] : 1e-300);
    }
    *loss = l / n;
    *acc = (double)right / n;
}

/* Gradients of the batch's mean cross-entropy with respect to w and b. */
static void gradients(const dataset *d, const int *idx, int n, const float *w, const float *b,
                      float *gw, float *gb) {
    static double acc_w[NIN * NOUT];
    double acc_b[NOUT] = {0}, p[NOUT];
    memset(acc_w, 0, sizeof acc_w);
    for (int r = 0; r < n; r++) {
        const float *x = d->x[idx[r]];
        forward(x, w, b, p);
        p[d->y[idx[r]]] -= 1.0; /* dloss/dlogits = softmax - onehot */
        for (int k = 0; k < NOUT; k++) acc_b[k] += p[k];
        for (int i = 0; i < NIN; i++)
            if (x[i] != 0.0f)
                for (int k = 0; k < NOUT; k++) acc_w[i * NOUT + k] += x[i] * p[k];
    }
    for (int j = 0; j < NIN * NOUT; j++) gw[j] = (float)(acc_w[j] / n);
    for (int k = 0; k < NOUT; k++) gb[k] = (float)(acc_b[k] / n);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static void usage(FILE *f) {
    fprintf(f, "usage: train_digits [--device SPEC] [--optimizer adam|sgd] [--epochs N] "
               "[--batch N] [--data FILE]\n");
}

static int parse_int(const char *s, int lo, int hi, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv) {
    const char *device = NULL, *optimizer = "adam", *data = TRAIN_DIGITS_DATA;
    int epochs = 10, batch = 32;
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a], *val = a + 1 < argc ? argv[a + 1] : NULL;
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (!val) {
            usage(stderr);
            return 2;
        }
        if (strcmp(arg, "--device") == 0) {
            device = val;
        } else if (strcmp(arg, "--optimizer") == 0 &&
                   (strcmp(val, "adam") == 0 || strcmp(val, "sgd") == 0)) {
            optimizer = val;
        } else if (strcmp(arg, "--epochs") == 0 && parse_int(val, 1, 100000, &epochs) == 0) {
        } else if (strcmp(arg, "--batch") == 0 && parse_int(val, 1, MAXROWS, &batch) == 0) {
        } else if (strcmp(arg, "--data") == 0) {
            data = val;
        } else {
            fprintf(stderr, "train_digits: bad argument: %s %s\n", arg, val);
            usage(stderr);
            return 2;
        }
        a++;
    }

    static dataset d;
    if (load_digits(data, &d) != 0) return 1;
    static int order[MAXROWS];
    for (int i = 0; i < d.n; i++) order[i] = i;
    shuffle(order, d.n);
    const int ntest = d.n / 5, ntrain = d.n - ntest;
    int *train = order, *test = order + ntrain;

    /* Keras's serialized form; the bare {"class_name", "config"} works too. */
    const char *config =
        strcmp(optimizer, "sgd") == 0
            ? "{\"module\": \"keras.optimizers\", \"class_name\": \"SGD\", \"config\": "
              "{\"name\": \"SGD\", \"learning_rate\": 0.1, \"momentum\": 0.9, "
              "\"nesterov\": false}, \"registered_name\": null}"
            : "{\"module\": \"keras.optimizers\", \"class_name\": \"Adam\", \"config\": "
              "{\"name\": \"adam\", \"learning_rate\": 0.01, \"beta_1\": 0.9, "
              "\"beta_2\": 0.999, \"epsilon\": 1e-07, \"amsgrad\": false}, "
              "\"registered_name\": null}";

    clopt_context *ctx = NULL;
    clopt_status st = clopt_context_create(device, &ctx);
    if (st != CLOPT_OK) {
        fprintf(stderr, "train_digits: clopt_context_create(%s): %s: %s\n",
                device ? device : "default device", clopt_status_name(st),
                clopt_last_create_error());
        return 1;
    }
    printf("clopt %s, device: %s [%s backend]\n", clopt_version_string(),
           clopt_context_device_name(ctx), clopt_context_backend_name(ctx));
    printf("data: %d digits (%d for training, %d held out), %d inputs -> %d classes\n", d.n,
           ntrain, ntest, NIN, NOUT);

    static float w[NIN * NOUT], gw[NIN * NOUT];
    float b[NOUT] = {0}, gb[NOUT];
    const int64_t wshape[2] = {NIN, NOUT}, bshape[1] = {NOUT};
    clopt_variable *vars[2] = {NULL, NULL}, *grads[2] = {NULL, NULL};
    clopt_optimizer *opt = NULL;
    char *cfg = NULL;
    int rc = 1;
    double first_loss = 0, loss = 0, train_acc = 0, test_loss = 0, test_acc = 0;
    const char *what = "";

#define CHECK(call)              \
    do {                         \
        what = #call;            \
        st = (call);             \
        if (st != CLOPT_OK) goto fail; \
    } while (0)

    /* Weights start at zero (the problem is convex); gradients are written every step. */
    CHECK(clopt_variable_create(ctx, "dense/kernel", CLOPT_FLOAT32, 2, wshape, w, &vars[0]));
    CHECK(clopt_variable_create(ctx, "dense/bias", CLOPT_FLOAT32, 1, bshape, b, &vars[1]));
    CHECK(clopt_variable_create(ctx, "dense/kernel_grad", CLOPT_FLOAT32, 2, wshape, NULL,
                                &grads[0]));
    CHECK(clopt_variable_create(ctx, "dense/bias_grad", CLOPT_FLOAT32, 1, bshape, NULL,
                                &grads[1]));
    CHECK(clopt_optimizer_from_config(ctx, config, &opt));
    CHECK(clopt_optimizer_get_config(opt, &cfg));
    printf("optimizer: %s\n", cfg);
    CHECK(clopt_optimizer_build(opt, vars, 2));

    evaluate(&d, train, ntrain, w, b, &loss, &train_acc);
    evaluate(&d, test, ntest, w, b, &test_loss, &test_acc);
    printf("epoch %3d  loss %.4f  train acc %.3f  held-out loss %.4f  acc %.3f\n", 0, loss,
           train_acc, test_loss, test_acc);
    first_loss = loss;
    double t0 = now_s();
    for (int e = 1; e <= epochs; e++) {
        shuffle(train, ntrain);
        for (int s = 0; s < ntrain; s += batch) {
            int n = ntrain - s < batch ? ntrain - s : batch;
            gradients(&d, train + s, n, w, b, gw, gb);
            CHECK(clopt_variable_write(grads[0], gw, sizeof gw));
            CHECK(clopt_variable_write(grads[1], gb, sizeof gb));
            CHECK(clopt_optimizer_apply(opt, grads, NULL, 2));
            /* The next batch's forward pass needs the updated weights. */
            CHECK(clopt_variable_read(vars[0], w, sizeof w));
            CHECK(clopt_variable_read(vars[1], b, sizeof b));
        }
        evaluate(&d, train, ntrain, w, b, &loss, &train_acc);
        evaluate(&d, test, ntest, w, b, &test_loss, &test_acc);
        printf("epoch %3d  loss %.4f  train acc %.3f  held-out loss %.4f  acc %.3f\n", e, loss,
               train_acc, test_loss, test_acc);
        fflush(stdout);
        if (e == 1 && epochs > 1) first_loss = loss;
        if (!isfinite(loss)) break;
    }
    printf("%lld steps in %.2f s\n", (long long)clopt_optimizer_iterations(opt), now_s() - t0);
    if (isfinite(loss) && loss < first_loss) {
        printf("ok: the loss fell from %.4f to %.4f\n", first_loss, loss);
        rc = 0;
    } else {
        fprintf(stderr, "train_digits: the loss did not fall (first %.4f, last %.4f)\n",
                first_loss, loss);
    }
    goto done;

fail:
    fprintf(stderr, "train_digits: %s: %s: %s\n", what, clopt_status_name(st),
            clopt_context_last_error(ctx));
done:
    clopt_free(cfg);
    clopt_optimizer_destroy(opt);
    for (int i = 0; i < 2; i++) {
        clopt_variable_destroy(grads[i]);
        clopt_variable_destroy(vars[i]);
    }
    clopt_context_destroy(ctx);
    return rc;
}
