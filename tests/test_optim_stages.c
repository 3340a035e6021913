/* The stages of an apply step (src/optim/stages.c) keep their fusion: the launches one step takes
 * for each stage configuration, as stages.c's opening comment maps them (a launch per plan
 * launch for the update, two more for norm clipping, one for an accumulation-only step, one or
 * two for EMA, three for Lamb's statistics, the finite check and finishing kernel of a
 * LossScaleOptimizer), whatever the number of variables. Counted with launch_count.h on the
 * step after the first (build and the first step's table writes are not steps' work). */
#include "launch_count.h"
#include "test_util.h"

TU_SUITE(stages_host);
TU_SUITE(stages_pocl);

typedef struct stage_case {
    const char *what;
    const char *json;
    int two_dtypes; /* a float64 variable too: two plan launches */
    size_t step1, step2; /* launches of the first and the second apply */
} stage_case;

#define ADAM(extra) "{\"class_name\": \"Adam\", \"config\": {\"learning_rate\": 0.01" extra "}}"
#define LSO(inner) \
    "{\"class_name\": \"LossScaleOptimizer\", \"config\": {\"inner_optimizer\": " inner "}}"

/* step1 counts only where it is a steady step too (not device-decided, no first-step table). */
static const stage_case cases[] = {
    {"plain", ADAM(""), 0, 1, 1},
    {"clipvalue: fused", ADAM(", \"clipvalue\": 0.5"), 0, 1, 1},
    {"clipnorm: sums, factors, update", ADAM(", \"clipnorm\": 1.0"), 0, 3, 3},
    {"global_clipnorm", ADAM(", \"global_clipnorm\": 1.0"), 0, 3, 3},
    {"weight decay: fused", ADAM(", \"weight_decay\": 0.1"), 0, 1, 1},
    {"EMA", ADAM(", \"use_ema\": true"), 0, 2, 2},
    {"EMA with an overwrite every step",
     ADAM(", \"use_ema\": true, \"ema_overwrite_frequency\": 1"), 0, 3, 3},
    {"accumulation: accumulate, then the fused update",
     ADAM(", \"gradient_accumulation_steps\": 2"), 0, 1, 1},
    {"two dtypes: two plan launches", ADAM(", \"use_ema\": true"), 1, 4, 4},
    {"Lamb: statistics, segment pass, update",
     "{\"class_name\": \"Lamb\", \"config\": {\"learning_rate\": 0.01}}", 0, 3, 3},
    {"LossScaleOptimizer, device-decided: finite check, update, finish", LSO(ADAM("")), 0, 0, 3},
    {"LossScaleOptimizer, host-decided: flag reset, finite check, accumulate or update",
     LSO(ADAM(", \"gradient_accumulation_steps\": 2")), 0, 3, 3},
};

static void launches(const char *dev, const stage_case *c) {
    clopt_context *ctx = tu_context(dev);
    count_launches(ctx);
    const int n = 3;
    clopt_variable *v[4], *g[4];
    for (int i = 0; i < n; i++) {
        v[i] = tu_var_f32(ctx, "w", 1000 + 300 * i, NULL);
        g[i] = tu_var_f32(ctx, "g", 1000 + 300 * i, NULL);
    }
    if (c->two_dtypes) {
        v[n] = tu_var_f64(ctx, "w64", 700, NULL);
        g[n] = tu_var_f64(ctx, "g64", 700, NULL);
    }
    const size_t m = (size_t)n + (c->two_dtypes ? 1 : 0);
    clopt_optimizer *o = tu_optimizer(ctx, c->json);
    TU_OK(ctx, clopt_optimizer_build(o, v, m));
    nlaunch = 0;
    TU_OK(ctx, clopt_optimizer_apply(o, g, v, m));
    const size_t first = nlaunch;
    nlaunch = 0;
    TU_OK(ctx, clopt_optimizer_apply(o, g, v, m));
    if (c->step1) cr_assert_eq(first, c->step1, "%s: first step: %zu launches, want %zu", c->what,
                               first, c->step1);
    cr_assert_eq(nlaunch, c->step2, "%s: second step: %zu launches, want %zu", c->what, nlaunch,
                 c->step2);
    clopt_context_destroy(ctx);
}

static void every_case(const char *dev) {
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) launches(dev, &cases[i]);
}

Test(stages_host, launches_per_step) { every_case(TU_HOST); }
Test(stages_pocl, launches_per_step) { every_case(TU_POCL); }
