/* gemm.h — the one matrix product every module goes through.
 *
 * Row-major: C (M, N) = alpha · op(A) · op(B) + beta · C, where op(A) is (M, K)
 * (A stored (K, M) when trans_a) and op(B) is (K, N) (B stored (N, K) when trans_b).
 * beta = 0 overwrites C without reading it (NaN there is not kept).
 * Backed by tfm's packed SGEMM (kernels/gemm_packed.h) on the AVX-512 path for the
 * products where it measured faster than OpenBLAS, by CBLAS for the rest when built with
 * one, and without CBLAS — or with an OpenBLAS running pre-AVX2 kernels (0.3.21 on CPUs it
 * does not know) — by the packed kernel of the CPU path (AVX-512, AVX2 or plain C).
 * Results do not depend on the thread count (each backend sums every element in a fixed
 * order); they differ between backends and paths by rounding.
 * Must not be called from inside an OpenMP parallel region (it threads itself).
 */
#ifndef TFM_KERNELS_GEMM_H
#define TFM_KERNELS_GEMM_H

#include <stdbool.h>
#include <stdint.h>

void tfm_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
              int64_t ldc);

/* C (M, N) = op(A) · op(B) + bias, bias (N) added to every row (nn.Linear): bit for bit
 * fill C's rows with bias, then tfm_gemm with alpha 1 and beta 1 — but the packed kernel
 * writes each tile's bias just before the tile is computed, saving a pass over C. */
void tfm_gemm_bias(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float *A,
                   int64_t lda, const float *B, int64_t ldb, const float *bias, float *C,
                   int64_t ldc);

/* The plain reference loop, always built: what the tests compare every backend with. */
void tfm_gemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                        float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                        float beta, float *C, int64_t ldc);

/* What tfm_gemm uses on the active CPU path: "avx512+cblas" (the packed AVX-512 kernel,
 * CBLAS for some shapes), "cblas", or the packed kernel's name ("avx512", "avx512_intel",
 * "avx2", "generic") without CBLAS or with an OpenBLAS on pre-AVX2 kernels. */
const char *tfm_gemm_backend(void);

#endif
