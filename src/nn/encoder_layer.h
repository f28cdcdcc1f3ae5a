/* encoder_layer.h — nn.TransformerEncoderLayer, forward and backward.
 * Legend: N batch, L sequence length, E d_model. */
#ifndef TFM_NN_ENCODER_LAYER_H
#define TFM_NN_ENCODER_LAYER_H

#include "nn/layer_config.h"
#include "nn/mha.h"
#include "nn/sublayer.h"

/* Parameters, or gradients with the same layout. */
typedef struct encoder_layer_params {
    mha_params self_attn;
    ffn_params ff; /* linear1, linear2 */
    norm_params norm1, norm2;
} encoder_layer_params;

typedef struct encoder_layer_cache {
    sublayer_cache sub[2]; /* self-attention, feed-forward */
} encoder_layer_cache;

void encoder_layer_describe(const layer_config *c, encoder_layer_params *p, const char *prefix,
                            param_list *l);
/* out (N, L, E) from x (N, L, E); out may alias x. mask: additive self-attention
 * bias (src_mask, src_key_padding_mask, is_causal) or NULL. tc, cache: NULL for
 * inference. */
tfm_status encoder_layer_forward(const layer_config *c, const encoder_layer_params *p,
                                 tfm_ws *ws, float *out, const float *x, int64_t N, int64_t L,
                                 const attn_bias *mask, train_ctx *tc, encoder_layer_cache *cache);
/* dx (N, L, E) in place: in, the gradient of the output; out, of the input.
 * Parameter gradients accumulate into g. */
tfm_status encoder_layer_backward(const layer_config *c, const encoder_layer_params *p,
                                  encoder_layer_params *g, const encoder_layer_cache *cache,
                                  tfm_ws *ws, float *dx, int64_t N, int64_t L,
                                  const attn_bias *mask);

#endif
