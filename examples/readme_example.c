#include <stdio.h>
#include <clopt.h>

int main(int argc, char **argv) {
    /* NULL: $CLOPT_DEVICE, else the first GPU, else the first CPU. "host": the C backend. */
    clopt_context *ctx = NULL;
    clopt_status st = clopt_context_create(argc > 1 ? argv[1] : NULL, &ctx);
    if (st != CLOPT_OK) {
        fprintf(stderr, "%s: %s\n", clopt_status_name(st), clopt_last_create_error());
        return 1;
    }
    printf("device: %s\n", clopt_context_device_name(ctx));

    const int64_t shape[2] = {2, 2};
    const float init[4] = {1, 2, 3, 4}, grad[4] = {0.1f, -0.2f, 0.3f, -0.4f};
    float out[4];
    clopt_variable *w = NULL, *g = NULL; /* a weight and its gradient */
    clopt_optimizer *adam = NULL;
    if ((st = clopt_variable_create(ctx, "dense/kernel", CLOPT_FLOAT32, 2, shape, init, &w)) ||
        (st = clopt_variable_create(ctx, "grad", CLOPT_FLOAT32, 2, shape, NULL, &g)) ||
        (st = clopt_optimizer_from_config(
             ctx, "{\"class_name\": \"Adam\", \"config\": {\"learning_rate\": 0.01}}", &adam)) ||
        (st = clopt_optimizer_build(adam, &w, 1)))
        goto fail;
    for (int step = 0; step < 10; step++) {
        /* Your framework computes the gradient; copy it in (or write it on the device). */
        if ((st = clopt_variable_write(g, grad, sizeof grad)) ||
            (st = clopt_optimizer_apply(adam, &g, NULL, 1))) /* NULL: the built variables */
            goto fail;
    }
    if ((st = clopt_variable_read(w, out, sizeof out))) /* waits for the queued steps */
        goto fail;
    printf("after %lld steps: %g %g %g %g\n", (long long)clopt_optimizer_iterations(adam),
           out[0], out[1], out[2], out[3]);
    clopt_optimizer_destroy(adam);
    clopt_variable_destroy(g);
    clopt_variable_destroy(w);
    clopt_context_destroy(ctx);
    return 0;
fail:
    fprintf(stderr, "%s: %s\n", clopt_status_name(st), clopt_context_last_error(ctx));
    clopt_context_destroy(ctx); /* also frees the variables and optimizers made in it */
    return 1;
}
