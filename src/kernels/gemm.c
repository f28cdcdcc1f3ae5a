/* gemm.c — tfm_gemm: the choice between tfm's packed SGEMM (kernels/gemm_packed.h), CBLAS
 * and the plain reference loop, made here and only here.
 * Legend: M rows of C, N columns of C, K the contracted dimension. */
#include "kernels/gemm.h"

#include <limits.h>
#include <stdatomic.h>
#include <string.h>

#include "core/cpu.h"
#include "core/cpu_model.h"
#include "kernels/compute.h"
#include "kernels/elementwise.h"
#include "kernels/gemm_packed.h"

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

#ifdef TFM_HAVE_CBLAS
/* OpenBLAS's name for the kernels it runs (DYNAMIC_ARCH builds choose at load time); weak,
 * so NULL with another CBLAS. */
extern char *openblas_get_corename(void) __attribute__((weak));

/* Whether the CBLAS is an OpenBLAS running kernels older than AVX2 + FMA on this CPU —
 * what a DYNAMIC_ARCH OpenBLAS falls back to on a CPU newer than it knows (0.3.21 on
 * Sapphire/Emerald Rapids: "Prescott"). Measured there at the linear layers' shapes:
 * 31–33 GFLOP/s a thread against ~155 for the packed AVX-512 kernel (and for the same
 * OpenBLAS told OPENBLAS_CORETYPE=Cooperlake); and its results then depend on the thread
 * count even fed K by 256 (test_gemm's thread invariance failed on every path). The packed
 * kernel of the path then takes every product. */
static bool cblas_pre_avx2(void) {
    static const char *const old[] = {"Prescott", "Core2",   "Penryn",  "Dunnington",
                                      "Nehalem",  "Atom",    "Opteron", "Opteron(SSE3)",
                                      "Barcelona", "Bobcat", "Nano",    "Sandybridge"};
    static atomic_int cached = -1; /* every caller computes the same answer */
    int is_old = atomic_load_explicit(&cached, memory_order_relaxed);
    if (is_old < 0) {
        const char *name = openblas_get_corename ? openblas_get_corename() : NULL;
        is_old = 0;
        for (size_t i = 0; name && i < sizeof old / sizeof *old; i++)
            if (!strcmp(name, old[i])) is_old = 1;
        atomic_store_explicit(&cached, is_old, memory_order_relaxed);
    }
    return is_old == 1;
}

/* Whether the packed kernel k takes this product although CBLAS is there. Measured with
 * bench/bench_gemm.c against Debian's OpenBLAS 0.3.21 (Cooperlake kernels) on a 2-core
 * Zen 4, medians of quiet runs, GFLOP/s against what this file fed OpenBLAS (K by 256):
 * at the linear layers' products for 1024 and 4096 rows, level on one thread (~96 each)
 * and 0–8% ahead on two at 12 of the 15 (~185 against ~180; peak ≈ 230); with operands
 * from main memory (--cold) 2–3% behind on one thread and 0–10% ahead on two at 12 of
 * 15. With 4 to 128 rows (decoding) 3–65% ahead when the weights are in cache (a small
 * model), level within ±10% when they come from memory (a large one), ahead at K = 2048.
 * Run-to-run noise on the shared machine is ±5%. OpenBLAS stays where it measured faster:
 *   - M < 4: vector-like products, which OpenBLAS spreads over threads and we do not;
 *   - N padding the NR-wide tiles by 10% or more (N = 259: 288 columns computed);
 *   - weight gradients (trans_a: C = Aᵀ·B) with a small C (M·N ≤ 512²): 5–10% behind.
 * The AVX2 kernel stays unused beside CBLAS: 5–15% behind OpenBLAS's AVX-512 kernels here
 * (no AVX2-only CPU was measured).
 * On Intel (a 2-core Sapphire/Emerald Rapids VM, family 6 model 207; one thread, CPU time,
 * medians of 3 on a busy machine; two-thread runs there were swamped by other load), with
 * OpenBLAS on its Cooperlake kernels (OPENBLAS_CORETYPE=Cooperlake): x·Wᵀ and dy·W level
 * (avx512_intel 154–162 GFLOP/s against 151–159; MKL 158–164), dW 2–7% behind (141–150
 * against 146–157), so on Intel every dW goes to CBLAS. Left to itself that OpenBLAS
 * (0.3.21) does not know the CPU and runs its Prescott (SSE3) kernels: see
 * cblas_pre_avx2(). A function of the path, the microarchitecture, the CBLAS's kernels
 * and the shape, never of the thread count: each product's result is the same for any
 * number of threads. */
static bool packed_wins(const gemm_kernel *k, bool trans_a, int64_t M, int64_t N) {
    if (!k) return false;
    if (cblas_pre_avx2()) return true;
    if (cpu_active() != CPU_AVX512) return false;
    const int64_t padded_n = (N + k->nr - 1) / k->nr * k->nr;
    if (M < 4 || 10 * N < 9 * padded_n) return false;
    if (cpu_uarch_active() == CPU_UARCH_INTEL) return !trans_a;
    return !(trans_a && M * N <= 512 * 512);
}
#endif

/* The K block of every bf16 product, on every path: with it the FMA and VDPBF16PS
 * kernels sum each element in the same order, so all bf16 paths give the same numbers
 * (whatever K block the FP32 kernel of a path uses). */
#define GEMM_BF16_KC 256

/* The compute scope's bf16 product (kernels/compute.h): VDPBF16PS where the path takes
 * it, else the path's FP32 micro-kernel on bf16 values (GEMM_BF16_FMA). A weight B
 * with a bf16 twin in the scope is read from the twin. False if no packing memory. */
static bool gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                      const float *bias, float *C, int64_t ldc) {
    const gemm_kernel *dp = cpu_bf16_kind() == BF16_DPBF16 ? gemm_kernel_dpbf16() : NULL;
    const gemm_kernel *k32 = gemm_kernel_for(cpu_active());
    if (!dp && !k32) return false;
    gemm_kernel k = dp ? *dp : *k32;
    k.kc = GEMM_BF16_KC;
    k.micro_rows = NULL; /* A is rounded while packed, never read in place */
    const size_t span = (size_t)(trans_b ? (N - 1) * ldb + K : (K - 1) * ldb + N);
    const uint16_t *twin = bf16_weights_find_span(compute_current().weights, B, span);
    return gemm_packed_bf16(&k, trans_a, trans_b, M, N, K, alpha, A, lda,
                            twin ? (const void *)twin : (const void *)B, twin != NULL, ldb, beta,
                            bias, C, ldc);
}

/* tfm_gemm, or with bias (beta then 1) tfm_gemm_bias: the backend is chosen here. */
static void gemm_dispatch(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                          float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                          float beta, const float *bias, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K > 0 && alpha != 0.0f && compute_bf16() &&
        gemm_bf16(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, bias, C, ldc))
        return;
    const gemm_kernel *k = gemm_kernel_for_product(cpu_active(), trans_a);
#ifdef TFM_HAVE_CBLAS
    const bool cblas_fits =
        N <= INT_MAX && K <= INT_MAX && lda <= INT_MAX && ldb <= INT_MAX && ldc <= INT_MAX;
    const bool packed = !cblas_fits || packed_wins(k, trans_a, M, N);
#else
    const bool packed = true;
#endif
    /* The packed kernel fails only when its buffers cannot be allocated. */
    if (packed && k && K > 0 && alpha != 0.0f &&
        gemm_packed(k, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, bias, C, ldc))
        return;
    if (bias) fill_rows(C, ldc, bias, M, N); /* every other backend: C = bias, beta = 1 */
    if (K <= 0 || alpha == 0.0f) {
        scale_c(M, N, beta, C, ldc);
        return;
    }
#ifdef TFM_HAVE_CBLAS
    if (cblas_fits) {
        gemm_cblas(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#endif
    tfm_gemm_reference(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void tfm_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
              int64_t ldc) {
    gemm_dispatch(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, NULL, C, ldc);
}

void tfm_gemm_bias(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float *A,
                   int64_t lda, const float *B, int64_t ldb, const float *bias, float *C,
                   int64_t ldc) {
    gemm_dispatch(trans_a, trans_b, M, N, K, 1.0f, A, lda, B, ldb, 1.0f, bias, C, ldc);
}

const char *tfm_gemm_backend(void) {
#ifdef TFM_HAVE_CBLAS
    const gemm_kernel *k = gemm_kernel_for(cpu_active());
    if (k && cblas_pre_avx2()) return k->name; /* CBLAS linked but never called */
    return cpu_active() == CPU_AVX512 && gemm_kernel_for(CPU_AVX512) ? "avx512+cblas" : "cblas";
#else
    const gemm_kernel *k = gemm_kernel_for(cpu_active());
    return k ? k->name : "portable";
#endif
}
