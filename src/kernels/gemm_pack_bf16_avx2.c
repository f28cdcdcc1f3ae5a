/* gemm_pack_bf16_avx2.c — the GEMM_BF16_FMA packer for the AVX2 path. */
#include "kernels/gemm_packed.h"

#if defined(TFM_HAVE_X86_KERNELS)
#define GPB_FN(x) x##_avx2
#include "kernels/gemm_pack_bf16_x86.h"
#endif
