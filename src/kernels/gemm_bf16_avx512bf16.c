/* gemm_bf16_avx512bf16.c — the VDPBF16PS micro-kernel of the bf16 products (kernels/
 * gemm_packed.h, GEMM_BF16_PAIRS), compiled with AVX512-BF16.
 *
 * Legend: MR × NR micro-tile of C (8 × 32: two zmm per row), steps the k of a K block
 * (even; q = steps / 2 pairs). Per pair: two loads of packed B (16 columns × 2 bf16
 * each), eight broadcasts of A's 32-bit pair, sixteen VDPBF16PS into sixteen zmm
 * accumulators. VDPBF16PS adds the odd product, then the even one, each rounded to FP32
 * (checked bit for bit on a Xeon; the FMA path, GEMM_BF16_FMA, sums in the same order,
 * so the two give the same numbers). On AMD Zen 4 it issues once a cycle, twice the
 * FP32 FMA rate; on the Intel Xeons measured once every two cycles (core/cpu.c).
 */
#include "kernels/gemm_packed.h"

#include <stddef.h>

#if defined(TFM_HAVE_X86_KERNELS)
#include <immintrin.h>

#define DP_MR 8
#define DP_NV 2
#define DP_NR (DP_NV * 16)

/* C (DP_MR, DP_NR) = alpha · a·b + beta · C; a (steps / 2, DP_MR) and b (steps / 2, DP_NR)
 * packed pairs. The same epilogue as the FP32 kernels (gemm_x86.h). */
static void micro_dpbf16(int64_t steps, const float *a, const float *b, float *c, int64_t ldc,
                         float alpha, float beta) {
    __m512 acc[DP_MR][DP_NV];
    for (int i = 0; i < DP_MR; i++) {
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + DP_NR - 1), _MM_HINT_T0);
        for (int v = 0; v < DP_NV; v++) acc[i][v] = _mm512_setzero_ps();
    }
    const int32_t *a32 = (const int32_t *)(const void *)a;
    for (int64_t q = 0; q < steps / 2; q++, a32 += DP_MR, b += DP_NR) {
        __m512bh bv[DP_NV];
        for (int v = 0; v < DP_NV; v++) bv[v] = (__m512bh)_mm512_load_si512((const void *)(b + 16 * v));
#pragma GCC unroll 8
        for (int i = 0; i < DP_MR; i++) {
            const __m512bh ai = (__m512bh)_mm512_set1_epi32(a32[i]);
            for (int v = 0; v < DP_NV; v++) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], ai, bv[v]);
        }
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int i = 0; i < DP_MR; i++) {
        float *ci = c + i * ldc;
        for (int v = 0; v < DP_NV; v++) {
            __m512 r;
            if (beta == 0.0f)
                r = _mm512_mul_ps(va, acc[i][v]);
            else if (beta == 1.0f)
                r = _mm512_fmadd_ps(va, acc[i][v], _mm512_loadu_ps(ci + 16 * v));
            else
                r = _mm512_fmadd_ps(va, acc[i][v], _mm512_mul_ps(vb, _mm512_loadu_ps(ci + 16 * v)));
            _mm512_storeu_ps(ci + 16 * v, r);
        }
    }
}

/* Blocks as the FP32 AVX-512 kernel's (gemm_x86.h); kc is set by the caller (gemm.c). */
static const gemm_kernel kernel_dpbf16 = {
    .name = "avx512_bf16", .format = GEMM_BF16_PAIRS, .mr = DP_MR, .nr = DP_NR, .kc = 256,
    .mc = DP_MR * (4096 / DP_MR), .np = 4096, .nc = 512, .micro = micro_dpbf16,
};

const gemm_kernel *gemm_kernel_dpbf16(void) {
    return cpu_supported(CPU_AVX512_BF16) ? &kernel_dpbf16 : NULL;
}
#else
const gemm_kernel *gemm_kernel_dpbf16(void) { return NULL; }
#endif
