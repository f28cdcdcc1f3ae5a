/* gemm_x86.h — an x86 SIMD kernel of the packed SGEMM (kernels/gemm_packed.h), written
 * once for both vector widths: gemm_avx512.c and gemm_avx2.c include it after defining
 *   GM_BITS  512 or 256 (zmm or ymm; the file is compiled for that instruction set)
 *   GM_MR    rows of the micro-tile; GM_NV vectors per row (NR = GM_NV · GM_BITS / 32)
 * and get gemm_kernel_avx512 or gemm_kernel_avx2: the micro-kernel below, the packing of
 * gemm_pack_x86.h, and the blocks.
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

/* C (GM_MR, GM_NR) = alpha · a·b + beta · C; a (kc, GM_MR), b (kc, GM_NR) packed. */
static void gemm_micro(int64_t kc, const float *a, const float *b, float *c, int64_t ldc,
                       float alpha, float beta) {
    gm_vec acc[GM_MR][GM_NV];
#pragma GCC unroll 16
    for (int i = 0; i < GM_MR; i++) {
        /* The tile of C is read and written once, after kc k-steps: fetch it meanwhile. */
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + GM_NR - 1), _MM_HINT_T0);
#pragma GCC unroll 4
        for (int v = 0; v < GM_NV; v++) acc[i][v] = gm_zero();
    }
    for (int64_t k = 0; k < kc; k++, a += GM_MR, b += GM_NR) {
        gm_vec bv[GM_NV];
#pragma GCC unroll 4
        for (int v = 0; v < GM_NV; v++) bv[v] = gm_load(b + GM_W * v);
#pragma GCC unroll 16
        for (int i = 0; i < GM_MR; i++) {
            const gm_vec ai = gm_set1(a[i]);
#pragma GCC unroll 4
            for (int v = 0; v < GM_NV; v++) acc[i][v] = gm_fma(ai, bv[v], acc[i][v]);
        }
    }
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

/* The blocks: KC = 256 fixes every element's summation order (384 and 512 measured no
 * faster, 128 and 192 slower); MC and NP cover up to 4096 rows and columns, so at tfm's
 * shapes A and B are packed once per K block with two barriers; NC × KC of packed B
 * (512 KiB) stays in a Zen 4 core's 1 MiB L2. */
#if GM_BITS == 512
const gemm_kernel gemm_kernel_avx512 = {
    .name = "avx512",
#else
const gemm_kernel gemm_kernel_avx2 = {
    .name = "avx2",
#endif
    .mr = GM_MR, .nr = GM_NR, .kc = 256, .mc = GM_MR * (4096 / GM_MR), .np = 4096, .nc = 512,
    .micro = gemm_micro, .pack = gemm_pack_x86,
};

#undef GM_W
#undef gm_zero
#undef gm_load
#undef gm_loadu
#undef gm_storeu
#undef gm_set1
#undef gm_fma
#undef gm_mul
