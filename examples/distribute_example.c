#include <stdio.h>
#include <clopt.h>

/* Data parallel over two devices: Keras's distributed golden test. Each replica computes the
 * gradient of its own part of the batch; apply sums them and every replica takes one step. */
int main(int argc, char **argv) {
    /* One replica per device: "pocl:cpu:0,pocl:cpu:1" (POCL_DEVICES="pthread pthread"). */
    clopt_strategy *s = NULL;
    clopt_status st = clopt_strategy_create(argc > 1 ? argv[1] : "host,host", &s);
    if (st != CLOPT_OK) {
        fprintf(stderr, "%s: %s\n", clopt_status_name(st), clopt_last_create_error());
        return 1;
    }
    const size_t n = clopt_strategy_num_replicas(s);
    const int64_t shape[1] = {4};
    const float init[4] = {1, 2, 3, 4}, grad[4] = {1, 6, 7, 2};
    clopt_variable *w[64], *g[64]; /* replica r's copy of w, and its gradient */
    clopt_mirrored_optimizer *sgd = NULL;
    if ((st = clopt_strategy_variable_create(s, "w", CLOPT_FLOAT32, 1, shape, init, w)) ||
        (st = clopt_strategy_variable_create(s, "g", CLOPT_FLOAT32, 1, shape, NULL, g)) ||
        (st = clopt_strategy_optimizer_from_config(
             s, "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.5, "
                "\"momentum\": 0.06}}", &sgd)))
        goto fail;
    /* Under the SUM contract each replica scales its loss by 1/n (here: its gradient). */
    printf("%zu replicas, loss scale %g\n", n, clopt_strategy_loss_scale(s));
    for (size_t r = 0; r < n; r++) /* your framework writes each replica's gradient */
        if ((st = clopt_variable_write(g[r], grad, sizeof grad))) goto fail;
    if ((st = clopt_mirrored_optimizer_apply(sgd, g, n, w, 1))) /* g: n rows of 1 gradient */
        goto fail;
    for (size_t r = 0; r < n; r++) {
        float out[4];
        if ((st = clopt_variable_read(w[r], out, sizeof out))) goto fail;
        printf("replica %zu: %g %g %g %g\n", r, out[0], out[1], out[2], out[3]);
    }
    clopt_strategy_destroy(s); /* and everything made through it */
    return 0;
fail:
    fprintf(stderr, "%s: %s\n", clopt_status_name(st), clopt_strategy_last_error(s));
    clopt_strategy_destroy(s);
    return 1;
}
