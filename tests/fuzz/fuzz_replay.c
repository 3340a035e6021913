/* Fuzz target: `clopt replay`'s case reader (tools/replay_case.c: Python-style NaN/Infinity
 * tokens, the optimizer object, variables, steps, replicas). Properties checked on every input:
 *   - cli_case_load returns 0 or -1, and cli_case_free cleans up either way (ASan and LSan see
 *     the rest);
 *   - on success every variable has a name, a known dtype, a rank within CLOPT_MAX_NDIM, a size
 *     that is the product of its shape, and exactly that many numbers, none a finite number
 *     that its dtype turns infinite; every gradient of every step (and replica) is null or
 *     exactly as many numbers, as finite after the dtype conversion as before; and the
 *     optimizer text is valid JSON.
 * The reader prints its one-line error to stderr on every refused input: run libFuzzer with
 * -close_fd_mask=2 to keep the output readable. */
#include <math.h>
#include <stdint.h>
#include "cli_internal.h"
#include "fuzz_util.h"

#define MAX_INPUT 65536

static void check_numbers(const json_t *a, const cli_var *v, const char *what) {
    FUZZ_CHECK(json_is_array(a) && json_array_size(a) == v->size, "%s: %zu numbers for size %zu",
               what, json_array_size(a), v->size);
    for (size_t i = 0; i < v->size; i++) {
        double d, cell;
        FUZZ_CHECK(cli_json_number(json_array_get(a, i), &d), "%s[%zu] is not a number", what, i);
        cli_store(&cell, v->dtype, 0, d);
        FUZZ_CHECK(!isfinite(d) || isfinite(cli_load(&cell, v->dtype, 0)),
                   "%s[%zu] = %g overflows %s but was accepted", what, i, d,
                   clopt_dtype_name(v->dtype));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > MAX_INPUT) return 0;
    cli_case c;
    int r = cli_case_load(&c, "<fuzz>", (const char *)data, size);
    FUZZ_CHECK(r == 0 || r == -1, "cli_case_load returned %d", r);
    if (r == 0) {
        FUZZ_CHECK(c.nvars > 0 && c.vars, "no variables");
        json_error_t e;
        json_t *opt = json_loads(c.optimizer_json, 0, &e);
        FUZZ_CHECK(opt && json_is_object(opt), "optimizer text: %s", e.text);
        json_decref(opt);
        for (size_t j = 0; j < c.nvars; j++) {
            const cli_var *v = &c.vars[j];
            FUZZ_CHECK(v->name && clopt_dtype_name(v->dtype), "variables[%zu]", j);
            FUZZ_CHECK(v->ndim >= 0 && v->ndim <= CLOPT_MAX_NDIM, "variables[%zu].ndim", j);
            size_t n = 1;
            for (int d = 0; d < v->ndim; d++) n *= (size_t)v->shape[d];
            FUZZ_CHECK(n == v->size, "variables[%zu]: size %zu, shape product %zu", j, v->size, n);
            check_numbers(v->value, v, "value");
        }
        size_t nrep = c.replicas ? (size_t)c.replicas : 1;
        for (size_t i = 0; i < c.nsteps; i++)
            for (size_t k = 0; k < nrep; k++)
                for (size_t j = 0; j < c.nvars; j++) {
                    const json_t *g = cli_case_grad(&c, i, k, j);
                    if (g) check_numbers(g, &c.vars[j], "gradient");
                }
    }
    cli_case_free(&c);
    return 0;
}
