/* elementwise.c — bias, activations and LayerNorm on rows of floats. */
#include "kernels/elementwise.h"

#include <math.h>

void add_bias_rows(float *y, const float *b, int64_t R, int64_t C) {
    for (int64_t r = 0; r < R; r++) {
        float *row = y + r * C;
        for (int64_t c = 0; c < C; c++) row[c] += b[c];
    }
}

void add_vectors(float *y, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

void relu_forward(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = x[i] > 0.0f ? x[i] : (x[i] < 0.0f ? 0.0f : x[i]);
}

void gelu_forward(float *x, int64_t n) {
    const float inv_sqrt2 = 0.70710678118654752440f;
    for (int64_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * inv_sqrt2));
}

/* Mean and variance accumulate in double: fp32-tight against PyTorch whatever C. */
void layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *weight,
                       const float *bias, int64_t R, int64_t C, float eps) {
#pragma omp parallel for schedule(static) if (R * C > (1 << 16))
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x + r * C;
        float *yr = out + r * C;
        double sum = 0.0;
        for (int64_t c = 0; c < C; c++) sum += xr[c];
        double mu = sum / (double)C;
        double var = 0.0;
        for (int64_t c = 0; c < C; c++) {
            double d = xr[c] - mu;
            var += d * d;
        }
        var /= (double)C;
        float rs = (float)(1.0 / sqrt(var + (double)eps));
        float m = (float)mu;
        for (int64_t c = 0; c < C; c++) {
            float v = (xr[c] - m) * rs;
            if (weight) v *= weight[c];
            if (bias) v += bias[c];
            yr[c] = v;
        }
        if (mean) mean[r] = m;
        if (rstd) rstd[r] = rs;
    }
}
