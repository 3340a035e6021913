/* Fuzz target: the optimizer config reader (clopt_optimizer_from_config: the Keras serialize()
 * wrapper, every class's hyperparameters, LossScaleOptimizer's inner optimizer, learning-rate
 * schedules). Properties checked on every input, on the host backend:
 *   - from_config either succeeds or returns a known error status with a message;
 *   - on success, get_config succeeds, from_config of that text succeeds, and its get_config is
 *     the same text (the round trip is a fixed point);
 *   - the optimizer then builds on two small float32 variables and applies two steps, and its
 *     learning rate can be read (schedules evaluated at the steps reached).
 * ASan and UBSan (in the libFuzzer and sanitizer builds) catch the memory errors, leaks and
 * undefined behaviour on the way. */
#include <stdint.h>
#include "fuzz_util.h"

#define MAX_INPUT 16384

static void exercise(clopt_context *ctx, clopt_optimizer *o, const char *cfg) {
    static const int64_t ks[2] = {2, 3}, bs[1] = {3};
    static const float kv[6] = {0.5f, -1, 2, 0.25f, -0.125f, 3}, bv[3] = {1, -1, 0};
    static const float kg[6] = {0.1f, -0.2f, 0.3f, 0, 1e-3f, -4}, bg[3] = {0.5f, 0, -0.5f};
    clopt_variable *v[2] = {NULL, NULL}, *g[2] = {NULL, NULL};
    clopt_status st = clopt_variable_create(ctx, "dense/kernel", CLOPT_FLOAT32, 2, ks, kv, &v[0]);
    if (!st) st = clopt_variable_create(ctx, "dense/bias", CLOPT_FLOAT32, 1, bs, bv, &v[1]);
    if (!st) st = clopt_variable_create(ctx, "g0", CLOPT_FLOAT32, 2, ks, kg, &g[0]);
    if (!st) st = clopt_variable_create(ctx, "g1", CLOPT_FLOAT32, 1, bs, bg, &g[1]);
    FUZZ_CHECK(st == CLOPT_OK, "variables: %s", clopt_status_name(st));
    st = clopt_optimizer_build(o, v, 2);
    FUZZ_CHECK(st == CLOPT_OK, "build of %s: %s: %s", cfg, clopt_status_name(st),
               clopt_context_last_error(ctx));
    for (int i = 0; i < 2; i++) {
        st = clopt_optimizer_apply(o, g, NULL, 2);
        FUZZ_CHECK(st == CLOPT_OK, "apply of %s: %s: %s", cfg, clopt_status_name(st),
                   clopt_context_last_error(ctx));
    }
    double lr = 0;
    st = clopt_optimizer_get_learning_rate(o, &lr);
    FUZZ_CHECK(st == CLOPT_OK, "learning rate of %s: %s", cfg, clopt_status_name(st));
    float out[6];
    st = clopt_variable_read(v[0], out, sizeof out);
    FUZZ_CHECK(st == CLOPT_OK, "read: %s", clopt_status_name(st));
    FUZZ_CHECK(clopt_optimizer_iterations(o) >= 0, "iterations of %s", cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > MAX_INPUT) return 0;
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    clopt_context *ctx = fuzz_context();
    clopt_optimizer *o = NULL;
    clopt_status st = clopt_optimizer_from_config(ctx, text, &o);
    if (st != CLOPT_OK) {
        const char *msg = clopt_context_last_error(ctx);
        FUZZ_CHECK(st < 0 && fuzz_known_status(st), "from_config returned %d", (int)st);
        FUZZ_CHECK(msg && *msg, "from_config failed with %s and no message",
                   clopt_status_name(st));
        FUZZ_CHECK(o == NULL, "from_config failed but wrote *out");
    } else {
        char *c1 = NULL, *c2 = NULL;
        clopt_optimizer *o2 = NULL;
        st = clopt_optimizer_get_config(o, &c1);
        FUZZ_CHECK(st == CLOPT_OK, "get_config: %s", clopt_status_name(st));
        st = clopt_optimizer_from_config(ctx, c1, &o2);
        FUZZ_CHECK(st == CLOPT_OK, "from_config of get_config's %s: %s: %s", c1,
                   clopt_status_name(st), clopt_context_last_error(ctx));
        st = clopt_optimizer_get_config(o2, &c2);
        FUZZ_CHECK(st == CLOPT_OK, "get_config (2): %s", clopt_status_name(st));
        FUZZ_CHECK(strcmp(c1, c2) == 0, "the round trip changed the config:\n%s\n%s", c1, c2);
        exercise(ctx, o, c1);
        clopt_free(c1);
        clopt_free(c2);
        clopt_optimizer_destroy(o2);
        clopt_optimizer_destroy(o);
    }
    clopt_context_destroy(ctx);
    free(text);
    return 0;
}
