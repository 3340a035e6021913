/* Variables on both backends: creation, read/write, assign ops, errors that change nothing, arena
 * reuse, 16-bit storage formats, and the OpenCL interop of clopt_cl.h. Each behaviour is a
 * static function run as variable_host/x and variable_pocl/x. */
#define CL_TARGET_OPENCL_VERSION 120
#include "clopt/clopt_cl.h"
#include "test_util.h"

TU_SUITE(variable_host);
TU_SUITE(variable_pocl);

#define VSENTINEL ((clopt_variable *)(uintptr_t)0x5eed)

/* ---- creation ---- */

static void create_zeros_and_init(const char *spec) {
    clopt_context *ctx = tu_context(spec);
    const int64_t shape[] = {3, 5, 7};
    clopt_variable *z32 = tu_var(ctx, "dense/kernel", CLOPT_FLOAT32, 3, shape, NULL);
    clopt_variable *z64 = tu_var(ctx, NULL, CLOPT_FLOAT64, 3, shape, NULL);
    cr_assert_str_eq(clopt_variable_name(z32), "dense/kernel");
    cr_assert_str_eq(clopt_variable_name(z64), "variable");
    cr_assert_eq(clopt_variable_dtype(z32), CLOPT_FLOAT32);
    cr_assert_eq(clopt_variable_dtype(z64), CLOPT_FLOAT64);
    cr_assert_eq(clopt_variable_ndim(z32), 3);
    cr_assert_eq(memcmp(clopt_variable_shape(z32), shape, sizeof shape), 0);
    cr_assert_eq(clopt_variable_size(z32), 105);
    cr_assert_eq(clopt_variable_context(z32), ctx);
    double *a = tu_read_f64(z32), *b = tu_read_f64(z64);
    for (int i = 0; i < 105; i++) {
        cr_assert_eq(a[i], 0.0, "float32 element %d not zero", i);
        cr_assert_eq(b[i], 0.0, "float64 element %d not zero", i);
    }
    free(a);
    free(b);

    float f[105];
    double d[105];
    for (int i = 0; i < 105; i++) f[i] = (float)(i * 0.25 - 7), d[i] = i * -1.0 / 3.0;
    clopt_variable *i32 = tu_var(ctx, "i32", CLOPT_FLOAT32, 3, shape, f);
    clopt_variable *i64 = tu_var(ctx, "i64", CLOPT_FLOAT64, 3, shape, d);
    float rf[105];
    double rd[105];
    TU_OK(ctx, clopt_variable_read(i32, rf, sizeof rf));
    TU_OK(ctx, clopt_variable_read(i64, rd, sizeof rd));
    tu_assert_same_bytes(rf, f, sizeof f, "float32 init");
    tu_assert_same_bytes(rd, d, sizeof d, "float64 init");
    clopt_variable_destroy(i32);
    clopt_variable_destroy(NULL); /* allowed */
    clopt_context_destroy(ctx);
}
Test(variable_host, create_zeros_and_init) { create_zeros_and_init(TU_HOST); }
Test(variable_pocl, create_zeros_and_init) { create_zeros_and_init(TU_POCL); }

/* write then read gives the same bytes, for sizes around the 256-element chunk. */
static void write_read_round_trip(const char *spec) {
    clopt_context *ctx = tu_context(spec);
    const int64_t sizes[] = {1, 2, 255, 256, 257, 1000, 4097};
    uint64_t rng = 1;
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        int64_t n = sizes[k];
        float *f = malloc((size_t)n * 4), *rf = malloc((size_t)n * 4);
        double *d = malloc((size_t)n * 8), *rd = malloc((size_t)n * 8);
        for (int64_t i = 0; i < n; i++) {
            d[i] = tu_rand_uniform(&rng, -1e3, 1e3);
            f[i] = (float)tu_rand_uniform(&rng, -1, 1);
        }
        clopt_variable *v32 = tu_var_f32(ctx, "v32", n, NULL);
        clopt_variable *v64 = tu_var_f64(ctx, "v64", n, NULL);
        TU_OK(ctx, clopt_variable_write(v32, f, (size_t)n * 4));
        TU_OK(ctx, clopt_variable_write(v64, d, (size_t)n * 8));
        TU_OK(ctx, clopt_variable_read(v32, rf, (size_t)n * 4));
        TU_OK(ctx, clopt_variable_read(v64, rd, (size_t)n * 8));
        tu_assert_same_bytes(rf, f, (size_t)n * 4, "float32 round trip");
        tu_assert_same_bytes(rd, d, (size_t)n * 8, "float64 round trip");
        free(f), free(rf), free(d), free(rd);
    }
    clopt_context_destroy(ctx);
}
Test(variable_host, write_read_round_trip) { write_read_round_trip(TU_HOST); }
Test(variable_pocl, write_read_round_trip) { write_read_round_trip(TU_POCL); }

static void scalar_variable(const char *spec) {
    clopt_context *ctx = tu_context(spec);
    const float init = 2.5f;
    clopt_variable *s = tu_var(ctx, "s", CLOPT_FLOAT32, 0, NULL, &init);
    cr_assert_eq(clopt_variable_ndim(s), 0);
    cr_assert_eq(clopt_variable_size(s), 1);
    float x = 0;
    TU_OK(ctx, clopt_variable_read(s, &x, sizeof x));
    cr_assert_eq(x, 2.5f);
    const double y = -0.125;
    clopt_variable *t = tu_var(ctx, "t", CLOPT_FLOAT64, 0, NULL, NULL);
    TU_OK(ctx, clopt_variable_write(t, &y, sizeof y));
    double r = 1;
    TU_OK(ctx, clopt_variable_read(t, &r, sizeof r));
    cr_assert_eq(r, -0.125);
    TU_ASSERT_STATUS(ctx, clopt_variable_write(t, &y, 4), CLOPT_ERR_SHAPE_MISMATCH);
    clopt_context_destroy(ctx);
}
Test(variable_host, scalar) { scalar_variable(TU_HOST); }
Test(variable_pocl, scalar) { scalar_variable(TU_POCL); }

/* ---- errors that change nothing ---- */

static void wrong_sizes_change_nothing(const char *spec) {
    clopt_context *ctx = tu_context(spec);
    float init[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, junk[11] = {0};
    clopt_variable *v = tu_var_f32(ctx, "weights", 10, init);
    const size_t bad[] = {0, 4, 36, 44, 80};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        TU_ASSERT_STATUS(ctx, clopt_variable_write(v, junk, bad[i]), CLOPT_ERR_SHAPE_MISMATCH);
        tu_assert_error_mentions(ctx, "weights");
    }
    TU_ASSERT_STATUS(ctx, clopt_variable_write(v, NULL, 40), CLOPT_ERR_INVALID_ARGUMENT);
    TU_ASSERT_STATUS(ctx, clopt_variable_read(v, junk, 44), CLOPT_ERR_SHAPE_MISMATCH);
    TU_ASSERT_STATUS(ctx, clopt_variable_read(v, NULL, 40), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(clopt_variable_write(NULL, init, 40), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(clopt_variable_read(NULL, junk, 40), CLOPT_ERR_INVALID_ARGUMENT);
    for (int i = 0; i < 11; i++) cr_assert_eq(junk[i], 0.0f, "a failed read wrote element %d", i);
    float now[10];
    TU_OK(ctx, clopt_variable_read(v, now, sizeof now));
    tu_assert_same_bytes(now, init, sizeof init, "contents after failed writes");
    clopt_context_destroy(ctx);
}
Test(variable_host, wrong_sizes_change_nothing) { wrong_sizes_change_nothing(TU_HOST); }
Test(variable_pocl, wrong_sizes_change_nothing) { wrong_sizes_change_nothing(TU_POCL); }

static void bad_create_arguments(const char *spec) {
    clopt_context *ctx = tu_context(spec);
    const int64_t ok[] = {2, 3}, zero[] = {2, 0}, neg[] = {-1}, huge[] = {1LL << 40, 1LL << 40};
    const int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    struct {
        const char *what;
        clopt_dtype dtype;
        int ndim;
        const int64_t *shape;
    } cases[] = {
        {"bad_dtype", (clopt_dtype)7, 2, ok},  {"neg_dtype", (clopt_dtype)-1, 2, ok},
        {"neg_ndim", CLOPT_FLOAT32, -1, ok},   {"ndim_9", CLOPT_FLOAT32, 9, nine},
        {"zero_dim", CLOPT_FLOAT32, 2, zero},  {"neg_dim", CLOPT_FLOAT64, 1, neg},
        {"null_shape", CLOPT_FLOAT32, 2, NULL}, {"huge", CLOPT_FLOAT32, 2, huge},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        clopt_variable *out = VSENTINEL;
        clopt_status st =
            clopt_variable_create(ctx, cases[i].what, cases[i].dtype, cases[i].ndim, cases[i].shape,
                                  NULL, &out);
        cr_assert_eq(st, CLOPT_ERR_INVALID_ARGUMENT, "%s gave %s", cases[i].what,
                     clopt_status_name(st));
        cr_assert_eq(out, VSENTINEL, "%s: out written on failure", cases[i].what);
        tu_assert_error_mentions(ctx, cases[i].what);
    }
    TU_ASSERT_STATUS(ctx, clopt_variable_create(ctx, "x", CLOPT_FLOAT32, 2, ok, NULL, NULL),
                     CLOPT_ERR_INVALID_ARGUMENT);
    clopt_variable *out = VSENTINEL;
    cr_assert_eq(clopt_variable_create(NULL, "x", CLOPT_FLOAT32, 2, ok, NULL, &out),
                 CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(out, VSENTINEL);
    /* The largest rank is fine. */
    clopt_variable *v8 = tu_var(ctx, "rank8", CLOPT_FLOAT32, CLOPT_MAX_NDIM, nine, NULL);
    cr_assert_eq(clopt_variable_size(v8), 1);
    clopt_context_destroy(ctx);
}
Test(variable_host, bad_create_arguments) { bad_create_arguments(TU_HOST); }
Test(variable_pocl, bad_create_arguments) { bad_create_arguments(TU_POCL); }

/* clopt_variable_create(name, float32, shape {d0, d1}) fails with `want`, naming the variable
 * and mentioning `needle`, and leaves out alone. */
static void expect_create_fails(clopt_context *ctx, const char *name, int64_t d0, int64_t d1,
                                clopt_status want, const char *needle) {
    const int64_t shape[] = {d0, d1};
    clopt_variable *out = VSENTINEL;
    TU_ASSERT_STATUS(ctx, clopt_variable_create(ctx, name, CLOPT_FLOAT32, 2, shape, NULL, &out),
                     want);
    cr_assert_eq(out, VSENTINEL);
    char quoted[64];
    snprintf(quoted, sizeof quoted, "variable '%s'", name);
    tu_assert_error_mentions(ctx, quoted);
    tu_assert_error_mentions(ctx, needle);
}

/* Too many elements: every dimension is fine on its own, their product is not. The message
 * used to blame "dimension 1 has size 2097152 (must be >= 1)". */
Test(variable_host, too_many_elements_says_so) {
    clopt_context *ctx = tu_context(TU_HOST);
    expect_create_fails(ctx, "big", 1LL << 20, 1LL << 21, CLOPT_ERR_INVALID_ARGUMENT,
                        "more than 2^40 elements");
    cr_assert_null(strstr(clopt_context_last_error(ctx), "must be >= 1"));
    clopt_context_destroy(ctx);
}

/* A 4 TiB variable (2^40 float32 elements, within the element limit) does not fit: on both
 * backends CLOPT_ERR_OUT_OF_MEMORY naming the variable (POCL said CLOPT_ERR_OPENCL, unnamed).
 * Nothing changed: the context still makes variables. */
static void too_big_for_memory(const char *spec) {
    clopt_context *ctx = tu_context(spec);
    expect_create_fails(ctx, "huge", 1LL << 20, 1LL << 20, CLOPT_ERR_OUT_OF_MEMORY, "bytes");
    clopt_variable *v = tu_var_f32(ctx, "small", 2, NULL);
    cr_assert_eq(clopt_variable_size(v), 2);
    clopt_context_destroy(ctx);
}
/* Under AddressSanitizer this needs ASAN_OPTIONS=allocator_may_return_null=1 (.ci/run sets it),
 * else ASan aborts on the 4 TiB calloc instead of returning NULL as malloc does. */
Test(variable_host, too_big_for_memory) { too_big_for_memory(TU_HOST); }
Test(variable_pocl, too_big_for_memory) { too_big_for_memory(TU_POCL); }

/* ---- assign, assign_add, assign_sub ---- */

/* Values chosen so that every result is exact in float32 (multiples of 1/8 below 2^20). */
static void assign_numerics(const char *spec, clopt_dtype dtype) {
    clopt_context *ctx = tu_context(spec);
    enum { N = 700 };
    const int64_t n = N;
    double a[N], b[N], want[N];
    for (int i = 0; i < N; i++) a[i] = (i % 97) * 0.125 - 3, b[i] = (i % 13) * -2.5 + 1;
    clopt_variable *dst = tu_var_from_f64(ctx, "dst", dtype, 1, &n, a);
    clopt_variable *src = tu_var_from_f64(ctx, "src", dtype, 1, &n, b);

    TU_OK(ctx, clopt_variable_assign_add(dst, src));
    for (int i = 0; i < N; i++) want[i] = a[i] + b[i];
    tu_assert_var_close(dst, want, 0, 0, "after assign_add");

    TU_OK(ctx, clopt_variable_assign_sub(dst, src));
    TU_OK(ctx, clopt_variable_assign_sub(dst, src));
    for (int i = 0; i < N; i++) want[i] = a[i] - b[i];
    tu_assert_var_close(dst, want, 0, 0, "after assign_sub x2");

    TU_OK(ctx, clopt_variable_assign(dst, src));
    tu_assert_var_close(dst, b, 0, 0, "after assign");
    /* The source is untouched throughout. */
    tu_assert_var_close(src, b, 0, 0, "src");
    clopt_context_destroy(ctx);
}
Test(variable_host, assign_ops_float32) { assign_numerics(TU_HOST, CLOPT_FLOAT32); }
Test(variable_host, assign_ops_float64) { assign_numerics(TU_HOST, CLOPT_FLOAT64); }
Test(variable_pocl, assign_ops_float32) { assign_numerics(TU_POCL, CLOPT_FLOAT32); }
Test(variable_pocl, assign_ops_float64) { assign_numerics(TU_POCL, CLOPT_FLOAT64); }

/* Neighbours in the arena are not touched by an assign (no write past the variable's end). */
static void assign_stays_inside(const char *spec) {
    clopt_context *ctx = tu_context(spec);
    float ones[300], twos[300];
    for (int i = 0; i < 300; i++) ones[i] = 1, twos[i] = 2;
    clopt_variable *left = tu_var_f32(ctx, "left", 300, ones);
    clopt_variable *mid = tu_var_f32(ctx, "mid", 3, ones);
    clopt_variable *right = tu_var_f32(ctx, "right", 300, ones);
    clopt_variable *src = tu_var_f32(ctx, "src", 3, twos);
    TU_OK(ctx, clopt_variable_assign_add(mid, src));
    double want3[3] = {3, 3, 3}, want300[300];
    for (int i = 0; i < 300; i++) want300[i] = 1;
    tu_assert_var_close(mid, want3, 0, 0, "mid");
    tu_assert_var_close(left, want300, 0, 0, "left");
    tu_assert_var_close(right, want300, 0, 0, "right");
    clopt_context_destroy(ctx);
}
Test(variable_host, assign_stays_inside) { assign_stays_inside(TU_HOST); }
Test(variable_pocl, assign_stays_inside) { assign_stays_inside(TU_POCL); }

typedef clopt_status (*assign_fn)(clopt_variable *, const clopt_variable *);

static void assign_errors(const char *spec) {
    clopt_context *ctx = tu_context(spec), *other = tu_context(spec);
    const int64_t s23[] = {2, 3}, s32[] = {3, 2}, s6[] = {6};
    const float d[6] = {1, 2, 3, 4, 5, 6};
    const double d64[6] = {1, 2, 3, 4, 5, 6};
    clopt_variable *dst = tu_var(ctx, "target", CLOPT_FLOAT32, 2, s23, d);
    clopt_variable *transposed = tu_var(ctx, "transposed", CLOPT_FLOAT32, 2, s32, d);
    clopt_variable *flat = tu_var(ctx, "flat", CLOPT_FLOAT32, 1, s6, d);
    clopt_variable *wide = tu_var(ctx, "wide", CLOPT_FLOAT64, 2, s23, d64);
    clopt_variable *foreign = tu_var(other, "foreign", CLOPT_FLOAT32, 2, s23, d);
    assign_fn fns[] = {clopt_variable_assign, clopt_variable_assign_add,
                       clopt_variable_assign_sub};
    for (int k = 0; k < 3; k++) {
        TU_ASSERT_STATUS(ctx, fns[k](dst, transposed), CLOPT_ERR_SHAPE_MISMATCH);
        tu_assert_error_mentions(ctx, "transposed");
        tu_assert_error_mentions(ctx, "target");
        TU_ASSERT_STATUS(ctx, fns[k](dst, flat), CLOPT_ERR_SHAPE_MISMATCH);
        tu_assert_error_mentions(ctx, "flat");
        TU_ASSERT_STATUS(ctx, fns[k](dst, wide), CLOPT_ERR_DTYPE_MISMATCH);
        tu_assert_error_mentions(ctx, "wide");
        tu_assert_error_mentions(ctx, "float64");
        TU_ASSERT_STATUS(ctx, fns[k](dst, foreign), CLOPT_ERR_CONTEXT_MISMATCH);
        tu_assert_error_mentions(ctx, "foreign");
        TU_ASSERT_STATUS(ctx, fns[k](dst, NULL), CLOPT_ERR_INVALID_ARGUMENT);
        cr_assert_eq(fns[k](NULL, dst), CLOPT_ERR_INVALID_ARGUMENT);
    }
    float now[6];
    TU_OK(ctx, clopt_variable_read(dst, now, sizeof now));
    tu_assert_same_bytes(now, d, sizeof d, "dst after failed assigns");
    TU_OK(other, clopt_variable_read(foreign, now, sizeof now));
    tu_assert_same_bytes(now, d, sizeof d, "foreign after failed assigns");
    clopt_context_destroy(other);
    clopt_context_destroy(ctx);
}
Test(variable_host, assign_errors_change_nothing) { assign_errors(TU_HOST); }
Test(variable_pocl, assign_errors_change_nothing) { assign_errors(TU_POCL); }

/* Objects of a host context and an OpenCL context do not mix. */
Test(variable_pocl, assign_across_backends) {
    clopt_context *h = tu_context(TU_HOST), *p = tu_context(TU_POCL);
    const float d[4] = {1, 2, 3, 4};
    clopt_variable *a = tu_var_f32(h, "on_host", 4, d), *b = tu_var_f32(p, "on_pocl", 4, d);
    TU_ASSERT_STATUS(h, clopt_variable_assign_add(a, b), CLOPT_ERR_CONTEXT_MISMATCH);
    TU_ASSERT_STATUS(p, clopt_variable_assign_add(b, a), CLOPT_ERR_CONTEXT_MISMATCH);
    float now[4];
    TU_OK(h, clopt_variable_read(a, now, sizeof now));
    tu_assert_same_bytes(now, d, sizeof d, "host variable");
    TU_OK(p, clopt_variable_read(b, now, sizeof now));
    tu_assert_same_bytes(now, d, sizeof d, "pocl variable");
    clopt_context_destroy(p);
    clopt_context_destroy(h);
}

/* ---- arena reuse ---- */

/* Many variables of mixed sizes and dtypes created and destroyed in an interleaved order keep
 * their own contents, and a new variable in reused memory starts at zero (or its init). */
static void arena_reuse(const char *spec) {
    setenv("CLOPT_ARENA_MB", "1", 1); /* small blocks: force several blocks and reuse */
    clopt_context *ctx = tu_context(spec);
    enum { NV = 240 };
    clopt_variable *v[NV] = {0};
    int64_t len[NV];
    uint64_t rng = 42;
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < NV; i++) {
            if (v[i]) continue;
            len[i] = 1 + (int64_t)(tu_rand_u64(&rng) % (round == 1 ? 9000 : 700));
            clopt_dtype dt = (i % 3 == 0) ? CLOPT_FLOAT64 : CLOPT_FLOAT32;
            if (i % 5 == 0) {
                v[i] = tu_var(ctx, "z", dt, 1, &len[i], NULL);
                double *z = tu_read_f64(v[i]);
                for (int64_t j = 0; j < len[i]; j++)
                    cr_assert_eq(z[j], 0.0, "round %d var %d: reused memory not zeroed at %lld",
                                 round, i, (long long)j);
                free(z);
            } else {
                v[i] = tu_var(ctx, "v", dt, 1, &len[i], NULL);
            }
            double *x = malloc((size_t)len[i] * sizeof *x);
            for (int64_t j = 0; j < len[i]; j++) x[j] = i * 10000.0 + (double)j;
            tu_write_f64(v[i], x);
            free(x);
        }
        /* Check everyone, then free a pseudo-random half. */
        for (int i = 0; i < NV; i++) {
            double *x = tu_read_f64(v[i]);
            for (int64_t j = 0; j < len[i]; j++)
                cr_assert_eq(x[j], i * 10000.0 + (double)j,
                             "round %d: variable %d element %lld was overwritten", round, i,
                             (long long)j);
            free(x);
        }
        for (int i = 0; i < NV; i++)
            if (tu_rand_u64(&rng) % 2) {
                clopt_variable_destroy(v[i]);
                v[i] = NULL;
            }
    }
    clopt_context_destroy(ctx);
}
Test(variable_host, arena_reuse_keeps_contents) { arena_reuse(TU_HOST); }
Test(variable_pocl, arena_reuse_keeps_contents) { arena_reuse(TU_POCL); }

/* ---- 16-bit storage formats ---- */

/* float16 and bfloat16 variables store raw bits; assign_add computes in float and rounds. */
static void half_formats(const char *spec) {
    clopt_context *ctx = tu_context(spec);
    const int64_t n = 4;
    /* float16: 1.5, -2.0, 0.25, 1024 and 2.25, 0.5, 0.25, 1 -> 3.75, -1.5, 0.5, 1025 */
    const uint16_t h_a[4] = {0x3e00, 0xc000, 0x3400, 0x6400}, h_b[4] = {0x4080, 0x3800, 0x3400,
                                                                        0x3c00};
    const uint16_t h_sum[4] = {0x4380, 0xbe00, 0x3800, 0x6401};
    /* bfloat16: 1.5, -2.0, 0.25, 256 and 2.25, 0.5, 0.25, 1 -> 3.75, -1.5, 0.5, 257 (rounds to
     * 256: bfloat16 has 8 significant bits, the tie goes to even) */
    const uint16_t b_a[4] = {0x3fc0, 0xc000, 0x3e80, 0x4380}, b_b[4] = {0x4010, 0x3f00, 0x3e80,
                                                                        0x3f80};
    const uint16_t b_sum[4] = {0x4070, 0xbfc0, 0x3f00, 0x4380};
    clopt_variable *ha = tu_var(ctx, "ha", CLOPT_FLOAT16, 1, &n, h_a);
    clopt_variable *hb = tu_var(ctx, "hb", CLOPT_FLOAT16, 1, &n, h_b);
    clopt_variable *ba = tu_var(ctx, "ba", CLOPT_BFLOAT16, 1, &n, b_a);
    clopt_variable *bb = tu_var(ctx, "bb", CLOPT_BFLOAT16, 1, &n, b_b);
    uint16_t r[4];
    TU_OK(ctx, clopt_variable_read(ha, r, sizeof r));
    tu_assert_same_bytes(r, h_a, sizeof r, "float16 round trip");
    TU_OK(ctx, clopt_variable_assign_add(ha, hb));
    TU_OK(ctx, clopt_variable_read(ha, r, sizeof r));
    tu_assert_same_bytes(r, h_sum, sizeof r, "float16 assign_add");
    TU_OK(ctx, clopt_variable_assign_add(ba, bb));
    TU_OK(ctx, clopt_variable_read(ba, r, sizeof r));
    tu_assert_same_bytes(r, b_sum, sizeof r, "bfloat16 assign_add");
    TU_ASSERT_STATUS(ctx, clopt_variable_assign(ha, ba), CLOPT_ERR_DTYPE_MISMATCH);
    TU_ASSERT_STATUS(ctx, clopt_variable_write(ha, r, 4), CLOPT_ERR_SHAPE_MISMATCH);
    clopt_context_destroy(ctx);
}
Test(variable_host, float16_bfloat16_storage) { half_formats(TU_HOST); }
Test(variable_pocl, float16_bfloat16_storage) { half_formats(TU_POCL); }

/* ---- OpenCL interop ---- */

/* clopt_variable_cl_mem gives a buffer and offset holding exactly the variable's bytes, usable
 * with plain OpenCL calls in both directions; variables created one after another share a block
 * and follow each other. */
Test(variable_pocl, cl_mem_interop) {
    clopt_context *ctx = tu_context(TU_POCL);
    cl_command_queue q;
    TU_OK(ctx, clopt_context_cl_queue(ctx, &q));
    enum { N = 1000 };
    float a[N], b[N];
    double c[N];
    for (int i = 0; i < N; i++) a[i] = (float)i * 0.5f, b[i] = -(float)i, c[i] = i / 3.0;
    clopt_variable *va = tu_var_f32(ctx, "a", N, a), *vb = tu_var_f32(ctx, "b", N, b);
    clopt_variable *vc = tu_var_f64(ctx, "c", N, c);
    /* Queued work on the variable is ordered before the interop read (in-order queue). */
    TU_OK(ctx, clopt_variable_assign_add(vb, va));
    clopt_variable *vars[] = {va, vb, vc};
    cl_mem mem[3];
    size_t off[3];
    for (int k = 0; k < 3; k++) {
        TU_OK(ctx, clopt_variable_cl_mem(vars[k], &mem[k], &off[k]));
        cr_assert_not_null(mem[k]);
        size_t esize = clopt_dtype_size(clopt_variable_dtype(vars[k]));
        cr_assert_eq(off[k] % esize, 0, "offset %zu not aligned to the element", off[k]);
        size_t memsize = 0;
        cr_assert_eq(clGetMemObjectInfo(mem[k], CL_MEM_SIZE, sizeof memsize, &memsize, NULL),
                     CL_SUCCESS);
        cr_assert_leq(off[k] + N * esize, memsize, "variable runs past its buffer");
        unsigned char *got = malloc(N * esize);
        cr_assert_eq(clEnqueueReadBuffer(q, mem[k], CL_TRUE, off[k], N * esize, got, 0, NULL,
                                         NULL),
                     CL_SUCCESS);
        unsigned char *want = tu_read_bytes(vars[k], NULL);
        tu_assert_same_bytes(got, want, N * esize, clopt_variable_name(vars[k]));
        free(got);
        free(want);
    }
    /* a and b were created one after the other: same block, b after a. */
    cr_assert_eq(mem[0], mem[1]);
    cr_assert_gt(off[1], off[0]);
    cr_assert_geq(off[1], off[0] + N * sizeof(float));
    /* A write through OpenCL is what clopt reads next. */
    float minus[N];
    for (int i = 0; i < N; i++) minus[i] = -1.0f - (float)i;
    cr_assert_eq(clEnqueueWriteBuffer(q, mem[0], CL_TRUE, off[0], sizeof minus, minus, 0, NULL,
                                      NULL),
                 CL_SUCCESS);
    float now[N];
    TU_OK(ctx, clopt_variable_read(va, now, sizeof now));
    tu_assert_same_bytes(now, minus, sizeof now, "after clEnqueueWriteBuffer");
    TU_OK(ctx, clopt_variable_read(vb, now, sizeof now));
    for (int i = 0; i < N; i++) cr_assert_eq(now[i], b[i] + a[i], "b[%d] clobbered", i);
    cl_mem m;
    size_t o;
    TU_ASSERT_STATUS(ctx, clopt_variable_cl_mem(va, NULL, &o), CLOPT_ERR_INVALID_ARGUMENT);
    TU_ASSERT_STATUS(ctx, clopt_variable_cl_mem(va, &m, NULL), CLOPT_ERR_INVALID_ARGUMENT);
    clopt_context_destroy(ctx);
}
