/* bf16.h — bfloat16 values and the bf16 copy of a model's weights.
 *
 * A bf16 is the high half of an IEEE float: 1 sign, 8 exponent, 7 mantissa bits.
 * Rounding float → bf16 is to nearest, ties to even (as PyTorch's .to(torch.bfloat16)
 * and VCVTNEPS2BF16); NaN stays NaN (quiet). Subnormal floats keep their bits as
 * bf16 subnormals (PyTorch does the same); the products flush them (see gemm_bf16).
 */
#ifndef TFM_KERNELS_BF16_H
#define TFM_KERNELS_BF16_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tfm.h"

static inline uint16_t bf16_from_f32(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float bf16_to_f32(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* f rounded to the nearest bf16, as a float. */
static inline float bf16_round(float f) { return bf16_to_f32(bf16_from_f32(f)); }

/* dst[i] = bf16(src[i]), i < n (over the threads when n is large). */
void bf16_convert(uint16_t *dst, const float *src, size_t n);

/* The bf16 copy of a set of FP32 tensors (a module's parameters): each range of
 * floats [f32, f32 + count) has a bf16 twin; bf16_weights_find maps a pointer into a
 * range to the same element of its twin. Built from the FP32 masters, refreshed when
 * they change (bf16_weights_refresh), never written otherwise. */
typedef struct bf16_range {
    const float *f32;
    size_t count;
    uint16_t *bf16;
} bf16_range;

typedef struct bf16_weights {
    bf16_range *ranges; /* sorted by f32 address, disjoint */
    size_t n;
    uint16_t *block;    /* every twin, one allocation */
    bool stale;         /* the masters changed since the last refresh */
} bf16_weights;

/* Make the twins of the n ranges (f32[i], counts[i]) and fill them. Replaces any old
 * ones. TFM_ERR_NOMEM leaves w empty. */
tfm_status bf16_weights_build(bf16_weights *w, const float *const *f32, const size_t *counts,
                              size_t n);
/* Convert the masters again (all twins), clearing stale. */
void bf16_weights_refresh(bf16_weights *w);
/* The bf16 twin of the float at p, or NULL if p lies in no range (or w is NULL/empty). */
const uint16_t *bf16_weights_find(const bf16_weights *w, const float *p);
/* The same when all of [p, p + count) lies in one range; NULL otherwise. */
const uint16_t *bf16_weights_find_span(const bf16_weights *w, const float *p, size_t count);
void bf16_weights_free(bf16_weights *w);

#endif
