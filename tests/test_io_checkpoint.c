/* Checkpoint files: the layout clopt writes, loading what it wrote, and every kind of bad file
 * (truncated at every length, header length past the end, corrupted JSON, wrong dtypes and
 * shapes, bad offsets, a file for another optimizer) failing with the right status, a message
 * naming the culprit, and nothing changed; failed and killed saves leaving the previous file
 * whole; `clopt inspect`'s summary. */
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include "io/io_internal.h"
#include "io_util.h"

/* ---- a small fixture: SGD(momentum) on one float32 variable "w" [2] ----
 * Its optimizer file holds optimizer/vars/0 (I64 [], bytes 0-8), /1 (F32 [], 8-12) and /2 (F32 [2],
 * 12-20). After saving at step 2 it takes a third step, so a load that changed anything shows. */

#define SGD_M "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.1, \"momentum\": 0.9}}"
#define ADAM "{\"class_name\": \"Adam\", \"config\": {\"learning_rate\": 0.01}}"

typedef struct fx {
    clopt_context *ctx;
    clopt_variable *w, *g;
    clopt_optimizer *o;
    char *dir;
    char *opt_file;  /* clopt_optimizer_save at step 2 */
    char *full_file; /* clopt_checkpoint_save (w and the optimizer) at step 2 */
    char *bad;       /* where tests write their files */
    unsigned char data[20]; /* the optimizer file's data section */
} fx;

static void fx_step(fx *f) {
    clopt_variable *g[1] = {f->g};
    TU_OK(f->ctx, clopt_optimizer_apply(f->o, g, NULL, 1));
}

static void fx_make(fx *f, const char *spec, const char *json) {
    memset(f, 0, sizeof *f);
    f->ctx = tu_context(spec);
    const float w0[2] = {1.0f, -2.0f}, g0[2] = {0.5f, -0.25f};
    f->w = tu_var_f32(f->ctx, "w", 2, w0);
    f->g = tu_var_f32(f->ctx, "g", 2, g0);
    f->o = tu_optimizer(f->ctx, json);
    TU_OK(f->ctx, clopt_optimizer_build(f->o, &f->w, 1));
    fx_step(f);
    fx_step(f);
    f->dir = io_tmpdir();
    f->opt_file = io_path(f->dir, "opt.safetensors");
    f->full_file = io_path(f->dir, "full.safetensors");
    f->bad = io_path(f->dir, "bad.safetensors");
    TU_OK(f->ctx, clopt_optimizer_save(f->o, f->opt_file));
    TU_OK(f->ctx, clopt_checkpoint_save(f->o, &f->w, 1, f->full_file));
    size_t n;
    unsigned char *b = io_read(f->opt_file, &n);
    if (n >= sizeof f->data) memcpy(f->data, b + n - sizeof f->data, sizeof f->data);
    free(b);
    fx_step(f);
}

static void fx_free(fx *f) {
    clopt_context_destroy(f->ctx);
    io_rmdir(f->dir);
    free(f->dir), free(f->opt_file), free(f->full_file), free(f->bad);
}

/* Everything an optimizer and its model hold: every entry of the variable list (device bytes or
 * the host value), the model variables' bytes. */
typedef struct snap {
    size_t n;
    unsigned char *bytes[80];
    size_t nbytes[80];
} snap;

static void snap_take(snap *s, const clopt_optimizer *o, clopt_variable *const *vars, size_t nv) {
    memset(s, 0, sizeof *s);
    size_t n = clopt_optimizer_variable_count(o);
    cr_assert(n + nv <= 80);
    for (size_t i = 0; i < n; i++) {
        clopt_variable *v = NULL;
        cr_assert(clopt_optimizer_variable(o, i, NULL, NULL, &v) == CLOPT_OK);
        if (v) {
            s->bytes[s->n] = tu_read_bytes(v, &s->nbytes[s->n]);
        } else {
            s->bytes[s->n] = malloc(sizeof(double));
            s->nbytes[s->n] = sizeof(double);
            cr_assert(clopt_optimizer_variable_read(o, i, (double *)s->bytes[s->n], 1) == CLOPT_OK);
        }
        s->n++;
    }
    for (size_t i = 0; i < nv; i++, s->n++) s->bytes[s->n] = tu_read_bytes(vars[i], &s->nbytes[s->n]);
}

static void snap_assert_same(const snap *s, const clopt_optimizer *o, clopt_variable *const *vars,
                             size_t nv, const char *what) {
    snap now;
    snap_take(&now, o, vars, nv);
    cr_assert_eq(now.n, s->n, "%s: the variable list changed", what);
    for (size_t i = 0; i < s->n; i++) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s: entry %zu changed", what, i);
        cr_assert_eq(now.nbytes[i], s->nbytes[i], "%s", msg);
        tu_assert_same_bytes(now.bytes[i], s->bytes[i], s->nbytes[i], msg);
    }
    for (size_t i = 0; i < now.n; i++) free(now.bytes[i]);
}

static void snap_free(snap *s) {
    for (size_t i = 0; i < s->n; i++) free(s->bytes[i]);
}

/* Loads `path` (into the optimizer alone, or with the model variable when `full`), expects
 * status `want` with an error naming the file and `needle`, and nothing changed. */
static void expect_load_fails(fx *f, const char *path, int full, clopt_status want,
                              const char *needle, const char *what) {
    snap s;
    snap_take(&s, f->o, &f->w, 1);
    clopt_status st = full ? clopt_checkpoint_load(f->o, &f->w, 1, path)
                           : clopt_optimizer_load(f->o, path);
    cr_assert_eq(st, want, "%s: load returned %s, expected %s (%s)", what, clopt_status_name(st),
                 clopt_status_name(want), clopt_context_last_error(f->ctx));
    const char *e = clopt_context_last_error(f->ctx);
    cr_assert(strstr(e, path), "%s: the message \"%s\" does not name the file", what, e);
    if (needle)
        cr_assert(strstr(e, needle), "%s: the message \"%s\" does not mention \"%s\"", what, e,
                  needle);
    snap_assert_same(&s, f->o, &f->w, 1, what);
    snap_free(&s);
}

/* Writes a safetensors file: the 8-byte length of `header`, the header, the data. */
static void craft(const char *path, const char *header, const void *data, size_t n) {
    size_t h = strlen(header);
    unsigned char *b = malloc(8 + h + n + 1);
    cr_assert(b);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    if (n) memcpy(b + 8 + h, data, n);
    io_write(path, b, 8 + h + n);
    free(b);
}

#define T(name, dtype, shape, b, e)                                                             \
    "\"" name "\": {\"dtype\": \"" dtype "\", \"shape\": " shape ", \"data_offsets\": [" #b ", " \
    #e "]}"
#define T0 T("optimizer/vars/0", "I64", "[]", 0, 8)
#define T1 T("optimizer/vars/1", "F32", "[]", 8, 12)
#define T2 T("optimizer/vars/2", "F32", "[2]", 12, 20)

/* Crafts `header` over the fixture's data (zero-extended to n bytes) and expects the failure. */
static void expect_crafted_fails(fx *f, const char *header, size_t n, clopt_status want,
                                 const char *needle) {
    unsigned char data[64] = {0};
    memcpy(data, f->data, sizeof f->data);
    cr_assert(n <= sizeof data);
    craft(f->bad, header, data, n);
    expect_load_fails(f, f->bad, 0, want, needle, header);
}

/* ---- what a saved file holds ---- */

static uint64_t le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* Reads the file independently of the library's reader: header length, JSON, metadata, every
 * tensor in Keras order with contiguous offsets, and the values. */
Test(io_save_host, layout_is_keras_order_safetensors) {
    fx f;
    fx_make(&f, TU_HOST, SGD_M);
    size_t n;
    unsigned char *b = io_read(f.full_file, &n);
    uint64_t hl = le64(b);
    cr_assert(hl % 8 == 0 && 8 + hl <= n, "header length %llu", (unsigned long long)hl);
    json_error_t je;
    json_t *h = json_loadb((const char *)b + 8, hl, 0, &je);
    cr_assert(h, "header JSON: %s", je.text);
    json_t *m = json_object_get(h, "__metadata__");
    cr_assert_str_eq(json_string_value(json_object_get(m, "format")), "clopt");
    cr_assert_str_eq(json_string_value(json_object_get(m, "format_version")), "1");
    cr_assert_str_eq(json_string_value(json_object_get(m, "clopt_version")),
                     clopt_version_string());
    char *cfg = NULL;
    TU_OK(f.ctx, clopt_optimizer_get_config(f.o, &cfg));
    cr_assert_str_eq(json_string_value(json_object_get(m, "optimizer_config")), cfg);
    clopt_free(cfg);
    cr_assert_str_eq(json_string_value(json_object_get(m, "optimizer_variables")),
                     "[\"SGD/iteration\", \"SGD/learning_rate\", \"SGD/w_momentum\"]");
    /* model/w, then optimizer/vars/0..2, contiguous, in that order */
    const char *names[] = {"model/w", "optimizer/vars/0", "optimizer/vars/1", "optimizer/vars/2"};
    const char *dtypes[] = {"F32", "I64", "F32", "F32"};
    const int64_t sizes[] = {8, 8, 4, 8};
    const int ndims[] = {1, 0, 0, 1};
    cr_assert_eq(json_object_size(h), 5);
    const char *key;
    json_t *val;
    int k = 0;
    uint64_t pos = 0;
    json_object_foreach(h, key, val) {
        if (!strcmp(key, "__metadata__")) continue;
        cr_assert_str_eq(key, names[k]);
        cr_assert_str_eq(json_string_value(json_object_get(val, "dtype")), dtypes[k]);
        cr_assert_eq(json_array_size(json_object_get(val, "shape")), (size_t)ndims[k]);
        json_t *off = json_object_get(val, "data_offsets");
        cr_assert_eq(json_integer_value(json_array_get(off, 0)), (json_int_t)pos);
        cr_assert_eq(json_integer_value(json_array_get(off, 1)), (json_int_t)(pos + sizes[k]));
        pos += (uint64_t)sizes[k];
        k++;
    }
    cr_assert_eq(8 + hl + pos, n, "the data must end the file");
    const unsigned char *d = b + 8 + hl;
    cr_assert_eq(le64(d + 8), 2, "optimizer/vars/0 is the iteration count at the save");
    float lr;
    memcpy(&lr, d + 16, 4);
    cr_assert_eq(lr, 0.1f);
    /* momentum after two steps of g: m = -lr*g, then 0.9*m - lr*g */
    float mom[2];
    memcpy(mom, d + 20, 8);
    cr_assert_float_eq(mom[0], 0.9f * -0.05f - 0.05f, 1e-7);
    json_decref(h);
    free(b);
    fx_free(&f);
}

/* A load restores the iteration count, the learning rate (a variable, as in Keras: the value the
 * optimizer had when saved, not the one set since) and the slots. */
Test(io_load_host, restores_every_value) {
    fx f;
    fx_make(&f, TU_HOST, SGD_M);
    clopt_context *c2 = tu_context(TU_HOST);
    const float zero[2] = {0, 0};
    clopt_variable *w2 = tu_var_f32(c2, "w", 2, zero);
    clopt_optimizer *o2 = tu_optimizer(c2, SGD_M);
    TU_OK(c2, clopt_optimizer_build(o2, &w2, 1));
    TU_OK(c2, clopt_optimizer_set_learning_rate(o2, 0.5));
    TU_OK(c2, clopt_checkpoint_load(o2, &w2, 1, f.full_file));
    cr_assert_eq(clopt_optimizer_iterations(o2), 2);
    double lr, m[2];
    TU_OK(c2, clopt_optimizer_get_learning_rate(o2, &lr));
    cr_assert_eq(lr, (double)0.1f);
    TU_OK(c2, clopt_optimizer_variable_read(o2, 2, m, 2));
    cr_assert_float_eq(m[0], 0.9f * -0.05f - 0.05f, 1e-7);
    /* w after two steps: 1 + m1 + m2 */
    float w[2];
    TU_OK(c2, clopt_variable_read(w2, w, sizeof w));
    cr_assert_float_eq(w[0], 1.0f - 0.05f + (0.9f * -0.05f - 0.05f), 1e-6);
    /* the optimizer-only load leaves the model alone and the full file serves it too */
    TU_OK(c2, clopt_optimizer_load(o2, f.opt_file));
    TU_OK(c2, clopt_optimizer_load(o2, f.full_file));
    /* and a model-only load ignores the optimizer tensors */
    TU_OK(c2, clopt_checkpoint_load(NULL, &w2, 1, f.full_file));
    clopt_context_destroy(c2);
    fx_free(&f);
}

/* A file another tool wrote: no metadata, tensors listed in sorted-name order ("10" before "2")
 * with their data in reverse order, iteration as I32. Names, not positions, decide. */
Test(io_load_host, keras_layout_from_another_writer) {
    clopt_context *ctx = tu_context(TU_HOST);
    io_model m;
    io_model_make(&m, ctx, 1);
    clopt_optimizer *o = tu_optimizer(ctx, ADAM);
    TU_OK(ctx, clopt_optimizer_build(o, m.vars, IO_NVARS));
    io_train(o, &m, 0, 3, 0);
    char *dir = io_tmpdir(), *good = io_path(dir, "good"), *other = io_path(dir, "other");
    TU_OK(ctx, clopt_optimizer_save(o, good));
    clopt__st_file f;
    char err[CLOPT__IO_ERRN];
    cr_assert_eq(clopt__st_read(good, &f, err, sizeof err), CLOPT_OK, "%s", err);
    /* sorted names */
    size_t nt = f.ntensors;
    const clopt__st_tensor **t = malloc(nt * sizeof *t);
    for (size_t i = 0; i < nt; i++) t[i] = &f.tensors[i];
    for (size_t i = 0; i < nt; i++)
        for (size_t j = i + 1; j < nt; j++)
            if (strcmp(t[j]->name, t[i]->name) < 0) {
                const clopt__st_tensor *x = t[i];
                t[i] = t[j];
                t[j] = x;
            }
    json_t *h = json_object();
    unsigned char *data = malloc(f.data_size + 1);
    uint64_t pos = f.data_size - 4; /* the I32 iteration is 4 bytes shorter */
    size_t used = 0;
    for (size_t i = 0; i < nt; i++) {
        uint64_t len = t[i]->end - t[i]->begin;
        int iter = !strcmp(t[i]->name, "optimizer/vars/0");
        if (iter) len = 4;
        pos -= len; /* reverse order: the first listed tensor's data comes last */
        if (iter) {
            int32_t v = (int32_t)le64(f.data + t[i]->begin);
            memcpy(data + pos, &v, 4);
        } else {
            memcpy(data + pos, f.data + t[i]->begin, len);
        }
        used += len;
        json_t *sh = json_array();
        for (int d = 0; d < t[i]->ndim; d++) json_array_append_new(sh, json_integer(t[i]->shape[d]));
        json_object_set_new(h, t[i]->name,
                            json_pack("{s:s, s:o, s:[I,I]}", "dtype",
                                      iter ? "I32" : clopt__st_dtype_name(t[i]->dtype), "shape",
                                      sh, "data_offsets", (json_int_t)pos,
                                      (json_int_t)(pos + len)));
    }
    cr_assert_eq(pos, 0);
    char *text = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
    cr_assert(strstr(text, "\"optimizer/vars/10\"") < strstr(text, "\"optimizer/vars/2\""));
    craft(other, text, data, used);
    free(text);
    json_decref(h);
    free(data);
    free(t);
    clopt__st_free(&f);

    clopt_context *c2 = tu_context(TU_HOST);
    io_model m2;
    io_model_make(&m2, c2, 2);
    clopt_optimizer *o2 = tu_optimizer(c2, ADAM);
    TU_OK(c2, clopt_optimizer_build(o2, m2.vars, IO_NVARS));
    TU_OK(c2, clopt_optimizer_load(o2, other));
    /* the two optimizers agree entry by entry (models differ: compare the optimizer alone) */
    size_t n = clopt_optimizer_variable_count(o);
    for (size_t i = 0; i < n; i++) {
        clopt_variable *va, *vb;
        TU_OK(ctx, clopt_optimizer_variable(o, i, NULL, NULL, &va));
        TU_OK(c2, clopt_optimizer_variable(o2, i, NULL, NULL, &vb));
        double x[32], y[32];
        size_t cnt = va ? (size_t)clopt_variable_size(va) : 1;
        TU_OK(ctx, clopt_optimizer_variable_read(o, i, x, cnt));
        TU_OK(c2, clopt_optimizer_variable_read(o2, i, y, cnt));
        tu_assert_same_bytes(x, y, cnt * sizeof *x, "optimizer variable");
    }
    clopt_context_destroy(c2);
    clopt_context_destroy(ctx);
    io_rmdir(dir);
    free(dir), free(good), free(other);
}

/* ---- bad files ---- */

static void truncated_every_length(const char *spec) {
    fx f;
    fx_make(&f, spec, SGD_M);
    size_t n;
    unsigned char *b = io_read(f.full_file, &n);
    for (size_t len = 0; len < n; len++) {
        io_write(f.bad, b, len);
        char what[96];
        snprintf(what, sizeof what, "the file cut to %zu of %zu bytes", len, n);
        expect_load_fails(&f, f.bad, 1, CLOPT_ERR_CORRUPT_FILE, NULL, what);
    }
    /* and the whole file loads */
    TU_OK(f.ctx, clopt_checkpoint_load(f.o, &f.w, 1, f.full_file));
    free(b);
    fx_free(&f);
}

Test(io_load_host, truncated_at_every_length) { truncated_every_length(TU_HOST); }
Test(io_load_pocl, truncated_at_every_length) { truncated_every_length(TU_POCL); }

Test(io_load_host, header_length_beyond_the_file) {
    fx f;
    fx_make(&f, TU_HOST, SGD_M);
    size_t n;
    unsigned char *b = io_read(f.opt_file, &n);
    uint64_t lens[] = {n - 8 + 1, n, (uint64_t)1 << 40, UINT64_MAX, 0, 1};
    const char *needles[] = {"runs past the end", "runs past the end", "exceeds the cap",
                             "exceeds the cap", "does not start with '{'", "does not start"};
    for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
        for (int k = 0; k < 8; k++) b[k] = (unsigned char)(lens[i] >> (8 * k));
        io_write(f.bad, b, n);
        expect_load_fails(&f, f.bad, 0, CLOPT_ERR_CORRUPT_FILE, needles[i], needles[i]);
    }
    free(b);
    fx_free(&f);
}

Test(io_load_host, corrupted_json) {
    fx f;
    fx_make(&f, TU_HOST, SGD_M);
    expect_crafted_fails(&f, "{" T0 ", " T1 ", " T2, 20, CLOPT_ERR_CORRUPT_FILE, "not valid JSON");
    expect_crafted_fails(&f, "{" T0 ",, " T1 ", " T2 "}", 20, CLOPT_ERR_CORRUPT_FILE,
                         "byte offset");
    expect_crafted_fails(&f, "[1, 2]   ", 20, CLOPT_ERR_CORRUPT_FILE, "does not start with '{'");
    expect_crafted_fails(&f, "{" T0 ", " T1 ", " T2 "} x", 20, CLOPT_ERR_CORRUPT_FILE,
                         "not valid JSON");
    expect_crafted_fails(&f, "{" T0 ", " T1 ", " T2 ", " T("optimizer/vars/2", "F32", "[2]", 12, 20) "}",
                         20, CLOPT_ERR_CORRUPT_FILE, "duplicate");
    expect_crafted_fails(&f, "{\"__metadata__\": {\"format\": 1}, " T0 ", " T1 ", " T2 "}", 20,
                         CLOPT_ERR_CORRUPT_FILE, "__metadata__ value 'format'");
    expect_crafted_fails(&f, "{\"__metadata__\": [], " T0 ", " T1 ", " T2 "}", 20,
                         CLOPT_ERR_CORRUPT_FILE, "__metadata__ is not an object");
    expect_crafted_fails(&f, "{\"optimizer/vars/0\": 5, " T1 ", " T2 "}", 20,
                         CLOPT_ERR_CORRUPT_FILE, "'optimizer/vars/0'");
    expect_crafted_fails(&f,
                         "{\"optimizer/vars/0\": {\"dtype\": \"I64\", \"shape\": [], "
                         "\"data_offsets\": [0, 8], \"extra\": 1}, " T1 ", " T2 "}",
                         20, CLOPT_ERR_CORRUPT_FILE, "unknown key 'extra'");
    expect_crafted_fails(&f,
                         "{\"optimizer/vars/0\": {\"dtype\": \"I64\", \"shape\": []}, " T1 ", " T2
                         "}",
                         20, CLOPT_ERR_CORRUPT_FILE, "missing 'data_offsets'");
    fx_free(&f);
}

/* Every byte of the header replaced by a few values: whatever the outcome, a failed load changes
 * nothing, and the status is one of the file statuses. */
Test(io_load_host, every_header_byte_mutated) {
    fx f;
    fx_make(&f, TU_HOST, SGD_M);
    size_t n;
    unsigned char *b = io_read(f.full_file, &n);
    uint64_t hl = le64(b);
    const unsigned char repl[] = {'x', '"', '}', '{', '9', ',', ' ', 0x00, 0xff};
    snap s;
    snap_take(&s, f.o, &f.w, 1);
    int fails = 0;
    for (size_t pos = 8; pos < 8 + hl; pos++) {
        unsigned char keep = b[pos];
        for (size_t r = 0; r < sizeof repl; r++) {
            if (repl[r] == keep) continue;
            b[pos] = repl[r];
            io_write(f.bad, b, n);
            clopt_status st = clopt_checkpoint_load(f.o, &f.w, 1, f.bad);
            cr_assert(st == CLOPT_OK || st == CLOPT_ERR_CORRUPT_FILE ||
                          st == CLOPT_ERR_FILE_MISMATCH,
                      "byte %zu set to 0x%02x: %s (%s)", pos, repl[r], clopt_status_name(st),
                      clopt_context_last_error(f.ctx));
            if (st == CLOPT_OK) { /* e.g. a changed version string: the state is the file's */
                snap_free(&s);
                snap_take(&s, f.o, &f.w, 1);
            } else {
                fails++;
                char what[96];
                snprintf(what, sizeof what, "byte %zu set to 0x%02x", pos, repl[r]);
                snap_assert_same(&s, f.o, &f.w, 1, what);
            }
        }
        b[pos] = keep;
    }
    cr_assert_gt(fails, (int)hl, "most mutations must be refused");
    snap_free(&s);
    free(b);
    fx_free(&f);
}

Test(io_load_host, wrong_dtypes) {
    fx f;
    fx_make(&f, TU_HOST, SGD_M);
    expect_crafted_fails(&f, "{" T0 ", " T1 ", " T("optimizer/vars/2", "F33", "[2]", 12, 20) "}",
                         20, CLOPT_ERR_CORRUPT_FILE, "unknown dtype 'F33'");
    expect_crafted_fails(&f,
                         "{" T0 ", " T1 ", \"optimizer/vars/2\": {\"dtype\": 4, \"shape\": [2], "
                         "\"data_offsets\": [12, 20]}}",
                         20, CLOPT_ERR_CORRUPT_FILE, "'optimizer/vars/2': unknown dtype");
    /* well formed, but the slot is float32 */
    expect_crafted_fails(&f, "{" T0 ", " T1 ", " T("optimizer/vars/2", "F64", "[2]", 12, 28) "}",
                         28, CLOPT_ERR_FILE_MISMATCH, "'optimizer/vars/2' is F64");
    expect_crafted_fails(&f, "{" T0 ", " T1 ", " T("optimizer/vars/2", "F16", "[2]", 12, 16) "}",
                         16, CLOPT_ERR_FILE_MISMATCH, "SGD/w_momentum");
    expect_crafted_fails(&f, "{" T("optimizer/vars/0", "F64", "[]", 0, 8) ", " T1 ", " T2 "}", 20,
                         CLOPT_ERR_FILE_MISMATCH, "'optimizer/vars/0' is F64");
    expect_crafted_fails(&f, "{" T0 ", " T("optimizer/vars/1", "I32", "[]", 8, 12) ", " T2 "}", 20,
                         CLOPT_ERR_FILE_MISMATCH, "SGD/learning_rate");
    fx_free(&f);
}

Test(io_load_host, wrong_shapes) {
    fx f;
    fx_make(&f, TU_HOST, SGD_M);
    /* well formed, other shapes than the optimizer's */
    expect_crafted_fails(&f, "{" T0 ", " T1 ", " T("optimizer/vars/2", "F32", "[3]", 12, 24) "}",
                         24, CLOPT_ERR_FILE_MISMATCH, "has shape [3]");
    expect_crafted_fails(&f, "{" T0 ", " T1 ", " T("optimizer/vars/2", "F32", "[2, 1]", 12, 20) "}",
                         20, CLOPT_ERR_FILE_MISMATCH, "has shape [2, 1], but 'SGD/w_momentum'");
    expect_crafted_fails(&f, "{" T("optimizer/vars/0", "I64", "[1]", 0, 8) ", " T1 ", " T2 "}", 20,
                         CLOPT_ERR_FILE_MISMATCH, "'optimizer/vars/0' has shape [1]");
    /* malformed: the shape does not fit the offsets, or is not a shape */
    expect_crafted_fails(&f, "{" T0 ", " T1 ", " T("optimizer/vars/2", "F32", "[3]", 12, 20) "}",
                         20, CLOPT_ERR_CORRUPT_FILE, "needs 12 bytes");
    expect_crafted_fails(&f, "{" T0 ", " T1 ", " T("optimizer/vars/2", "F32", "[-2]", 12, 20) "}",
                         20, CLOPT_ERR_CORRUPT_FILE, "shape dimension 0");
    expect_crafted_fails(&f, "{" T0 ", " T1 ", " T("optimizer/vars/2", "F32", "[2.0]", 12, 20) "}",
                         20, CLOPT_ERR_CORRUPT_FILE, "shape dimension 0");
    expect_crafted_fails(&f, "{" T0 ", " T1 ", " T("optimizer/vars/2", "F32", "\"2\"", 12, 20) "}",
                         20, CLOPT_ERR_CORRUPT_FILE, "shape is not an array");
    expect_crafted_fails(&f,
                         "{" T0 ", " T1 ", " T("optimizer/vars/2", "F32",
                                               "[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,"
                                               "1,1,1,1,1,1,1,1,2]",
                                               12, 20) "}",
                         20, CLOPT_ERR_CORRUPT_FILE, "at most 32");
    expect_crafted_fails(&f,
                         "{" T0 ", " T1 ", " T("optimizer/vars/2", "F32",
                                               "[4294967296, 4294967296, 4294967296]", 12, 20) "}",
                         20, CLOPT_ERR_CORRUPT_FILE, "needs more than");
    fx_free(&f);
}

Test(io_load_host, bad_offsets) {
    fx f;
    fx_make(&f, TU_HOST, SGD_M);
    expect_crafted_fails(&f, "{" T0 ", " T("optimizer/vars/1", "F32", "[]", 6, 10) ", " T2 "}", 20,
                         CLOPT_ERR_CORRUPT_FILE, "overlaps");
    expect_crafted_fails(&f, "{" T0 ", " T1 ", " T("optimizer/vars/2", "F32", "[2]", 16, 24) "}",
                         24, CLOPT_ERR_CORRUPT_FILE, "belong to no tensor");
    expect_crafted_fails(&f, "{" T0 ", " T1 ", " T("optimizer/vars/2", "F32", "[2]", 12, 28) "}",
                         20, CLOPT_ERR_CORRUPT_FILE, "end beyond the data");
    expect_crafted_fails(&f, "{" T0 ", " T1 ", " T("optimizer/vars/2", "F32", "[2]", 20, 12) "}",
                         20, CLOPT_ERR_CORRUPT_FILE, "begin after end");
    expect_crafted_fails(&f, "{" T0 ", " T1 ", " T2 "}", 24, CLOPT_ERR_CORRUPT_FILE,
                         "trailing bytes");
    expect_crafted_fails(&f, "{" T0 ", " T1 ", " T("optimizer/vars/2", "F32", "[2]", -12, 20) "}",
                         20, CLOPT_ERR_CORRUPT_FILE, "data_offsets is not");
    expect_crafted_fails(&f,
                         "{" T0 ", " T1 ", \"optimizer/vars/2\": {\"dtype\": \"F32\", \"shape\": "
                         "[2], \"data_offsets\": [12, 20, 28]}}",
                         20, CLOPT_ERR_CORRUPT_FILE, "data_offsets is not");
    /* the same bytes claimed twice */
    expect_crafted_fails(&f, "{" T0 ", " T("optimizer/vars/1", "F32", "[]", 0, 4) ", " T2 "}", 20,
                         CLOPT_ERR_CORRUPT_FILE, "overlaps");
    fx_free(&f);
}

Test(io_load_host, wrong_tensor_set) {
    fx f;
    fx_make(&f, TU_HOST, SGD_M);
    expect_crafted_fails(&f, "{" T0 ", " T1 "}", 12, CLOPT_ERR_FILE_MISMATCH,
                         "holds 2 optimizer tensors, the optimizer has 3");
    expect_crafted_fails(&f, "{" T0 ", " T1 ", " T2 ", " T("optimizer/vars/3", "F32", "[2]", 20, 28) "}",
                         28, CLOPT_ERR_FILE_MISMATCH, "holds 4 optimizer tensors");
    expect_crafted_fails(&f, "{" T0 ", " T1 ", " T("optimizer/vars/02", "F32", "[2]", 12, 20) "}",
                         20, CLOPT_ERR_FILE_MISMATCH, "no tensor 'optimizer/vars/2'");
    fx_free(&f);
}

Test(io_load_host, bad_values) {
    fx f;
    fx_make(&f, TU_HOST, SGD_M);
    unsigned char d[20];
    memcpy(d, f.data, 20);
    memset(d, 0xff, 8); /* iteration -1 */
    craft(f.bad, "{" T0 ", " T1 ", " T2 "}", d, 20);
    expect_load_fails(&f, f.bad, 0, CLOPT_ERR_CORRUPT_FILE, "holds -1", "negative iteration");
    memcpy(d, f.data, 20);
    const float nan = NAN;
    memcpy(d + 8, &nan, 4);
    craft(f.bad, "{" T0 ", " T1 ", " T2 "}", d, 20);
    expect_load_fails(&f, f.bad, 0, CLOPT_ERR_CORRUPT_FILE, "not a finite learning rate",
                      "NaN learning rate");
    /* an I32 iteration counter (Keras on JAX and torch) is accepted */
    int32_t it = 7;
    memcpy(d, &it, 4);
    memcpy(d + 4, f.data + 8, 12);
    craft(f.bad,
          "{" T("optimizer/vars/0", "I32", "[]", 0, 4) ", " T("optimizer/vars/1", "F32", "[]", 4, 8)
          ", " T("optimizer/vars/2", "F32", "[2]", 8, 16) "}",
          d, 16);
    TU_OK(f.ctx, clopt_optimizer_load(f.o, f.bad));
    cr_assert_eq(clopt_optimizer_iterations(f.o), 7);
    fx_free(&f);
}

/* A new optimizer from `json`, built on `var` (in var's context), its state saved as dir/name
 * with clopt_optimizer_save; returns the path (the caller frees it), and the optimizer in *out
 * when out is not NULL. */
static char *saved_optimizer(const char *dir, const char *name, const char *json,
                             clopt_variable *var, clopt_optimizer **out) {
    clopt_context *ctx = clopt_variable_context(var);
    clopt_optimizer *o = tu_optimizer(ctx, json);
    TU_OK(ctx, clopt_optimizer_build(o, &var, 1));
    char *path = io_path(dir, name);
    TU_OK(ctx, clopt_optimizer_save(o, path));
    if (out) *out = o;
    return path;
}

/* The metadata's class, format version and config. */
Test(io_load_host, file_for_another_optimizer) {
    fx f;
    fx_make(&f, TU_HOST, SGD_M);
    /* Adam's state (4 tensors) into SGD(momentum): the class decides first */
    clopt_variable *w = f.w;
    clopt_context *c2 = tu_context(TU_HOST);
    const float z[2] = {0, 0};
    clopt_variable *w2 = tu_var_f32(c2, "w", 2, z);
    clopt_optimizer *adam = NULL;
    char *adam_file = saved_optimizer(f.dir, "adam.safetensors", ADAM, w2, &adam);
    expect_load_fails(&f, adam_file, 0, CLOPT_ERR_FILE_MISMATCH,
                      "the state of an optimizer of class 'Adam', this one is 'SGD'",
                      "Adam file into SGD");
    /* and the other way round */
    snap s;
    snap_take(&s, adam, &w2, 1);
    TU_ASSERT_STATUS(c2, clopt_optimizer_load(adam, f.opt_file), CLOPT_ERR_FILE_MISMATCH);
    tu_assert_error_mentions(c2, "SGD");
    snap_assert_same(&s, adam, &w2, 1, "SGD file into Adam");
    snap_free(&s);
    /* SGD without momentum: the same class, another variable list */
    char *plain_file = saved_optimizer(f.dir, "plain.safetensors",
                                       "{\"class_name\": \"SGD\", \"config\": {}}", w2, NULL);
    expect_load_fails(&f, plain_file, 0, CLOPT_ERR_FILE_MISMATCH,
                      "holds 2 optimizer tensors, the optimizer has 3", "SGD file into SGD(m)");
    /* a file built on variables of another shape */
    const int64_t three = 3;
    clopt_variable *w3 = tu_var(c2, "w3", CLOPT_FLOAT32, 1, &three, NULL);
    char *sgd3_file = saved_optimizer(f.dir, "sgd3.safetensors", SGD_M, w3, NULL);
    expect_load_fails(&f, sgd3_file, 0, CLOPT_ERR_FILE_MISMATCH, "has shape [3]", "[3] into [2]");
    /* LossScaleOptimizer: the inner class counts */
    clopt_optimizer *lso_adam = tu_optimizer(
        c2, "{\"class_name\": \"LossScaleOptimizer\", \"config\": {\"inner_optimizer\": "
            "{\"class_name\": \"Adam\", \"config\": {}}}}");
    clopt_optimizer *lso_sgd = tu_optimizer(
        c2, "{\"class_name\": \"LossScaleOptimizer\", \"config\": {\"inner_optimizer\": "
            "{\"class_name\": \"SGD\", \"config\": {\"momentum\": 0.5}}}}");
    const int64_t one = 1;
    clopt_variable *u = tu_var(c2, "u", CLOPT_FLOAT32, 1, &one, NULL);
    TU_OK(c2, clopt_optimizer_build(lso_adam, &u, 1));
    TU_OK(c2, clopt_optimizer_build(lso_sgd, &u, 1));
    char *lso_file = io_path(f.dir, "lso.safetensors");
    TU_OK(c2, clopt_optimizer_save(lso_sgd, lso_file));
    TU_ASSERT_STATUS(c2, clopt_optimizer_load(lso_adam, lso_file), CLOPT_ERR_FILE_MISMATCH);
    tu_assert_error_mentions(c2, "an inner optimizer of class 'SGD', this one is 'Adam'");
    TU_OK(c2, clopt_optimizer_load(lso_sgd, lso_file));
    (void)w;
    clopt_context_destroy(c2);
    free(adam_file), free(plain_file), free(sgd3_file), free(lso_file);
    fx_free(&f);
}

Test(io_load_host, metadata_checks) {
    fx f;
    fx_make(&f, TU_HOST, SGD_M);
    expect_crafted_fails(&f, "{\"__metadata__\": {\"format_version\": \"2\"}, " T0 ", " T1 ", " T2 "}",
                         20, CLOPT_ERR_FILE_MISMATCH, "format version 2 is newer");
    expect_crafted_fails(&f, "{\"__metadata__\": {\"format_version\": \"one\"}, " T0 ", " T1 ", " T2
                             "}",
                         20, CLOPT_ERR_CORRUPT_FILE, "format_version 'one'");
    expect_crafted_fails(&f, "{\"__metadata__\": {\"optimizer_config\": \"{nope\"}, " T0 ", " T1
                             ", " T2 "}",
                         20, CLOPT_ERR_CORRUPT_FILE, "optimizer_config is not a JSON object");
    expect_crafted_fails(&f, "{\"__metadata__\": {\"optimizer_config\": \"{\\\"class_name\\\": "
                             "\\\"Lion\\\"}\"}, " T0 ", " T1 ", " T2 "}",
                         20, CLOPT_ERR_FILE_MISMATCH, "class 'Lion'");
    /* no metadata at all: the tensors decide */
    craft(f.bad, "{" T0 ", " T1 ", " T2 "}", f.data, 20);
    TU_OK(f.ctx, clopt_optimizer_load(f.o, f.bad));
    cr_assert_eq(clopt_optimizer_iterations(f.o), 2);
    fx_free(&f);
}

Test(io_load_host, model_variables_must_match) {
    fx f;
    fx_make(&f, TU_HOST, SGD_M);
    /* a variable the file does not have */
    const float z[2] = {0, 0};
    clopt_variable *v = tu_var_f32(f.ctx, "v", 2, z);
    clopt_variable *both[2] = {f.w, v};
    snap s;
    snap_take(&s, f.o, both, 2);
    TU_ASSERT_STATUS(f.ctx, clopt_checkpoint_load(f.o, both, 2, f.full_file),
                     CLOPT_ERR_FILE_MISMATCH);
    tu_assert_error_mentions(f.ctx, "no tensor 'model/v'");
    snap_assert_same(&s, f.o, both, 2, "a missing model tensor");
    snap_free(&s);
    /* a file tensor no variable takes */
    TU_ASSERT_STATUS(f.ctx, clopt_checkpoint_load(f.o, &v, 1, f.full_file), CLOPT_ERR_FILE_MISMATCH);
    tu_assert_error_mentions(f.ctx, "no tensor 'model/v'");
    char *two = io_path(f.dir, "two.safetensors");
    TU_OK(f.ctx, clopt_checkpoint_save(f.o, both, 2, two));
    expect_load_fails(&f, two, 1, CLOPT_ERR_FILE_MISMATCH, "'model/v' matches none", "extra model/v");
    /* a model tensor of another shape or dtype */
    clopt_context *c2 = tu_context(TU_HOST);
    const int64_t three = 3;
    clopt_variable *w3 = tu_var(c2, "w", CLOPT_FLOAT32, 1, &three, NULL);
    clopt_variable *w64 = tu_var(c2, "w", CLOPT_FLOAT64, 1, (const int64_t[]){2}, NULL);
    char *p3 = io_path(f.dir, "w3.safetensors"), *p64 = io_path(f.dir, "w64.safetensors");
    TU_OK(c2, clopt_checkpoint_save(NULL, &w3, 1, p3));
    TU_OK(c2, clopt_checkpoint_save(NULL, &w64, 1, p64));
    snap_take(&s, f.o, &f.w, 1);
    TU_ASSERT_STATUS(f.ctx, clopt_checkpoint_load(NULL, &f.w, 1, p3), CLOPT_ERR_FILE_MISMATCH);
    tu_assert_error_mentions(f.ctx, "'model/w' has shape [3], but 'w' has shape [2]");
    TU_ASSERT_STATUS(f.ctx, clopt_checkpoint_load(NULL, &f.w, 1, p64), CLOPT_ERR_FILE_MISMATCH);
    tu_assert_error_mentions(f.ctx, "'model/w' is F64, but 'w' is F32");
    /* a model-only file has no optimizer state */
    TU_ASSERT_STATUS(f.ctx, clopt_checkpoint_load(f.o, &f.w, 1, p3), CLOPT_ERR_FILE_MISMATCH);
    tu_assert_error_mentions(f.ctx, "holds 0 optimizer tensors");
    snap_assert_same(&s, f.o, &f.w, 1, "model mismatches");
    snap_free(&s);
    clopt_context_destroy(c2);
    free(two), free(p3), free(p64);
    fx_free(&f);
}

Test(io_load_host, io_errors_and_arguments) {
    fx f;
    fx_make(&f, TU_HOST, SGD_M);
    char *missing = io_path(f.dir, "missing.safetensors");
    expect_load_fails(&f, missing, 0, CLOPT_ERR_IO, "No such file", "a missing file");
    expect_load_fails(&f, f.dir, 0, CLOPT_ERR_IO, "not a regular file", "a directory");
    TU_ASSERT_STATUS(f.ctx, clopt_optimizer_load(f.o, NULL), CLOPT_ERR_INVALID_ARGUMENT);
    TU_ASSERT_STATUS(NULL, clopt_optimizer_load(NULL, f.opt_file), CLOPT_ERR_INVALID_ARGUMENT);
    TU_ASSERT_STATUS(NULL, clopt_checkpoint_load(NULL, NULL, 0, f.opt_file),
                     CLOPT_ERR_INVALID_ARGUMENT);
    TU_ASSERT_STATUS(f.ctx, clopt_optimizer_save(f.o, NULL), CLOPT_ERR_INVALID_ARGUMENT);
    TU_ASSERT_STATUS(NULL, clopt_checkpoint_save(NULL, NULL, 0, f.opt_file),
                     CLOPT_ERR_INVALID_ARGUMENT);
    /* variables: NULL, duplicate names, another context */
    clopt_variable *nul[1] = {NULL};
    TU_ASSERT_STATUS(f.ctx, clopt_checkpoint_save(f.o, nul, 1, f.bad), CLOPT_ERR_INVALID_ARGUMENT);
    clopt_variable *w_again = tu_var_f32(f.ctx, "w", 2, NULL);
    clopt_variable *dup[2] = {f.w, w_again};
    TU_ASSERT_STATUS(f.ctx, clopt_checkpoint_save(f.o, dup, 2, f.bad), CLOPT_ERR_INVALID_ARGUMENT);
    tu_assert_error_mentions(f.ctx, "both named 'w'");
    TU_ASSERT_STATUS(f.ctx, clopt_checkpoint_load(f.o, dup, 2, f.full_file),
                     CLOPT_ERR_INVALID_ARGUMENT);
    clopt_context *c2 = tu_context(TU_HOST);
    clopt_variable *other = tu_var_f32(c2, "x", 2, NULL);
    TU_ASSERT_STATUS(f.ctx, clopt_checkpoint_save(f.o, &other, 1, f.bad),
                     CLOPT_ERR_CONTEXT_MISMATCH);
    TU_ASSERT_STATUS(f.ctx, clopt_checkpoint_load(f.o, &other, 1, f.full_file),
                     CLOPT_ERR_CONTEXT_MISMATCH);
    cr_assert_eq(access(f.bad, F_OK), -1, "no file is written for bad arguments");
    clopt_context_destroy(c2);
    free(missing);
    fx_free(&f);
}

/* An empty path is refused before anything is written (it used to make a temporary file in
 * the working directory, then fail at the rename). */
Test(io_save_host, empty_path_refused) {
    fx f;
    fx_make(&f, TU_HOST, SGD_M);
    char cwd[4096];
    cr_assert(getcwd(cwd, sizeof cwd));
    cr_assert_eq(chdir(f.dir), 0);
    int files = io_count_files(".");
    TU_ASSERT_STATUS(f.ctx, clopt_optimizer_save(f.o, ""), CLOPT_ERR_INVALID_ARGUMENT);
    tu_assert_error_mentions(f.ctx, "clopt_optimizer_save: path is empty");
    TU_ASSERT_STATUS(f.ctx, clopt_checkpoint_save(f.o, &f.w, 1, ""), CLOPT_ERR_INVALID_ARGUMENT);
    TU_ASSERT_STATUS(f.ctx, clopt_optimizer_save_h5(f.o, ""), CLOPT_ERR_INVALID_ARGUMENT);
    TU_ASSERT_STATUS(f.ctx, clopt_optimizer_load(f.o, ""), CLOPT_ERR_INVALID_ARGUMENT);
    tu_assert_error_mentions(f.ctx, "path is empty");
    TU_ASSERT_STATUS(f.ctx, clopt_checkpoint_load(f.o, &f.w, 1, ""), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(io_count_files("."), files);
    char err[CLOPT__IO_ERRN];
    clopt__atomic_file af;
    cr_assert_eq(clopt__atomic_begin(&af, "", err, sizeof err), CLOPT_ERR_IO);
    cr_assert(strstr(err, "empty"), "%s", err);
    cr_assert_eq(io_count_files("."), files);
    cr_assert_eq(chdir(cwd), 0);
    fx_free(&f);
}

/* Keras warns and skips loading into an unbuilt optimizer; clopt refuses both ways. */
Test(io_load_host, unbuilt_optimizer) {
    fx f;
    fx_make(&f, TU_HOST, SGD_M);
    clopt_optimizer *o = tu_optimizer(f.ctx, SGD_M);
    TU_ASSERT_STATUS(f.ctx, clopt_optimizer_load(o, f.opt_file), CLOPT_ERR_NOT_BUILT);
    tu_assert_error_mentions(f.ctx, "not built");
    cr_assert_eq(clopt_optimizer_iterations(o), 0);
    TU_ASSERT_STATUS(f.ctx, clopt_optimizer_save(o, f.bad), CLOPT_ERR_NOT_BUILT);
    TU_ASSERT_STATUS(f.ctx, clopt_checkpoint_save(o, &f.w, 1, f.bad), CLOPT_ERR_NOT_BUILT);
    cr_assert_eq(access(f.bad, F_OK), -1);
    fx_free(&f);
}

static void other_optimizer_and_dtype(const char *spec) {
    fx f;
    fx_make(&f, spec, ADAM);
    clopt_context *c2 = tu_context(spec);
    clopt_variable *w2 = tu_var_f32(c2, "w", 2, NULL);
    char *p = saved_optimizer(f.dir, "sgd.safetensors", SGD_M, w2, NULL);
    expect_load_fails(&f, p, 0, CLOPT_ERR_FILE_MISMATCH, "SGD", "SGD file into Adam");
    clopt_variable *w64 = tu_var_f64(c2, "w", 2, NULL);
    clopt_optimizer *adam64 = tu_optimizer(c2, ADAM);
    TU_OK(c2, clopt_optimizer_build(adam64, &w64, 1));
    TU_OK(c2, clopt_checkpoint_save(adam64, &w64, 1, p));
    expect_load_fails(&f, p, 1, CLOPT_ERR_FILE_MISMATCH, "is F64", "float64 file into float32");
    TU_OK(f.ctx, clopt_checkpoint_load(f.o, &f.w, 1, f.full_file));
    cr_assert_eq(clopt_optimizer_iterations(f.o), 2);
    clopt_context_destroy(c2);
    free(p);
    fx_free(&f);
}

Test(io_load_host, other_optimizer_and_dtype) { other_optimizer_and_dtype(TU_HOST); }
Test(io_load_pocl, other_optimizer_and_dtype) { other_optimizer_and_dtype(TU_POCL); }

/* ---- saving: failures leave the old file, durability ---- */

Test(io_save_host, failed_steps_leave_the_old_file) {
    fx f;
    fx_make(&f, TU_HOST, SGD_M);
    size_t n0;
    unsigned char *old = io_read(f.opt_file, &n0);
    int files = io_count_files(f.dir);
    const char *steps[] = {"write", "fsync", "rename"};
    for (size_t i = 0; i < 3; i++) {
        setenv("CLOPT_TEST_SAVE_FAIL", steps[i], 1);
        clopt_status st = clopt_optimizer_save(f.o, f.opt_file);
        unsetenv("CLOPT_TEST_SAVE_FAIL");
        cr_assert_eq(st, CLOPT_ERR_IO, "failing %s: %s", steps[i], clopt_status_name(st));
        tu_assert_error_mentions(f.ctx, f.opt_file);
        tu_assert_error_mentions(f.ctx, strerror(EIO));
        size_t n;
        unsigned char *now = io_read(f.opt_file, &n);
        cr_assert_eq(n, n0);
        tu_assert_same_bytes(now, old, n, steps[i]);
        free(now);
        cr_assert_eq(io_count_files(f.dir), files, "failing %s left a temporary file", steps[i]);
    }
    /* a failed directory sync: the new file is in place, and the error says so */
    setenv("CLOPT_TEST_SAVE_FAIL", "dirsync", 1);
    clopt_status st = clopt_optimizer_save(f.o, f.opt_file);
    unsetenv("CLOPT_TEST_SAVE_FAIL");
    cr_assert_eq(st, CLOPT_ERR_IO);
    tu_assert_error_mentions(f.ctx, "the new file is in place");
    cr_assert_eq(io_count_files(f.dir), files);
    /* the file is the step-3 state now */
    clopt_optimizer_apply(f.o, (clopt_variable *[]){f.g}, NULL, 1);
    TU_OK(f.ctx, clopt_optimizer_load(f.o, f.opt_file));
    cr_assert_eq(clopt_optimizer_iterations(f.o), 3);
    free(old);
    fx_free(&f);
}

Test(io_save_host, unwritable_places) {
    fx f;
    fx_make(&f, TU_HOST, SGD_M);
    char *nodir = io_path(f.dir, "no/such/dir.safetensors");
    TU_ASSERT_STATUS(f.ctx, clopt_optimizer_save(f.o, nodir), CLOPT_ERR_IO);
    tu_assert_error_mentions(f.ctx, nodir);
    tu_assert_error_mentions(f.ctx, strerror(ENOENT));
    /* the target is a directory: the rename fails, the temporary file goes */
    char *sub = io_path(f.dir, "sub");
    cr_assert_eq(mkdir(sub, 0755), 0);
    char *inner = io_path(sub, "x");
    io_write(inner, "x", 1);
    int files = io_count_files(f.dir);
    TU_ASSERT_STATUS(f.ctx, clopt_optimizer_save(f.o, sub), CLOPT_ERR_IO);
    tu_assert_error_mentions(f.ctx, "renaming the temporary file");
    cr_assert_eq(io_count_files(f.dir), files);
    unlink(inner);
    rmdir(sub);
    free(nodir), free(sub), free(inner);
    fx_free(&f);
}

Test(io_save_host, keeps_the_replaced_file_mode) {
    fx f;
    fx_make(&f, TU_HOST, SGD_M);
    cr_assert_eq(chmod(f.opt_file, 0640), 0);
    TU_OK(f.ctx, clopt_optimizer_save(f.o, f.opt_file));
    struct stat sb;
    cr_assert_eq(stat(f.opt_file, &sb), 0);
    cr_assert_eq(sb.st_mode & 07777, 0640, "mode %o", (unsigned)(sb.st_mode & 07777));
    /* a new file: 0666 less the umask, like fopen */
    mode_t um = umask(022);
    char *p = io_path(f.dir, "new.safetensors");
    TU_OK(f.ctx, clopt_optimizer_save(f.o, p));
    umask(um);
    cr_assert_eq(stat(p, &sb), 0);
    cr_assert_eq(sb.st_mode & 07777, 0644, "mode %o", (unsigned)(sb.st_mode & 07777));
    free(p);
    fx_free(&f);
}

/* Files of dir named like a save's temporary file (".tmp-" in the name). */
static int tmp_files(const char *dir) {
    DIR *d = opendir(dir);
    cr_assert(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += strstr(e->d_name, ".tmp-") != NULL;
    closedir(d);
    return n;
}

/* A writer killed at each point of a save (a forked child running clopt_checkpoint_save with
 * CLOPT_TEST_SAVE_CRASH, which raises SIGKILL there): before the rename the previous checkpoint
 * is intact and loads; after it the new one is whole. The child uses the host backend only and
 * leaves through SIGKILL or _exit, never through the test framework. */
Test(io_crash_host, killed_writer_leaves_a_whole_checkpoint) {
    fx f;
    fx_make(&f, TU_HOST, SGD_M);
    size_t n0;
    unsigned char *old = io_read(f.full_file, &n0);
    /* what the child's save would write: this process's state (step 3) saved elsewhere */
    char *expected = io_path(f.dir, "expected.safetensors");
    TU_OK(f.ctx, clopt_checkpoint_save(f.o, &f.w, 1, expected));
    const char *stages[] = {"after_open", "after_write", "after_fsync", "after_rename"};
    for (size_t i = 0; i < 4; i++) {
        fflush(NULL);
        pid_t pid = fork();
        cr_assert(pid >= 0, "fork: %s", strerror(errno));
        if (pid == 0) {
            setenv("CLOPT_TEST_SAVE_CRASH", stages[i], 1);
            clopt_checkpoint_save(f.o, &f.w, 1, f.full_file);
            _exit(3); /* the save was not killed */
        }
        int status = 0;
        while (waitpid(pid, &status, 0) < 0) cr_assert_eq(errno, EINTR);
        cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                  "%s: the writer was not killed (status 0x%x)", stages[i], status);
        /* a writer killed before its rename leaves its temporary file, harmlessly, until the
         * next save to the same path (here the next stage's writer) removes it */
        cr_assert_eq(tmp_files(f.dir), i < 3 ? 1 : 0, "%s: temporary files", stages[i]);
        if (i < 3) {
            size_t n;
            unsigned char *now = io_read(f.full_file, &n);
            cr_assert_eq(n, n0, "%s: the previous checkpoint changed size", stages[i]);
            tu_assert_same_bytes(now, old, n, stages[i]);
            free(now);
            /* it loads into a fresh optimizer: step 2 */
            clopt_context *c2 = tu_context(TU_HOST);
            clopt_variable *w2 = tu_var_f32(c2, "w", 2, NULL);
            clopt_optimizer *o2 = tu_optimizer(c2, SGD_M);
            TU_OK(c2, clopt_optimizer_build(o2, &w2, 1));
            TU_OK(c2, clopt_checkpoint_load(o2, &w2, 1, f.full_file));
            cr_assert_eq(clopt_optimizer_iterations(o2), 2);
            clopt_context_destroy(c2);
        } else {
            io_assert_same_file(f.full_file, expected, "after_rename: the new checkpoint");
        }
    }
    /* saving still works */
    TU_OK(f.ctx, clopt_checkpoint_save(f.o, &f.w, 1, f.full_file));
    cr_assert_eq(tmp_files(f.dir), 0);
    TU_OK(f.ctx, clopt_checkpoint_load(f.o, &f.w, 1, f.full_file));
    free(old);
    free(expected);
    fx_free(&f);
}

/* ---- clopt inspect ---- */

Test(io_inspect_host, lists_tensors_checksums_and_config) {
    fx f;
    fx_make(&f, TU_HOST, SGD_M);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    cr_assert(out);
    char err[CLOPT__IO_ERRN];
    cr_assert_eq(clopt__inspect_file(f.full_file, out, err, sizeof err), CLOPT_OK, "%s", err);
    fclose(out);
    /* the iteration tensor: 8 bytes, 2 little-endian; its FNV-1a 64 */
    unsigned char two[8] = {2, 0, 0, 0, 0, 0, 0, 0};
    char hex[32];
    snprintf(hex, sizeof hex, "%016llx",
             (unsigned long long)clopt__hash64(CLOPT__HASH_INIT, two, sizeof two));
    /* and its CRC-32C, recorded by the writer and verified by the reader */
    char crc[16];
    snprintf(crc, sizeof crc, "%08x", (unsigned)clopt__crc32c(0, two, sizeof two));
    const char *want[] = {"4 tensors", "format: clopt", "clopt_version: ", "model/w",
                          "optimizer/vars/0", "I64", "[]", hex, "SGD/iteration",
                          "SGD/w_momentum", "[2]", "optimizer config:", "\"class_name\": \"SGD\"",
                          "\"momentum\": 0.9", "crc32c", crc,
                          "checksums: CRC-32C of 4 tensors, all verified"};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        cr_assert(strstr(buf, want[i]), "inspect output lacks \"%s\":\n%s", want[i], buf);
    cr_assert_null(strstr(buf, "crc32c:optimizer"), "the checksums are not listed as metadata");
    free(buf);
    /* a bad file: the reader's message */
    io_write(f.bad, "12345", 5);
    out = open_memstream(&buf, &len);
    cr_assert_eq(clopt__inspect_file(f.bad, out, err, sizeof err), CLOPT_ERR_CORRUPT_FILE);
    fclose(out);
    free(buf);
    cr_assert(strstr(err, "too short"), "%s", err);
    fx_free(&f);
}

/* The pretty-printer of the optimizer_config metadata takes any string: one starting with a
 * closing bracket used to make it read the byte before the string (found by fuzz_inspect). */
Test(io_inspect_host, odd_optimizer_config_text) {
    fx f;
    fx_make(&f, TU_HOST, SGD_M);
    const char *texts[] = {"}", "]", "]]}}", "{[", "\\\"}\\\"", ",,  ,", ""};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        char header[256];
        snprintf(header, sizeof header,
                 "{\"__metadata__\": {\"optimizer_config\": \"%s\"}, %s}", texts[i], T0);
        unsigned char data[8] = {0};
        craft(f.bad, header, data, sizeof data);
        char *buf = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&buf, &len);
        cr_assert(out);
        char err[CLOPT__IO_ERRN] = "";
        cr_assert_eq(clopt__inspect_file(f.bad, out, err, sizeof err), CLOPT_OK, "%s: %s", header,
                     err);
        fclose(out);
        cr_assert(strstr(buf, "optimizer config:"), "%s", buf);
        free(buf);
    }
    fx_free(&f);
}

/* The `clopt` tool (built next to the tests: <build>/clopt), or a skip when it is not built. */
static void tool_path(char *tool, size_t n) {
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    cr_assert(len > 0);
    exe[len] = '\0';
    snprintf(tool, n, "%s/../clopt", dirname(exe));
    if (access(tool, X_OK) != 0) cr_skip_test("the clopt tool is not built (%s)", tool);
}

/* Runs `tool args...` (args NULL-terminated) with standard output and error into `log` and
 * standard input from `in` (NULL: inherited); returns its exit status. */
static int run_tool_args(const char *tool, char *const *args, const char *in, const char *log) {
    char *argv[16] = {(char *)tool};
    size_t n = 1;
    for (; args[n - 1]; n++) {
        cr_assert(n < 15);
        argv[n] = args[n - 1];
    }
    argv[n] = NULL;
    posix_spawn_file_actions_t fa;
    cr_assert_eq(posix_spawn_file_actions_init(&fa), 0);
    if (in) cr_assert_eq(posix_spawn_file_actions_addopen(&fa, 0, in, O_RDONLY, 0), 0);
    cr_assert_eq(posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0644), 0);
    cr_assert_eq(posix_spawn_file_actions_adddup2(&fa, 1, 2), 0);
    pid_t pid;
    extern char **environ;
    int rc = posix_spawn(&pid, tool, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(rc, 0, "posix_spawn(%s): %s", tool, strerror(rc));
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) cr_assert_eq(errno, EINTR);
    cr_assert(WIFEXITED(status), "%s was killed (status 0x%x)", tool, status);
    return WEXITSTATUS(status);
}

static int run_tool(const char *tool, const char *file, const char *log) {
    return run_tool_args(tool, (char *[]){"inspect", (char *)file, NULL}, NULL, log);
}

/* The log as a string (caller frees). */
static char *read_log(const char *log) {
    size_t len;
    unsigned char *out = io_read(log, &len);
    out = realloc(out, len + 1);
    cr_assert(out);
    out[len] = '\0';
    return (char *)out;
}

Test(io_inspect_host, command_line) {
    char tool[4200];
    tool_path(tool, sizeof tool);
    fx f;
    fx_make(&f, TU_HOST, SGD_M);
    char *log = io_path(f.dir, "inspect.log");
    cr_assert_eq(run_tool(tool, f.full_file, log), 0);
    char *out = read_log(log);
    cr_assert(strstr(out, "optimizer/vars/2") && strstr(out, "SGD/w_momentum"), "%s", out);
    free(out);
    io_write(f.bad, "12345678", 8);
    cr_assert_eq(run_tool(tool, f.bad, log), 1);
    out = read_log(log);
    cr_assert(strstr(out, "CLOPT_ERR_CORRUPT_FILE"), "%s", out);
    free(out);
    free(log);
    fx_free(&f);
}

/* ---- files that are not regular files ----
 * A FIFO without a writer used to block the open forever (the timeouts fail such a hang), a
 * socket or device is not a checkpoint either: each is refused at once, naming the path. */

static char *make_fifo_and_socket(const char *dir, char **sock) {
    char *fifo = io_path(dir, "fifo.safetensors");
    cr_assert_eq(mkfifo(fifo, 0644), 0, "mkfifo: %s", strerror(errno));
    *sock = io_path(dir, "sock.safetensors");
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    cr_assert(strlen(*sock) < sizeof a.sun_path);
    strcpy(a.sun_path, *sock);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    cr_assert(s >= 0);
    cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof a), 0, "bind: %s", strerror(errno));
    close(s);
    return fifo;
}

Test(io_load_host, fifo_socket_and_devices_refused, .timeout = 30) {
    fx f;
    fx_make(&f, TU_HOST, SGD_M);
    char *sock, *fifo = make_fifo_and_socket(f.dir, &sock);
    const char *paths[] = {fifo, sock, "/dev/zero", "/dev/null"};
    const char *kinds[] = {"a FIFO", "a socket", "a character device", "a character device"};
    for (size_t i = 0; i < 4; i++) {
        expect_load_fails(&f, paths[i], 0, CLOPT_ERR_IO, kinds[i], paths[i]);
        expect_load_fails(&f, paths[i], 1, CLOPT_ERR_IO, "not a regular file", paths[i]);
        char err[CLOPT__IO_ERRN] = "";
        cr_assert_eq(clopt__inspect_file(paths[i], stdout, err, sizeof err), CLOPT_ERR_IO);
        cr_assert(strstr(err, paths[i]) && strstr(err, kinds[i]), "%s", err);
        cr_assert_eq(clopt__is_hdf5_file(paths[i]), 0);
        if (clopt_checkpoint_has_h5()) {
            TU_ASSERT_STATUS(f.ctx, clopt_optimizer_load_h5(f.o, paths[i]), CLOPT_ERR_IO);
            tu_assert_error_mentions(f.ctx, paths[i]);
            tu_assert_error_mentions(f.ctx, kinds[i]);
        }
    }
    free(fifo), free(sock);
    fx_free(&f);
}

Test(io_inspect_host, tool_refuses_a_fifo, .timeout = 30) {
    char tool[4200];
    tool_path(tool, sizeof tool);
    char *dir = io_tmpdir(), *sock, *fifo = make_fifo_and_socket(dir, &sock);
    char *log = io_path(dir, "log");
    const char *paths[] = {fifo, sock, "/dev/zero"};
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(run_tool(tool, paths[i], log), 1, "inspect %s", paths[i]);
        char *out = read_log(log);
        cr_assert(strstr(out, paths[i]) && strstr(out, "not a regular file"), "%s", out);
        free(out);
        char *args[] = {"replay", "--device", "host", (char *)paths[i], NULL};
        cr_assert_eq(run_tool_args(tool, args, NULL, log), 1, "replay %s", paths[i]);
        out = read_log(log);
        cr_assert(strstr(out, paths[i]) && strstr(out, "not a regular file"), "%s", out);
        free(out);
    }
    io_rmdir(dir);
    free(dir), free(fifo), free(sock), free(log);
}

/* ---- checksums ---- */

Test(io_checksum_host, crc32c_known_values) {
    cr_assert_eq(clopt__crc32c(0, "123456789", 9), 0xe3069283u);
    cr_assert_eq(clopt__crc32c(0, "", 0), 0u);
    /* in pieces, across the 8-byte steps, the same as at once */
    unsigned char b[100];
    for (int i = 0; i < 100; i++) b[i] = (unsigned char)(i * 37 + 5);
    uint32_t whole = clopt__crc32c(0, b, sizeof b);
    for (size_t cut = 0; cut <= sizeof b; cut += 7)
        cr_assert_eq(clopt__crc32c(clopt__crc32c(0, b, cut), b + cut, sizeof b - cut), whole);
}

/* Every data byte flipped in turn: the load fails with CLOPT_ERR_CORRUPT_FILE naming the tensor
 * that holds the byte, and changes nothing (it used to load the flipped value silently). */
Test(io_checksum_host, every_flipped_data_byte_is_caught) {
    fx f;
    fx_make(&f, TU_HOST, SGD_M);
    size_t n;
    unsigned char *b = io_read(f.full_file, &n);
    clopt__st_file sf;
    char err[CLOPT__IO_ERRN];
    cr_assert_eq(clopt__st_read(f.full_file, &sf, err, sizeof err), CLOPT_OK, "%s", err);
    size_t data0 = 8 + (size_t)sf.header_len;
    for (size_t i = 0; i < sf.ntensors; i++) {
        uint32_t crc = 0;
        cr_assert_eq(clopt__st_checksum(&sf, &sf.tensors[i], &crc), 1, "%s", sf.tensors[i].name);
    }
    cr_assert_eq(n - data0, 28, "model/w (8) and the optimizer's 20 bytes");
    for (size_t pos = data0; pos < n; pos++) {
        const clopt__st_tensor *t = NULL;
        for (size_t i = 0; i < sf.ntensors; i++)
            if (pos - data0 >= sf.tensors[i].begin && pos - data0 < sf.tensors[i].end)
                t = &sf.tensors[i];
        cr_assert(t);
        b[pos] ^= 0x10;
        io_write(f.bad, b, n);
        b[pos] ^= 0x10;
        char needle[128];
        snprintf(needle, sizeof needle, "tensor '%s': its data", t->name);
        expect_load_fails(&f, f.bad, 1, CLOPT_ERR_CORRUPT_FILE, needle, needle);
    }
    clopt__st_free(&sf);
    free(b);
    fx_free(&f);
}

/* Malformed or stray checksums are corrupt files; a file without them (another writer's) and one
 * with only some of them still load. */
Test(io_checksum_host, malformed_checksums_and_files_without) {
    fx f;
    fx_make(&f, TU_HOST, SGD_M);
    char crc0[9];
    snprintf(crc0, sizeof crc0, "%08x", (unsigned)clopt__crc32c(0, f.data, 8));
    char header[512];
    snprintf(header, sizeof header,
             "{\"__metadata__\": {\"crc32c:optimizer/vars/0\": \"%s\"}, " T0 ", " T1 ", " T2 "}",
             crc0);
    craft(f.bad, header, f.data, 20);
    TU_OK(f.ctx, clopt_optimizer_load(f.o, f.bad)); /* one checksum, right */
    cr_assert_eq(clopt_optimizer_iterations(f.o), 2);
    fx_step(&f);
    const char *bad[] = {"XYZ", "0000000", "ABCDEF01", "000000000"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(header, sizeof header,
                 "{\"__metadata__\": {\"crc32c:optimizer/vars/1\": \"%s\"}, " T0 ", " T1 ", " T2
                 "}",
                 bad[i]);
        expect_crafted_fails(&f, header, 20, CLOPT_ERR_CORRUPT_FILE,
                             "tensor 'optimizer/vars/1': its checksum");
    }
    expect_crafted_fails(&f,
                         "{\"__metadata__\": {\"crc32c:optimizer/vars/9\": \"00000000\"}, " T0
                         ", " T1 ", " T2 "}",
                         20, CLOPT_ERR_CORRUPT_FILE,
                         "'crc32c:optimizer/vars/9' is the checksum of no tensor");
    craft(f.bad, "{" T0 ", " T1 ", " T2 "}", f.data, 20);
    TU_OK(f.ctx, clopt_optimizer_load(f.o, f.bad));
    fx_free(&f);
}

/* Only "<path>.tmp-<pid>-<n>" files of processes that are gone are removed: not a live process's
 * (this one's, pid 1's), not another path's, not other names. */
Test(io_save_host, stale_temporary_files_removed) {
    fx f;
    fx_make(&f, TU_HOST, SGD_M);
    fflush(NULL);
    pid_t dead = fork();
    cr_assert(dead >= 0);
    if (dead == 0) _exit(0);
    while (waitpid(dead, NULL, 0) < 0) cr_assert_eq(errno, EINTR);
    const char *keep_fmt[] = {"%s.tmp-%ld-0", "%s.tmp-1-0", "%s.tmp-%ld-x", "%s.tmpx-%ld-0",
                              "%s.tmp--1-0"};
    long keep_pid[] = {(long)getpid(), 0, (long)dead, (long)dead, 0};
    char name[4200];
    for (size_t i = 0; i < sizeof keep_fmt / sizeof *keep_fmt; i++) {
        snprintf(name, sizeof name, keep_fmt[i], f.opt_file, keep_pid[i]);
        io_write(name, "k", 1);
    }
    snprintf(name, sizeof name, "%s.tmp-%ld-7", f.full_file, (long)dead); /* another path's */
    io_write(name, "k", 1);
    int files = io_count_files(f.dir);
    snprintf(name, sizeof name, "%s.tmp-%ld-3", f.opt_file, (long)dead);
    io_write(name, "stale", 5);
    cr_assert_eq(io_count_files(f.dir), files + 1);
    TU_OK(f.ctx, clopt_optimizer_save(f.o, f.opt_file));
    cr_assert_eq(access(name, F_OK), -1, "%s was not removed", name);
    cr_assert_eq(io_count_files(f.dir), files);
    fx_free(&f);
}

/* Saving through a symbolic link replaces the link's target (written beside it) and keeps the
 * link: relative targets, targets in another directory, chains, and dangling links. */
Test(io_save_host, saving_through_a_symlink_follows_it) {
    fx f;
    fx_make(&f, TU_HOST, SGD_M);
    char *sub = io_path(f.dir, "sub"), *real = io_path(sub, "real.safetensors");
    cr_assert_eq(mkdir(sub, 0755), 0);
    char *l1 = io_path(f.dir, "l1"), *l2 = io_path(f.dir, "l2"), *l3 = io_path(f.dir, "l3");
    cr_assert_eq(symlink("opt.safetensors", l1), 0);       /* relative, same directory */
    cr_assert_eq(symlink("l1", l2), 0);                    /* a chain */
    cr_assert_eq(symlink("sub/real.safetensors", l3), 0);  /* dangling, another directory */
    const char *links[] = {l1, l2, l3};
    const char *targets[] = {f.opt_file, f.opt_file, real};
    for (size_t i = 0; i < 3; i++) {
        fx_step(&f);
        TU_OK(f.ctx, clopt_optimizer_save(f.o, links[i]));
        struct stat sb;
        cr_assert_eq(lstat(links[i], &sb), 0);
        cr_assert(S_ISLNK(sb.st_mode), "%s is no longer a link", links[i]);
        cr_assert_eq(lstat(targets[i], &sb), 0);
        cr_assert(S_ISREG(sb.st_mode));
        /* the target holds the new state */
        clopt_context *c2 = tu_context(TU_HOST);
        clopt_variable *w2 = tu_var_f32(c2, "w", 2, NULL);
        clopt_optimizer *o2 = tu_optimizer(c2, SGD_M);
        TU_OK(c2, clopt_optimizer_build(o2, &w2, 1));
        TU_OK(c2, clopt_optimizer_load(o2, targets[i]));
        cr_assert_eq(clopt_optimizer_iterations(o2), clopt_optimizer_iterations(f.o));
        clopt_context_destroy(c2);
    }
    cr_assert_eq(io_count_files(sub), 1, "only the target in sub/");
    unlink(real);
    rmdir(sub);
    free(sub), free(real), free(l1), free(l2), free(l3);
    fx_free(&f);
}
