/* cpu.h — which instruction-set path the SIMD kernels take, chosen once at start-up
 * from the CPU's features, or forced (TFM_CPU=avx512|avx2|generic, tfm_set_cpu_path). */
#ifndef TFM_CORE_CPU_H
#define TFM_CORE_CPU_H

#include <stdbool.h>

typedef enum cpu_path { CPU_GENERIC = 0, CPU_AVX2 = 1, CPU_AVX512 = 2, CPU_PATHS = 3 } cpu_path;

/* The path the kernels use now. */
cpu_path cpu_active(void);

/* Whether this build has kernels for `p` and this CPU can run them. */
bool cpu_supported(cpu_path p);

/* "avx512", "avx2" or "generic". */
const char *cpu_path_name(cpu_path p);

#endif
