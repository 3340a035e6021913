/* Uses an installed clopt: checks the header and library versions agree, creates a "host"
 * context and takes one SGD step. Exit status 0 on success. */
#include <math.h>
#include <stdio.h>
#include <clopt.h>

int main(void) {
    if (clopt_version_number() != CLOPT_VERSION_NUMBER) {
        fprintf(stderr, "header version %d, library version %u\n", CLOPT_VERSION_NUMBER,
                clopt_version_number());
        return 1;
    }
    clopt_context *ctx = NULL;
    clopt_status st = clopt_context_create("host", &ctx);
    if (st != CLOPT_OK) {
        fprintf(stderr, "clopt_context_create: %s: %s\n", clopt_status_name(st),
                clopt_last_create_error());
        return 1;
    }
    const int64_t shape[1] = {2};
    const float w0[2] = {1.0f, 2.0f}, g0[2] = {0.5f, -0.5f};
    clopt_variable *w = NULL, *g = NULL;
    clopt_optimizer *opt = NULL;
    float w1[2] = {0};
    if ((st = clopt_variable_create(ctx, "w", CLOPT_FLOAT32, 1, shape, w0, &w)) != CLOPT_OK ||
        (st = clopt_variable_create(ctx, "g", CLOPT_FLOAT32, 1, shape, g0, &g)) != CLOPT_OK ||
        (st = clopt_optimizer_from_config(
             ctx, "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.5}}", &opt)) !=
            CLOPT_OK ||
        (st = clopt_optimizer_apply(opt, &g, &w, 1)) != CLOPT_OK ||
        (st = clopt_variable_read(w, w1, sizeof w1)) != CLOPT_OK) {
        fprintf(stderr, "%s: %s\n", clopt_status_name(st), clopt_context_last_error(ctx));
        clopt_context_destroy(ctx);
        return 1;
    }
    int ok = fabsf(w1[0] - 0.75f) < 1e-6f && fabsf(w1[1] - 2.25f) < 1e-6f;
    printf("clopt %s on %s: w = [%g, %g] after one SGD step (%s)\n", clopt_version_string(),
           clopt_context_device_name(ctx), w1[0], w1[1], ok ? "ok" : "WRONG");
    clopt_context_destroy(ctx);
    return ok ? 0 : 1;
}
