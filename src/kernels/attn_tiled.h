/* attn_tiled.h — the tiled attention kernels, one set per instruction set (the bodies:
 * attn_tiled_impl.h). Same contracts as attention_forward / attention_backward. */
#ifndef TFM_KERNELS_ATTN_TILED_H
#define TFM_KERNELS_ATTN_TILED_H

#include "kernels/attention.h"

#define ATT_DECLARE(isa)                                                                      \
    tfm_status attn_tiled_forward_##isa(const attn_args *a, float *out, int64_t ldo,          \
                                        float *weights, float *lse, tfm_ws *ws);              \
    tfm_status attn_tiled_backward_##isa(const attn_args *a, const float *lse,                \
                                         const float *out, int64_t ldo, const float *dout,    \
                                         int64_t lddo, float *dq, int64_t lddq, float *dk,    \
                                         int64_t lddk, float *dv, int64_t lddv, tfm_ws *ws);

ATT_DECLARE(generic)
ATT_DECLARE(avx2)
ATT_DECLARE(avx512)

#endif
