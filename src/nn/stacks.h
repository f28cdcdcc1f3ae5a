/* stacks.h — nn.TransformerEncoder / nn.TransformerDecoder (num_layers layers and an
 * optional final LayerNorm) and nn.Transformer (an encoder and a decoder stack, each
 * with its final norm), forward and backward.
 * Legend: N batch, S source length, L target length, E d_model. */
#ifndef TFM_NN_STACKS_H
#define TFM_NN_STACKS_H

#include "nn/decoder_layer.h"
#include "nn/encoder_layer.h"

typedef struct stack_config {
    layer_config layer;
    int64_t num_layers;
    bool norm; /* a final LayerNorm ("norm.weight", "norm.bias") */
} stack_config;

/* Parameters, or gradients with the same layout. */
typedef struct encoder_params {
    encoder_layer_params *layers; /* num_layers entries, owned by the caller */
    norm_params norm;
} encoder_params;

typedef struct decoder_params {
    decoder_layer_params *layers;
    norm_params norm;
} decoder_params;

/* Saved activations: per layer, and the final norm's input. */
typedef struct stack_cache {
    void *layers;       /* encoder_layer_cache[num_layers] or decoder_layer_cache[...] */
    float *norm_in;     /* (N·L, E) */
    float *mean, *rstd; /* (N·L) */
} stack_cache;

void encoder_describe(const stack_config *c, encoder_params *p, const char *prefix, param_list *l);
void decoder_describe(const stack_config *c, decoder_params *p, const char *prefix, param_list *l);

/* out (N, L, E) from x (N, L, E); out may alias x. tc, cache NULL for inference. */
tfm_status encoder_forward(const stack_config *c, const encoder_params *p, tfm_ws *ws, float *out,
                           const float *x, int64_t N, int64_t L, const attn_bias *mask,
                           train_ctx *tc, stack_cache *cache);
/* dx (N, L, E) in place: output gradient in, input gradient out. */
tfm_status encoder_backward(const stack_config *c, const encoder_params *p, encoder_params *g,
                            const stack_cache *cache, tfm_ws *ws, float *dx, int64_t N, int64_t L);

/* out (N, L, E) from tgt x (N, L, E) and memory (N, S, E); out may alias x. */
tfm_status decoder_forward(const stack_config *c, const decoder_params *p, tfm_ws *ws, float *out,
                           const float *x, const float *memory, int64_t N, int64_t L, int64_t S,
                           const attn_bias *self_mask, const attn_bias *cross_mask,
                           train_ctx *tc, stack_cache *cache);
/* dx in place; dmemory (N, S, E) accumulated. */
tfm_status decoder_backward(const stack_config *c, const decoder_params *p, decoder_params *g,
                            const stack_cache *cache, tfm_ws *ws, float *dx, float *dmemory,
                            const float *memory, int64_t N, int64_t L, int64_t S);

typedef struct transformer_config {
    stack_config encoder, decoder; /* both with norm = true, as nn.Transformer builds them */
} transformer_config;

typedef struct transformer_params {
    encoder_params encoder;
    decoder_params decoder;
} transformer_params;

typedef struct transformer_cache {
    stack_cache encoder, decoder;
    float *memory; /* (N, S, E) the encoder's output */
} transformer_cache;

/* Names "<prefix>encoder.…" and "<prefix>decoder.…". */
void transformer_describe(const transformer_config *c, transformer_params *p, const char *prefix,
                          param_list *l);
/* out (N, L, E) from src (N, S, E) and tgt (N, L, E). */
tfm_status transformer_forward(const transformer_config *c, const transformer_params *p,
                               tfm_ws *ws, float *out, const float *src, const float *tgt,
                               int64_t N, int64_t S, int64_t L, const attn_bias *src_mask,
                               const attn_bias *tgt_mask, const attn_bias *memory_mask,
                               train_ctx *tc, transformer_cache *cache);
/* dtgt (N, L, E) in place (output gradient in, tgt gradient out); dsrc (N, S, E)
 * written (not accumulated). */
tfm_status transformer_backward(const transformer_config *c, const transformer_params *p,
                                transformer_params *g, const transformer_cache *cache,
                                tfm_ws *ws, float *dtgt, float *dsrc, int64_t N, int64_t S,
                                int64_t L);

#endif
