/* elementwise.h — row-wise and element-wise kernels on plain float arrays.
 * Legend: R rows, C columns (the last, contiguous dimension). */
#ifndef TFM_KERNELS_ELEMENTWISE_H
#define TFM_KERNELS_ELEMENTWISE_H

#include <stdint.h>


/* y[r, :] += b for every row. y (R, C), b (C). */
void add_bias_rows(float *y, const float *b, int64_t R, int64_t C);
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
/* db (C) += Σ_r dy[r, :]: a bias gradient, rows summed in order per column. */
void bias_backward(float *db, const float *dy, int64_t R, int64_t C);

/* Inverted dropout in place with the counter-based RNG: x[i] *= 0 or 1/(1−p), the
 * factor of element i under `seed`. The backward pass is the same call on dy. */
void dropout_apply(float *x, int64_t n, float p, uint64_t seed);

#endif
