/* sublayer.h — one residual block of a Transformer layer, in either norm order:
 *   pre-norm:  h = h + dropout(f(norm(h)))
 *   post-norm: h = norm(h + dropout(f(h)))
 * where f is self-attention, cross-attention to the memory, or the feed-forward block.
 * Encoder and decoder layers are sequences of these.
 * Legend: N batch, L length of the stream, S memory length, E d_model, R = N·L. */
#ifndef TFM_NN_SUBLAYER_H
#define TFM_NN_SUBLAYER_H

#include "nn/layer_config.h"
#include "nn/mha.h"

typedef enum sublayer_kind { SUB_SELF_ATTN, SUB_CROSS_ATTN, SUB_FFN } sublayer_kind;

/* The fixed parts of one block: its function's parameters (and gradients), its norm. */
typedef struct sublayer {
    sublayer_kind kind;
    const layer_config *c;
    const mha_params *attn;   /* SUB_SELF_ATTN, SUB_CROSS_ATTN */
    mha_params *attn_g;
    const ffn_params *ff;     /* SUB_FFN */
    ffn_params *ff_g;
    const norm_params *norm;
    norm_params *norm_g;
    const float *memory;      /* (N, S, E), SUB_CROSS_ATTN */
    int64_t S;
    const attn_bias *mask;    /* attention bias or NULL */
} sublayer;

typedef struct sublayer_cache {
    float *x;           /* (R, E) the block's input h (pre: the norm's input; post: f's) */
    float *n;           /* (R, E) pre: norm(x), f's input; post: x + dropout(f(x)), the norm's */
    float *mean, *rstd; /* (R) */
    float dropout;
    uint64_t seed;      /* residual dropout */
    mha_cache attn;
    ffn_cache ff;
} sublayer_cache;

/* h (R, E) in place; tc, k NULL for inference. */
tfm_status sublayer_forward(const sublayer *s, tfm_ws *ws, float *h, int64_t N, int64_t L,
                            train_ctx *tc, sublayer_cache *k);
/* dh (R, E) in place: in, the gradient of the block's output; out, of its input.
 * dmemory (N, S, E) is accumulated into (cross-attention only; may be NULL). */
tfm_status sublayer_backward(const sublayer *s, const sublayer_cache *k, tfm_ws *ws, float *dh,
                             float *dmemory, int64_t N, int64_t L);

#endif
