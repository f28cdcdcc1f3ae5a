/* peak_fma_avx512.c — FMA chains on zmm registers (16 floats), 24 of them (of 32
 * registers). Compiled with -mavx512f -mfma (bench/CMakeLists.txt); peak_fma.c runs it
 * only when the CPU has avx512f. */
#include <immintrin.h>

#include "peak_fma.h"

#define KERNEL peak_fma_avx512
#define VEC __m512
#define LANES 16
#define NACC 24
#define SET1 _mm512_set1_ps
#define FMADD _mm512_fmadd_ps
#define STORE _mm512_storeu_ps
#include "peak_fma_kernel.h"
