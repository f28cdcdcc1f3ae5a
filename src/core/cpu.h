/* cpu.h — which instruction-set path the SIMD kernels take, chosen once at start-up
 * from the CPU's features, or forced (TFM_CPU=avx512|avx2|generic, tfm_set_cpu_path). */
#ifndef TFM_CORE_CPU_H
#define TFM_CORE_CPU_H

#include <stdbool.h>

typedef enum cpu_path {
    CPU_GENERIC = 0,
    CPU_AVX2 = 1,
    CPU_AVX512 = 2,
    CPU_AVX512_BF16 = 3, /* AVX-512 with VDPBF16PS for the bf16 products */
    CPU_PATHS = 4
} cpu_path;

/* The instruction set of the FP32 kernels now: generic, avx2 or avx512 (avx512 also
 * when the selected path is avx512_bf16, whose FP32 kernels are avx512's). */
cpu_path cpu_active(void);

/* The path selected (any of the four). */
cpu_path cpu_selected(void);

/* How the bf16 products run (kernels/gemm_bf16.h):
 *   BF16_REFERENCE  plain C (the generic path)
 *   BF16_FMA        FP32 FMAs on bf16 values, in VDPBF16PS's order (avx2, avx512)
 *   BF16_DPBF16     VDPBF16PS (avx512_bf16)
 * All three give the same numbers. */
typedef enum cpu_bf16 { BF16_REFERENCE = 0, BF16_FMA = 1, BF16_DPBF16 = 2 } cpu_bf16;
cpu_bf16 cpu_bf16_kind(void);

/* Whether this build has kernels for `p` and this CPU can run them. */
bool cpu_supported(cpu_path p);

/* "avx512_bf16", "avx512", "avx2" or "generic". */
const char *cpu_path_name(cpu_path p);

#endif
