/* `clopt bench --optimizer Muon`: Muon's step is not a memory-speed update but matrix products
 * (ns_steps Newton-Schulz iterations per 2-D variable, batched per shape: src/optim/muon.c), so
 * instead of a C loop its yardstick is the device's own matrix-multiply rate: in one process,
 * interleaved round by round, medians of the rounds:
 * - the Muon step (clopt_optimizer_apply + clopt_finish) of K variables of rows x cols, its ns per
 *   element and the rate of its Newton-Schulz products (FLOPs below over the whole step's time);
 * - the three products of one iteration for the K matrices as single GEMMs, one matrix after
 *   another (CLBlast's plain GEMM on OpenCL: Muon before batching did exactly this);
 * - the same products as three batched GEMMs over the K matrices (what the step runs).
 * FLOPs per Newton-Schulz iteration of an r x c matrix, m = min(r, c), n = max(r, c):
 * 2*m*m*n (A = X X^T) + 2*m^3 (A*A) + 2*m*m*n (B*X); times ns_steps (5) and K per step.
 * The products go through the backend's gemm (clopt__tool_ns_products, src/tool/tool_internal.h),
 * on scratch buffers of the same sizes. */
#define _XOPEN_SOURCE 700
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "bench_internal.h"
#include "tool_internal.h"

static int mb_fail(clopt_context *ctx, const char *what, clopt_status st) {
    fprintf(stderr, "clopt bench: %s: %s: %s\n", what, clopt_status_name(st),
            clopt_context_last_error(ctx));
    return CLI_EXIT_FAIL;
}

int cli_bench_muon(const char *device, size_t size, size_t tensors, int rounds, clopt_dtype dtype,
                   int quiet) {
    const size_t k = tensors ? tensors : 64;
    const size_t per = size ? size / k : 256 * 256;
    if (!per) {
        fprintf(stderr, "clopt bench: --size must be at least --tensors\n");
        return CLI_EXIT_USAGE;
    }
    size_t rows = (size_t)sqrt((double)per);
    while (rows > 1 && per % rows) rows--;
    const size_t cols = per / rows, m = rows < cols ? rows : cols, n = rows < cols ? cols : rows;
    const size_t es = clopt_dtype_size(dtype);
    clopt_context *ctx = NULL;
    if (clopt_context_create(device, &ctx) != CLOPT_OK) {
        fprintf(stderr, "clopt bench: device '%s': %s\n", device ? device : "(default)",
                clopt_last_create_error());
        return CLI_EXIT_FAIL;
    }
    int rc = CLI_EXIT_FAIL;
    clopt_variable **v = calloc(k, sizeof *v), **g = calloc(k, sizeof *g);
    void *init = malloc(per * es);
    double *t[3] = {calloc((size_t)rounds, sizeof(double)), calloc((size_t)rounds, sizeof(double)),
                    calloc((size_t)rounds, sizeof(double))};
    void *x = NULL, *y = NULL, *a = NULL, *b = NULL;
    clopt_optimizer *o = NULL;
    clopt_status st;
    if (!v || !g || !init || !t[0] || !t[1] || !t[2]) {
        fprintf(stderr, "clopt bench: out of memory\n");
        goto out;
    }
    const int64_t shape[2] = {(int64_t)rows, (int64_t)cols};
    uint64_t z = 12345;
    for (size_t i = 0; i < k; i++) {
        for (size_t e = 0; e < per; e++) {
            z = z * 6364136223846793005ULL + 1442695040888963407ULL;
            const double r = (double)(z >> 11) * (2.0 / 9007199254740992.0) - 1.0;
            if (dtype == CLOPT_FLOAT64) ((double *)init)[e] = r;
            else ((float *)init)[e] = (float)r;
        }
        char name[48];
        snprintf(name, sizeof name, "layer%zu/kernel", i);
        if ((st = clopt_variable_create(ctx, name, dtype, 2, shape, init, &v[i])) ||
            (st = clopt_variable_create(ctx, "grad", dtype, 2, shape, init, &g[i]))) {
            rc = mb_fail(ctx, "clopt_variable_create", st);
            goto out;
        }
    }
    char json[128];
    snprintf(json, sizeof json, "{\"class_name\": \"Muon\", \"config\": {\"learning_rate\": 0.001}}");
    if ((st = clopt_optimizer_from_config(ctx, json, &o)) || (st = clopt_optimizer_build(o, v, k))) {
        rc = mb_fail(ctx, "Muon build", st);
        goto out;
    }
    const clopt_dtype rd = dtype == CLOPT_FLOAT64 ? CLOPT_FLOAT64 : CLOPT_FLOAT32;
    const size_t res = rd == CLOPT_FLOAT64 ? 8 : 4;
    if ((st = clopt__tool_buffer_create(ctx, k * m * n * res, &x)) ||
        (st = clopt__tool_buffer_create(ctx, k * m * n * res, &y)) ||
        (st = clopt__tool_buffer_create(ctx, k * m * m * res, &a)) ||
        (st = clopt__tool_buffer_create(ctx, k * m * m * res, &b))) {
        rc = mb_fail(ctx, "scratch", st);
        goto out;
    }
    /* Warm: one step, one round of each product form. */
    if ((st = clopt_optimizer_apply(o, g, v, k)) || (st = clopt_finish(ctx)) ||
        (st = clopt__tool_ns_products(ctx, rd, x, y, a, b, m, n, k, 0)) ||
        (st = clopt__tool_ns_products(ctx, rd, x, y, a, b, m, n, k, 1))) {
        rc = mb_fail(ctx, "warm-up", st);
        goto out;
    }
    for (int r = 0; r < rounds; r++) {
        if (!quiet)
            fprintf(stderr, "\rclopt bench: Muon, %zu x %zux%zu, round %d/%d", k, rows, cols,
                    r + 1, rounds);
        for (int side = 0; side < 3; side++) {
            const int which = (side + r) % 3; /* rotate the order round by round */
            const double s0 = bench_now_ns();
            if (which == 0) {
                if ((st = clopt_optimizer_apply(o, g, v, k)) || (st = clopt_finish(ctx))) break;
            } else if ((st = clopt__tool_ns_products(ctx, rd, x, y, a, b, m, n, k, which == 2))) {
                break;
            }
            t[which][r] = bench_now_ns() - s0;
        }
        if (st) {
            rc = mb_fail(ctx, "timed round", st);
            goto out;
        }
    }
    if (!quiet) fputs("\r\033[K", stderr);
    const double step = bench_median(t[0], (size_t)rounds), single = bench_median(t[1], (size_t)rounds),
                 batched = bench_median(t[2], (size_t)rounds);
    const double it_flops = (4.0 * (double)m * m * n + 2.0 * (double)m * m * m) * (double)k;
    const double step_flops = 5.0 * it_flops; /* ns_steps 5, the default */
    printf("clopt bench: %s\n", clopt_context_device_name(ctx));
    printf("Muon, %zu variables of %zu x %zu %s (one shape group), ns_steps 5; median of %d "
           "interleaved rounds\n\n",
           k, rows, cols, clopt_dtype_name(dtype), rounds);
    printf("%-52s %10.3f ms  %8.2f ns/element  %8.2f GFLOP/s\n",
           "Muon step (apply + finish; NS products' FLOPs)", step / 1e6,
           step / (double)(k * per), step_flops / step);
    printf("%-52s %10.3f ms  %8s              %8.2f GFLOP/s\n",
           "1 NS iteration's products, single GEMMs, one by one", single / 1e6, "",
           it_flops / single);
    printf("%-52s %10.3f ms  %8s              %8.2f GFLOP/s\n",
           "1 NS iteration's products, batched GEMMs (3 calls)", batched / 1e6, "",
           it_flops / batched);
    printf("\nMuon step / (5 x batched iteration): %.2f (the rest: stats, norm, load, fill, "
           "copies, apply); step rate / single-GEMM rate: %.2f\n",
           step / (5.0 * batched), (step_flops / step) / (it_flops / single));
    rc = CLI_EXIT_OK;
out:
    clopt__tool_buffer_release(ctx, x);
    clopt__tool_buffer_release(ctx, y);
    clopt__tool_buffer_release(ctx, a);
    clopt__tool_buffer_release(ctx, b);
    free(v);
    free(g);
    free(init);
    for (int i = 0; i < 3; i++) free(t[i]);
    clopt_context_destroy(ctx);
    return rc;
}
