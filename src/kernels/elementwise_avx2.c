/* elementwise_avx2.c — the element-wise pieces compiled for AVX2 (8-float vectors; the
 * dropout hash's 64-bit multiplies as 32-bit partial products); bodies in
 * elementwise_impl.h. */
#if defined(TFM_HAVE_X86_KERNELS)
#if !defined(__AVX2__)
#error "elementwise_avx2.c must be compiled with -mavx2 (see CMakeLists.txt)"
#endif
#define EW_FN(x) x##_avx2
#define EW_DW 4 /* doubles per vector (GELU) */
#include "kernels/elementwise_impl.h"
#endif
