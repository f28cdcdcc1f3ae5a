/* elementwise_avx512.c — the element-wise pieces compiled for AVX-512 (16-float vectors;
 * the dropout hash's 64-bit multiplies are single AVX-512DQ instructions); bodies in
 * elementwise_impl.h. */
#if defined(TFM_HAVE_X86_KERNELS)
#if !defined(__AVX512F__) || !defined(__AVX512DQ__)
#error "elementwise_avx512.c must be compiled with -mavx512f -mavx512dq (see CMakeLists.txt)"
#endif
#define EW_FN(x) x##_avx512
#define EW_DW 8 /* doubles per vector (GELU) */
#include "kernels/elementwise_impl.h"
#endif
