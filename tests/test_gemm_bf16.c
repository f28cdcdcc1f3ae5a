/* test_gemm_bf16.c — the bf16 products (tfm_gemm in a TFM_COMPUTE_BF16 scope) on every
 * CPU path this machine runs, against a plain reference written from the definition:
 * operands rounded to bf16 (nearest even, subnormals flushed), each element summed in K
 * blocks of 256 from zero, per pair of k the odd product then the even one, each
 * rounded to FP32 (VDPBF16PS's order), then C = alpha·block + beta·C (fused, as the SIMD
 * kernels), beta 1 after the first block.
 *   1. random shapes (every tile edge, odd K, K over several blocks), all four
 *      transposes, padded leading dimensions, alpha/beta (beta 0 over NaN-filled C), and
 *      B either FP32 or read from a bf16 twin (kernels/bf16.h): bit for bit on every path
 *      (the generic path's unfused epilogue differs when alpha ≠ 1 and beta ≠ 0: those
 *      are checked to a float rounding);
 *   2. tfm_gemm_bias: bias rows + the product, bit for bit as above;
 *   3. bit-identical results for 1 and 2 threads;
 *   4. the packers of the bf16 formats of every path against the plain-C ones;
 *   5. bf16 rounding: ties to even, NaN, infinities, overflow to infinity.
 * Legend: M rows of C, N columns of C, K the contracted dimension.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/cpu.h"
#include "core/rng.h"
#include "kernels/bf16.h"
#include "kernels/compute.h"
#include "kernels/gemm.h"
#include "kernels/gemm_packed.h"
#include "tfm.h"

typedef struct shape {
    bool ta, tb;
    int64_t M, N, K, lda, ldb, ldc;
    float alpha, beta;
} shape;

static const cpu_path PATHS[] = {CPU_GENERIC, CPU_AVX2, CPU_AVX512, CPU_AVX512_BF16};

/* A value as the products see it: bf16, subnormals flushed. */
static float as_bf16(float x) {
    const float r = bf16_round(x);
    return fabsf(r) < 1.17549435e-38f ? copysignf(0.0f, r) : r;
}

/* The reference of the definition above. */
static void reference(const shape *s, const float *A, const float *B, const float *bias, float *C) {
    for (int64_t i = 0; i < s->M; i++)
        for (int64_t j = 0; j < s->N; j++) {
            float c = bias ? bias[j] : C[i * s->ldc + j];
            float beta = bias ? 1.0f : s->beta;
            for (int64_t k0 = 0; k0 < s->K; k0 += 256) {
                const int64_t k1 = s->K - k0 < 256 ? s->K : k0 + 256;
                float acc = 0.0f;
                for (int64_t k = k0; k < k1; k += 2) {
                    for (int h = 1; h >= 0; h--) {
                        const int64_t kk = k + h;
                        float a = 0.0f, b = 0.0f;
                        if (kk < k1) {
                            a = as_bf16(s->ta ? A[kk * s->lda + i] : A[i * s->lda + kk]);
                            b = as_bf16(s->tb ? B[j * s->ldb + kk] : B[kk * s->ldb + j]);
                        }
                        acc = fmaf(a, b, acc); /* the product is exact: one rounding */
                    }
                }
                c = beta == 0.0f ? s->alpha * acc
                                 : fmaf(s->alpha, acc, beta == 1.0f ? c : beta * c);
                beta = 1.0f;
            }
            C[i * s->ldc + j] = c;
        }
}

static shape random_shape(tfm_rng *r) {
    static const int64_t big[] = {1, 2, 3, 7, 8, 9, 31, 32, 33, 63, 65, 100};
    static const int64_t ks[] = {1, 2, 3, 5, 16, 17, 255, 256, 257, 300, 513, 600};
    shape s = {0};
    s.ta = rng_next(r) & 1, s.tb = rng_next(r) & 1;
    s.M = big[rng_next(r) % 12], s.N = big[rng_next(r) % 12], s.K = ks[rng_next(r) % 12];
    const int64_t pad = (int64_t)(rng_next(r) % 3);
    s.lda = (s.ta ? s.M : s.K) + pad, s.ldb = (s.tb ? s.K : s.N) + pad, s.ldc = s.N + pad;
    static const float alphas[] = {1.0f, 1.0f, 0.5f, -2.0f}, betas[] = {0.0f, 1.0f, 0.25f, 0.0f};
    s.alpha = alphas[rng_next(r) % 4], s.beta = betas[rng_next(r) % 4];
    return s;
}

typedef struct operands {
    float *A, *B, *C0, *C, *want, *bias;
    size_t na, nb, nc;
} operands;

static void operands_make(operands *o, const shape *s, uint64_t seed) {
    tfm_rng r;
    rng_seed(&r, seed);
    o->na = (size_t)((s->ta ? s->K : s->M) * s->lda);
    o->nb = (size_t)((s->tb ? s->N : s->K) * s->ldb);
    o->nc = (size_t)(s->M * s->ldc);
    o->A = malloc(o->na * sizeof(float)), o->B = malloc(o->nb * sizeof(float));
    o->C0 = malloc(o->nc * sizeof(float)), o->C = malloc(o->nc * sizeof(float));
    o->want = malloc(o->nc * sizeof(float)), o->bias = malloc((size_t)s->N * sizeof(float));
    assert_true(o->A && o->B && o->C0 && o->C && o->want && o->bias);
    for (size_t i = 0; i < o->na; i++) o->A[i] = rng_normal(&r);
    for (size_t i = 0; i < o->nb; i++) o->B[i] = rng_normal(&r);
    for (size_t i = 0; i < o->nc; i++) o->C0[i] = s->beta == 0.0f ? NAN : rng_normal(&r);
    for (int64_t j = 0; j < s->N; j++) o->bias[j] = rng_normal(&r);
}

static void operands_free(operands *o) {
    free(o->A), free(o->B), free(o->C0), free(o->C), free(o->want), free(o->bias);
}

/* C against want, element by element: bits, or (loose) within a float rounding. */
static bool same(const shape *s, const float *C, const float *want, bool loose, const char *what) {
    for (int64_t i = 0; i < s->M; i++)
        for (int64_t j = 0; j < s->N; j++) {
            const float c = C[i * s->ldc + j], w = want[i * s->ldc + j];
            const bool ok = loose ? fabsf(c - w) <= 1e-6f * (fabsf(w) + 1.0f)
                                  : memcmp(&c, &w, sizeof c) == 0;
            if (!ok) {
                printf("  %s: %s%s M %lld N %lld K %lld alpha %g beta %g: C[%lld, %lld] = %.9g, "
                       "reference %.9g\n", what, s->ta ? "At" : "A", s->tb ? "Bt" : "B",
                       (long long)s->M, (long long)s->N, (long long)s->K, s->alpha, s->beta,
                       (long long)i, (long long)j, c, w);
                return false;
            }
        }
    return true;
}

/* One product on the active path in a bf16 scope, B from a twin when `twin`. */
static void run_bf16(const shape *s, operands *o, bool twin, bool with_bias) {
    bf16_weights w = {0};
    if (twin) {
        const float *p = o->B;
        assert_int_equal(bf16_weights_build(&w, &p, &o->nb, 1), TFM_OK);
    }
    const compute_scope prev = compute_enter(TFM_COMPUTE_BF16, twin ? &w : NULL);
    memcpy(o->C, o->C0, o->nc * sizeof(float));
    if (with_bias)
        tfm_gemm_bias(s->ta, s->tb, s->M, s->N, s->K, o->A, s->lda, o->B, s->ldb, o->bias, o->C,
                      s->ldc);
    else
        tfm_gemm(s->ta, s->tb, s->M, s->N, s->K, s->alpha, o->A, s->lda, o->B, s->ldb, s->beta,
                 o->C, s->ldc);
    compute_leave(prev);
    bf16_weights_free(&w);
}

static void test_products(void **state) {
    (void)state;
    tfm_rng r;
    rng_seed(&r, 11);
    int ran[4] = {0};
    for (int t = 0; t < 160; t++) {
        shape s = random_shape(&r);
        const bool with_bias = t % 5 == 4;
        if (with_bias) s.alpha = 1.0f, s.beta = 1.0f;
        operands o;
        operands_make(&o, &s, 100 + (uint64_t)t);
        memcpy(o.want, o.C0, o.nc * sizeof(float));
        reference(&s, o.A, o.B, with_bias ? o.bias : NULL, o.want);
        for (size_t p = 0; p < sizeof PATHS / sizeof *PATHS; p++) {
            if (!cpu_supported(PATHS[p])) continue;
            assert_int_equal(tfm_set_cpu_path(cpu_path_name(PATHS[p])), TFM_OK);
            const bool loose = PATHS[p] == CPU_GENERIC && s.alpha != 1.0f && s.beta != 0.0f;
            for (int twin = 0; twin < 2; twin++) {
                run_bf16(&s, &o, twin, with_bias);
                char what[64];
                snprintf(what, sizeof what, "%s%s", cpu_path_name(PATHS[p]), twin ? " twin" : "");
                assert_true(same(&s, o.C, o.want, loose, what));
            }
            ran[p]++;
        }
        operands_free(&o);
    }
    assert_int_equal(tfm_set_cpu_path(NULL), TFM_OK);
    printf("  bf16 products checked on:");
    for (size_t p = 0; p < 4; p++)
        if (ran[p]) printf(" %s (%d)", cpu_path_name(PATHS[p]), ran[p]);
    printf("\n");
}

/* Large enough to thread: 1 and 2 threads give the same bits on every path. */
static void test_threads(void **state) {
    (void)state;
    const shape s = {false, true, 200, 300, 600, 600, 600, 300, 1.0f, 0.0f};
    operands o;
    operands_make(&o, &s, 5);
    for (size_t p = 0; p < sizeof PATHS / sizeof *PATHS; p++) {
        if (!cpu_supported(PATHS[p])) continue;
        assert_int_equal(tfm_set_cpu_path(cpu_path_name(PATHS[p])), TFM_OK);
        tfm_set_num_threads(1);
        run_bf16(&s, &o, true, false);
        memcpy(o.want, o.C, o.nc * sizeof(float));
        tfm_set_num_threads(2);
        run_bf16(&s, &o, true, false);
        assert_true(same(&s, o.C, o.want, false, cpu_path_name(PATHS[p])));
    }
    tfm_set_num_threads(0);
    assert_int_equal(tfm_set_cpu_path(NULL), TFM_OK);
    operands_free(&o);
}

/* The packer of every path (gemm_pack_bf16 under it) against the plain-C one, bit for
 * bit: both formats, FP32 and bf16 sources, both orientations, odd and even kc, partial
 * panels, with NaN, infinities and subnormals among the values. */
static void test_packers(void **state) {
    (void)state;
    tfm_rng r;
    rng_seed(&r, 3);
    enum { LD = 300, ROWS = 260 };
    float *f = malloc(sizeof(float) * LD * ROWS);
    uint16_t *h = malloc(sizeof(uint16_t) * LD * ROWS);
    float *got = malloc(sizeof(float) * 64 * 260), *want = malloc(sizeof(float) * 64 * 260);
    assert_true(f && h && got && want);
    for (int i = 0; i < LD * ROWS; i++) {
        const uint32_t u = (uint32_t)rng_next(&r);
        f[i] = i % 97 == 0 ? NAN : i % 89 == 0 ? -INFINITY : i % 83 == 0 ? 1e-39f * (float)(u % 7)
                                                                          : rng_normal(&r);
        h[i] = i % 79 == 0 ? (uint16_t)(u & 0x807f) : bf16_from_f32(f[i]); /* subnormal bf16 */
    }
    static const int64_t kcs[] = {1, 7, 8, 17, 256};
    static const int ws[] = {6, 8, 12, 16, 32};
    for (size_t p = 0; p < sizeof PATHS / sizeof *PATHS; p++) {
        if (!cpu_supported(PATHS[p])) continue;
        assert_int_equal(tfm_set_cpu_path(cpu_path_name(PATHS[p])), TFM_OK);
        for (int fmt = GEMM_BF16_FMA; fmt <= GEMM_BF16_PAIRS; fmt++)
            for (int src16 = 0; src16 < 2; src16++)
                for (int kcont = 0; kcont < 2; kcont++)
                    for (size_t a = 0; a < 5; a++)
                        for (size_t b = 0; b < 5; b++) {
                            const int64_t kc = kcs[a], n = ws[b] + 5, steps = kc + (kc & 1);
                            const size_t len = (size_t)((n + ws[b] - 1) / ws[b] * ws[b] * steps);
                            const void *src = src16 ? (const void *)h : (const void *)f;
                            memset(got, 0xff, len * sizeof(float));
                            memset(want, 0xff, len * sizeof(float));
                            gemm_pack_bf16((gemm_format)fmt, src, src16, LD, kcont, kc, n, ws[b], got);
                            gemm_pack_bf16_generic((gemm_format)fmt, src, src16, LD, kcont, kc, n,
                                                   ws[b], want);
                            const size_t used = fmt == GEMM_BF16_PAIRS ? len / 2 : len;
                            if (memcmp(got, want, used * sizeof(float)))
                                printf("  packer %s: format %d bf16 src %d k-contiguous %d kc %lld "
                                       "w %d differs\n", cpu_path_name(PATHS[p]), fmt, src16,
                                       kcont, (long long)kc, ws[b]);
                            assert_memory_equal(got, want, used * sizeof(float));
                        }
    }
    assert_int_equal(tfm_set_cpu_path(NULL), TFM_OK);
    free(f), free(h), free(got), free(want);
}

static void test_rounding(void **state) {
    (void)state;
    /* 1 + 2^-8 is a tie between 1 and 1 + 2^-7: even (1); 1 + 3·2^-8 rounds up to even. */
    assert_true(bf16_round(1.0f + 0x1p-8f) == 1.0f);
    assert_true(bf16_round(1.0f + 3 * 0x1p-8f) == 1.0f + 0x1p-6f);
    assert_true(bf16_round(1.0f + 0x1p-8f + 0x1p-20f) == 1.0f + 0x1p-7f);
    assert_true(isinf(bf16_round(INFINITY)) && bf16_round(-INFINITY) < 0);
    assert_true(isnan(bf16_round(NAN)));
    assert_true(isinf(bf16_round(3.4028235e38f))); /* past bf16's largest: infinity */
    assert_true(bf16_round(-2.5f) == -2.5f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rounding),
        cmocka_unit_test(test_packers),
        cmocka_unit_test(test_products),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
