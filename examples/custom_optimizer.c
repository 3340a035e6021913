/* Writing your own optimizer: AdaBelief (Zhuang et al., 2020) as a program defines it, registered
 * with clopt, loaded from a Keras-style JSON config, run for a few steps on the host backend and
 * on a device, printing both. Exits 0 when they agree to float32 round-off.
 *
 *   custom_optimizer [--device SPEC]   (SPEC: the device to compare with the host; default: the
 *                                       default device, CLOPT_DEVICE or the first OpenCL one)
 *
 * AdaBelief: m = b1 m + (1 - b1) g;  s = b2 s + (1 - b2) (g - m)^2 + eps;
 *            w -= lr * (m / (1 - b1^t)) / (sqrt(s / (1 - b2^t)) + eps). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <clopt.h>

/* ---- the class ---- */

enum { BETA_1, BETA_2, EPSILON };                  /* hyperparameters, in config order */
enum { LR, B1, B2, EPS, M_CORR, S_CORR, NSCALARS }; /* per-step scalars */

static const clopt_hparam hparams[] = {
    [BETA_1] = {"beta_1", CLOPT_HPARAM_FLOAT, 0.9, 0, 0.0, 1.0, 0, 0},
    [BETA_2] = {"beta_2", CLOPT_HPARAM_FLOAT, 0.999, 0, 0.0, 1.0, 0, 0},
    [EPSILON] = {"epsilon", CLOPT_HPARAM_FLOAT, 1e-16, 0, 0.0, HUGE_VAL, 0, 0},
};
static const char *const slot_names[] = {"m", "s"}; /* Keras names them "<variable>_m", ... */
static const char *const scalar_names[] = {"lr", "beta_1", "beta_2", "epsilon", "m_corr",
                                           "s_corr"};

/* A float32 variable's scalars are computed in float32, as Keras computes them. */
static double in_dtype(double x, clopt_dtype d) { return d == CLOPT_FLOAT64 ? x : (float)x; }

static void step_scalars(const clopt_class_step *st, double *c, void *user_data) {
    (void)user_data;
    const double b1 = st->hparams[BETA_1], b2 = st->hparams[BETA_2], t = (double)st->t;
    c[LR] = in_dtype(st->learning_rate, st->dtype);
    c[B1] = b1;
    c[B2] = b2;
    c[EPS] = st->hparams[EPSILON];
    c[M_CORR] = in_dtype(1.0 / in_dtype(1.0 - pow(b1, t), st->dtype), st->dtype);
    c[S_CORR] = in_dtype(1.0 / in_dtype(1.0 - pow(b2, t), st->dtype), st->dtype);
}

/* The update of one element: OpenCL C for devices... */
static const char opencl_update[] =
    "m = beta_1 * m + (1 - beta_1) * g;\n"
    "const real d = g - m;\n"
    "s = beta_2 * s + (1 - beta_2) * d * d + epsilon;\n"
    "w -= lr * (m * m_corr) / (sqrt(s * s_corr) + epsilon);\n";

/* ... and C for the host backend. */
static void host_update(double *w, double g, double *slot, const double *c, void *user_data) {
    (void)user_data;
    double *m = &slot[0], *s = &slot[1];
    *m = c[B1] * *m + (1 - c[B1]) * g;
    const double d = g - *m;
    *s = c[B2] * *s + (1 - c[B2]) * d * d + c[EPS];
    *w -= c[LR] * (*m * c[M_CORR]) / (sqrt(*s * c[S_CORR]) + c[EPS]);
}

static int register_adabelief(void) {
    const clopt_optimizer_class_desc desc = {
        .class_name = "AdaBelief",
        .registered_name = "Custom>AdaBelief",
        .default_learning_rate = 0.001,
        .hparams = hparams,
        .nhparams = (int)(sizeof hparams / sizeof *hparams),
        .slot_names = slot_names,
        .nslots = 2,
        .scalar_names = scalar_names,
        .nscalars = NSCALARS,
        .scalars = step_scalars,
        .opencl_update = opencl_update,
        .host_update = host_update,
    };
    clopt_status st = clopt_optimizer_class_register(&desc);
    if (st != CLOPT_OK)
        fprintf(stderr, "register AdaBelief: %s: %s\n", clopt_status_name(st),
                clopt_class_last_error());
    return st == CLOPT_OK;
}

/* ---- a few steps on one device ---- */

/* What Keras's serialize(AdaBelief(learning_rate=0.01, clipnorm=1.0)) writes. */
static const char config[] =
    "{\"module\": \"__main__\", \"class_name\": \"AdaBelief\", \"config\": {\"name\": "
    "\"ada_belief\", \"learning_rate\": 0.01, \"clipnorm\": 1.0, \"beta_1\": 0.9, \"beta_2\": "
    "0.999, \"epsilon\": 1e-16}, \"registered_name\": \"Custom>AdaBelief\"}";

#define N 1000
#define STEPS 5

/* Runs STEPS steps of AdaBelief on the device `spec` over one variable of N elements (a fixed
 * start and fixed gradients), leaving the result in w. Returns 0 on success. */
static int run(const char *spec, float *w, char *device, size_t device_cap) {
    clopt_context *ctx = NULL;
    clopt_status st = clopt_context_create(spec, &ctx);
    if (st != CLOPT_OK) {
        fprintf(stderr, "clopt_context_create(%s): %s: %s\n", spec ? spec : "default",
                clopt_status_name(st), clopt_last_create_error());
        return 1;
    }
    snprintf(device, device_cap, "%s", clopt_context_device_name(ctx));
    const int64_t n = N;
    float g[N];
    for (int i = 0; i < N; i++) w[i] = (float)sin(0.01 * i);
    clopt_variable *var = NULL, *grad = NULL;
    clopt_optimizer *opt = NULL;
    if ((st = clopt_variable_create(ctx, "dense/kernel", CLOPT_FLOAT32, 1, &n, w, &var)) ||
        (st = clopt_variable_create(ctx, "grad", CLOPT_FLOAT32, 1, &n, NULL, &grad)) ||
        (st = clopt_optimizer_from_config(ctx, config, &opt)))
        goto done;
    for (int t = 0; t < STEPS && st == CLOPT_OK; t++) {
        for (int i = 0; i < N; i++) g[i] = (float)cos(0.37 * i + t) * 0.1f;
        if (!(st = clopt_variable_write(grad, g, sizeof g)))
            st = clopt_optimizer_apply(opt, &grad, &var, 1);
    }
    if (st == CLOPT_OK) st = clopt_variable_read(var, w, N * sizeof *w);
done:
    if (st != CLOPT_OK)
        fprintf(stderr, "%s: %s: %s\n", device, clopt_status_name(st),
                clopt_context_last_error(ctx));
    clopt_context_destroy(ctx);
    return st != CLOPT_OK;
}

int main(int argc, char **argv) {
    const char *spec = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) {
            spec = argv[++i];
        } else {
            fprintf(stderr, "usage: %s [--device SPEC]\n", argv[0]);
            return 2;
        }
    }
    if (!register_adabelief()) return 1;
    static float wh[N], wd[N];
    char host_name[128], dev_name[128];
    if (run("host", wh, host_name, sizeof host_name) || run(spec, wd, dev_name, sizeof dev_name))
        return 1;
    printf("AdaBelief, %d steps, dense/kernel[0..4]:\n", STEPS);
    printf("  %-40.40s", host_name);
    for (int i = 0; i < 5; i++) printf(" %+.7f", wh[i]);
    printf("\n  %-40.40s", dev_name);
    for (int i = 0; i < 5; i++) printf(" %+.7f", wd[i]);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        const double e = fabs((double)wd[i] - wh[i]) / (1e-6 + 1e-5 * fabs(wh[i]));
        if (!(e <= worst)) worst = e; /* NaN counts too */
    }
    printf("\nlargest difference: %.3g of the tolerance (1e-5 relative + 1e-6): %s\n", worst,
           worst <= 1 ? "agree" : "DISAGREE");
    return worst <= 1 ? 0 : 1;
}
