/* elementwise.h — row-wise and element-wise kernels on plain float arrays, and the fused
 * forms the Transformer's blocks use (bias + activation + dropout after the FFN's first
 * linear, residual add + dropout + LayerNorm, LayerNorm backward + dropout), each one
 * pass over memory instead of several.
 *
 * Threads: large calls split rows (or, for sums over rows, blocks of columns) over
 * OpenMP threads; every element and every column sum is computed in one fixed order, so
 * results do not depend on the thread count. Dropout factors come from the counter-based
 * hash (core/rng.h): element i of a call (its flat index) keeps or drops exactly as
 * rng_dropout_scale(seed, i, p) says, on every CPU path.
 * Legend: R rows, C columns (the last, contiguous dimension), n elements. */
#ifndef TFM_KERNELS_ELEMENTWISE_H
#define TFM_KERNELS_ELEMENTWISE_H

#include <stdbool.h>
#include <stdint.h>


/* y[r, :] += b for every row. y (R, C), b (C). */
void add_bias_rows(float *y, const float *b, int64_t R, int64_t C);
/* y[r, 0:C] = b for every row: the bias a GEMM with beta = 1 then adds to.
 * y (R, ldy), b (C). */
void fill_rows(float *y, int64_t ldy, const float *b, int64_t R, int64_t C);
/* dst (n) = src (n), not overlapping; large copies split over the threads. */
void copy_floats(float *dst, const float *src, int64_t n);
/* y = a + b, element-wise over n. y may alias a or b. */
void add_vectors(float *y, const float *a, const float *b, int64_t n);
/* In place: relu(x) = max(x, 0). */
void relu_forward(float *x, int64_t n);
/* In place: exact GELU, x · Φ(x) = 0.5 · x · (1 + erf(x / √2)) (PyTorch's default). */
void gelu_forward(float *x, int64_t n);
/* LayerNorm over the last dimension, biased variance (PyTorch):
 * out = (x − mean) / sqrt(var + eps) · weight + bias.
 * out (R, C) may alias x (R, C); weight (C) or NULL (elementwise_affine off);
 * bias (C) or NULL; mean, rstd (R) or NULL: saved for backward. */
void layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *weight,
                       const float *bias, int64_t R, int64_t C, float eps);

/* ---- dropout and the fused forward kernels ---- */

/* Inverted dropout in place with the counter-based RNG: x[i] *= 0 or 1/(1−p), the
 * factor of element i under `seed`. The backward pass is the same call on dy. */
void dropout_apply(float *x, int64_t n, float p, uint64_t seed);
/* y = dropout(x) (a copy when p <= 0); y (n) may alias x (n). */
void dropout_copy(float *y, const float *x, int64_t n, float p, uint64_t seed);
/* The pre-norm residual: y = a + dropout(t), t not modified. y (n) may alias a (n). */
void dropout_add(float *y, const float *a, const float *t, int64_t n, float p, uint64_t seed);
/* The post-norm residual: sum = a + dropout(t), out = LayerNorm(sum), row by row.
 * out (R, C) may alias a (R, C); sum (R, C) is kept for backward; t (R, C);
 * weight, bias, mean, rstd as layernorm_forward. */
void add_dropout_layernorm_forward(float *out, float *sum, float *mean, float *rstd,
                                   const float *a, const float *t, const float *weight,
                                   const float *bias, int64_t R, int64_t C, float eps, float p,
                                   uint64_t seed);
/* The epilogue of the feed-forward block's first linear, y (R, C) its x · Wᵀ:
 * v = y + b (b (C) or NULL); pre (R, C) = v if non-NULL (GELU's backward needs it);
 * y = dropout(act(v)), act ReLU or (gelu) exact GELU. */
void bias_act_dropout_forward(float *y, float *pre, const float *b, int64_t R, int64_t C,
                              bool gelu, float p, uint64_t seed);

/* ---- backward: every function ACCUMULATES into its gradient outputs ---- */

/* dx += dy where x > 0 (x: the ReLU's input or output). */
void relu_backward(float *dx, const float *dy, const float *x, int64_t n);
/* dx += dy · (Φ(x) + x·φ(x)), x the GELU's input. */
void gelu_backward(float *dx, const float *dy, const float *x, int64_t n);
/* LayerNorm backward; mean and rstd as saved by layernorm_forward.
 * dx (R, C) += …;  dweight (C) += Σ_r dy·x̂ (if non-NULL);  dbias (C) += Σ_r dy (if
 * non-NULL). weight (C) or NULL. Sums over rows run in a fixed order per column. */
void layernorm_backward(float *dx, float *dweight, float *dbias, const float *dy, const float *x,
                        const float *mean, const float *rstd, const float *weight, int64_t R,
                        int64_t C);
/* Backward of add_dropout_layernorm_forward: with g the gradient of the LayerNorm's input
 * (`sum`), dres (R, C) = g (OVERWRITTEN; may alias dy: the residual path's gradient) and
 * ddrop (R, C) = dropout(g) (the gradient of t). dweight, dbias accumulate as in
 * layernorm_backward; x is the saved sum. */
void layernorm_backward_dropout(float *dres, float *ddrop, float *dweight, float *dbias,
                                const float *dy, const float *x, const float *mean,
                                const float *rstd, const float *weight, int64_t R, int64_t C,
                                float p, uint64_t seed);
/* db (C) += Σ_r dy[r, :]: a bias gradient, rows summed in order per column.
 * dy (R, lddy). */
void bias_backward(float *db, const float *dy, int64_t lddy, int64_t R, int64_t C);
/* Backward of bias_act_dropout_forward with ReLU, from its output y (R, C): the gradient
 * of v is dy · 1/(1−p) where y > 0, else 0 (y > 0 exactly where the element was kept and
 * v > 0), so no mask is recomputed. dv (R, C) is OVERWRITTEN and may alias dy (R, C);
 * db (C) += Σ_r dv if non-NULL (the bias gradient, rows in order). */
void relu_dropout_backward(float *dv, float *db, const float *dy, const float *y, int64_t R,
                           int64_t C, float p);
/* The same with GELU, from the saved pre-activation v (R, C):
 * dv = dropout(dy) · gelu'(v), OVERWRITTEN, may alias dy; db (C) += Σ_r dv if non-NULL. */
void gelu_dropout_backward(float *dv, float *db, const float *dy, const float *v, int64_t R,
                           int64_t C, float p, uint64_t seed);

#endif
