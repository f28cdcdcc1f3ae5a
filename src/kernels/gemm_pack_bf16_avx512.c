/* gemm_pack_bf16_avx512.c — the GEMM_BF16_FMA packer for the AVX-512 path (it needs only
 * AVX2; compiled here so the avx512 path does not depend on the avx2 file). */
#include "kernels/gemm_packed.h"

#if defined(TFM_HAVE_X86_KERNELS)
#define GPB_FN(x) x##_avx512
#include "kernels/gemm_pack_bf16_x86.h"
#endif
