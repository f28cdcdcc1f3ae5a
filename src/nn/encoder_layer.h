/* encoder_layer.h — nn.TransformerEncoderLayer (eval forward).
 * Legend: N batch, L sequence length, E d_model. */
#ifndef TFM_NN_ENCODER_LAYER_H
#define TFM_NN_ENCODER_LAYER_H

#include "nn/layer_config.h"
#include "nn/mha.h"

typedef struct encoder_layer_params {
    mha_params self_attn;
    ffn_params ff; /* linear1, linear2 */
    norm_params norm1, norm2;
} encoder_layer_params;

/* The layer's self-attention configuration. */
mha_config layer_attn_config(const layer_config *c);
void encoder_layer_describe(const layer_config *c, encoder_layer_params *p, const char *prefix,
                            param_list *l);
/* out (N, L, E) from x (N, L, E); out must not alias x. mask: additive self-attention
 * bias (src_mask, src_key_padding_mask, is_causal) or NULL. */
tfm_status encoder_layer_forward(const layer_config *c, const encoder_layer_params *p,
                                 tfm_ws *ws, float *out, const float *x, int64_t N, int64_t L,
                                 const attn_bias *mask);

#endif
