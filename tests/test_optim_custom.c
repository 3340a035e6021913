/* Optimizer classes a program defines (include/clopt/optimizer_class.h): AdaBelief registered
 * here, against a float64 reference written here, host versus OpenCL over every apply-pipeline
 * option, inside LossScaleOptimizer, its variable list, config and checkpoints; refused
 * registrations; from_config with Keras's custom_objects (the per-call classes).
 *
 * Criterion runs each test in a process of its own, so each registers the class again (the
 * suite's init). */
#include <pthread.h>
#include <unistd.h>
#include "optim_more.h"
#include "optim_state.h"
#include "optim_varlist.h"
#include "../examples/adabelief.h"

/* ---- AdaBelief (examples/adabelief.h), with a module of its own ---- */

enum { BETA_1, BETA_2, EPSILON };
static const char *const adabelief_slots[] = {"m", "s"};

static clopt_optimizer_class_desc adabelief(void) {
    clopt_optimizer_class_desc d = adabelief_class();
    d.module = "my_optimizers";
    return d;
}

static void register_adabelief(void) {
    const clopt_optimizer_class_desc d = adabelief();
    const clopt_status st = clopt_optimizer_class_register(&d);
    cr_assert(st == CLOPT_OK, "register AdaBelief: %s: %s", clopt_status_name(st),
              clopt_class_last_error());
}

static void suite_init(void) { register_adabelief(); }
TestSuite(custom_host, .init = suite_init, .fini = tu_leak_check);
TestSuite(custom_pocl, .init = suite_init, .fini = tu_leak_check);
TU_SUITE(custom_unregistered_host);

/* ---- the float64 reference, written from the paper ---- */

static void ref(const double *hp, double lr, int64_t t, double g, double *w, double *sl) {
    const double b1 = hp[BETA_1], b2 = hp[BETA_2], eps = hp[EPSILON];
    sl[0] = b1 * sl[0] + (1 - b1) * g;
    sl[1] = b2 * sl[1] + (1 - b2) * (g - sl[0]) * (g - sl[0]) + eps;
    const double m_hat = sl[0] / (1 - pow(b1, (double)t)), s_hat = sl[1] / (1 - pow(b2, (double)t));
    *w -= lr * m_hat / (sqrt(s_hat) + eps);
}

static void formula(const char *dev, double b1, double b2, double eps) {
    char json[256];
    snprintf(json, sizeof json,
             "{\"class_name\": \"AdaBelief\", \"registered_name\": \"Custom>AdaBelief\", "
             "\"config\": {\"learning_rate\": 0.05, \"beta_1\": %.17g, \"beta_2\": %.17g, "
             "\"epsilon\": %.17g}}",
             b1, b2, eps);
    const double hp[3] = {b1, b2, eps};
    const double init[2] = {0, 0};
    om_formula_check(dev, json, (double)0.05f, hp, ref, 2, adabelief_slots, init);
}

static void formula_all(const char *dev) {
    formula(dev, 0.9, 0.999, 1e-16);
    formula(dev, 0.5, 0.7, 1e-3);
}
Test(custom_host, update_rule_matches_reference) { formula_all(TU_HOST); }
Test(custom_pocl, update_rule_matches_reference) { formula_all(TU_POCL); }

/* ---- host versus OpenCL over every pipeline option (clipping, weight decay, EMA,
 * accumulation, loss_scale_factor, all combined) ---- */

Test(custom_pocl, agrees_with_host_float32) {
    om_agree_dtype(TU_POCL, CLOPT_FLOAT32, "AdaBelief", "\"learning_rate\": 0.01");
}
Test(custom_pocl, agrees_with_host_float64) {
    om_agree_dtype(TU_POCL, CLOPT_FLOAT64, "AdaBelief", "\"learning_rate\": 0.01");
}

/* ---- variable list, config ---- */

Test(custom_host, variable_list_in_keras_order) {
    static const ovl_entry plain[] = {{"iteration", 0},   {"learning_rate", 0},
                                      {"dense_kernel_m", 6}, {"dense_kernel_s", 6},
                                      {"dense_bias_m", 2},   {"dense_bias_s", 2},
                                      {NULL, 0}};
    ovl_check("{\"class_name\": \"AdaBelief\", \"config\": {}}", plain);
    ovl_check_with_ema_and_accumulation("AdaBelief", NULL, plain + 2, 2);
}

/* Keras's default name of a subclass is its class name in snake case. */
Test(custom_host, config_keys_in_keras_order) {
    static const char *const keys[] = {"beta_1", "beta_2", "epsilon", NULL};
    om_config_keys("AdaBelief", "ada_belief", keys);
}

/* serialize_keras_object of a registered class: its module, class_name and registered_name. */
Test(custom_host, get_config_names_the_registered_class) {
    clopt_context *ctx = tu_context(TU_HOST);
    clopt_optimizer *o = tu_optimizer(ctx, "{\"class_name\": \"AdaBelief\", \"config\": "
                                           "{\"beta_1\": 0.8, \"name\": \"ab\"}}");
    char *cfg = NULL;
    TU_OK(ctx, clopt_optimizer_get_config(o, &cfg));
    cr_assert(strstr(cfg, "\"module\": \"my_optimizers\""), "%s", cfg);
    cr_assert(strstr(cfg, "\"registered_name\": \"Custom>AdaBelief\""), "%s", cfg);
    cr_assert(strstr(cfg, "\"beta_1\": 0.8"), "%s", cfg);
    cr_assert(strstr(cfg, "\"name\": \"ab\""), "%s", cfg);
    clopt_free(cfg);
    clopt_context_destroy(ctx);
}

Test(custom_host, hyperparameters_checked_by_table) {
    static const om_bad bad[] = {{"\"beta_1\": 1.5", "beta_1"}, {"\"epsilon\": -1.0", "epsilon"},
                                 {"\"beta_2\": true", "beta_2"}};
    clopt_context *ctx = tu_context(TU_HOST);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        clopt_optimizer *o = NULL;
        const clopt_status st =
            clopt_optimizer_from_config(ctx, om_json("AdaBelief", bad[i].config, NULL, NULL), &o);
        cr_assert(st == CLOPT_ERR_BAD_VALUE || st == CLOPT_ERR_BAD_TYPE, "%s: %s", bad[i].config,
                  clopt_status_name(st));
        cr_assert_null(o);
        tu_assert_error_mentions(ctx, bad[i].key);
    }
    TU_ASSERT_STATUS(ctx,
                     clopt_optimizer_from_config(ctx, om_json("AdaBelief", "\"rho\": 1", NULL,
                                                              NULL), &(clopt_optimizer *){NULL}),
                     CLOPT_ERR_UNKNOWN_KEY);
    tu_assert_error_mentions(ctx, "rho");
    clopt_context_destroy(ctx);
}

/* ---- checkpoints ---- */

static void save_load(const char *dev) {
    clopt_context *ctx = tu_context(dev);
    const int64_t n = 300;
    double w0[300], g0[300];
    uint64_t rng = 7;
    tu_rand_fill(&rng, w0, 300, -1, 1);
    clopt_variable *a = tu_var_from_f64(ctx, "a", CLOPT_FLOAT32, 1, &n, w0),
                   *b = tu_var_from_f64(ctx, "a", CLOPT_FLOAT32, 1, &n, w0),
                   *g = tu_var_f32(ctx, "g", n, NULL);
    clopt_optimizer *o = tu_optimizer(ctx, om_json("AdaBelief", "\"learning_rate\": 0.01",
                                                   "\"use_ema\": true", NULL));
    for (int t = 0; t < 3; t++) {
        tu_rand_fill(&rng, g0, 300, -1, 1);
        tu_write_f64(g, g0);
        TU_OK(ctx, clopt_optimizer_apply(o, &g, &a, 1));
    }
    char path[] = "/tmp/clopt_custom_XXXXXX";
    const int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    TU_OK(ctx, clopt_optimizer_save(o, path));
    char *cfg = NULL;
    TU_OK(ctx, clopt_optimizer_get_config(o, &cfg));
    clopt_optimizer *o2 = tu_optimizer(ctx, cfg);
    clopt_free(cfg);
    TU_OK(ctx, clopt_optimizer_build(o2, &b, 1));
    TU_OK(ctx, clopt_optimizer_load(o2, path));
    remove(path);
    os_state s1, s2;
    os_read(&s1, o);
    os_read(&s2, o2);
    os_assert_same(&s2, &s1, o, "after load");
    os_free(&s1);
    os_free(&s2);
    /* Loaded state steps as the saved one does (the model variable copied: a checkpoint of
     * the optimizer alone does not hold it). */
    double *wa = tu_read_f64(a);
    tu_write_f64(b, wa);
    free(wa);
    tu_rand_fill(&rng, g0, 300, -1, 1);
    tu_write_f64(g, g0);
    TU_OK(ctx, clopt_optimizer_apply(o, &g, &a, 1));
    TU_OK(ctx, clopt_optimizer_apply(o2, &g, &b, 1));
    tu_assert_vars_close(b, a, "a step after load");
    cr_assert_eq(clopt_optimizer_iterations(o2), 4);
    clopt_context_destroy(ctx);
}
Test(custom_host, save_load_round_trip) { save_load(TU_HOST); }
Test(custom_pocl, save_load_round_trip) { save_load(TU_POCL); }

/* ---- inside LossScaleOptimizer ---- */

#define LSO_ADABELIEF(extra)                                                                  \
    "{\"class_name\": \"LossScaleOptimizer\", \"config\": {\"inner_optimizer\": "              \
    "{\"class_name\": \"AdaBelief\", \"registered_name\": \"Custom>AdaBelief\", \"config\": "  \
    "{\"learning_rate\": 0.01" extra "}}, \"initial_scale\": 64.0, \"dynamic_growth_steps\": "   \
    "1000}}"

/* LossScaleOptimizer(AdaBelief) on gradients scaled by 64 steps as AdaBelief does on the
 * unscaled ones (a power of two: exact), with clipnorm and EMA; on the device its steps are
 * device-decided. `dev` against the host's plain AdaBelief. */
static void loss_scale(const char *dev) {
    clopt_context *ctx = tu_context(dev), *hctx = tu_context(TU_HOST);
    const int64_t n = 257;
    double w0[257], g0[257], gs[257];
    uint64_t rng = 11;
    tu_rand_fill(&rng, w0, 257, -1, 1);
    clopt_variable *a = tu_var_from_f64(ctx, "a", CLOPT_FLOAT32, 1, &n, w0),
                   *g = tu_var_f32(ctx, "g", n, NULL),
                   *b = tu_var_from_f64(hctx, "a", CLOPT_FLOAT32, 1, &n, w0),
                   *hg = tu_var_f32(hctx, "g", n, NULL);
    clopt_optimizer *lso =
        tu_optimizer(ctx, LSO_ADABELIEF(", \"clipnorm\": 1.0, \"use_ema\": true"));
    clopt_optimizer *plain = tu_optimizer(
        hctx, om_json("AdaBelief", "\"learning_rate\": 0.01",
                      "\"clipnorm\": 1.0, \"use_ema\": true", NULL));
    for (int t = 0; t < 4; t++) {
        tu_rand_fill(&rng, g0, 257, -1, 1);
        for (int i = 0; i < 257; i++) gs[i] = (double)(float)g0[i] * 64.0;
        tu_write_f64(g, gs);
        tu_write_f64(hg, g0);
        TU_OK(ctx, clopt_optimizer_apply(lso, &g, &a, 1));
        TU_OK(hctx, clopt_optimizer_apply(plain, &hg, &b, 1));
        tu_assert_vars_close(a, b, "LossScaleOptimizer(AdaBelief) against AdaBelief");
    }
    tu_assert_vars_close(tu_slot(lso, "a_s"), tu_slot(plain, "a_s"), "slot a_s");
    tu_assert_vars_close(tu_slot(lso, "a_average"), tu_slot(plain, "a_average"), "EMA");
    cr_assert_eq(clopt_optimizer_iterations(lso), 4);
    char *cfg = NULL;
    TU_OK(ctx, clopt_optimizer_get_config(lso, &cfg));
    cr_assert(strstr(cfg, "\"registered_name\": \"Custom>AdaBelief\""), "%s", cfg);
    clopt_free(cfg);
    clopt_context_destroy(ctx);
    clopt_context_destroy(hctx);
}
Test(custom_host, inside_loss_scale_optimizer) { loss_scale(TU_HOST); }
Test(custom_pocl, inside_loss_scale_optimizer) { loss_scale(TU_POCL); }

/* ---- refused registrations ---- */

static void refused(const clopt_optimizer_class_desc *d, clopt_status want, const char *needle) {
    const clopt_status st = clopt_optimizer_class_register(d);
    cr_assert_eq(st, want, "%s: got %s, want %s (%s)", needle, clopt_status_name(st),
                 clopt_status_name(want), clopt_class_last_error());
    cr_assert(strstr(clopt_class_last_error(), needle), "message '%s' lacks '%s'",
              clopt_class_last_error(), needle);
}

Test(custom_host, duplicate_registration_refused) {
    clopt_optimizer_class_desc d = adabelief();
    refused(&d, CLOPT_ERR_BAD_STATE, "registered class");
    d.registered_name = "Other>AdaBelief"; /* the class_name is taken */
    refused(&d, CLOPT_ERR_BAD_STATE, "registered class");
    d.class_name = "AdaBelief2";
    d.registered_name = "Custom>AdaBelief"; /* the registered_name is taken */
    refused(&d, CLOPT_ERR_BAD_STATE, "registered class");
    d.class_name = "adam"; /* a built-in class, in any case */
    d.registered_name = NULL;
    refused(&d, CLOPT_ERR_BAD_STATE, "built-in");
    cr_assert(!clopt_optimizer_class_registered("AdaBelief2"));
    cr_assert(!clopt_optimizer_class_registered("adam"));
    cr_assert(clopt_optimizer_class_registered("Custom>AdaBelief"));
    cr_assert(clopt_optimizer_class_registered("AdaBelief"));
}

Test(custom_unregistered_host, invalid_descriptions_refused) {
    clopt_optimizer_class_desc d;
    cr_assert_eq(clopt_optimizer_class_register(NULL), CLOPT_ERR_INVALID_ARGUMENT);
#define REFUSE(change, needle)                                                                \
    do {                                                                                      \
        d = adabelief();                                                                      \
        change;                                                                               \
        refused(&d, CLOPT_ERR_BAD_VALUE, needle);                                             \
    } while (0)
    REFUSE(d.class_name = NULL, "class_name");
    REFUSE(d.class_name = "Ada Belief", "class_name");
    REFUSE(d.registered_name = "", "registered_name");
    REFUSE(d.default_learning_rate = NAN, "default_learning_rate");
    REFUSE(d.nslots = 5, "nslots");
    REFUSE(d.nscalars = 9, "nscalars");
    REFUSE(d.scalars = NULL, "scalars callback");
    REFUSE(d.nhparams = 17, "nhparams");
    REFUSE(d.opencl_update = NULL, "opencl_update");
    REFUSE(d.host_update = NULL, "host_update");
    static const char *const bad_slot[] = {"m", "g"};
    REFUSE(d.slot_names = bad_slot, "slot_names[1]: 'g'");
    static const char *const dup_slot[] = {"m", "m"};
    REFUSE(d.slot_names = dup_slot, "named twice");
    static const char *const bad_scalar[] = {"lr", "beta_1", "beta_2", "m", "x_", "y"};
    REFUSE(d.scalar_names = bad_scalar, "scalar_names[3]: 'm'");
    static const clopt_hparam base_key[] = {{"clipnorm", CLOPT_HPARAM_FLOAT, 0, 0, 0, 1, 0, 0}};
    REFUSE((d.hparams = base_key, d.nhparams = 1), "'clipnorm' is a key of the base class");
    static const clopt_hparam out_of_range[] = {{"beta", CLOPT_HPARAM_FLOAT, 2, 0, 0, 1, 0, 0}};
    REFUSE((d.hparams = out_of_range, d.nhparams = 1), "default 2 is out of its bounds");
    static const clopt_hparam twice[] = {{"beta", CLOPT_HPARAM_FLOAT, 0, 0, 0, 1, 0, 0},
                                         {"beta", CLOPT_HPARAM_BOOL, 0, 0, 0, 1, 0, 0}};
    REFUSE((d.hparams = twice, d.nhparams = 2), "key 'beta' repeats");
    static const clopt_hparam null_float[] = {{"beta", CLOPT_HPARAM_FLOAT, 0, 1, 0, 1, 0, 0}};
    REFUSE((d.hparams = null_float, d.nhparams = 1), "null default");
#undef REFUSE
    cr_assert(!clopt_optimizer_class_registered("AdaBelief"), "a refused class was registered");
}

/* Eight threads register the same class at once: exactly one succeeds. */
static void *register_thread(void *arg) {
    const clopt_optimizer_class_desc d = adabelief();
    *(clopt_status *)arg = clopt_optimizer_class_register(&d);
    return NULL;
}
Test(custom_unregistered_host, concurrent_registration_one_wins) {
    pthread_t th[8];
    clopt_status st[8];
    for (int i = 0; i < 8; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, register_thread, &st[i]), 0);
    int ok = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        cr_assert(st[i] == CLOPT_OK || st[i] == CLOPT_ERR_BAD_STATE, "%s",
                  clopt_status_name(st[i]));
        ok += st[i] == CLOPT_OK;
    }
    cr_assert_eq(ok, 1);
}

/* ---- from_config with custom_objects ---- */

#define ADABELIEF_JSON(reg)                                                                   \
    "{\"module\": \"my_optimizers\", \"class_name\": \"AdaBelief\", \"config\": "             \
    "{\"learning_rate\": 0.01}, \"registered_name\": " reg "}"

Test(custom_unregistered_host, unknown_class_fails_custom_objects_resolve) {
    clopt_context *ctx = tu_context(TU_HOST);
    clopt_optimizer *o = NULL;
    TU_ASSERT_STATUS(ctx, clopt_optimizer_from_config(ctx, ADABELIEF_JSON("null"), &o),
                     CLOPT_ERR_UNKNOWN_OPTIMIZER);
    tu_assert_error_mentions(ctx, "'AdaBelief'");
    TU_ASSERT_STATUS(ctx,
                     clopt_optimizer_from_config(ctx, ADABELIEF_JSON("\"Custom>AdaBelief\""), &o),
                     CLOPT_ERR_UNKNOWN_OPTIMIZER);
    tu_assert_error_mentions(ctx, "Custom>AdaBelief");
    TU_ASSERT_STATUS(ctx,
                     clopt_optimizer_from_config_with_classes(ctx, ADABELIEF_JSON("\"x\""), NULL,
                                                              0, &o),
                     CLOPT_ERR_UNKNOWN_OPTIMIZER);
    cr_assert_null(o);
    const clopt_optimizer_class_desc d = adabelief();
    /* By registered_name, and by class_name when the config has none. */
    TU_OK(ctx, clopt_optimizer_from_config_with_classes(ctx, ADABELIEF_JSON("\"Custom>AdaBelief\""),
                                                        &d, 1, &o));
    cr_assert_str_eq(clopt_optimizer_class_name(o), "AdaBelief");
    clopt_optimizer *o2 = NULL;
    TU_OK(ctx, clopt_optimizer_from_config_with_classes(ctx, ADABELIEF_JSON("null"), &d, 1, &o2));
    /* Its config resolves again with the same classes, and the class was not registered. */
    char *cfg = NULL;
    TU_OK(ctx, clopt_optimizer_get_config(o, &cfg));
    clopt_optimizer *o3 = NULL;
    TU_OK(ctx, clopt_optimizer_from_config_with_classes(ctx, cfg, &d, 1, &o3));
    TU_ASSERT_STATUS(ctx, clopt_optimizer_from_config(ctx, cfg, &(clopt_optimizer *){NULL}),
                     CLOPT_ERR_UNKNOWN_OPTIMIZER);
    clopt_free(cfg);
    cr_assert(!clopt_optimizer_class_registered("AdaBelief"));
    /* The optimizer keeps its class: it steps after the description is gone. */
    const int64_t n = 4;
    const float w0[4] = {1, 2, 3, 4}, g0[4] = {0.5f, -0.5f, 1, -1};
    clopt_variable *w = tu_var_f32(ctx, "w", n, w0), *g = tu_var_f32(ctx, "g", n, g0);
    TU_OK(ctx, clopt_optimizer_apply(o3, &g, &w, 1));
    double *got = tu_read_f64(w);
    for (int i = 0; i < 4; i++) /* step 1: m_hat = g, s_hat ~ (g - 0.1 g)^2: ~lr*sign(g)/0.9 */
        cr_assert(fabs(got[i] - (w0[i] - 0.01 / 0.9 * (g0[i] > 0 ? 1 : -1))) < 1e-5,
                  "w[%d] = %.9g", i, got[i]);
    free(got);
    clopt_optimizer_destroy(o2);
    clopt_context_destroy(ctx);
}

Test(custom_unregistered_host, custom_objects_reach_the_inner_optimizer) {
    clopt_context *ctx = tu_context(TU_HOST);
    const clopt_optimizer_class_desc d = adabelief();
    clopt_optimizer *o = NULL;
    TU_ASSERT_STATUS(ctx, clopt_optimizer_from_config(ctx, LSO_ADABELIEF(""), &o),
                     CLOPT_ERR_UNKNOWN_OPTIMIZER);
    TU_OK(ctx, clopt_optimizer_from_config_with_classes(ctx, LSO_ADABELIEF(""), &d, 1, &o));
    cr_assert_str_eq(clopt_optimizer_class_name(o), "LossScaleOptimizer");
    clopt_context_destroy(ctx);
}

Test(custom_unregistered_host, invalid_custom_objects_refused) {
    clopt_context *ctx = tu_context(TU_HOST);
    clopt_optimizer_class_desc d[2] = {adabelief(), adabelief()};
    d[1].host_update = NULL;
    clopt_optimizer *o = NULL;
    TU_ASSERT_STATUS(ctx, clopt_optimizer_from_config_with_classes(ctx, ADABELIEF_JSON("null"), d,
                                                                   2, &o),
                     CLOPT_ERR_BAD_VALUE);
    tu_assert_error_mentions(ctx, "classes[1]");
    tu_assert_error_mentions(ctx, "host_update");
    cr_assert_null(o);
    TU_ASSERT_STATUS(ctx, clopt_optimizer_from_config_with_classes(ctx, ADABELIEF_JSON("null"),
                                                                   NULL, 1, &o),
                     CLOPT_ERR_INVALID_ARGUMENT);
    clopt_context_destroy(ctx);
}

/* An OpenCL body that does not compile fails the build with the class's name in the log. */
Test(custom_pocl, bad_opencl_update_fails_build) {
    clopt_context *ctx = tu_context(TU_POCL);
    clopt_optimizer_class_desc d = adabelief();
    d.class_name = "Broken";
    d.registered_name = NULL;
    d.opencl_update = "w = undefined_name;";
    clopt_optimizer *o = NULL;
    TU_OK(ctx, clopt_optimizer_from_config_with_classes(
                   ctx, "{\"class_name\": \"Broken\", \"config\": {}}", &d, 1, &o));
    const int64_t n = 4;
    clopt_variable *w = tu_var_f32(ctx, "w", n, NULL);
    TU_ASSERT_STATUS(ctx, clopt_optimizer_build(o, &w, 1), CLOPT_ERR_BUILD_FAILED);
    tu_assert_error_mentions(ctx, "undefined_name");
    clopt_context_destroy(ctx);
}
