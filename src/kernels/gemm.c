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
/* CBLAS takes int dimensions: split M when it is larger (N and K are model widths). */
static void gemm_cblas(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                       float *C, int64_t ldc) {
    const int64_t step = INT_MAX / 2;
    for (int64_t m0 = 0; m0 < M; m0 += step) {
        int64_t m = M - m0 < step ? M - m0 : step;
        const float *a = trans_a ? A + m0 : A + m0 * lda;
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                    trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)N, (int)K, alpha, a,
                    (int)lda, B, (int)ldb, beta, C + m0 * ldc, (int)ldc);
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
