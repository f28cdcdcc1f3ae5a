/* attn_tiled_avx512.c — the tiled attention kernels for AVX-512 (16-float vectors;
 * 6 × 4 register tiles use 29 of the 32 zmm registers). */
#if defined(TFM_HAVE_X86_KERNELS)
#if !defined(__AVX512F__) || !defined(__FMA__)
#error "attn_tiled_avx512.c must be compiled with -mavx512f -mfma (see CMakeLists.txt)"
#endif
#define ATT_VW 16
#define ATT_NV 4
#define ATT_MR 6
#define ATT_FN(x) x##_avx512
#include "kernels/attn_tiled_impl.h"
#endif
