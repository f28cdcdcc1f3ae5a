/* elementwise_isa.h — the one-thread pieces of the element-wise kernels, one set per
 * instruction set (bodies: elementwise_impl.h, compiled once per set by
 * elementwise_generic.c, _avx2.c and _avx512.c). elementwise.c picks a set with
 * cpu_active() and splits the work over threads; every piece computes each element in
 * the same order whatever the set, so the paths agree bit for bit.
 * Legend: R rows, C columns (row length), n elements; i0 the flat index of the first
 * element (the dropout hash's counter), [c0, c1) a block of columns. */
#ifndef TFM_KERNELS_ELEMENTWISE_ISA_H
#define TFM_KERNELS_ELEMENTWISE_ISA_H

#include <stdbool.h>
#include <stdint.h>

#include "core/rng.h"

/* One dropout site: element i is dropped when (rng_hash_bits(seed, i) >> 40) < thresh
 * (the same decision as rng_dropout_scale), else multiplied by scale = 1 / (1 − p).
 * A NULL ew_drop means no dropout. */
typedef struct ew_drop {
    uint64_t seed, thresh;
    float scale;
} ew_drop;

/* The factor of element i: 0 or scale, as rng_dropout_scale(seed, i, p). */
static inline float ew_drop_factor(uint64_t seed, uint64_t thresh, float scale, uint64_t i) {
    return (rng_hash_bits(seed, i) >> 40) < thresh ? 0.0f : scale;
}

/* Widest column block the column kernels take (their per-column sums live on the stack).
 * Each column's sum runs over the rows in order whatever the blocks, so the block width
 * does not change any result: elementwise.c gives each thread one wide block (long
 * contiguous runs of each row stream well; 64-column blocks of 8 KB-apart rows did not). */
#define EW_COL_BLOCK 1024

typedef struct ew_kernels {
    /* y (n) = x · factor; y may alias x. */
    void (*dropout)(float *y, const float *x, int64_t n, uint64_t i0, const ew_drop *d);
    /* y (n) = a + t · factor (d NULL: a + t); y may alias a. */
    void (*dropout_add)(float *y, const float *a, const float *t, int64_t n, uint64_t i0,
                        const ew_drop *d);
    /* y (n) = gelu(x) = x·Φ(x) (exact GELU); y may alias x. */
    void (*gelu)(float *y, const float *x, int64_t n);
    /* dx (n) += dy · gelu'(x), gelu'(x) = Φ(x) + x·φ(x). */
    void (*gelu_backward)(float *dx, const float *dy, const float *x, int64_t n);
    /* One row: v = y + b (b NULL: y); pre = v if non-NULL; y = act(v) · factor. */
    void (*act_dropout_row)(float *y, float *pre, const float *b, int64_t C, bool gelu,
                            uint64_t i0, const ew_drop *d);
    /* One row of LayerNorm. t NULL: normalise x. Else sum = x + t · factor (saved) is
     * normalised. out may alias x. weight, bias NULL or (C); mean, rstd NULL or one float. */
    void (*layernorm_row)(float *out, float *sum, float *mean, float *rstd, const float *x,
                          const float *t, const float *weight, const float *bias, int64_t C,
                          float eps, uint64_t i0, const ew_drop *d);
    /* One row of LayerNorm's input gradient g. ddrop NULL: dx += g. Else dx = g (dx may
     * alias dy) and ddrop = g · factor. */
    void (*layernorm_backward_row)(float *dx, float *ddrop, const float *dy, const float *x,
                                   float mean, float rstd, const float *weight, int64_t C,
                                   uint64_t i0, const ew_drop *d);
    /* Columns [c0, c1) (at most EW_COL_BLOCK) of LayerNorm's parameter gradients, rows in
     * order: dweight += Σ_r dy · x̂ (if non-NULL), dbias += Σ_r dy (if non-NULL). */
    void (*layernorm_backward_cols)(float *dweight, float *dbias, const float *dy,
                                    const float *x, const float *mean, const float *rstd,
                                    int64_t R, int64_t C, int64_t c0, int64_t c1);
    /* db[c0, c1) += Σ_r dy[r, c], rows in order; dy row stride ld. */
    void (*bias_cols)(float *db, const float *dy, int64_t ld, int64_t R, int64_t c0,
                      int64_t c1);
    /* Columns [c0, c1): dv = dy · scale where y > 0, else 0 (dv may alias dy);
     * db += Σ_r dv if non-NULL. */
    void (*relu_dropout_backward_cols)(float *dv, float *db, const float *dy, const float *y,
                                       int64_t R, int64_t C, int64_t c0, int64_t c1,
                                       float scale);
    /* Columns [c0, c1): dv = dy · factor · gelu'(v) (dv may alias dy); db += Σ_r dv if
     * non-NULL. */
    void (*gelu_dropout_backward_cols)(float *dv, float *db, const float *dy, const float *v,
                                       int64_t R, int64_t C, int64_t c0, int64_t c1,
                                       const ew_drop *d);
} ew_kernels;

extern const ew_kernels ew_kernels_generic;
#if defined(TFM_HAVE_X86_KERNELS)
extern const ew_kernels ew_kernels_avx2;
extern const ew_kernels ew_kernels_avx512;
#endif

/* The set for the active CPU path (core/cpu.h). */
const ew_kernels *ew_active(void);

#endif
