/* The OpenCL backend's on-disk program cache ($CLOPT_CACHE_DIR, design.md "Kernels and their
 * compilation"): building an optimizer writes *.clbin entries; a damaged entry (truncated, bytes
 * flipped anywhere, or a well-formed envelope around a binary the driver rejects) is rebuilt,
 * never trusted, and the results are bit-identical to those of an intact cache.
 *
 * Each test points CLOPT_CACHE_DIR at a fresh directory of its own (Criterion runs every test in
 * its own process, so setenv is local to the test). The entry layout (a 40-byte header: magic
 * "CLOPTBIN", format, reserved, key, size, FNV-1a checksum of the binary) is the one
 * src/backend/opencl/ocl_program.c writes; the garbage-binary case uses the internal hash. */
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/core_internal.h"
#include "test_util.h"
/* After criterion.h (in test_util.h): parameterized.h first would hide Test(). */
#include <criterion/parameterized.h>

TU_SUITE(cache_pocl);

#define HEADER_BYTES 40

/* ---- a private cache directory ---- */

static char cache_dir[512];

static void make_cache_dir(void) {
    const char *base = getenv("TMPDIR");
    snprintf(cache_dir, sizeof cache_dir, "%s/clopt-cache-test-XXXXXX", base && *base ? base : "/tmp");
    cr_assert_not_null(mkdtemp(cache_dir), "mkdtemp failed");
    cr_assert_eq(setenv("CLOPT_CACHE_DIR", cache_dir, 1), 0);
}

typedef struct entry {
    char path[1024];
    unsigned char *bytes;
    size_t size;
} entry;

static unsigned char *slurp(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    cr_assert_geq(n, 0);
    rewind(f);
    unsigned char *b = malloc((size_t)n + 1);
    cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return b;
}

static void spit(const char *path, const unsigned char *b, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot write %s", path);
    cr_assert_eq(fwrite(b, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

/* The *.clbin entries of `dir` (up to cap), read into memory; fails on leftover temporaries. */
static size_t list_entries(const char *dir, entry *out, size_t cap) {
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "cannot list %s", dir);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        size_t len = strlen(e->d_name);
        cr_assert(len > 6 && strcmp(e->d_name + len - 6, ".clbin") == 0,
                  "unexpected file '%s' in the cache directory", e->d_name);
        cr_assert_lt(n, cap);
        snprintf(out[n].path, sizeof out[n].path, "%s/%s", dir, e->d_name);
        out[n].bytes = slurp(out[n].path, &out[n].size);
        n++;
    }
    closedir(d);
    return n;
}

static void free_entries(entry *e, size_t n) {
    for (size_t i = 0; i < n; i++) free(e[i].bytes);
}

static void remove_cache_dir(void) {
    entry e[64];
    size_t n = list_entries(cache_dir, e, 64);
    for (size_t i = 0; i < n; i++) unlink(e[i].path);
    free_entries(e, n);
    rmdir(cache_dir);
}

/* ---- a workload that compiles several programs ---- */

enum { N = 700, STEPS = 4 };

/* Opens a pocl context, builds Adam(amsgrad) on float32 variables and SGD(momentum) on a float64
 * one, runs a few steps and an assign_add, and returns every resulting byte (caller frees). */
static unsigned char *run_workload(size_t *nbytes) {
    clopt_context *ctx = tu_context(TU_POCL);
    clopt_optimizer *adam = tu_optimizer(
        ctx, "{\"class_name\": \"Adam\", \"config\": {\"learning_rate\": 0.01, \"amsgrad\": true}}");
    clopt_optimizer *sgd = tu_optimizer(
        ctx, "{\"class_name\": \"SGD\", \"config\": {\"learning_rate\": 0.1, \"momentum\": 0.9}}");
    static double w[N], g[N];
    uint64_t rng = 5;
    tu_rand_fill(&rng, w, N, -1, 1);
    const int64_t n = N;
    clopt_variable *a = tu_var_from_f64(ctx, "a", CLOPT_FLOAT32, 1, &n, w);
    clopt_variable *b = tu_var_from_f64(ctx, "b", CLOPT_FLOAT64, 1, &n, w);
    clopt_variable *ga = tu_var(ctx, "ga", CLOPT_FLOAT32, 1, &n, NULL);
    clopt_variable *gb = tu_var(ctx, "gb", CLOPT_FLOAT64, 1, &n, NULL);
    TU_OK(ctx, clopt_optimizer_build(adam, &a, 1));
    TU_OK(ctx, clopt_optimizer_build(sgd, &b, 1));
    for (int s = 0; s < STEPS; s++) {
        tu_rand_fill(&rng, g, N, -1, 1);
        tu_write_f64(ga, g);
        tu_write_f64(gb, g);
        TU_OK(ctx, clopt_optimizer_apply(adam, &ga, &a, 1));
        TU_OK(ctx, clopt_optimizer_apply(sgd, &gb, &b, 1));
    }
    TU_OK(ctx, clopt_variable_assign_add(ga, a));
    clopt_variable *parts[] = {a, b, ga, tu_slot(adam, "a_velocity_hat"), tu_slot(sgd, "b_momentum")};
    size_t total = 0, sizes[5];
    unsigned char *bytes[5];
    for (int i = 0; i < 5; i++) bytes[i] = tu_read_bytes(parts[i], &sizes[i]), total += sizes[i];
    unsigned char *all = malloc(total), *p = all;
    for (int i = 0; i < 5; i++) memcpy(p, bytes[i], sizes[i]), p += sizes[i], free(bytes[i]);
    clopt_context_destroy(ctx);
    *nbytes = total;
    return all;
}

Test(cache_pocl, build_writes_entries_and_reuses_them) {
    make_cache_dir();
    size_t n1, n2;
    unsigned char *r1 = run_workload(&n1);
    entry e1[64], e2[64];
    size_t c1 = list_entries(cache_dir, e1, 64);
    /* adam (float32, amsgrad), sgd (float64, momentum), assign (float32): at least 3 programs. */
    cr_assert_geq(c1, 3, "only %zu cache entries written", c1);
    for (size_t i = 0; i < c1; i++) {
        cr_assert_gt(e1[i].size, HEADER_BYTES, "%s is too short", e1[i].path);
        cr_assert_eq(memcmp(e1[i].bytes, "CLOPTBIN", 8), 0, "%s: bad magic", e1[i].path);
    }
    /* A second process-lifetime (new context) loads them: same entries, same bytes, same
     * results. */
    unsigned char *r2 = run_workload(&n2);
    size_t c2 = list_entries(cache_dir, e2, 64);
    cr_assert_eq(c2, c1);
    for (size_t i = 0; i < c2; i++) {
        size_t j = 0;
        while (j < c1 && strcmp(e1[j].path, e2[i].path) != 0) j++;
        cr_assert_lt(j, c1, "new entry %s on the second run", e2[i].path);
        cr_assert_eq(e2[i].size, e1[j].size);
        tu_assert_same_bytes(e2[i].bytes, e1[j].bytes, e1[j].size, "a valid entry was rewritten");
    }
    cr_assert_eq(n1, n2);
    tu_assert_same_bytes(r2, r1, n1, "results with a warm cache");
    free(r1), free(r2);
    free_entries(e1, c1), free_entries(e2, c2);
    remove_cache_dir();
}

/* CLOPT_CACHE_DIR=off disables the cache: nothing is written to the XDG or HOME fallbacks. */
Test(cache_pocl, cache_off_writes_nothing) {
    make_cache_dir();
    char xdg[600], home[600];
    snprintf(xdg, sizeof xdg, "%s/xdg", cache_dir);
    snprintf(home, sizeof home, "%s/home", cache_dir);
    cr_assert_eq(mkdir(xdg, 0700), 0);
    cr_assert_eq(mkdir(home, 0700), 0);
    setenv("XDG_CACHE_HOME", xdg, 1);
    setenv("HOME", home, 1);
    setenv("CLOPT_CACHE_DIR", "off", 1);
    size_t n;
    free(run_workload(&n));
    DIR *d = opendir(xdg);
    struct dirent *e;
    int files = 0;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') files++;
    closedir(d);
    d = opendir(home);
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') files++;
    closedir(d);
    cr_assert_eq(files, 0, "CLOPT_CACHE_DIR=off still wrote a cache");
    /* Without CLOPT_CACHE_DIR, XDG_CACHE_HOME/clopt is used. */
    unsetenv("CLOPT_CACHE_DIR");
    free(run_workload(&n));
    char sub[700];
    snprintf(sub, sizeof sub, "%s/clopt", xdg);
    entry es[64];
    size_t c = list_entries(sub, es, 64);
    cr_assert_geq(c, 3);
    for (size_t i = 0; i < c; i++) unlink(es[i].path);
    free_entries(es, c);
    rmdir(sub);
    rmdir(xdg);
    rmdir(home);
    rmdir(cache_dir);
}

/* ---- damaged entries ---- */

typedef enum damage {
    EMPTY,
    TRUNCATE_HEADER,  /* only the header left */
    TRUNCATE_HALF,
    TRUNCATE_ONE,     /* last byte missing */
    FLIP_MAGIC,
    FLIP_FORMAT,
    FLIP_KEY,
    FLIP_SIZE,
    FLIP_CHECKSUM,
    FLIP_BODY_START,
    FLIP_BODY_MIDDLE,
    FLIP_LAST_BYTE,
    APPEND_GARBAGE,
    GARBAGE_BINARY,   /* header consistent with the body, body not a program */
    NDAMAGE
} damage;

static const char *const damage_names[] = {
    "empty", "truncate_header", "truncate_half", "truncate_one", "flip_magic", "flip_format",
    "flip_key", "flip_size", "flip_checksum", "flip_body_start", "flip_body_middle",
    "flip_last_byte", "append_garbage", "garbage_binary"};

typedef struct damage_case {
    int d;
} damage_case;

ParameterizedTestParameters(cache_pocl, damaged_entry_is_rebuilt) {
    static damage_case cases[NDAMAGE];
    for (int i = 0; i < NDAMAGE; i++) cases[i].d = i;
    return cr_make_param_array(damage_case, cases, NDAMAGE);
}

static void damage_entry(const entry *e, damage d) {
    unsigned char *b = malloc(e->size + 64);
    memcpy(b, e->bytes, e->size);
    size_t n = e->size;
    switch (d) {
    case EMPTY: n = 0; break;
    case TRUNCATE_HEADER: n = HEADER_BYTES; break;
    case TRUNCATE_HALF: n = e->size / 2; break;
    case TRUNCATE_ONE: n = e->size - 1; break;
    case FLIP_MAGIC: b[0] ^= 0xff; break;
    case FLIP_FORMAT: b[8] ^= 0x01; break;
    case FLIP_KEY: b[16] ^= 0x40; break;
    case FLIP_SIZE: b[24] ^= 0x01; break;
    case FLIP_CHECKSUM: b[32] ^= 0x80; break;
    case FLIP_BODY_START: b[HEADER_BYTES] ^= 0x01; break;
    case FLIP_BODY_MIDDLE: b[HEADER_BYTES + (e->size - HEADER_BYTES) / 2] ^= 0x10; break;
    case FLIP_LAST_BYTE: b[e->size - 1] ^= 0xff; break;
    case APPEND_GARBAGE: memset(b + n, 0xab, 64), n += 64; break;
    case GARBAGE_BINARY: {
        /* A plausible-looking binary of the same size, with a matching size and checksum. */
        uint64_t rng = 99;
        for (size_t i = HEADER_BYTES; i < n; i++) b[i] = (unsigned char)tu_rand_u64(&rng);
        uint64_t sum = clopt__hash64(CLOPT__HASH_INIT, b + HEADER_BYTES, n - HEADER_BYTES);
        memcpy(b + 32, &sum, 8);
        break;
    }
    case NDAMAGE: break;
    }
    spit(e->path, b, n);
    free(b);
}

ParameterizedTest(damage_case *c, cache_pocl, damaged_entry_is_rebuilt) {
    const damage d = (damage)c->d;
    cr_log_info("damage: %s", damage_names[d]);
    make_cache_dir();
    size_t n_ref, n_bad, n_again;
    unsigned char *ref = run_workload(&n_ref);
    entry orig[64];
    size_t count = list_entries(cache_dir, orig, 64);
    cr_assert_geq(count, 3);
    entry damaged[64];
    for (size_t i = 0; i < count; i++) {
        damage_entry(&orig[i], d);
        damaged[i] = orig[i];
        damaged[i].bytes = slurp(orig[i].path, &damaged[i].size);
    }

    /* Every entry is damaged: everything must be rebuilt, with identical results. */
    unsigned char *bad = run_workload(&n_bad);
    cr_assert_eq(n_bad, n_ref);
    tu_assert_same_bytes(bad, ref, n_ref, damage_names[d]);

    /* The damaged entries were replaced by good ones (whole, with the magic and a body). */
    entry now[64];
    size_t count2 = list_entries(cache_dir, now, 64);
    cr_assert_eq(count2, count, "%s: entries appeared or vanished", damage_names[d]);
    for (size_t i = 0; i < count2; i++) {
        cr_assert_gt(now[i].size, HEADER_BYTES, "%s: %s not rewritten", damage_names[d],
                     now[i].path);
        cr_assert_eq(memcmp(now[i].bytes, "CLOPTBIN", 8), 0, "%s: %s not rewritten",
                     damage_names[d], now[i].path);
        uint64_t size;
        memcpy(&size, now[i].bytes + 24, 8);
        cr_assert_eq(size, now[i].size - HEADER_BYTES, "%s: %s not rewritten whole",
                     damage_names[d], now[i].path);
        for (size_t j = 0; j < count; j++)
            if (strcmp(damaged[j].path, now[i].path) == 0)
                cr_assert(damaged[j].size != now[i].size ||
                              memcmp(damaged[j].bytes, now[i].bytes, now[i].size) != 0,
                          "%s: the damaged %s was kept", damage_names[d], now[i].path);
    }
    /* And they load: a third run gives the same results again. */
    unsigned char *again = run_workload(&n_again);
    tu_assert_same_bytes(again, ref, n_ref, "after the rebuild");
    free(ref), free(bad), free(again);
    free_entries(orig, count), free_entries(damaged, count), free_entries(now, count2);
    remove_cache_dir();
}
