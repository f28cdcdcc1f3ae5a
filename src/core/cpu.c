/* cpu.c — choosing the SIMD path: the best the CPU supports, unless TFM_CPU or
 * tfm_set_cpu_path says otherwise. The choice is made once, on first use. */
#include "core/cpu.h"

#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "tfm.h"

static const char *const path_names[CPU_PATHS] = {"generic", "avx2", "avx512"};

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

static cpu_path best_path(void) {
    for (int p = CPU_PATHS - 1; p > 0; p--)
        if (cpu_supported((cpu_path)p)) return (cpu_path)p;
    return CPU_GENERIC;
}

cpu_path cpu_active(void) {
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
    return cpu_path_name(cpu_active());
}

tfm_status tfm_set_cpu_path(const char *name) {
    if (!name || !*name) {
        active = (int)best_path();
        return TFM_OK;
    }
    int p = path_from_name(name);
    if (p < 0)
        return tfm_error(TFM_ERR_INVALID_ARG, "unknown CPU path '%s' (expected avx512, avx2 or generic)",
                         name);
    if (!cpu_supported((cpu_path)p))
        return tfm_error(TFM_ERR_UNSUPPORTED,
                         "CPU path '%s' is not supported by this CPU (or this build)", name);
    active = p;
    return TFM_OK;
}

tfm_status tfm_check_cpu_env(void) {
    (void)cpu_active();
    if (!env_rejected) return TFM_OK;
    const char *env = getenv("TFM_CPU");
    return tfm_set_cpu_path(env ? env : "");
}
