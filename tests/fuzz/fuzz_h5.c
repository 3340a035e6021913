/* Fuzz target: the Keras .weights.h5 reader (keras_h5.c's clopt__h5_read, through checkpoint.c's
 * load path as clopt_optimizer_load_h5 runs it, into each optimizer setup of fuzz_util.h) and
 * `clopt inspect` of an HDF5 file (clopt__inspect_h5). libhdf5 reads files by path, so each input
 * is written to a scratch file ($TMPDIR, else /tmp). Properties as for fuzz_safetensors (also
 * CLOPT_ERR_IO allowed), and inspect returns CLOPT_OK or CLOPT_ERR_CORRUPT_FILE. Built only with
 * libhdf5 (CLOPT_WITH_HDF5). libhdf5 itself is not instrumented: a crash inside it is reported,
 * but its coverage does not guide the fuzzer and its memory errors go unseen unless they crash.
 * Fuzz it with ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=0: libhdf5 asks malloc for
 * sizes read from a corrupt file (0x2200000000000060 bytes, say) and handles the NULL, which ASan
 * otherwise reports as allocation-size-too-big, but then leaks a few of its own blocks
 * (H5FL_blk_malloc under H5C_protect, from H5Gopen2 and H5Oopen). Findings inside libhdf5 1.10.8
 * (Debian 12) when it reads a variable-length string attribute of a corrupt file (read_str_attr's
 * H5Aread): a global heap collection holding an object of size 0 made it loop forever
 * (corpus/h5/timeout-heap_object_size_15.weights.h5), and garbage object sizes could malloc
 * 1.7 GB (H5T__conv_vlen) or memcpy with a garbage length (H5HG_read). keras_h5.c now walks every
 * collection before the first such read and refuses a file whose walk would not end inside its
 * collection; beyond that, .weights.h5 files are only as safe to read as libhdf5 makes them. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <unistd.h>
#include "fuzz_util.h"

#define MAX_INPUT 65536

static char path[4096];

static void remove_scratch(void) {
    if (path[0]) unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static FILE *sink;
    if (size > MAX_INPUT) return 0;
    if (!path[0]) {
        const char *dir = getenv("TMPDIR");
        snprintf(path, sizeof path, "%s/clopt-fuzz-h5-%ld.weights.h5", dir && *dir ? dir : "/tmp",
                 (long)getpid());
        atexit(remove_scratch);
        sink = fopen("/dev/null", "w");
        FUZZ_CHECK(sink != NULL, "cannot open /dev/null");
    }
    FILE *f = fopen(path, "wb");
    FUZZ_CHECK(f != NULL, "cannot write %s", path);
    FUZZ_CHECK(fwrite(data, 1, size, f) == size && fclose(f) == 0, "cannot write %s", path);
    fuzz_load_everywhere(clopt__h5_read, path, 1);
    char err[CLOPT__IO_ERRN] = "";
    clopt_status st = clopt__inspect_h5(path, sink, err, sizeof err);
    FUZZ_CHECK(st == CLOPT_OK || st == CLOPT_ERR_CORRUPT_FILE, "inspect returned %s: %s",
               clopt_status_name(st), err);
    clearerr(sink);
    return 0;
}
