/* attn_tiled_avx2.c — the tiled attention kernels for AVX2 + FMA (8-float vectors;
 * 6 × 2 register tiles: 15 of the 16 ymm registers). */
#if defined(TFM_HAVE_X86_KERNELS)
#if !defined(__AVX2__) || !defined(__FMA__)
#error "attn_tiled_avx2.c must be compiled with -mavx2 -mfma (see CMakeLists.txt)"
#endif
#define ATT_VW 8
#define ATT_NV 2
#define ATT_MR 6
#define ATT_FN(x) x##_avx2
#include "kernels/attn_tiled_impl.h"
#endif
