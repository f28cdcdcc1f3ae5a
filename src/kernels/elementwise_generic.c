/* elementwise_generic.c — the element-wise pieces for the baseline instruction set
 * (SSE2 on x86-64, whatever the compiler targets elsewhere); bodies in
 * elementwise_impl.h. */
#define EW_FN(x) x##_generic
#define EW_DW 2 /* doubles per vector (GELU) */
#include "kernels/elementwise_impl.h"
