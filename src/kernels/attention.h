/* attention.h — scaled dot-product attention over many heads, forward and backward,
 * with every mask kind and dropout on the weights, in memory linear in the key length
 * (no (L, S) buffer per head unless the caller asks for the weights).
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

/* What forward and backward share: sizes, the strided inputs, masks, dropout. */
typedef struct attn_args {
    int64_t N, H, L, S, D;
    const float *q; int64_t ldq; /* (N, L, ldq) */
    const float *k; int64_t ldk; /* (N, S, ldk), or rows kbs apart per batch */
    const float *v; int64_t ldv; /* (N, S, ldv), or rows vbs apart per batch */
    int64_t kbs, vbs;            /* batch strides in rows of K and V; 0 = S (contiguous) —
                                    a KV cache holds S of its T rows per batch */
    const attn_bias *bias;       /* or NULL */
    float dropout;               /* probability of zeroing a weight; 0 = none */
    bool bf16;                   /* products on bf16 operands (TFM_COMPUTE_BF16): Q, K, V,
                                    P, and in backward dO and dS rounded to bf16 where a
                                    product reads them, FP32 accumulation; the softmax
                                    statistics (max, sum, lse, δ) stay FP32. Set by
                                    attention_forward/backward from the compute scope. */
    uint64_t dropout_seed;       /* element (n, h, i, j) uses index ((n·H + h)·L + i)·S + j */
} attn_args;

/* out[n, i, h·D:(h+1)·D] = Σ_j dropout(softmax_j(q_i·k_j / √D + bias_ij)) · v_j.
 * A query row whose every key is masked (all scores −inf) gets zero output and zero
 * weights — a defined result where PyTorch gives NaN.
 *   out     (N, L, ldo)   written
 *   weights (N, H, L, S)  or NULL: the weights (after dropout, as PyTorch returns them)
 *   lse     (N, H, L)     or NULL: log Σ_j exp(score_ij), saved for backward (−inf for a
 *                         fully masked row) */
tfm_status attention_forward(const attn_args *a, float *out, int64_t ldo, float *weights,
                             float *lse, tfm_ws *ws);

/* Gradients from dout (N, L, lddo), recomputing the weights from lse block by block
 * (dV += Pᵀ·dO; dP = dO·Vᵀ; dS = P∘(dP − δ) with δ_i = dO_i·O_i; dQ = dS·K/√D;
 * dK = dSᵀ·Q/√D). out (N, L, ldo) is the forward's output O.
 * dq (N, L, lddq), dk (N, S, lddk), dv (N, S, lddv) are ACCUMULATED into. */
tfm_status attention_backward(const attn_args *a, const float *lse, const float *out,
                              int64_t ldo, const float *dout, int64_t lddo, float *dq,
                              int64_t lddq, float *dk, int64_t lddk, float *dv, int64_t lddv,
                              tfm_ws *ws);

/* The plain-C references of the two (attention_ref.c): one query row at a time, for the
 * tests. The backward reference takes δ as rowsum(P∘dP), so needs no O. */
tfm_status attention_forward_reference(const attn_args *a, float *out, int64_t ldo,
                                       float *weights, float *lse, tfm_ws *ws);
tfm_status attention_backward_reference(const attn_args *a, const float *lse, const float *dout,
                                        int64_t lddo, float *dq, int64_t lddq, float *dk,
                                        int64_t lddk, float *dv, int64_t lddv, tfm_ws *ws);

#endif
