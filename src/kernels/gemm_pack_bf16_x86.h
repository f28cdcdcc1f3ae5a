/* gemm_pack_bf16_x86.h — the GEMM_BF16_FMA packer (kernels/gemm_packed.h) with AVX2,
 * included by gemm_pack_bf16_avx512.c and gemm_pack_bf16_avx2.c, each compiled for its
 * instruction set; GPB_FN(x) names the exported function. The same values as the plain-C
 * packer (gemm_pack_bf16.c), which test_gemm_bf16 holds it to.
 *
 * Legend: w the panel width, kc the K block, steps = kc rounded up to even (panel row r
 * holds k = r ^ 1: pairs swapped; zero past kc), n the values along the panels.
 */
#include <immintrin.h>
#include <stdbool.h>
#include <stdint.h>

#include "kernels/gemm_pack_x86.h"
#include "kernels/gemm_packed.h"

/* Lanes holding a bf16 with a zero exponent (subnormal) become ±0: VDPBF16PS's inputs. */
static inline __m256 gpb_flush(__m256i r) {
    const __m256i tiny = _mm256_cmpeq_epi32(_mm256_and_si256(r, _mm256_set1_epi32(0x7f800000)),
                                            _mm256_setzero_si256());
    return _mm256_castsi256_ps(
        _mm256_blendv_epi8(r, _mm256_and_si256(r, _mm256_set1_epi32((int)0x80000000u)), tiny));
}

/* Eight floats rounded to bf16 (nearest even; NaN stays a quiet NaN) and flushed: the
 * plain packer's bf16_from_f32 and flush, lane by lane. */
static inline __m256 gpb_round(__m256 x) {
    const __m256i u = _mm256_castps_si256(x);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb);
    const __m256i absu = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
    const __m256i nan = _mm256_cmpgt_epi32(absu, _mm256_set1_epi32(0x7f800000));
    r = _mm256_blendv_epi8(r, _mm256_or_si256(u, _mm256_set1_epi32(0x400000)), nan);
    return gpb_flush(_mm256_and_si256(r, _mm256_set1_epi32((int)0xffff0000u)));
}

/* Eight bf16 at p as floats, flushed. */
static inline __m256 gpb_load_bf16(const uint16_t *p) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
    return gpb_flush(_mm256_slli_epi32(w, 16));
}

/* One value as the plain packer makes it (the tails). */
static inline float gpb_scalar(const void *src, bool src_bf16, int64_t i) {
    const float f = src_bf16 ? _mm_cvtss_f32(_mm_castsi128_ps(_mm_cvtsi32_si128(
                                   (int)((uint32_t)((const uint16_t *)src)[i] << 16))))
                             : ((const float *)src)[i];
    return _mm256_cvtss_f32(gpb_round(_mm256_set1_ps(f)));
}

/* d (w) = the m values of row s (k-major source) as panel row; zero past m. */
static void gpb_row(float *d, const void *src, bool src_bf16, int64_t at, int m, int w) {
    int i = 0;
    for (; i + 8 <= m; i += 8)
        _mm256_storeu_ps(d + i, src_bf16 ? gpb_load_bf16((const uint16_t *)src + at + i)
                                         : gpb_round(_mm256_loadu_ps((const float *)src + at + i)));
    for (; i < m; i++) d[i] = gpb_scalar(src, src_bf16, at + i);
    for (; i < w; i++) d[i] = 0.0f;
}

/* Panel (steps, w) of rows [p, p + m) of a k-contiguous bf16 source: eight rows × eight
 * k at a time, converted, transposed, stored to rows (k + j) ^ 1. */
static void gpb_panel_bf16_t(float *dst, const uint16_t *src, int64_t ld, int64_t kc, int m,
                             int w) {
    for (int h = 0; h < w; h += 8) {
        const int width = w - h < 8 ? w - h : 8, rows = m - h < width ? (m - h > 0 ? m - h : 0) : width;
        int64_t k = 0;
        for (; k + 8 <= kc; k += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; i++)
                r[i] = i < rows ? gpb_load_bf16(src + (h + i) * ld + k) : _mm256_setzero_ps();
            gemm_transpose8(r);
            for (int j = 0; j < 8; j++) gemm_store_first(dst + ((k + j) ^ 1) * w + h, r[j], width);
        }
        for (; k < kc; k++)
            for (int i = 0; i < width; i++)
                dst[(k ^ 1) * w + h + i] = i < rows ? gpb_scalar(src, true, (h + i) * ld + k) : 0.0f;
    }
}

/* In place over a panel (kc rows of w floats from the FP32 packer) into the FMA format:
 * rounded, pairs of rows swapped, a zero row first in the last pair when kc is odd. */
static void gpb_finish_f32(float *d, int64_t kc, int w) {
    for (int64_t k = 0; k + 1 < kc; k += 2) {
        float *a = d + k * w, *b = a + w;
        int i = 0;
        for (; i + 8 <= w; i += 8) {
            const __m256 x = gpb_round(_mm256_loadu_ps(a + i)), y = gpb_round(_mm256_loadu_ps(b + i));
            _mm256_storeu_ps(a + i, y);
            _mm256_storeu_ps(b + i, x);
        }
        for (; i < w; i++) {
            const float x = a[i];
            a[i] = _mm256_cvtss_f32(gpb_round(_mm256_set1_ps(b[i])));
            b[i] = _mm256_cvtss_f32(gpb_round(_mm256_set1_ps(x)));
        }
    }
    if (kc & 1) {
        float *a = d + (kc - 1) * w, *b = a + w;
        for (int i = 0; i < w; i++) {
            b[i] = _mm256_cvtss_f32(gpb_round(_mm256_set1_ps(a[i])));
            a[i] = 0.0f;
        }
    }
}

void GPB_FN(gemm_pack_bf16_fma)(const void *src, bool src_bf16, int64_t ld, bool k_contiguous,
                                int64_t kc, int64_t n, int w, float *dst) {
    const int64_t steps = kc + (kc & 1), panel = (int64_t)w * steps;
    const size_t es = src_bf16 ? 2 : 4;
    for (int64_t p = 0; p < n; p += w, dst += panel) {
        const int m = n - p < w ? (int)(n - p) : w;
        if (k_contiguous) {
            const void *rows = (const char *)src + (size_t)(p * ld) * es;
            if (src_bf16) {
                gpb_panel_bf16_t(dst, rows, ld, kc, m, w);
            } else {
                gemm_pack_x86(rows, ld, true, kc, m, w, dst);
                gpb_finish_f32(dst, kc, w);
            }
            if (kc & 1 && src_bf16) /* the pad: row kc − 1 holds k = kc, past the end */
                for (int i = 0; i < w; i++) dst[(kc - 1) * w + i] = 0.0f;
        } else {
            for (int64_t k = 0; k < kc; k++) gpb_row(dst + (k ^ 1) * w, src, src_bf16, k * ld + p, m, w);
            if (kc & 1)
                for (int i = 0; i < w; i++) dst[(kc - 1) * w + i] = 0.0f;
        }
    }
}
