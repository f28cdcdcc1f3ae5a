/* peak_fma_avx2.c — FMA chains on ymm registers (8 floats), 12 of them (+ 2 constants
 * in the 16 registers). Compiled with -mavx2 -mfma (bench/CMakeLists.txt); peak_fma.c
 * runs it when the CPU has avx2 and fma but not avx512f. */
#include <immintrin.h>

#include "peak_fma.h"

#define KERNEL peak_fma_avx2
#define VEC __m256
#define LANES 8
#define NACC 12
#define SET1 _mm256_set1_ps
#define FMADD _mm256_fmadd_ps
#define STORE _mm256_storeu_ps
#include "peak_fma_kernel.h"
