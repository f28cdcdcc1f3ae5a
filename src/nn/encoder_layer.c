/* encoder_layer.c — nn.TransformerEncoderLayer: two residual blocks,
 *   post-norm: x = norm1(x + SA(x));  x = norm2(x + FF(x))
 *   pre-norm:  x = x + SA(norm1(x));  x = x + FF(norm2(x))
 * (with dropout1 / dropout2 on the block outputs and dropout inside FF in training).
 * Legend: N batch, L sequence length, E d_model. */
#include "nn/encoder_layer.h"

#include "kernels/elementwise.h"

void encoder_layer_describe(const layer_config *c, encoder_layer_params *p, const char *prefix,
                            param_list *l) {
    char pre[PARAM_NAME_MAX];
    mha_config ac = {.embed_dim = c->d_model, .num_heads = c->nhead, .kdim = c->d_model,
                     .vdim = c->d_model, .bias = c->bias};
    if (!param_prefix(pre, prefix, "self_attn")) l->failed = true;
    mha_describe(&ac, &p->self_attn, pre, l);
    ffn_describe(c, &p->ff, prefix, l);
    norm_describe(c, &p->norm1, prefix, "norm1", l);
    norm_describe(c, &p->norm2, prefix, "norm2", l);
}

/* The layer's two blocks; g may be NULL (inference). */
static void blocks(const layer_config *c, const encoder_layer_params *p, encoder_layer_params *g,
                   const attn_bias *mask, sublayer b[2]) {
    b[0] = (sublayer){.kind = SUB_SELF_ATTN, .c = c, .attn = &p->self_attn,
                      .attn_g = g ? &g->self_attn : NULL, .norm = &p->norm1,
                      .norm_g = g ? &g->norm1 : NULL, .mask = mask};
    b[1] = (sublayer){.kind = SUB_FFN, .c = c, .ff = &p->ff, .ff_g = g ? &g->ff : NULL,
                      .norm = &p->norm2, .norm_g = g ? &g->norm2 : NULL};
}

tfm_status encoder_layer_forward(const layer_config *c, const encoder_layer_params *p,
                                 tfm_ws *ws, float *out, const float *x, int64_t N, int64_t L,
                                 const attn_bias *mask, train_ctx *tc, encoder_layer_cache *cache) {
    sublayer b[2];
    blocks(c, p, NULL, mask, b);
    if (out != x) copy_floats(out, x, N * L * c->d_model);
    for (int i = 0; i < 2; i++) {
        tfm_status st = sublayer_forward(&b[i], ws, out, N, L, tc, cache ? &cache->sub[i] : NULL);
        if (st) return st;
    }
    return TFM_OK;
}

tfm_status encoder_layer_backward(const layer_config *c, const encoder_layer_params *p,
                                  encoder_layer_params *g, const encoder_layer_cache *cache,
                                  tfm_ws *ws, float *dx, int64_t N, int64_t L,
                                  const attn_bias *mask) {
    sublayer b[2];
    blocks(c, p, g, mask, b);
    for (int i = 1; i >= 0; i--) {
        tfm_status st = sublayer_backward(&b[i], &cache->sub[i], ws, dx, NULL, N, L);
        if (st) return st;
    }
    return TFM_OK;
}
