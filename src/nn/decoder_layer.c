/* decoder_layer.c — nn.TransformerDecoderLayer:
 *   post-norm: x = norm1(x + SA(x));  x = norm2(x + MHA(x, mem));  x = norm3(x + FF(x))
 *   pre-norm:  x = x + SA(norm1(x));  x = x + MHA(norm2(x), mem);  x = x + FF(norm3(x))
 * Legend: N batch, L target length, S memory length, E d_model, R = N·L rows. */
#include "nn/decoder_layer.h"

#include "core/status.h"
#include "kernels/elementwise.h"
#include "nn/encoder_layer.h"

void decoder_layer_describe(const layer_config *c, decoder_layer_params *p, const char *prefix,
                            param_list *l) {
    char pre[PARAM_NAME_MAX];
    mha_config ac = layer_attn_config(c);
    if (!param_prefix(pre, prefix, "self_attn")) l->failed = true;
    mha_describe(&ac, &p->self_attn, pre, l);
    if (!param_prefix(pre, prefix, "multihead_attn")) l->failed = true;
    mha_describe(&ac, &p->multihead_attn, pre, l);
    ffn_describe(c, &p->ff, prefix, l);
    norm_describe(c, &p->norm1, prefix, "norm1", l);
    norm_describe(c, &p->norm2, prefix, "norm2", l);
    norm_describe(c, &p->norm3, prefix, "norm3", l);
}

/* One residual sublayer, in either norm order. `which` 0: self-attention, 1: cross-
 * attention, 2: feed-forward. h (R, E) is the residual stream, updated in place. */
static tfm_status sublayer(const layer_config *c, const decoder_layer_params *p, tfm_ws *ws,
                           int which, float *h, float *t, float *nx, const float *memory,
                           int64_t N, int64_t L, int64_t S, const attn_bias *mask) {
    const int64_t E = c->d_model, R = N * L;
    const mha_config ac = layer_attn_config(c);
    const norm_params *norm = which == 0 ? &p->norm1 : which == 1 ? &p->norm2 : &p->norm3;
    const float *in = h;
    if (c->norm_first) {
        norm_forward(c, norm, nx, h, R);
        in = nx;
    }
    tfm_status st;
    if (which == 0)
        st = mha_forward(&ac, &p->self_attn, ws, t, NULL, false, in, in, in, N, L, L, mask);
    else if (which == 1)
        st = mha_forward(&ac, &p->multihead_attn, ws, t, NULL, false, in, memory, memory, N, L, S,
                         mask);
    else
        st = ffn_forward(c, &p->ff, ws, t, in, R);
    if (st) return st;
    add_vectors(h, h, t, R * E);
    if (!c->norm_first) norm_forward(c, norm, h, h, R);
    return TFM_OK;
}

tfm_status decoder_layer_forward(const layer_config *c, const decoder_layer_params *p,
                                 tfm_ws *ws, float *out, const float *x, const float *memory,
                                 int64_t N, int64_t L, int64_t S, const attn_bias *self_mask,
                                 const attn_bias *cross_mask) {
    const int64_t E = c->d_model, R = N * L;
    ws_mark_t mark = ws_mark(ws);
    float *t = ws_floats(ws, (size_t)R * (size_t)E);  /* (R, E) sublayer output */
    float *nx = ws_floats(ws, (size_t)R * (size_t)E); /* (R, E) normed input (pre-norm) */
    tfm_status st = TFM_OK;
    if (!t || !nx) {
        st = tfm_error(TFM_ERR_NOMEM, "TransformerDecoderLayer: out of memory");
        goto done;
    }
    for (int64_t i = 0; i < R * E; i++) out[i] = x[i];
    for (int which = 0; which < 3 && st == TFM_OK; which++)
        st = sublayer(c, p, ws, which, out, t, nx, memory, N, L, S,
                      which == 0 ? self_mask : which == 1 ? cross_mask : NULL);
done:
    ws_release(ws, mark);
    return st;
}
