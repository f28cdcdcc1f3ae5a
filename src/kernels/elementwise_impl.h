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
#include <string.h>

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

/* ---- exact GELU, x·Φ(x), and its derivative Φ(x) + x·φ(x), EW_DW lanes at a time ----
 *
 * Evaluated in double and rounded to float once, so each result is the correctly rounded
 * value or its neighbour (measured ≤ 0.54 ulp forward, ≤ 0.67 backward against long
 * double erfc; tests/test_elementwise.c asserts 0.75 over a sweep of floats); every lane
 * does the same IEEE operations whatever EW_DW, so every path gives the same bits (about
 * 60 double operations per vector: FMAs would save a quarter but round differently from
 * the generic path). PyTorch's own float
 * formula 0.5·x·(1 + erf(x/√2)) cancels for x < 0 (torch 2.15: 17% off at x = −5, −0 for
 * x < −9 where GELU is −1e-21), which writing Φ(x) = Q(−x) for x < 0 avoids:
 *   Q(t) = ∫_t^∞ φ = exp(−t²/2) · K(t),   t = |x| ≥ 0,
 *   K(t) = N(t) / D(t)  (degree 5 / 5, our relative-minimax fit on [0, 15], error 2.4e-9),
 *   Φ(x) = Q(t) for x < 0, 1 − Q(t) for x ≥ 0;  φ(x) = exp(−t²/2) / √(2π).
 * t² is exact in double (t has 24 bits). exp(−a) = 2ⁿ · e^r, n = round(−a / ln 2), |r| ≤
 * ln2/2, e^r a degree-7 polynomial (our fit, relative error 5e-11); 2ⁿ is added into the
 * exponent bits (n ≥ −163: no underflow in double). x is clamped to [−15, 15] for the
 * tail: beyond it GELU is x or −0 in float and the derivative 1 or −0, which the clamp
 * gives without inf·0 (so GELU(+inf) = +inf, GELU(−inf) = −0, derivatives 1 and −0,
 * the limits; PyTorch gives NaN for both). NaN stays NaN (through K). */

#ifndef EW_DW
#error "define EW_DW (doubles per vector) before including elementwise_impl.h"
#endif
typedef double ew_vd __attribute__((vector_size(EW_DW * sizeof(double))));
typedef float ew_vf __attribute__((vector_size(EW_DW * sizeof(float))));
typedef int64_t ew_vl __attribute__((vector_size(EW_DW * sizeof(int64_t))));
typedef uint64_t ew_vu __attribute__((vector_size(EW_DW * sizeof(uint64_t))));

#define EW_INLINE static inline __attribute__((always_inline))

/* where m: a, else b (m lanes all ones or all zeros) */
EW_INLINE ew_vd vd_select(ew_vl m, ew_vd a, ew_vd b) {
    return (ew_vd)(((ew_vl)a & m) | ((ew_vl)b & ~m));
}

/* The pieces both directions need, for x (double lanes): xc = x clamped to [−15, 15],
 * cdf = Φ(xc), e = exp(−xc²/2); neg: the lanes where x < 0. */
EW_INLINE void gelu_parts(ew_vd x, ew_vd *xc, ew_vd *cdf, ew_vd *e, ew_vl *neg) {
    const ew_vd lim = (ew_vd){0} + 15.0;
    ew_vd c = vd_select((ew_vl)(x > lim), lim, x); /* NaN compares false: kept */
    c = vd_select((ew_vl)(x < -lim), -lim, c);
    *xc = c;
    *neg = (ew_vl)(x < 0.0);
    const ew_vd t = (ew_vd)((ew_vu)c & 0x7fffffffffffffffULL);
    const ew_vd a = t * t * 0.5; /* exact */
    /* n = round(−a·log2 e): adding 1.5·2^52 rounds to an integer held in the low bits */
    const double magic = 6755399441055744.0;
    const ew_vd nm = a * -1.4426950408889634074 + magic, n = nm - magic;
    const ew_vd r = n * -0.69314718055994530942 - a; /* −a − n·ln2, |r| ≤ ln2/2 */
    ew_vd p = (ew_vd){0} + 1.9790298119145926e-4;
    p = p * r + 1.3944703594122821e-3;
    p = p * r + 8.333497340992318e-3;
    p = p * r + 4.166629436424773e-2;
    p = p * r + 1.6666665867007385e-1;
    p = p * r + 5.000000067839798e-1;
    p = p * r + 1.0;
    p = p * r + 1.0; /* e^r */
    /* · 2ⁿ: n (two's complement, from nm's low bits) into the exponent field */
    const ew_vu nb = ((ew_vu)nm - 0x4338000000000000ULL) << 52;
    const ew_vd ex = (ew_vd)((ew_vu)p + nb);
    /* K(t) = N(t) / D(t) */
    ew_vd num = (ew_vd){0} + -4.3452265500604392e-09;
    num = num * t + 0.0035507835043001733;
    num = num * t + 0.036655489194138718;
    num = num * t + 0.17110948354082253;
    num = num * t + 0.42125881988535036;
    num = num * t + 0.50000000116644228;
    ew_vd den = (ew_vd){0} + 0.0088998050091551838;
    den = den * t + 0.091900733284132549;
    den = den * t + 0.43750131659734659;
    den = den * t + 1.1510685609553992;
    den = den * t + 1.6404023766703881;
    den = den * t + 1.0;
    const ew_vd q = ex * (num / den); /* Q(t) = Φ(−t) */
    *cdf = vd_select(*neg, q, 1.0 - q);
    *e = ex;
}

/* gelu(x) = x·Φ(x), lane by lane. */
EW_INLINE ew_vf gelu_v(ew_vf xf) {
    const ew_vd x = __builtin_convertvector(xf, ew_vd);
    ew_vd xc, cdf, e;
    ew_vl neg;
    gelu_parts(x, &xc, &cdf, &e, &neg);
    /* x < −15: xc·Φ(xc) rounds to −0 (as x·Φ(x) would), not −inf·0 */
    return __builtin_convertvector(vd_select(neg, xc, x) * cdf, ew_vf);
}

/* gelu'(x) = Φ(x) + x·φ(x), lane by lane. It crosses zero at x0 = −0.75179…, where the
 * sum cancels and K's 2e-9 would be thousands of ulps of the result: within 1/8 of x0 it is
 * d·V(d), d = x − x0 (x0 as double + double: d exact to 1e-17), V our degree-6 fit
 * (relative error 4e-11). */
EW_INLINE ew_vf gelu_grad_v(ew_vf xf) {
    const ew_vd x = __builtin_convertvector(xf, ew_vd);
    ew_vd xc, cdf, e;
    ew_vl neg;
    gelu_parts(x, &xc, &cdf, &e, &neg);
    const ew_vd g = cdf + xc * (e * 0.39894228040143267794);
    const ew_vd d = (x - -0.7517915246935645) - 1.4956759177009883e-17;
    ew_vd v = (ew_vd){0} + 0.0045287868698699408;
    v = v * d + 0.019360555614168985;
    v = v * d + -0.014771595106470432;
    v = v * d + -0.11400775615814454;
    v = v * d + -0.018199675350743714;
    v = v * d + 0.38828498205931672;
    v = v * d + 0.43149399231286717;
    const ew_vd dabs = (ew_vd)((ew_vu)d & 0x7fffffffffffffffULL);
    return __builtin_convertvector(vd_select((ew_vl)(dabs <= 0.125), d * v, g), ew_vf);
}

/* y (n) = f(x) for f gelu_v or gelu_grad_v; y may alias x. The last partial vector is
 * padded with zeros (computed, not stored). */
#define EW_MAP(f, y, x, n)                                                                    \
    do {                                                                                      \
        int64_t i_ = 0;                                                                       \
        for (; i_ + EW_DW <= (n); i_ += EW_DW) {                                              \
            ew_vf v_;                                                                         \
            memcpy(&v_, (x) + i_, sizeof v_);                                                 \
            v_ = f(v_);                                                                       \
            memcpy((y) + i_, &v_, sizeof v_);                                                 \
        }                                                                                     \
        if (i_ < (n)) {                                                                       \
            ew_vf v_ = {0};                                                                   \
            memcpy(&v_, (x) + i_, (size_t)((n) - i_) * sizeof(float));                        \
            v_ = f(v_);                                                                       \
            memcpy((y) + i_, &v_, (size_t)((n) - i_) * sizeof(float));                        \
        }                                                                                     \
    } while (0)

static void EW_FN(gelu)(float *y, const float *x, int64_t n) { EW_MAP(gelu_v, y, x, n); }

/* dx += dy · gelu'(x), a tile at a time: the derivatives into a stack tile, then a plain
 * loop the compiler vectorises. */
static void EW_FN(gelu_backward)(float *dx, const float *dy, const float *x, int64_t n) {
    float gp[EW_TILE];
    for (int64_t c0 = 0; c0 < n; c0 += EW_TILE) {
        const int64_t m = n - c0 < EW_TILE ? n - c0 : EW_TILE;
        EW_MAP(gelu_grad_v, gp, x + c0, m);
        for (int64_t j = 0; j < m; j++) dx[c0 + j] += dy[c0 + j] * gp[j];
    }
}

static void EW_FN(act_dropout_row)(float *y, float *pre, const float *b, int64_t C, bool gelu,
                                   uint64_t i0, const ew_drop *d) {
    if (b)
        for (int64_t c = 0; c < C; c++) y[c] += b[c]; /* linear1's bias */
    if (pre)
        for (int64_t c = 0; c < C; c++) pre[c] = y[c];
    if (gelu) EW_FN(gelu)(y, y, C);
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
    const uint64_t seed = d ? d->seed : 0, th = d ? d->thresh : 0; /* th 0: nothing dropped */
    const float scale = d ? d->scale : 1.0f;
    double s[EW_COL_BLOCK] = {0};
    float gp[EW_TILE];
    const int64_t w = c1 - c0;
    for (int64_t r = 0; r < R; r++)
        for (int64_t t0 = 0; t0 < w; t0 += EW_TILE) {
            const int64_t m = w - t0 < EW_TILE ? w - t0 : EW_TILE;
            const float *g = dy + r * C + c0 + t0;
            float *o = dv + r * C + c0 + t0;
            double *st = s + t0;
            const uint64_t i0 = (uint64_t)(r * C + c0 + t0);
            EW_MAP(gelu_grad_v, gp, v + r * C + c0 + t0, m);
            for (int64_t j = 0; j < m; j++) {
                const float gd =
                    d ? g[j] * ew_drop_factor(seed, th, scale, i0 + (uint64_t)j) : g[j];
                const float out = gd * gp[j];
                o[j] = out;
                st[j] += out;
            }
        }
    if (db)
        for (int64_t j = 0; j < w; j++) db[c0 + j] += (float)s[j];
}

const ew_kernels EW_FN(ew_kernels) = {
    .dropout = EW_FN(dropout),
    .dropout_add = EW_FN(dropout_add),
    .gelu = EW_FN(gelu),
    .gelu_backward = EW_FN(gelu_backward),
    .act_dropout_row = EW_FN(act_dropout_row),
    .layernorm_row = EW_FN(layernorm_row),
    .layernorm_backward_row = EW_FN(layernorm_backward_row),
    .layernorm_backward_cols = EW_FN(layernorm_backward_cols),
    .bias_cols = EW_FN(bias_cols),
    .relu_dropout_backward_cols = EW_FN(relu_dropout_backward_cols),
    .gelu_dropout_backward_cols = EW_FN(gelu_dropout_backward_cols),
};
