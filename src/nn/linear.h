/* linear.h — nn.Linear: y = x · Wᵀ + b. */
#ifndef TFM_NN_LINEAR_H
#define TFM_NN_LINEAR_H

#include <stdint.h>

/* y (R, out) = x (R, in) · w (out, in)ᵀ + b (out, or NULL). Row strides: ldy, ldx. */
void linear_forward(float *y, int64_t ldy, const float *x, int64_t ldx, const float *w,
                    const float *b, int64_t R, int64_t in, int64_t out);

#endif
