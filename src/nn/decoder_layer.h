/* decoder_layer.h — nn.TransformerDecoderLayer, forward and backward.
 * Legend: N batch, L target length, S memory length, E d_model. */
#ifndef TFM_NN_DECODER_LAYER_H
#define TFM_NN_DECODER_LAYER_H

#include "nn/layer_config.h"
#include "nn/mha.h"
#include "nn/sublayer.h"

/* Parameters, or gradients with the same layout. */
typedef struct decoder_layer_params {
    mha_params self_attn;
    mha_params multihead_attn; /* cross-attention to the memory */
    ffn_params ff;
    norm_params norm1, norm2, norm3;
} decoder_layer_params;

typedef struct decoder_layer_cache {
    sublayer_cache sub[3]; /* self-attention, cross-attention, feed-forward */
} decoder_layer_cache;

void decoder_layer_describe(const layer_config *c, decoder_layer_params *p, const char *prefix,
                            param_list *l);
/* out (N, L, E) from x (N, L, E) and memory (N, S, E); out may alias x.
 * self_mask: tgt_mask, tgt_key_padding_mask, tgt_is_causal; cross_mask: memory_mask,
 * memory_key_padding_mask, memory_is_causal (each NULL for none). tc, cache: NULL for
 * inference (else memory must stay unchanged until backward). */
tfm_status decoder_layer_forward(const layer_config *c, const decoder_layer_params *p,
                                 tfm_ws *ws, float *out, const float *x, const float *memory,
                                 int64_t N, int64_t L, int64_t S, const attn_bias *self_mask,
                                 const attn_bias *cross_mask, train_ctx *tc,
                                 decoder_layer_cache *cache);
/* dx (N, L, E) in place (output gradient in, input gradient out); dmemory (N, S, E)
 * accumulated; parameter gradients into g. */
tfm_status decoder_layer_backward(const layer_config *c, const decoder_layer_params *p,
                                  decoder_layer_params *g, const decoder_layer_cache *cache,
                                  tfm_ws *ws, float *dx, float *dmemory, const float *memory,
                                  int64_t N, int64_t L, int64_t S, const attn_bias *self_mask,
                                  const attn_bias *cross_mask);

#endif
