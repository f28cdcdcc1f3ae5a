/* encoder_layer.c — nn.TransformerEncoderLayer:
 *   post-norm: x = norm1(x + SA(x));  x = norm2(x + FF(x))
 *   pre-norm:  x = x + SA(norm1(x));  x = x + FF(norm2(x))
 * Legend: N batch, L sequence length, E d_model, R = N·L rows. */
#include "nn/encoder_layer.h"

#include "core/status.h"
#include "kernels/elementwise.h"

mha_config layer_attn_config(const layer_config *c) {
    return (mha_config){.embed_dim = c->d_model, .num_heads = c->nhead, .kdim = c->d_model,
                        .vdim = c->d_model, .bias = c->bias};
}

void encoder_layer_describe(const layer_config *c, encoder_layer_params *p, const char *prefix,
                            param_list *l) {
    char pre[PARAM_NAME_MAX];
    mha_config ac = layer_attn_config(c);
    if (!param_prefix(pre, prefix, "self_attn")) l->failed = true;
    mha_describe(&ac, &p->self_attn, pre, l);
    ffn_describe(c, &p->ff, prefix, l);
    norm_describe(c, &p->norm1, prefix, "norm1", l);
    norm_describe(c, &p->norm2, prefix, "norm2", l);
}

tfm_status encoder_layer_forward(const layer_config *c, const encoder_layer_params *p,
                                 tfm_ws *ws, float *out, const float *x, int64_t N, int64_t L,
                                 const attn_bias *mask) {
    const int64_t E = c->d_model, R = N * L;
    const mha_config ac = layer_attn_config(c);
    ws_mark_t mark = ws_mark(ws);
    float *h = ws_floats(ws, (size_t)R * (size_t)E);   /* (R, E) residual stream */
    float *t = ws_floats(ws, (size_t)R * (size_t)E);   /* (R, E) sublayer output */
    float *nx = c->norm_first ? ws_floats(ws, (size_t)R * (size_t)E) : NULL; /* normed input */
    tfm_status st = TFM_OK;
    if (!h || !t || (c->norm_first && !nx)) {
        st = tfm_error(TFM_ERR_NOMEM, "TransformerEncoderLayer: out of memory");
        goto done;
    }
    if (c->norm_first) {
        norm_forward(c, &p->norm1, nx, x, R);
        st = mha_forward(&ac, &p->self_attn, ws, t, NULL, false, nx, nx, nx, N, L, L, mask);
        if (st) goto done;
        add_vectors(h, x, t, R * E);
        norm_forward(c, &p->norm2, nx, h, R);
        st = ffn_forward(c, &p->ff, ws, t, nx, R);
        if (st) goto done;
        add_vectors(out, h, t, R * E);
    } else {
        st = mha_forward(&ac, &p->self_attn, ws, t, NULL, false, x, x, x, N, L, L, mask);
        if (st) goto done;
        add_vectors(h, x, t, R * E);
        norm_forward(c, &p->norm1, h, h, R);
        st = ffn_forward(c, &p->ff, ws, t, h, R);
        if (st) goto done;
        add_vectors(out, h, t, R * E);
        norm_forward(c, &p->norm2, out, out, R);
    }
done:
    ws_release(ws, mark);
    return st;
}
