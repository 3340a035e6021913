/* The built-in classes' element-wise rules (clopt__elementwise, src/optim/<class>.c): every
 * rule's generated OpenCL program builds on POCL for every dtype, plain and with the pipeline's
 * switches on, as cl_syntax/<file> checks the kernel files; every rule's kernel is named once;
 * and the registry holds the built-in classes in their list's order. */
#include <criterion/criterion.h>
#include <string.h>
#include "optim/optim_internal.h"
#include "test_util.h"

TU_SUITE(rules_host);
TU_SUITE(rules_pocl);

/* Calls f on every rule of every built-in class; returns how many. */
static int each_rule(void (*f)(const clopt__optimizer_class *, const clopt__builtin_update *,
                               void *),
                     void *arg) {
    int n = 0;
    const clopt__optimizer_class *c;
    for (size_t i = 0; (c = clopt__builtin_class_at(i)) != NULL; i++)
        for (int k = 0; k < c->nupdates; k++, n++) f(c, &c->updates[k], arg);
    return n;
}

/* arg: the context and the dtype; float32 also with the pipeline's switches on. */
typedef struct build_arg {
    clopt_context *ctx;
    clopt_dtype dtype;
} build_arg;

static void build(const clopt__optimizer_class *c, const clopt__builtin_update *u, void *arg) {
    const build_arg *a = arg;
    clopt_context *ctx = a->ctx;
    cr_assert(u->kernel.source && u->kernel.name == u->rule.name, "%s: rule %s not made",
              c->class_name, u->rule.name);
    for (int on = 0; on < 1 + (a->dtype == CLOPT_FLOAT32); on++) {
        clopt__launch l = {0};
        clopt__launch_rule(&l, &u->kernel);
        l.dtype = a->dtype;
        l.nunits = 1;
        l.accum = on;
        l.clip = 2 * on;
        l.decay = on;
        l.slot_base = on;
        l.slot_acc = on ? 0 : -1;
        l.slot_ema = -1;
        const clopt_status st = ctx->ops->prepare(ctx, &l);
        cr_assert(st == CLOPT_OK, "%s: rule %s, dtype %d, switches %d: %s: %s", c->class_name,
                  u->rule.name, (int)a->dtype, on, clopt_status_name(st),
                  clopt_context_last_error(ctx));
    }
}

static void build_all(clopt_dtype dtype) {
    build_arg a = {tu_context(TU_POCL), dtype};
    cr_assert(each_rule(build, &a) >= 16);
    clopt_context_destroy(a.ctx);
}

/* One test per dtype: each builds every rule's program (a cold cache takes a while). */
Test(rules_pocl, every_rule_builds_float32) { build_all(CLOPT_FLOAT32); }
Test(rules_pocl, every_rule_builds_float64) { build_all(CLOPT_FLOAT64); }
Test(rules_pocl, every_rule_builds_float16) { build_all(CLOPT_FLOAT16); }
Test(rules_pocl, every_rule_builds_bfloat16) { build_all(CLOPT_BFLOAT16); }

static void unique(const clopt__optimizer_class *c, const clopt__builtin_update *u, void *arg) {
    const char **seen = arg;
    size_t n = 0;
    for (; seen[n]; n++)
        cr_assert(strcmp(seen[n], u->kernel.name), "%s: kernel %s named twice", c->class_name,
                  u->kernel.name);
    cr_assert(u->rule.nslots <= CLOPT__USER_MAX_SLOTS && u->rule.host && u->rule.opencl);
    seen[n] = u->kernel.name;
}

Test(rules_host, names_unique_and_registered_in_order) {
    const char *seen[64] = {0};
    cr_assert(each_rule(unique, seen) < 64);
    /* One table: each built-in class resolves by its class name (in any case) to itself. */
    const clopt__optimizer_class *c;
    for (size_t i = 0; (c = clopt__builtin_class_at(i)) != NULL; i++) {
        int builtin = 0;
        cr_assert(clopt__registry_find(c->class_name, 1, &builtin) == c && builtin,
                  "%s", c->class_name);
        cr_assert_null(clopt__registry_find(c->class_name, 0, NULL), "%s has a registered_name",
                       c->class_name);
    }
    cr_assert_str_eq(clopt__builtin_class_at(0)->class_name, "SGD");
    cr_assert_null(clopt__registry_find("NoSuchOptimizer", 1, NULL));
}

/* Each rule's host function runs on the host backend (its kernel found by the launch). */
static void host_prepare(const clopt__optimizer_class *c, const clopt__builtin_update *u,
                         void *arg) {
    clopt_context *ctx = arg;
    clopt__launch l = {0};
    clopt__launch_rule(&l, &u->kernel);
    l.dtype = CLOPT_FLOAT32;
    cr_assert(ctx->ops->prepare(ctx, &l) == CLOPT_OK, "%s: %s", c->class_name, u->rule.name);
}

Test(rules_host, every_rule_prepares) {
    clopt_context *ctx = tu_context("host");
    each_rule(host_prepare, ctx);
    clopt_context_destroy(ctx);
}
