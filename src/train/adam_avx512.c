/* adam_avx512.c — the Adam element loop compiled for AVX-512; body in adam_impl.h. */
#if defined(TFM_HAVE_X86_KERNELS)
#define ADAM_FN(x) x##_avx512
#include "train/adam_impl.h"
#endif
