/* Keras's variable list of an optimizer (semantics doc section 5): every entry's name, path and
 * size, as the tests of every class spell it out, written from the Keras source (lists may hold
 * a host scalar after the slots, such as Nadam's u_product, or entries named without the
 * variable's path, such as Adafactor's r and c). optim_more.h's om_variable_list, which takes
 * names only, is built on it. Not a test source itself. */
#ifndef CLOPT_TEST_OPTIM_VARLIST_H
#define CLOPT_TEST_OPTIM_VARLIST_H

#include "test_util.h"

/* One expected entry: Keras's name, and its element count (0: no device variable, a scalar the
 * optimizer keeps on the host). */
typedef struct ovl_entry {
    const char *name;
    int64_t size;
} ovl_entry;

/* Builds `json` on "dense/kernel" [3, 2] and "dense/bias" [2] (float32) and checks every entry
 * of the optimizer's variable list, in order: name, path "<optimizer name>/<name>", and device
 * storage. `want` ends with a NULL name. */
static inline void ovl_check(const char *json, const ovl_entry *want) {
    clopt_context *ctx = tu_context(TU_HOST);
    const int64_t ks[2] = {3, 2}, bs = 2;
    clopt_variable *vars[2] = {tu_var(ctx, "dense/kernel", CLOPT_FLOAT32, 2, ks, NULL),
                               tu_var(ctx, "dense/bias", CLOPT_FLOAT32, 1, &bs, NULL)};
    clopt_optimizer *o = tu_optimizer(ctx, json);
    TU_OK(ctx, clopt_optimizer_build(o, vars, 2));
    size_t n = 0;
    while (want[n].name) n++;
    cr_assert_eq(clopt_optimizer_variable_count(o), n, "%s: %zu variables, expected %zu", json,
                 clopt_optimizer_variable_count(o), n);
    for (size_t i = 0; i < n; i++) {
        const char *name, *path;
        clopt_variable *v;
        TU_OK(ctx, clopt_optimizer_variable(o, i, &name, &path, &v));
        cr_assert_str_eq(name, want[i].name, "%s: variable %zu", json, i);
        char p[128];
        snprintf(p, sizeof p, "%s/%s", clopt_optimizer_name(o), want[i].name);
        cr_assert_str_eq(path, p, "%s: path of variable %zu", json, i);
        cr_assert_eq(v != NULL, want[i].size != 0, "%s: device storage of variable %zu (%s)",
                     json, i, name);
        if (v)
            cr_assert_eq(clopt_variable_size(v), want[i].size, "%s: size of variable %zu (%s)",
                         json, i, name);
    }
    clopt_context_destroy(ctx);
}

/* ovl_check of {"class_name": cls, "config": {<config>, "use_ema": true,
 * "gradient_accumulation_steps": steps}} (config: entries of "config", or NULL), expecting
 * iteration, learning_rate, each variable's EMA average, each variable's gradient accumulator,
 * then `slots` (ending with a NULL name; usually the plain list's entries after learning_rate).
 * Keras 3.16, keras/src/optimizers/base_optimizer.py, BaseOptimizer.build (which every class's
 * build calls first): add_optimizer_variables(variables, "average") if use_ema, then per variable
 * add_variable_from_reference(variable, name="gradient_accumulator"). */
static inline void ovl_check_with_ema_and_accumulation(const char *cls, const char *config,
                                                       const ovl_entry *slots, int steps) {
    static const ovl_entry pipeline[] = {{"iteration", 0},
                                         {"learning_rate", 0},
                                         {"dense_kernel_average", 6},
                                         {"dense_bias_average", 2},
                                         {"dense_kernel_gradient_accumulator", 6},
                                         {"dense_bias_gradient_accumulator", 2}};
    ovl_entry want[64];
    size_t n = 0;
    for (; n < sizeof pipeline / sizeof *pipeline; n++) want[n] = pipeline[n];
    for (size_t i = 0; slots[i].name; i++) {
        cr_assert(n + 1 < sizeof want / sizeof *want, "%s: too many slots", cls);
        want[n++] = slots[i];
    }
    want[n] = (ovl_entry){NULL, 0};
    char json[512];
    snprintf(json, sizeof json,
             "{\"class_name\": \"%s\", \"config\": {%s%s\"use_ema\": true, "
             "\"gradient_accumulation_steps\": %d}}",
             cls, config ? config : "", config ? ", " : "", steps);
    ovl_check(json, want);
}

#endif
