/* test_elementwise.c — the element-wise kernels (kernels/elementwise.h) on every CPU path
 * this machine runs (generic, avx2, avx512):
 *   - dropout keeps and drops exactly the elements rng_dropout_scale says, with the same
 *     factor, at any counter offset, and rng_dropout_threshold is the same decision;
 *   - each fused kernel equals the unfused sequence it replaces, written here in plain
 *     scalar C (to the bit where the arithmetic is the same, else to rounding);
 *   - LayerNorm forward and backward match double precision;
 *   - GELU and its derivative are within GELU_MAX_ULP of long double erfc over a sweep of
 *     float bit patterns (every binade, both signs, denormals), densely around the
 *     derivative's zero and the kernel's branch points, with ±inf, NaN, ±0 and FLT_MAX
 *     giving their limits, on every path, bit for bit the same on every path;
 *   - every path gives the same bits as the generic one, for 1, 2 and 3 threads.
 * Legend: R rows, C columns, n elements. */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/cpu.h"
#include "core/rng.h"
#include "kernels/elementwise.h"
#include "kernels/elementwise_isa.h"
#include "support/check.h"
#include "tfm.h"

/* R · C above the kernels' one-thread limit, C not a multiple of any vector width or of
 * the column block. */
enum { R = 97, C = 1000, RC = R * C };
static const float PS[] = {0.1f, 0.5f, 0.9f, 1e-7f, 0.99999994f, 1.0f};
enum { NPS = sizeof PS / sizeof PS[0] };

/* N(0, 1) values with exact zeros and negative zeros sprinkled in (ReLU's edge). */
static float *randn(size_t n, uint64_t seed) {
    tfm_rng r;
    rng_seed(&r, seed);
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        const float v = rng_normal(&r);
        x[i] = i % 61 == 0 ? 0.0f : i % 67 == 0 ? -0.0f : v;
    }
    return x;
}

static float *copy_of(const float *x, size_t n) {
    float *y = malloc(n * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}

/* Equal as floats (so −0 == +0), reporting the first difference. */
static bool same_values(const char *what, const float *got, const float *want, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!(got[i] == want[i])) {
            print_error("%s: index %zu: got %.9g, want %.9g\n", what, i, (double)got[i],
                        (double)want[i]);
            return false;
        }
    return true;
}

static const cpu_path PATHS[] = {CPU_GENERIC, CPU_AVX2, CPU_AVX512};
enum { NPATHS = 3 };

static void use_path(cpu_path p) { assert_int_equal(tfm_set_cpu_path(cpu_path_name(p)), TFM_OK); }

/* ---- the dropout decision ---- */

static void test_threshold_matches_uniform(void **state) {
    tfm_rng r;
    rng_seed(&r, 7);
    for (int k = 0; k < 20000; k++) {
        float p = k < NPS ? PS[k] : rng_uniform(&r);
        if (k % 3 == 0) p = (float)(rng_next(&r) >> 40) * (1.0f / 16777216.0f); /* on the grid */
        const uint64_t T = rng_dropout_threshold(p);
        for (int64_t u = (int64_t)T - 2; u <= (int64_t)T + 1; u++) {
            if (u < 0 || u >= (1 << 24)) continue;
            const bool uniform_drops = (float)u * (1.0f / 16777216.0f) < p;
            assert_int_equal((uint64_t)u < T, uniform_drops);
        }
    }
    assert_int_equal(rng_dropout_threshold(0.0f), 0);
    assert_int_equal(rng_dropout_threshold(-1.0f), 0);
    assert_int_equal(rng_dropout_threshold(NAN), 0);
    assert_int_equal(rng_dropout_threshold(1.0f), 1u << 24);
    assert_int_equal(rng_dropout_threshold(INFINITY), 1u << 24);
}

/* Every path's dropout piece at counters past 2^32, and dropout_apply from 0. */
static void test_dropout_bits(void **state) {
    const int64_t n = RC;
    float *x = randn((size_t)n, 1), *y = malloc((size_t)n * sizeof(float));
    float *want = malloc((size_t)n * sizeof(float));
    const uint64_t seed = rng_derive(42, 3);
    for (int pi = 0; pi < NPATHS; pi++) {
        if (!cpu_supported(PATHS[pi])) continue;
        use_path(PATHS[pi]);
        for (int k = 0; k < NPS; k++) {
            const float p = PS[k];
            for (int64_t i = 0; i < n; i++)
                want[i] = x[i] * rng_dropout_scale(seed, (uint64_t)i, p);
            memcpy(y, x, (size_t)n * sizeof(float));
            dropout_apply(y, n, p, seed);
            assert_memory_equal(y, want, (size_t)n * sizeof(float));

            const uint64_t i0 = (1ULL << 33) + 5;
            const ew_drop d = {.seed = seed, .thresh = rng_dropout_threshold(p),
                               .scale = 1.0f / (1.0f - p)};
            for (int64_t i = 0; i < 1001; i++)
                want[i] = x[i] * rng_dropout_scale(seed, i0 + (uint64_t)i, p);
            ew_active()->dropout(y, x, 1001, i0, &d);
            assert_memory_equal(y, want, 1001 * sizeof(float));
        }
        /* the fraction kept is about 1 − p */
        int64_t kept = 0, nonzero = 0;
        memcpy(y, x, (size_t)n * sizeof(float));
        dropout_apply(y, n, 0.25f, seed);
        for (int64_t i = 0; i < n; i++) {
            nonzero += x[i] != 0.0f;
            kept += y[i] != 0.0f;
        }
        assert_true(fabs((double)kept / (double)nonzero - 0.75) < 0.01);
    }
    /* p <= 0: untouched */
    memcpy(y, x, (size_t)n * sizeof(float));
    dropout_apply(y, n, 0.0f, seed);
    assert_memory_equal(y, x, (size_t)n * sizeof(float));
    tfm_set_cpu_path(NULL);
    free(x), free(y), free(want);
}

/* ---- fused kernels against the sequences they replace ---- */

/* Reference: x *= rng_dropout_scale, element by element (p <= 0: nothing). */
static void ref_dropout(float *x, int64_t n, float p, uint64_t seed) {
    if (p <= 0.0f) return;
    for (int64_t i = 0; i < n; i++) x[i] *= rng_dropout_scale(seed, (uint64_t)i, p);
}

/* LayerNorm of each row in double. */
static void ref_layernorm(float *out, const float *x, const float *w, const float *b, int64_t rows,
                          int64_t cols, double eps) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        double mu = 0, var = 0;
        for (int64_t c = 0; c < cols; c++) mu += xr[c];
        mu /= (double)cols;
        for (int64_t c = 0; c < cols; c++) var += (xr[c] - mu) * (xr[c] - mu);
        var /= (double)cols;
        for (int64_t c = 0; c < cols; c++)
            out[r * cols + c] =
                (float)((xr[c] - mu) / sqrt(var + eps) * (w ? w[c] : 1.0) + (b ? b[c] : 0.0));
    }
}

static void test_dropout_add_copy(void **state) {
    float *a = randn(RC, 2), *t = randn(RC, 3), *want = malloc(RC * sizeof(float));
    float *y = malloc(RC * sizeof(float)), *td = malloc(RC * sizeof(float));
    for (int k = 0; k < 3; k++) {
        const float p = k == 0 ? 0.0f : PS[k];
        memcpy(td, t, RC * sizeof(float));
        ref_dropout(td, RC, p, 99);
        for (int i = 0; i < RC; i++) want[i] = a[i] + td[i];
        dropout_add(y, a, t, RC, p, 99);
        assert_true(same_values("dropout_add", y, want, RC));
        memcpy(y, a, RC * sizeof(float));
        dropout_add(y, y, t, RC, p, 99); /* in place */
        assert_true(same_values("dropout_add in place", y, want, RC));
        dropout_copy(y, t, RC, p, 99);
        assert_true(same_values("dropout_copy", y, td, RC));
    }
    free(a), free(t), free(want), free(y), free(td);
}

static void test_add_dropout_layernorm(void **state) {
    float *a = randn(RC, 4), *t = randn(RC, 5), *w = randn(C, 6), *b = randn(C, 7);
    float *sum = malloc(RC * sizeof(float)), *want_sum = malloc(RC * sizeof(float));
    float *out = malloc(RC * sizeof(float)), *want = malloc(RC * sizeof(float));
    float *mean = malloc(R * sizeof(float)), *rstd = malloc(R * sizeof(float));
    for (int k = 0; k < 2; k++) {
        const float p = k ? 0.1f : 0.0f;
        memcpy(want_sum, t, RC * sizeof(float));
        ref_dropout(want_sum, RC, p, 5);
        for (int i = 0; i < RC; i++) want_sum[i] = a[i] + want_sum[i];
        ref_layernorm(want, want_sum, w, b, R, C, 1e-5);
        memcpy(out, a, RC * sizeof(float));
        add_dropout_layernorm_forward(out, sum, mean, rstd, out, t, w, b, R, C, 1e-5f, p, 5);
        assert_true(same_values("residual sum", sum, want_sum, RC));
        assert_true(close_enough("add_dropout_layernorm_forward", out, want, RC, 1e-5, 1e-5));
        /* the same LayerNorm as the unfused kernel */
        layernorm_forward(want, NULL, NULL, sum, w, b, R, C, 1e-5f);
        assert_true(same_values("fused vs layernorm_forward", out, want, RC));
    }
    layernorm_forward(out, NULL, NULL, a, NULL, NULL, R, C, 1e-5f); /* no affine */
    ref_layernorm(want, a, NULL, NULL, R, C, 1e-5);
    assert_true(close_enough("layernorm no affine", out, want, RC, 1e-5, 1e-5));
    free(a), free(t), free(w), free(b), free(sum), free(want_sum), free(out), free(want);
    free(mean), free(rstd);
}

static void test_bias_act_dropout(void **state) {
    float *y0 = randn(RC, 8), *b = randn(C, 9), *want = malloc(RC * sizeof(float));
    float *y = malloc(RC * sizeof(float)), *pre = malloc(RC * sizeof(float));
    float *want_pre = malloc(RC * sizeof(float));
    for (int gelu = 0; gelu < 2; gelu++)
        for (int k = 0; k < 4; k++) {
            const float p = k & 1 ? 0.1f : 0.0f;
            const float *bias = k & 2 ? b : NULL;
            memcpy(want, y0, RC * sizeof(float));
            if (bias) add_bias_rows(want, bias, R, C);
            memcpy(want_pre, want, RC * sizeof(float));
            (gelu ? gelu_forward : relu_forward)(want, RC);
            ref_dropout(want, RC, p, 11);
            memcpy(y, y0, RC * sizeof(float));
            bias_act_dropout_forward(y, pre, bias, R, C, gelu, p, 11);
            assert_true(same_values("bias_act_dropout_forward", y, want, RC));
            assert_true(same_values("pre-activation", pre, want_pre, RC));
        }
    free(y0), free(b), free(want), free(y), free(pre), free(want_pre);
}

/* db[c] += Σ_r dy[r, c] in double, rows in order. */
static void ref_colsum(float *db, const float *dy, int64_t ld, int64_t rows, int64_t cols) {
    for (int64_t c = 0; c < cols; c++) {
        double s = 0;
        for (int64_t r = 0; r < rows; r++) s += dy[r * ld + c];
        db[c] += (float)s;
    }
}

static void test_activation_backward(void **state) {
    float *v = randn(RC, 12), *dy = randn(RC, 13), *db0 = randn(C, 14);
    float *y = malloc(RC * sizeof(float)), *want = malloc(RC * sizeof(float));
    float *dv = malloc(RC * sizeof(float)), *db = malloc(C * sizeof(float));
    float *want_db = malloc(C * sizeof(float));
    for (int gelu = 0; gelu < 2; gelu++)
        for (int k = 0; k < 2; k++) {
            const float p = k ? 0.1f : 0.0f;
            /* forward: y = dropout(act(v)) */
            memcpy(y, v, RC * sizeof(float));
            bias_act_dropout_forward(y, NULL, NULL, R, C, gelu, p, 17);
            /* unfused backward: g = dropout(dy), dv = 0 + act'(v) · g, db = Σ dv */
            float *g = copy_of(dy, RC);
            ref_dropout(g, RC, p, 17);
            memset(want, 0, RC * sizeof(float));
            (gelu ? gelu_backward : relu_backward)(want, g, v, RC);
            memcpy(want_db, db0, C * sizeof(float));
            ref_colsum(want_db, want, C, R, C);
            memcpy(db, db0, C * sizeof(float));
            memcpy(dv, dy, RC * sizeof(float));
            if (gelu)
                gelu_dropout_backward(dv, db, dv, v, R, C, p, 17);
            else
                relu_dropout_backward(dv, db, dv, y, R, C, p);
            assert_true(same_values(gelu ? "gelu_dropout_backward" : "relu_dropout_backward", dv,
                                    want, RC));
            assert_true(same_values("bias gradient", db, want_db, C));
            free(g);
        }
    free(v), free(dy), free(db0), free(y), free(want), free(dv), free(db), free(want_db);
}

static void test_bias_backward_strided(void **state) {
    const int64_t ld = C + 3;
    float *dy = randn((size_t)(R * ld), 15), *db = randn(C, 16), *want = copy_of(db, C);
    ref_colsum(want, dy, ld, R, C);
    bias_backward(db, dy, ld, R, C);
    assert_true(same_values("bias_backward", db, want, C));
    free(dy), free(db), free(want);
}

/* LayerNorm backward against double precision, and the fused form against the plain one. */
static void test_layernorm_backward(void **state) {
    float *x = randn(RC, 20), *dy = randn(RC, 21), *w = randn(C, 22), *b = randn(C, 23);
    float *y = malloc(RC * sizeof(float)), *mean = malloc(R * sizeof(float));
    float *rstd = malloc(R * sizeof(float)), *dx = malloc(RC * sizeof(float));
    float *want = malloc(RC * sizeof(float)), *dw = calloc(C, sizeof(float));
    float *dbias = calloc(C, sizeof(float)), *want_dw = malloc(C * sizeof(float));
    float *want_db = malloc(C * sizeof(float));
    layernorm_forward(y, mean, rstd, x, w, b, R, C, 1e-5f);
    /* double reference: x̂ = (x − μ)/σ, g = dy·w, dx = (g − mean g − x̂ · mean(g x̂)) / σ */
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x + r * C, *g = dy + r * C;
        double mu = 0, var = 0, mg = 0, mgx = 0;
        for (int64_t c = 0; c < C; c++) mu += xr[c];
        mu /= C;
        for (int64_t c = 0; c < C; c++) var += (xr[c] - mu) * (xr[c] - mu);
        const double rs = 1.0 / sqrt(var / C + 1e-5);
        for (int64_t c = 0; c < C; c++) {
            mg += (double)g[c] * w[c];
            mgx += (double)g[c] * w[c] * (xr[c] - mu) * rs;
        }
        mg /= C, mgx /= C;
        for (int64_t c = 0; c < C; c++)
            want[r * C + c] =
                (float)(1.0 + rs * ((double)g[c] * w[c] - mg - (xr[c] - mu) * rs * mgx));
    }
    for (int64_t c = 0; c < C; c++) {
        double sw = 0, sb = 0;
        for (int64_t r = 0; r < R; r++) {
            sw += (double)dy[r * C + c] * (x[r * C + c] - mean[r]) * rstd[r];
            sb += dy[r * C + c];
        }
        want_dw[c] = (float)sw, want_db[c] = (float)sb;
    }
    for (int64_t i = 0; i < RC; i++) dx[i] = 1.0f; /* accumulates */
    layernorm_backward(dx, dw, dbias, dy, x, mean, rstd, w, R, C);
    assert_true(close_enough("layernorm_backward dx", dx, want, RC, 1e-4, 1e-4));
    assert_true(close_enough("layernorm_backward dweight", dw, want_dw, C, 1e-5, 1e-4));
    assert_true(close_enough("layernorm_backward dbias", dbias, want_db, C, 1e-5, 1e-4));

    /* fused: dres = g (overwriting dy), ddrop = dropout(g) */
    float *plain = calloc(RC, sizeof(float)), *dres = copy_of(dy, RC);
    float *ddrop = malloc(RC * sizeof(float)), *dw2 = calloc(C, sizeof(float));
    float *db2 = calloc(C, sizeof(float));
    memset(dw, 0, C * sizeof(float)), memset(dbias, 0, C * sizeof(float));
    layernorm_backward(plain, dw, dbias, dy, x, mean, rstd, w, R, C);
    layernorm_backward_dropout(dres, ddrop, dw2, db2, dres, x, mean, rstd, w, R, C, 0.1f, 31);
    assert_true(same_values("residual gradient", dres, plain, RC));
    ref_dropout(plain, RC, 0.1f, 31);
    assert_true(same_values("dropped gradient", ddrop, plain, RC));
    assert_true(same_values("dweight", dw2, dw, C));
    assert_true(same_values("dbias", db2, dbias, C));
    free(x), free(dy), free(w), free(b), free(y), free(mean), free(rstd), free(dx), free(want);
    free(dw), free(dbias), free(want_dw), free(want_db), free(plain), free(dres), free(ddrop);
    free(dw2), free(db2);
}

/* ---- GELU's accuracy ---- */

/* The bound asserted for GELU and its derivative, in ulps of the exact value (measured
 * over all 2^32 floats: 0.54 forward, 0.65 backward; PyTorch 2.15's float GELU: 3.6 ulp
 * for x ≥ 0, millions for x < 0, where its 1 + erf cancels). */
#define GELU_MAX_ULP 0.75

/* One ulp of a float at |v| (v exact); denormals 2^-149. */
static long double float_ulp(long double v) {
    int e;
    v = fabsl(v);
    if (v < 0x1p-126L) return 0x1p-149L;
    frexpl(v, &e); /* v = m·2^e, m in [0.5, 1) */
    return ldexpl(1.0L, e - 24);
}

/* x·Φ(x) and Φ(x) + x·φ(x) in long double (Φ through erfc: no cancellation for x < 0). */
static void gelu_exact(float x, long double *f, long double *df) {
    const long double v = x, cdf = 0.5L * erfcl(-v * 0.70710678118654752440084436210484903L);
    *f = v * cdf;
    *df = cdf + v * expl(-0.5L * v * v) * 0.39894228040143267793994605993438187L;
}

/* The float bit patterns of the sweep: every 509th pattern of each sign (every binade,
 * denormals included), then every float within 2^15 ulps of the points where the
 * derivative crosses zero (x0 = −0.7517915), the kernel's branch points (x0 ± 1/8, ±15)
 * and the smallest normal; then the special values. */
static float *gelu_sweep(size_t *count) {
    static const float centres[] = {-0.7517915f, -0.8767915f, -0.6267915f, 15.0f, -15.0f,
                                    FLT_MIN, -FLT_MIN, 1.0f, -1.0f};
    static const float specials[] = {INFINITY, -INFINITY, NAN, -NAN, 0.0f, -0.0f, FLT_MAX,
                                     -FLT_MAX, FLT_TRUE_MIN, -FLT_TRUE_MIN, 14.5f, -14.5f};
    enum { STRIDE = 509, AROUND = 1 << 15 };
    const size_t nc = sizeof centres / sizeof centres[0], ns = sizeof specials / sizeof specials[0];
    const size_t n = 2 * (0x7f800000u / STRIDE + 1) + nc * 2 * AROUND + ns;
    float *x = malloc(n * sizeof(float));
    size_t k = 0;
    for (uint32_t sign = 0; sign < 2; sign++)
        for (uint32_t b = 0; b < 0x7f800000u; b += STRIDE) {
            const uint32_t bits = b | sign << 31;
            memcpy(&x[k++], &bits, sizeof bits);
        }
    for (size_t c = 0; c < nc; c++) {
        uint32_t mid;
        memcpy(&mid, &centres[c], sizeof mid);
        for (uint32_t b = mid - AROUND; b != mid + AROUND; b++) memcpy(&x[k++], &b, sizeof b);
    }
    for (size_t c = 0; c < ns; c++) x[k++] = specials[c];
    assert_true(k <= n);
    *count = k;
    return x;
}

/* Each path's gelu_forward and gelu_backward (dy = 1 into zeros: the derivative itself)
 * against gelu_exact; the limits at ±inf (GELU +inf and −0, derivative 1 and 0) and NaN
 * propagation exactly; every path the same bits as the generic one. */
static void test_gelu_accuracy(void **state) {
    size_t n;
    float *x = gelu_sweep(&n);
    float *ones = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    float *g = malloc(n * sizeof(float)), *y0 = malloc(n * sizeof(float));
    float *g0 = malloc(n * sizeof(float));
    long double *f = malloc(n * sizeof(long double)), *df = malloc(n * sizeof(long double));
    for (size_t i = 0; i < n; i++) {
        ones[i] = 1.0f;
        if (isfinite(x[i])) gelu_exact(x[i], &f[i], &df[i]);
    }
    for (int pi = 0; pi < NPATHS; pi++) {
        if (!cpu_supported(PATHS[pi])) continue;
        use_path(PATHS[pi]);
        memcpy(y, x, n * sizeof(float));
        gelu_forward(y, (int64_t)n);
        memset(g, 0, n * sizeof(float));
        gelu_backward(g, ones, x, (int64_t)n);
        double worst_f = 0, worst_b = 0;
        size_t at_f = 0, at_b = 0;
        for (size_t i = 0; i < n; i++) {
            if (isnan(x[i])) {
                if (!isnan(y[i]) || !isnan(g[i]))
                    fail_msg("%s: gelu(NaN) = %g, gelu'(NaN) = %g", cpu_path_name(PATHS[pi]),
                             (double)y[i], (double)g[i]);
                continue;
            }
            if (isinf(x[i])) {
                const float wf = x[i] > 0 ? INFINITY : -0.0f, wb = x[i] > 0 ? 1.0f : 0.0f;
                if (y[i] != wf || g[i] != wb)
                    fail_msg("%s: at %g: gelu %g (want %g), gelu' %g (want %g)",
                             cpu_path_name(PATHS[pi]), (double)x[i], (double)y[i], (double)wf,
                             (double)g[i], (double)wb);
                continue;
            }
            const double ef = (double)(fabsl(y[i] - f[i]) / float_ulp(f[i]));
            const double eb = (double)(fabsl(g[i] - df[i]) / float_ulp(df[i]));
            if (!(ef <= worst_f)) worst_f = ef, at_f = i; /* NaN counts as worst */
            if (!(eb <= worst_b)) worst_b = eb, at_b = i;
        }
        print_message("  %-8s gelu max %.3f ulp (x = %.9g), gelu' max %.3f ulp (x = %.9g), %zu "
                      "values\n",
                      cpu_path_name(PATHS[pi]), worst_f, (double)x[at_f], worst_b,
                      (double)x[at_b], n);
        if (!(worst_f <= GELU_MAX_ULP))
            fail_msg("%s: gelu(%.9g) = %.9g, exact %.9Lg: %.3f ulp > %g", cpu_path_name(PATHS[pi]),
                     (double)x[at_f], (double)y[at_f], f[at_f], worst_f, GELU_MAX_ULP);
        if (!(worst_b <= GELU_MAX_ULP))
            fail_msg("%s: gelu'(%.9g) = %.9g, exact %.9Lg: %.3f ulp > %g",
                     cpu_path_name(PATHS[pi]), (double)x[at_b], (double)g[at_b], df[at_b],
                     worst_b, GELU_MAX_ULP);
        if (PATHS[pi] == CPU_GENERIC) {
            memcpy(y0, y, n * sizeof(float));
            memcpy(g0, g, n * sizeof(float));
        } else if (memcmp(y, y0, n * sizeof(float)) || memcmp(g, g0, n * sizeof(float))) {
            fail_msg("%s: GELU bits differ from the generic path's", cpu_path_name(PATHS[pi]));
        }
    }
    tfm_set_cpu_path(NULL);
    free(x), free(ones), free(y), free(g), free(y0), free(g0), free(f), free(df);
}

/* ---- the same bits on every path and for every thread count ---- */

#define NOUT 14
typedef struct outputs {
    float *o[NOUT];
} outputs;

/* Every kernel once, into freshly allocated outputs. */
static outputs run_all(void) {
    float *x = randn(RC, 40), *t = randn(RC, 41), *w = randn(C, 42), *b = randn(C, 43);
    outputs r;
    for (int i = 0; i < NOUT; i++) r.o[i] = calloc(RC, sizeof(float));
    float *mean = malloc(R * sizeof(float)), *rstd = malloc(R * sizeof(float));
    float *small = r.o[11]; /* (C) vectors side by side */
    memcpy(r.o[0], x, RC * sizeof(float));
    dropout_apply(r.o[0], RC, 0.3f, 1);
    dropout_add(r.o[1], x, t, RC, 0.3f, 2);
    add_dropout_layernorm_forward(r.o[2], r.o[3], mean, rstd, x, t, w, b, R, C, 1e-5f, 0.2f, 3);
    memcpy(r.o[4], x, RC * sizeof(float));
    bias_act_dropout_forward(r.o[4], NULL, b, R, C, false, 0.2f, 4);
    memcpy(r.o[5], x, RC * sizeof(float));
    bias_act_dropout_forward(r.o[5], r.o[6], b, R, C, true, 0.2f, 5);
    relu_dropout_backward(r.o[7], small, t, r.o[4], R, C, 0.2f);
    gelu_dropout_backward(r.o[8], small + C, t, r.o[6], R, C, 0.2f, 5);
    layernorm_backward(r.o[9], small + 2 * C, small + 3 * C, t, r.o[3], mean, rstd, w, R, C);
    layernorm_backward_dropout(r.o[10], r.o[12], small + 4 * C, small + 5 * C, t, r.o[3], mean,
                               rstd, w, R, C, 0.2f, 6);
    bias_backward(small + 6 * C, x, C, R, C);
    layernorm_forward(r.o[13], small + 7 * C, small + 7 * C + R, x, w, NULL, R, C, 1e-5f);
    free(x), free(t), free(w), free(b), free(mean), free(rstd);
    return r;
}

static void free_outputs(outputs *r) {
    for (int i = 0; i < NOUT; i++) free(r->o[i]);
}

static void test_paths_and_threads_agree(void **state) {
    use_path(CPU_GENERIC);
    tfm_set_num_threads(1);
    outputs ref = run_all();
    for (int pi = 0; pi < NPATHS; pi++) {
        if (!cpu_supported(PATHS[pi])) continue;
        use_path(PATHS[pi]);
        for (int threads = 1; threads <= 3; threads++) {
            tfm_set_num_threads(threads);
            outputs got = run_all();
            for (int i = 0; i < NOUT; i++) {
                if (memcmp(got.o[i], ref.o[i], RC * sizeof(float)) != 0)
                    fail_msg("output %d differs on path %s with %d threads", i,
                             cpu_path_name(PATHS[pi]), threads);
            }
            free_outputs(&got);
        }
    }
    free_outputs(&ref);
    tfm_set_num_threads(0);
    tfm_set_cpu_path(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threshold_matches_uniform),
        cmocka_unit_test(test_dropout_bits),
        cmocka_unit_test(test_dropout_add_copy),
        cmocka_unit_test(test_add_dropout_layernorm),
        cmocka_unit_test(test_bias_act_dropout),
        cmocka_unit_test(test_activation_backward),
        cmocka_unit_test(test_gelu_accuracy),
        cmocka_unit_test(test_bias_backward_strided),
        cmocka_unit_test(test_layernorm_backward),
        cmocka_unit_test(test_paths_and_threads_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
