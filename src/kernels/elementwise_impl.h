/* elementwise_impl.h — the bodies of the one-thread element-wise pieces (contracts in
 * elementwise_isa.h), in plain C written for the compiler to vectorise: included once
 * per instruction set with EW_FN(name) naming that set's table (elementwise_generic.c,
 * elementwise_avx2.c, elementwise_avx512.c).
 *
 * The same source gives the same bits on every set: integer hashing is exact, no float
 * expression is contracted into an FMA (pragma below) or reordered, and every sum runs
 * over EW_LANES interleaved partial sums (a fixed order, wide enough to vectorise) that
 * are then added in a fixed tree.
 * Legend: R rows, C columns (row length), n elements, w = c1 − c0 columns of a block. */
#include <math.h>

#include "kernels/elementwise_isa.h"

/* No a·b + c contracted into an FMA (GCC before 14 contracts by default, even in ISO C
 * mode, and the build asks for it in SIMD files; clang within expressions): the AVX2 and
 * AVX-512 builds must round as the generic one, and as PyTorch's separate multiply and
 * add. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#ifndef EW_FN
#error "define EW_FN before including elementwise_impl.h"
#endif

#define EW_LANES 8
/* Floats per tile of a row's temporaries (a multiple of EW_LANES). */
#define EW_TILE 256

/* acc[l] += v[t + l] for every t < n in steps of EW_LANES (n a multiple of it). */
static inline void lanes_accumulate(double acc[EW_LANES], const float *v, int64_t n) {
    for (int64_t t = 0; t < n; t += EW_LANES)
        for (int l = 0; l < EW_LANES; l++) acc[l] += v[t + l];
}

/* Σ lanes in a fixed tree. */
static inline double lanes_total(const double a[EW_LANES]) {
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

/* y = x · factor. */
static void EW_FN(dropout)(float *y, const float *x, int64_t n, uint64_t i0, const ew_drop *d) {
    const uint64_t seed = d->seed, th = d->thresh;
    const float s = d->scale;
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * ew_drop_factor(seed, th, s, i0 + (uint64_t)i);
}

/* y = a + t · factor: PyTorch's x + dropout(sublayer(x)). */
static void EW_FN(dropout_add)(float *y, const float *a, const float *t, int64_t n, uint64_t i0,
                               const ew_drop *d) {
    if (!d) {
        for (int64_t i = 0; i < n; i++) y[i] = a[i] + t[i];
        return;
    }
    const uint64_t seed = d->seed, th = d->thresh;
    const float s = d->scale;
    for (int64_t i = 0; i < n; i++)
        y[i] = a[i] + t[i] * ew_drop_factor(seed, th, s, i0 + (uint64_t)i);
}

/* relu(v) = max(v, 0), keeping NaN (and −0) as torch.relu does. */
static inline float relu1(float v) { return v > 0.0f ? v : (v < 0.0f ? 0.0f : v); }

/* Exact GELU: 0.5 · v · (1 + erf(v / √2)). */
static inline float gelu1(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752440f)); }

static void EW_FN(act_dropout_row)(float *y, float *pre, const float *b, int64_t C, bool gelu,
                                   uint64_t i0, const ew_drop *d) {
    if (b)
        for (int64_t c = 0; c < C; c++) y[c] += b[c]; /* linear1's bias */
    if (pre)
        for (int64_t c = 0; c < C; c++) pre[c] = y[c];
    if (gelu)
        for (int64_t c = 0; c < C; c++) y[c] = gelu1(y[c]);
    if (d) {
        const uint64_t seed = d->seed, th = d->thresh;
        const float s = d->scale;
        if (gelu)
            for (int64_t c = 0; c < C; c++) y[c] *= ew_drop_factor(seed, th, s, i0 + (uint64_t)c);
        else
            for (int64_t c = 0; c < C; c++)
                y[c] = relu1(y[c]) * ew_drop_factor(seed, th, s, i0 + (uint64_t)c);
    } else if (!gelu) {
        for (int64_t c = 0; c < C; c++) y[c] = relu1(y[c]);
    }
}

/* Mean and variance of a row in double (two passes: fp32-tight whatever C). */
static void EW_FN(layernorm_row)(float *out, float *sum, float *mean, float *rstd,
                                 const float *x, const float *t, const float *weight,
                                 const float *bias, int64_t C, float eps, uint64_t i0,
                                 const ew_drop *d) {
    const float *in = x;
    if (t) { /* the post-norm residual: sum = x + dropout(t) */
        EW_FN(dropout_add)(sum, x, t, C, i0, d);
        in = sum;
    }
    double acc[EW_LANES] = {0};
    int64_t c = C - C % EW_LANES;
    lanes_accumulate(acc, in, c);
    for (int j = 0; c + j < C; j++) acc[j] += in[c + j];
    const double mu = lanes_total(acc) / (double)C;
    double vacc[EW_LANES] = {0};
    for (c = 0; c + EW_LANES <= C; c += EW_LANES)
        for (int j = 0; j < EW_LANES; j++) {
            const double dv = in[c + j] - mu;
            vacc[j] += dv * dv;
        }
    for (int j = 0; c + j < C; j++) {
        const double dv = in[c + j] - mu;
        vacc[j] += dv * dv;
    }
    const double var = lanes_total(vacc) / (double)C;
    const float rs = (float)(1.0 / sqrt(var + (double)eps)), m = (float)mu;
    /* out = (x − mean) / sqrt(var + eps) · weight + bias */
    if (weight && bias)
        for (c = 0; c < C; c++) out[c] = (in[c] - m) * rs * weight[c] + bias[c];
    else if (weight)
        for (c = 0; c < C; c++) out[c] = (in[c] - m) * rs * weight[c];
    else if (bias)
        for (c = 0; c < C; c++) out[c] = (in[c] - m) * rs + bias[c];
    else
        for (c = 0; c < C; c++) out[c] = (in[c] - m) * rs;
    if (mean) *mean = m;
    if (rstd) *rstd = rs;
}

/* g = rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ · x̂)), ĝ = dy · weight, x̂ = (x − mean) · rstd. */
static void EW_FN(layernorm_backward_row)(float *dx, float *ddrop, const float *dy,
                                          const float *x, float m, float rs,
                                          const float *weight, int64_t C, uint64_t i0,
                                          const ew_drop *d) {
    double ag[EW_LANES] = {0}, agx[EW_LANES] = {0};
    /* ĝ and ĝ · x̂ in float for a tile of the row, then into the double lane sums (two
     * simple loops vectorise where one mixed loop did not); the tile's tail is padded
     * with zeros, which leave the sums as they are */
    for (int64_t c0 = 0; c0 < C; c0 += EW_TILE) {
        const int64_t n = C - c0 < EW_TILE ? C - c0 : EW_TILE;
        const float *dyt = dy + c0, *xt = x + c0;
        float g[EW_TILE], gx[EW_TILE];
        if (weight)
            for (int64_t j = 0; j < n; j++) g[j] = dyt[j] * weight[c0 + j];
        else
            for (int64_t j = 0; j < n; j++) g[j] = dyt[j];
        for (int64_t j = 0; j < n; j++) gx[j] = g[j] * ((xt[j] - m) * rs);
        int64_t j = n;
        for (; j % EW_LANES; j++) g[j] = gx[j] = 0.0f;
        lanes_accumulate(ag, g, j);
        lanes_accumulate(agx, gx, j);
    }
    int64_t c;
    const float mg = (float)(lanes_total(ag) / (double)C);
    const float mgx = (float)(lanes_total(agx) / (double)C);
#define EW_LN_GRAD(c) (rs * ((weight ? dy[c] * weight[c] : dy[c]) - mg - ((x[c] - m) * rs) * mgx))
    if (!ddrop) {
        for (c = 0; c < C; c++) dx[c] += EW_LN_GRAD(c);
    } else if (d) {
        const uint64_t seed = d->seed, th = d->thresh;
        const float s = d->scale;
        for (c = 0; c < C; c++) {
            const float g = EW_LN_GRAD(c);
            dx[c] = g;
            ddrop[c] = g * ew_drop_factor(seed, th, s, i0 + (uint64_t)c);
        }
    } else {
        for (c = 0; c < C; c++) {
            const float g = EW_LN_GRAD(c);
            dx[c] = g;
            ddrop[c] = g;
        }
    }
#undef EW_LN_GRAD
}

static void EW_FN(layernorm_backward_cols)(float *dweight, float *dbias, const float *dy,
                                           const float *x, const float *mean,
                                           const float *rstd, int64_t R, int64_t C, int64_t c0,
                                           int64_t c1) {
    double sw[EW_COL_BLOCK] = {0}, sb[EW_COL_BLOCK] = {0};
    const int64_t w = c1 - c0;
    for (int64_t r = 0; r < R; r++) {
        const float *g = dy + r * C + c0, *xr = x + r * C + c0;
        const float m = mean[r], rs = rstd[r];
        for (int64_t j = 0; j < w; j++) {
            sw[j] += g[j] * ((xr[j] - m) * rs);
            sb[j] += g[j];
        }
    }
    for (int64_t j = 0; j < w; j++) {
        if (dweight) dweight[c0 + j] += (float)sw[j];
        if (dbias) dbias[c0 + j] += (float)sb[j];
    }
}

static void EW_FN(bias_cols)(float *db, const float *dy, int64_t ld, int64_t R, int64_t c0,
                             int64_t c1) {
    double s[EW_COL_BLOCK] = {0};
    const int64_t w = c1 - c0;
    for (int64_t r = 0; r < R; r++) {
        const float *g = dy + r * ld + c0;
        for (int64_t j = 0; j < w; j++) s[j] += g[j];
    }
    for (int64_t j = 0; j < w; j++) db[c0 + j] += (float)s[j];
}

/* y = relu(v) · factor > 0 exactly where the element was kept and v > 0 (then y ≥ v,
 * as scale ≥ 1), where dropout's and ReLU's gradients pass dy · scale. */
static void EW_FN(relu_dropout_backward_cols)(float *dv, float *db, const float *dy,
                                              const float *y, int64_t R, int64_t C, int64_t c0,
                                              int64_t c1, float scale) {
    double s[EW_COL_BLOCK] = {0};
    const int64_t w = c1 - c0;
    for (int64_t r = 0; r < R; r++) {
        const float *g = dy + r * C + c0, *yr = y + r * C + c0;
        float *o = dv + r * C + c0;
        /* a select between computed values (not a multiply by 0 or scale, which would
         * carry an infinite dy into NaN), and the sum as a second loop over the row just
         * written (in L1): both loops vectorise */
        for (int64_t j = 0; j < w; j++) {
            const float gs = g[j] * scale;
            o[j] = yr[j] > 0.0f ? gs : 0.0f;
        }
        if (db)
            for (int64_t j = 0; j < w; j++) s[j] += o[j];
    }
    if (db)
        for (int64_t j = 0; j < w; j++) db[c0 + j] += (float)s[j];
}

/* d/dv gelu(v) = Φ(v) + v · φ(v). */
static void EW_FN(gelu_dropout_backward_cols)(float *dv, float *db, const float *dy,
                                              const float *v, int64_t R, int64_t C, int64_t c0,
                                              int64_t c1, const ew_drop *d) {
    const float inv_sqrt2 = 0.70710678118654752440f, inv_sqrt2pi = 0.39894228040143267794f;
    const uint64_t seed = d ? d->seed : 0, th = d ? d->thresh : 0; /* th 0: nothing dropped */
    const float scale = d ? d->scale : 1.0f;
    double s[EW_COL_BLOCK] = {0};
    const int64_t w = c1 - c0;
    for (int64_t r = 0; r < R; r++) {
        const float *g = dy + r * C + c0, *vr = v + r * C + c0;
        float *o = dv + r * C + c0;
        const uint64_t i0 = (uint64_t)(r * C + c0);
        for (int64_t j = 0; j < w; j++) {
            const float gd = d ? g[j] * ew_drop_factor(seed, th, scale, i0 + (uint64_t)j) : g[j];
            const float cdf = 0.5f * (1.0f + erff(vr[j] * inv_sqrt2));
            const float pdf = inv_sqrt2pi * expf(-0.5f * vr[j] * vr[j]);
            const float out = gd * (cdf + vr[j] * pdf);
            o[j] = out;
            s[j] += out;
        }
    }
    if (db)
        for (int64_t j = 0; j < w; j++) db[c0 + j] += (float)s[j];
}

const ew_kernels EW_FN(ew_kernels) = {
    .dropout = EW_FN(dropout),
    .dropout_add = EW_FN(dropout_add),
    .act_dropout_row = EW_FN(act_dropout_row),
    .layernorm_row = EW_FN(layernorm_row),
    .layernorm_backward_row = EW_FN(layernorm_backward_row),
    .layernorm_backward_cols = EW_FN(layernorm_backward_cols),
    .bias_cols = EW_FN(bias_cols),
    .relu_dropout_backward_cols = EW_FN(relu_dropout_backward_cols),
    .gelu_dropout_backward_cols = EW_FN(gelu_dropout_backward_cols),
};
