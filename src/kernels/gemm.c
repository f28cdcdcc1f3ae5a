/* gemm.c — tfm_gemm: CBLAS when available, else the portable reference.
 * Legend: M rows of C, N columns of C, K the contracted dimension. */
#include "kernels/gemm.h"

#include <limits.h>
#include <string.h>

#ifdef TFM_HAVE_CBLAS
#include <cblas.h>
#endif

/* C (M, N) *= beta, with beta == 0 writing zeros (so NaN garbage in C is not kept). */
static void scale_c(int64_t M, int64_t N, float beta, float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++) {
        float *c = C + i * ldc;
        if (beta == 0.0f)
            memset(c, 0, (size_t)N * sizeof(float));
        else if (beta != 1.0f)
            for (int64_t j = 0; j < N; j++) c[j] *= beta;
    }
}

/* Row i of C accumulates alpha · A[i, k] · B[k, :] over k: the inner loop runs along
 * contiguous memory of B and C, which compilers vectorise. Rows are independent, so
 * splitting them over threads leaves every result bit-identical. */
void tfm_gemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                        float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                        float beta, float *C, int64_t ldc) {
    scale_c(M, N, beta, C, ldc);
    if (K == 0 || alpha == 0.0f) return;
#pragma omp parallel for schedule(static) if (M * N * K > (1 << 18))
    for (int64_t i = 0; i < M; i++) {
        float *c = C + i * ldc;
        for (int64_t k = 0; k < K; k++) {
            float a = alpha * (trans_a ? A[k * lda + i] : A[i * lda + k]);
            if (!trans_b) {
                const float *b = B + k * ldb;
                for (int64_t j = 0; j < N; j++) c[j] += a * b[j];
            } else {
                for (int64_t j = 0; j < N; j++) c[j] += a * B[j * ldb + k];
            }
        }
    }
}

#ifdef TFM_HAVE_CBLAS
/* OpenBLAS splits a long K differently in its one-thread and its threaded drivers
 * (e.g. K = 600: 304 + 296 against 300 + 300), so the sums would round differently
 * with the thread count. Feeding it K in chunks no larger than any of its K blocks keeps
 * every element's summation order fixed: results do not depend on the thread count. */
#define TFM_GEMM_KC 256

/* CBLAS takes int dimensions: split M when it is larger (N and K are model widths). */
static void gemm_cblas(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                       float *C, int64_t ldc) {
    const int64_t step = INT_MAX / 2;
    for (int64_t m0 = 0; m0 < M; m0 += step) {
        const int64_t m = M - m0 < step ? M - m0 : step;
        for (int64_t k0 = 0; k0 < K; k0 += TFM_GEMM_KC) {
            const int64_t k = K - k0 < TFM_GEMM_KC ? K - k0 : TFM_GEMM_KC;
            /* op(A)[m0:, k0:] and op(B)[k0:, :] */
            const float *a = trans_a ? A + k0 * lda + m0 : A + m0 * lda + k0;
            const float *b = trans_b ? B + k0 : B + k0 * ldb;
            cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                        trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)N, (int)k, alpha, a,
                        (int)lda, b, (int)ldb, k0 == 0 ? beta : 1.0f, C + m0 * ldc, (int)ldc);
        }
    }
}
#endif

void tfm_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
              int64_t ldc) {
    if (M <= 0 || N <= 0) return;
#ifdef TFM_HAVE_CBLAS
    if (K > 0 && N <= INT_MAX && K <= INT_MAX && lda <= INT_MAX && ldb <= INT_MAX &&
        ldc <= INT_MAX) {
        gemm_cblas(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#endif
    tfm_gemm_reference(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

const char *tfm_gemm_backend(void) {
#ifdef TFM_HAVE_CBLAS
    return "cblas";
#else
    return "portable";
#endif
}
