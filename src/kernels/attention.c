/* attention.c — attention_forward / attention_backward: hand the work to the tiled
 * kernels of the instruction set chosen at start-up (src/core/cpu.c). */
#include "kernels/attention.h"

#include "core/cpu.h"
#include "kernels/compute.h"
#include "kernels/attn_tiled.h"

tfm_status attention_forward(const attn_args *args, float *out, int64_t ldo, float *weights,
                             float *lse, tfm_ws *ws) {
    if (args->N == 0 || args->L == 0 || args->H == 0) return TFM_OK;
    attn_args scoped = *args;
    scoped.bf16 = (args->bf16 || compute_bf16());
    const attn_args *a = &scoped;
    switch (cpu_active()) {
#if defined(TFM_HAVE_X86_KERNELS)
    case CPU_AVX512: return attn_tiled_forward_avx512(a, out, ldo, weights, lse, ws);
    case CPU_AVX2: return attn_tiled_forward_avx2(a, out, ldo, weights, lse, ws);
#endif
    default: return attn_tiled_forward_generic(a, out, ldo, weights, lse, ws);
    }
}

tfm_status attention_backward(const attn_args *args, const float *lse, const float *out,
                              int64_t ldo, const float *dout, int64_t lddo, float *dq,
                              int64_t lddq, float *dk, int64_t lddk, float *dv, int64_t lddv,
                              tfm_ws *ws) {
    if (args->N == 0 || args->L == 0 || args->H == 0 || args->S == 0) return TFM_OK;
    attn_args scoped = *args;
    scoped.bf16 = (args->bf16 || compute_bf16());
    const attn_args *a = &scoped;
    switch (cpu_active()) {
#if defined(TFM_HAVE_X86_KERNELS)
    case CPU_AVX512:
        return attn_tiled_backward_avx512(a, lse, out, ldo, dout, lddo, dq, lddq, dk, lddk, dv,
                                          lddv, ws);
    case CPU_AVX2:
        return attn_tiled_backward_avx2(a, lse, out, ldo, dout, lddo, dq, lddq, dk, lddk, dv,
                                        lddv, ws);
#endif
    default:
        return attn_tiled_backward_generic(a, lse, out, ldo, dout, lddo, dq, lddq, dk, lddk, dv,
                                           lddv, ws);
    }
}
