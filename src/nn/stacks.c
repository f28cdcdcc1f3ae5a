/* stacks.c — encoder and decoder stacks, and the whole Transformer, forward and backward.
 * Legend: N batch, S source length, L target length, E d_model, R rows. */
#include "nn/stacks.h"

#include <stdio.h>
#include <string.h>

#include "core/status.h"

static bool layer_prefix(char *out, const char *prefix, int64_t i) {
    int len = snprintf(out, PARAM_NAME_MAX, "%slayers.%lld.", prefix, (long long)i);
    return len >= 0 && len < PARAM_NAME_MAX;
}

void encoder_describe(const stack_config *c, encoder_params *p, const char *prefix, param_list *l) {
    char pre[PARAM_NAME_MAX];
    for (int64_t i = 0; i < c->num_layers; i++) {
        if (!layer_prefix(pre, prefix, i)) l->failed = true;
        encoder_layer_describe(&c->layer, &p->layers[i], pre, l);
    }
    if (c->norm)
        norm_describe(&c->layer, &p->norm, prefix, "norm", l);
    else
        p->norm = (norm_params){0};
}

void decoder_describe(const stack_config *c, decoder_params *p, const char *prefix, param_list *l) {
    char pre[PARAM_NAME_MAX];
    for (int64_t i = 0; i < c->num_layers; i++) {
        if (!layer_prefix(pre, prefix, i)) l->failed = true;
        decoder_layer_describe(&c->layer, &p->layers[i], pre, l);
    }
    if (c->norm)
        norm_describe(&c->layer, &p->norm, prefix, "norm", l);
    else
        p->norm = (norm_params){0};
}

/* Space for the per-layer caches and the final norm's saved input. */
static tfm_status cache_alloc(const stack_config *c, train_ctx *tc, stack_cache *k, int64_t R,
                              size_t layer_cache_size) {
    *k = (stack_cache){0};
    k->layers = ws_alloc(tc->act, layer_cache_size * (size_t)(c->num_layers ? c->num_layers : 1));
    if (c->norm) {
        k->norm_in = ws_floats(tc->act, (size_t)R * (size_t)c->layer.d_model);
        k->mean = ws_floats(tc->act, (size_t)R);
        k->rstd = ws_floats(tc->act, (size_t)R);
    }
    if (!k->layers || (c->norm && (!k->norm_in || !k->mean || !k->rstd)))
        return tfm_error(TFM_ERR_NOMEM, "out of memory for saved activations");
    return TFM_OK;
}

/* The final LayerNorm, in place on out (R, E), saving its input when training. */
static void final_norm(const stack_config *c, const norm_params *p, float *out, int64_t R,
                       stack_cache *k) {
    if (!c->norm) return;
    if (k) memcpy(k->norm_in, out, (size_t)R * (size_t)c->layer.d_model * sizeof(float));
    norm_forward(&c->layer, p, out, k ? k->mean : NULL, k ? k->rstd : NULL, out, R);
}

/* dx (R, E) in place through the final LayerNorm. */
static tfm_status final_norm_backward(const stack_config *c, const norm_params *p,
                                      norm_params *g, const stack_cache *k, tfm_ws *ws, float *dx,
                                      int64_t R) {
    if (!c->norm) return TFM_OK;
    const size_t n = (size_t)R * (size_t)c->layer.d_model;
    ws_mark_t mark = ws_mark(ws);
    float *d = ws_floats(ws, n);
    if (!d) return tfm_error(TFM_ERR_NOMEM, "norm backward: out of memory");
    memset(d, 0, n * sizeof(float));
    norm_backward(&c->layer, p, g, d, dx, k->norm_in, k->mean, k->rstd, R);
    memcpy(dx, d, n * sizeof(float));
    ws_release(ws, mark);
    return TFM_OK;
}

tfm_status encoder_forward(const stack_config *c, const encoder_params *p, tfm_ws *ws, float *out,
                           const float *x, int64_t N, int64_t L, const attn_bias *mask,
                           train_ctx *tc, stack_cache *k) {
    if (k) TFM_TRY(cache_alloc(c, tc, k, N * L, sizeof(encoder_layer_cache)));
    encoder_layer_cache *lc = k ? k->layers : NULL;
    if (out != x) memcpy(out, x, (size_t)(N * L * c->layer.d_model) * sizeof(float));
    for (int64_t i = 0; i < c->num_layers; i++) {
        tfm_status st = encoder_layer_forward(&c->layer, &p->layers[i], ws, out, out, N, L, mask,
                                              tc, lc ? &lc[i] : NULL);
        if (st) return tfm_error_context(st, "layers.%lld", (long long)i);
    }
    final_norm(c, &p->norm, out, N * L, k);
    return TFM_OK;
}

tfm_status encoder_backward(const stack_config *c, const encoder_params *p, encoder_params *g,
                            const stack_cache *k, tfm_ws *ws, float *dx, int64_t N, int64_t L) {
    TFM_TRY(final_norm_backward(c, &p->norm, &g->norm, k, ws, dx, N * L));
    const encoder_layer_cache *lc = k->layers;
    for (int64_t i = c->num_layers - 1; i >= 0; i--) {
        tfm_status st = encoder_layer_backward(&c->layer, &p->layers[i], &g->layers[i], &lc[i], ws,
                                               dx, N, L, NULL);
        if (st) return tfm_error_context(st, "layers.%lld", (long long)i);
    }
    return TFM_OK;
}

tfm_status decoder_forward(const stack_config *c, const decoder_params *p, tfm_ws *ws, float *out,
                           const float *x, const float *memory, int64_t N, int64_t L, int64_t S,
                           const attn_bias *self_mask, const attn_bias *cross_mask,
                           train_ctx *tc, stack_cache *k) {
    if (k) TFM_TRY(cache_alloc(c, tc, k, N * L, sizeof(decoder_layer_cache)));
    decoder_layer_cache *lc = k ? k->layers : NULL;
    if (out != x) memcpy(out, x, (size_t)(N * L * c->layer.d_model) * sizeof(float));
    for (int64_t i = 0; i < c->num_layers; i++) {
        tfm_status st = decoder_layer_forward(&c->layer, &p->layers[i], ws, out, out, memory, N, L,
                                              S, self_mask, cross_mask, tc, lc ? &lc[i] : NULL);
        if (st) return tfm_error_context(st, "layers.%lld", (long long)i);
    }
    final_norm(c, &p->norm, out, N * L, k);
    return TFM_OK;
}

tfm_status decoder_backward(const stack_config *c, const decoder_params *p, decoder_params *g,
                            const stack_cache *k, tfm_ws *ws, float *dx, float *dmemory,
                            const float *memory, int64_t N, int64_t L, int64_t S) {
    TFM_TRY(final_norm_backward(c, &p->norm, &g->norm, k, ws, dx, N * L));
    const decoder_layer_cache *lc = k->layers;
    for (int64_t i = c->num_layers - 1; i >= 0; i--) {
        tfm_status st = decoder_layer_backward(&c->layer, &p->layers[i], &g->layers[i], &lc[i], ws,
                                               dx, dmemory, memory, N, L, S, NULL, NULL);
        if (st) return tfm_error_context(st, "layers.%lld", (long long)i);
    }
    return TFM_OK;
}

void transformer_describe(const transformer_config *c, transformer_params *p, const char *prefix,
                          param_list *l) {
    char pre[PARAM_NAME_MAX];
    if (!param_prefix(pre, prefix, "encoder")) l->failed = true;
    encoder_describe(&c->encoder, &p->encoder, pre, l);
    if (!param_prefix(pre, prefix, "decoder")) l->failed = true;
    decoder_describe(&c->decoder, &p->decoder, pre, l);
}

tfm_status transformer_forward(const transformer_config *c, const transformer_params *p,
                               tfm_ws *ws, float *out, const float *src, const float *tgt,
                               int64_t N, int64_t S, int64_t L, const attn_bias *src_mask,
                               const attn_bias *tgt_mask, const attn_bias *memory_mask,
                               train_ctx *tc, transformer_cache *k) {
    ws_mark_t mark = ws_mark(ws);
    const size_t n = (size_t)(N * S) * (size_t)c->encoder.layer.d_model;
    float *memory = k ? ws_floats(tc->act, n) : ws_floats(ws, n);
    tfm_status st;
    if (!memory)
        st = tfm_error(TFM_ERR_NOMEM, "Transformer: out of memory");
    else if ((st = encoder_forward(&c->encoder, &p->encoder, ws, memory, src, N, S, src_mask, tc,
                                   k ? &k->encoder : NULL)))
        tfm_error_context(st, "encoder");
    else if ((st = decoder_forward(&c->decoder, &p->decoder, ws, out, tgt, memory, N, L, S,
                                   tgt_mask, memory_mask, tc, k ? &k->decoder : NULL)))
        tfm_error_context(st, "decoder");
    if (k) k->memory = memory;
    ws_release(ws, mark);
    return st;
}

tfm_status transformer_backward(const transformer_config *c, const transformer_params *p,
                                transformer_params *g, const transformer_cache *k,
                                tfm_ws *ws, float *dtgt, float *dsrc, int64_t N, int64_t S,
                                int64_t L) {
    memset(dsrc, 0, (size_t)(N * S) * (size_t)c->encoder.layer.d_model * sizeof(float));
    tfm_status st = decoder_backward(&c->decoder, &p->decoder, &g->decoder, &k->decoder, ws, dtgt,
                                     dsrc, k->memory, N, L, S);
    if (st) return tfm_error_context(st, "decoder");
    st = encoder_backward(&c->encoder, &p->encoder, &g->encoder, &k->encoder, ws, dsrc, N, S);
    if (st) return tfm_error_context(st, "encoder");
    return TFM_OK;
}
