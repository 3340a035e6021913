/* `clopt bench --optimizer Muon --gemm-pair`: Muon's step with the tuning database's CLBlast
 * GEMM parameters against the same step with CLBlast's own, as a paired ratio in one process.
 * CLBlast keeps a parameter override per cl_device_id for the whole process (its DatabaseCache
 * key: platform, device id, precision, kernel; src/api_common.cpp OverrideParameters) and cannot
 * take one back, so the two sides run on two OpenCL devices (two POCL pthread devices,
 * POCL_DEVICES="pthread pthread"): the tuned side's context looks the entry up and hands it to
 * CLBlast, the default side's skips it (clopt_context_gemm_keep_defaults). Both sides build Muon
 * on the same values, their results are checked to agree, and their steps alternate round by
 * round (the order swapped every round); the paired ratio is the median of the rounds'
 * tuned/default ratios. */
#define _XOPEN_SOURCE 700
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "bench_internal.h"
#include "clopt/experimental.h"

typedef struct gp_side {
    clopt_context *ctx;
    clopt_variable **v, **g;
    clopt_optimizer *o;
    double *t;
} gp_side;

static int gp_fail(gp_side *s, const char *what, clopt_status st) {
    fprintf(stderr, "clopt bench: %s on %s: %s: %s\n", what, clopt_context_device_name(s->ctx),
            clopt_status_name(st), clopt_context_last_error(s->ctx));
    return CLI_EXIT_FAIL;
}

/* Variables, gradients (the same values) and the built Muon of one side. */
static int gp_build(gp_side *s, size_t k, size_t rows, size_t cols, clopt_dtype dtype,
                    const void *init, int rounds) {
    const int64_t shape[2] = {(int64_t)rows, (int64_t)cols};
    const size_t bytes = rows * cols * clopt_dtype_size(dtype);
    s->v = calloc(k, sizeof *s->v);
    s->g = calloc(k, sizeof *s->g);
    s->t = calloc((size_t)rounds, sizeof *s->t);
    if (!s->v || !s->g || !s->t) {
        fprintf(stderr, "clopt bench: out of memory\n");
        return CLI_EXIT_FAIL;
    }
    clopt_status st;
    for (size_t i = 0; i < k; i++) {
        const char *x = (const char *)init + i * bytes;
        char name[48];
        snprintf(name, sizeof name, "layer%zu/kernel", i);
        if ((st = clopt_variable_create(s->ctx, name, dtype, 2, shape, x, &s->v[i])) ||
            (st = clopt_variable_create(s->ctx, "grad", dtype, 2, shape, x, &s->g[i])))
            return gp_fail(s, "clopt_variable_create", st);
    }
    const char *json = "{\"class_name\": \"Muon\", \"config\": {\"learning_rate\": 0.001}}";
    if ((st = clopt_optimizer_from_config(s->ctx, json, &s->o)) ||
        (st = clopt_optimizer_build(s->o, s->v, k)))
        return gp_fail(s, "Muon build", st);
    return CLI_EXIT_OK;
}

static int gp_step(gp_side *s, size_t k) {
    clopt_status st;
    if ((st = clopt_optimizer_apply(s->o, s->g, s->v, k)) || (st = clopt_finish(s->ctx)))
        return gp_fail(s, "Muon step", st);
    return CLI_EXIT_OK;
}

/* The two sides' variables must have moved alike from `init`: the largest difference of their
 * movements within `tol` of the largest movement (the GEMMs' summation orders differ). */
static int gp_agree(gp_side s[2], size_t k, size_t per, clopt_dtype dtype, const void *init,
                    double tol, double *rel) {
    const size_t bytes = per * clopt_dtype_size(dtype);
    void *a = malloc(bytes), *b = malloc(bytes);
    int rc = CLI_EXIT_OK;
    double dmax = 0, mmax = 0;
    for (size_t i = 0; rc == CLI_EXIT_OK && i < k; i++) {
        clopt_status st;
        if (!a || !b) {
            fprintf(stderr, "clopt bench: out of memory\n");
            rc = CLI_EXIT_FAIL;
        } else if ((st = clopt_variable_read(s[0].v[i], a, bytes))) {
            rc = gp_fail(&s[0], "clopt_variable_read", st);
        } else if ((st = clopt_variable_read(s[1].v[i], b, bytes))) {
            rc = gp_fail(&s[1], "clopt_variable_read", st);
        }
        for (size_t e = 0; rc == CLI_EXIT_OK && e < per; e++) {
            const size_t j = i * per + e;
            const double x0 = dtype == CLOPT_FLOAT64 ? ((const double *)init)[j]
                                                     : ((const float *)init)[j];
            const double y0 = dtype == CLOPT_FLOAT64 ? ((double *)a)[e] : ((float *)a)[e];
            const double y1 = dtype == CLOPT_FLOAT64 ? ((double *)b)[e] : ((float *)b)[e];
            const double d = fabs(y0 - y1), m = fabs(y0 - x0);
            if (!(d <= dmax)) dmax = d; /* NaN sticks */
            if (m > mmax) mmax = m;
        }
    }
    free(a);
    free(b);
    *rel = mmax > 0 ? dmax / mmax : INFINITY;
    if (rc == CLI_EXIT_OK && !(*rel <= tol)) {
        fprintf(stderr, "clopt bench: the tuned and default Muon steps disagree: largest "
                        "difference %.3g of the largest movement %.3g (relative %.3g > %.3g)\n",
                dmax, mmax, *rel, tol);
        rc = CLI_EXIT_FAIL;
    }
    return rc;
}

/* "TUNED,DEFAULT" into two specs (NULL: the two POCL pthread devices). */
static int gp_devices(const char *list, char spec[2][128]) {
    if (!list) list = "pocl:cpu:0,pocl:cpu:1";
    const char *comma = strchr(list, ',');
    if (!comma || comma == list || !comma[1] || strchr(comma + 1, ',') ||
        (size_t)(comma - list) >= 128 || strlen(comma + 1) >= 128) {
        fprintf(stderr, "clopt bench: --gemm-pair wants --devices TUNED,DEFAULT (two device "
                        "specs), not '%s'\n", list);
        return -1;
    }
    snprintf(spec[0], 128, "%.*s", (int)(comma - list), list);
    snprintf(spec[1], 128, "%s", comma + 1);
    if (!strcmp(spec[0], spec[1])) {
        fprintf(stderr, "clopt bench: --gemm-pair needs two different devices (CLBlast keeps "
                        "GEMM parameters per device), got '%s' twice\n", spec[0]);
        return -1;
    }
    return 0;
}

static void gp_init(void *init, size_t n, clopt_dtype dtype) {
    uint64_t z = 12345;
    for (size_t e = 0; e < n; e++) {
        z = z * 6364136223846793005ULL + 1442695040888963407ULL;
        const double r = (double)(z >> 11) * (2.0 / 9007199254740992.0) - 1.0;
        if (dtype == CLOPT_FLOAT64) ((double *)init)[e] = r;
        else ((float *)init)[e] = (float)r;
    }
}

/* Opens both contexts; the tuned one must have an entry in force. */
static int gp_open(gp_side s[2], char spec[2][128], const char **params, const char **origin) {
    for (int i = 0; i < 2; i++)
        if (clopt_context_create(spec[i], &s[i].ctx) != CLOPT_OK) {
            fprintf(stderr, "clopt bench: device '%s': %s%s\n", spec[i], clopt_last_create_error(),
                    " (two POCL CPU devices: POCL_DEVICES=\"pthread pthread\")");
            return CLI_EXIT_FAIL;
        }
    clopt_status st;
    if ((st = clopt_context_gemm_keep_defaults(s[1].ctx)))
        return gp_fail(&s[1], "clopt_context_gemm_keep_defaults", st);
    if ((st = clopt_context_gemm_params(s[0].ctx, params, origin)))
        return gp_fail(&s[0], "clopt_context_gemm_params", st);
    if (!**params || strstr(*origin, "; not applied: ")) {
        fprintf(stderr, "clopt bench: --gemm-pair: no tuned GEMM parameters in force on '%s': "
                        "%s (run clopt tune --gemm first; --db or CLOPT_TUNING_DB)\n",
                spec[0], *origin);
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

int cli_bench_gemm_pair(const char *devices, size_t size, size_t tensors, int rounds,
                        clopt_dtype dtype, int quiet) {
    const size_t k = tensors ? tensors : 16;
    const size_t per = size ? size / k : 256 * 256;
    char spec[2][128];
    if (gp_devices(devices, spec)) return CLI_EXIT_USAGE;
    if (!per) {
        fprintf(stderr, "clopt bench: --size must be at least --tensors\n");
        return CLI_EXIT_USAGE;
    }
    size_t rows = (size_t)sqrt((double)per);
    while (rows > 1 && per % rows) rows--;
    const size_t cols = per / rows;
    gp_side s[2] = {{0}, {0}};
    double *ratio = calloc((size_t)rounds, sizeof *ratio);
    void *init = malloc(k * per * clopt_dtype_size(dtype));
    const char *params = "", *origin = "";
    const double tol = dtype == CLOPT_FLOAT64 ? 1e-9 : 1e-3;
    double rel_first = 0, rel_last = 0;
    int rc = CLI_EXIT_FAIL;
    if (!ratio || !init) {
        fprintf(stderr, "clopt bench: out of memory\n");
        goto out;
    }
    gp_init(init, k * per, dtype);
    if ((rc = gp_open(s, spec, &params, &origin)) ||
        (rc = gp_build(&s[0], k, rows, cols, dtype, init, rounds)) ||
        (rc = gp_build(&s[1], k, rows, cols, dtype, init, rounds)) ||
        (rc = gp_step(&s[0], k)) || (rc = gp_step(&s[1], k)) || /* warm: compile, first step */
        (rc = gp_agree(s, k, per, dtype, init, tol, &rel_first)))
        goto out;
    for (int r = 0; r < rounds; r++) {
        if (!quiet)
            fprintf(stderr, "\rclopt bench: Muon GEMM pair, %zu x %zux%zu, round %d/%d", k, rows,
                    cols, r + 1, rounds);
        for (int side = 0; side < 2; side++) {
            gp_side *x = &s[(side + r) % 2]; /* the order swapped every round */
            const double t0 = bench_now_ns();
            if ((rc = gp_step(x, k))) goto out;
            x->t[r] = bench_now_ns() - t0;
        }
        ratio[r] = s[0].t[r] / s[1].t[r];
    }
    if (!quiet) fputs("\r\033[K", stderr);
    if ((rc = gp_agree(s, k, per, dtype, init, tol, &rel_last))) goto out;
    const double tuned = bench_median(s[0].t, (size_t)rounds),
                 dflt = bench_median(s[1].t, (size_t)rounds),
                 paired = bench_median(ratio, (size_t)rounds);
    printf("clopt bench: Muon with tuned GEMMs against CLBlast's own, in one process\n");
    printf("tuned:   %s (%s): %s\n         from %s\n", spec[0],
           clopt_context_device_name(s[0].ctx), params, origin);
    printf("default: %s (%s): CLBlast's own parameters\n", spec[1],
           clopt_context_device_name(s[1].ctx));
    printf("Muon, %zu variables of %zu x %zu %s, ns_steps 5; %d rounds, the two steps back to "
           "back in each (order swapped every round); load average %.2f\n\n",
           k, rows, cols, clopt_dtype_name(dtype), rounds, bench_loadavg());
    printf("%-34s %10.3f ms\n", "Muon step, tuned GEMMs (median)", tuned / 1e6);
    printf("%-34s %10.3f ms\n", "Muon step, CLBlast's own (median)", dflt / 1e6);
    printf("%-34s %10.3f\n", "tuned / default, of the medians", tuned / dflt);
    printf("%-34s %10.3f\n", "tuned / default, paired", paired);
    printf("\npaired: median of each round's ratio. Results agree: largest difference of the "
           "variables' movements %.2g (first step) and %.2g (after %d steps) of the largest "
           "movement (bound %g)\n",
           rel_first, rel_last, rounds + 1, tol);
    rc = CLI_EXIT_OK;
out:
    for (int i = 0; i < 2; i++) {
        free(s[i].v);
        free(s[i].g);
        free(s[i].t);
        clopt_context_destroy(s[i].ctx);
    }
    free(ratio);
    free(init);
    return rc;
}
