/* gemm_pack_x86.h — the packing of the packed SGEMM for the x86 SIMD paths (kernels/
 * gemm_packed.h, gemm_pack_fn), included by gemm_avx2.c and gemm_avx512.c: AVX is all it
 * needs, and each file compiles it for its own instruction set.
 *
 * Legend: w the panel width (MR or NR), kc the K block, n the values along the panel's
 * dimension (rows of op(A) or columns of op(B)).
 */
#include <immintrin.h>
#include <stdbool.h>
#include <stdint.h>

#include "kernels/gemm_packed.h"

/* r[0..7] (8 rows of 8) becomes its transpose: r[j] = column j. Rows interleaved in pairs
 * (ps), then pairs of pairs: each 128-bit lane of x[g + c] holds rows g..g+3 of column c
 * (low lane) and c + 4 (high lane); lane swaps finish. */
static inline void gemm_transpose8(__m256 r[8]) {
    __m256 t[8], x[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int g = 0; g < 8; g += 4) {
        x[g] = _mm256_shuffle_ps(t[g], t[g + 2], 0x44);
        x[g + 1] = _mm256_shuffle_ps(t[g], t[g + 2], 0xee);
        x[g + 2] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0x44);
        x[g + 3] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0xee);
    }
    for (int c = 0; c < 4; c++) {
        r[c] = _mm256_permute2f128_ps(x[c], x[4 + c], 0x20);
        r[4 + c] = _mm256_permute2f128_ps(x[c], x[4 + c], 0x31);
    }
}

/* d[0 : width] = the first width (1..8) floats of v. */
static inline void gemm_store_first(float *d, __m256 v, int width) {
    if (width == 8) {
        _mm256_storeu_ps(d, v);
        return;
    }
    __m128 part = _mm256_castps256_ps128(v);
    if (width >= 4) {
        _mm_storeu_ps(d, part);
        part = _mm256_extractf128_ps(v, 1);
        d += 4, width -= 4;
    }
    if (width >= 2) {
        _mm_storel_pi((__m64 *)d, part);
        part = _mm_movehl_ps(part, part);
        d += 2, width -= 2;
    }
    if (width == 1) _mm_store_ss(d, part);
}

/* dst[k · ld + i] = src[i · lds + k] for i < rows, 0 for rows ≤ i < width (≤ 8), k < kc:
 * rows contiguous along k become k-major, 8 × 8 at a time. */
static void gemm_transpose_rows(const float *src, int64_t lds, int rows, int64_t kc, float *dst,
                                int64_t ld, int width) {
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) {
        __m256 r[8];
        for (int i = 0; i < 8; i++) {
            if (i < rows) {
                const float *s = src + i * lds + k;
                _mm_prefetch((const char *)(s + 64), _MM_HINT_T0); /* 4 lines ahead */
                r[i] = _mm256_loadu_ps(s);
            } else {
                r[i] = _mm256_setzero_ps();
            }
        }
        gemm_transpose8(r);
        for (int j = 0; j < 8; j++) gemm_store_first(dst + (k + j) * ld, r[j], width);
    }
    for (; k < kc; k++) /* the last kc % 8 */
        for (int i = 0; i < width; i++) dst[k * ld + i] = i < rows ? src[i * lds + k] : 0.0f;
}

/* The gemm_pack_fn of the x86 paths. */
static void gemm_pack_x86(const float *src, int64_t ld, bool k_contiguous, int64_t kc, int64_t n,
                          int w, float *dst) {
    if (!k_contiguous) { /* plain copies, vectorised by the compiler for this ISA and w */
        switch (w) {
        case 6: gemm_pack_copy(src, ld, kc, n, 6, dst); break;
        case 8: gemm_pack_copy(src, ld, kc, n, 8, dst); break;
        case 16: gemm_pack_copy(src, ld, kc, n, 16, dst); break;
        case 32: gemm_pack_copy(src, ld, kc, n, 32, dst); break;
        default: gemm_pack_copy(src, ld, kc, n, w, dst);
        }
        return;
    }
    const int64_t panel = (int64_t)w * kc;
    for (int64_t p = 0; p < n; p += w, dst += panel) /* w rows along k, 8 at a time */
        for (int h = 0; h < w; h += 8) {
            const int width = w - h < 8 ? w - h : 8;
            const int64_t m = n - p - h < width ? n - p - h : width;
            gemm_transpose_rows(m > 0 ? src + (p + h) * ld : src, ld, m > 0 ? (int)m : 0, kc,
                                dst + h, w, width);
        }
}
