/* gemm_x86.h — an x86 SIMD kernel of the packed SGEMM (kernels/gemm_packed.h), written
 * once for both vector widths: gemm_avx512.c, gemm_intel_avx512.c and gemm_avx2.c include
 * it (once each) after defining
 *   GM_BITS   512 or 256 (zmm or ymm; the file is compiled for that instruction set)
 *   GM_MR     rows of the micro-tile; GM_NV vectors per row (NR = GM_NV · GM_BITS / 32)
 *   GM_KERNEL the gemm_kernel to define, GM_NAME its name
 *   GM_KC     optionally, the K block (default 256)
 * and get that kernel: the micro-kernel below, the packing of gemm_pack_x86.h, and the
 * blocks.
 *
 * Micro-kernel, per k: GM_NV loads of packed B, GM_MR broadcasts of packed A, and
 * GM_MR · GM_NV FMAs into as many accumulators, which stay in registers for all of kc.
 */
#include <immintrin.h>
#include <stdint.h>

#include "kernels/gemm_pack_x86.h"
#include "kernels/gemm_packed.h"

#if GM_BITS == 512
#define GM_W 16
typedef __m512 gm_vec;
#define gm_zero _mm512_setzero_ps
#define gm_load _mm512_load_ps
#define gm_loadu _mm512_loadu_ps
#define gm_storeu _mm512_storeu_ps
#define gm_set1 _mm512_set1_ps
#define gm_fma _mm512_fmadd_ps
#define gm_mul _mm512_mul_ps
#elif GM_BITS == 256
#define GM_W 8
typedef __m256 gm_vec;
#define gm_zero _mm256_setzero_ps
#define gm_load _mm256_load_ps
#define gm_loadu _mm256_loadu_ps
#define gm_storeu _mm256_storeu_ps
#define gm_set1 _mm256_set1_ps
#define gm_fma _mm256_fmadd_ps
#define gm_mul _mm256_mul_ps
#else
#error "gemm_x86.h: GM_BITS must be 512 or 256"
#endif

#define GM_NR (GM_NV * GM_BITS / 32)
#ifndef GM_KC
#define GM_KC 256
#endif

/* One k step: acc += a's column k (GM_MR broadcasts) × b's row (GM_NV vectors). */
static inline __attribute__((always_inline)) void
gemm_micro_step(gm_vec acc[GM_MR][GM_NV], const float *const ar[GM_MR], int64_t k, int64_t ks,
                const float *b) {
    gm_vec bv[GM_NV];
#pragma GCC unroll 4
    for (int v = 0; v < GM_NV; v++) bv[v] = gm_load(b + GM_W * v);
#pragma GCC unroll 16
    for (int i = 0; i < GM_MR; i++) {
        const gm_vec ai = gm_set1(ar[i][k * ks]);
#pragma GCC unroll 4
        for (int v = 0; v < GM_NV; v++) acc[i][v] = gm_fma(ai, bv[v], acc[i][v]);
    }
}

/* How far ahead (floats) the in-place rows of A are fetched: a few hundred cycles. */
#define GM_PF 64

/* C (GM_MR, GM_NR) = alpha · a·b + beta · C; b (kc, GM_NR) packed, a's element (k, i) at
 * a[i · rs + k · ks]: the packed panel (rs 1, ks GM_MR) or rows of A in place (rs lda,
 * ks 1). Inlined with constant strides into each micro-kernel below; the arithmetic is
 * the same either way, only where A's values come from differs. */
static inline __attribute__((always_inline)) void
gemm_micro_body(int64_t kc, const float *a, int64_t rs, int64_t ks, const float *b, float *c,
                int64_t ldc, float alpha, float beta) {
    gm_vec acc[GM_MR][GM_NV];
    const float *ar[GM_MR];
#pragma GCC unroll 16
    for (int i = 0; i < GM_MR; i++) {
        ar[i] = a + i * rs;
        /* The tile of C is read and written once, after kc k-steps: fetch it meanwhile. */
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + GM_NR - 1), _MM_HINT_T0);
#pragma GCC unroll 4
        for (int v = 0; v < GM_NV; v++) acc[i][v] = gm_zero();
    }
    int64_t k = 0;
    if (ks == 1) /* rows in place: row j's line GM_PF floats ahead fetched at step j of 8 */
        for (; k + 8 <= kc; k += 8)
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++) {
                if (j < GM_MR) _mm_prefetch((const char *)(ar[j] + k + GM_PF), _MM_HINT_T0);
                gemm_micro_step(acc, ar, k + j, 1, b);
                b += GM_NR;
            }
    for (; k < kc; k++, b += GM_NR) gemm_micro_step(acc, ar, k, ks, b);
    /* beta = 0: C is not read. The same expression for every element of every tile. */
    const gm_vec va = gm_set1(alpha), vb = gm_set1(beta);
#pragma GCC unroll 16
    for (int i = 0; i < GM_MR; i++) {
        float *ci = c + i * ldc;
#pragma GCC unroll 4
        for (int v = 0; v < GM_NV; v++) {
            gm_vec r;
            if (beta == 0.0f)
                r = gm_mul(va, acc[i][v]);
            else if (beta == 1.0f)
                r = gm_fma(va, acc[i][v], gm_loadu(ci + GM_W * v));
            else
                r = gm_fma(va, acc[i][v], gm_mul(vb, gm_loadu(ci + GM_W * v)));
            gm_storeu(ci + GM_W * v, r);
        }
    }
}

/* a (kc, GM_MR) packed. */
static void gemm_micro(int64_t kc, const float *a, const float *b, float *c, int64_t ldc,
                       float alpha, float beta) {
    gemm_micro_body(kc, a, 1, GM_MR, b, c, ldc, alpha, beta);
}

/* a: GM_MR rows of A in place, lda apart, k contiguous. */
static void gemm_micro_rows(int64_t kc, const float *a, int64_t lda, const float *b, float *c,
                            int64_t ldc, float alpha, float beta) {
    gemm_micro_body(kc, a, lda, 1, b, c, ldc, alpha, beta);
}

/* The blocks: KC (GM_KC) fixes every element's summation order — on Zen 4 256 (384 and
 * 512 measured no faster, 128 and 192 slower; gemm_intel_avx512.c has Intel's); MC and NP
 * cover up to 4096 rows and columns, so at tfm's shapes A and B are packed once per K
 * block; NC × KC of packed B (512 KiB at KC 256) stays in a Zen 4 core's 1 MiB L2. */
const gemm_kernel GM_KERNEL = {
    .name = GM_NAME, .mr = GM_MR, .nr = GM_NR, .kc = GM_KC, .mc = GM_MR * (4096 / GM_MR),
    .np = 4096, .nc = 512, .micro = gemm_micro, .micro_rows = gemm_micro_rows,
    .pack = gemm_pack_x86,
};

#undef GM_W
#undef gm_zero
#undef gm_load
#undef gm_loadu
#undef gm_storeu
#undef gm_set1
#undef gm_fma
#undef gm_mul
