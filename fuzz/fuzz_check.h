/* fuzz_check.h — what the fuzz targets share:
 *   CHECK(cond)  aborts with the condition and tfm_last_error() when an invariant is
 *                broken (libFuzzer then saves the input). The targets are also compiled
 *                into tests/test_fuzz_regressions.c, where the abort fails the test.
 *   st_mutate    a safetensors-aware mutation for the targets' LLVMFuzzerCustomMutator
 *                (not compiled with FUZZ_NO_MUTATOR, as in that test).
 */
#ifndef TFM_FUZZ_CHECK_H
#define TFM_FUZZ_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tfm.h"

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "%s:%d: invariant broken: %s (%s)\n", __FILE__, __LINE__,    \
                    #cond, tfm_last_error());                                           \
            abort();                                                                    \
        }                                                                               \
    } while (0)

#ifndef FUZZ_NO_MUTATOR
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);

/* Mutate a safetensors file in data[0, size) (room for max bytes). The 8-byte header
 * length must equal the JSON's length to the byte, so a plain mutation that inserts or
 * erases a byte of the header makes a file that is rejected at once. Three times in four,
 * when the length fits, this mutates the header alone or the data section alone and
 * rewrites the length; otherwise the bytes as they are. */
static inline size_t st_mutate(uint8_t *data, size_t size, size_t max, unsigned seed) {
    uint64_t hlen = 0;
    if (size >= 8)
        for (int i = 7; i >= 0; i--) hlen = hlen << 8 | data[i];
    if (size < 8 || hlen > size - 8 || seed % 4 == 0) return LLVMFuzzerMutate(data, size, max);
    size_t dlen = size - 8 - (size_t)hlen;
    if (max - 8 - (size_t)hlen == 0 || max - 8 - dlen == 0) return LLVMFuzzerMutate(data, size, max);
    if ((seed >> 2) % 2 == 0) { /* the data section */
        return 8 + (size_t)hlen + LLVMFuzzerMutate(data + 8 + hlen, dlen, max - 8 - (size_t)hlen);
    }
    /* the header: the data section waits aside */
    uint8_t *aside = malloc(dlen ? dlen : 1);
    if (!aside) return LLVMFuzzerMutate(data, size, max);
    memcpy(aside, data + 8 + hlen, dlen);
    size_t h = LLVMFuzzerMutate(data + 8, (size_t)hlen, max - 8 - dlen);
    memcpy(data + 8 + h, aside, dlen);
    free(aside);
    for (int i = 0; i < 8; i++) data[i] = (uint8_t)((uint64_t)h >> (8 * i));
    return 8 + h + dlen;
}
#endif

#endif
