/* elementwise.c — bias, activations and LayerNorm on rows of floats. */
#include "kernels/elementwise.h"

#include <math.h>

#include "core/rng.h"

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

void relu_backward(float *dx, const float *dy, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (x[i] > 0.0f) dx[i] += dy[i];
}

void gelu_backward(float *dx, const float *dy, const float *x, int64_t n) {
    const float inv_sqrt2 = 0.70710678118654752440f, inv_sqrt2pi = 0.39894228040143267794f;
    for (int64_t i = 0; i < n; i++) {
        float cdf = 0.5f * (1.0f + erff(x[i] * inv_sqrt2));
        float pdf = inv_sqrt2pi * expf(-0.5f * x[i] * x[i]);
        dx[i] += dy[i] * (cdf + x[i] * pdf);
    }
}

/* dx = rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ · x̂)), dx̂ = dy · weight. */
void layernorm_backward(float *dx, float *dweight, float *dbias, const float *dy, const float *x,
                        const float *mean, const float *rstd, const float *weight, int64_t R,
                        int64_t C) {
#pragma omp parallel for schedule(static) if (R * C > (1 << 16))
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x + r * C, *dyr = dy + r * C;
        float *dxr = dx + r * C;
        const float m = mean[r], rs = rstd[r];
        double sum_g = 0.0, sum_gx = 0.0;
        for (int64_t c = 0; c < C; c++) {
            float g = dyr[c] * (weight ? weight[c] : 1.0f);
            sum_g += g;
            sum_gx += g * ((xr[c] - m) * rs);
        }
        const float mg = (float)(sum_g / (double)C), mgx = (float)(sum_gx / (double)C);
        for (int64_t c = 0; c < C; c++) {
            float g = dyr[c] * (weight ? weight[c] : 1.0f);
            float xh = (xr[c] - m) * rs;
            dxr[c] += rs * (g - mg - xh * mgx);
        }
    }
    if (!dweight && !dbias) return;
#pragma omp parallel for schedule(static) if (R * C > (1 << 16))
    for (int64_t c = 0; c < C; c++) {
        double sw = 0.0, sb = 0.0;
        for (int64_t r = 0; r < R; r++) {
            float g = dy[r * C + c];
            sw += g * ((x[r * C + c] - mean[r]) * rstd[r]);
            sb += g;
        }
        if (dweight) dweight[c] += (float)sw;
        if (dbias) dbias[c] += (float)sb;
    }
}

void bias_backward(float *db, const float *dy, int64_t R, int64_t C) {
#pragma omp parallel for schedule(static) if (R * C > (1 << 16))
    for (int64_t c = 0; c < C; c++) {
        double s = 0.0;
        for (int64_t r = 0; r < R; r++) s += dy[r * C + c];
        db[c] += (float)s;
    }
}

void dropout_apply(float *x, int64_t n, float p, uint64_t seed) {
    if (p <= 0.0f) return;
#pragma omp parallel for schedule(static) if (n > (1 << 16))
    for (int64_t i = 0; i < n; i++) x[i] *= rng_dropout_scale(seed, (uint64_t)i, p);
}
