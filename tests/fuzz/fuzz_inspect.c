/* Fuzz target: `clopt inspect` (inspect.c) on a safetensors image: the summary of the tensors, the
 * metadata, the optimizer variables' Keras paths and the pretty-printed optimizer config, all read
 * from the file. The input is the file's bytes; the output goes to /dev/null. Properties: the
 * call returns CLOPT_OK or CLOPT_ERR_CORRUPT_FILE (with a message), and the sanitizers see no
 * memory error, leak or undefined behaviour. */
#include <stdint.h>
#include "fuzz_util.h"
#include "io/io_internal.h"
#include "st_mutator.h"

#define MAX_INPUT 65536

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static FILE *sink;
    if (size > MAX_INPUT) return 0;
    if (!sink) {
        sink = fopen("/dev/null", "w");
        FUZZ_CHECK(sink != NULL, "cannot open /dev/null");
    }
    unsigned char *bytes = malloc(size ? size : 1);
    if (!bytes) return 0;
    if (size) memcpy(bytes, data, size);
    char err[CLOPT__IO_ERRN] = "";
    clopt_status st = clopt__inspect_image(bytes, size, "fuzz.safetensors", sink, err, sizeof err);
    FUZZ_CHECK(st == CLOPT_OK || st == CLOPT_ERR_CORRUPT_FILE, "inspect returned %s: %s",
               clopt_status_name(st), err);
    FUZZ_CHECK(st == CLOPT_OK || err[0], "inspect failed with no message");
    clearerr(sink);
    return 0;
}
