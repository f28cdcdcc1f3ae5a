/* decoder_layer.c — nn.TransformerDecoderLayer: three residual blocks,
 *   post-norm: x = norm1(x + SA(x));  x = norm2(x + MHA(x, mem));  x = norm3(x + FF(x))
 *   pre-norm:  x = x + SA(norm1(x));  x = x + MHA(norm2(x), mem);  x = x + FF(norm3(x))
 * Legend: N batch, L target length, S memory length, E d_model. */
#include "nn/decoder_layer.h"

#include "kernels/elementwise.h"

void decoder_layer_describe(const layer_config *c, decoder_layer_params *p, const char *prefix,
                            param_list *l) {
    char pre[PARAM_NAME_MAX];
    mha_config ac = {.embed_dim = c->d_model, .num_heads = c->nhead, .kdim = c->d_model,
                     .vdim = c->d_model, .bias = c->bias};
    if (!param_prefix(pre, prefix, "self_attn")) l->failed = true;
    mha_describe(&ac, &p->self_attn, pre, l);
    if (!param_prefix(pre, prefix, "multihead_attn")) l->failed = true;
    mha_describe(&ac, &p->multihead_attn, pre, l);
    ffn_describe(c, &p->ff, prefix, l);
    norm_describe(c, &p->norm1, prefix, "norm1", l);
    norm_describe(c, &p->norm2, prefix, "norm2", l);
    norm_describe(c, &p->norm3, prefix, "norm3", l);
}

static void blocks(const layer_config *c, const decoder_layer_params *p, decoder_layer_params *g,
                   const float *memory, int64_t S, const attn_bias *self_mask,
                   const attn_bias *cross_mask, sublayer b[3]) {
    b[0] = (sublayer){.kind = SUB_SELF_ATTN, .c = c, .attn = &p->self_attn,
                      .attn_g = g ? &g->self_attn : NULL, .norm = &p->norm1,
                      .norm_g = g ? &g->norm1 : NULL, .mask = self_mask};
    b[1] = (sublayer){.kind = SUB_CROSS_ATTN, .c = c, .attn = &p->multihead_attn,
                      .attn_g = g ? &g->multihead_attn : NULL, .norm = &p->norm2,
                      .norm_g = g ? &g->norm2 : NULL, .memory = memory, .S = S,
                      .mask = cross_mask};
    b[2] = (sublayer){.kind = SUB_FFN, .c = c, .ff = &p->ff, .ff_g = g ? &g->ff : NULL,
                      .norm = &p->norm3, .norm_g = g ? &g->norm3 : NULL};
}

tfm_status decoder_layer_forward(const layer_config *c, const decoder_layer_params *p,
                                 tfm_ws *ws, float *out, const float *x, const float *memory,
                                 int64_t N, int64_t L, int64_t S, const attn_bias *self_mask,
                                 const attn_bias *cross_mask, train_ctx *tc,
                                 decoder_layer_cache *cache) {
    sublayer b[3];
    blocks(c, p, NULL, memory, S, self_mask, cross_mask, b);
    if (out != x) copy_floats(out, x, N * L * c->d_model);
    for (int i = 0; i < 3; i++) {
        tfm_status st = sublayer_forward(&b[i], ws, out, N, L, tc, cache ? &cache->sub[i] : NULL);
        if (st) return st;
    }
    return TFM_OK;
}

tfm_status decoder_layer_backward(const layer_config *c, const decoder_layer_params *p,
                                  decoder_layer_params *g, const decoder_layer_cache *cache,
                                  tfm_ws *ws, float *dx, float *dmemory, const float *memory,
                                  int64_t N, int64_t L, int64_t S, const attn_bias *self_mask,
                                  const attn_bias *cross_mask) {
    sublayer b[3];
    blocks(c, p, g, memory, S, self_mask, cross_mask, b);
    for (int i = 2; i >= 0; i--) {
        tfm_status st = sublayer_backward(&b[i], &cache->sub[i], ws, dx, dmemory, N, L);
        if (st) return st;
    }
    return TFM_OK;
}
