/* gemm_avx512.c — the AVX-512 kernel of the packed SGEMM (gemm_packed.c), from the
 * template gemm_x86.h.
 *
 * Legend: MR × NR micro-tile of C (8 × 32: two zmm per row), KC the K block.
 * Per k: two loads of packed B, eight broadcasts of packed A, sixteen FMAs into sixteen
 * zmm accumulators. On Zen 4 (512-bit FMAs double-pumped: one a cycle, 4 cycles latency)
 * any tile of 6 × 32 up to 14 × 32 runs at the FMA peak in cache (measured ~116 GFLOP/s
 * a core); in the whole product 8 × 32 measured best by a few percent: M = 1024 splits
 * into whole tiles over two threads, and the packed A panel (8 KiB at KC = 256) sits in
 * L1 beside the streamed B panel. gemm_kernel_for_product (gemm_packed.c) takes it on AMD
 * and elsewhere, and on Intel for dW = dyᵀ·x (x·Wᵀ and dy·W there take the same tile with
 * KC = 512, gemm_intel_avx512.c).
 */
#include "kernels/gemm_packed.h"

#if defined(TFM_HAVE_X86_KERNELS)
#define GM_BITS 512
#define GM_MR 8
#define GM_NV 2 /* zmm per row of the tile */
#define GM_KERNEL gemm_kernel_avx512
#define GM_NAME "avx512"
#include "kernels/gemm_x86.h"
#endif
