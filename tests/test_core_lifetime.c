/* Handle lifetimes (issue 13): destroying twice, destroying a context before its variables and
 * optimizers, using a destroyed handle, and destroying a variable that a built optimizer uses.
 * Each used to crash or read freed memory; now a destroy of a handle that is gone does nothing,
 * the calls that check handles refuse it, and a variable in use is kept (clopt_variable_release
 * says CLOPT_ERR_BAD_STATE naming the optimizer). Handles are checked against the library's list
 * of live ones, never by reading freed memory, so these tests are clean under ASan and valgrind. */
#include "test_util.h"

TU_SUITE(lifetime_host);

#define SGD_M "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.5, \"momentum\": 0.5}}"

Test(lifetime_host, double_destroy_does_nothing) {
    clopt_context *ctx = tu_context(TU_HOST);
    clopt_variable *w = tu_var_f32(ctx, "w", 2, NULL);
    clopt_optimizer *o = tu_optimizer(ctx, SGD_M);
    clopt_optimizer_destroy(o);
    clopt_optimizer_destroy(o);
    clopt_variable_destroy(w);
    clopt_variable_destroy(w);
    cr_assert_eq(clopt_variable_release(w), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(clopt_variable_release(NULL), CLOPT_ERR_INVALID_ARGUMENT);
    clopt_context_destroy(ctx);
    clopt_context_destroy(ctx);
}

/* The context first: its variables and optimizers go with it; destroying them afterwards does
 * nothing and using them is refused. */
Test(lifetime_host, context_before_its_objects) {
    clopt_context *ctx = tu_context(TU_HOST);
    const float one[2] = {1, 1};
    clopt_variable *w = tu_var_f32(ctx, "w", 2, NULL), *g = tu_var_f32(ctx, "g", 2, one);
    clopt_optimizer *o = tu_optimizer(ctx, SGD_M);
    TU_OK(ctx, clopt_optimizer_apply(o, &g, &w, 1));
    clopt_context_destroy(ctx);
    float buf[2] = {0, 0};
    cr_assert_eq(clopt_variable_write(w, buf, sizeof buf), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(clopt_variable_read(w, buf, sizeof buf), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(clopt_variable_assign(w, g), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(clopt_optimizer_apply(o, &g, &w, 1), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(clopt_variable_release(w), CLOPT_ERR_INVALID_ARGUMENT);
    clopt_optimizer_destroy(o);
    clopt_variable_destroy(w);
    clopt_variable_destroy(g);
}

/* A variable that a built optimizer uses is kept (its apply used to read the freed handle):
 * the optimizer still steps it correctly; once the optimizer is gone the variable goes. The
 * other order (optimizer first) just works. A LossScaleOptimizer's inner optimizer counts. */
static void in_use(const char *json, const char *opt_name) {
    clopt_context *ctx = tu_context(TU_HOST);
    const float w0[2] = {1, 2}, one[2] = {1, 1};
    clopt_variable *w = tu_var_f32(ctx, "w", 2, w0), *g = tu_var_f32(ctx, "g", 2, one);
    clopt_optimizer *o = tu_optimizer(ctx, json);
    TU_OK(ctx, clopt_optimizer_build(o, &w, 1));
    TU_ASSERT_STATUS(ctx, clopt_variable_release(w), CLOPT_ERR_BAD_STATE);
    tu_assert_error_mentions(ctx, "'w'");
    tu_assert_error_mentions(ctx, opt_name);
    clopt_variable_destroy(w); /* the void form: kept as well */
    TU_OK(ctx, clopt_optimizer_apply(o, &g, NULL, 1));
    float now[2];
    TU_OK(ctx, clopt_variable_read(w, now, sizeof now));
    cr_assert(now[0] < w0[0] && now[1] < w0[1], "the step moved w: %g %g", now[0], now[1]);
    clopt_optimizer_destroy(o);
    TU_OK(ctx, clopt_variable_release(w));
    cr_assert_eq(clopt_variable_release(w), CLOPT_ERR_INVALID_ARGUMENT);
    /* optimizer first, then the variable */
    clopt_variable *v = tu_var_f32(ctx, "v", 2, w0);
    clopt_optimizer *o2 = tu_optimizer(ctx, json);
    TU_OK(ctx, clopt_optimizer_build(o2, &v, 1));
    clopt_optimizer_destroy(o2);
    TU_OK(ctx, clopt_variable_release(v));
    clopt_context_destroy(ctx);
}

Test(lifetime_host, variable_in_use_is_kept) { in_use(SGD_M, "optimizer 'SGD'"); }
Test(lifetime_host, variable_in_use_by_an_inner_optimizer_is_kept) {
    in_use("{\"class_name\": \"LossScaleOptimizer\", \"config\": {\"inner_optimizer\": "
           "{\"class_name\": \"Adam\"}}}",
           "'loss_scale_optimizer'");
}

/* An optimizer's own variable goes with the optimizer: releasing it says so. */
Test(lifetime_host, optimizer_own_variable) {
    clopt_context *ctx = tu_context(TU_HOST);
    clopt_optimizer *o = tu_optimizer(ctx, SGD_M);
    clopt_variable *own = NULL;
    TU_OK(ctx, clopt_optimizer_add_variable(o, "own", CLOPT_FLOAT32, 0, NULL, 1.0, &own));
    TU_ASSERT_STATUS(ctx, clopt_variable_release(own), CLOPT_ERR_BAD_STATE);
    tu_assert_error_mentions(ctx, "optimizer's own variable");
    clopt_context_destroy(ctx);
}

/* A destroyed gradient (or, for an unbuilt optimizer, a destroyed variable) given to apply:
 * refused with CLOPT_ERR_INVALID_ARGUMENT naming its position, before anything of it is read
 * (it used to be dereferenced: a read of freed memory) and with nothing changed. The same
 * through a LossScaleOptimizer and for build. */
static void destroyed_gradient(const char *json) {
    clopt_context *ctx = tu_context(TU_HOST);
    const float w0[2] = {1, 2}, one[2] = {1, 1};
    clopt_variable *w[2] = {tu_var_f32(ctx, "w0", 2, w0), tu_var_f32(ctx, "w1", 2, w0)};
    clopt_variable *g[2] = {tu_var_f32(ctx, "g0", 2, one), tu_var_f32(ctx, "g1", 2, one)};
    clopt_optimizer *o = tu_optimizer(ctx, json);
    TU_OK(ctx, clopt_optimizer_apply(o, g, w, 2));
    tu_snapshot before;
    tu_snapshot_take(&before, o, w, 2);
    clopt_variable_destroy(g[1]);
    TU_ASSERT_STATUS(ctx, clopt_optimizer_apply(o, g, w, 2), CLOPT_ERR_INVALID_ARGUMENT);
    tu_assert_error_mentions(ctx, "gradient 1 was destroyed");
    TU_ASSERT_STATUS(ctx, clopt_optimizer_apply(o, g, NULL, 2), CLOPT_ERR_INVALID_ARGUMENT);
    tu_assert_error_mentions(ctx, "gradient 1 was destroyed");
    tu_snapshot_assert_same(&before, o, "after applies with a destroyed gradient");
    tu_snapshot_free(&before);
    g[1] = NULL; /* a missing gradient is fine: w0 moves */
    TU_OK(ctx, clopt_optimizer_apply(o, g, w, 2));
    /* an unbuilt optimizer given a destroyed variable: apply (which builds) and build refuse */
    clopt_optimizer *u = tu_optimizer(ctx, json);
    clopt_variable *v[2] = {tu_var_f32(ctx, "v0", 2, w0), tu_var_f32(ctx, "v1", 2, w0)};
    clopt_variable_destroy(v[0]);
    TU_ASSERT_STATUS(ctx, clopt_optimizer_apply(u, g, v, 2), CLOPT_ERR_INVALID_ARGUMENT);
    tu_assert_error_mentions(ctx, "variable 0 was destroyed");
    TU_ASSERT_STATUS(ctx, clopt_optimizer_build(u, v, 2), CLOPT_ERR_INVALID_ARGUMENT);
    tu_assert_error_mentions(ctx, "variable 0 was destroyed");
    cr_assert_eq(clopt_optimizer_iterations(u), 0);
    clopt_context_destroy(ctx);
}

Test(lifetime_host, destroyed_gradient_refused) { destroyed_gradient(SGD_M); }
Test(lifetime_host, destroyed_gradient_refused_by_a_loss_scale_optimizer) {
    destroyed_gradient("{\"class_name\": \"LossScaleOptimizer\", \"config\": {\"inner_optimizer\": "
                       "{\"class_name\": \"Adam\"}}}");
}
