/* CLBlast's GEMM parameters in the tuning database (src/core/tuning_gemm.c, written by
 * `clopt tune --gemm`): the levels in order, GEMM and kernel-parameter entries not mixing,
 * corrupt databases and bad entries (missing, unknown, wrong-typed or out-of-range parameters)
 * skipped with the reason, the host backend saying they are not applied; on POCL, Muon under
 * tuned parameters (the indirect and the direct kernel forced in turn) agreeing with the host. */
#include <unistd.h>
#include "clopt/experimental.h"
#include "clopt/version.h"
#include "test_util.h"

TU_SUITE(tuning_gemm);

static char db_path[256];

static void user_db(const char *text) {
    snprintf(db_path, sizeof db_path, "/tmp/clopt_tuning_gemm_test_%ld.json", (long)getpid());
    FILE *f = fopen(db_path, "w");
    cr_assert(f);
    fputs(text, f);
    fclose(f);
    setenv("CLOPT_TUNING_DB", db_path, 1);
}

#define HEAD "{\"clopt_tuning\": 1, \"entries\": ["
/* A complete, valid XgemmDirect set with WGD = w. */
#define DIRECT(prec, w)                                                                        \
    "{\"kernel\": \"XgemmDirect\", \"precision\": " #prec ", \"params\": {\"WGD\": " #w           \
    ", \"MDIMCD\": 8, \"NDIMCD\": 8, \"MDIMAD\": 8, \"NDIMBD\": 8, \"KWID\": 2, \"VWMD\": 1, "   \
    "\"VWND\": 1, \"PADA\": 1, \"PADB\": 1}}"
#define XGEMM                                                                                  \
    "{\"kernel\": \"Xgemm\", \"precision\": 32, \"params\": {\"GEMMK\": 0, \"MWG\": 64, "          \
    "\"NWG\": 16, \"KWG\": 32, \"MDIMC\": 8, \"NDIMC\": 8, \"MDIMA\": 8, \"NDIMB\": 8, \"KWI\": "  \
    "2, \"VWM\": 4, \"VWN\": 2, \"STRM\": 0, \"STRN\": 0, \"SA\": 1, \"SB\": 1, \"KREG\": 1}}"
#define G1 "{\"device\": \"host\", \"driver\": \"" CLOPT_VERSION_STRING "\", \"gemm\": [" DIRECT(32, 8) "]}"
#define G2 "{\"device\": \"host\", \"gemm\": [" DIRECT(32, 16) "]}"
#define G3 "{\"vendor\": \"clopt\", \"type\": \"host\", \"gemm\": [" DIRECT(32, 32) "]}"
#define GOTHER "{\"device\": \"other\", \"gemm\": [" DIRECT(32, 64) "]}"

/* The GEMM parameters and origin the database `text` gives a host context. */
static void gemm_lookup(const char *text, char *params, char *origin, size_t n) {
    user_db(text);
    clopt_context *ctx = tu_context(TU_HOST);
    const char *p = NULL, *o = NULL;
    TU_OK(ctx, clopt_context_gemm_params(ctx, &p, &o));
    snprintf(params, n, "%s", p);
    snprintf(origin, n, "%s", o);
    clopt_context_destroy(ctx);
    remove(db_path);
}

static void expect(const char *text, const char *want_params, const char *needle1,
                   const char *needle2) {
    char params[2048], origin[2048];
    gemm_lookup(text, params, origin, sizeof params);
    cr_assert(want_params ? strstr(params, want_params) != NULL : params[0] == '\0',
              "%s\n-> params '%s' (want '%s'); origin: %s", text, params,
              want_params ? want_params : "", origin);
    cr_assert(strstr(origin, needle1), "origin '%s' lacks '%s'", origin, needle1);
    cr_assert(!needle2 || strstr(origin, needle2), "origin '%s' lacks '%s'", origin, needle2);
}

Test(tuning_gemm, levels_in_order) {
    expect(HEAD G3 "," G2 "," G1 "," GOTHER "]}", "WGD=8", "entry 2 (device + driver)",
           "user database");
    expect(HEAD G3 "," G2 "," GOTHER "]}", "WGD=16", "entry 1 (device)", NULL);
    expect(HEAD GOTHER "," G3 "]}", "WGD=32", "entry 1 (vendor + type)", NULL);
    expect(HEAD GOTHER "]}", NULL, "CLBlast's own parameters", "clopt / host / host");
}

Test(tuning_gemm, whole_set_in_order_of_the_entry) {
    char params[2048], origin[2048];
    gemm_lookup(HEAD "{\"device\": \"host\", \"gemm\": [" DIRECT(64, 16) ", " XGEMM
                     ", {\"kernel\": \"GemmRoutine\", \"precision\": 32, \"params\": "
                     "{\"XGEMM_MIN_INDIRECT_SIZE\": 384}}]}]}",
                params, origin, sizeof params);
    cr_assert_str_eq(params,
                     "XgemmDirect/64: KWID=2 MDIMAD=8 MDIMCD=8 NDIMBD=8 NDIMCD=8 PADA=1 PADB=1 "
                     "VWMD=1 VWND=1 WGD=16; Xgemm/32: GEMMK=0 KREG=1 KWG=32 KWI=2 MDIMA=8 "
                     "MDIMC=8 MWG=64 NDIMB=8 NDIMC=8 NWG=16 SA=1 SB=1 STRM=0 STRN=0 VWM=4 VWN=2; "
                     "GemmRoutine/32: XGEMM_MIN_INDIRECT_SIZE=384",
                     "origin: %s", origin);
}

/* A GEMM entry does not give kernel parameters nor the reverse, and neither is noted as bad. */
Test(tuning_gemm, kinds_do_not_mix) {
    user_db(HEAD "{\"device\": \"host\", \"params\": {\"block_chunks\": 2}}, " G3 "]}");
    clopt_context *ctx = tu_context(TU_HOST);
    clopt_kernel_params p;
    const char *o, *gp, *go;
    TU_OK(ctx, clopt_context_kernel_params(ctx, &p, &o));
    cr_assert_eq(p.block_chunks, 2, "%s", o);
    cr_assert(strstr(o, "entry 0 (device)") && !strstr(o, "skipped"), "%s", o);
    TU_OK(ctx, clopt_context_gemm_params(ctx, &gp, &go));
    cr_assert(strstr(gp, "WGD=32"), "%s (%s)", gp, go);
    cr_assert(strstr(go, "entry 1 (vendor + type)") && !strstr(go, "skipped"), "%s", go);
    clopt_context_destroy(ctx);
    remove(db_path);
}

Test(tuning_gemm, corrupt_and_truncated_databases_fall_back) {
    expect(HEAD G2, NULL, "CLBlast's own parameters", "unreadable");
    expect("", NULL, "CLBlast's own parameters", "unreadable");
    expect("[1, 2]", NULL, "CLBlast's own parameters", "not a clopt tuning database");
    expect("{\"clopt_tuning\": 1, \"entries\": {}}", NULL, "CLBlast's own parameters",
           "\"entries\" is not an array");
}

Test(tuning_gemm, bad_entries_skipped_with_reason) {
    /* each bad level-2 entry is skipped whole; the valid level-3 entry is used */
    const char *bad[][2] = {
        {"\"gemm\": {}", "not an array"},
        {"\"gemm\": []", "not an array of 1 to"},
        {"\"gemm\": [" DIRECT(32, 8) ", 7]", "item 1: \"kernel\""},
        {"\"gemm\": [{\"kernel\": \"Xgemv\", \"precision\": 32, \"params\": {}}]",
         "\"kernel\" is not"},
        {"\"gemm\": [" DIRECT(16, 8) "]", "\"precision\" is not 32 or 64"},
        {"\"gemm\": [{\"kernel\": \"XgemmDirect\", \"precision\": \"32\", \"params\": {}}]",
         "\"precision\""},
        {"\"gemm\": [{\"kernel\": \"XgemmDirect\", \"precision\": 32}]", "\"params\" is missing"},
        {"\"gemm\": [{\"kernel\": \"XgemmDirect\", \"precision\": 32, \"params\": {\"WGD\": 8}}]",
         "parameter KWID is missing"},
        {"\"gemm\": [{\"kernel\": \"GemmRoutine\", \"precision\": 32, \"params\": "
         "{\"XGEMM_MIN_INDIRECT_SIZE\": 1, \"FAST\": 1}}]",
         "unknown parameter \"FAST\""},
        {"\"gemm\": [" DIRECT(32, 0) "]", "WGD is not an integer in [1, 256]"},
        {"\"gemm\": [" DIRECT(32, 512) "]", "WGD is not an integer in [1, 256]"},
        {"\"gemm\": [" DIRECT(32, "8") "]", "WGD is not an integer"},
        {"\"gemm\": [" DIRECT(32, 8.5) "]", "WGD is not an integer"},
        {"\"gemm\": [{\"kernel\": \"GemmRoutine\", \"precision\": 32, \"params\": "
         "{\"XGEMM_MIN_INDIRECT_SIZE\": -1}}]",
         "XGEMM_MIN_INDIRECT_SIZE is not an integer in [0, 1048576]"},
        {"\"gemm\": [" XGEMM "], \"x\": 0, \"vendor\": 3", "\"vendor\" is not a string"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char text[4096];
        snprintf(text, sizeof text, HEAD "{\"device\": \"host\", %s}, " G3 "]}", bad[i][0]);
        expect(text, "WGD=32", "(vendor + type); skipped: ", bad[i][1]);
    }
    /* a vector width that is not a power of two, a flag that is not 0 or 1 */
    char text[4096];
    snprintf(text, sizeof text, HEAD "{\"device\": \"host\", \"gemm\": [%s]}, " G3 "]}",
             "{\"kernel\": \"Xgemm\", \"precision\": 32, \"params\": {\"GEMMK\": 0, \"MWG\": 64, "
             "\"NWG\": 16, \"KWG\": 32, \"MDIMC\": 8, \"NDIMC\": 8, \"MDIMA\": 8, \"NDIMB\": 8, "
             "\"KWI\": 2, \"VWM\": 3, \"VWN\": 2, \"STRM\": 0, \"STRN\": 0, \"SA\": 1, \"SB\": 1, "
             "\"KREG\": 1}}");
    expect(text, "WGD=32", "skipped: ", "VWM is not a power of two");
    snprintf(text, sizeof text, HEAD "{\"device\": \"host\", \"gemm\": [%s]}, " G3 "]}",
             "{\"kernel\": \"XgemmDirect\", \"precision\": 32, \"params\": {\"WGD\": 8, "
             "\"MDIMCD\": 8, \"NDIMCD\": 8, \"MDIMAD\": 8, \"NDIMBD\": 8, \"KWID\": 2, \"VWMD\": 1, "
             "\"VWND\": 1, \"PADA\": 2, \"PADB\": 1}}");
    expect(text, "WGD=32", "skipped: ", "PADA is not an integer in [0, 1]");
}

Test(tuning_gemm, host_does_not_apply_and_null_arguments_refused) {
    char params[2048], origin[2048];
    gemm_lookup(HEAD G2 "]}", params, origin, sizeof params);
    cr_assert(strstr(params, "WGD=16"), "%s", params);
    cr_assert(strstr(origin, "not applied: the host backend does not use CLBlast"), "%s", origin);
    setenv("CLOPT_TUNING_DB", "off", 1);
    clopt_context *ctx = tu_context(TU_HOST);
    const char *p, *o;
    cr_assert_eq(clopt_context_gemm_params(NULL, &p, &o), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(clopt_context_gemm_params(ctx, NULL, &o), CLOPT_ERR_INVALID_ARGUMENT);
    TU_OK(ctx, clopt_context_gemm_params(ctx, &p, NULL));
    cr_assert_str_eq(p, "");
    clopt_context_destroy(ctx);
}

/* clopt_context_gemm_keep_defaults: the entry is skipped and said so; once the entry was looked
 * up it cannot be skipped (CLBlast cannot take parameters back) and nothing changes. */
Test(tuning_gemm, keep_defaults_skips_the_entry) {
    user_db(HEAD G2 "]}");
    cr_assert_eq(clopt_context_gemm_keep_defaults(NULL), CLOPT_ERR_INVALID_ARGUMENT);
    clopt_context *ctx = tu_context(TU_HOST);
    const char *p, *o;
    TU_OK(ctx, clopt_context_gemm_keep_defaults(ctx));
    TU_OK(ctx, clopt_context_gemm_keep_defaults(ctx)); /* again: still skipped */
    TU_OK(ctx, clopt_context_gemm_params(ctx, &p, &o));
    cr_assert_str_eq(p, "");
    cr_assert(strstr(o, "CLBlast's own parameters") && strstr(o, "keep_defaults"), "%s", o);
    clopt_context_destroy(ctx);

    ctx = tu_context(TU_HOST);
    TU_OK(ctx, clopt_context_gemm_params(ctx, &p, &o));
    cr_assert(strstr(p, "WGD=16"), "%s", p);
    cr_assert_eq(clopt_context_gemm_keep_defaults(ctx), CLOPT_ERR_BAD_STATE);
    cr_assert(strstr(clopt_context_last_error(ctx), "already looked up"), "%s",
              clopt_context_last_error(ctx));
    const char *p2, *o2;
    TU_OK(ctx, clopt_context_gemm_params(ctx, &p2, &o2));
    cr_assert_str_eq(p2, p);
    cr_assert_str_eq(o2, o);
    clopt_context_destroy(ctx);
    remove(db_path);
}

/* ---- POCL: Muon under tuned CLBlast parameters agrees with the host ---- */

#define NVAR 4
static const int64_t shapes[NVAR][2] = {{48, 80}, {48, 80}, {80, 48}, {96, 96}};

/* Two Muon steps (float32) on four matrices (three batched in one shape group, one alone). */
static void muon_steps(clopt_context *ctx, clopt_variable **w) {
    clopt_variable *g[NVAR];
    for (int i = 0; i < NVAR; i++) {
        const size_t n = (size_t)(shapes[i][0] * shapes[i][1]);
        double *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
        cr_assert(x && y);
        for (size_t j = 0; j < n; j++) {
            x[j] = sin(0.37 * (double)j + i);
            y[j] = cos(0.11 * (double)j * (i + 1));
        }
        char name[32];
        snprintf(name, sizeof name, "dense_%d/kernel", i);
        w[i] = tu_var_from_f64(ctx, name, CLOPT_FLOAT32, 2, shapes[i], x);
        g[i] = tu_var_from_f64(ctx, "g", CLOPT_FLOAT32, 2, shapes[i], y);
        free(x);
        free(y);
    }
    clopt_optimizer *o = tu_optimizer(
        ctx, "{\"class_name\": \"Muon\", \"config\": {\"learning_rate\": 0.1}}");
    TU_OK(ctx, clopt_optimizer_apply(o, g, w, NVAR));
    TU_OK(ctx, clopt_optimizer_apply(o, g, w, NVAR));
    TU_OK(ctx, clopt_finish(ctx));
}

static void tuned_muon(int min_indirect) {
    clopt_context *ctx = tu_context(TU_POCL);
    clopt_device_identity id;
    TU_OK(ctx, clopt_context_device_identity(ctx, &id));
    char text[4096];
    snprintf(text, sizeof text,
             HEAD "{\"device\": \"%s\", \"driver\": \"%s\", \"gemm\": [" DIRECT(32, 16) ", " XGEMM
                  ", {\"kernel\": \"GemmRoutine\", \"precision\": 32, \"params\": "
                  "{\"XGEMM_MIN_INDIRECT_SIZE\": %d}}]}]}",
             id.device, id.driver, min_indirect);
    clopt_context_destroy(ctx);
    user_db(text);
    ctx = tu_context(TU_POCL);
    clopt_context *host = tu_context(TU_HOST);
    clopt_variable *w[NVAR], *want[NVAR];
    muon_steps(ctx, w);
    muon_steps(host, want);
    const char *p, *o;
    TU_OK(ctx, clopt_context_gemm_params(ctx, &p, &o));
    cr_assert(strstr(p, "Xgemm/32: GEMMK=0") && strstr(p, "XGEMM_MIN_INDIRECT_SIZE"), "%s", p);
    cr_assert(strstr(o, "(device + driver)") && !strstr(o, "not applied"), "%s", o);
    for (int i = 0; i < NVAR; i++) {
        char what[96];
        snprintf(what, sizeof what, "variable %d, XGEMM_MIN_INDIRECT_SIZE %d", i, min_indirect);
        tu_assert_vars_close(w[i], want[i], what);
    }
    clopt_context_destroy(ctx);
    clopt_context_destroy(host);
    remove(db_path);
}

/* XGEMM_MIN_INDIRECT_SIZE 1: every product by the (tuned) indirect Xgemm kernel; 4096: every
 * product by the (tuned) direct one. */
Test(tuning_gemm_pocl, tuned_indirect_muon_matches_host) { tuned_muon(1); }
Test(tuning_gemm_pocl, tuned_direct_muon_matches_host) { tuned_muon(4096); }

/* ---- two POCL devices of one name (POCL_DEVICES="pthread pthread", tests/CMakeLists.txt) ----
 * CLBlast keys parameter overrides by cl_device_id (its DatabaseCache), which `clopt bench
 * --gemm-pair` relies on: an impossible XgemmDirect set (256 x 256 work-items, more than POCL's
 * 4096) handed to CLBlast for pocl:cpu:0 makes Muon fail there, while pocl:cpu:1 (same name, the
 * entry skipped by clopt_context_gemm_keep_defaults) runs CLBlast's own and agrees with the host. */
Test(tuning_gemm_pocl_two_devices, an_entry_stays_on_its_device) {
    clopt_context *c0 = tu_context("pocl:cpu:0");
    clopt_device_identity id;
    TU_OK(c0, clopt_context_device_identity(c0, &id));
    char text[4096];
    snprintf(text, sizeof text,
             HEAD "{\"device\": \"%s\", \"gemm\": [{\"kernel\": \"XgemmDirect\", \"precision\": "
                  "32, \"params\": {\"WGD\": 256, \"MDIMCD\": 256, \"NDIMCD\": 256, \"MDIMAD\": "
                  "256, \"NDIMBD\": 256, \"KWID\": 2, \"VWMD\": 1, \"VWND\": 1, \"PADA\": 1, "
                  "\"PADB\": 1}}, {\"kernel\": \"GemmRoutine\", \"precision\": 32, \"params\": "
                  "{\"XGEMM_MIN_INDIRECT_SIZE\": 4096}}]}]}",
             id.device);
    user_db(text);
    clopt_context *c1 = tu_context("pocl:cpu:1");
    TU_OK(c1, clopt_context_gemm_keep_defaults(c1));
    const char *p, *o;
    TU_OK(c0, clopt_context_gemm_params(c0, &p, &o)); /* handed to CLBlast for device 0 */
    cr_assert(strstr(p, "WGD=256") && !strstr(o, "not applied"), "%s (%s)", p, o);

    const int64_t shape[2] = {48, 80};
    double x[48 * 80];
    for (size_t j = 0; j < 48 * 80; j++) x[j] = sin(0.37 * (double)j);
    clopt_variable *w = tu_var_from_f64(c0, "dense/kernel", CLOPT_FLOAT32, 2, shape, x);
    clopt_variable *g = tu_var_from_f64(c0, "g", CLOPT_FLOAT32, 2, shape, x);
    clopt_optimizer *m = tu_optimizer(
        c0, "{\"class_name\": \"Muon\", \"config\": {\"learning_rate\": 0.1}}");
    clopt_status st = clopt_optimizer_apply(m, &g, &w, 1);
    if (st == CLOPT_OK) st = clopt_finish(c0);
    cr_assert_neq(st, CLOPT_OK, "the impossible set ran on pocl:cpu:0");
    cr_assert(strstr(clopt_context_last_error(c0), "CLBlast"), "%s", clopt_context_last_error(c0));

    clopt_context *host = tu_context(TU_HOST);
    clopt_variable *got[NVAR], *want[NVAR];
    muon_steps(c1, got);
    muon_steps(host, want);
    TU_OK(c1, clopt_context_gemm_params(c1, &p, &o));
    cr_assert_str_eq(p, "");
    for (int i = 0; i < NVAR; i++) tu_assert_vars_close(got[i], want[i], "pocl:cpu:1");
    clopt_context_destroy(c0);
    clopt_context_destroy(c1);
    clopt_context_destroy(host);
    remove(db_path);
}
