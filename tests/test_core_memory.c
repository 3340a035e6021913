/* Device memory accounting (clopt_context_memory_stats, clopt/experimental.h) and the memory
 * promises of a step: after build, device memory is the variables, gradients and slots plus a
 * small amount that does not grow with their size, and steps allocate nothing (the same bytes,
 * buffers and creation count after many steps, with norm clipping and a multi-pass class too).
 * Large buffers on POCL come from fresh pages (ocl_buffer_create): they must still read back as
 * zeros. */
#include "clopt/experimental.h"
#include "core/core_internal.h" /* struct clopt_variable: the arena offset */
#include "test_util.h"

TU_SUITE(memory_host);
TU_SUITE(memory_pocl);

static clopt_memory_stats stats(const clopt_context *ctx) {
    clopt_memory_stats m;
    memset(&m, 0xff, sizeof m);
    cr_assert_eq(clopt_context_memory_stats(ctx, &m), CLOPT_OK);
    return m;
}

static void null_arguments(const char *dev) {
    clopt_context *ctx = tu_context(dev);
    clopt_memory_stats m;
    cr_assert_eq(clopt_context_memory_stats(NULL, &m), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(clopt_context_memory_stats(ctx, NULL), CLOPT_ERR_INVALID_ARGUMENT);
    m = stats(ctx);
    cr_assert_eq(m.device_bytes, 0, "a new context holds %llu bytes",
                 (unsigned long long)m.device_bytes);
    cr_assert_eq(m.arena_bytes, 0);
    clopt_context_destroy(ctx);
}
Test(memory_host, null_arguments) { null_arguments(TU_HOST); }
Test(memory_pocl, null_arguments) { null_arguments(TU_POCL); }

/* Variables are arena reservations of whole chunks; destroying them frees the reservation (the
 * shared block stays for the next variables). */
static void variables_reserve_chunks(const char *dev) {
    clopt_context *ctx = tu_context(dev);
    clopt_variable *a = tu_var_f32(ctx, "a", 1000, NULL), *b = tu_var_f64(ctx, "b", 10, NULL);
    const clopt_memory_stats m = stats(ctx);
    cr_assert_eq(m.arena_blocks, 1);
    cr_assert_eq(m.device_buffers, 1);
    cr_assert_eq(m.device_bytes, m.arena_bytes);
    cr_assert_eq(m.peak_device_bytes, m.device_bytes);
    /* Arena ranges are whole chunks of their dtype: 4 x 256 x 4 bytes, then 256 x 8. */
    cr_assert_eq(m.arena_used_bytes, 2048 * 2 + 2048, "used %llu",
                 (unsigned long long)m.arena_used_bytes);
    clopt_variable_destroy(a);
    clopt_variable_destroy(b);
    const clopt_memory_stats m2 = stats(ctx);
    cr_assert_eq(m2.arena_used_bytes, 0);
    cr_assert_eq(m2.device_bytes, m.device_bytes);
    cr_assert_eq(m2.buffer_creates, m.buffer_creates);
    clopt_context_destroy(ctx);
}
Test(memory_host, variables_reserve_chunks) { variables_reserve_chunks(TU_HOST); }
Test(memory_pocl, variables_reserve_chunks) { variables_reserve_chunks(TU_POCL); }

/* Builds `config` over 40 variables of mixed sizes, runs `steps` steps and checks that nothing
 * was allocated or released by them, and that device memory after build is the arena (variables,
 * gradients, slots, all of whose bytes are reserved) plus less than 64 bytes per chunk plus
 * 64 KiB. */
/* Variable i ("v<i>") and its gradient ("g<i>"): n elements of dtype, both from init (NULL:
 * zeros). */
static void var_pair(clopt_context *ctx, int i, clopt_dtype dtype, int64_t n, const void *init,
                     clopt_variable **v, clopt_variable **g) {
    char name[16];
    snprintf(name, sizeof name, "v%d", i);
    *v = tu_var(ctx, name, dtype, 1, &n, init);
    snprintf(name, sizeof name, "g%d", i);
    *g = tu_var(ctx, name, dtype, 1, &n, init);
}

/* One step of `config` built over the pairs v, g, then finished. */
static clopt_optimizer *built_and_stepped(clopt_context *ctx, const char *config,
                                          clopt_variable **v, clopt_variable **g, size_t n) {
    clopt_optimizer *o = NULL;
    TU_OK(ctx, clopt_optimizer_from_config(ctx, config, &o));
    TU_OK(ctx, clopt_optimizer_build(o, v, n));
    TU_OK(ctx, clopt_optimizer_apply(o, g, v, n));
    TU_OK(ctx, clopt_finish(ctx));
    return o;
}

static void steps_allocate_nothing(const char *dev, const char *config, int steps) {
    enum { N = 40 };
    clopt_context *ctx = tu_context(dev);
    clopt_variable *v[N], *g[N];
    size_t chunks = 0;
    for (int i = 0; i < N; i++) {
        const int64_t n = 1 + (int64_t)i * 997 % 5000;
        float *init = malloc((size_t)n * sizeof *init);
        cr_assert(init);
        for (int64_t j = 0; j < n; j++) init[j] = (float)((j * 7 + i) % 13) / 13.0f - 0.5f;
        var_pair(ctx, i, CLOPT_FLOAT32, n, init, &v[i], &g[i]);
        free(init);
        chunks += (size_t)(n + 255) / 256;
    }
    clopt_optimizer *o = built_and_stepped(ctx, config, v, g, N);
    const clopt_memory_stats before = stats(ctx);
    const uint64_t other = before.device_bytes - before.arena_bytes;
    cr_assert_lt(other, 64 * chunks + 65536, "%llu bytes besides the arena for %zu chunks",
                 (unsigned long long)other, chunks);
    for (int k = 0; k < steps; k++) {
        TU_OK(ctx, clopt_optimizer_apply(o, g, v, N));
        if (k % 64 == 0) TU_OK(ctx, clopt_finish(ctx));
    }
    TU_OK(ctx, clopt_finish(ctx));
    const clopt_memory_stats after = stats(ctx);
    cr_assert_eq(after.device_bytes, before.device_bytes, "%llu bytes, then %llu",
                 (unsigned long long)before.device_bytes, (unsigned long long)after.device_bytes);
    cr_assert_eq(after.device_buffers, before.device_buffers);
    cr_assert_eq(after.buffer_creates, before.buffer_creates, "%llu buffers made by the steps",
                 (unsigned long long)(after.buffer_creates - before.buffer_creates));
    cr_assert_eq(after.peak_device_bytes, before.peak_device_bytes);
    cr_assert_eq(after.arena_used_bytes, before.arena_used_bytes);
    /* The optimizer's memory goes with it: back to the variables' arena. */
    clopt_optimizer_destroy(o);
    const clopt_memory_stats gone = stats(ctx);
    cr_assert_eq(gone.device_bytes, gone.arena_bytes, "%llu bytes left besides the arena",
                 (unsigned long long)(gone.device_bytes - gone.arena_bytes));
    clopt_context_destroy(ctx);
}

#define ADAM "{\"class_name\": \"Adam\", \"config\": {}}"
#define ADAM_GLOBAL "{\"class_name\": \"Adam\", \"config\": {\"global_clipnorm\": 1.0}}"
#define SGD_NORM_EMA                                                                            \
    "{\"class_name\": \"SGD\", \"config\": {\"momentum\": 0.9, \"clipnorm\": 0.5, \"use_ema\": " \
    "true, \"ema_overwrite_frequency\": 3}}"
#define LAMB "{\"class_name\": \"Lamb\", \"config\": {}}"
#define ADAMW_ACCUM \
    "{\"class_name\": \"AdamW\", \"config\": {\"gradient_accumulation_steps\": 2}}"

Test(memory_host, adam_steps_allocate_nothing) { steps_allocate_nothing(TU_HOST, ADAM, 50); }
Test(memory_pocl, adam_steps_allocate_nothing) { steps_allocate_nothing(TU_POCL, ADAM, 2000); }
Test(memory_pocl, adam_global_clipnorm_steps_allocate_nothing) {
    steps_allocate_nothing(TU_POCL, ADAM_GLOBAL, 500);
}
Test(memory_pocl, sgd_clipnorm_ema_steps_allocate_nothing) {
    steps_allocate_nothing(TU_POCL, SGD_NORM_EMA, 500);
}
Test(memory_pocl, lamb_steps_allocate_nothing) { steps_allocate_nothing(TU_POCL, LAMB, 500); }
Test(memory_pocl, adamw_accumulation_steps_allocate_nothing) {
    steps_allocate_nothing(TU_POCL, ADAMW_ACCUM, 500);
}

/* Device memory besides the arena after build and one step of SGD with clipnorm and EMA (both
 * plans, per-block partial sums) over float16 variables of n, 1000, 5 and 300 elements. */
static uint64_t other_bytes(const char *dev, int64_t n) {
    enum { N = 4 };
    const int64_t sizes[N] = {n, 1000, 5, 300};
    clopt_context *ctx = tu_context(dev);
    clopt_variable *v[N], *g[N];
    for (int i = 0; i < N; i++) var_pair(ctx, i, CLOPT_FLOAT16, sizes[i], NULL, &v[i], &g[i]);
    built_and_stepped(ctx, SGD_NORM_EMA, v, g, N);
    const clopt_memory_stats m = stats(ctx);
    clopt_context_destroy(ctx); /* also frees the optimizer */
    return m.device_bytes - m.arena_bytes;
}

/* What an optimizer keeps besides variables, gradients and slots does not grow with their size:
 * its plans hold one segment per variable and at most CLOPT__MAX_BLOCKS (4096) partial sums
 * beyond one per variable. Here those are 8 bytes each (clipnorm), so under 48 KiB for 2^24 and
 * for 2^25 elements, where partials per chunk would take 512 KiB and 1 MiB, and partials per
 * 16 chunks without the bound 64 KiB for 2^25. */
static void other_memory_is_fixed(const char *dev) {
    const uint64_t a = other_bytes(dev, (int64_t)1 << 24), b = other_bytes(dev, (int64_t)1 << 25);
    cr_assert_lt(a, 48 * 1024, "%llu bytes besides the arena for 2^24 elements",
                 (unsigned long long)a);
    cr_assert_lt(b, 48 * 1024, "%llu bytes besides the arena for 2^25 elements",
                 (unsigned long long)b);
}
Test(memory_host, other_memory_is_fixed) { other_memory_is_fixed(TU_HOST); }
Test(memory_pocl, other_memory_is_fixed) { other_memory_is_fixed(TU_POCL); }

/* Buffers of 1 MiB and more on POCL are fresh pages, not filled: variables without an initial
 * value and an optimizer's slots still read back as zeros, also where a destroyed variable's
 * values were. */
Test(memory_pocl, large_buffers_read_zero) {
    clopt_context *ctx = tu_context(TU_POCL);
    const int64_t n = 3 << 20; /* 12 MiB: past the 1 MiB threshold, a block of its own too */
    float *ones = malloc((size_t)n * sizeof *ones);
    cr_assert(ones);
    for (int64_t i = 0; i < n; i++) ones[i] = 1.0f;
    clopt_variable *dead = tu_var_f32(ctx, "dead", n, ones);
    clopt_variable_destroy(dead);
    clopt_variable *v = tu_var_f32(ctx, "v", n, NULL);
    double *got = tu_read_f64(v);
    for (int64_t i = 0; i < n; i++) cr_assert_eq(got[i], 0.0, "element %lld is %g", (long long)i, got[i]);
    free(got);
    clopt_optimizer *o = NULL;
    TU_OK(ctx, clopt_optimizer_from_config(ctx, ADAM, &o));
    TU_OK(ctx, clopt_optimizer_build(o, &v, 1));
    double *slot = malloc((size_t)n * sizeof *slot);
    cr_assert(slot);
    /* Keras's list: iteration, learning rate, then momentum and velocity. */
    for (size_t k = 2; k < 4; k++) {
        TU_OK(ctx, clopt_optimizer_variable_read(o, k, slot, (size_t)n));
        for (int64_t i = 0; i < n; i++) cr_assert_eq(slot[i], 0.0, "slot %zu element %lld", k, (long long)i);
    }
    free(slot);
    free(ones);
    clopt_context_destroy(ctx);
}

/* The arena under churn: variables of mixed dtypes and sizes created and destroyed at random in
 * small blocks (CLOPT_ARENA_MB=1), each filled with its own bytes. After every operation every
 * live variable still holds its bytes (no two ranges overlap, a reused gap does not clobber a
 * neighbour) and the arena's used bytes are the live ranges' sizes: whole chunks of each one's
 * dtype (256 x 2, 4 or 8 bytes). */
Test(memory_host, arena_churn_keeps_every_value) {
    setenv("CLOPT_ARENA_MB", "1", 1);
    clopt_context *ctx = tu_context(TU_HOST);
    unsetenv("CLOPT_ARENA_MB");
    enum { LIVE = 48, OPS = 600 };
    const clopt_dtype dts[4] = {CLOPT_FLOAT32, CLOPT_FLOAT64, CLOPT_FLOAT16, CLOPT_BFLOAT16};
    clopt_variable *v[LIVE] = {0};
    unsigned char *want[LIVE] = {0};
    size_t nbytes[LIVE] = {0}, padded[LIVE] = {0};
    uint64_t rng = 12345, blocks = 0;
    for (int op = 0; op < OPS; op++) {
        const size_t k = (size_t)(tu_rand_u64(&rng) % LIVE);
        if (v[k]) {
            clopt_variable_destroy(v[k]);
            free(want[k]);
            v[k] = NULL;
            want[k] = NULL;
        } else {
            const clopt_dtype d = dts[tu_rand_u64(&rng) % 4];
            const int64_t n = 1 + (int64_t)(tu_rand_u64(&rng) % 20000);
            const size_t es = clopt_dtype_size(d), chunk = 256 * es;
            nbytes[k] = (size_t)n * es;
            padded[k] = (nbytes[k] + chunk - 1) / chunk * chunk;
            want[k] = malloc(nbytes[k]);
            cr_assert(want[k]);
            for (size_t b = 0; b < nbytes[k]; b++) want[k][b] = (unsigned char)(op * 31 + b * 7);
            v[k] = tu_var(ctx, "churn", d, 1, &n, want[k]);
            cr_assert_eq(v[k]->offset % CLOPT__CHUNK, 0, "op %d: offset %zu is not whole chunks",
                         op, v[k]->offset);
        }
        size_t used = 0;
        for (size_t j = 0; j < LIVE; j++) {
            if (!v[j]) continue;
            used += padded[j];
            size_t got_n;
            unsigned char *got = tu_read_bytes(v[j], &got_n);
            cr_assert_eq(got_n, nbytes[j]);
            cr_assert(memcmp(got, want[j], got_n) == 0, "op %d: variable %zu lost its bytes", op,
                      j);
            free(got);
        }
        const clopt_memory_stats m = stats(ctx);
        blocks = m.arena_blocks > blocks ? m.arena_blocks : blocks;
        cr_assert_eq(m.arena_used_bytes, used, "op %d: arena uses %llu bytes, live ranges %zu", op,
                     (unsigned long long)m.arena_used_bytes, used);
    }
    cr_assert(blocks >= 2, "the churn stayed in one block: it tested no first fit across blocks");
    for (size_t j = 0; j < LIVE; j++) free(want[j]);
    clopt_context_destroy(ctx);
}
