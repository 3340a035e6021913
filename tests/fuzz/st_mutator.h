/* A libFuzzer custom mutator for safetensors inputs (fuzz_safetensors, fuzz_inspect): half the
 * time it mutates only the header JSON and rewrites the 8-byte header length to match, so that
 * mutants get past the length check and reach the JSON, tensor and checkpoint checks; otherwise
 * it mutates the whole file as libFuzzer would. Only in libFuzzer builds (CLOPT_LIBFUZZER). */
#ifndef CLOPT_FUZZ_ST_MUTATOR_H
#define CLOPT_FUZZ_ST_MUTATOR_H
#ifdef CLOPT_LIBFUZZER

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed);

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed) {
    if (size >= 8 && (seed & 1)) {
        uint64_t n = 0;
        for (int i = 7; i >= 0; i--) n = (n << 8) | data[i];
        if (n <= size - 8) {
            size_t tail = size - 8 - (size_t)n;
            unsigned char *saved = malloc(tail ? tail : 1);
            if (saved && max_size >= 8 + tail + 1) {
                memcpy(saved, data + 8 + n, tail);
                size_t nn = LLVMFuzzerMutate(data + 8, (size_t)n, max_size - 8 - tail);
                memcpy(data + 8 + nn, saved, tail);
                for (int i = 0; i < 8; i++) data[i] = (uint8_t)((uint64_t)nn >> (8 * i));
                free(saved);
                return 8 + nn + tail;
            }
            free(saved);
        }
    }
    return LLVMFuzzerMutate(data, size, max_size);
}

#endif
#endif
