/* linear.c — nn.Linear forward through the one GEMM. */
#include "nn/linear.h"

#include "kernels/gemm.h"

void linear_forward(float *y, int64_t ldy, const float *x, int64_t ldx, const float *w,
                    const float *b, int64_t R, int64_t in, int64_t out) {
    if (b) {
        for (int64_t r = 0; r < R; r++)
            for (int64_t o = 0; o < out; o++) y[r * ldy + o] = b[o];
    }
    tfm_gemm(false, true, R, out, in, 1.0f, x, ldx, w, in, b ? 1.0f : 0.0f, y, ldy);
}

void linear_backward(float *dx, int64_t lddx, float *dw, float *db, const float *dy, int64_t lddy,
                     const float *x, int64_t ldx, const float *w, int64_t R, int64_t in,
                     int64_t out) {
    if (R == 0) return;
    if (dx) tfm_gemm(false, false, R, in, out, 1.0f, dy, lddy, w, in, 1.0f, dx, lddx);
    if (dw) tfm_gemm(true, false, out, in, R, 1.0f, dy, lddy, x, ldx, 1.0f, dw, in);
    if (db) {
        for (int64_t o = 0; o < out; o++) {
            double s = 0.0;
            for (int64_t r = 0; r < R; r++) s += dy[r * lddy + o];
            db[o] += (float)s;
        }
    }
}
