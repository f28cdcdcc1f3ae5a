/* adam_avx2.c — the Adam element loop compiled for AVX2 + FMA; body in adam_impl.h. */
#if defined(TFM_HAVE_X86_KERNELS)
#define ADAM_FN(x) x##_avx2
#include "train/adam_impl.h"
#endif
