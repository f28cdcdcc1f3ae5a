/* gemm_avx2.c — the AVX2 + FMA kernel of the packed SGEMM (gemm_packed.c), from the
 * template gemm_x86.h.
 *
 * Legend: MR × NR micro-tile of C (6 × 16: two ymm per row), KC the K block.
 * Per k: two loads of packed B, six broadcasts of packed A, twelve FMAs into twelve ymm
 * accumulators; with the two B vectors and one broadcast, 15 of the 16 ymm registers.
 */
#include "kernels/gemm_packed.h"

#if defined(TFM_HAVE_X86_KERNELS)
#define GM_BITS 256
#define GM_MR 6
#define GM_NV 2 /* ymm per row of the tile */
#define GM_KERNEL gemm_kernel_avx2
#define GM_NAME "avx2"
#include "kernels/gemm_x86.h"
#endif
