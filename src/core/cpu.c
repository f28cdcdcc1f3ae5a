/* cpu.c — choosing the SIMD path: the best the CPU supports, unless TFM_CPU or
 * tfm_set_cpu_path says otherwise. The choice is made once, on first use. */
#include "core/cpu.h"

#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "tfm.h"

static const char *const path_names[CPU_PATHS] = {"generic", "avx2", "avx512", "avx512_bf16"};

/* -1 until first use; then a cpu_path. Written before any kernel runs (first use is
 * from the calling thread, before OpenMP regions), read-only afterwards. */
static int active = -1;
static int env_rejected = 0; /* TFM_CPU named a path we cannot take */

bool cpu_supported(cpu_path p) {
    switch (p) {
    case CPU_GENERIC: return true;
#if defined(__x86_64__) && defined(__GNUC__) && defined(TFM_HAVE_X86_KERNELS)
    case CPU_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case CPU_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case CPU_AVX512_BF16:
        return cpu_supported(CPU_AVX512) && __builtin_cpu_supports("avx512bf16") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
#endif
    default: return false;
    }
}

const char *cpu_path_name(cpu_path p) {
    return p >= 0 && p < CPU_PATHS ? path_names[p] : "?";
}

static int path_from_name(const char *name) {
    for (int p = 0; p < CPU_PATHS; p++)
        if (strcmp(name, path_names[p]) == 0) return p;
    return -1;
}

/* Whether VDPBF16PS is worth taking over FP32 FMAs. Measured (bench/peak_fma): on the
 * Intel Xeons of these machines (Sapphire/Emerald Rapids) one VDPBF16PS zmm issues
 * every 2 cycles, 64 flops against two 32-flop FMAs a cycle: half the FP32 rate, so
 * bf16 products run faster as FMAs on bf16 values. On AMD Zen 4 it issues once a
 * cycle beside one zmm FMA a cycle: twice the FP32 rate. */
static bool dpbf16_fast(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    return !__builtin_cpu_is("intel");
#else
    return false;
#endif
}

static cpu_path best_path(void) {
    for (int p = CPU_PATHS - 1; p > 0; p--) {
        if (p == CPU_AVX512_BF16 && !dpbf16_fast()) continue;
        if (cpu_supported((cpu_path)p)) return (cpu_path)p;
    }
    return CPU_GENERIC;
}

cpu_path cpu_active(void) {
    const cpu_path p = cpu_selected();
    return p == CPU_AVX512_BF16 ? CPU_AVX512 : p;
}

cpu_bf16 cpu_bf16_kind(void) {
    switch (cpu_selected()) {
    case CPU_AVX512_BF16: return BF16_DPBF16;
    case CPU_AVX512:
    case CPU_AVX2: return BF16_FMA;
    default: return BF16_REFERENCE;
    }
}

cpu_path cpu_selected(void) {
    if (active < 0) {
        const char *env = getenv("TFM_CPU");
        int p = env && *env ? path_from_name(env) : -1;
        if (env && *env && (p < 0 || !cpu_supported((cpu_path)p))) {
            env_rejected = 1;
            p = -1;
        }
        active = p >= 0 ? p : (int)best_path();
    }
    return (cpu_path)active;
}

const char *tfm_cpu_path(void) {
    return cpu_path_name(cpu_selected());
}

const char *tfm_bf16_path(void) {
    static const char *const names[] = {"reference", "fma", "avx512_bf16"};
    return names[cpu_bf16_kind()];
}

tfm_status tfm_set_cpu_path(const char *name) {
    if (!name || !*name) {
        active = (int)best_path();
        return TFM_OK;
    }
    int p = path_from_name(name);
    if (p < 0)
        return tfm_error(TFM_ERR_INVALID_ARG,
                         "unknown CPU path '%s' (expected avx512_bf16, avx512, avx2 or generic)",
                         name);
    if (!cpu_supported((cpu_path)p))
        return tfm_error(TFM_ERR_UNSUPPORTED,
                         "CPU path '%s' is not supported by this CPU (or this build)", name);
    active = p;
    return TFM_OK;
}

tfm_status tfm_check_cpu_env(void) {
    (void)cpu_selected();
    if (!env_rejected) return TFM_OK;
    const char *env = getenv("TFM_CPU");
    return tfm_set_cpu_path(env ? env : "");
}
