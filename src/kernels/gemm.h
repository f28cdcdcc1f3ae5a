/* gemm.h — the one matrix product every module goes through.
 *
 * Row-major: C (M, N) = alpha · op(A) · op(B) + beta · C, where op(A) is (M, K)
 * (A stored (K, M) when trans_a) and op(B) is (K, N) (B stored (N, K) when trans_b).
 * Backed by CBLAS when built with one, else by a portable blocked C loop.
 * Must not be called from inside an OpenMP parallel region (the BLAS threads itself).
 */
#ifndef TFM_KERNELS_GEMM_H
#define TFM_KERNELS_GEMM_H

#include <stdbool.h>
#include <stdint.h>

void tfm_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
              int64_t ldc);

/* The portable implementation, always built (tests compare it with the BLAS path). */
void tfm_gemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                        float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                        float beta, float *C, int64_t ldc);

/* "cblas" or "portable": what tfm_gemm uses in this build. */
const char *tfm_gemm_backend(void);

#endif
