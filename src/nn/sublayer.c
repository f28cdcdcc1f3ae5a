/* sublayer.c — a residual block's forward and backward; see sublayer.h.
 * Legend: N batch, L stream length, S memory length, E d_model, R = N·L. */
#include "nn/sublayer.h"

#include <string.h>

#include "core/status.h"
#include "kernels/elementwise.h"

static mha_config attn_config(const layer_config *c) {
    return (mha_config){.embed_dim = c->d_model, .num_heads = c->nhead, .kdim = c->d_model,
                        .vdim = c->d_model, .bias = c->bias};
}

/* t (R, E) = f(in (R, E)) */
static tfm_status apply_f(const sublayer *s, tfm_ws *ws, float *t, const float *in, int64_t N,
                          int64_t L, train_ctx *tc, sublayer_cache *k) {
    const mha_config ac = attn_config(s->c);
    switch (s->kind) {
    case SUB_SELF_ATTN:
        return mha_forward(&ac, s->attn, ws, t, NULL, false, in, in, in, N, L, L, s->mask, tc,
                           k ? &k->attn : NULL);
    case SUB_CROSS_ATTN:
        return mha_forward(&ac, s->attn, ws, t, NULL, false, in, s->memory, s->memory, N, L, s->S,
                           s->mask, tc, k ? &k->attn : NULL);
    case SUB_FFN: return ffn_forward(s->c, s->ff, ws, t, in, N * L, tc, k ? &k->ff : NULL);
    }
    return TFM_ERR_INVALID_ARG;
}

tfm_status sublayer_forward(const sublayer *s, tfm_ws *ws, float *h, int64_t N, int64_t L,
                            train_ctx *tc, sublayer_cache *k) {
    const int64_t R = N * L, n = R * s->c->d_model;
    train_ctx *save = k ? tc : NULL;
    ws_mark_t mark = ws_mark(ws);
    float *t = ws_floats(ws, (size_t)n);                      /* f's output */
    float *x = k ? train_floats(save, ws, (size_t)n) : NULL;  /* the input, kept */
    float *nb = train_floats(save, ws, (size_t)n);            /* normed input / pre-norm sum */
    float *mean = k ? train_floats(save, ws, (size_t)R) : NULL;
    float *rstd = k ? train_floats(save, ws, (size_t)R) : NULL;
    if (!t || !nb || (k && (!x || !mean || !rstd))) {
        ws_release(ws, mark);
        return tfm_error(TFM_ERR_NOMEM, "sublayer: out of memory");
    }
    if (k) copy_floats(x, h, n);
    const float *in = k ? x : h; /* f reads a copy that stays valid for backward */
    float drop = tc ? tc->dropout : 0.0f;
    tfm_status st;
    if (s->c->norm_first) {
        norm_forward(s->c, s->norm, nb, mean, rstd, in, R);
        st = apply_f(s, ws, t, nb, N, L, tc, k);
        uint64_t seed = train_next_stream(tc);
        if (k) k->seed = seed;
        if (st == TFM_OK) dropout_add(h, h, t, n, drop, seed); /* h + dropout(t) */
    } else {
        st = apply_f(s, ws, t, in, N, L, tc, k);
        uint64_t seed = train_next_stream(tc);
        if (k) k->seed = seed;
        /* nb = h + dropout(t), h = norm(nb): one pass */
        if (st == TFM_OK)
            norm_forward_residual(s->c, s->norm, h, nb, mean, rstd, h, t, R, drop, seed);
    }
    if (k) {
        k->x = x, k->n = nb, k->mean = mean, k->rstd = rstd;
        k->dropout = drop;
    }
    ws_release(ws, mark);
    return st;
}

/* df_in += f's backward of dt; for cross-attention dmemory too. */
static tfm_status f_backward(const sublayer *s, const sublayer_cache *k, tfm_ws *ws, float *df_in,
                             const float *dt, float *dmemory, int64_t R) {
    const mha_config ac = attn_config(s->c);
    switch (s->kind) {
    case SUB_SELF_ATTN:
        return mha_backward(&ac, s->attn, s->attn_g, &k->attn, ws, dt, df_in, df_in, df_in);
    case SUB_CROSS_ATTN:
        return mha_backward(&ac, s->attn, s->attn_g, &k->attn, ws, dt, df_in, dmemory, dmemory);
    case SUB_FFN: return ffn_backward(s->c, s->ff, s->ff_g, &k->ff, ws, df_in, dt, R);
    }
    return TFM_ERR_INVALID_ARG;
}

tfm_status sublayer_backward(const sublayer *s, const sublayer_cache *k, tfm_ws *ws, float *dh,
                             float *dmemory, int64_t N, int64_t L) {
    const int64_t R = N * L, n = R * s->c->d_model;
    const bool pre = s->c->norm_first;
    ws_mark_t mark = ws_mark(ws);
    float *dt = ws_floats(ws, (size_t)n), *du = pre ? ws_floats(ws, (size_t)n) : NULL;
    if (!dt || (pre && !du)) {
        ws_release(ws, mark);
        return tfm_error(TFM_ERR_NOMEM, "sublayer backward: out of memory");
    }
    tfm_status st;
    if (pre) { /* h_out = x + drop(f(norm(x))) */
        dropout_copy(dt, dh, n, k->dropout, k->seed);
        memset(du, 0, (size_t)n * sizeof(float));
        st = f_backward(s, k, ws, du, dt, dmemory, R); /* du: gradient of norm(x) */
        if (st == TFM_OK) norm_backward(s->c, s->norm, s->norm_g, dh, du, k->x, k->mean, k->rstd, R);
    } else { /* h_out = norm(u), u = x + drop(f(x)) */
        /* dh = the gradient of u (the residual path), dt = dropout of it (f's output) */
        norm_backward_residual(s->c, s->norm, s->norm_g, dh, dt, dh, k->n, k->mean, k->rstd, R,
                               k->dropout, k->seed);
        st = f_backward(s, k, ws, dh, dt, dmemory, R);
    }
    ws_release(ws, mark);
    return st;
}
