/* test_gemm.c — every packed SGEMM kernel (kernels/gemm_packed.h) of every CPU path this
 * machine runs (each microarchitecture's variant, whatever CPU this is: gemm_kernels_of),
 * and tfm_gemm under each path, against tfm_gemm_reference:
 *   1. random shapes 1..70 and a few hundreds (edges of every micro-tile and block, K over
 *      several K blocks), all four transposes, padded leading dimensions, alpha/beta
 *      including beta = 0 over NaN-filled C;
 *   2. the trivial cases tfm_gemm handles itself (K = 0, alpha = 0, empty C);
 *   3. bit-identical results for 1, 2 and 3 threads (OpenMP builds);
 *   4. tfm_gemm_bias: the bits of bias rows + tfm_gemm(alpha 1, beta 1), every shape of 1;
 *   5. the kernel choice per microarchitecture picks from the kernels tested here.
 * Tolerance per element: 1e-5·√K · (|alpha|·Σ_k |op(A)_ik·op(B)_kj| + |beta·C_ij|), the
 * scale of a float dot product's rounding error, so that cancellation cannot hide a bug.
 *
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
#include "core/cpu_model.h"
#include "core/rng.h"
#include "kernels/gemm.h"
#include "kernels/gemm_packed.h"
#include "tfm.h"

#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct shape {
    bool ta, tb;
    int64_t M, N, K, lda, ldb, ldc;
    float alpha, beta;
} shape;

/* The operands of one product, in their stored shapes (padded leading dimensions). */
typedef struct operands {
    float *A, *B, *C0; /* C0: C before the call */
    size_t na, nb, nc;
} operands;

static void operands_make(operands *o, const shape *s, uint64_t seed) {
    tfm_rng r;
    rng_seed(&r, seed);
    o->na = (size_t)((s->ta ? s->K : s->M) * s->lda);
    o->nb = (size_t)((s->tb ? s->N : s->K) * s->ldb);
    o->nc = (size_t)(s->M * s->ldc);
    o->A = malloc(o->na * sizeof(float));
    o->B = malloc(o->nb * sizeof(float));
    o->C0 = malloc(o->nc * sizeof(float));
    assert_non_null(o->A), assert_non_null(o->B), assert_non_null(o->C0);
    for (size_t i = 0; i < o->na; i++) o->A[i] = rng_normal(&r);
    for (size_t i = 0; i < o->nb; i++) o->B[i] = rng_normal(&r);
    for (size_t i = 0; i < o->nc; i++) o->C0[i] = s->beta == 0.0f ? NAN : rng_normal(&r);
}

static void operands_free(operands *o) { free(o->A), free(o->B), free(o->C0); }

static float op_a(const shape *s, const float *A, int64_t i, int64_t k) {
    return s->ta ? A[k * s->lda + i] : A[i * s->lda + k];
}
static float op_b(const shape *s, const float *B, int64_t k, int64_t j) {
    return s->tb ? B[j * s->ldb + k] : B[k * s->ldb + j];
}

/* The per-element tolerance: 1e-5·√K · (|alpha|·Σ_k |op(A)_ik·op(B)_kj| + |beta·C_ij|). */
static double *tolerances(const shape *s, const operands *o) {
    const double rtol = 1e-5 * sqrt((double)(s->K > 0 ? s->K : 1));
    double *tol = malloc(o->nc * sizeof(double));
    assert_non_null(tol);
    for (int64_t i = 0; i < s->M; i++)
        for (int64_t j = 0; j < s->N; j++) {
            const size_t at = (size_t)(i * s->ldc + j);
            double scale = s->beta == 0.0f ? 0.0 : fabs((double)s->beta * o->C0[at]);
            for (int64_t k = 0; k < s->K; k++)
                scale += fabs((double)s->alpha * op_a(s, o->A, i, k) * op_b(s, o->B, k, j));
            tol[at] = rtol * scale;
        }
    return tol;
}

/* Checks C (after the call under test) against want (tfm_gemm_reference's) within tol.
 * Padding columns of C past N must be untouched. Prints the first bad element. */
static bool check(const char *what, const shape *s, const operands *o, const float *C,
                  const float *want, const double *tol) {
    for (int64_t i = 0; i < s->M; i++) {
        for (int64_t j = 0; j < s->ldc; j++) {
            const size_t at = (size_t)(i * s->ldc + j);
            if (j >= s->N) { /* padding: the same bits as before */
                if (memcmp(&C[at], &o->C0[at], sizeof(float))) {
                    printf("  %s: wrote C[%lld, %lld] past N = %lld\n", what, (long long)i,
                           (long long)j, (long long)s->N);
                    return false;
                }
                continue;
            }
            const double err = fabs((double)C[at] - want[at]);
            if (!(err <= tol[at] + 1e-30)) {
                printf("  %s: %s%s M %lld N %lld K %lld alpha %g beta %g: C[%lld, %lld] = %.9g, "
                       "reference %.9g, |diff| %.3g > %.3g\n",
                       what, s->ta ? "Aᵀ" : "A", s->tb ? "·Bᵀ" : "·B", (long long)s->M,
                       (long long)s->N, (long long)s->K, s->alpha, s->beta, (long long)i,
                       (long long)j, C[at], want[at], err, tol[at]);
                return false;
            }
        }
    }
    return true;
}

/* The CPU paths this machine and build run, with their packed kernels. */
static int supported_paths(cpu_path *out) {
    static const cpu_path all[] = {CPU_AVX512, CPU_AVX2, CPU_GENERIC};
    static bool told = false;
    int n = 0;
    for (size_t p = 0; p < sizeof all / sizeof *all; p++) {
        if (gemm_kernel_for(all[p]))
            out[n++] = all[p];
        else if (!told)
            printf("  (path %s not supported here: skipped)\n", cpu_path_name(all[p]));
    }
    told = true;
    return n;
}

/* tfm_gemm_bias on the active path against its definition: C's rows set to the bias, then
 * tfm_gemm with alpha 1 and beta 1 — bit for bit. C (M · ldc) scratch. */
static bool bias_matches(const shape *s, const operands *o, float *C) {
    float *bias = malloc((size_t)s->N * sizeof(float)), *want = malloc(o->nc * sizeof(float));
    assert_non_null(bias), assert_non_null(want);
    for (int64_t j = 0; j < s->N; j++) bias[j] = 0.25f * (float)(j % 7) - 0.5f;
    memcpy(want, o->C0, o->nc * sizeof(float));
    memcpy(C, o->C0, o->nc * sizeof(float));
    for (int64_t i = 0; i < s->M; i++) memcpy(want + i * s->ldc, bias, (size_t)s->N * sizeof(float));
    tfm_gemm(s->ta, s->tb, s->M, s->N, s->K, 1.0f, o->A, s->lda, o->B, s->ldb, 1.0f, want, s->ldc);
    tfm_gemm_bias(s->ta, s->tb, s->M, s->N, s->K, o->A, s->lda, o->B, s->ldb, bias, C, s->ldc);
    const bool ok = memcmp(C, want, o->nc * sizeof(float)) == 0;
    if (!ok)
        printf("FAIL tfm_gemm_bias(%s) M %lld N %lld K %lld ta %d tb %d: not the bits of bias rows "
               "+ tfm_gemm\n",
               tfm_gemm_backend(), (long long)s->M, (long long)s->N, (long long)s->K, s->ta, s->tb);
    free(bias), free(want);
    return ok;
}

/* One shape through gemm_packed with each path's kernel and through tfm_gemm under each
 * path; all against tfm_gemm_reference. Returns the number of failures. */
static int run_shape(const shape *s, uint64_t seed) {
    operands o;
    operands_make(&o, s, seed);
    float *want = malloc(o.nc * sizeof(float)), *C = malloc(o.nc * sizeof(float));
    assert_non_null(want), assert_non_null(C);
    memcpy(want, o.C0, o.nc * sizeof(float));
    tfm_gemm_reference(s->ta, s->tb, s->M, s->N, s->K, s->alpha, o.A, s->lda, o.B, s->ldb,
                       s->beta, want, s->ldc);
    double *tol = tolerances(s, &o);
    cpu_path paths[CPU_PATHS];
    const int np = supported_paths(paths);
    int bad = 0;
    for (int p = 0; p < np; p++) {
        char what[64];
        const gemm_kernel *ks[8];
        const int nk = gemm_kernels_of(paths[p], ks, 8);
        for (int v = 0; v < nk && s->K > 0 && s->alpha != 0.0f; v++) { /* gemm_packed's
                                                                         * precondition */
            memcpy(C, o.C0, o.nc * sizeof(float));
            assert_true(gemm_packed(ks[v], s->ta, s->tb, s->M, s->N, s->K, s->alpha, o.A,
                                    s->lda, o.B, s->ldb, s->beta, NULL, C, s->ldc));
            snprintf(what, sizeof what, "gemm_packed(%s)", ks[v]->name);
            bad += !check(what, s, &o, C, want, tol);
        }
        assert_int_equal(tfm_set_cpu_path(cpu_path_name(paths[p])), TFM_OK);
        memcpy(C, o.C0, o.nc * sizeof(float));
        tfm_gemm(s->ta, s->tb, s->M, s->N, s->K, s->alpha, o.A, s->lda, o.B, s->ldb, s->beta, C,
                 s->ldc);
        snprintf(what, sizeof what, "tfm_gemm(%s, %s)", cpu_path_name(paths[p]),
                 tfm_gemm_backend());
        bad += !check(what, s, &o, C, want, tol);
        bad += !bias_matches(s, &o, C);
    }
    assert_int_equal(tfm_set_cpu_path(NULL), TFM_OK);
    free(want), free(C), free(tol);
    operands_free(&o);
    return bad;
}

static int64_t uniform_int(tfm_rng *r, int64_t lo, int64_t hi) {
    return lo + (int64_t)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

/* Random shape: M, N, K in [lo, hi]; sometimes padded leading dimensions. */
static shape random_shape(tfm_rng *r, int t, int64_t lo, int64_t hi, float alpha, float beta) {
    shape s = {.ta = t & 1, .tb = (t & 2) != 0, .alpha = alpha, .beta = beta};
    s.M = uniform_int(r, lo, hi), s.N = uniform_int(r, lo, hi), s.K = uniform_int(r, lo, hi);
    const int64_t pad = rng_next(r) % 2 ? uniform_int(r, 1, 9) : 0;
    s.lda = (s.ta ? s.M : s.K) + pad;
    s.ldb = (s.tb ? s.K : s.N) + pad;
    s.ldc = s.N + pad;
    return s;
}

static const float alphas[] = {1.0f, 1.0f, 0.5f, -1.5f};
static const float betas[] = {0.0f, 1.0f, 2.0f, -0.25f};

static void test_small_shapes(void **state) {
    tfm_rng r;
    rng_seed(&r, 2024);
    int bad = 0, n = 0;
    for (int rep = 0; rep < 24; rep++)
        for (int t = 0; t < 4; t++) {
            const shape s = random_shape(&r, t, 1, 70, alphas[rep % 4], betas[(rep / 4) % 4]);
            bad += run_shape(&s, (uint64_t)(rep * 4 + t));
            n++;
        }
    if (bad) fail_msg("%d failures over %d small shapes", bad, n);
}

/* Every edge of the micro-tiles: M, N in 1..MR+1 and NR-1..NR+1 around each kernel's tile. */
static void test_tile_edges(void **state) {
    int bad = 0;
    const int64_t sizes[] = {1, 2, 5, 6, 7, 8, 9, 11, 12, 13, 15, 16, 17, 31, 32, 33};
    for (size_t a = 0; a < sizeof sizes / sizeof *sizes; a++)
        for (size_t b = 0; b < sizeof sizes / sizeof *sizes; b += 3) {
            const int t = (int)((a + b) % 4);
            shape s = {.ta = t & 1, .tb = (t & 2) != 0, .M = sizes[a], .N = sizes[b],
                       .K = 3 + (int64_t)a, .alpha = 1.0f, .beta = (a % 2) ? 0.0f : 1.0f};
            s.lda = s.ta ? s.M : s.K, s.ldb = s.tb ? s.K : s.N, s.ldc = s.N;
            bad += run_shape(&s, 100 + a * 16 + b);
        }
    if (bad) fail_msg("%d failures at tile edges", bad);
}

/* A few hundreds, and K across several K blocks (KC = 256) with a ragged last one; M or N
 * past 4096 (more than one block of C: the single-buffered driver loop). */
static void test_large_shapes(void **state) {
    static const int64_t mnk[][3] = {{300, 257, 513}, {129, 200, 600}, {64, 512, 256},
                                     {257, 33, 1000}, {1030, 70, 257}, {20, 4200, 300},
                                     {4100, 9, 520}};
    int bad = 0;
    for (size_t c = 0; c < sizeof mnk / sizeof *mnk; c++)
        for (int t = 0; t < 4; t++) {
            shape s = {.ta = t & 1, .tb = (t & 2) != 0, .M = mnk[c][0], .N = mnk[c][1],
                       .K = mnk[c][2], .alpha = alphas[(c + t) % 4], .beta = betas[(c + t) % 4]};
            s.lda = (s.ta ? s.M : s.K) + (int64_t)c, s.ldb = s.tb ? s.K : s.N, s.ldc = s.N + 3;
            bad += run_shape(&s, 500 + c * 4 + t);
        }
    if (bad) fail_msg("%d failures over large shapes", bad);
}

/* tfm_gemm's own cases: K = 0 and alpha = 0 scale C by beta (beta = 0 clears NaN); an
 * empty C is not touched. */
static void test_trivial(void **state) {
    const shape cases[] = {
        {false, true, 5, 7, 0, 9, 9, 7, 1.0f, 0.0f},
        {false, false, 5, 7, 0, 9, 7, 7, 1.0f, 2.0f},
        {true, false, 5, 7, 9, 5, 7, 7, 0.0f, 0.0f},
        {true, true, 5, 7, 9, 5, 9, 7, 0.0f, 0.5f},
    };
    int bad = 0;
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) bad += run_shape(&cases[c], 900 + c);
    float sentinel = 42.0f;
    tfm_gemm(false, false, 0, 4, 4, 1.0f, NULL, 4, NULL, 4, 0.0f, &sentinel, 4);
    tfm_gemm(false, false, 4, 0, 4, 1.0f, NULL, 4, NULL, 0, 0.0f, &sentinel, 0);
    assert_true(sentinel == 42.0f);
    if (bad) fail_msg("%d failures in the trivial cases", bad);
}

/* Bit-identical C for 1, 2 and 3 threads, per path, through gemm_packed and tfm_gemm, at
 * shapes that split over threads (K over several K blocks; the model's weight gradient
 * dW = dYᵀ·X and forward projection x·Wᵀ). */
static void test_thread_invariance(void **state) {
#ifdef _OPENMP
    static const shape cases[] = {
        {false, true, 512, 384, 600, 600, 600, 384, 1.0f, 1.0f},
        {true, false, 256, 512, 1100, 256, 512, 512, 1.0f, 1.0f},
        {false, false, 333, 211, 517, 517, 211, 211, 0.5f, 0.0f},
        {true, true, 200, 300, 300, 200, 300, 300, 1.0f, 2.0f},
    };
    cpu_path paths[CPU_PATHS];
    const int np = supported_paths(paths);
    const int saved = omp_get_max_threads();
    int bad = 0;
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const shape *s = &cases[c];
        operands o;
        operands_make(&o, s, 700 + c);
        float *C[3];
        for (int p = 0; p < np; p++) {
            const gemm_kernel *ks[8];
            const int nk = gemm_kernels_of(paths[p], ks, 8);
            /* via 0 .. nk-1: gemm_packed with kernel via; nk: tfm_gemm */
            for (int via = 0; via <= nk; via++) {
                const gemm_kernel *k = via < nk ? ks[via] : ks[0];
                assert_int_equal(tfm_set_cpu_path(cpu_path_name(paths[p])), TFM_OK);
                for (int t = 0; t < 3; t++) {
                    C[t] = malloc(o.nc * sizeof(float));
                    assert_non_null(C[t]);
                    memcpy(C[t], o.C0, o.nc * sizeof(float));
                    omp_set_num_threads(t + 1);
                    if (via < nk)
                        assert_true(gemm_packed(k, s->ta, s->tb, s->M, s->N, s->K, s->alpha, o.A,
                                                s->lda, o.B, s->ldb, s->beta, NULL, C[t],
                                                s->ldc));
                    else
                        tfm_gemm(s->ta, s->tb, s->M, s->N, s->K, s->alpha, o.A, s->lda, o.B,
                                 s->ldb, s->beta, C[t], s->ldc);
                }
                omp_set_num_threads(saved);
                for (int t = 1; t < 3; t++) {
                    size_t diff = 0;
                    for (size_t i = 0; i < o.nc; i++) diff += memcmp(&C[0][i], &C[t][i], 4) != 0;
                    if (diff) {
                        printf("  %s (%s) %lld × %lld × %lld: 1 vs %d threads differ in %zu "
                               "elements\n",
                               via == nk ? "tfm_gemm" : "gemm_packed", k->name, (long long)s->M,
                               (long long)s->N, (long long)s->K, t + 1, diff);
                        bad++;
                    }
                }
                for (int t = 0; t < 3; t++) free(C[t]);
            }
        }
        operands_free(&o);
    }
    assert_int_equal(tfm_set_cpu_path(NULL), TFM_OK);
    if (bad) fail_msg("%d results depend on the thread count", bad);
#else
    skip();
#endif
}

/* gemm_kernel_for_product picks, for either transposition, a kernel gemm_kernels_of lists
 * (the ones tested above), gemm_kernel_for's first; the microarchitecture has a name. */
static void test_kernel_choice(void **state) {
    const cpu_model *m = cpu_model_get();
    printf("  (cpu: %s family 0x%x model 0x%x -> %s)\n", m->vendor, m->family, m->model,
           cpu_uarch_name(m->uarch));
    assert_string_not_equal(cpu_uarch_name(m->uarch), "?");
    for (int p = 0; p < CPU_PATHS; p++) {
        const gemm_kernel *ks[8];
        const int nk = gemm_kernels_of((cpu_path)p, ks, 8);
        if (!nk) {
            assert_null(gemm_kernel_for((cpu_path)p));
            continue;
        }
        assert_ptr_equal(ks[0], gemm_kernel_for((cpu_path)p));
        for (int ta = 0; ta < 2; ta++) {
            const gemm_kernel *k = gemm_kernel_for_product((cpu_path)p, ta);
            bool listed = false;
            for (int v = 0; v < nk; v++) listed |= ks[v] == k;
            if (!listed) fail_msg("path %s trans_a %d: kernel %s not among the tested ones",
                                  cpu_path_name((cpu_path)p), ta, k ? k->name : "NULL");
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernel_choice),
        cmocka_unit_test(test_small_shapes),      cmocka_unit_test(test_tile_edges),
        cmocka_unit_test(test_large_shapes),      cmocka_unit_test(test_trivial),
        cmocka_unit_test(test_thread_invariance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
