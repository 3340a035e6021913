/* Kernel parameters and the tuning database (src/core/tuning.c, clopt/experimental.h):
 * ranges refused with a message; the database's levels (device + driver, device, vendor +
 * type, built-in defaults) in order; corrupt, truncated and wrong-typed databases and entries
 * skipped with the reason; and on POCL, every optimizer in every dtype giving the same bits
 * under non-default parameters as under the defaults (element-wise updates), and agreeing with
 * the host backend (all of them, reductions included). */
#include "optim_half.h" /* oh_write, oh_read: any dtype */
#include <unistd.h>
#include "clopt/experimental.h"
#include "clopt/version.h"

TU_SUITE(tuning);

/* ---- ranges ---- */

Test(tuning, defaults_are_valid_and_todays_shapes) {
    clopt_kernel_params p;
    clopt_kernel_params_default(&p);
    cr_assert_eq(p.block_chunks, 16);
    cr_assert_eq(p.max_blocks, 4096);
    cr_assert_eq(p.form, CLOPT_KERNEL_FORM_AUTO);
    cr_assert_eq(clopt_kernel_params_check(NULL, &p), CLOPT_OK);
}

Test(tuning, out_of_range_refused_and_nothing_changes) {
    setenv("CLOPT_TUNING_DB", "off", 1);
    clopt_context *ctx = tu_context(TU_HOST);
    const struct {
        clopt_kernel_params p;
        const char *names;
    } bad[] = {
        {{0, 4096, 0, 1}, "block_chunks"},    {{1025, 4096, 0, 1}, "block_chunks"},
        {{16, 15, 0, 1}, "max_blocks"},       {{16, 1048577, 0, 1}, "max_blocks"},
        {{16, 4096, -1, 1}, "form"},          {{16, 4096, 3, 1}, "form"},
        {{16, 4096, 0, -1}, "item_blocks"},   {{16, 4096, 0, 65}, "item_blocks"},
    };
    const clopt_kernel_params good = {4, 64, CLOPT_KERNEL_FORM_GROUP, 8};
    TU_OK(ctx, clopt_context_set_kernel_params(ctx, &good));
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        TU_ASSERT_STATUS(ctx, clopt_context_set_kernel_params(ctx, &bad[i].p),
                         CLOPT_ERR_INVALID_ARGUMENT);
        tu_assert_error_mentions(ctx, bad[i].names);
        clopt_kernel_params now;
        TU_OK(ctx, clopt_context_kernel_params(ctx, &now, NULL));
        cr_assert(now.block_chunks == 4 && now.max_blocks == 64 &&
                      now.form == CLOPT_KERNEL_FORM_GROUP && now.item_blocks == 8,
                  "case %zu changed the parameters", i);
    }
    /* the bounds themselves are valid; item_blocks 0 stands for the default, 1 */
    const clopt_kernel_params edges[] = {{1, 16, 0, 64}, {1024, 1048576, 2, 0}};
    for (size_t i = 0; i < 2; i++) TU_OK(ctx, clopt_context_set_kernel_params(ctx, &edges[i]));
    clopt_kernel_params now;
    TU_OK(ctx, clopt_context_kernel_params(ctx, &now, NULL));
    cr_assert_eq(now.item_blocks, 1, "item_blocks 0 reads back as %d, not 1", now.item_blocks);
    cr_assert_eq(clopt_context_set_kernel_params(ctx, NULL), CLOPT_ERR_INVALID_ARGUMENT);
    clopt_context_destroy(ctx);
}

Test(tuning, null_arguments_refused) {
    setenv("CLOPT_TUNING_DB", "off", 1);
    clopt_context *ctx = tu_context(TU_HOST);
    clopt_kernel_params p;
    clopt_device_identity id;
    clopt_kernel_params_default(&p);
    cr_assert_eq(clopt_context_set_kernel_params(NULL, &p), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(clopt_context_kernel_params(NULL, &p, NULL), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(clopt_context_kernel_params(ctx, NULL, NULL), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(clopt_context_device_identity(NULL, &id), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(clopt_context_device_identity(ctx, NULL), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(clopt_kernel_params_check(NULL, NULL), CLOPT_ERR_INVALID_ARGUMENT);
    TU_OK(ctx, clopt_context_device_identity(ctx, &id));
    cr_assert(strcmp(id.vendor, "clopt") == 0 && strcmp(id.type, "host") == 0 &&
              strcmp(id.device, "host") == 0 && strcmp(id.driver, CLOPT_VERSION_STRING) == 0);
    clopt_context_destroy(ctx);
}

/* ---- the database ---- */

static char db_path[256];

/* Writes `text` as the user database (CLOPT_TUNING_DB). */
static void user_db(const char *text) {
    snprintf(db_path, sizeof db_path, "/tmp/clopt_tuning_test_%ld.json", (long)getpid());
    FILE *f = fopen(db_path, "w");
    cr_assert(f);
    fputs(text, f);
    fclose(f);
    setenv("CLOPT_TUNING_DB", db_path, 1);
}

/* Writes `text` as the user database, opens a host context, returns its params and origin
 * (copied into origin[n]). */
static clopt_kernel_params lookup(const char *text, char *origin, size_t n) {
    user_db(text);
    clopt_context *ctx = tu_context(TU_HOST);
    clopt_kernel_params p;
    const char *o = NULL;
    TU_OK(ctx, clopt_context_kernel_params(ctx, &p, &o));
    snprintf(origin, n, "%s", o);
    clopt_context_destroy(ctx);
    remove(db_path);
    return p;
}

#define HEAD "{\"clopt_tuning\": 1, \"entries\": ["
#define L1 "{\"device\": \"host\", \"driver\": \"" CLOPT_VERSION_STRING "\", \"params\": {\"block_chunks\": 1}}"
#define L2 "{\"device\": \"host\", \"params\": {\"block_chunks\": 2}}"
#define L3 "{\"vendor\": \"clopt\", \"type\": \"host\", \"params\": {\"block_chunks\": 3}}"
#define OTHER "{\"device\": \"other\", \"params\": {\"block_chunks\": 9}}"

static void expect(const char *text, int block_chunks, const char *needle1, const char *needle2) {
    char origin[2048];
    clopt_kernel_params p = lookup(text, origin, sizeof origin);
    cr_assert_eq(p.block_chunks, block_chunks, "%s\n-> block_chunks %d (want %d); origin: %s",
                 text, p.block_chunks, block_chunks, origin);
    cr_assert(strstr(origin, needle1), "origin '%s' lacks '%s'", origin, needle1);
    cr_assert(!needle2 || strstr(origin, needle2), "origin '%s' lacks '%s'", origin, needle2);
}

Test(tuning, levels_in_order) {
    expect(HEAD L3 "," L2 "," L1 "," OTHER "]}", 1, "entry 2 (device + driver)", "user database");
    expect(HEAD L3 "," L2 "," OTHER "]}", 2, "entry 1 (device)", NULL);
    expect(HEAD OTHER "," L3 "]}", 3, "entry 1 (vendor + type)", NULL);
    expect(HEAD OTHER "]}", 16, "built-in defaults", "clopt / host / host");
    /* a driver version that is not this one: the device + driver level does not match */
    expect(HEAD "{\"device\": \"host\", \"driver\": \"0.0.0-other\", \"params\": "
                "{\"block_chunks\": 7}}]}",
           16, "built-in defaults", NULL);
}

Test(tuning, params_applied_whole) {
    char origin[2048];
    clopt_kernel_params p = lookup(HEAD "{\"device\": \"host\", \"params\": {\"block_chunks\": 32, "
                                   "\"max_blocks\": 128, \"form\": \"group\", \"item_blocks\": 12}}]}",
                                   origin, sizeof origin);
    cr_assert(p.block_chunks == 32 && p.max_blocks == 128 && p.form == CLOPT_KERNEL_FORM_GROUP &&
                  p.item_blocks == 12,
              "%d %d %d %d (%s)", p.block_chunks, p.max_blocks, p.form, p.item_blocks, origin);
}

Test(tuning, corrupt_and_truncated_databases_fall_back) {
    expect(HEAD L2, 16, "built-in defaults", "unreadable");              /* truncated */
    expect("", 16, "built-in defaults", "unreadable");                   /* empty */
    expect("\x01\x02garbage", 16, "built-in defaults", "unreadable");    /* not JSON */
    expect("[1, 2]", 16, "built-in defaults", "not a clopt tuning database");
    expect("{\"clopt_tuning\": 2, \"entries\": [" L2 "]}", 16, "built-in defaults",
           "not a clopt tuning database");
    expect("{\"clopt_tuning\": \"1\", \"entries\": [" L2 "]}", 16, "built-in defaults",
           "not a clopt tuning database");
    expect("{\"clopt_tuning\": 1, \"entries\": {}}", 16, "built-in defaults",
           "\"entries\" is not an array");
}

Test(tuning, bad_entries_skipped_with_reason) {
    /* each bad level-2 entry is skipped; the valid level-3 entry is used */
    const char *bad[][2] = {
        {"{\"device\": \"host\", \"params\": {\"block_chunks\": \"32\"}}", "not an integer"},
        {"{\"device\": \"host\", \"params\": {\"block_chunks\": 1.5}}", "not an integer"},
        {"{\"device\": \"host\", \"params\": {\"block_chunks\": 0}}", "outside"},
        {"{\"device\": \"host\", \"params\": {\"max_blocks\": 99999999}}", "outside"},
        {"{\"device\": \"host\", \"params\": {\"item_blocks\": 65}}", "item_blocks 65 is outside"},
        {"{\"device\": \"host\", \"params\": {\"item_blocks\": -3}}", "item_blocks -3 is outside"},
        {"{\"device\": \"host\", \"params\": {\"item_blocks\": \"4\"}}", "not an integer"},
        {"{\"device\": \"host\", \"params\": {\"form\": \"wide\"}}", "\"form\""},
        {"{\"device\": \"host\", \"params\": {\"form\": 2}}", "\"form\""},
        {"{\"device\": \"host\", \"params\": {\"chunk\": 512}}", "unknown parameter"},
        {"{\"device\": \"host\", \"params\": [16]}", "\"params\""},
        {"{\"device\": \"host\"}", "\"params\""},
        {"{\"device\": 7, \"params\": {}}", "\"device\" is not a string"},
        {"{\"driver\": \"x\", \"params\": {}}", "names neither"},
        {"42", "not an object"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char text[1024];
        snprintf(text, sizeof text, HEAD "%s, " L3 "]}", bad[i][0]);
        expect(text, 3, "(vendor + type); skipped: ", bad[i][1]);
    }
}

Test(tuning, off_and_missing_file_use_the_defaults) {
    setenv("CLOPT_TUNING_DB", "off", 1);
    char *path = clopt_tuning_db_path();
    cr_assert_str_eq(path, "");
    free(path);
    clopt_context *ctx = tu_context(TU_HOST);
    clopt_kernel_params p;
    const char *o;
    TU_OK(ctx, clopt_context_kernel_params(ctx, &p, &o));
    cr_assert_eq(p.block_chunks, 16);
    cr_assert(strstr(o, "built-in defaults") && !strstr(o, "unreadable"), "%s", o);
    clopt_context_destroy(ctx);
    setenv("CLOPT_TUNING_DB", "/nonexistent/dir/tuning.json", 1);
    ctx = tu_context(TU_HOST);
    TU_OK(ctx, clopt_context_kernel_params(ctx, &p, &o));
    cr_assert(strstr(o, "built-in defaults") && !strstr(o, "skipped"), "%s", o);
    clopt_context_destroy(ctx);
    unsetenv("CLOPT_TUNING_DB");
    setenv("CLOPT_CACHE_DIR", "/some/cache", 1);
    path = clopt_tuning_db_path();
    cr_assert_str_eq(path, "/some/cache/tuning.json");
    free(path);
}

Test(tuning_pocl, shipped_entry_and_user_override) {
    setenv("CLOPT_TUNING_DB", "off", 1);
    clopt_context *ctx = tu_context(TU_POCL);
    clopt_device_identity id;
    TU_OK(ctx, clopt_context_device_identity(ctx, &id));
    cr_assert_str_eq(id.type, "cpu");
    clopt_kernel_params p;
    const char *o;
    TU_OK(ctx, clopt_context_kernel_params(ctx, &p, &o));
    cr_assert(strstr(o, "shipped database entry 0 (vendor + type)"), "%s", o);
    cr_assert_eq(p.form, CLOPT_KERNEL_FORM_LOOP);
    char text[1024];
    snprintf(text, sizeof text,
             HEAD "{\"vendor\": \"%s\", \"type\": \"cpu\", \"params\": {\"block_chunks\": 5}}]}",
             id.vendor);
    clopt_context_destroy(ctx);
    user_db(text);
    ctx = tu_context(TU_POCL);
    TU_OK(ctx, clopt_context_kernel_params(ctx, &p, &o));
    remove(db_path);
    cr_assert(p.block_chunks == 5 && strstr(o, "user database"), "%s", o);
    clopt_context_destroy(ctx);
}

/* ---- results under non-default parameters ---- */

static const struct {
    const char *cls;
    int elementwise; /* no reduction: the same bits under any parameters */
} classes[] = {
    {"SGD", 1},      {"Adam", 1},   {"AdamW", 1}, {"RMSprop", 1},  {"Adagrad", 1},
    {"Adadelta", 1}, {"Adamax", 1}, {"Nadam", 1}, {"Ftrl", 1},     {"Lion", 1},
    {"ScheduleFreeAdamW", 1},       {"Lamb", 0},  {"Adafactor", 0}, {"Muon", 0},
};

enum { NV = 4, STEPS = 3 };
static const int nd[NV] = {1, 2, 1, 1};
static const int64_t shp[NV][2] = {{5000, 0}, {37, 41}, {300, 0}, {1, 0}};
static const char *const vnames[NV] = {"big", "dense/kernel", "mid", "one"};

typedef struct side {
    clopt_context *ctx;
    clopt_optimizer *opt;
    clopt_variable *v[NV], *g[NV];
    clopt_status st;
} side;

static size_t nel(int i) { return (size_t)(nd[i] == 1 ? shp[i][0] : shp[i][0] * shp[i][1]); }

/* Builds `cls` on `spec` with params p (NULL: defaults) and runs STEPS steps; st is the first
 * failure (an optimizer may not support a dtype: both sides must then say the same). */
static void run_side(side *s, const char *spec, const clopt_kernel_params *p, const char *cls,
                     clopt_dtype dt) {
    char json[256];
    snprintf(json, sizeof json, "{\"class_name\": \"%s\", \"config\": {\"learning_rate\": 0.01}}",
             cls);
    s->ctx = tu_context(spec);
    if (p) TU_OK(s->ctx, clopt_context_set_kernel_params(s->ctx, p));
    s->opt = tu_optimizer(s->ctx, json);
    uint64_t seed = 12345;
    double *x = malloc(5000 * sizeof *x);
    for (int i = 0; i < NV; i++) {
        s->v[i] = tu_var(s->ctx, vnames[i], dt, nd[i], shp[i], NULL);
        s->g[i] = tu_var(s->ctx, "grad", dt, nd[i], shp[i], NULL);
        tu_rand_fill(&seed, x, nel(i), -1, 1);
        oh_write(s->v[i], x, nel(i));
    }
    s->st = clopt_optimizer_build(s->opt, s->v, NV);
    for (int k = 0; k < STEPS && s->st == CLOPT_OK; k++) {
        for (int i = 0; i < NV; i++) {
            tu_rand_fill(&seed, x, nel(i), -0.5, 0.5);
            oh_write(s->g[i], x, nel(i));
        }
        s->st = clopt_optimizer_apply(s->opt, s->g, NULL, NV);
    }
    free(x);
}

static void side_free(side *s) {
    clopt_optimizer_destroy(s->opt);
    clopt_context_destroy(s->ctx);
}

/* Close, with the dtype's tolerance; for float16 and bfloat16 one unit of the format (a sum in
 * another order may round a stored value the other way). */
static void close_enough(const clopt_variable *got, const clopt_variable *want, const char *what) {
    const clopt_dtype d = clopt_variable_dtype(got);
    if (d == CLOPT_FLOAT32 || d == CLOPT_FLOAT64) {
        tu_assert_vars_close(got, want, what);
        return;
    }
    const size_t n = (size_t)clopt_variable_size(got);
    double *gx = oh_read(got), *wx = oh_read(want);
    for (size_t i = 0; i < n; i++)
        if (isnan(gx[i]) && isnan(wx[i])) gx[i] = wx[i] = 0; /* both NaN: the same */
    tu_assert_close(gx, wx, n, d == CLOPT_FLOAT16 ? 1e-3 : 8e-3, 1e-4, what);
    free(gx);
    free(wx);
}

/* Every optimizer variable of a and b: the same bytes (exact) or close. */
static void compare(const side *a, const side *b, int exact, const char *what) {
    size_t n = clopt_optimizer_variable_count(a->opt);
    cr_assert_eq(clopt_optimizer_variable_count(b->opt), n);
    for (int i = 0; i < NV; i++) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s: variable '%s'", what, vnames[i]);
        if (!exact) {
            close_enough(b->v[i], a->v[i], msg);
            continue;
        }
        size_t na, nb;
        unsigned char *x = tu_read_bytes(a->v[i], &na), *y = tu_read_bytes(b->v[i], &nb);
        cr_assert_eq(na, nb);
        tu_assert_same_bytes(y, x, na, msg);
        free(x);
        free(y);
    }
    for (size_t k = 0; k < n; k++) {
        const char *name;
        clopt_variable *va, *vb;
        TU_OK(a->ctx, clopt_optimizer_variable(a->opt, k, &name, NULL, &va));
        TU_OK(b->ctx, clopt_optimizer_variable(b->opt, k, NULL, NULL, &vb));
        cr_assert_eq(!va, !vb);
        if (!va) continue; /* the iteration counter, the learning rate: on the host */
        char msg[256];
        snprintf(msg, sizeof msg, "%s: optimizer variable '%s'", what, name);
        if (!exact) {
            close_enough(vb, va, msg);
            continue;
        }
        size_t na, nb;
        unsigned char *x = tu_read_bytes(va, &na), *y = tu_read_bytes(vb, &nb);
        cr_assert_eq(na, nb);
        tu_assert_same_bytes(y, x, na, msg);
        free(x);
        free(y);
    }
}

static void same_results(int ci) {
    const char *cls = classes[ci].cls;
    const int elementwise = classes[ci].elementwise;
    setenv("CLOPT_TUNING_DB", "off", 1);
    /* tiny blocks with few allowed (forcing larger ones), and large blocks in the group form */
    /* each with several blocks per unit (ITEM_LOOP: the walk from one segment to the next, a
     * last unit past the end), in both forms; and the defaults' blocks with 3 per unit: the
     * same bits for every class, reductions included */
    const clopt_kernel_params sets[] = {{1, 16, CLOPT_KERNEL_FORM_LOOP, 4},
                                        {64, 4096, CLOPT_KERNEL_FORM_GROUP, 2},
                                        {16, 4096, CLOPT_KERNEL_FORM_LOOP, 3}};
    const clopt_dtype dts[] = {CLOPT_FLOAT32, CLOPT_FLOAT64, CLOPT_FLOAT16, CLOPT_BFLOAT16};
    int ran = 0;
    for (size_t d = 0; d < sizeof dts / sizeof *dts; d++) {
        side def, host;
        run_side(&def, TU_POCL, NULL, cls, dts[d]);
        /* Element-wise updates: the same bits as the defaults, so the same agreement with the
         * host as the agreement tests check; reductions: also against the host here. */
        const int vs_host = !elementwise && (dts[d] == CLOPT_FLOAT32 || dts[d] == CLOPT_FLOAT64);
        if (vs_host) run_side(&host, TU_HOST, NULL, cls, dts[d]);
        for (size_t k = 0; k < sizeof sets / sizeof *sets; k++) {
            side tuned;
            run_side(&tuned, TU_POCL, &sets[k], cls, dts[d]);
            char what[160];
            snprintf(what, sizeof what, "%s %s params {%d, %d, %d, %d}", cls,
                     clopt_dtype_name(dts[d]), sets[k].block_chunks, sets[k].max_blocks,
                     sets[k].form, sets[k].item_blocks);
            cr_assert_eq(tuned.st, def.st, "%s: status %s, defaults gave %s", what,
                         clopt_status_name(tuned.st), clopt_status_name(def.st));
            /* the defaults' block shape: reductions add in the same order, whatever the form
             * and item_blocks */
            const int same_blocks = sets[k].block_chunks == 16 &&
                                    sets[k].max_blocks == 4096;
            if (def.st == CLOPT_OK) {
                compare(&def, &tuned, elementwise || same_blocks, what);
                if (vs_host && host.st == CLOPT_OK) compare(&host, &tuned, 0, what);
                ran++;
            }
            side_free(&tuned);
        }
        if (vs_host) side_free(&host);
        side_free(&def);
    }
    cr_assert(ran >= 2, "%s: no dtype ran (float32 at least must)", cls);
}

/* One test per class (a CTest each: they run in parallel and within the time limit). */
Test(tuning_pocl, same_results_SGD) { same_results(0); }
Test(tuning_pocl, same_results_Adam) { same_results(1); }
Test(tuning_pocl, same_results_AdamW) { same_results(2); }
Test(tuning_pocl, same_results_RMSprop) { same_results(3); }
Test(tuning_pocl, same_results_Adagrad) { same_results(4); }
Test(tuning_pocl, same_results_Adadelta) { same_results(5); }
Test(tuning_pocl, same_results_Adamax) { same_results(6); }
Test(tuning_pocl, same_results_Nadam) { same_results(7); }
Test(tuning_pocl, same_results_Ftrl) { same_results(8); }
Test(tuning_pocl, same_results_Lion) { same_results(9); }
Test(tuning_pocl, same_results_ScheduleFreeAdamW) { same_results(10); }
Test(tuning_pocl, same_results_Lamb) { same_results(11); }
Test(tuning_pocl, same_results_Adafactor) { same_results(12); }
Test(tuning_pocl, same_results_Muon) { same_results(13); }
