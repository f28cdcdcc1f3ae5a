/* mha.h — nn.MultiheadAttention, forward and backward, PyTorch's parameters and
 * semantics. Legend: N batch, L query length, S key length, E embed_dim, H num_heads,
 * D = E / H head dim, S' = S + add_bias_kv + add_zero_attn keys actually attended. */
#ifndef TFM_NN_MHA_H
#define TFM_NN_MHA_H

#include <stdbool.h>
#include <stdint.h>

#include "core/workspace.h"
#include "kernels/attention.h"
#include "nn/params.h"
#include "nn/train_ctx.h"

typedef struct mha_config {
    int64_t embed_dim, num_heads;
    int64_t kdim, vdim; /* = embed_dim unless cross-attending to other widths */
    bool bias, add_bias_kv, add_zero_attn;
} mha_config;

/* The parameters — and, with the same layout, their gradients. */
typedef struct mha_params {
    float *in_proj_weight;  /* (3E, E), when kdim = vdim = E ("packed") */
    float *q_proj_weight;   /* (E, E),    otherwise */
    float *k_proj_weight;   /* (E, kdim), otherwise */
    float *v_proj_weight;   /* (E, vdim), otherwise */
    float *in_proj_bias;    /* (3E), when bias (packed in either layout) */
    float *bias_k, *bias_v; /* (1, 1, E), when add_bias_kv */
    float *out_proj_weight; /* (E, E) */
    float *out_proj_bias;   /* (E), when bias */
} mha_params;

/* What a forward pass saves for backward (in the train_ctx's arena). */
typedef struct mha_cache {
    const float *query, *key, *value; /* the inputs, (N, L, E), (N, S, kdim), (N, S, vdim) */
    const float *Q, *K, *V;           /* projections as attended: (N, L, ldq), (N, S', ldk/ldv) */
    int64_t ldq, ldk, ldv;
    float *heads;                     /* (N, L, E): attention output before out_proj */
    float *lse;                       /* (N, H, L) */
    int64_t N, L, S;
    attn_bias bias;                   /* its masks must live until backward */
    float dropout;
    uint64_t dropout_seed;
} mha_cache;

tfm_status mha_check_config(const mha_config *c);
bool mha_packed(const mha_config *c);
/* Keys attended for S input keys: S + add_bias_kv + add_zero_attn. */
int64_t mha_num_keys(const mha_config *c, int64_t S);
void mha_describe(const mha_config *c, mha_params *p, const char *prefix, param_list *l);

/* out (N, L, E); weights NULL, or (N, L, S') when average_weights, else (N, H, L, S').
 * query (N, L, E), key (N, S, kdim), value (N, S, vdim); when query, key and value are
 * the same pointer the three projections run as one GEMM.
 * mask: additive bias over the S input keys (its masked_cols is set here), or NULL.
 * tc, cache: NULL for inference; else the activations go to `cache` and stay in
 * tc->act, and the inputs and masks must stay unchanged until mha_backward. */
tfm_status mha_forward(const mha_config *c, const mha_params *p, tfm_ws *ws, float *out,
                       float *weights, bool average_weights, const float *query,
                       const float *key, const float *value, int64_t N, int64_t L, int64_t S,
                       const attn_bias *mask, train_ctx *tc, mha_cache *cache);

/* Gradients from dout (N, L, E), ACCUMULATED: parameter gradients into g, and
 * dquery (N, L, E), dkey (N, S, kdim), dvalue (N, S, vdim) — each may be NULL (not
 * wanted) and they may alias one another (self-attention: their sum). */
tfm_status mha_backward(const mha_config *c, const mha_params *p, mha_params *g,
                        const mha_cache *cache, tfm_ws *ws, const float *dout, float *dquery,
                        float *dkey, float *dvalue);

/* ---- incremental decoding (packed projections, no bias_kv / zero_attn) ---- */

/* K, V (N, S, E): the key and value projections of memory (N, S, E), computed once
 * for a decoder's cross-attention. */
tfm_status mha_project_kv(const mha_config *c, const mha_params *p, float *K, float *V,
                          const float *memory, int64_t N, int64_t S);
/* Self-attention of one new token per row: x (N, E) is token t of each row; its key and
 * value go to row t of kcache, vcache (N, T, E); it attends to rows 0 … t (causal by
 * construction). out (N, E). */
tfm_status mha_self_step(const mha_config *c, const mha_params *p, tfm_ws *ws, float *out,
                         const float *x, float *kcache, float *vcache, int64_t N, int64_t T,
                         int64_t t);
/* Cross-attention of one query row per batch to K, V (N, S, E) from mha_project_kv.
 * kpm (N, S) additive or NULL; weights (N, S) heads averaged, or NULL. out (N, E). */
tfm_status mha_cross_step(const mha_config *c, const mha_params *p, tfm_ws *ws, float *out,
                          float *weights, const float *x, const float *K, const float *V,
                          int64_t N, int64_t S, const float *kpm);

#endif
