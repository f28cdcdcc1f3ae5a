/* attention.h — scaled dot-product attention over many heads, with every mask kind,
 * in memory linear in the key length (no (L, S) buffer per head unless the caller
 * asks for the weights).
 *
 * Legend: N batch, H heads, L queries, S keys (including any appended bias_kv /
 * zero_attn columns), D head dim; head h of a row is columns [h·D, (h+1)·D).
 */
#ifndef TFM_KERNELS_ATTENTION_H
#define TFM_KERNELS_ATTENTION_H

#include <stdbool.h>
#include <stdint.h>

#include "core/workspace.h"

/* The additive bias on the scores, in the one internal form every mask becomes.
 * Only the first `masked_cols` key columns are subject to it: columns appended by
 * add_bias_kv / add_zero_attn are never masked (PyTorch pads its masks with zeros). */
typedef struct attn_bias {
    const float *attn;        /* (L, masked_cols), or (N·H, L, masked_cols) when per_head */
    bool attn_per_head;
    const float *key_padding; /* (N, masked_cols): added to every query row of batch n */
    bool causal;              /* key j > query i is masked (top-left aligned, as SDPA) */
    int64_t masked_cols;
} attn_bias;

/* out[n, i, h·D:(h+1)·D] = Σ_j softmax_j(q_i·k_j / √D + bias_ij) · v_j.
 * A query row whose every key is masked (all scores −inf) gets zero output and zero
 * weights — a defined result where PyTorch gives NaN.
 *   out     (N, L, ldo)   written, head-interleaved like q
 *   weights (N, H, L, S)  or NULL: the probabilities, when asked for
 *   q       (N, L, ldq);  k (N, S, ldk);  v (N, S, ldv)
 * Returns TFM_ERR_NOMEM if the per-thread scratch cannot be had. */
tfm_status attention_forward(float *out, int64_t ldo, float *weights, const float *q, int64_t ldq,
                             const float *k, int64_t ldk, const float *v, int64_t ldv, int64_t N,
                             int64_t H, int64_t L, int64_t S, int64_t D, const attn_bias *bias,
                             tfm_ws *ws);

#endif
