/* gemm_intel_avx512.c — the AVX-512 kernel of the packed SGEMM (gemm_packed.c) for Intel
 * cores, from the template gemm_x86.h: the 8 × 32 micro-kernel of gemm_avx512.c with a K
 * block of 512 instead of 256. gemm_kernel_for_product (gemm_packed.c) takes it on Intel
 * for op(A) not transposed (x·Wᵀ, dy·W); the weight gradient (trans_a) keeps 256.
 *
 * Legend: MR × NR micro-tile of C (8 × 32: two zmm per row), KC the K block, NC the
 * columns of packed B computed at a time (KC × NC = 1 MiB, in a 2 MiB L2).
 *
 * Measured on a 2-core Sapphire/Emerald Rapids VM (family 6 model 207: two 512-bit FMA
 * ports, 48 KiB L1d, 2 MiB L2; FP32 peak 175 GFLOP/s a core at its clock then, from
 * bench/peak_fma), bench_gemm --clock cpu on one thread, medians of 3 interleaved runs on
 * a busy machine (±2%):
 *   - micro-kernels alone (bench_gemm --micro: A panel in L1, packed B from L2): 8 × 32,
 *     12 × 32, 14 × 32 and 6 × 64 all at 98–100% of the peak — the micro-kernel is not
 *     what holds the products back on Intel either;
 *   - whole products at the linear layers' shapes (M 1024 and 4096): 12 × 32 and 14 × 32
 *     2–4% behind 8 × 32 everywhere (KC 256 or 512), 6 × 64 level on x·Wᵀ and dy·W and
 *     5–10% behind on dW; NC 1024 or 2048 no faster than 512; fetching the next row of
 *     tiles' A into L2 from each tile no faster;
 *   - 8 × 32 with KC 512: x·Wᵀ and dy·W 1–3% ahead of KC 256 (e.g. M 1024 N 1536 K 512:
 *     157–160 against 153–156 GFLOP/s; MKL 160, OpenBLAS 0.3.21 Cooperlake 159), since C
 *     is read and written once per 512 of K instead of twice; dW = dyᵀ·x 2–5% behind
 *     (its packed A block, all M rows, is twice as large and leaves L2), so dW keeps 256.
 * The numbers differ from the 256 block's by rounding only.
 */
#include "kernels/gemm_packed.h"

#if defined(TFM_HAVE_X86_KERNELS)
#define GM_BITS 512
#define GM_MR 8
#define GM_NV 2 /* zmm per row of the tile */
#define GM_KC 512
#define GM_KERNEL gemm_kernel_avx512_intel
#define GM_NAME "avx512_intel"
#include "kernels/gemm_x86.h"
#endif
