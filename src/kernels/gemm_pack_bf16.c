/* gemm_pack_bf16.c — packing for the bf16 products (kernels/gemm_packed.h, gemm_format):
 * the plain-C packers every path can run, and the choice of the packer of a path.
 *
 * Legend: w the panel width (MR or NR), kc the K block, steps = kc rounded up to even,
 * n the values along the panel's dimension (rows of op(A) or columns of op(B)).
 */
#include "kernels/gemm_packed.h"

#include "core/cpu.h"
#include "kernels/bf16.h"

/* bf16 bits of element i of src (floats rounded, or bf16 as stored), subnormals flushed
 * to zero: VDPBF16PS's inputs. */
static inline uint16_t elem_bits(const void *src, bool src_bf16, int64_t i) {
    const uint16_t h = src_bf16 ? ((const uint16_t *)src)[i] : bf16_from_f32(((const float *)src)[i]);
    return (h & 0x7f80u) ? h : (uint16_t)(h & 0x8000u);
}

/* GEMM_BF16_FMA: panel row r holds k = r ^ 1 (pairs swapped), zero past kc. */
static void pack_fma(const void *src, bool src_bf16, int64_t ld, bool k_contiguous, int64_t kc,
                     int64_t n, int w, float *dst) {
    const int64_t steps = kc + (kc & 1), panel = (int64_t)w * steps;
    for (int64_t p = 0; p < n; p += w, dst += panel) {
        const int m = n - p < w ? (int)(n - p) : w;
        for (int64_t r = 0; r < steps; r++) {
            const int64_t k = r ^ 1;
            float *d = dst + r * w;
            for (int i = 0; i < w; i++) {
                const int64_t at = k_contiguous ? (p + i) * ld + k : k * ld + p + i;
                d[i] = i < m && k < kc ? bf16_to_f32(elem_bits(src, src_bf16, at)) : 0.0f;
            }
        }
    }
}

/* GEMM_BF16_PAIRS: panel row q holds (k = 2q, 2q + 1) of each of the w values as one
 * 32-bit word (even k in the low half), zero past kc. */
static void pack_pairs(const void *src, bool src_bf16, int64_t ld, bool k_contiguous,
                       int64_t kc, int64_t n, int w, float *dst) {
    const int64_t rows = (kc + 1) / 2, panel = (int64_t)w * rows;
    uint32_t *d32 = (uint32_t *)(void *)dst;
    for (int64_t p = 0; p < n; p += w, d32 += panel) {
        const int m = n - p < w ? (int)(n - p) : w;
        for (int64_t q = 0; q < rows; q++)
            for (int i = 0; i < w; i++) {
                uint32_t pair = 0;
                for (int h = 0; h < 2; h++) {
                    const int64_t k = 2 * q + h;
                    if (i >= m || k >= kc) continue;
                    const int64_t at = k_contiguous ? (p + i) * ld + k : k * ld + p + i;
                    pair |= (uint32_t)elem_bits(src, src_bf16, at) << (16 * h);
                }
                d32[q * w + i] = pair;
            }
    }
}

void gemm_pack_bf16_generic(gemm_format format, const void *src, bool src_bf16, int64_t ld,
                            bool k_contiguous, int64_t kc, int64_t n, int w, float *dst) {
    if (format == GEMM_BF16_PAIRS) pack_pairs(src, src_bf16, ld, k_contiguous, kc, n, w, dst);
    else pack_fma(src, src_bf16, ld, k_contiguous, kc, n, w, dst);
}

#if defined(TFM_HAVE_X86_KERNELS)
/* gemm_pack_bf16_x86.h, compiled per path */
void gemm_pack_bf16_fma_avx512(const void *src, bool src_bf16, int64_t ld, bool k_contiguous,
                               int64_t kc, int64_t n, int w, float *dst);
void gemm_pack_bf16_fma_avx2(const void *src, bool src_bf16, int64_t ld, bool k_contiguous,
                             int64_t kc, int64_t n, int w, float *dst);
#endif

void gemm_pack_bf16(gemm_format format, const void *src, bool src_bf16, int64_t ld,
                    bool k_contiguous, int64_t kc, int64_t n, int w, float *dst) {
#if defined(TFM_HAVE_X86_KERNELS)
    if (format == GEMM_BF16_FMA && cpu_active() == CPU_AVX512) {
        gemm_pack_bf16_fma_avx512(src, src_bf16, ld, k_contiguous, kc, n, w, dst);
        return;
    }
    if (format == GEMM_BF16_FMA && cpu_active() == CPU_AVX2) {
        gemm_pack_bf16_fma_avx2(src, src_bf16, ld, k_contiguous, kc, n, w, dst);
        return;
    }
#endif
    gemm_pack_bf16_generic(format, src, src_bf16, ld, k_contiguous, kc, n, w, dst);
}
