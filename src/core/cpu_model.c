/* cpu_model.c — the microarchitecture from CPUID: vendor string (leaf 0), family and
 * model (leaf 1: base family, plus the extended family when it is 0xF; base model plus
 * the extended model for families 6 and ≥ 0xF), classified as cpu_model.h says. */
#include "core/cpu_model.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <cpuid.h>
#define TFM_CPUID 1
#endif

static const char *const uarch_names[CPU_UARCHES] = {"other", "intel", "zen4", "zen5"};

const char *cpu_uarch_name(cpu_uarch u) {
    return u >= 0 && u < CPU_UARCHES ? uarch_names[u] : "?";
}

/* Written once by the first caller (claim), published by ready; later callers only read. */
static cpu_model detected;
static atomic_int claim, ready;

static void detect(void) {
    cpu_model m = {CPU_UARCH_OTHER, 0, 0, ""};
#ifdef TFM_CPUID
    unsigned eax, ebx, ecx, edx;
    if (__get_cpuid(0, &eax, &ebx, &ecx, &edx)) {
        memcpy(m.vendor, &ebx, 4), memcpy(m.vendor + 4, &edx, 4), memcpy(m.vendor + 8, &ecx, 4);
        m.vendor[12] = '\0';
    }
    if (__get_cpuid(1, &eax, &ebx, &ecx, &edx)) {
        const unsigned base = (eax >> 8) & 0xf;
        m.family = base == 0xf ? base + ((eax >> 20) & 0xff) : base;
        m.model = (eax >> 4) & 0xf;
        if (base == 6 || base == 0xf) m.model |= ((eax >> 16) & 0xf) << 4;
    }
    if (!strcmp(m.vendor, "GenuineIntel"))
        m.uarch = CPU_UARCH_INTEL;
    else if (!strcmp(m.vendor, "AuthenticAMD") && m.family == 0x19)
        m.uarch = CPU_UARCH_ZEN4;
    else if (!strcmp(m.vendor, "AuthenticAMD") && m.family == 0x1a)
        m.uarch = CPU_UARCH_ZEN5;
#endif
    const char *env = getenv("TFM_CPU_MODEL");
    for (int u = 0; env && u < CPU_UARCHES; u++)
        if (!strcmp(env, uarch_names[u])) m.uarch = (cpu_uarch)u;
    detected = m;
}

const cpu_model *cpu_model_get(void) {
    if (!atomic_load_explicit(&ready, memory_order_acquire)) {
        if (atomic_exchange(&claim, 1) == 0) {
            detect();
            atomic_store_explicit(&ready, 1, memory_order_release);
        }
        while (!atomic_load_explicit(&ready, memory_order_acquire)) {
        }
    }
    return &detected;
}

cpu_uarch cpu_uarch_active(void) { return cpu_model_get()->uarch; }
