/* Writing your own optimizer: AdaBelief (Zhuang et al., 2020) as a program defines it, registered
 * with clopt, loaded from a Keras-style JSON config, run for a few steps on the host backend and
 * on a device, printing both. Exits 0 when they agree to float32 round-off.
 *
 *   custom_optimizer [--device SPEC]   (SPEC: the device to compare with the host; default: the
 *                                       default device, CLOPT_DEVICE or the first OpenCL one)
 *
 * The class itself is in adabelief.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <clopt.h>
#include "adabelief.h"

/* The class (adabelief.h: its hyperparameters, slots, scalars callback, and its update in
 * OpenCL C and in C), registered for every later from_config of the process. */
static int register_adabelief(void) {
    const clopt_optimizer_class_desc desc = adabelief_class();
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
