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
#include "st_mutator.h"

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > MAX_INPUT) return 0;
    cur_data = data;
    cur_size = size;
    fuzz_load_everywhere(mem_reader, "fuzz.safetensors", 0);
    return 0;
}
