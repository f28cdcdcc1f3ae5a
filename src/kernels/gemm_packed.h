/* gemm_packed.h — tfm's own SGEMM: BLIS-style packing around a register-blocked
 * micro-kernel, one per CPU path (generic C, AVX2+FMA, AVX-512).
 *
 * Same contract as tfm_gemm (kernels/gemm.h). Legend: M rows of C, N columns of C, K the
 * contracted dimension; MR × NR the micro-tile, KC the K block; the driver, its loops and
 * its other blocks are in gemm_packed.c.
 *
 * Determinism: every element of C is summed by one thread, K in blocks of KC in order,
 * each block from zero in the micro-kernel's fixed order, then C = alpha·block + beta·C
 * (beta = 1 after the first block). KC depends only on the path, never on the thread
 * count or the shape, so results are bit-identical for any number of threads.
 */
#ifndef TFM_KERNELS_GEMM_PACKED_H
#define TFM_KERNELS_GEMM_PACKED_H

#include <stdbool.h>
#include <stdint.h>

#include "core/cpu.h"

/* One full MR × NR tile: C[i, j] = alpha · Σ_k a[k·MR + i] · b[k·NR + j] + beta · C[i, j].
 * a (kc, MR) and b (kc, NR) packed; c (MR, NR) with row stride ldc. beta == 0 writes C
 * without reading it (NaN there is dropped). Partial tiles at the edges of C go through a
 * full tile in the driver, so every element sees the same arithmetic wherever it lies. */
typedef void (*gemm_micro_fn)(int64_t kc, const float *a, const float *b, float *c,
                              int64_t ldc, float alpha, float beta);

/* The same tile with A's rows read in place: a at op(A)[row 0, k 0], k contiguous, rows
 * lda apart (op(A) not transposed). Same arithmetic as gemm_micro_fn. */
typedef void (*gemm_micro_rows_fn)(int64_t kc, const float *a, int64_t lda, const float *b,
                                   float *c, int64_t ldc, float alpha, float beta);

/* Packing: panels of width w (MR for op(A), NR for op(B)), each (kc, w) k-major, from an
 * (kc, n) slice of an operand: element (k, x) is src[x · ld + k] when k_contiguous, else
 * src[k · ld + x]. ceil(n / w) panels, w · kc floats apart, zero past n. dst 64-byte
 * aligned. op(A) is k-contiguous unless trans_a; op(B) is k-contiguous when trans_b. */
typedef void (*gemm_pack_fn)(const float *src, int64_t ld, bool k_contiguous, int64_t kc,
                             int64_t n, int w, float *dst);

/* What packed panels hold, and so what a micro-kernel's k step reads:
 *   GEMM_F32         floats (kc rows)
 *   GEMM_BF16_FMA    floats holding bf16 values, k rows swapped in pairs (2q+1 before 2q)
 *                    and kc rounded up to even with a zero row: an FP32 micro-kernel then
 *                    sums in VDPBF16PS's order (per pair: odd product, then even, each
 *                    rounded), so it gives VDPBF16PS's numbers
 *   GEMM_BF16_PAIRS  32-bit pairs of bf16 (k = 2q low half, 2q+1 high), kc/2 rows, for
 *                    a VDPBF16PS micro-kernel (its kc argument counts k, even)
 * bf16 values are rounded to nearest even from FP32, subnormals flushed to zero (as
 * VDPBF16PS treats its inputs). */
typedef enum gemm_format { GEMM_F32 = 0, GEMM_BF16_FMA = 1, GEMM_BF16_PAIRS = 2 } gemm_format;

typedef struct gemm_kernel {
    const char *name;
    gemm_format format;      /* GEMM_F32 or GEMM_BF16_PAIRS: the panels its micro reads */
    int mr, nr;              /* micro-tile */
    int64_t kc;              /* the K block: fixes every element's summation order */
    int64_t mc;              /* rows of op(A) packed at a time (a multiple of mr) */
    int64_t np;              /* columns of op(B) packed at a time (a multiple of nc) */
    int64_t nc;              /* columns of op(B) computed at a time, from L2 (of nr) */
    gemm_micro_fn micro;
    gemm_micro_rows_fn micro_rows; /* or NULL: op(A) is always packed */
    gemm_pack_fn pack;       /* for w = mr and w = nr */
} gemm_kernel;

#if defined(TFM_HAVE_X86_KERNELS)
extern const gemm_kernel gemm_kernel_avx512;       /* gemm_avx512.c: 8 × 32, KC 256 */
extern const gemm_kernel gemm_kernel_avx512_intel; /* gemm_intel_avx512.c: 8 × 32, KC 512 */
extern const gemm_kernel gemm_kernel_avx2;         /* gemm_avx2.c */
#endif

/* The packed kernel of path p for a product with (trans_a) or without a transposed op(A),
 * on this CPU's microarchitecture (core/cpu_model.h): the one place where tile and blocks
 * are chosen. A function of the path, the microarchitecture and trans_a only, so results
 * never depend on the thread count. NULL when this build or CPU has none for the path. */
const gemm_kernel *gemm_kernel_for_product(cpu_path p, bool trans_a);

/* gemm_kernel_for_product(p, false): the path's kernel for x·Wᵀ and dy·W. */
const gemm_kernel *gemm_kernel_for(cpu_path p);

/* Every packed kernel of path p this build has, whichever microarchitecture it was tuned
 * for (all run on any CPU that has the path), for the tests and benchmarks: at most cap
 * into out, gemm_kernel_for(p) first; returns the count (0 when the CPU lacks p). */
int gemm_kernels_of(cpu_path p, const gemm_kernel **out, int cap);

/* C (M, N) = alpha · op(A) · op(B) + beta · C with kernel k, over the OpenMP threads.
 * bias (N) or NULL: each tile's rows of C are set to bias just before the tile's first K
 * block, which beta must then be 1 to add to (tfm_gemm_bias). Returns false, having done
 * nothing, if its packing buffers cannot be allocated (the caller then takes another
 * path). M, N ≥ 1, K ≥ 1 and alpha ≠ 0: the caller handles the trivial cases. Not from
 * inside an OpenMP region. */
bool gemm_packed(const gemm_kernel *k, bool trans_a, bool trans_b, int64_t M, int64_t N,
                 int64_t K, float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                 float beta, const float *bias, float *C, int64_t ldc);

/* C = alpha · op(A) · op(B) + beta · C (+ bias as gemm_packed) with bf16 operands and
 * FP32 accumulation: A's and B's values rounded to bf16 while packed. B is floats, or
 * bf16 when b_bf16 (a weight's twin). With an FP32 kernel k the panels are
 * GEMM_BF16_FMA, with a GEMM_BF16_PAIRS kernel pairs. k->kc must be even. */
bool gemm_packed_bf16(const gemm_kernel *k, bool trans_a, bool trans_b, int64_t M, int64_t N,
                      int64_t K, float alpha, const float *A, int64_t lda, const void *B,
                      bool b_bf16, int64_t ldb, float beta, const float *bias, float *C,
                      int64_t ldc);

/* Packing for the bf16 formats (gemm_pack_bf16.c): as gemm_pack_fn, from floats or
 * (src_bf16) bf16 values, into format's panels: kc rounded up to even steps,
 * w · steps floats (GEMM_BF16_FMA) or w · steps / 2 (GEMM_BF16_PAIRS) apart. */
void gemm_pack_bf16(gemm_format format, const void *src, bool src_bf16, int64_t ld,
                    bool k_contiguous, int64_t kc, int64_t n, int w, float *dst);

/* The plain-C packer of the bf16 formats (the generic path's; also the reference the SIMD
 * packers are tested against). */
void gemm_pack_bf16_generic(gemm_format format, const void *src, bool src_bf16, int64_t ld,
                            bool k_contiguous, int64_t kc, int64_t n, int w, float *dst);

/* The bf16 kernel of VDPBF16PS (gemm_bf16_avx512bf16.c), or NULL in builds without it. */
const gemm_kernel *gemm_kernel_dpbf16(void);

/* The packing where each row k of src holds the w values of every panel (not
 * k_contiguous): plain copies, inline so that each ISA's file compiles it for its own
 * vectors. Eight rows at a time, panel by panel: the eight rows stream through L1 in
 * order and each panel gets whole cache lines. (Row by row, the writes would hop from
 * panel to panel, w·kc·4 bytes apart — a multiple of 4 KiB, all in one L1 set: measured
 * 12% of a dW product.) */
static inline void gemm_pack_copy(const float *src, int64_t ld, int64_t kc, int64_t n, int w,
                                  float *dst) {
    const int64_t panel = (int64_t)w * kc;
    for (int64_t k0 = 0; k0 < kc; k0 += 8) {
        const int64_t k1 = kc - k0 < 8 ? kc : k0 + 8;
        float *d = dst + k0 * w;
        for (int64_t p = 0; p < n; p += w, d += panel) {
            const int m = n - p < w ? (int)(n - p) : w;
            for (int64_t k = k0; k < k1; k++) {
                const float *s = src + k * ld + p;
                float *dk = d + (k - k0) * w;
                for (int i = 0; i < m; i++) dk[i] = s[i];
                for (int i = m; i < w; i++) dk[i] = 0.0f;
            }
        }
    }
}

/* The plain-C packing (the generic path's, and the SIMD paths' fallback). */
void gemm_pack_generic(const float *src, int64_t ld, bool k_contiguous, int64_t kc, int64_t n,
                       int w, float *dst);

#endif
