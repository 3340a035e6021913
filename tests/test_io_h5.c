/* Keras .weights.h5 interop (clopt_optimizer_load_h5 / clopt_optimizer_save_h5): a file in
 * Keras's layout written directly with libhdf5 as h5py writes it (another tool than clopt's
 * writer) loads; clopt writes the optimizer part back into such a file keeping the model's
 * datasets; saving and loading resume bitwise for every registered optimizer; bad files fail with
 * the right status and change nothing. In a build without libhdf5 (CLOPT_WITH_HDF5 off) every
 * test instead checks that the calls say so with CLOPT_ERR_UNSUPPORTED. */
#include "io/io_internal.h"
#include "io_util.h"
#ifdef CLOPT_WITH_HDF5
#include <hdf5.h>
#endif

#define ADAM "{\"class_name\": \"Adam\", \"config\": {\"learning_rate\": 0.01}}"

#ifndef CLOPT_WITH_HDF5
/* Without libhdf5: both calls refuse, naming the reason, and change nothing. */
static void expect_unsupported(void) {
    clopt_context *ctx = tu_context(TU_HOST);
    cr_assert_eq(clopt_checkpoint_has_h5(), 0);
    clopt_variable *w = tu_var_f32(ctx, "w", 2, NULL);
    clopt_optimizer *o = tu_optimizer(ctx, ADAM);
    TU_OK(ctx, clopt_optimizer_build(o, &w, 1));
    char *dir = io_tmpdir(), *p = io_path(dir, "x.weights.h5");
    TU_ASSERT_STATUS(ctx, clopt_optimizer_save_h5(o, p), CLOPT_ERR_UNSUPPORTED);
    tu_assert_error_mentions(ctx, "built without libhdf5");
    cr_assert_eq(access(p, F_OK), -1);
    io_write(p, "x", 1);
    TU_ASSERT_STATUS(ctx, clopt_optimizer_load_h5(o, p), CLOPT_ERR_UNSUPPORTED);
    tu_assert_error_mentions(ctx, "built without libhdf5");
    io_rmdir(dir);
    free(dir), free(p);
    clopt_context_destroy(ctx);
}
#endif

#ifdef CLOPT_WITH_HDF5

/* ---- writing files as h5py does, with libhdf5 directly ---- */

static void put_str_attr(hid_t obj, const char *name, const char *value) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(a >= 0);
    cr_assert(H5Awrite(a, t, &value) >= 0);
    H5Aclose(a), H5Sclose(s), H5Tclose(t);
}

static hid_t group(hid_t parent, const char *name) {
    hid_t g = H5Gcreate2(parent, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(g >= 0, "group %s", name);
    return g;
}

/* A dataset of file type ft from memory type mt (ndim 0: a scalar). */
static void dataset(hid_t g, const char *name, hid_t ft, hid_t mt, int ndim, const hsize_t *dims,
                    const void *data) {
    hid_t s = ndim ? H5Screate_simple(ndim, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t d = H5Dcreate2(g, name, ft, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(d >= 0, "dataset %s", name);
    cr_assert(H5Dwrite(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    H5Dclose(d), H5Sclose(s);
}

/* A file holding only an unwritten /optimizer/vars/0: n elements of file type ft, created with
 * the dataset creation properties dcpl (closed here). */
static void unwritten_vars_dataset(const char *p, hid_t ft, hsize_t n, hid_t dcpl) {
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t og = group(f, "optimizer"), g = group(og, "vars");
    hsize_t dims[1] = {n};
    hid_t s = H5Screate_simple(1, dims, NULL);
    hid_t d = H5Dcreate2(g, "0", ft, s, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    cr_assert(d >= 0);
    H5Dclose(d), H5Pclose(dcpl), H5Sclose(s), H5Gclose(g), H5Gclose(og), H5Fclose(f);
}

/* What clopt inspect prints for p (it must succeed); the caller frees it. */
static char *inspect_output(const char *p) {
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    cr_assert(out);
    char err[CLOPT__IO_ERRN];
    cr_assert_eq(clopt__inspect_h5(p, out, err, sizeof err), CLOPT_OK, "%s", err);
    fclose(out);
    return buf;
}

/* What model.save_weights writes for a Dense(4) layer on 3 inputs compiled with Adam(0.01) after
 * 3 steps: /layers/dense/vars/{0,1} (kernel, bias), /optimizer/vars/{0..5} (iteration, learning
 * rate, then m and v of the kernel, m and v of the bias), groups named by attribute, and an empty
 * /vars for the model's own variables. The iteration counter is int64 (TensorFlow) or int32 (JAX,
 * torch). Values are deterministic: slot k element i is (k + 1) * 0.125 + i / 64. */
static void write_keras_file(const char *path, int int32_iteration) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(f >= 0);
    hid_t layers = group(f, "layers"), dense = group(layers, "dense"), lv = group(dense, "vars");
    put_str_attr(lv, "name", "dense");
    float kernel[12], bias[4];
    for (int i = 0; i < 12; i++) kernel[i] = (float)i / 8.0f - 0.5f;
    for (int i = 0; i < 4; i++) bias[i] = (float)i / 16.0f;
    const hsize_t kd[2] = {3, 4}, bd[1] = {4};
    dataset(lv, "0", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, kd, kernel);
    dataset(lv, "1", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, bd, bias);
    hid_t top = group(f, "vars");
    hid_t og = group(f, "optimizer"), ov = group(og, "vars");
    put_str_attr(ov, "name", "adam");
    if (int32_iteration) {
        int32_t it = 3;
        dataset(ov, "0", H5T_STD_I32LE, H5T_NATIVE_INT32, 0, NULL, &it);
    } else {
        int64_t it = 3;
        dataset(ov, "0", H5T_STD_I64LE, H5T_NATIVE_INT64, 0, NULL, &it);
    }
    float lr = 0.01f;
    dataset(ov, "1", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 0, NULL, &lr);
    for (int k = 0; k < 4; k++) {
        float v[12];
        for (int i = 0; i < 12; i++) v[i] = (float)(k + 1) * 0.125f + (float)i / 64.0f;
        char name[8];
        snprintf(name, sizeof name, "%d", k + 2);
        dataset(ov, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, k < 2 ? 2 : 1, k < 2 ? kd : bd, v);
    }
    H5Gclose(ov), H5Gclose(og), H5Gclose(top), H5Gclose(lv), H5Gclose(dense), H5Gclose(layers);
    cr_assert(H5Fclose(f) >= 0);
}

typedef struct dense_model {
    clopt_context *ctx;
    clopt_variable *vars[2], *grads[2];
    clopt_optimizer *o;
} dense_model;

static void dense_make(dense_model *m, const char *json) {
    m->ctx = tu_context(TU_HOST);
    const int64_t kd[2] = {3, 4}, bd = 4;
    float g[12];
    for (int i = 0; i < 12; i++) g[i] = 0.25f - (float)i / 32.0f;
    m->vars[0] = tu_var(m->ctx, "dense/kernel", CLOPT_FLOAT32, 2, kd, NULL);
    m->vars[1] = tu_var(m->ctx, "dense/bias", CLOPT_FLOAT32, 1, &bd, NULL);
    m->grads[0] = tu_var(m->ctx, "gk", CLOPT_FLOAT32, 2, kd, g);
    m->grads[1] = tu_var(m->ctx, "gb", CLOPT_FLOAT32, 1, &bd, g);
    m->o = tu_optimizer(m->ctx, json);
    TU_OK(m->ctx, clopt_optimizer_build(m->o, m->vars, 2));
}

/* Reads dataset `name` of a file as raw bytes (caller frees). */
static unsigned char *read_dataset(const char *path, const char *name, size_t *n) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert(f >= 0);
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    cr_assert(d >= 0, "%s has no dataset %s", path, name);
    hid_t t = H5Dget_type(d);
    hsize_t sz = H5Dget_storage_size(d);
    unsigned char *b = malloc(sz ? sz : 1);
    cr_assert(H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, b) >= 0);
    H5Tclose(t), H5Dclose(d), H5Fclose(f);
    *n = (size_t)sz;
    return b;
}

#endif /* CLOPT_WITH_HDF5 */

Test(io_h5_host, keras_file_from_another_writer_loads) {
#ifndef CLOPT_WITH_HDF5
    expect_unsupported();
#else
    cr_assert_eq(clopt_checkpoint_has_h5(), 1);
    char *dir = io_tmpdir(), *p = io_path(dir, "model.weights.h5");
    for (int int32 = 0; int32 < 2; int32++) {
        write_keras_file(p, int32);
        dense_model m;
        dense_make(&m, ADAM);
        TU_OK(m.ctx, clopt_optimizer_load_h5(m.o, p));
        cr_assert_eq(clopt_optimizer_iterations(m.o), 3);
        double lr;
        TU_OK(m.ctx, clopt_optimizer_get_learning_rate(m.o, &lr));
        cr_assert_eq(lr, (double)0.01f);
        for (int k = 0; k < 4; k++) {
            double got[12];
            size_t cnt = k < 2 ? 12 : 4;
            TU_OK(m.ctx, clopt_optimizer_variable_read(m.o, (size_t)k + 2, got, cnt));
            for (size_t i = 0; i < cnt; i++)
                cr_assert_eq(got[i], (double)((float)(k + 1) * 0.125f + (float)i / 64.0f),
                             "optimizer/vars/%d[%zu]", k + 2, i);
        }
        clopt_context_destroy(m.ctx);
    }
    io_rmdir(dir);
    free(dir), free(p);
#endif
}

/* clopt writes its state back into the Keras file: the layers stay, /optimizer/vars is
 * replaced, and the result loads. */
Test(io_h5_host, saves_into_a_keras_file_keeping_the_model) {
#ifndef CLOPT_WITH_HDF5
    expect_unsupported();
#else
    char *dir = io_tmpdir(), *p = io_path(dir, "model.weights.h5");
    write_keras_file(p, 0);
    size_t nk0, nk1;
    unsigned char *k0 = read_dataset(p, "layers/dense/vars/0", &nk0);
    dense_model m;
    dense_make(&m, ADAM);
    TU_OK(m.ctx, clopt_optimizer_load_h5(m.o, p));
    TU_OK(m.ctx, clopt_optimizer_apply(m.o, m.grads, NULL, 2));
    TU_OK(m.ctx, clopt_optimizer_save_h5(m.o, p));
    unsigned char *k1 = read_dataset(p, "layers/dense/vars/0", &nk1);
    cr_assert_eq(nk0, nk1);
    tu_assert_same_bytes(k1, k0, nk0, "the layer's kernel");
    size_t n;
    unsigned char *it = read_dataset(p, "optimizer/vars/0", &n);
    cr_assert_eq(n, 8, "the iteration counter is int64");
    int64_t iter;
    memcpy(&iter, it, 8);
    cr_assert_eq(iter, 4);
    free(it), free(k0), free(k1);
    /* the group's name attribute and exactly six datasets */
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t g = H5Gopen2(f, "optimizer/vars", H5P_DEFAULT);
    H5G_info_t info;
    cr_assert(H5Gget_info(g, &info) >= 0);
    cr_assert_eq(info.nlinks, 6);
    H5Gclose(g), H5Fclose(f);
    char *buf = inspect_output(p);
    const char *want[] = {"/optimizer/vars/  (name: adam)", "/optimizer/vars/0", "int64",
                          "/layers/dense/vars/0", "float32", "[3, 4]"};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        cr_assert(strstr(buf, want[i]), "inspect lacks \"%s\":\n%s", want[i], buf);
    free(buf);
    /* and it loads: a fresh optimizer then takes the same next step */
    dense_model m2;
    dense_make(&m2, ADAM);
    TU_OK(m2.ctx, clopt_optimizer_load_h5(m2.o, p));
    size_t cnt = clopt_optimizer_variable_count(m.o);
    for (size_t i = 0; i < cnt; i++) {
        double a[12], b[12];
        clopt_variable *v;
        TU_OK(m.ctx, clopt_optimizer_variable(m.o, i, NULL, NULL, &v));
        size_t c = v ? (size_t)clopt_variable_size(v) : 1;
        TU_OK(m.ctx, clopt_optimizer_variable_read(m.o, i, a, c));
        TU_OK(m2.ctx, clopt_optimizer_variable_read(m2.o, i, b, c));
        tu_assert_same_bytes(a, b, c * sizeof *a, "reloaded optimizer variable");
    }
    clopt_context_destroy(m.ctx);
    clopt_context_destroy(m2.ctx);
    io_rmdir(dir);
    free(dir), free(p);
#endif
}

/* Every optimizer variant: state at step K through a .weights.h5 file (optimizer) and a
 * safetensors file (model), resumed in a fresh context, bitwise equal at step N. */
Test(io_h5_host, every_optimizer_resumes_bitwise) {
#ifndef CLOPT_WITH_HDF5
    expect_unsupported();
#else
    io_variant v[IO_MAX_VARIANTS];
    size_t nv = io_variants(v);
    char *dir = io_tmpdir(), *h5 = io_path(dir, "k.weights.h5"),
         *model = io_path(dir, "k.safetensors");
    for (size_t i = 0; i < nv; i++) {
        clopt_context *ca = tu_context(TU_HOST), *cb = tu_context(TU_HOST);
        io_model ma, mb;
        io_model_make(&ma, ca, 1);
        io_model_make(&mb, cb, 0);
        clopt_optimizer *a = tu_optimizer(ca, v[i].json), *b = tu_optimizer(cb, v[i].json);
        TU_OK(ca, clopt_optimizer_build(a, ma.vars, IO_NVARS));
        TU_OK(cb, clopt_optimizer_build(b, mb.vars, IO_NVARS));
        io_train(a, &ma, 0, IO_STEP_K, v[i].nonfinite);
        unlink(h5);
        TU_OK(ca, clopt_optimizer_save_h5(a, h5));
        TU_OK(ca, clopt_checkpoint_save(NULL, ma.vars, IO_NVARS, model));
        TU_OK(cb, clopt_optimizer_load_h5(b, h5));
        TU_OK(cb, clopt_checkpoint_load(NULL, mb.vars, IO_NVARS, model));
        char what[256];
        snprintf(what, sizeof what, "%.96s through .weights.h5", v[i].label);
        io_assert_same_state(a, &ma, b, &mb, what);
        io_train(a, &ma, IO_STEP_K, IO_STEP_N, v[i].nonfinite);
        io_train(b, &mb, IO_STEP_K, IO_STEP_N, v[i].nonfinite);
        io_assert_same_state(a, &ma, b, &mb, what);
        clopt_context_destroy(ca);
        clopt_context_destroy(cb);
    }
    io_rmdir(dir);
    free(dir), free(h5), free(model);
#endif
}

#ifdef CLOPT_WITH_HDF5
/* Loads p into m and expects `want` with `needle` in the message and nothing changed. */
static void expect_h5_fails(dense_model *m, const char *p, clopt_status want, const char *needle) {
    double before[64], after[64];
    size_t n = clopt_optimizer_variable_count(m->o), at = 0;
    for (size_t i = 0; i < n; i++) {
        clopt_variable *v;
        TU_OK(m->ctx, clopt_optimizer_variable(m->o, i, NULL, NULL, &v));
        size_t c = v ? (size_t)clopt_variable_size(v) : 1;
        TU_OK(m->ctx, clopt_optimizer_variable_read(m->o, i, before + at, c));
        at += c;
    }
    clopt_status st = clopt_optimizer_load_h5(m->o, p);
    cr_assert_eq(st, want, "%s: %s, expected %s (%s)", needle, clopt_status_name(st),
                 clopt_status_name(want), clopt_context_last_error(m->ctx));
    if (needle) tu_assert_error_mentions(m->ctx, needle);
    at = 0;
    for (size_t i = 0; i < n; i++) {
        clopt_variable *v;
        TU_OK(m->ctx, clopt_optimizer_variable(m->o, i, NULL, NULL, &v));
        size_t c = v ? (size_t)clopt_variable_size(v) : 1;
        TU_OK(m->ctx, clopt_optimizer_variable_read(m->o, i, after + at, c));
        at += c;
    }
    tu_assert_same_bytes(after, before, at * sizeof *after, needle ? needle : "a bad file");
}

/* Rewrites dataset /optimizer/vars/<name> of a Keras file with another type or shape. */
static void replace_dataset(const char *p, const char *name, hid_t ft, hid_t mt, int ndim,
                            const hsize_t *dims, const void *data) {
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t g = H5Gopen2(f, "optimizer/vars", H5P_DEFAULT);
    H5Ldelete(g, name, H5P_DEFAULT);
    if (ft >= 0) dataset(g, name, ft, mt, ndim, dims, data);
    H5Gclose(g), H5Fclose(f);
}
#endif

Test(io_h5_host, bad_files_change_nothing) {
#ifndef CLOPT_WITH_HDF5
    expect_unsupported();
#else
    char *dir = io_tmpdir(), *p = io_path(dir, "model.weights.h5"), *st = io_path(dir, "x.st");
    dense_model m;
    dense_make(&m, ADAM);
    TU_OK(m.ctx, clopt_optimizer_apply(m.o, m.grads, NULL, 2));
    /* not HDF5 at all, and missing */
    TU_OK(m.ctx, clopt_optimizer_save(m.o, st));
    expect_h5_fails(&m, st, CLOPT_ERR_CORRUPT_FILE, "not an HDF5 file");
    char *missing = io_path(dir, "missing.h5");
    expect_h5_fails(&m, missing, CLOPT_ERR_IO, "No such file");
    /* every truncation of a Keras file */
    write_keras_file(p, 0);
    size_t n;
    unsigned char *b = io_read(p, &n);
    char *cut = io_path(dir, "cut.h5");
    for (size_t len = 0; len < n; len += (len < 4096 ? 1 : 7)) {
        io_write(cut, b, len);
        clopt_status s = clopt_optimizer_load_h5(m.o, cut);
        cr_assert(s == CLOPT_ERR_CORRUPT_FILE || s == CLOPT_ERR_FILE_MISMATCH,
                  "cut to %zu of %zu bytes: %s (%s)", len, n, clopt_status_name(s),
                  clopt_context_last_error(m.ctx));
    }
    io_write(cut, b, n / 2);
    expect_h5_fails(&m, cut, CLOPT_ERR_CORRUPT_FILE, cut);
    free(b);
    /* no optimizer group */
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Gclose(group(f, "layers"));
    H5Fclose(f);
    expect_h5_fails(&m, p, CLOPT_ERR_FILE_MISMATCH, "no group /optimizer/vars");
    /* one dataset too few, one too many */
    write_keras_file(p, 0);
    replace_dataset(p, "5", -1, -1, 0, NULL, NULL);
    expect_h5_fails(&m, p, CLOPT_ERR_FILE_MISMATCH, "holds 5 optimizer tensors, the optimizer has 6");
    write_keras_file(p, 0);
    float extra = 1;
    replace_dataset(p, "6", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 0, NULL, &extra);
    expect_h5_fails(&m, p, CLOPT_ERR_FILE_MISMATCH, "holds 7 optimizer tensors");
    /* float64 where the slot is float32; another shape */
    double d12[12] = {0};
    const hsize_t kd[2] = {3, 4}, wrong[2] = {4, 3};
    write_keras_file(p, 0);
    replace_dataset(p, "2", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, kd, d12);
    expect_h5_fails(&m, p, CLOPT_ERR_FILE_MISMATCH, "'optimizer/vars/2' is F64");
    float f12[12] = {0};
    write_keras_file(p, 0);
    replace_dataset(p, "3", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, wrong, f12);
    expect_h5_fails(&m, p, CLOPT_ERR_FILE_MISMATCH, "has shape [4, 3]");
    /* a group where a dataset should be */
    write_keras_file(p, 0);
    replace_dataset(p, "4", -1, -1, 0, NULL, NULL);
    f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    H5Gclose(group(f, "optimizer/vars/4"));
    H5Fclose(f);
    expect_h5_fails(&m, p, CLOPT_ERR_CORRUPT_FILE, "/optimizer/vars/4 is not a dataset");
    /* a negative iteration counter */
    write_keras_file(p, 0);
    int64_t neg = -5;
    replace_dataset(p, "0", H5T_STD_I64LE, H5T_NATIVE_INT64, 0, NULL, &neg);
    expect_h5_fails(&m, p, CLOPT_ERR_CORRUPT_FILE, "holds -5");
    clopt_context_destroy(m.ctx);
    io_rmdir(dir);
    free(dir), free(p), free(st), free(missing), free(cut);
#endif
}

Test(io_h5_host, failed_saves_leave_the_old_file) {
#ifndef CLOPT_WITH_HDF5
    expect_unsupported();
#else
    char *dir = io_tmpdir(), *p = io_path(dir, "model.weights.h5"), *st = io_path(dir, "x.st");
    write_keras_file(p, 0);
    dense_model m;
    dense_make(&m, ADAM);
    size_t n0;
    unsigned char *old = io_read(p, &n0);
    int files = io_count_files(dir);
    const char *steps[] = {"write", "fsync", "rename"};
    for (int i = 0; i < 3; i++) {
        setenv("CLOPT_TEST_SAVE_FAIL", steps[i], 1);
        clopt_status s = clopt_optimizer_save_h5(m.o, p);
        unsetenv("CLOPT_TEST_SAVE_FAIL");
        cr_assert_eq(s, CLOPT_ERR_IO, "%s: %s", steps[i], clopt_status_name(s));
        size_t n;
        unsigned char *now = io_read(p, &n);
        cr_assert_eq(n, n0);
        tu_assert_same_bytes(now, old, n, steps[i]);
        free(now);
        cr_assert_eq(io_count_files(dir), files, "%s left a temporary file", steps[i]);
    }
    /* a non-HDF5 file at the path is not replaced */
    TU_OK(m.ctx, clopt_optimizer_save(m.o, st));
    size_t ns;
    unsigned char *sb = io_read(st, &ns);
    TU_ASSERT_STATUS(m.ctx, clopt_optimizer_save_h5(m.o, st), CLOPT_ERR_FILE_MISMATCH);
    tu_assert_error_mentions(m.ctx, "not an HDF5 file");
    size_t ns2;
    unsigned char *sb2 = io_read(st, &ns2);
    cr_assert_eq(ns, ns2);
    tu_assert_same_bytes(sb2, sb, ns, "the safetensors file");
    free(sb), free(sb2), free(old);
    clopt_context_destroy(m.ctx);
    io_rmdir(dir);
    free(dir), free(p), free(st);
#endif
}

#ifdef CLOPT_WITH_HDF5
/* A file whose only dataset, /optimizer/vars/0 (unwritten_vars_dataset: n elements of ft, with
 * dcpl), is one clopt must not read: clopt inspect succeeds and prints every string of
 * `inspect` (NULL-terminated), and loading it into a Dense model's Adam fails with
 * CLOPT_ERR_CORRUPT_FILE naming `load_needle` and changing nothing. */
static void unwritten_dataset_case(hid_t ft, hsize_t n, hid_t dcpl, const char *const *inspect,
                                   const char *load_needle) {
    char *dir = io_tmpdir(), *p = io_path(dir, "unwritten.weights.h5");
    unwritten_vars_dataset(p, ft, n, dcpl);
    char *buf = inspect_output(p);
    for (size_t i = 0; inspect[i]; i++)
        cr_assert(strstr(buf, inspect[i]), "inspect lacks \"%s\":\n%s", inspect[i], buf);
    free(buf);
    dense_model m;
    dense_make(&m, ADAM);
    expect_h5_fails(&m, p, CLOPT_ERR_CORRUPT_FILE, load_needle);
    clopt_context_destroy(m.ctx);
    io_rmdir(dir);
    free(dir), free(p);
}
#endif

/* A dataset claiming more elements than any file holds (chunked, nothing written: libhdf5 makes
 * such a file in a few KB). `clopt inspect` multiplied its dimensions unchecked: 2^61 + 1 float64
 * elements wrapped around to "8 bytes" and an 8-byte buffer was handed to H5Dread. It now says
 * the dataset is too large and reads nothing; loading refuses it as before. */
Test(io_h5_host, huge_dataset_dimensions) {
#ifndef CLOPT_WITH_HDF5
    expect_unsupported();
#else
    hsize_t chunk[1] = {1};
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    cr_assert(H5Pset_chunk(dcpl, 1, chunk) >= 0);
    static const char *const inspect[] = {"[2305843009213693953]", "larger than clopt reads",
                                          NULL};
    unwritten_dataset_case(H5T_IEEE_F64LE, ((hsize_t)1 << 61) + 1, dcpl, inspect,
                           "larger than clopt accepts");
#endif
}

/* A never-written dataset of 2^28 float32 (1 GiB) in a 3 KB file: libhdf5 reads it back as fill
 * values, so loading or inspecting it used to allocate and fill 1 GiB. Now loading refuses it
 * (its data is not in the file) and inspect does not read it. */
Test(io_h5_host, dataset_not_stored_in_the_file) {
#ifndef CLOPT_WITH_HDF5
    expect_unsupported();
#else
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    cr_assert(H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_LATE) >= 0);
    static const char *const inspect[] = {"1073741824  (not stored in the file)", NULL};
    unwritten_dataset_case(H5T_IEEE_F32LE, (hsize_t)1 << 28, dcpl, inspect,
                           "but the file holds 0 of them");
#endif
}

/* clopt writes every non-scalar optimizer dataset with HDF5's Fletcher32 filter: a flipped data
 * byte fails the load (CLOPT_ERR_CORRUPT_FILE naming the dataset) and changes nothing. */
Test(io_h5_host, flipped_data_byte_is_caught) {
#ifndef CLOPT_WITH_HDF5
    expect_unsupported();
#else
    char *dir = io_tmpdir(), *p = io_path(dir, "opt.weights.h5");
    dense_model m;
    dense_make(&m, ADAM);
    TU_OK(m.ctx, clopt_optimizer_apply(m.o, m.grads, NULL, 2));
    TU_OK(m.ctx, clopt_optimizer_save_h5(m.o, p));
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "optimizer/vars/2", H5P_DEFAULT), dcpl = H5Dget_create_plist(d);
    unsigned flags, cd[4];
    size_t ncd = 4;
    cr_assert_eq(H5Pget_nfilters(dcpl), 1);
    cr_assert_eq(H5Pget_filter2(dcpl, 0, &flags, &ncd, cd, 0, NULL, NULL), H5Z_FILTER_FLETCHER32);
    float m0[12];
    cr_assert(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, m0) >= 0);
    H5Pclose(dcpl), H5Dclose(d), H5Fclose(f);
    /* the dataset's bytes in the file (the first moment of dense/kernel: 12 distinct floats) */
    size_t n;
    unsigned char *b = io_read(p, &n), *at = NULL;
    for (size_t i = 0; i + sizeof m0 <= n && !at; i++)
        if (memcmp(b + i, m0, sizeof m0) == 0) at = b + i;
    cr_assert(at, "the dataset's bytes are not in the file");
    at[5] ^= 0x01;
    char *bad = io_path(dir, "bad.weights.h5");
    io_write(bad, b, n);
    dense_model m2;
    dense_make(&m2, ADAM);
    expect_h5_fails(&m2, bad, CLOPT_ERR_CORRUPT_FILE, "/optimizer/vars/2");
    TU_OK(m2.ctx, clopt_optimizer_load_h5(m2.o, p)); /* the intact file loads */
    clopt_context_destroy(m.ctx);
    clopt_context_destroy(m2.ctx);
    io_rmdir(dir);
    free(b), free(dir), free(p), free(bad);
#endif
}

#ifdef CLOPT_WITH_HDF5
/* A Keras file whose /optimizer/vars/2 is a 2-byte dataset (so the reader consults its
 * "dtype" attribute) carrying `n` variable-length strings, or (fixed > 0) one fixed-length
 * string of `fixed` bytes. */
static void write_dtype_attr_file(const char *p, hsize_t n, size_t fixed) {
    write_keras_file(p, 0);
    const hsize_t kd[2] = {3, 4};
    uint16_t half[12] = {0};
    replace_dataset(p, "2", H5T_NATIVE_B16, H5T_NATIVE_B16, 2, kd, half);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT), d = H5Dopen2(f, "optimizer/vars/2",
                                                                   H5P_DEFAULT);
    hid_t t = H5Tcopy(H5T_C_S1), s = n == 1 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, NULL);
    H5Tset_cset(t, H5T_CSET_UTF8);
    char *big = calloc(fixed + 1, 1);
    const char *vals[4] = {"float16", "float16", "float16", "float16"};
    cr_assert(n <= 4 && big);
    memset(big, 'x', fixed);
    H5Tset_size(t, fixed ? fixed : H5T_VARIABLE);
    hid_t a = H5Acreate2(d, "dtype", t, s, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(a >= 0 && H5Awrite(a, t, fixed ? (const void *)big : (const void *)vals) >= 0);
    H5Aclose(a), H5Sclose(s), H5Tclose(t), H5Dclose(d), H5Fclose(f);
    free(big);
}

/* What clopt inspect says of p, expecting `want`; the message is returned (caller frees). */
static char *inspect_fails(const char *p, clopt_status want) {
    char *buf = NULL, *err = calloc(CLOPT__IO_ERRN, 1);
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    cr_assert(out && err);
    clopt_status st = clopt__inspect_h5(p, out, err, CLOPT__IO_ERRN);
    fclose(out);
    free(buf);
    cr_assert_eq(st, want, "inspect: %s (%s)", clopt_status_name(st), err);
    return err;
}
#endif

/* Variable-length strings live in a global heap collection, which libhdf5 1.10 parses whole and
 * never leaves when an object in it claims 0 bytes (fuzz_h5 found it: the load or inspect hung
 * in H5Aread). clopt now walks the collections first and refuses the file, naming the
 * attribute and the collection; the Keras file without the damage loads. */
Test(io_h5_host, heap_that_would_hang_libhdf5, .timeout = 60) {
#ifndef CLOPT_WITH_HDF5
    expect_unsupported();
#else
    char *dir = io_tmpdir(), *p = io_path(dir, "heap.weights.h5");
    write_dtype_attr_file(p, 1, 0);
    size_t n;
    unsigned char *b = io_read(p, &n), *gcol = NULL;
    for (size_t i = 0; i + 16 <= n && !gcol; i++)
        if (memcmp(b + i, "GCOL\1\0\0\0", 8) == 0) gcol = b + i;
    cr_assert(gcol, "no global heap collection in the file");
    /* the collection's objects (16-byte headers: index, refs, reserved, 8-byte size) up to its
     * free space (index 0), whose size becomes 0 */
    size_t off = 16;
    while (gcol[off] | gcol[off + 1]) {
        uint64_t sz = 0;
        memcpy(&sz, gcol + off + 8, 8);
        off += 16 + (size_t)(sz + 7) / 8 * 8;
        cr_assert(gcol + off + 16 <= b + n);
    }
    memset(gcol + off + 8, 0, 8);
    char *bad = io_path(dir, "bad.weights.h5");
    io_write(bad, b, n);
    dense_model m;
    dense_make(&m, ADAM);
    expect_h5_fails(&m, bad, CLOPT_ERR_CORRUPT_FILE, "attribute 'dtype' of /optimizer/vars/2");
    tu_assert_error_mentions(m.ctx, "of the global heap collection at byte");
    char *err = inspect_fails(bad, CLOPT_ERR_CORRUPT_FILE);
    cr_assert(strstr(err, "of the global heap collection at byte"), "%s", err);
    free(err);
    /* undamaged: the attribute is read ("float16", not bfloat16: a 2-byte bitfield stays a type
     * clopt does not read) */
    expect_h5_fails(&m, p, CLOPT_ERR_FILE_MISMATCH, "/optimizer/vars/2 has an HDF5 type");
    clopt_context_destroy(m.ctx);
    io_rmdir(dir);
    free(b), free(dir), free(p), free(bad);
#endif
}

/* A string attribute clopt reads must hold one string of sane size: libhdf5 writes every element
 * of an array attribute into the buffer given (one pointer), and a fixed-length string's size
 * comes from the file. Both are refused with CLOPT_ERR_CORRUPT_FILE naming the attribute. */
Test(io_h5_host, string_attribute_of_many_or_huge_strings) {
#ifndef CLOPT_WITH_HDF5
    expect_unsupported();
#else
    char *dir = io_tmpdir(), *p = io_path(dir, "attr.weights.h5");
    dense_model m;
    dense_make(&m, ADAM);
    write_dtype_attr_file(p, 3, 0);
    expect_h5_fails(&m, p, CLOPT_ERR_CORRUPT_FILE,
                    "attribute 'dtype' of /optimizer/vars/2 holds 3 strings");
    char *err = inspect_fails(p, CLOPT_ERR_CORRUPT_FILE);
    cr_assert(strstr(err, "attribute 'dtype' of /optimizer/vars/2 holds 3 strings"), "%s", err);
    free(err);
    write_dtype_attr_file(p, 1, 5000);
    expect_h5_fails(&m, p, CLOPT_ERR_CORRUPT_FILE,
                    "attribute 'dtype' of /optimizer/vars/2 is a string of 5000 bytes");
    write_dtype_attr_file(p, 1, 7); /* "xxxxxxx": read, not bfloat16 */
    expect_h5_fails(&m, p, CLOPT_ERR_FILE_MISMATCH, "/optimizer/vars/2 has an HDF5 type");
    clopt_context_destroy(m.ctx);
    io_rmdir(dir);
    free(dir), free(p);
#endif
}
