/* test_kernels.c — each kernel against a plain double-precision computation:
 * GEMM (CBLAS path and portable reference, every transpose), LayerNorm, GELU, ReLU,
 * and the attention kernel with every mask kind, fully masked rows, and results that
 * do not depend on the thread count. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/rng.h"
#include "core/workspace.h"
#include "kernels/attention.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "support/check.h"
#include "tfm.h"

static float *randn(size_t n, uint64_t seed) {
    tfm_rng r;
    rng_seed(&r, seed);
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = rng_normal(&r);
    return x;
}

/* C = op(A)·op(B) in double, row-major, no strides beyond the natural ones. */
static void gemm_double(bool ta, bool tb, int M, int N, int K, const float *A, const float *B,
                        double *C) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++)
                s += (double)(ta ? A[k * M + i] : A[i * K + k]) * (tb ? B[j * K + k] : B[k * N + j]);
            C[i * N + j] = s;
        }
}

static void test_gemm_all_transposes(void **state) {
    const int M = 37, N = 29, K = 53;
    float *A = randn((size_t)M * K, 1), *B = randn((size_t)K * N, 2);
    float *C = malloc((size_t)M * N * sizeof(float)), *C0 = randn((size_t)M * N, 3);
    float *want = malloc((size_t)M * N * sizeof(float));
    double *ref = malloc((size_t)M * N * sizeof(double));
    for (int t = 0; t < 4; t++) {
        bool ta = t & 1, tb = t & 2;
        gemm_double(ta, tb, M, N, K, A, B, ref);
        for (int i = 0; i < M * N; i++) want[i] = (float)(0.5 * ref[i] + 2.0 * C0[i]);
        for (int impl = 0; impl < 2; impl++) {
            memcpy(C, C0, (size_t)M * N * sizeof(float));
            (impl ? tfm_gemm_reference : tfm_gemm)(ta, tb, M, N, K, 0.5f, A, ta ? M : K, B,
                                                   tb ? K : N, 2.0f, C, N);
            assert_true(close_enough(impl ? "gemm_reference" : "gemm", C, want, (size_t)M * N,
                                     1e-5, 1e-5));
        }
    }
    /* beta = 0 must overwrite whatever C held, NaN included. */
    for (int i = 0; i < M * N; i++) C[i] = NAN;
    tfm_gemm_reference(false, false, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
    gemm_double(false, false, M, N, K, A, B, ref);
    for (int i = 0; i < M * N; i++) want[i] = (float)ref[i];
    assert_true(close_enough("gemm beta=0", C, want, (size_t)M * N, 1e-5, 1e-5));
    free(A), free(B), free(C), free(C0), free(want), free(ref);
}

static void test_layernorm(void **state) {
    const int R = 5, C = 33;
    float *x = randn((size_t)R * C, 4), *w = randn(C, 5), *b = randn(C, 6);
    for (int i = 0; i < R * C; i++) x[i] = 3.0f + 10.0f * x[i]; /* offset: variance must be robust */
    float y[5 * 33], want[5 * 33], mean[5], rstd[5];
    layernorm_forward(y, mean, rstd, x, w, b, R, C, 1e-5f);
    for (int r = 0; r < R; r++) {
        double mu = 0, var = 0;
        for (int c = 0; c < C; c++) mu += x[r * C + c];
        mu /= C;
        for (int c = 0; c < C; c++) var += (x[r * C + c] - mu) * (x[r * C + c] - mu);
        var /= C;
        for (int c = 0; c < C; c++)
            want[r * C + c] = (float)((x[r * C + c] - mu) / sqrt(var + 1e-5) * w[c] + b[c]);
        assert_float_equal(mean[r], mu, 1e-4);
    }
    assert_true(close_enough("layernorm", y, want, (size_t)R * C, 1e-5, 1e-5));
    layernorm_forward(y, NULL, NULL, x, w, NULL, R, C, 1e-5f); /* bias=False */
    for (int i = 0; i < R * C; i++) want[i] -= b[i % C];
    assert_true(close_enough("layernorm no bias", y, want, (size_t)R * C, 1e-5, 1e-5));
    free(x), free(w), free(b);
}

static void test_activations(void **state) {
    float x[9] = {-6.0f, -2.5f, -1.0f, -1e-3f, 0.0f, 1e-3f, 0.7f, 2.0f, 9.0f}, g[9], r[9], want[9];
    memcpy(g, x, sizeof x);
    memcpy(r, x, sizeof x);
    gelu_forward(g, 9);
    relu_forward(r, 9);
    for (int i = 0; i < 9; i++) want[i] = (float)(0.5 * x[i] * (1.0 + erf(x[i] / sqrt(2.0))));
    assert_true(close_enough("gelu", g, want, 9, 1e-6, 1e-7));
    for (int i = 0; i < 9; i++) assert_true(r[i] == (x[i] > 0 ? x[i] : 0.0f));
    float nan_in = NAN;
    relu_forward(&nan_in, 1);
    assert_true(isnan(nan_in)); /* as torch.relu */
}

/* Attention in double: scores, additive masks, softmax, zero for fully masked rows. */
static void attention_double(float *out, float *weights, const float *q, const float *k,
                             const float *v, int N, int H, int L, int S, int D, const attn_bias *b) {
    const int E = H * D;
    double *s = malloc((size_t)S * sizeof(double));
    for (int n = 0; n < N; n++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < L; i++) {
                double m = -INFINITY;
                for (int j = 0; j < S; j++) {
                    double acc = 0;
                    for (int d = 0; d < D; d++)
                        acc += (double)q[(n * L + i) * E + h * D + d] * k[(n * S + j) * E + h * D + d];
                    acc /= sqrt((double)D);
                    if (j < b->masked_cols) {
                        int64_t Sm = b->masked_cols;
                        if (b->attn)
                            acc += b->attn[(b->attn_per_head ? (n * H + h) * L * Sm : 0) + i * Sm + j];
                        if (b->key_padding) acc += b->key_padding[n * Sm + j];
                        if (b->causal && j > i) acc = -INFINITY;
                    }
                    s[j] = acc;
                    if (acc > m) m = acc;
                }
                double sum = 0;
                for (int j = 0; j < S; j++) sum += (s[j] = m == -INFINITY ? 0 : exp(s[j] - m));
                for (int j = 0; j < S; j++) s[j] = sum > 0 ? s[j] / sum : 0;
                for (int j = 0; j < S; j++) weights[((n * H + h) * L + i) * S + j] = (float)s[j];
                for (int d = 0; d < D; d++) {
                    double o = 0;
                    for (int j = 0; j < S; j++) o += s[j] * v[(n * S + j) * E + h * D + d];
                    out[(n * L + i) * E + h * D + d] = (float)o;
                }
            }
    free(s);
}

/* The kernel on contiguous (N, ·, H·D) tensors. */
static tfm_status attend(float *out, float *w, const float *q, const float *k, const float *v,
                         int N, int H, int L, int S, int D, const attn_bias *b, tfm_ws *ws) {
    const int E = H * D;
    attn_args a = {.N = N, .H = H, .L = L, .S = S, .D = D, .q = q, .ldq = E, .k = k, .ldk = E,
                   .v = v, .ldv = E, .bias = b};
    return attention_forward(&a, out, E, w, NULL, ws);
}

static void check_attention(const char *what, int N, int H, int L, int S, int D,
                            const attn_bias *b) {
    const int E = H * D;
    float *q = randn((size_t)N * L * E, 11), *k = randn((size_t)N * S * E, 12), *v = randn((size_t)N * S * E, 13);
    float *out = malloc((size_t)N * L * E * sizeof(float)), *want = malloc((size_t)N * L * E * sizeof(float));
    float *w = malloc((size_t)N * H * L * S * sizeof(float)), *ww = malloc((size_t)N * H * L * S * sizeof(float));
    tfm_ws ws;
    ws_init(&ws);
    attention_double(want, ww, q, k, v, N, H, L, S, D, b);
    for (int threads = 1; threads <= 2; threads++) {
        tfm_set_num_threads(threads);
        assert_int_equal(ws_begin(&ws), TFM_OK);
        assert_int_equal(attend(out, w, q, k, v, N, H, L, S, D, b, &ws), TFM_OK);
        assert_true(close_enough(what, out, want, (size_t)N * L * E, 1e-5, 1e-5));
        assert_true(close_enough(what, w, ww, (size_t)N * H * L * S, 1e-5, 1e-6));
    }
    /* Same numbers to the bit whatever the thread count. */
    float *again = malloc((size_t)N * L * E * sizeof(float));
    tfm_set_num_threads(1);
    attend(again, NULL, q, k, v, N, H, L, S, D, b, &ws);
    assert_memory_equal(again, out, (size_t)N * L * E * sizeof(float));
    tfm_set_num_threads(0);
    ws_free(&ws);
    free(q), free(k), free(v), free(out), free(want), free(w), free(ww), free(again);
}

static void test_attention_plain(void **state) {
    attn_bias b = {.masked_cols = 9};
    check_attention("attention plain", 2, 3, 70, 9, 8, &b); /* L > one query block */
}

static void test_attention_masks(void **state) {
    enum { N = 2, H = 2, L = 5, S = 6 };
    static float m2[L * S], m3[N * H * L * S], kpm[N * S];
    tfm_rng r;
    rng_seed(&r, 7);
    for (int i = 0; i < L * S; i++) m2[i] = rng_uniform(&r) < 0.3f ? -INFINITY : rng_normal(&r);
    for (int i = 0; i < N * H * L * S; i++) m3[i] = rng_normal(&r);
    for (int i = 0; i < N * S; i++) kpm[i] = (i % S) >= 4 ? -INFINITY : 0.5f;
    attn_bias b2 = {.attn = m2, .masked_cols = S};
    check_attention("attention 2-D mask", N, H, L, S, 4, &b2);
    attn_bias b3 = {.attn = m3, .attn_per_head = true, .key_padding = kpm, .masked_cols = S};
    check_attention("attention 3-D mask + key padding", N, H, L, S, 4, &b3);
    attn_bias bc = {.causal = true, .key_padding = kpm, .masked_cols = S};
    check_attention("attention causal + key padding", N, H, L, S, 4, &bc);
    /* Extra columns (bias_kv / zero_attn) beyond masked_cols are never masked. */
    attn_bias be = {.causal = true, .masked_cols = S - 2};
    check_attention("attention extra columns", N, H, L, S, 4, &be);
}

static void test_attention_fully_masked_rows(void **state) {
    enum { N = 1, H = 2, L = 3, S = 4, D = 2, E = H * D };
    float mask[L * S] = {0, 0, 0, 0, -INFINITY, -INFINITY, -INFINITY, -INFINITY, 0, -INFINITY, 0, 0};
    attn_bias b = {.attn = mask, .masked_cols = S};
    check_attention("attention fully masked", N, H, L, S, D, &b);
    float *q = randn(N * L * E, 1), *k = randn(N * S * E, 2), *v = randn(N * S * E, 3);
    float out[N * L * E], w[N * H * L * S];
    tfm_ws ws;
    ws_init(&ws);
    assert_int_equal(attend(out, w, q, k, v, N, H, L, S, D, &b, &ws), TFM_OK);
    for (int d = 0; d < E; d++) assert_true(out[1 * E + d] == 0.0f); /* row 1: zeros, not NaN */
    for (int h = 0; h < H; h++)
        for (int j = 0; j < S; j++) assert_true(w[(h * L + 1) * S + j] == 0.0f);
    ws_free(&ws);
    free(q), free(k), free(v);
}

static void test_workspace_steady_state(void **state) {
    tfm_ws ws;
    ws_init(&ws);
    for (int call = 0; call < 3; call++) {
        assert_int_equal(ws_begin(&ws), TFM_OK);
        char *base = ws.base;
        ws_mark_t m = ws_mark(&ws);
        float *a = ws_floats(&ws, 1000), *b = ws_floats(&ws, 5000);
        assert_non_null(a);
        assert_non_null(b);
        assert_int_equal((uintptr_t)a % 64, 0);
        ws_release(&ws, m);
        assert_non_null(ws_floats(&ws, 6000));
        if (call > 0) { /* after the first call everything fits in the one block */
            assert_ptr_equal(ws.base, base);
            assert_null(ws.chunks);
        }
    }
    assert_null(ws_floats(&ws, SIZE_MAX / 2)); /* overflow is an error, not a wrap */
    assert_true(ws.failed);
    ws_free(&ws);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_all_transposes),
        cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_activations),
        cmocka_unit_test(test_attention_plain),
        cmocka_unit_test(test_attention_masks),
        cmocka_unit_test(test_attention_fully_masked_rows),
        cmocka_unit_test(test_workspace_steady_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
