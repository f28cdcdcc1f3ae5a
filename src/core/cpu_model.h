/* cpu_model.h — which microarchitecture this is (vendor, family, model), for the choices
 * that depend on more than the instruction set: the packed SGEMM's micro-kernel and
 * blocks (kernels/gemm_packed.c, gemm_kernel_for). The instruction-set path itself is
 * core/cpu.h's.
 *
 * Detected once from CPUID, or named by TFM_CPU_MODEL=intel|zen4|zen5|other (to measure
 * or test one microarchitecture's choices on another's hardware; the instructions must
 * still exist: cpu.h decides that).
 */
#ifndef TFM_CORE_CPU_MODEL_H
#define TFM_CORE_CPU_MODEL_H

typedef enum cpu_uarch {
    CPU_UARCH_OTHER = 0, /* not x86, or a vendor/family nothing is tuned for */
    CPU_UARCH_INTEL = 1, /* any Intel core: tuned on Sapphire/Emerald Rapids (two 512-bit
                          * FMA ports, 48 KiB L1d, 2 MiB L2) */
    CPU_UARCH_ZEN4 = 2,  /* AMD family 19h (Zen 3/4; only Zen 4 has AVX-512): 512-bit FMAs
                          * double-pumped, one a cycle; 32 KiB L1d, 1 MiB L2 */
    CPU_UARCH_ZEN5 = 3,  /* AMD family 1Ah: nothing tuned for it yet (Zen 4's choices) */
    CPU_UARCHES = 4
} cpu_uarch;

typedef struct cpu_model {
    cpu_uarch uarch;
    unsigned family, model; /* CPUID leaf 1 with the extended fields added; 0 if unknown */
    char vendor[13];        /* "GenuineIntel", "AuthenticAMD", or "" */
} cpu_model;

/* The model of this CPU (uarch possibly overridden by TFM_CPU_MODEL). Thread-safe. */
const cpu_model *cpu_model_get(void);

/* Shorthand for cpu_model_get()->uarch. */
cpu_uarch cpu_uarch_active(void);

/* "intel", "zen4", "zen5" or "other". */
const char *cpu_uarch_name(cpu_uarch u);

#endif
