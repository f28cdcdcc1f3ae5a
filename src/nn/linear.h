/* linear.h — nn.Linear: y = x · Wᵀ + b. */
#ifndef TFM_NN_LINEAR_H
#define TFM_NN_LINEAR_H

#include <stdbool.h>
#include <stdint.h>

/* y (R, out) = x (R, in) · w (out, in)ᵀ + b (out, or NULL). Row strides: ldy, ldx. */
void linear_forward(float *y, int64_t ldy, const float *x, int64_t ldx, const float *w,
                    const float *b, int64_t R, int64_t in, int64_t out);

/* Backward of linear_forward, accumulating: dx (R, in) += dy · w (if dx non-NULL);
 * dw (out, in) += dyᵀ · x; db (out) += Σ_r dy (if db non-NULL). */
void linear_backward(float *dx, int64_t lddx, float *dw, float *db, const float *dy, int64_t lddy,
                     const float *x, int64_t ldx, const float *w, int64_t R, int64_t in,
                     int64_t out);

/* The two halves of linear_backward. The input gradient: dx (R, in) = dy · w, or
 * += when accumulate (overwriting saves zeroing dx first). */
void linear_backward_input(float *dx, int64_t lddx, const float *dy, int64_t lddy, const float *w,
                           int64_t R, int64_t in, int64_t out, bool accumulate);
/* The parameter gradients, accumulating: dw (out, in) += dyᵀ · x; db (out) += Σ_r dy (if
 * db non-NULL). */
void linear_backward_params(float *dw, float *db, const float *dy, int64_t lddy, const float *x,
                            int64_t ldx, int64_t R, int64_t in, int64_t out);

#endif
