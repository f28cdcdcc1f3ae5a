/* linear.c — nn.Linear forward and backward through the one GEMM.
 * Legend: R rows, in / out the feature widths. */
#include "nn/linear.h"

#include "kernels/elementwise.h"
#include "kernels/gemm.h"

void linear_forward(float *y, int64_t ldy, const float *x, int64_t ldx, const float *w,
                    const float *b, int64_t R, int64_t in, int64_t out) {
    if (b) tfm_gemm_bias(false, true, R, out, in, x, ldx, w, in, b, y, ldy); /* bias + x · wᵀ */
    else tfm_gemm(false, true, R, out, in, 1.0f, x, ldx, w, in, 0.0f, y, ldy);
}

void linear_backward_input(float *dx, int64_t lddx, const float *dy, int64_t lddy, const float *w,
                           int64_t R, int64_t in, int64_t out, bool accumulate) {
    if (R == 0) return;
    tfm_gemm(false, false, R, in, out, 1.0f, dy, lddy, w, in, accumulate ? 1.0f : 0.0f, dx, lddx);
}

void linear_backward_params(float *dw, float *db, const float *dy, int64_t lddy, const float *x,
                            int64_t ldx, int64_t R, int64_t in, int64_t out) {
    if (R == 0) return;
    if (dw) tfm_gemm(true, false, out, in, R, 1.0f, dy, lddy, x, ldx, 1.0f, dw, in);
    if (db) bias_backward(db, dy, lddy, R, out);
}

void linear_backward(float *dx, int64_t lddx, float *dw, float *db, const float *dy, int64_t lddy,
                     const float *x, int64_t ldx, const float *w, int64_t R, int64_t in,
                     int64_t out) {
    if (dx) linear_backward_input(dx, lddx, dy, lddy, w, R, in, out, true);
    linear_backward_params(dw, db, dy, lddy, x, ldx, R, in, out);
}
