/* Fuzz target: the checkpoint reader (safetensors.c's clopt__st_parse: header length, header JSON,
 * dtypes, shapes, data offsets; checkpoint.c's matching of the file with an optimizer and model
 * variables: metadata, names, dtypes, shapes, values). The input is the bytes of a safetensors
 * file; the harness loads it, through checkpoint.c's own load path with an in-memory reader in
 * place of the file reader, into each of the setups of fuzz_util.h (Adam with model variables,
 * SGD on float64, Nadam on float16, a LossScaleOptimizer with a schedule on bfloat16, Adafactor
 * with a factored 2-D variable, model variables alone), all on the host backend. Properties:
 *   - a load either succeeds or fails with CLOPT_ERR_CORRUPT_FILE or CLOPT_ERR_FILE_MISMATCH and
 *     a message, and then every model variable, slot, counter and the learning rate is exactly
 *     as before (bit for bit);
 *   - after a successful load the optimizer still applies a step.
 * The sanitizers catch memory errors, leaks and undefined behaviour on the way. */
#include <stdint.h>
#include "fuzz_util.h"
#include "io/io_internal.h"

#define MAX_INPUT 65536

static const uint8_t *cur_data;
static size_t cur_size;

/* clopt__st_read's contract, from the current input instead of a file. */
static clopt_status mem_reader(const char *path, clopt__st_file *f, char *err, size_t errn) {
    unsigned char *bytes = malloc(cur_size ? cur_size : 1);
    if (!bytes) {
        memset(f, 0, sizeof *f);
        snprintf(err, errn, "%s: out of host memory", path);
        return CLOPT_ERR_OUT_OF_MEMORY;
    }
    if (cur_size) memcpy(bytes, cur_data, cur_size);
    return clopt__st_parse(bytes, cur_size, path, f, err, errn);
}

/* Everything a load may change, as bytes. */
typedef struct snapshot {
    unsigned char *p;
    size_t n, cap;
} snapshot;

static void snap_put(snapshot *s, const void *p, size_t n) {
    if (s->n + n > s->cap) {
        size_t cap = (s->n + n) * 2;
        unsigned char *q = realloc(s->p, cap);
        FUZZ_CHECK(q != NULL, "out of memory");
        s->p = q;
        s->cap = cap;
    }
    memcpy(s->p + s->n, p, n);
    s->n += n;
}

static void snap_take(const fuzz_setup *su, snapshot *s) {
    s->n = 0;
    unsigned char buf[16 * 8];
    for (int i = 0; i < su->spec->nvars; i++) {
        size_t nb = (size_t)clopt_variable_size(su->vars[i]) *
                    clopt_dtype_size(clopt_variable_dtype(su->vars[i]));
        FUZZ_CHECK(nb <= sizeof buf, "variable too large");
        FUZZ_CHECK(clopt_variable_read(su->vars[i], buf, nb) == CLOPT_OK, "read");
        snap_put(s, buf, nb);
    }
    if (!su->opt) return;
    int64_t it = clopt_optimizer_iterations(su->opt);
    double lr = 0;
    snap_put(s, &it, sizeof it);
    FUZZ_CHECK(clopt_optimizer_get_learning_rate(su->opt, &lr) == CLOPT_OK, "lr");
    snap_put(s, &lr, sizeof lr);
    size_t nv = clopt_optimizer_variable_count(su->opt);
    for (size_t i = 0; i < nv; i++) {
        clopt_variable *v = NULL;
        FUZZ_CHECK(clopt_optimizer_variable(su->opt, i, NULL, NULL, &v) == CLOPT_OK, "var %zu", i);
        size_t count = v ? (size_t)clopt_variable_size(v) : 1;
        double vals[16];
        FUZZ_CHECK(count <= 16, "slot too large");
        clopt_status st = clopt_optimizer_variable_read(su->opt, i, vals, count);
        FUZZ_CHECK(st == CLOPT_OK, "variable_read %zu: %s", i, clopt_status_name(st));
        snap_put(s, vals, count * sizeof *vals);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > MAX_INPUT) return 0;
    cur_data = data;
    cur_size = size;
    clopt_context *ctx = fuzz_context();
    snapshot before = {0}, after = {0};
    for (int k = 0; k < FUZZ_NSETUPS; k++) {
        fuzz_setup su;
        fuzz_setup_make(ctx, &fuzz_setups[k], 0, &su);
        snap_take(&su, &before);
        const char *fn = su.spec->with_model ? "clopt_checkpoint_load" : "clopt_optimizer_load";
        clopt_status st = clopt__checkpoint_load(su.opt, su.vars,
                                                 su.spec->with_model ? (size_t)su.spec->nvars : 0,
                                                 "fuzz.safetensors", fn, mem_reader);
        if (st != CLOPT_OK) {
            const char *msg = clopt_context_last_error(ctx);
            FUZZ_CHECK(st == CLOPT_ERR_CORRUPT_FILE || st == CLOPT_ERR_FILE_MISMATCH,
                       "%s: load failed with %s: %s", su.spec->label, clopt_status_name(st), msg);
            FUZZ_CHECK(msg && *msg, "%s: load failed with no message", su.spec->label);
            snap_take(&su, &after);
            FUZZ_CHECK(after.n == before.n && memcmp(after.p, before.p, before.n) == 0,
                       "%s: the failed load (%s: %s) changed the state", su.spec->label,
                       clopt_status_name(st), msg);
        } else if (su.opt) {
            st = clopt_optimizer_apply(su.opt, su.grads, NULL, (size_t)su.spec->nvars);
            FUZZ_CHECK(st == CLOPT_OK, "%s: apply after a load: %s: %s", su.spec->label,
                       clopt_status_name(st), clopt_context_last_error(ctx));
            snap_take(&su, &after);
        }
        clopt_optimizer_destroy(su.opt);
        for (int i = 0; i < su.spec->nvars; i++) {
            clopt_variable_destroy(su.vars[i]);
            clopt_variable_destroy(su.grads[i]);
        }
    }
    free(before.p);
    free(after.p);
    clopt_context_destroy(ctx);
    return 0;
}
