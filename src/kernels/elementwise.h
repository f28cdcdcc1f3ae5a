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

#endif
